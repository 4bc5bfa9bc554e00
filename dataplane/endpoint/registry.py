"""Endpoints -> production (and shadow) variants, routed by weight; models loaded once per process and cached.

The endpoints live in one JSON file written atomically; every worker process notices a new file (by
inode and mtime) on its next request and switches to it, so weights and models change without a
restart and without a failed request. Models of the new state are loaded before the switch.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud.deepar.hyperparameters import HyperparameterError
from cloud.deepar.model import DeepARModel
from cloud.interfaces import Lake

if TYPE_CHECKING:
    from dataplane.endpoint.fastpredict import FastDeepAR

logger = logging.getLogger(__name__)


class ServingError(Exception):
    """An error answer: HTTP status, SageMaker's error type, a message and the body's other fields (fields)."""

    def __init__(self, status: int, error_type: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.fields = fields or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON error body: SageMaker's fields, Message, and message for the local control API."""
        return {**self.fields, "Message": self.message, "message": self.message}


def validation_error(message: str) -> ServingError:
    """Return SageMaker's 400 ValidationError."""
    return ServingError(400, "ValidationError", message)


def model_error(endpoint: str, original_status: int, original_message: str) -> ServingError:
    """Return SageMaker's 424 ModelError for a model (container) that answered original_status.

    The body has SageMaker's ModelError fields (OriginalStatusCode, OriginalMessage, LogStreamArn), which
    boto3 puts into the ClientError's response; LogStreamArn names where this server's log would be on AWS.
    """
    log_group = f"/aws/sagemaker/Endpoints/{endpoint}"
    kind = "client" if 400 <= original_status < 500 else "server"
    message = (
        f'Received {kind} error ({original_status}) from primary with message "{original_message}". '
        f"See the endpoint server's log (log group {log_group}) for more information."
    )
    fields = {
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL" if kind == "client" else "INTERNAL_FAILURE_FROM_MODEL",
        "OriginalStatusCode": original_status,
        "OriginalMessage": original_message,
        "LogStreamArn": f"arn:aws:logs:local:local:log-group:{log_group}",
    }
    return ServingError(424, "ModelError", message, fields)


@dataclass(frozen=True)
class Variant:
    name: str
    model_name: str
    artifact_key: str
    weight: float
    shadow: bool = False


def _variant(raw: Any) -> Variant:
    weight = float(raw["weight"])
    if weight != weight or weight in (float("inf"), float("-inf")):
        raise ValueError("weight must be finite")
    return Variant(str(raw["name"]), str(raw["model_name"]), str(raw["artifact_key"]), weight, bool(raw.get("shadow")))


def parse_variants(payload: Any) -> list[Variant]:
    """Return the variants of a PUT body; raise ServingError(400) when malformed."""
    raw = payload.get("variants") if isinstance(payload, dict) else None
    if not isinstance(raw, list) or not raw:
        raise validation_error('the body must be {"variants": [{name, model_name, artifact_key, weight}, ...]}')
    try:
        variants = [_variant(v) for v in raw]
    except (KeyError, TypeError, ValueError) as exc:
        raise validation_error(
            f"each variant needs name, model_name, artifact_key and a numeric weight ({exc})"
        ) from None
    if len({v.name for v in variants}) != len(variants) or any(v.weight < 0 for v in variants):
        raise validation_error("variant names must be unique and weights non-negative")
    if sum(v.weight for v in variants if not v.shadow) <= 0:
        raise validation_error("at least one variant needs a positive weight")
    if sum(v.shadow for v in variants) > 1:
        raise validation_error("an endpoint has at most one shadow variant")
    return variants


class Router:
    """Smooth weighted round robin (nginx's): over any window the split is within one request of the weights."""

    def __init__(self, variants: list[Variant]) -> None:
        self.variants = [v for v in variants if not v.shadow and v.weight > 0]
        self.total = sum(v.weight for v in self.variants)
        self._current = [0.0] * len(self.variants)
        self._lock = threading.Lock()

    def next(self) -> Variant:
        with self._lock:
            best = 0
            for index, variant in enumerate(self.variants):
                self._current[index] += variant.weight
                if self._current[index] > self._current[best]:
                    best = index
            self._current[best] -= self.total
            return self.variants[best]


@dataclass
class EndpointState:
    variants: list[Variant]
    router: Router
    shadow: Variant | None
    shadow_share: float  # share of production traffic mirrored to the shadow


def endpoint_state(variants: list[Variant]) -> EndpointState:
    router = Router(variants)
    shadow = next((v for v in variants if v.shadow), None)
    share = min(1.0, shadow.weight / router.total) if shadow else 0.0
    return EndpointState(variants, router, shadow, share)


class EndpointRegistry:
    """Endpoints of this process, kept in step with the state file; models cached by artifact key."""

    def __init__(self, lake: Lake, state_dir: Path) -> None:
        self.lake = lake
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / "endpoints.json"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._models: dict[str, DeepARModel] = {}
        self._forecasters: dict[str, tuple[DeepARModel, DeepARModel | FastDeepAR]] = {}
        self._endpoints: dict[str, EndpointState] = {}
        self._version: tuple[int, int] | None = None
        self.refresh()

    # --- state file -------------------------------------------------------------------------------
    def _file_version(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.state_file)
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def refresh(self) -> None:
        """Switch to the state file's endpoints when another process replaced it (one stat when it did not)."""
        version = self._file_version()
        if version == self._version:
            return
        with self._lock:
            if version == self._version or version is None:
                return
            raw = json.loads(self.state_file.read_text())
            endpoints = {name: [Variant(**v) for v in variants] for name, variants in raw.items()}
            self._install(endpoints, version)

    def _install(self, endpoints: dict[str, list[Variant]], version: tuple[int, int] | None) -> None:
        for variants in endpoints.values():
            for variant in variants:
                self._load_quietly(variant.artifact_key)
        self._endpoints = {
            name: self._endpoints[name]
            if name in self._endpoints and self._endpoints[name].variants == variants
            else endpoint_state(variants)
            for name, variants in endpoints.items()
        }
        self._version = version
        used = {v.artifact_key for variants in endpoints.values() for v in variants}
        self._models = {key: model for key, model in self._models.items() if key in used}
        self._forecasters = {key: pair for key, pair in self._forecasters.items() if key in used}

    def _load_quietly(self, artifact_key: str) -> None:
        try:
            self.model(artifact_key)
        except ServingError as exc:  # the invoke answers 424 for this variant; other variants go on serving
            logger.error("%s", exc.message)

    def _write(self, endpoints: dict[str, list[Variant]]) -> tuple[int, int] | None:
        data = {name: [asdict(v) for v in variants] for name, variants in endpoints.items()}
        tmp = self.state_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(self.state_file)
        return self._file_version()

    # --- models -----------------------------------------------------------------------------------
    def model(self, artifact_key: str) -> DeepARModel:
        """Return the cached model for an artifact, loading it from the lake the first time."""
        cached = self._models.get(artifact_key)
        if cached is not None:
            return cached
        with self._lock:
            if artifact_key in self._models:
                return self._models[artifact_key]
            try:
                model = DeepARModel.from_tarball(self.lake.get_bytes(artifact_key))
            except KeyError:
                raise validation_error(f"model artifact {artifact_key} is not in the lake") from None
            except (ValueError, HyperparameterError) as exc:
                raise validation_error(f"model artifact {artifact_key} cannot be loaded: {exc}") from None
            self._models[artifact_key] = model
            return model

    def forecaster(self, artifact_key: str) -> DeepARModel | FastDeepAR:
        """Return what answers the artifact's requests, made once per loaded model (fastpredict.forecaster)."""
        from dataplane.endpoint.fastpredict import forecaster

        model = self.model(artifact_key)
        pair = self._forecasters.get(artifact_key)
        if pair is None or pair[0] is not model:
            with self._lock:
                pair = self._forecasters.get(artifact_key)
                if pair is None or pair[0] is not model:
                    pair = self._forecasters[artifact_key] = (model, forecaster(model))
        return pair[1]

    # --- endpoints --------------------------------------------------------------------------------
    def _current(self) -> dict[str, list[Variant]]:
        return {name: state.variants for name, state in self._endpoints.items()}

    def apply(self, name: str, variants: list[Variant]) -> None:
        """Make endpoint name serve exactly these variants (their models are loaded first, so errors show here)."""
        for variant in variants:
            self.model(variant.artifact_key)
        with self._lock:
            self.refresh()
            endpoints = {**self._current(), name: variants}
            self._install(endpoints, self._write(endpoints))

    def delete(self, name: str) -> None:
        """Stop serving endpoint name; raise ServingError when it does not exist."""
        with self._lock:
            self.refresh()
            endpoints = self._current()
            if endpoints.pop(name, None) is None:
                raise validation_error(f"Endpoint {name} of account local not found.")
            self._install(endpoints, self._write(endpoints))

    def state(self, name: str) -> EndpointState:
        """Return the endpoint's state; raise ServingError like SageMaker for an unknown endpoint."""
        self.refresh()
        state = self._endpoints.get(name)
        if state is None:
            raise validation_error(f"Endpoint {name} of account local not found.")
        return state

    def variants(self, name: str) -> list[Variant]:
        """Return the endpoint's variants (production and shadow)."""
        return self.state(name).variants

    def names(self) -> list[str]:
        """Return the endpoints' names."""
        self.refresh()
        return sorted(self._endpoints)

    def choose(self, name: str, target_variant: str | None) -> Variant:
        """Return the target production variant, or the next by weight (share = weight / sum of weights)."""
        state = self.state(name)
        if target_variant:
            for variant in state.variants:
                if variant.name == target_variant and not variant.shadow:
                    return variant
            raise validation_error(f"Target variant {target_variant} does not exist for endpoint {name}.")
        return state.router.next()
