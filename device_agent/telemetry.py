"""The telemetry message contract (DESIGN.md section 2), shared by the live agent and the backfill."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

# datetime.UTC needs Python 3.11; the agent also runs on devices with 3.10.
UTC = timezone.utc


def format_timestamp(when: datetime) -> str:
    """Return when as ISO-8601 UTC with milliseconds and a Z, e.g. 2026-11-27T21:00:00.000Z (naive means UTC)."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def telemetry_message(reading: dict[str, float], when: datetime, message_id: str | None = None) -> dict:
    """Return the message for a reading taken at when: message_id (uuid4 unless given), timestamp, then the fields."""
    return {"message_id": message_id or str(uuid.uuid4()), "timestamp": format_timestamp(when), **reading}


def encode(message: dict) -> bytes:
    """Return the message as the compact UTF-8 JSON published on the wire."""
    return json.dumps(message, separators=(",", ":")).encode()
