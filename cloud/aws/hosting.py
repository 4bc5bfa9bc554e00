"""aws hosting backend: SageMaker Runtime's InvokeEndpoint through boto3; endpoint updates come with issue #6.

SageMakerRuntimeInvoker holds the invoke call both hosting backends share: the local one only
points boto3's endpoint_url at the local endpoint server.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from cloud.aws.pending import PendingAwsBackend
from cloud.interfaces import BackendUnavailable, Hosting, Invocation, InvocationError, VariantSpec


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


class SageMakerHosting(PendingAwsBackend, SageMakerRuntimeInvoker, Hosting):
    """SageMaker real-time endpoints: invoke works now; creating/updating endpoints is issue #6."""

    issue = 6

    def __init__(self, region: str = "us-east-1", **options: object) -> None:
        PendingAwsBackend.__init__(self, region, **options)
        SageMakerRuntimeInvoker.__init__(self)

    def make_runtime_client(self) -> Any:
        return boto3.client("sagemaker-runtime", region_name=self.region)

    def apply_endpoint(self, endpoint_name: str, variants: list[VariantSpec]) -> None:
        raise self.pending("apply_endpoint")

    def ping(self) -> None:
        try:
            boto3.client("sagemaker", region_name=self.region).list_endpoints(MaxResults=1)
        except (ClientError, BotoCoreError) as exc:
            raise BackendUnavailable(f"SageMaker cannot be reached in {self.region}: {exc}") from exc
