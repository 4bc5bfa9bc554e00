"""Simulated history, pushed through the same IoT rule and delivery stream as live telemetry.

Each reading comes from the device agent's simulator (the sensor the live agent runs) and gets a
message_id derived from (seed, device, instant), so running the backfill twice writes the same
ids again and the ETL's dedupe by message_id keeps one copy of each reading.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cloud.interfaces import Lake, Progress, no_progress
from dataplane.ingest.delivery import DeliveryStream
from dataplane.ingest.rule import records_from_message
from device_agent.simulator import AirQualitySimulator, seed_for
from device_agent.telemetry import encode, telemetry_message

# Fixed namespace: the same (seed, device, instant) gives the same message_id on every machine.
_BACKFILL_NAMESPACE = uuid.UUID("5b0f5d7e-6c1e-4c57-9a49-2f6f0f4d1c11")


@dataclass(frozen=True)
class BackfillDevice:
    name: str
    latitude: float | None = None
    longitude: float | None = None


@dataclass
class BackfillResult:
    readings: int = 0
    records: int = 0
    errors: int = 0
    objects: list[str] = field(default_factory=list)


def simulator_seed(seed: int | None, device: str) -> int:
    """Return the simulator seed: the live agent's default (from the name) unless a seed is given."""
    return seed_for(device) if seed is None else seed_for(f"{seed}:{device}")


def backfill_message_id(seed: int | None, device: str, when: datetime) -> str:
    """Return the deterministic message_id of device's simulated reading at when."""
    return str(uuid.uuid5(_BACKFILL_NAMESPACE, f"{seed}:{device}:{when.isoformat()}"))


def backfill_instants(end: datetime, days: float, step: timedelta) -> list[datetime]:
    """Return the instants from end - days (inclusive) to end (exclusive), step apart."""
    if step <= timedelta(0):
        raise ValueError("the step between readings must be positive")
    start = end - timedelta(days=days)
    count = int((end - start) / step)
    return [start + index * step for index in range(count)]


def history_backfill(
    lake: Lake,
    devices: list[BackfillDevice],
    instants: list[datetime],
    seed: int | None = None,
    progress: Progress = no_progress,
    clock: Callable[[], float] = time.time,
) -> BackfillResult:
    """Simulate each device's reading at each instant, apply the IoT rule, deliver to the lake; return counts.

    Objects are written as a live stream would (5 MiB buffers, Firehose keys by arrival time).
    Raises BackendError/BackendUnavailable when the lake refuses a write.
    """
    result = BackfillResult()
    stream = DeliveryStream(lake, buffer_size_mb=5, buffer_interval_s=900, clock=clock)
    stream.on_durable = lambda flushed: result.objects.append(flushed.key) if flushed.key else None
    for number, device in enumerate(devices, start=1):
        _backfill_device(stream, device, instants, seed, result, clock)
        progress(100.0 * number / len(devices), f"{device.name}: {len(instants)} readings")
    stream.flush()
    return result


def _backfill_device(
    stream: DeliveryStream,
    device: BackfillDevice,
    instants: list[datetime],
    seed: int | None,
    result: BackfillResult,
    clock: Callable[[], float],
) -> None:
    simulator = AirQualitySimulator(simulator_seed(seed, device.name), device.latitude, device.longitude)
    topic = f"dt/iotcast/{device.name}/telemetry"
    for when in instants:
        message = telemetry_message(simulator.reading_at(when), when, backfill_message_id(seed, device.name, when))
        outcome = records_from_message(topic, encode(message), int(clock() * 1000))
        stream.put_records(outcome.records, outcome.errors)
        result.readings += 1
        result.records += len(outcome.records)
        result.errors += len(outcome.errors)
