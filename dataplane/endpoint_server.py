"""The endpoint server: answers SageMaker Runtime's InvokeEndpoint for DeepAR models stored in the lake.

Django-free data-plane process. `POST /endpoints/{name}/invocations` behaves like SageMaker Runtime
(so boto3's invoke_endpoint works unchanged); `PUT/GET /admin/endpoints/{name}` is the local hosting
backend's control API; endpoint definitions persist in a JSON file in the state dir.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloud.deepar.formats import RequestError, parse_request
from cloud.deepar.hyperparameters import HyperparameterError
from cloud.deepar.model import DeepARModel
from cloud.interfaces import Lake

logger = logging.getLogger(__name__)
_INVOKE = re.compile(r"^/endpoints/([A-Za-z0-9-]{1,63})/invocations$")
_ADMIN = re.compile(r"^/admin/endpoints/([A-Za-z0-9-]{1,63})$")
MAX_BODY = 6 * 1024 * 1024  # SageMaker's payload limit for real-time endpoints


class ServingError(Exception):
    """An error answer: HTTP status, SageMaker's error type and a message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def validation_error(message: str) -> ServingError:
    """Return SageMaker's 400 ValidationError."""
    return ServingError(400, "ValidationError", message)


@dataclass(frozen=True)
class Variant:
    name: str
    model_name: str
    artifact_key: str
    weight: float


def parse_variants(payload: Any) -> list[Variant]:
    """Return the variants of a PUT body; raise ServingError(400) when malformed."""
    raw = payload.get("variants") if isinstance(payload, dict) else None
    if not isinstance(raw, list) or not raw:
        raise validation_error('the body must be {"variants": [{name, model_name, artifact_key, weight}, ...]}')
    try:
        variants = [
            Variant(str(v["name"]), str(v["model_name"]), str(v["artifact_key"]), float(v["weight"])) for v in raw
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise validation_error(
            f"each variant needs name, model_name, artifact_key and a numeric weight ({exc})"
        ) from None
    if len({v.name for v in variants}) != len(variants) or any(v.weight < 0 for v in variants):
        raise validation_error("variant names must be unique and weights non-negative")
    if sum(v.weight for v in variants) <= 0:
        raise validation_error("at least one variant needs a positive weight")
    return variants


class EndpointRegistry:
    """Endpoints -> variants, persisted to a JSON file; models loaded from the lake once and cached."""

    def __init__(self, lake: Lake, state_dir: Path) -> None:
        self.lake = lake
        self.state_file = Path(state_dir) / "endpoints.json"
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._models: dict[str, DeepARModel] = {}
        self._endpoints: dict[str, list[Variant]] = self._read_state()
        self._random = random.Random()

    def _read_state(self) -> dict[str, list[Variant]]:
        if not self.state_file.exists():
            return {}
        raw = json.loads(self.state_file.read_text())
        return {name: [Variant(**v) for v in variants] for name, variants in raw.items()}

    def _write_state(self) -> None:
        data = {name: [asdict(v) for v in variants] for name, variants in self._endpoints.items()}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def model(self, artifact_key: str) -> DeepARModel:
        """Return the cached model for an artifact, loading it from the lake the first time."""
        with self._lock:
            cached = self._models.get(artifact_key)
        if cached is not None:
            return cached
        try:
            model = DeepARModel.from_tarball(self.lake.get_bytes(artifact_key))
        except KeyError:
            raise validation_error(f"model artifact {artifact_key} is not in the lake") from None
        except (ValueError, HyperparameterError) as exc:
            raise validation_error(f"model artifact {artifact_key} cannot be loaded: {exc}") from None
        with self._lock:
            return self._models.setdefault(artifact_key, model)

    def apply(self, name: str, variants: list[Variant]) -> None:
        """Make endpoint name serve exactly these variants (their models are loaded first, so errors show here)."""
        for variant in variants:
            self.model(variant.artifact_key)
        with self._lock:
            self._endpoints[name] = variants
            self._write_state()

    def variants(self, name: str) -> list[Variant]:
        """Return the endpoint's variants; raise ServingError like SageMaker for an unknown endpoint."""
        with self._lock:
            variants = self._endpoints.get(name)
        if variants is None:
            raise validation_error(f"Endpoint {name} of account local not found.")
        return variants

    def choose(self, name: str, target_variant: str | None) -> Variant:
        """Return the target variant, or one drawn with probability weight / sum of weights."""
        variants = self.variants(name)
        if target_variant:
            for variant in variants:
                if variant.name == target_variant:
                    return variant
            raise validation_error(f"Target variant {target_variant} does not exist for endpoint {name}.")
        with self._lock:
            return self._random.choices(variants, weights=[v.weight for v in variants])[0]


def invoke(registry: EndpointRegistry, variant: Variant, body: bytes) -> bytes:
    """Return DeepAR's JSON response from the variant's model; raise ServingError for an error answer."""
    model = registry.model(variant.artifact_key)
    try:
        request = parse_request(body)
        response = model.predict(request)
    except RequestError as exc:
        raise validation_error(str(exc)) from None
    except Exception as exc:  # whatever the model raises is SageMaker's ModelError, never a dropped connection
        logger.exception("model %s failed", variant.model_name)
        raise ServingError(424, "ModelError", f'Received server error (500) from model with message "{exc}".') from exc
    return json.dumps(response).encode()


class EndpointHandler(BaseHTTPRequestHandler):
    server_version = "IoTCastEndpointServer/1.0"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, delayed ACKs add ~40 ms to every answer.
    disable_nagle_algorithm = True
    registry: EndpointRegistry  # set on the subclass make_server builds

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, error: ServingError, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"message": error.message, "Message": error.message}).encode()
        self._send(error.status, body, {"x-amzn-ErrorType": error.error_type, **(headers or {})})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise validation_error(f"the request body is larger than {MAX_BODY} bytes")
        return self.rfile.read(length)

    def do_GET(self) -> None:
        if self.path == "/ping":
            return self._send(200, b"{}")
        match = _ADMIN.match(self.path)
        try:
            if match is None:
                raise ServingError(404, "UnknownOperationException", f"no route for GET {self.path}")
            variants = self.registry.variants(match.group(1))
            self._send(200, json.dumps({"name": match.group(1), "variants": [asdict(v) for v in variants]}).encode())
        except ServingError as error:
            self._send_error(error)

    def do_PUT(self) -> None:
        match = _ADMIN.match(self.path)
        try:
            if match is None:
                raise ServingError(404, "UnknownOperationException", f"no route for PUT {self.path}")
            try:
                payload = json.loads(self._body())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise validation_error("the body is not JSON") from None
            variants = parse_variants(payload)
            self.registry.apply(match.group(1), variants)
            self._send(200, json.dumps({"name": match.group(1), "variants": [asdict(v) for v in variants]}).encode())
        except ServingError as error:
            self._send_error(error)

    def do_POST(self) -> None:
        match = _INVOKE.match(self.path)
        variant_header: dict[str, str] = {}
        try:
            if match is None:
                raise ServingError(404, "UnknownOperationException", f"no route for POST {self.path}")
            body = self._body()
            variant = self.registry.choose(match.group(1), self.headers.get("X-Amzn-SageMaker-Target-Variant"))
            # Every answer from a variant names it, errors included, as SageMaker does.
            variant_header = {"x-Amzn-Invoked-Production-Variant": variant.name}
            answer = invoke(self.registry, variant, body)
            custom = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
            if custom:
                variant_header["X-Amzn-SageMaker-Custom-Attributes"] = custom
            self._send(200, answer, variant_header)
        except ServingError as error:
            self._send_error(error, variant_header)


def make_server(lake: Lake, state_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """Return a bound, not yet serving, endpoint server over the lake (call serve_forever on it)."""
    handler = type("BoundEndpointHandler", (EndpointHandler,), {"registry": EndpointRegistry(lake, state_dir)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
