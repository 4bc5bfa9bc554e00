"""The aws training backend against moto: the exact SageMaker calls for a built-in DeepAR training job."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from cloud.aws.training import SageMakerDeepAR, deepar_image_uri
from cloud.deepar.control import TrainingCancelled
from cloud.interfaces import BackendError, TrainingSpec
from cloud.lake import S3Lake

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/iotcast-sagemaker"
SPEC = TrainingSpec(
    "deepar-ozone-20261127-230500", "datasets/ozone-h/train/data.json", "datasets/ozone-h/test/data.json",
    {"time_freq": "H", "context_length": "24", "prediction_length": "12", "epochs": "20",
     "test_quantiles": "[0.1, 0.9]"},
    "models",
)  # fmt: skip


# describe_training_job's answer always carries these (botocore's Stubber checks the response shape).
REQUIRED_OUTPUT = {"ModelArtifacts": {"S3ModelArtifacts": ""}, "StoppingCondition": {"MaxRuntimeInSeconds": 86_400}}
BASE = {"TrainingJobName": SPEC.job_name, "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x",
        "CreationTime": "2026-11-27T23:00:00Z", "AlgorithmSpecification": {"TrainingInputMode": "File"},
        **REQUIRED_OUTPUT}  # fmt: skip


@pytest.fixture
def aws(mocked_aws):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="iotcast-lake")
    return boto3.client("sagemaker", region_name=REGION)


def test_a_training_job_uses_the_deepar_image_s3_channels_and_string_hyperparameters(aws):
    lake = S3Lake("s3://iotcast-lake/prod")
    result = SageMakerDeepAR(region=REGION, role_arn=ROLE, poll_s=0).train(lake, SPEC)
    described = aws.describe_training_job(TrainingJobName=SPEC.job_name)
    image = described["AlgorithmSpecification"]["TrainingImage"]
    assert image == deepar_image_uri(REGION) and "forecasting-deepar" in image and image.startswith("522234722520.dkr")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in described["InputDataConfig"]}
    assert channels == {"train": "s3://iotcast-lake/prod/datasets/ozone-h/train/",
                        "test": "s3://iotcast-lake/prod/datasets/ozone-h/test/"}  # fmt: skip
    assert described["HyperParameters"] == SPEC.hyperparameters and described["RoleArn"] == ROLE
    assert described["OutputDataConfig"]["S3OutputPath"] == "s3://iotcast-lake/prod/models"
    assert described["StoppingCondition"]["MaxRuntimeInSeconds"] == 86_400
    # SageMaker's artifact location is the lake's models/<job>/output/model.tar.gz key.
    assert result.artifact_key == f"models/{SPEC.job_name}/output/model.tar.gz"
    assert result.metrics == {"train:progress": 100.0}  # moto's FinalMetricDataList, passed through as is


def test_final_metrics_come_from_final_metric_data_list_and_failures_say_why(aws):
    trainer = SageMakerDeepAR(region=REGION, role_arn=ROLE, poll_s=0)
    lake = S3Lake("s3://iotcast-lake")
    base = BASE
    done = {**base, "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://iotcast-lake/models/{SPEC.job_name}/output/model.tar.gz"},
            "FinalMetricDataList": [{"MetricName": "test:RMSE", "Value": 3.5},
                                    {"MetricName": "test:mean_wQuantileLoss", "Value": 0.08}]}  # fmt: skip
    with Stubber(trainer._client) as stub:
        stub.add_response(
            "create_training_job", {"TrainingJobArn": base["TrainingJobArn"]}, trainer.job_request(lake, SPEC)
        )
        stub.add_response(
            "describe_training_job", {**base, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}
        )
        stub.add_response("describe_training_job", done)
        result = trainer.train(lake, SPEC)
    assert result.metrics == {"test:RMSE": 3.5, "test:mean_wQuantileLoss": 0.08}
    failed = {**base, "TrainingJobStatus": "Failed", "SecondaryStatus": "Failed", "FailureReason": "ClientError: bad"}
    with Stubber(trainer._client) as stub, pytest.raises(BackendError, match="failed: ClientError: bad"):
        stub.add_response("create_training_job", {"TrainingJobArn": base["TrainingJobArn"]})
        stub.add_response("describe_training_job", failed)
        trainer.train(lake, SPEC)


def test_a_cancel_stops_the_sagemaker_job(aws):
    trainer = SageMakerDeepAR(region=REGION, role_arn=ROLE, poll_s=0)

    def cancel(percent: float, message: str) -> None:
        if "InProgress" in message:
            raise TrainingCancelled("cancelled")

    base = {**BASE, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}
    with Stubber(trainer._client) as stub, pytest.raises(TrainingCancelled):
        stub.add_response("create_training_job", {"TrainingJobArn": base["TrainingJobArn"]})
        stub.add_response("describe_training_job", base)
        stub.add_response("stop_training_job", {}, {"TrainingJobName": SPEC.job_name})
        trainer.train(S3Lake("s3://iotcast-lake"), SPEC, cancel)
        stub.assert_no_pending_responses()


def test_a_folder_lake_or_a_missing_role_is_refused_clearly(aws, tmp_path):
    from cloud.lake import FolderLake

    with pytest.raises(BackendError, match="s3:// lake"):
        SageMakerDeepAR(region=REGION, role_arn=ROLE).train(FolderLake(f"file://{tmp_path}"), SPEC)
    with pytest.raises(BackendError, match="IOTCAST_SAGEMAKER_ROLE_ARN"):
        SageMakerDeepAR(region=REGION, role_arn="").train(S3Lake("s3://iotcast-lake"), SPEC)
