"""The IoT topic rule, as pure functions.

    SELECT *, topic(3) AS device_id, timestamp() AS received_at FROM 'dt/iotcast/+/telemetry'

with batchMode (a JSON array is one record per element) and an error action that keeps every
rejected record whole, in Kinesis Firehose's error-record format, with the reason.

Payload values must be numbers or null (the lake's columns are measurements), except a text field
of the WHERE clause (one it compares with a string, e.g. site = 'harbour'): a string of at most
MAX_TEXT_FIELD_CHARS there is evaluated by the WHERE and then left out of the stored record, so that
text never reaches the numeric columns the crawler and ETL build from raw/.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dataplane.ingest.where import Predicate

TOPIC_FILTER = "dt/iotcast/+/telemetry"
MAX_PAYLOAD_BYTES = 128 * 1024  # IoT Core's message size limit
PROCESSING_FAILED = "processing-failed"
OVERSIZE = "oversize"
UNKNOWN_DEVICE = "unknown-device"
ERROR_TYPES = (PROCESSING_FAILED, OVERSIZE, UNKNOWN_DEVICE)
# Fields every reading carries that are not measurements.
RESERVED_FIELDS = ("message_id", "timestamp")
# Set by the rule: a payload's own values for these are overwritten.
RULE_FIELDS = ("device_id", "received_at")
_NOT_METRICS = frozenset(RESERVED_FIELDS + RULE_FIELDS)
MAX_TEXT_FIELD_CHARS = 256


@dataclass(frozen=True)
class ErrorRecord:
    """A rejected record: its error-output type (the errors/<type>/ prefix) and Firehose's error document."""

    error_type: str
    document: dict[str, Any]


@dataclass
class RuleOutcome:
    """What the rule made of one MQTT message: accepted records and error records."""

    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    filtered: int = 0  # valid readings the WHERE clause did not select (the rule does not fire for them)


class _Rejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def device_from_topic(topic: str) -> str:
    """Return topic(3), the thing name in dt/iotcast/<thing>/telemetry; raise ValueError for other topics."""
    levels = topic.split("/")
    if len(levels) != 4 or levels[:2] != ["dt", "iotcast"] or levels[3] != "telemetry" or not levels[2]:
        raise ValueError(f"topic {topic!r} does not match {TOPIC_FILTER}")
    return levels[2]


def records_from_message(
    topic: str,
    payload: bytes,
    received_at_ms: int,
    where: Predicate | None = None,
    device_known: Callable[[str], bool] | None = None,
) -> RuleOutcome:
    """Apply the rule to one message and return its records and error records (never raises for bad payloads).

    A JSON object gives one record, an array one per element (an empty array is an error). where
    selects readings (after the SELECT); device_known, when given, sends messages of things not in
    the registry to the unknown-device errors. Raises ValueError only when topic does not match the
    rule's filter (the caller subscribed to something else).
    """
    device_id = device_from_topic(topic)
    rejected = _rejected_message(device_id, payload, device_known)
    if rejected:
        code, error_type, message = rejected
        return RuleOutcome(errors=[error_record(error_type, code, message, payload, topic, received_at_ms)])
    try:
        document = _parse_json(payload)
    except _Rejected as exc:
        return RuleOutcome(errors=[error_record(PROCESSING_FAILED, exc.code, str(exc), payload, topic, received_at_ms)])
    if document == []:
        reason = "an empty array holds no readings"
        empty = error_record(PROCESSING_FAILED, "EmptyBatch", reason, payload, topic, received_at_ms)
        return RuleOutcome(errors=[empty])
    return _apply(document, payload, topic, device_id, received_at_ms, where)


def _rejected_message(device_id: str, payload: bytes, device_known: Callable[[str], bool] | None) -> tuple | None:
    """Return (code, error type, message) when the whole message is rejected before parsing, else None."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return "PayloadTooLarge", OVERSIZE, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
    if device_known is not None and not device_known(device_id):
        return "UnknownDevice", UNKNOWN_DEVICE, f"{device_id!r} is not an active device in the registry"
    return None


def _apply(
    document: Any, payload: bytes, topic: str, device_id: str, received_at_ms: int, where: Predicate | None
) -> RuleOutcome:
    elements = document if isinstance(document, list) else [document]
    outcome = RuleOutcome()
    text_fields = getattr(where, "string_fields", frozenset()) - _NOT_METRICS
    for index, element in enumerate(elements):
        prefix = f"element {index}: " if isinstance(document, list) else ""
        try:
            record = _record(element, device_id, received_at_ms, text_fields)
        except _Rejected as exc:
            # Per element, as Firehose sees a batch: the failing element alone is kept whole.
            raw = payload if not isinstance(document, list) else _element_bytes(element)
            outcome.errors.append(
                error_record(PROCESSING_FAILED, exc.code, f"{prefix}{exc}", raw, topic, received_at_ms)
            )
            continue
        if where is None or where(record):
            outcome.records.append(_without_text(record, text_fields) if text_fields else record)
        else:
            outcome.filtered += 1
    return outcome


def error_record(error_type: str, code: str, message: str, raw: bytes, topic: str, arrival_ms: int) -> ErrorRecord:
    """Return an error record in Firehose's error-output format, raw data base64-encoded and whole."""
    document = {
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": code,
        "errorMessage": message,
        "rawData": base64.b64encode(raw).decode("ascii"),
        "topic": topic,
    }
    return ErrorRecord(error_type=error_type, document=document)


def _parse_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise _Rejected("InvalidJson", f"payload is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise _Rejected("InvalidJson", f"payload is not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise _Rejected("InvalidJson", f"payload is not valid JSON: {name} is not a JSON number")


def _element_bytes(element: Any) -> bytes:
    return json.dumps(element, separators=(",", ":")).encode()


def _record(
    element: Any, device_id: str, received_at_ms: int, text_fields: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Return SELECT *, topic(3) AS device_id, timestamp() AS received_at for one reading.

    A string is accepted only in text_fields (the WHERE's text fields), up to MAX_TEXT_FIELD_CHARS.
    """
    if not isinstance(element, dict):
        raise _Rejected("NotAnObject", f"a reading must be a JSON object, got {type(element).__name__}")
    _check_message_id(element.get("message_id"))
    _check_timestamp(element.get("timestamp"))
    for name, value in element.items():
        # Fast path for the common case (a finite float, an int that is not a bool, or null); the
        # full check below gives the same answers, just slower.
        kind = type(value)
        if (kind is float and math.isfinite(value)) or kind is int or value is None:
            continue
        if kind is str and name in text_fields:
            _check_text(name, value)
        elif name not in _NOT_METRICS:
            _check_metric(name, value)
    return {**element, "device_id": device_id, "received_at": received_at_ms}


def _check_message_id(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _Rejected("InvalidMessageId", f"message_id must be a non-empty string, got {value!r}")


def _check_timestamp(value: Any) -> None:
    if not isinstance(value, str):
        raise _Rejected("InvalidTimestamp", f"timestamp must be an ISO-8601 string, got {value!r}")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise _Rejected("InvalidTimestamp", f"timestamp {value!r} is not ISO-8601") from exc


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_TEXT_FIELD_CHARS:
        raise _Rejected("InvalidMetric", f"text field {name!r} is longer than {MAX_TEXT_FIELD_CHARS} characters")


def _without_text(record: dict[str, Any], text_fields: frozenset[str]) -> dict[str, Any]:
    """Return record without the string values of text_fields (they served the WHERE; the lake holds numbers)."""
    return {name: value for name, value in record.items() if not (name in text_fields and type(value) is str)}


def _check_metric(name: str, value: Any) -> None:
    # null is a missing reading (a sensor fault), which the ETL and DeepAR treat as NaN.
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Rejected("InvalidMetric", f"field {name!r} must be a number or null, got {value!r}")
