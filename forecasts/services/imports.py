"""Bulk import of historical telemetry (CSV or NDJSON) through the live ingest path into the raw zone.

Each row becomes one telemetry message on the device's topic and goes through the same IoT rule
(dataplane.ingest.rule.records_from_message) and delivery stream (Firehose semantics) as live
data, so the ETL validates and curates history and live readings alike. message_id defaults to a
uuid5 of (device, timestamp): importing a file twice adds nothing once the ETL has deduplicated.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from cloud.backends import get_backend
from cloud.interfaces import Progress, no_progress
from dataplane.ingest.delivery import DeliveryStream
from dataplane.ingest.rule import records_from_message

_IMPORT_NAMESPACE = uuid.UUID("8d7f6a1e-3b53-4c1f-9e0e-5d8a2f7c4b21")
RESERVED = ("message_id", "timestamp", "device_id", "received_at")
MAX_REPORTED_ERRORS = 100


@dataclass
class ImportResult:
    rows: int = 0
    imported: int = 0
    rejected: int = 0
    # (line number, reason) of the first MAX_REPORTED_ERRORS rejected rows.
    errors: list[tuple[int, str]] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)


def metric_map_parse(pairs: list[str]) -> dict[str, str]:
    """Return {column: metric} from ["col=metric", ...]; raise ValueError naming a malformed pair."""
    mapping = {}
    for pair in pairs:
        column, sep, metric = pair.partition("=")
        if not sep or not column.strip() or not metric.strip().isidentifier():
            raise ValueError(f"--metric-map {pair!r} must look like column=metric_name")
        mapping[column.strip()] = metric.strip()
    return mapping


def _number(value: Any) -> float | None:
    """Return value as a finite float (None for empty); raise ValueError when it is not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _message(row: dict[str, Any], device: str, mapping: dict[str, str]) -> dict[str, Any]:
    """Return the telemetry message of one imported row; raise ValueError naming what is wrong."""
    timestamp = row.get("timestamp")
    if not isinstance(timestamp, str) or not timestamp.strip():
        raise ValueError("no timestamp")
    columns = mapping or {name: name for name in row if name not in RESERVED}
    message: dict[str, Any] = {}
    for column, metric in columns.items():
        try:
            message[metric] = _number(row.get(column))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {column!r}: {exc}") from exc
    message_id = row.get("message_id") or str(uuid.uuid5(_IMPORT_NAMESPACE, f"{device}:{timestamp.strip()}"))
    return {"message_id": str(message_id), "timestamp": timestamp.strip(), **message}


def _rows(handle: IO[bytes], kind: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (line number, row dict or the reason it cannot be read) from a CSV or NDJSON stream."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
    if kind == "csv":
        reader = csv.DictReader(text)
        for row in reader:
            yield reader.line_num, row
        return
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            yield number, f"not JSON: {exc}"
            continue
        yield number, row if isinstance(row, dict) else "not a JSON object"


def readings_import(
    handle: IO[bytes],
    device: str,
    kind: str = "csv",
    metric_map: dict[str, str] | None = None,
    total_bytes: int = 0,
    progress: Progress = no_progress,
) -> ImportResult:
    """Import the rows of a CSV (with a header) or NDJSON stream as device's telemetry; return counts.

    Bad rows are skipped and reported with their line numbers; good rows are kept. Raises ValueError
    for an unknown kind; BackendError when the lake refuses a write (rows buffered so far are lost
    only if the process dies, the stream keeps them for the next flush otherwise).
    """
    if kind not in {"csv", "ndjson"}:
        raise ValueError(f"unknown file kind {kind!r}: use csv or ndjson")
    result, mapping = ImportResult(), metric_map or {}
    stream = DeliveryStream(get_backend("lake"), buffer_size_mb=5, buffer_interval_s=900)
    stream.on_durable = lambda flushed: result.objects.append(flushed.key) if flushed.key else None
    topic = f"dt/iotcast/{device}/telemetry"
    for number, row in _rows(handle, kind):
        result.rows += 1
        reason = row if isinstance(row, str) else _import_row(stream, topic, row, device, mapping)
        if reason:
            result.rejected += 1
            if len(result.errors) < MAX_REPORTED_ERRORS:
                result.errors.append((number, reason))
        else:
            result.imported += 1
        if result.rows % 5000 == 0:
            done = 100.0 * handle.tell() / total_bytes if total_bytes else 0.0
            progress(min(99.0, done), f"{result.rows} rows read, {result.rejected} rejected")
    stream.flush()
    progress(100.0, f"{result.imported} rows imported, {result.rejected} rejected")
    return result


def _import_row(stream: DeliveryStream, topic: str, row: dict, device: str, mapping: dict[str, str]) -> str:
    """Deliver one row through the IoT rule; return why it was rejected, or "" when it was accepted."""
    try:
        message = _message(row, device, mapping)
    except ValueError as exc:
        return str(exc)
    outcome = records_from_message(topic, json.dumps(message).encode(), int(time.time() * 1000))
    if outcome.errors:
        # The rule's own error records are not written: the report names the line instead.
        return outcome.errors[0].document["errorMessage"]
    stream.put_records(outcome.records)
    return ""
