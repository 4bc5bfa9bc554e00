"""SageMaker DeepAR's JSON formats: training channel lines, inference requests and responses."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

OUTPUT_TYPES = ("mean", "quantiles", "samples")
DEFAULT_QUANTILES = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9")
MAX_NUM_SAMPLES = 10_000
START_FORMAT = "%Y-%m-%d %H:%M:%S"


class RequestError(ValueError):
    """An inference request does not follow DeepAR's format; the message says where."""


def format_start(start: datetime | pd.Timestamp) -> str:
    """Return a timestamp as DeepAR's start string, "YYYY-MM-DD HH:MM:SS" (UTC, no zone)."""
    stamp = pd.Timestamp(start)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.strftime(START_FORMAT)


def encode_target(values: Sequence[float]) -> list[float | str]:
    """Return values with missing ones as "NaN" (never 0), as DeepAR's JSON expects."""
    return ["NaN" if value is None or math.isnan(value) else float(value) for value in values]


def series_line(
    start: datetime | pd.Timestamp,
    values: Sequence[float],
    cat: list[int] | None = None,
    dynamic_feat: list[list[float]] | None = None,
) -> str:
    """Return one JSON Lines record of a DeepAR channel (dynamic_feat rows as long as the target, when given)."""
    record: dict[str, Any] = {"start": format_start(start), "target": encode_target(values)}
    if cat is not None:
        record["cat"] = cat
    if dynamic_feat:
        record["dynamic_feat"] = dynamic_feat
    return json.dumps(record)


def read_channel(data: bytes) -> list[dict[str, Any]]:
    """Return the records of a JSON Lines channel; raise ValueError naming the first bad line."""
    records = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"channel line {number} is not JSON: {exc}") from None
    return records


@dataclass(frozen=True)
class Instance:
    start: pd.Timestamp
    target: list[float]
    cat: list[int] | None = None
    dynamic_feat: list[list[float]] | None = None


@dataclass(frozen=True)
class Configuration:
    num_samples: int = 100
    output_types: tuple[str, ...] = ("mean", "quantiles")
    quantiles: tuple[str, ...] = DEFAULT_QUANTILES
    seed: int | None = None


@dataclass(frozen=True)
class InferenceRequest:
    instances: list[Instance]
    configuration: Configuration = field(default_factory=Configuration)


def _target_value(where: str, value: Any) -> float:
    if value is None or value == "NaN":
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f'{where} must be a number, "NaN" or null, got {value!r}')
    return float(value)


def _start(where: str, value: Any) -> pd.Timestamp:
    if not isinstance(value, str):
        raise RequestError(f'{where} must be a timestamp string like "2026-11-01 00:00:00", got {value!r}')
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise RequestError(f"{where} is not a timestamp: {value!r}") from None
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def _cat(where: str, value: Any) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise RequestError(f"{where} must be a list of non-negative integers, got {value!r}")
    return value


def _dynamic_feat(where: str, value: Any) -> list[list[float]] | None:
    # DeepAR allows no missing values in dynamic features, and every row must be as long as the others.
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(row, list) and row for row in value):
        raise RequestError(f"{where} must be a non-empty list of non-empty lists of numbers")
    for i, row in enumerate(value):
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v) or math.isinf(v):
                raise RequestError(f"{where}[{i}][{j}] must be a finite number (no NaN in dynamic_feat), got {v!r}")
    if len({len(row) for row in value}) != 1:
        raise RequestError(f"{where} rows must all have the same length")
    return [[float(v) for v in row] for row in value]


def parse_instance(where: str, raw: Any) -> Instance:
    """Return one validated instance; raise RequestError naming the bad field."""
    if not isinstance(raw, dict):
        raise RequestError(f"{where} must be an object with start and target")
    if "start" not in raw or "target" not in raw:
        raise RequestError(f"{where} needs both start and target")
    target = raw["target"]
    if not isinstance(target, list) or not target:
        raise RequestError(f"{where}.target must be a non-empty list of numbers")
    if all(type(value) is float or type(value) is int for value in target):
        values = [float(value) for value in target]  # the usual all-numbers target, without a message per value
    else:
        values = [_target_value(f"{where}.target[{i}]", value) for i, value in enumerate(target)]
    if all(math.isnan(value) for value in values):
        raise RequestError(f"{where}.target has no observed value")
    return Instance(
        start=_start(f"{where}.start", raw["start"]),
        target=values,
        cat=_cat(f"{where}.cat", raw.get("cat")),
        dynamic_feat=_dynamic_feat(f"{where}.dynamic_feat", raw.get("dynamic_feat")),
    )


def _quantile(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not isinstance(value, str) or not 0 < number < 1:
        raise RequestError(f'configuration.quantiles must be strings of numbers in (0, 1) like "0.5", got {value!r}')
    return value


def parse_configuration(raw: Any) -> Configuration:
    """Return the validated configuration with DeepAR's defaults for what is left out."""
    if raw is None:
        return Configuration()
    if not isinstance(raw, dict):
        raise RequestError("configuration must be an object")
    num_samples = raw.get("num_samples", 100)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_NUM_SAMPLES:
        raise RequestError(
            f"configuration.num_samples must be an integer from 1 to {MAX_NUM_SAMPLES}, got {num_samples!r}"
        )
    output_types = raw.get("output_types", ["mean", "quantiles"])
    if not isinstance(output_types, list) or not output_types or not set(output_types) <= set(OUTPUT_TYPES):
        raise RequestError(f"configuration.output_types must be a non-empty list of {', '.join(OUTPUT_TYPES)}")
    quantiles = raw.get("quantiles", list(DEFAULT_QUANTILES))
    if not isinstance(quantiles, list) or not quantiles:
        raise RequestError('configuration.quantiles must be a non-empty list like ["0.1", "0.5", "0.9"]')
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"configuration.seed must be an integer, got {seed!r}")
    return Configuration(num_samples, tuple(output_types), tuple(_quantile(q) for q in quantiles), seed)


def parse_request(body: bytes | str | dict) -> InferenceRequest:
    """Return the validated DeepAR inference request; raise RequestError saying what is wrong."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("the request must be a JSON object with instances")
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError("instances must be a non-empty list")
    parsed = [parse_instance(f"instances[{i}]", raw) for i, raw in enumerate(instances)]
    return InferenceRequest(parsed, parse_configuration(body.get("configuration")))
