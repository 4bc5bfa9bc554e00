"""aws hosting backend: SageMaker endpoints (models, endpoint configs, weights, blue/green guardrails) and
SageMaker Runtime's InvokeEndpoint through boto3.

SageMakerRuntimeInvoker holds the invoke call both hosting backends share: the local one only
points boto3's endpoint_url at the local endpoint server.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from cloud.interfaces import (
    BackendError,
    BackendUnavailable,
    Hosting,
    Invocation,
    InvocationError,
    ShadowRecord,
    VariantSpec,
)

CAPTURE_ENV = "IOTCAST_SAGEMAKER_CAPTURE_S3_URI"


class SageMakerRuntimeInvoker:
    """invoke() via boto3's sagemaker-runtime client; subclasses say how the client is built."""

    def __init__(self) -> None:
        self._client: Any = None
        self._client_lock = threading.Lock()

    def make_runtime_client(self) -> Any:
        """Return a new sagemaker-runtime client."""
        raise NotImplementedError

    def runtime_client(self) -> Any:
        """Return the (thread-safe, reused) sagemaker-runtime client."""
        with self._client_lock:
            if self._client is None:
                self._client = self.make_runtime_client()
            return self._client

    def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str = "application/json",
        accept: str = "application/json",
        target_variant: str | None = None,
        custom_attributes: str | None = None,
    ) -> Invocation:
        """Invoke the endpoint; raise InvocationError for an error answer, BackendUnavailable when unreachable."""
        kwargs: dict[str, Any] = {"EndpointName": endpoint_name, "Body": body, "ContentType": content_type}
        kwargs["Accept"] = accept
        if target_variant:
            kwargs["TargetVariant"] = target_variant
        if custom_attributes:
            kwargs["CustomAttributes"] = custom_attributes
        try:
            response = self.runtime_client().invoke_endpoint(**kwargs)
            answer = response["Body"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            raise InvocationError(status, error.get("Message") or str(exc), error.get("Code", "")) from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise BackendUnavailable(f"endpoint {endpoint_name} cannot be reached: {exc}") from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(f"invoking endpoint {endpoint_name} failed: {exc}") from exc
        variant = response.get("InvokedProductionVariant", "")
        return Invocation(body=answer, content_type=response.get("ContentType", accept), invoked_variant=variant)


ACCURACY_GUARDRAILS = ("max_wql_increase", "max_wql")
# (field of variant_metrics, SageMaker metric, statistic, factor to the field's unit): latencies are microseconds.
VARIANT_METRICS = (
    ("invocations", "Invocations", "Sum", 1.0),
    ("errors_4xx", "Invocation4XXErrors", "Sum", 1.0),
    ("errors_5xx", "Invocation5XXErrors", "Sum", 1.0),
    ("model_latency_ms", "ModelLatency", "Average", 0.001),
    ("overhead_latency_ms", "OverheadLatency", "Average", 0.001),
    ("p99_latency_ms", "ModelLatency", "p99", 0.001),
)


class GuardrailUnsupported(ValueError):
    """The rollout asks for a guardrail that SageMaker's auto-rollback cannot watch; the message says which."""


def _dimensions(endpoint_name: str, variant: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": variant}]


def _stat(dimensions: list[dict[str, str]], metric: str, stat: str, period: int) -> dict[str, Any]:
    metric_spec = {"Namespace": "AWS/SageMaker", "MetricName": metric, "Dimensions": dimensions}
    return {"Metric": metric_spec, "Period": period, "Stat": stat}


def error_rate_queries(dimensions: list[dict[str, str]], min_invocations: int) -> list[dict[str, Any]]:
    """Return the metric math of the error-rate alarm: 5xx errors / invocations per minute, 0 below
    min_invocations (a single failed call out of one must not roll a deployment back unless asked)."""
    return [
        {"Id": "errors", "MetricStat": _stat(dimensions, "Invocation5XXErrors", "Sum", 60), "ReturnData": False},
        {"Id": "calls", "MetricStat": _stat(dimensions, "Invocations", "Sum", 60), "ReturnData": False},
        {"Id": "rate", "Expression": f"IF(calls >= {max(1, min_invocations)}, errors / calls, 0)",
         "Label": "5xx error rate", "ReturnData": True},
    ]  # fmt: skip


def metric_queries(endpoint_name: str, variants: list[str], period: int, window: int) -> list[dict[str, Any]]:
    """Return GetMetricData queries: v{i}_{j} per period for VARIANT_METRICS[j] of variants[i], and
    t{i} (p99 over the whole window, rounded up to minutes) for the totals."""
    queries = []
    for i, name in enumerate(variants):
        dimensions = _dimensions(endpoint_name, name)
        for j, (_, metric, stat, _) in enumerate(VARIANT_METRICS):
            queries.append({"Id": f"v{i}_{j}", "MetricStat": _stat(dimensions, metric, stat, period)})
        whole = -(-window // 60) * 60
        queries.append({"Id": f"t{i}", "MetricStat": _stat(dimensions, "ModelLatency", "p99", whole)})
    return queries


def variant_series(series: dict[str, dict[int, float]], index: int) -> dict[str, Any]:
    """Return {"points", "total"} of variant index from GetMetricData's series (see metric_queries)."""
    columns = {field: series.get(f"v{index}_{j}", {}) for j, (field, *_) in enumerate(VARIANT_METRICS)}
    factors = {field: factor for field, _, _, factor in VARIANT_METRICS}
    points = []
    for at in sorted(set().union(*columns.values())):
        point: dict[str, Any] = {"t": at}
        for field, values in columns.items():
            value = values.get(at)
            point[field] = None if value is None else round(value * factors[field], 3)
        for field in ("invocations", "errors_4xx", "errors_5xx"):
            point[field] = int(point[field] or 0)
        points.append(point)
    total_p99 = max(series.get(f"t{index}", {}).values(), default=None)
    return {"points": points, "total": _totals(points, None if total_p99 is None else round(total_p99 / 1000, 3))}


def _totals(points: list[dict[str, Any]], p99_ms: float | None) -> dict[str, Any]:
    calls = sum(p["invocations"] for p in points)

    def mean(field: str) -> float:  # the per-period averages weighted by their invocations
        weighted = sum((p[field] or 0) * p["invocations"] for p in points)
        return round(weighted / calls, 3) if calls else 0.0

    return {
        "invocations": calls, "errors_4xx": sum(p["errors_4xx"] for p in points),
        "errors_5xx": sum(p["errors_5xx"] for p in points), "model_latency_ms": mean("model_latency_ms"),
        "overhead_latency_ms": mean("overhead_latency_ms"), "p99_latency_ms": p99_ms,
    }  # fmt: skip


def _deepar_image(region: str) -> str:
    from sagemaker.core import image_uris

    return image_uris.retrieve("forecasting-deepar", region)


def _safe(name: str) -> str:
    """Return name in SageMaker's [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} form."""
    cleaned = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-")
    return (cleaned or "x")[:63].rstrip("-")


def deployment_config(policy: dict[str, Any], alarm_names: list[str]) -> dict[str, Any]:
    """Return UpdateEndpoint's DeploymentConfig (blue/green, CANARY / LINEAR / ALL_AT_ONCE, auto-rollback)."""
    kind, percent = policy.get("kind", "all"), float(policy.get("percent", 100))
    baking = int(policy.get("baking_s", 0))
    routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": baking}
    if kind == "canary":
        size = {"Type": "CAPACITY_PERCENT", "Value": max(1, round(percent))}
        routing = {"Type": "CANARY", "CanarySize": size, "WaitIntervalInSeconds": baking}
    elif kind == "linear":
        size = {"Type": "CAPACITY_PERCENT", "Value": max(1, round(percent))}
        interval = int(policy.get("interval_s", 0))
        routing = {"Type": "LINEAR", "LinearStepSize": size, "WaitIntervalInSeconds": interval}
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": baking,
            "MaximumExecutionTimeoutInSeconds": max(600, 4 * baking + 600),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarm_names]},
    }


def data_capture_config(capture_s3_uri: str) -> dict[str, Any]:
    """Return the DataCaptureConfig that makes SageMaker write every request and answer (shadow variants' too)."""
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": capture_s3_uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }


def _captured_text(part: dict[str, Any]) -> str:
    data = part.get("data", "")
    return base64.b64decode(data).decode(errors="replace") if part.get("encoding") == "BASE64" else data


def capture_record(line: bytes, variant: str) -> ShadowRecord | None:
    """Return the ShadowRecord of one line of SageMaker's data capture, None for a line that is not one.

    Data capture keeps no latencies and only the shadow's side: those fields stay empty.
    """
    try:
        raw = json.loads(line)
        output = raw["captureData"]["endpointOutput"]
        stamp = datetime.fromisoformat(raw["eventMetadata"]["inferenceTime"].replace("Z", "+00:00"))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None
    return ShadowRecord(at=stamp.timestamp(), variant=variant, status=200, answer=_captured_text(output)[:65536])


class SageMakerHosting(SageMakerRuntimeInvoker, Hosting):
    """SageMaker real-time endpoints: models, endpoint configs, endpoints, weights, guarded blue/green updates."""

    def __init__(
        self,
        region: str = "us-east-1",
        role_arn: str | None = None,
        instance_type: str = "ml.c5.large",
        poll_s: float = 15.0,
        timeout_s: float = 3600.0,
        **options: object,
    ) -> None:
        SageMakerRuntimeInvoker.__init__(self)
        self.region, self.instance_type, self.poll_s, self.timeout_s = region, instance_type, poll_s, timeout_s
        self.role_arn = role_arn or os.environ.get("IOTCAST_SAGEMAKER_ROLE_ARN", "")
        # Where data capture writes requests and answers (s3://bucket/prefix): the only record SageMaker keeps of
        # what a shadow variant answered.
        self.capture_s3_uri = str(options.pop("capture_s3_uri", "") or os.environ.get(CAPTURE_ENV, "")).rstrip("/")
        self.options = options

    def make_runtime_client(self) -> Any:
        return boto3.client("sagemaker-runtime", region_name=self.region)

    def client(self, service: str = "sagemaker") -> Any:
        return boto3.client(service, region_name=self.region)

    # --- models and configs ---------------------------------------------------------------------------
    def model_data_url(self, artifact_key: str) -> str:
        """Return the artifact's s3:// URL in the lake; raise BackendError when the lake is not on S3."""
        from cloud.backends import get_backend

        lake = get_backend("lake")
        bucket = getattr(lake, "bucket", None)
        if bucket is None:
            raise BackendError("SageMaker endpoints load models from S3: set IOTCAST_LAKE_URL to an s3:// lake")
        prefix = getattr(lake, "prefix", "")
        return f"s3://{bucket}/{prefix + '/' if prefix else ''}{artifact_key}"

    def model_ensure(self, variant: VariantSpec) -> str:
        """Create the SageMaker model for the variant's artifact unless it exists; return its name."""
        name = _safe(variant.model_name)
        sagemaker = self.client()
        try:
            sagemaker.describe_model(ModelName=name)
            return name
        except ClientError:
            pass
        if not self.role_arn:
            raise BackendError("set IOTCAST_SAGEMAKER_ROLE_ARN (or the role_arn option) to a SageMaker execution role")
        container = {"Image": _deepar_image(self.region), "ModelDataUrl": self.model_data_url(variant.artifact_key)}
        sagemaker.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=self.role_arn)
        return name

    def config_create(self, endpoint_name: str, variants: list[VariantSpec]) -> str:
        """Create an endpoint config with the production (and shadow) variants; return its name."""

        def spec(v: VariantSpec) -> dict[str, Any]:
            return {
                "VariantName": v.name, "ModelName": self.model_ensure(v), "InitialInstanceCount": v.instance_count,
                "InstanceType": self.instance_type, "InitialVariantWeight": float(v.weight),
            }  # fmt: skip

        name = _safe(f"{endpoint_name}-{time.strftime('%Y%m%d%H%M%S')}-{int(time.time() * 1000) % 1000:03d}")
        request: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": [spec(v) for v in variants if not v.shadow],
        }
        shadows = [spec(v) for v in variants if v.shadow]
        if shadows:
            request["ShadowProductionVariants"] = shadows
            if self.capture_s3_uri:
                request["DataCaptureConfig"] = data_capture_config(self.capture_s3_uri)
        self.client().create_endpoint_config(**request)
        return name

    # --- endpoints ----------------------------------------------------------------------------------
    def _exists(self, endpoint_name: str) -> bool:
        try:
            self.client().describe_endpoint(EndpointName=endpoint_name)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationException" or "not found" in str(exc).lower():
                return False
            raise

    def wait_in_service(self, endpoint_name: str) -> dict[str, Any]:
        """Poll describe_endpoint until InService; raise BackendError on Failed or a rollback, or on timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            described = self.client().describe_endpoint(EndpointName=endpoint_name)
            status = described["EndpointStatus"]
            if status == "InService":
                return described
            if status in {"Failed", "RollingBack", "OutOfService"}:
                raise BackendError(f"endpoint {endpoint_name} is {status}: {described.get('FailureReason', '')}")
            if time.monotonic() > deadline:
                raise BackendError(f"endpoint {endpoint_name} not InService after {self.timeout_s:.0f} s ({status})")
            time.sleep(self.poll_s)

    def _update(self, endpoint_name: str, variants: list[VariantSpec], deployment: dict | None = None) -> None:
        try:
            config = self.config_create(endpoint_name, variants)
            sagemaker = self.client()
            if not self._exists(endpoint_name):
                sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config)
            elif deployment:
                sagemaker.update_endpoint(
                    EndpointName=endpoint_name, EndpointConfigName=config, DeploymentConfig=deployment
                )
            else:
                sagemaker.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config)
        except ClientError as exc:
            raise BackendError(f"SageMaker refused the update of {endpoint_name}: {exc}") from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(f"SageMaker cannot be reached in {self.region}: {exc}") from exc
        self.wait_in_service(endpoint_name)

    def apply_endpoint(self, endpoint_name: str, variants: list[VariantSpec]) -> None:
        """Create models and a new endpoint config, create or update the endpoint, wait until InService."""
        self._update(endpoint_name, variants)

    def update_weights(self, endpoint_name: str, variants: list[VariantSpec]) -> None:
        """UpdateEndpointWeightsAndCapacities for the production variants; wait until InService."""
        desired = [
            {"VariantName": v.name, "DesiredWeight": float(v.weight), "DesiredInstanceCount": v.instance_count}
            for v in variants
            if not v.shadow
        ]
        try:
            self.client().update_endpoint_weights_and_capacities(
                EndpointName=endpoint_name, DesiredWeightsAndCapacities=desired
            )
        except ClientError as exc:
            raise BackendError(f"SageMaker refused the weights of {endpoint_name}: {exc}") from exc
        self.wait_in_service(endpoint_name)

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Delete the endpoint (its configs and models stay, as SageMaker keeps them); a missing one is fine."""
        if not self._exists(endpoint_name):
            return
        self.client().delete_endpoint(EndpointName=endpoint_name)

    def alarms_ensure(self, endpoint_name: str, variant: str, alarms: dict[str, Any]) -> list[str]:
        """Create the CloudWatch alarms auto-rollback watches; return their names.

        alarms are the rollout's guardrails: max_error_rate (5xx share of the variant's invocations in a
        minute, counted once min_invocations arrived) and max_p99_ms (p99 ModelLatency). Raises
        GuardrailUnsupported for the forecast-accuracy guardrails (max_wql_increase, max_wql): SageMaker rolls
        back on CloudWatch alarms only, and no CloudWatch metric scores forecasts against actuals.
        """
        unsupported = sorted(key for key in ACCURACY_GUARDRAILS if alarms.get(key) is not None)
        if unsupported:
            raise GuardrailUnsupported(
                f"SageMaker's auto-rollback watches CloudWatch alarms only; {', '.join(unsupported)} (forecast "
                "accuracy against actuals) cannot guard a rollout on aws: leave it out (or null)"
            )
        cloudwatch = self.client("cloudwatch")
        dimensions = _dimensions(endpoint_name, variant)
        common = {"EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
                  "TreatMissingData": "notBreaching"}  # fmt: skip
        errors = _safe(f"{endpoint_name}-{variant}-error-rate")
        cloudwatch.put_metric_alarm(
            AlarmName=errors, Metrics=error_rate_queries(dimensions, int(alarms.get("min_invocations", 1))),
            Threshold=float(alarms.get("max_error_rate", 0.05)), **common,
        )  # fmt: skip
        latency = _safe(f"{endpoint_name}-{variant}-p99")  # ModelLatency is in microseconds
        cloudwatch.put_metric_alarm(
            AlarmName=latency, Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=dimensions,
            Period=60, ExtendedStatistic="p99", Threshold=float(alarms.get("max_p99_ms", 2000)) * 1000, **common,
        )  # fmt: skip
        return [errors, latency]

    # --- metrics ------------------------------------------------------------------------------------
    def _variant_names(self, endpoint_name: str) -> list[str]:
        try:
            described = self.client().describe_endpoint(EndpointName=endpoint_name)
        except ClientError as exc:
            raise BackendError(f"endpoint {endpoint_name} cannot be described: {exc}") from exc
        variants = described.get("ProductionVariants", []) + described.get("ShadowProductionVariants", [])
        return [v["VariantName"] for v in variants]

    def variant_metrics(self, endpoint_name: str, since: float, period: int = 10) -> dict[str, Any]:
        """Return the variants' CloudWatch metrics (AWS/SageMaker) since epoch seconds, shaped like the local
        backend's: {"period", "since", "variants": {name: {"points": [{t, invocations, errors_4xx, errors_5xx,
        model_latency_ms, overhead_latency_ms, p99_latency_ms}], "total": {...}}}}.

        SageMaker publishes one-minute data, so period is rounded up to whole minutes; p99_latency_ms is the
        p99 of ModelLatency. Raises BackendError for an unknown endpoint, BackendUnavailable when unreachable.
        """
        period = max(60, -(-int(period) // 60) * 60)
        start = int(since) - int(since) % period
        end = int(time.time()) + 1
        names = self._variant_names(endpoint_name)
        queries = metric_queries(endpoint_name, names, period, end - start)
        series = self._metric_data(queries, start, end) if queries and start < end else {}
        variants = {name: variant_series(series, index) for index, name in enumerate(names)}
        return {"period": period, "since": start, "variants": variants}

    def _metric_data(self, queries: list[dict[str, Any]], start: int, end: int) -> dict[str, dict[int, float]]:
        """Return {query id: {epoch second: value}} of GetMetricData (all pages)."""
        series: dict[str, dict[int, float]] = {}
        pages = (
            self.client("cloudwatch")
            .get_paginator("get_metric_data")
            .paginate(MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending")
        )
        try:
            for page in pages:
                for result in page["MetricDataResults"]:
                    values = zip(result["Timestamps"], result["Values"], strict=True)
                    series.setdefault(result["Id"], {}).update(
                        {int(at.timestamp()): value for at, value in values if value is not None}
                    )
        except (ConnectionError, HTTPClientError) as exc:
            raise BackendUnavailable(f"CloudWatch cannot be reached in {self.region}: {exc}") from exc
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"CloudWatch GetMetricData failed: {exc}") from exc
        return series

    def managed_rollout(self, endpoint_name: str, variants: list[VariantSpec], policy: dict[str, Any]) -> bool:
        """UpdateEndpoint with a blue/green DeploymentConfig; SageMaker shifts, bakes and rolls back by itself.

        Returns True once InService on the new config; raises BackendError when SageMaker rolled back.
        """
        watched = policy.get("variant") or variants[0].name
        names = self.alarms_ensure(endpoint_name, watched, policy.get("alarms") or {})
        self._update(endpoint_name, variants, deployment_config(policy, names))
        return True

    # --- shadow answers ------------------------------------------------------------------------------
    def shadow_records(self, endpoint_name: str, limit: int = 20) -> list[ShadowRecord]:
        """Return the newest shadow answers SageMaker's data capture wrote under capture_s3_uri, newest first.

        Raises NotImplementedError without a capture location, BackendError for an unknown endpoint or a
        refused read.
        """
        if not self.capture_s3_uri:
            raise NotImplementedError(
                "SageMaker keeps shadow answers only through data capture to S3: set "
                f"{CAPTURE_ENV} (or the capture_s3_uri option) and redeploy the shadow variant"
            )
        try:
            described = self.client().describe_endpoint(EndpointName=endpoint_name)
            production = {v["VariantName"] for v in described.get("ProductionVariants", [])}
            objects = self._captured_objects(endpoint_name, production)
            return self._read_captured(objects, limit)
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"cannot read the shadow answers of {endpoint_name}: {exc}") from exc

    def _captured_objects(self, endpoint_name: str, production: set[str]) -> list[tuple[str, str, str]]:
        """Return (bucket, key, variant) of the captured files of the endpoint's non-production variants, newest
        first. Data capture writes <uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl."""
        location = urlparse(self.capture_s3_uri)
        bucket, prefix = location.netloc, "/".join(p for p in (location.path.strip("/"), endpoint_name) if p) + "/"
        found = []
        for page in self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                variant = item["Key"][len(prefix) :].split("/", 1)[0]
                if variant not in production:
                    found.append((item["LastModified"], bucket, item["Key"], variant))
        return [(bucket, key, variant) for _, bucket, key, variant in sorted(found, reverse=True)]

    def _read_captured(self, objects: list[tuple[str, str, str]], limit: int) -> list[ShadowRecord]:
        """Return up to limit records from the captured files (newest first), newest line first."""
        s3, records = self.client("s3"), []
        for bucket, key, variant in objects:
            lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
            records += [r for r in (capture_record(line, variant) for line in reversed(lines)) if r is not None]
            if len(records) >= limit:
                break
        return sorted(records, key=lambda r: r.at, reverse=True)[:limit]

    def ping(self) -> None:
        try:
            self.client().list_endpoints(MaxResults=1)
        except (ClientError, BotoCoreError) as exc:
            raise BackendUnavailable(f"SageMaker cannot be reached in {self.region}: {exc}") from exc
