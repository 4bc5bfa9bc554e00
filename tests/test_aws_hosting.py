"""The aws hosting backend against moto: the exact SageMaker and CloudWatch calls real AWS would receive."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest

from cloud.aws.hosting import SageMakerHosting, deployment_config
from cloud.interfaces import VariantSpec

ROLE = "arn:aws:iam::123456789012:role/iotcast-sagemaker"
KEY = "models/deepar-1/output/model.tar.gz"


@pytest.fixture
def aws(mocked_aws, settings):
    from cloud.backends import get_backend

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="iotcast-lake")
    backends = dict(settings.CLOUD_BACKENDS)
    backends["lake"] = {"BACKEND": "cloud.lake.S3Lake", "OPTIONS": {"url": "s3://iotcast-lake"}}
    settings.CLOUD_BACKENDS = backends
    get_backend.cache_clear()
    yield SageMakerHosting("us-east-1", role_arn=ROLE, poll_s=0.01, timeout_s=5)
    get_backend.cache_clear()


def variants(weight_b: float = 1.0) -> list[VariantSpec]:
    return [
        VariantSpec("Blue", "deepar-1", KEY, 3.0),
        VariantSpec("Green", "deepar-2", KEY.replace("-1", "-2"), weight_b, instance_count=2),
        VariantSpec("Shadow", "deepar-2", KEY.replace("-1", "-2"), 0.5, shadow=True),
    ]


@pytest.fixture
def sent(aws, monkeypatch) -> dict[str, list[dict]]:
    """Record the parameters of CreateEndpointConfig and UpdateEndpoint as boto3 sends them.

    moto keeps no shadow variants and has no UpdateEndpoint: the UpdateEndpoint request is answered here, the
    way SageMaker acknowledges it, after its wire body was recorded.
    """
    calls: dict[str, list[dict]] = {"CreateEndpointConfig": [], "UpdateEndpoint": []}
    real_client = aws.client

    def answer_update(params, **_):
        calls["UpdateEndpoint"].append(json.loads(params["body"]))
        return SimpleNamespace(status_code=200, headers={}), {"EndpointArn": "arn:aws:sagemaker:endpoint/air"}

    def recording_client(service: str = "sagemaker"):
        client = real_client(service)
        events = client.meta.events
        events.register("provide-client-params.sagemaker.CreateEndpointConfig",
                        lambda params, **_: calls["CreateEndpointConfig"].append(params))  # fmt: skip
        events.register("before-call.sagemaker.UpdateEndpoint", answer_update)
        return client

    monkeypatch.setattr(aws, "client", recording_client)
    return calls


def test_apply_creates_models_config_and_endpoint(aws, sent):
    aws.apply_endpoint("air", variants())
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    model = sagemaker.describe_model(ModelName="deepar-1")
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://iotcast-lake/{KEY}"
    assert "forecasting-deepar" in model["PrimaryContainer"]["Image"] and model["ExecutionRoleArn"] == ROLE
    endpoint = sagemaker.describe_endpoint(EndpointName="air")
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    production = {v["VariantName"]: (v["ModelName"], v["InitialVariantWeight"], v["InitialInstanceCount"])
                  for v in config["ProductionVariants"]}  # fmt: skip
    assert production == {"Blue": ("deepar-1", 3.0, 1), "Green": ("deepar-2", 1.0, 2)}
    # moto keeps no shadow variants: check what was sent (the shape real SageMaker receives).
    assert [v["VariantName"] for v in sent["CreateEndpointConfig"][0]["ShadowProductionVariants"]] == ["Shadow"]
    aws.apply_endpoint("air", variants(weight_b=2.0))  # an update: a new config on the same endpoint
    second = sent["CreateEndpointConfig"][1]["EndpointConfigName"]
    assert sent["UpdateEndpoint"] == [{"EndpointName": "air", "EndpointConfigName": second}]


def test_weights_rollout_and_delete(aws, sent):
    aws.apply_endpoint("air", variants())
    aws.update_weights("air", variants(weight_b=0.0))
    described = boto3.client("sagemaker", region_name="us-east-1").describe_endpoint(EndpointName="air")
    weights = {
        v["VariantName"]: v.get("DesiredWeight", v.get("CurrentWeight")) for v in described["ProductionVariants"]
    }
    assert weights["Green"] == 0.0
    policy = {"kind": "canary", "percent": 10, "baking_s": 300, "variant": "Blue", "alarms": {"max_p99_ms": 250}}
    assert aws.managed_rollout("air", variants(), policy) is True
    update = sent["UpdateEndpoint"][0]
    routing = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY" and routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 10}
    rollback_alarms = update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert sorted(a["AlarmName"] for a in rollback_alarms) == ["air-Blue-5xx", "air-Blue-p99"]
    alarms = boto3.client("cloudwatch", region_name="us-east-1").describe_alarms()["MetricAlarms"]
    by_metric = {a["MetricName"]: a for a in alarms}
    assert by_metric["ModelLatency"]["Threshold"] == 250_000 and by_metric["ModelLatency"]["ExtendedStatistic"] == "p99"
    assert {d["Name"]: d["Value"] for d in by_metric["Invocation5XXErrors"]["Dimensions"]} == {
        "EndpointName": "air", "VariantName": "Blue"}  # fmt: skip
    aws.delete_endpoint("air")
    aws.delete_endpoint("air")  # missing: not an error
    assert boto3.client("sagemaker", region_name="us-east-1").list_endpoints()["Endpoints"] == []


def test_deployment_config_shapes():
    canary = deployment_config({"kind": "canary", "percent": 10, "baking_s": 60}, ["a", "b"])
    routing = canary["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                       "WaitIntervalInSeconds": 60}  # fmt: skip
    assert canary["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "a"}, {"AlarmName": "b"}]}
    linear = deployment_config({"kind": "linear", "percent": 20, "interval_s": 30, "baking_s": 90}, [])
    assert linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["LinearStepSize"]["Value"] == 20
    assert linear["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 90
    everything = deployment_config({"kind": "all", "baking_s": 0}, [])
    assert everything["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
