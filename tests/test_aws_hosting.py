"""The aws hosting backend against moto: the exact SageMaker and CloudWatch calls real AWS would receive."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import boto3
import pytest

from cloud.aws.hosting import SageMakerHosting, deployment_config
from cloud.interfaces import BackendError, VariantSpec
from tests.conftest import install_lake

ROLE = "arn:aws:iam::123456789012:role/iotcast-sagemaker"
KEY = "models/deepar-1/output/model.tar.gz"


@pytest.fixture
def aws(mocked_aws, settings):
    from cloud.backends import get_backend

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="iotcast-lake")
    install_lake(settings, "cloud.lake.S3Lake", "s3://iotcast-lake")
    yield SageMakerHosting("us-east-1", role_arn=ROLE, poll_s=0.01, timeout_s=5)
    get_backend.cache_clear()


def variants(weight_b: float = 1.0) -> list[VariantSpec]:
    return [
        VariantSpec("Blue", "deepar-1", KEY, 3.0),
        VariantSpec("Green", "deepar-2", KEY.replace("-1", "-2"), weight_b, instance_count=2),
        VariantSpec("Shadow", "deepar-2", KEY.replace("-1", "-2"), 0.5, shadow=True),
    ]


def record_calls(backend: SageMakerHosting, monkeypatch) -> dict[str, list[dict]]:
    """Record the parameters of CreateEndpointConfig and UpdateEndpoint as boto3 sends them.

    moto keeps no shadow variants and has no UpdateEndpoint: the UpdateEndpoint request is answered here, the
    way SageMaker acknowledges it, after its wire body was recorded.
    """
    calls: dict[str, list[dict]] = {"CreateEndpointConfig": [], "UpdateEndpoint": []}
    real_client = backend.client

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

    monkeypatch.setattr(backend, "client", recording_client)
    return calls


@pytest.fixture
def sent(aws, monkeypatch) -> dict[str, list[dict]]:
    return record_calls(aws, monkeypatch)


@pytest.fixture
def aws_backend(aws, settings, monkeypatch) -> tuple[SageMakerHosting, dict[str, list[dict]]]:
    """SageMakerHosting installed as CLOUD_BACKENDS["hosting"] (what the services and the REST proxy use),
    with its SageMaker calls recorded as in `sent`."""
    from cloud.backends import get_backend

    backends = dict(settings.CLOUD_BACKENDS)
    options = {"region": "us-east-1", "role_arn": ROLE, "poll_s": 0.01, "timeout_s": 5}
    backends["hosting"] = {"BACKEND": "cloud.aws.hosting.SageMakerHosting", "OPTIONS": options}
    settings.CLOUD_BACKENDS = backends
    hosting = get_backend("hosting")
    assert isinstance(hosting, SageMakerHosting)
    return hosting, record_calls(hosting, monkeypatch)


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
    assert sorted(a["AlarmName"] for a in rollback_alarms) == ["air-Blue-error-rate", "air-Blue-p99"]
    alarms = {
        a["AlarmName"]: a for a in boto3.client("cloudwatch", region_name="us-east-1").describe_alarms()["MetricAlarms"]
    }
    latency = alarms["air-Blue-p99"]
    assert latency["Threshold"] == 250_000 and latency["ExtendedStatistic"] == "p99"
    assert {d["Name"]: d["Value"] for d in latency["Dimensions"]} == {"EndpointName": "air", "VariantName": "Blue"}
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


def metric_dimensions(variant: str) -> list[dict]:
    return [{"Name": "EndpointName", "Value": "air"}, {"Name": "VariantName", "Value": variant}]


def test_error_rate_guardrail_is_a_metric_math_alarm(aws):
    names = aws.alarms_ensure("air", "Blue", {"max_error_rate": 0.02, "min_invocations": 20, "max_p99_ms": 80})
    alarms = {
        a["AlarmName"]: a for a in boto3.client("cloudwatch", region_name="us-east-1").describe_alarms()["MetricAlarms"]
    }
    assert sorted(alarms) == sorted(names) == ["air-Blue-error-rate", "air-Blue-p99"]
    rate = alarms["air-Blue-error-rate"]
    assert rate["Threshold"] == 0.02 and rate["ComparisonOperator"] == "GreaterThanThreshold"
    queries = {q["Id"]: q for q in rate["Metrics"]}
    assert queries["rate"]["Expression"] == "IF(calls >= 20, errors / calls, 0)" and queries["rate"]["ReturnData"]
    for query_id, metric in (("errors", "Invocation5XXErrors"), ("calls", "Invocations")):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"]["MetricName"] == metric and stat["Stat"] == "Sum" and stat["Period"] == 60
        assert stat["Metric"]["Namespace"] == "AWS/SageMaker" and stat["Metric"]["Dimensions"] == metric_dimensions(
            "Blue"
        )
    assert alarms["air-Blue-p99"]["Threshold"] == 80_000


def test_accuracy_guardrails_are_refused_on_aws_before_any_alarm(aws):
    from cloud.aws.hosting import GuardrailUnsupported

    with pytest.raises(GuardrailUnsupported, match="max_wql_increase"):
        aws.alarms_ensure("air", "Blue", {"max_error_rate": 0.02, "max_wql_increase": 0.1})
    assert boto3.client("cloudwatch", region_name="us-east-1").describe_alarms()["MetricAlarms"] == []
    aws.alarms_ensure("air", "Blue", {"max_wql_increase": None})  # null: the guardrail is off, nothing to refuse


@pytest.fixture
def percentiles_as_maximum(aws, monkeypatch) -> list[dict]:
    """Record GetMetricData's queries as sent; then ask moto, which computes no percentiles, for the Maximum
    where a p99 was asked (with one datum a minute, as in these tests, both are that datum)."""
    sent_queries: list[dict] = []
    real_client = aws.client

    def rewrite(params, **_):
        sent_queries.extend(json.loads(json.dumps(params["MetricDataQueries"])))
        for query in params["MetricDataQueries"]:
            if query.get("MetricStat", {}).get("Stat") == "p99":
                query["MetricStat"]["Stat"] = "Maximum"

    def client(service: str = "sagemaker"):
        made = real_client(service)
        made.meta.events.register("provide-client-params.cloudwatch.GetMetricData", rewrite)
        return made

    monkeypatch.setattr(aws, "client", client)
    return sent_queries


def test_variant_metrics_read_cloudwatch_like_the_local_backend(aws, sent, percentiles_as_maximum):
    from datetime import UTC, datetime

    aws.apply_endpoint("air", [*variants(), VariantSpec("Idle", "deepar-1", KEY, 0.5)])
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    minute = int(time.time()) // 60 * 60 - 120  # two whole minutes ago
    data = {  # per minute: Blue 10 then 30 calls; latencies in microseconds as SageMaker publishes them
        "Blue": [(minute, {"Invocations": 10, "Invocation4XXErrors": 1, "Invocation5XXErrors": 2,
                           "ModelLatency": 20_000, "OverheadLatency": 3_000}),
                 (minute + 60, {"Invocations": 30, "Invocation4XXErrors": 0, "Invocation5XXErrors": 1,
                                "ModelLatency": 40_000, "OverheadLatency": 1_000})],
        "Green": [(minute + 60, {"Invocations": 5, "ModelLatency": 8_000})],
    }  # fmt: skip
    for variant, minutes in data.items():
        for at, values in minutes:
            cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
                {"MetricName": name, "Dimensions": metric_dimensions(variant), "Value": float(value),
                 "Timestamp": datetime.fromtimestamp(at + 5, UTC)}
                for name, value in values.items()
            ])  # fmt: skip
    metrics = aws.variant_metrics("air", minute - 300, period=10)
    assert (
        metrics["period"] == 60 and metrics["since"] % 60 == 0 and set(metrics["variants"]) == {"Blue", "Green", "Idle"}
    )
    blue = metrics["variants"]["Blue"]
    assert [p["t"] for p in blue["points"]] == [minute, minute + 60]
    first, second = blue["points"]
    assert (first["invocations"], first["errors_4xx"], first["errors_5xx"]) == (10, 1, 2)
    assert (first["model_latency_ms"], first["overhead_latency_ms"]) == (20.0, 3.0)
    assert (second["invocations"], second["errors_5xx"], second["model_latency_ms"]) == (30, 1, 40.0)
    total = blue["total"]
    assert (total["invocations"], total["errors_4xx"], total["errors_5xx"]) == (40, 1, 3)
    assert total["model_latency_ms"] == 35.0 and total["overhead_latency_ms"] == 1.5  # weighted by invocations
    assert (first["p99_latency_ms"], second["p99_latency_ms"], total["p99_latency_ms"]) == (20.0, 40.0, 40.0)
    stats = [q["MetricStat"] for q in percentiles_as_maximum]
    asked = {(m["Metric"]["MetricName"], m["Stat"], m["Period"]) for m in stats
             if m["Metric"]["Dimensions"] == metric_dimensions("Blue")}  # fmt: skip
    assert ("ModelLatency", "p99", 60) in asked and ("OverheadLatency", "Average", 60) in asked
    assert ("Invocation4XXErrors", "Sum", 60) in asked and ("Invocation5XXErrors", "Sum", 60) in asked
    green = metrics["variants"]["Green"]
    assert green["total"]["invocations"] == 5 and green["points"][0]["errors_5xx"] == 0
    assert metrics["variants"]["Idle"] == {"points": [], "total": {**green["total"], "invocations": 0,
                                             "model_latency_ms": 0.0, "p99_latency_ms": None}}  # fmt: skip
    assert aws.variant_metrics("air", time.time() + 600, 60)["variants"]["Blue"]["points"] == []
    with pytest.raises(BackendError, match="nope"):
        aws.variant_metrics("nope", minute, 60)


DEEPAR_REQUEST = {
    "instances": [{"start": "2026-11-01 00:00:00", "target": [1.0, 2.5, 3.0]}],
    "configuration": {"num_samples": 50, "output_types": ["mean", "quantiles"], "quantiles": ["0.5"]},
}
DEEPAR_ANSWER = {"predictions": [{"mean": [2.0, 2.1], "quantiles": {"0.5": [2.0, 2.2]}}]}


@pytest.fixture
def api(db):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    user = get_user_model().objects.create_user("sdk-user")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_the_rest_proxy_invokes_sagemaker_runtime_on_aws(aws_backend, api):
    import requests

    hosting, _ = aws_backend
    results = {"results": [{"Body": json.dumps(DEEPAR_ANSWER), "ContentType": "application/json",
                            "InvokedProductionVariant": "Green"}]}  # fmt: skip
    queued = requests.post("http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results", json=results)
    assert queued.status_code == 201
    wire: list = []
    hosting.runtime_client().meta.events.register(
        "request-created.sagemaker-runtime.InvokeEndpoint", lambda request, **_: wire.append(request)
    )
    body = json.dumps(DEEPAR_REQUEST).encode()
    response = api.post("/api/v1/endpoints/air/invocations", body, content_type="application/json",
                        HTTP_X_AMZN_SAGEMAKER_TARGET_VARIANT="Green",
                        HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES="seed=7")  # fmt: skip
    assert response.status_code == 200 and response.json() == DEEPAR_ANSWER
    assert response["X-Amzn-Invoked-Production-Variant"] == "Green"
    (request,) = wire  # what SageMaker Runtime receives
    assert request.method == "POST" and request.url.endswith("/endpoints/air/invocations")
    assert request.url.startswith("https://runtime.sagemaker.us-east-1.amazonaws.com")
    assert request.headers["Content-Type"] == "application/json" and request.headers["Accept"] == "application/json"
    assert request.headers["X-Amzn-SageMaker-Target-Variant"] == "Green"
    assert request.headers["X-Amzn-SageMaker-Custom-Attributes"] == "seed=7" and request.body == body


def test_the_rest_proxy_passes_sagemakers_model_error_through(aws_backend, api):
    from botocore.stub import Stubber

    hosting, _ = aws_backend
    body = json.dumps(DEEPAR_REQUEST).encode()
    expected = {"EndpointName": "air", "Body": body, "ContentType": "application/json", "Accept": "application/json"}
    with Stubber(hosting.runtime_client()) as stubber:
        stubber.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424,
                                 service_message='Received server error (500) from primary with message "boom"',
                                 expected_params=expected)  # fmt: skip
        response = api.post("/api/v1/endpoints/air/invocations", body, content_type="application/json")
        stubber.assert_no_pending_responses()
    assert response.status_code == 424 and response.json()["error_type"] == "ModelError"
    assert "boom" in response.json()["message"]


def test_deploy_command_maps_its_guardrails_onto_sagemakers_rollback_alarms(aws_backend, db):
    from django.core.management import CommandError, call_command

    from deployments.models import Endpoint
    from deployments.services import deploy_execute
    from forecasts.models import TrainedModel

    _, sent = aws_backend
    for name, key in (("deepar-1", KEY), ("deepar-2", KEY.replace("-1", "-2"))):
        TrainedModel.objects.create(name=name, metric="ozone", artifact_key=key)
    deploy_execute({"model": "deepar-1", "endpoint": "air"})
    call_command("deploy", "--model", "deepar-2", "--endpoint", "air", "--policy", "canary:10:60",
                 "--max-error-rate", "0.02")  # fmt: skip
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert alarms["air-AllTraffic-error-rate"]["Threshold"] == 0.02
    assert alarms["air-AllTraffic-p99"]["Threshold"] == 2_000_000  # the rollouts' default p99, in microseconds
    rollback = sent["UpdateEndpoint"][-1]["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert sorted(a["AlarmName"] for a in rollback) == sorted(alarms)
    assert Endpoint.objects.get(name="air").variants.get(name="AllTraffic").model.name == "deepar-2"
    updates = len(sent["UpdateEndpoint"])
    with pytest.raises(CommandError, match="max_wql_increase"):
        call_command("deploy", "--model", "deepar-1", "--endpoint", "air", "--policy", "canary:10:60",
                     "--max-wql-increase", "0.1")  # fmt: skip
    endpoint = Endpoint.objects.get(name="air")
    assert endpoint.status == "InService" and endpoint.variants.get(name="AllTraffic").model.name == "deepar-2"
    assert len(sent["UpdateEndpoint"]) == updates  # refused before SageMaker was asked anything
