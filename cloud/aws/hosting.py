"""aws hosting backend: SageMaker endpoints (models, endpoint configs, weights, blue/green guardrails) and
SageMaker Runtime's InvokeEndpoint through boto3.

SageMakerRuntimeInvoker holds the invoke call both hosting backends share: the local one only
points boto3's endpoint_url at the local endpoint server.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from cloud.interfaces import BackendError, BackendUnavailable, Hosting, Invocation, InvocationError, VariantSpec


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
        """Create the CloudWatch alarms auto-rollback watches (5xx errors, p99 model latency); return their names."""
        cloudwatch = self.client("cloudwatch")
        dimensions = [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": variant}]
        common = {"Namespace": "AWS/SageMaker", "Dimensions": dimensions, "Period": 60, "EvaluationPeriods": 1,
                  "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"}  # fmt: skip
        errors = _safe(f"{endpoint_name}-{variant}-5xx")
        cloudwatch.put_metric_alarm(
            AlarmName=errors, MetricName="Invocation5XXErrors", Statistic="Sum",
            Threshold=float(alarms.get("max_errors_per_minute", 0)), **common,
        )  # fmt: skip
        latency = _safe(f"{endpoint_name}-{variant}-p99")
        cloudwatch.put_metric_alarm(
            AlarmName=latency, MetricName="ModelLatency", ExtendedStatistic="p99",
            Threshold=float(alarms.get("max_p99_ms", 2000)) * 1000, **common,  # ModelLatency is in microseconds
        )  # fmt: skip
        return [errors, latency]

    def managed_rollout(self, endpoint_name: str, variants: list[VariantSpec], policy: dict[str, Any]) -> bool:
        """UpdateEndpoint with a blue/green DeploymentConfig; SageMaker shifts, bakes and rolls back by itself.

        Returns True once InService on the new config; raises BackendError when SageMaker rolled back.
        """
        watched = policy.get("variant") or variants[0].name
        names = self.alarms_ensure(endpoint_name, watched, policy.get("alarms") or {})
        self._update(endpoint_name, variants, deployment_config(policy, names))
        return True

    def ping(self) -> None:
        try:
            self.client().list_endpoints(MaxResults=1)
        except (ClientError, BotoCoreError) as exc:
            raise BackendUnavailable(f"SageMaker cannot be reached in {self.region}: {exc}") from exc
