"""local hosting backend: the endpoint server's admin API for endpoints, SageMaker Runtime's API to invoke them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from cloud.aws.hosting import SageMakerRuntimeInvoker
from cloud.interfaces import BackendError, BackendUnavailable, Hosting, ShadowRecord, VariantSpec


class LocalEndpointHosting(SageMakerRuntimeInvoker, Hosting):
    """Endpoints served by dataplane.endpoint_server at endpoint_url; invoked with boto3 exactly as on AWS."""

    def __init__(self, endpoint_url: str, region: str = "us-east-1") -> None:
        super().__init__()
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region = region

    def make_runtime_client(self) -> Any:
        # One attempt: the local server is either there or not, and retries would only hide it. Unsigned: the
        # local server checks no signature, and SigV4 signing costs a share of every proxied invocation's CPU.
        config = Config(
            retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=60, signature_version=UNSIGNED
        )
        return boto3.session.Session().client(
            "sagemaker-runtime", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    def _request(self, method: str, path: str, payload: dict | None = None, timeout: float = 60) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.endpoint_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
            raise BackendError(f"endpoint server refused {method} {path}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise BackendUnavailable(f"endpoint server {self.endpoint_url} cannot be reached: {exc}") from exc

    def apply_endpoint(self, endpoint_name: str, variants: list[VariantSpec]) -> None:
        """PUT the variants to the server, which loads their models; raise BackendError when it refuses."""
        self._request("PUT", f"/admin/endpoints/{endpoint_name}", {"variants": [asdict(v) for v in variants]})

    def ping(self) -> None:
        self._request("GET", "/ping", timeout=5)

    def delete_endpoint(self, endpoint_name: str) -> None:
        """DELETE the endpoint on the server; a missing endpoint is not an error."""
        try:
            self._request("DELETE", f"/admin/endpoints/{endpoint_name}")
        except BackendUnavailable:
            raise
        except BackendError as exc:
            if "not found" not in str(exc):
                raise

    def variant_metrics(self, endpoint_name: str, since: float, period: int = 10) -> dict[str, Any]:
        """Return the server's per-variant metrics of the endpoint (all worker processes merged)."""
        query = urlencode({"since": int(since), "period": int(period)})
        return self._request("GET", f"/admin/endpoints/{endpoint_name}/metrics?{query}", timeout=10)

    def shadow_records(self, endpoint_name: str, limit: int = 20) -> list[ShadowRecord]:
        """Return the server's newest shadow records of the endpoint, newest first (all workers' merged)."""
        query = urlencode({"limit": int(limit)})
        answer = self._request("GET", f"/admin/endpoints/{endpoint_name}/shadow?{query}", timeout=10)
        return [shadow_record(raw) for raw in answer.get("records", [])]


def shadow_record(raw: dict[str, Any]) -> ShadowRecord:
    """Return the ShadowRecord of one line of the server's shadow log (older lines lack the latencies)."""
    production = raw.get("production") or {}
    return ShadowRecord(
        at=float(raw["t"]), variant=raw["variant"], status=int(raw["status"]), answer=raw.get("answer", ""),
        model=raw.get("model", ""), model_ms=raw.get("model_ms"), total_ms=raw.get("total_ms"),
        production_variant=production.get("variant", ""), production_model_ms=production.get("model_ms"),
        production_total_ms=production.get("total_ms"),
    )  # fmt: skip
