"""Builders for raw telemetry objects in a test lake (the layout the ingest service writes)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud.interfaces import Lake


def iso(moment: datetime) -> str:
    """Return moment as the devices' timestamp string, e.g. 2026-11-27T21:00:00.000Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reading(device: str, moment: datetime, ozone: float = 40.0, **extra: Any) -> dict[str, Any]:
    """Return one raw record as the IoT rule produces it (message fields + device_id + received_at)."""
    record = {
        "message_id": str(uuid.uuid4()),
        "timestamp": iso(moment),
        "ozone": ozone,
        "particulate_matter": 12.0,
        "carbon_monoxide": 0.4,
        "sulfur_dioxide": 3.0,
        "nitrogen_dioxide": 20.0,
        "latitude": 56.2025,
        "longitude": 10.2507,
        "device_id": device,
        "received_at": int((moment + timedelta(milliseconds=250)).timestamp() * 1000),
    }
    record.update(extra)
    return record


def put_raw(lake: Lake, records: list[dict[str, Any]], arrived: datetime | None = None) -> str:
    """Store records as one raw NDJSON object under its arrival hour; return its key."""
    arrived = arrived or datetime.now(UTC)
    key = (
        f"raw/year={arrived:%Y}/month={arrived:%m}/day={arrived:%d}/hour={arrived:%H}/"
        f"iotcast-telemetry-1-{arrived:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    )
    lake.put_bytes(key, "".join(json.dumps(record) + "\n" for record in records).encode())
    return key
