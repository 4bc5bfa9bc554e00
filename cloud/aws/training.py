"""aws training backend: a SageMaker training job with the built-in DeepAR image, channels from the S3 lake.

create_training_job with the hyperparameters as strings, then describe_training_job until it ends; the final
metrics are SageMaker's FinalMetricDataList (test:RMSE, test:mean_wQuantileLoss, train:final_loss). SageMaker
writes the artifact to <S3OutputPath>/<job>/output/model.tar.gz, which is the lake's models/<job>/output/ key.
A progress callback raising TrainingStopped (cancel, time limit) stops the job with stop_training_job.
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cloud.deepar.control import TrainingStopped
from cloud.interfaces import (
    BackendError,
    BackendUnavailable,
    Lake,
    Progress,
    Trainer,
    TrainingResult,
    TrainingSpec,
    no_progress,
)

# SecondaryStatus -> rough percent, for the job row while SageMaker works.
_PHASES = {"Starting": 5, "Pending": 5, "LaunchingMLInstances": 10, "PreparingTrainingStack": 15, "Downloading": 20,
           "Training": 50, "Uploading": 90, "Completed": 100}  # fmt: skip
_ENDED = {"Completed", "Failed", "Stopped"}


def deepar_image_uri(region: str) -> str:
    """Return the built-in DeepAR image URI of the region (the sagemaker SDK v3 knows them offline)."""
    from sagemaker.core import image_uris

    return image_uris.retrieve("forecasting-deepar", region)


class SageMakerDeepAR(Trainer):
    """Trains with SageMaker's built-in DeepAR; the lake must be an S3Lake (SageMaker reads channels from S3)."""

    def __init__(
        self, region: str = "us-east-1", role_arn: str | None = None, instance_type: str = "ml.c5.2xlarge",
        max_runtime_s: int = 86_400, poll_s: float = 30.0, volume_gb: int = 10,
    ) -> None:  # fmt: skip
        self.region = region
        self.role_arn = role_arn or os.environ.get("IOTCAST_SAGEMAKER_ROLE_ARN", "")
        self.instance_type, self.max_runtime_s, self.poll_s, self.volume_gb = (
            instance_type,
            max_runtime_s,
            poll_s,
            volume_gb,
        )
        self._client = boto3.client("sagemaker", region_name=region)

    def _s3_uri(self, lake: Lake, key: str) -> str:
        bucket = getattr(lake, "bucket", None)
        if bucket is None:
            raise BackendError("SageMaker training reads channels from S3: set IOTCAST_LAKE_URL to an s3:// lake")
        prefix = getattr(lake, "prefix", "")
        return f"s3://{bucket}/{prefix + '/' if prefix else ''}{key}"

    def _channel(self, lake: Lake, name: str, key: str) -> dict[str, Any]:
        folder = key.rsplit("/", 1)[0] + "/"
        source = {
            "S3DataType": "S3Prefix",
            "S3Uri": self._s3_uri(lake, folder),
            "S3DataDistributionType": "FullyReplicated",
        }
        return {"ChannelName": name, "DataSource": {"S3DataSource": source}, "ContentType": "json"}

    def job_request(self, lake: Lake, spec: TrainingSpec) -> dict[str, Any]:
        """Return the create_training_job arguments for the spec."""
        if not self.role_arn:
            raise BackendError("set IOTCAST_SAGEMAKER_ROLE_ARN (or the role_arn option) to a SageMaker execution role")
        return {
            "TrainingJobName": spec.job_name,
            "AlgorithmSpecification": {"TrainingImage": deepar_image_uri(self.region), "TrainingInputMode": "File"},
            "RoleArn": self.role_arn,
            "InputDataConfig": [
                self._channel(lake, "train", spec.train_key),
                self._channel(lake, "test", spec.test_key),
            ],
            "OutputDataConfig": {"S3OutputPath": self._s3_uri(lake, spec.output_prefix.strip("/"))},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": self.volume_gb,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_s},
            "HyperParameters": {name: str(value) for name, value in spec.hyperparameters.items()},
        }

    def train(self, lake: Lake, spec: TrainingSpec, progress: Progress = no_progress) -> TrainingResult:
        """Run the SageMaker training job to its end; return the artifact key and FinalMetricDataList.

        Raises BackendError when the job fails or is stopped, BackendUnavailable when SageMaker cannot be reached,
        TrainingStopped (after stop_training_job) when progress raises it.
        """
        request = self.job_request(lake, spec)
        self._call("create_training_job", **request)
        progress(1, f"SageMaker training job {spec.job_name} created")
        try:
            described = self._wait(spec.job_name, progress)
        except TrainingStopped:
            self._call("stop_training_job", TrainingJobName=spec.job_name)
            raise
        if described["TrainingJobStatus"] != "Completed":
            reason = described.get("FailureReason") or described["TrainingJobStatus"]
            raise BackendError(
                f"SageMaker training job {spec.job_name} {described['TrainingJobStatus'].lower()}: {reason}"
            )
        metrics = {item["MetricName"]: float(item["Value"]) for item in described.get("FinalMetricDataList", [])}
        return TrainingResult(
            artifact_key=self._lake_key(lake, described["ModelArtifacts"]["S3ModelArtifacts"]), metrics=metrics
        )

    def _wait(self, job_name: str, progress: Progress) -> dict[str, Any]:
        while True:
            described = self._call("describe_training_job", TrainingJobName=job_name)
            status, phase = described["TrainingJobStatus"], described.get("SecondaryStatus", "")
            progress(_PHASES.get(phase, 50), f"SageMaker: {status} / {phase}")
            if status in _ENDED:
                return described
            time.sleep(self.poll_s)

    def _lake_key(self, lake: Lake, uri: str) -> str:
        base = self._s3_uri(lake, "")
        if not uri.startswith(base):
            raise BackendError(f"SageMaker stored the model outside the lake: {uri}")
        return uri[len(base) :]

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            raise BackendError(f"SageMaker {operation} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(f"SageMaker could not be reached: {exc}") from exc
