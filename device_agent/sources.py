"""Where the agent's readings come from: the simulated sensor, a replayed CSV or NDJSON file, or stdin.

Every source yields telemetry messages in the contract's shape (DESIGN.md section 2): message_id,
timestamp, then numeric fields. Column or key names of files and stdin are mapped to the telemetry
fields (o3 -> ozone, pm25 -> particulate_matter, time -> timestamp, ...; --map COLUMN=FIELD adds or
overrides one, --map COLUMN=- ignores a column). A line that cannot become a reading is reported
with its line number and skipped; the source counts them.
"""

from __future__ import annotations

import csv
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from device_agent.simulator import AirQualitySimulator
from device_agent.telemetry import encode, telemetry_message

# datetime.UTC needs Python 3.11; the agent also runs on devices with 3.10.
UTC = timezone.utc

# IoT Core refuses larger payloads; a single reading over it could never be delivered.
MAX_PAYLOAD_BYTES = 128 * 1024
IGNORE = "-"
_ALIASES = {
    "timestamp": ("timestamp", "time", "ts", "datetime", "date_time", "measured_at", "observed_at"),
    "message_id": ("message_id", "id", "uuid", "msg_id"),
    "ozone": ("ozone", "o3"),
    "particulate_matter": ("particulate_matter", "pm", "pm25", "pm2_5", "pm_2_5"),
    "carbon_monoxide": ("carbon_monoxide", "co"),
    "sulfur_dioxide": ("sulfur_dioxide", "sulphur_dioxide", "so2"),
    "nitrogen_dioxide": ("nitrogen_dioxide", "no2"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon", "lng", "long"),
}
DEFAULT_FIELDS = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
# The server sets these from the topic and on arrival; a file's copy would only be misleading.
SERVER_FIELDS = ("device_id", "received_at")


class SourceError(Exception):
    """A source cannot be opened (missing file, unusable header); the message is one line."""


class BadLine(ValueError):
    """One line of input cannot become a reading; the message says why."""


def normalise(name: str) -> str:
    """Return a column name in snake case (' PM2.5 ' -> 'pm2_5')."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


class FieldMap:
    """Maps input column or key names to telemetry fields (None: ignored)."""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.fields = {**DEFAULT_FIELDS, **{field: IGNORE for field in SERVER_FIELDS}}
        self.fields |= {normalise(column): field for column, field in (overrides or {}).items()}

    def field(self, column: str) -> str | None:
        """Return the telemetry field for column, or None when the column is ignored."""
        name = normalise(column)
        field = self.fields.get(name, name)
        return None if field == IGNORE else field

    def has_timestamp(self, columns: list[str]) -> bool:
        return any(self.field(column) == "timestamp" for column in columns)

    def message(self, record: dict, default_now: bool) -> tuple[dict, datetime]:
        """Return (telemetry message, its instant) for one input record; raise BadLine when it cannot be one.

        Without a timestamp the reading is stamped now when default_now, else BadLine; without a
        message_id it gets a fresh uuid4.
        """
        when, message_id, values = None, None, {}
        for column, value in record.items():
            field = self.field(str(column))
            if field is None or value is None or value == "":
                continue
            if field == "timestamp":
                when = parse_timestamp(value)
            elif field == "message_id":
                message_id = str(value)
            else:
                values[field] = _number(column, value)
        if when is None and not default_now:
            raise BadLine("no timestamp")
        when = when or datetime.now(UTC)
        message = telemetry_message(values, when, message_id)
        if len(encode(message)) > MAX_PAYLOAD_BYTES:
            raise BadLine(f"the reading is over {MAX_PAYLOAD_BYTES // 1024} KB")
        return message, when


def _number(column: object, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadLine(f"{column}: {value!r} is not a number (--map {column}=- ignores the column)")
    try:
        number = float(value)
    except ValueError:
        raise BadLine(f"{column}: {value!r} is not a number (--map {column}=- ignores the column)") from None
    if not math.isfinite(number):
        raise BadLine(f"{column}: {value!r} is not a finite number")
    return number


def parse_timestamp(value: object) -> datetime:
    """Return an aware UTC datetime from ISO-8601 (naive means UTC) or epoch seconds or milliseconds."""
    try:
        if (isinstance(value, int | float) and not isinstance(value, bool)) or re.fullmatch(r"\d+(\.\d*)?", str(value)):
            seconds = float(value)
            # Epoch milliseconds are 13 digits today; seconds stay below 1e11 until the year 5138.
            return datetime.fromtimestamp(seconds / 1000 if seconds > 1e11 else seconds, UTC)
        text = str(value).strip()
        # Python 3.10's fromisoformat does not take the "Z" suffix (3.11's does).
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except (ValueError, OverflowError, OSError):
        raise BadLine(f"timestamp {value!r} is neither ISO-8601 nor epoch seconds") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


Report = Callable[[str], None]


class SimulatedSource:
    """The simulated air-quality sensor: one reading every interval seconds, stamped now."""

    skipped = 0

    def __init__(self, simulator: AirQualitySimulator, interval: float) -> None:
        self.simulator = simulator
        self.interval = interval
        self.description = f"the simulated sensor every {interval:g} s"

    def readings(self, stop: threading.Event) -> Iterator[dict]:
        started = time.monotonic()
        sent = 0
        while not stop.is_set():
            # Scheduled from the start, so the cadence does not drift with queueing time.
            delay = started + sent * self.interval - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            now = datetime.now(UTC)
            yield telemetry_message(self.simulator.reading_at(now), now)
            sent += 1


class _LineSource:
    """Shared by the file and stdin sources: turns records into messages, reports and counts bad lines."""

    label = ""

    def __init__(self, mapping: FieldMap, report_bad: Report) -> None:
        self.mapping = mapping
        self.report_bad = report_bad
        self.skipped = 0

    def _convert(self, line_number: int, record: dict | BadLine, default_now: bool) -> tuple[dict, datetime] | None:
        try:
            if isinstance(record, BadLine):
                raise record
            return self.mapping.message(record, default_now)
        except BadLine as exc:
            self.skipped += 1
            self.report_bad(f"{self.label} line {line_number}: {exc}; skipped")
            return None


def _json_records(lines: IO[str]) -> Iterator[tuple[int, dict | BadLine]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            yield number, BadLine(f"invalid JSON ({exc})")
            continue
        yield number, record if isinstance(record, dict) else BadLine("not a JSON object")


class ReplaySource(_LineSource):
    """Replays a CSV (with a header) or NDJSON file in file order, paced by its timestamps.

    speed N plays N times faster than the file's timestamps (0: as fast as possible).
    """

    def __init__(self, path: str | Path, speed: float, mapping: FieldMap, report_bad: Report) -> None:
        super().__init__(mapping, report_bad)
        self.path = Path(path)
        self.speed = speed
        self.label = self.path.name
        self.format = _file_format(self.path)
        if self.format == "csv":
            self._check_header()
        self.description = f"{self.path} ({self.format}, " + (f"{speed:g}x real time)" if speed else "no pacing)")

    def _check_header(self) -> None:
        with self._open() as handle:
            header = next(csv.reader(handle), None)
        if not header:
            raise SourceError(f"{self.path} is empty: a CSV replay needs a header line")
        if not self.mapping.has_timestamp(header):
            raise SourceError(
                f"{self.path} has no timestamp column (header: {', '.join(header)}); name it: --map COLUMN=timestamp"
            )

    def _open(self) -> IO[str]:
        try:
            return open(self.path, newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror}") from exc

    def _records(self, handle: IO[str]) -> Iterator[tuple[int, dict | BadLine]]:
        if self.format == "ndjson":
            yield from _json_records(handle)
            return
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row:
                yield (
                    reader.line_num,
                    BadLine(
                        f"{len(reader.fieldnames) + len(row[None])} fields, the header has {len(reader.fieldnames)}"
                    ),
                )
            elif None in row.values():
                yield reader.line_num, BadLine(f"fewer fields than the header's {len(reader.fieldnames)}")
            else:
                yield reader.line_num, row

    def readings(self, stop: threading.Event) -> Iterator[dict]:
        started, first = time.monotonic(), None
        with self._open() as handle:
            for number, record in self._records(handle):
                converted = self._convert(number, record, default_now=False)
                if converted is None:
                    continue
                message, when = converted
                first = first or when
                if self.speed:
                    delay = started + (when - first).total_seconds() / self.speed - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                if stop.is_set():
                    return
                yield message


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".ndjson", ".jsonl", ".json"}:
        return "ndjson"
    try:
        with open(path, encoding="utf-8-sig") as handle:
            start = handle.read(256).lstrip()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from exc
    return "ndjson" if start.startswith("{") else "csv"


class StdinSource(_LineSource):
    """JSON lines on a stream (one reading per line); message_id and timestamp are filled in when absent."""

    label = "stdin"
    description = "JSON lines on stdin"

    def __init__(self, stream: IO[str], mapping: FieldMap, report_bad: Report) -> None:
        super().__init__(mapping, report_bad)
        self.stream = stream

    def readings(self, stop: threading.Event) -> Iterator[dict]:
        for number, record in _json_records(self.stream):
            converted = self._convert(number, record, default_now=True)
            if stop.is_set():
                return
            if converted is not None:
                yield converted[0]
