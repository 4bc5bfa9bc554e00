"""A Kinesis Firehose-like delivery stream: buffer records, write newline-delimited JSON objects to the lake.

Buffering hints work as Firehose's do: a buffer is written when it holds buffer_size_mb MiB or
its first record is buffer_interval_s seconds old, whichever comes first. Object keys follow
Firehose's naming under a Hive-style prefix (UTC, from the buffer's first arrival):

    raw/year=YYYY/month=MM/day=DD/hour=HH/iotcast-telemetry-1-YYYY-MM-DD-HH-MM-SS-<uuid>
    errors/<error-output-type>/year=YYYY/month=MM/day=DD/hour=HH/iotcast-telemetry-1-...

Each record may carry an opaque ack token (an MQTT message id). A token is reported to on_durable
once every record put under it is in an object the lake has stored, never before. Listeners added
with add_durable_listener() see every written object, with the last record of each device in it
(how the registry's last seen / last message are kept without a database write per message).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloud.interfaces import Lake
from dataplane.ingest.rule import ErrorRecord

log = logging.getLogger("dataplane.ingest")

STREAM_NAME = "iotcast-telemetry"
STREAM_VERSION = 1
MIB = 1024 * 1024


@dataclass(frozen=True)
class FlushedObject:
    """An object the stream wrote: its key, record count, size, and the tokens it made fully durable.

    last_lines maps each device_id with a record in the object to its latest record's JSON line.
    """

    key: str
    records: int
    size: int
    durable_tokens: list[Hashable]
    last_lines: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Buffer:
    prefix: str
    lines: list[bytes] = field(default_factory=list)
    tokens: list[Hashable] = field(default_factory=list)
    size: int = 0
    first_at: float | None = None
    last_lines: dict[str, bytes] = field(default_factory=dict)  # device_id -> its latest record's line

    def add(self, line: bytes, token: Hashable | None, now: float) -> None:
        self.lines.append(line)
        if token is not None:
            self.tokens.append(token)
        self.size += len(line)
        if self.first_at is None:
            self.first_at = now

    def absorb(self, newer: _Buffer) -> None:
        """Append newer's records (after a failed write, the older records go back in front)."""
        self.lines += newer.lines
        self.tokens += newer.tokens
        self.size += newer.size
        self.last_lines |= newer.last_lines


def object_key(prefix: str, at: float, stream_name: str = STREAM_NAME) -> str:
    """Return Firehose's object key for a buffer whose first record arrived at epoch seconds `at`."""
    moment = datetime.fromtimestamp(at, UTC)
    partition = moment.strftime("year=%Y/month=%m/day=%d/hour=%H")
    return f"{prefix}{partition}/{stream_name}-{STREAM_VERSION}-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"


class DeliveryStream:
    """Buffers records and error records and writes them to the lake as Firehose would.

    Thread-safe: records may be put from one thread while another calls flush_due(). Writes happen
    in the calling thread; a failed write raises and keeps its records buffered for the next flush.
    """

    def __init__(
        self,
        lake: Lake,
        buffer_size_mb: float = 5,
        buffer_interval_s: float = 300,
        prefix: str = "raw/",
        error_prefix: str = "errors/",
        on_durable: Callable[[FlushedObject], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lake = lake
        self.buffer_size = max(1, int(buffer_size_mb * MIB))
        self.buffer_interval_s = buffer_interval_s
        self.prefix = prefix
        self.error_prefix = error_prefix
        self.on_durable = on_durable
        self.clock = clock
        self._lock = threading.Lock()
        self._buffers: dict[str, _Buffer] = {}
        self._pending: dict[Hashable, int] = {}  # token -> records not yet durable
        self._listeners: list[Callable[[FlushedObject], None]] = []

    def add_durable_listener(self, listener: Callable[[FlushedObject], None]) -> None:
        """Call listener(flushed) after on_durable for every object written; its exceptions are logged, not raised."""
        self._listeners.append(listener)

    def put_records(
        self, records: Sequence[dict[str, Any]], errors: Sequence[ErrorRecord] = (), token: Hashable = None
    ) -> None:
        """Buffer one message's records and error records under token; flush any buffer that is full.

        A token with nothing to write is reported durable at once.
        """
        lines = [(self.prefix, _line(record)) for record in records]
        lines += [(f"{self.error_prefix}{error.error_type}/", _line(error.document)) for error in errors]
        if not lines:
            self._report(FlushedObject(key="", records=0, size=0, durable_tokens=[] if token is None else [token]))
            return
        # One message's records share a device: only its last record can be the device's latest.
        last = (records[-1].get("device_id"), lines[len(records) - 1][1]) if records else None
        full = self._buffer_lines(lines, token, last)
        for prefix in full:
            self._flush_prefix(prefix)

    def put(self, record: dict[str, Any], token: Hashable = None) -> None:
        """Buffer one record (see put_records)."""
        self.put_records([record], token=token)

    def _buffer_lines(
        self, lines: list[tuple[str, bytes]], token: Hashable, last: tuple[Any, bytes] | None
    ) -> list[str]:
        now = self.clock()
        with self._lock:
            if token is not None:
                self._pending[token] = self._pending.get(token, 0) + len(lines)
            for prefix, line in lines:
                self._buffers.setdefault(prefix, _Buffer(prefix)).add(line, token, now)
            if last is not None and isinstance(last[0], str):
                self._buffers[self.prefix].last_lines[last[0]] = last[1]
            return [p for p, b in self._buffers.items() if b.size >= self.buffer_size]

    def flush_due(self) -> list[FlushedObject]:
        """Write every buffer whose first record is at least buffer_interval_s old; return what was written."""
        now = self.clock()
        with self._lock:
            due = [
                p
                for p, b in self._buffers.items()
                if b.first_at is not None and now - b.first_at >= self.buffer_interval_s
            ]
        return [obj for prefix in due if (obj := self._flush_prefix(prefix))]

    def flush(self) -> list[FlushedObject]:
        """Write every non-empty buffer now and return what was written."""
        with self._lock:
            prefixes = [p for p, b in self._buffers.items() if b.lines]
        return [obj for prefix in prefixes if (obj := self._flush_prefix(prefix))]

    def buffered_records(self) -> int:
        """Return how many records wait in the buffers."""
        with self._lock:
            return sum(len(b.lines) for b in self._buffers.values())

    def _flush_prefix(self, prefix: str) -> FlushedObject | None:
        with self._lock:
            taken = self._buffers.pop(prefix, None)
        if taken is None or not taken.lines:
            return None
        key = object_key(prefix, taken.first_at)
        data = b"".join(taken.lines)
        try:
            self.lake.put_bytes(key, data)
        except BaseException:
            self._restore(taken)
            raise
        tokens = self._settle(taken)
        flushed = FlushedObject(key, len(taken.lines), len(data), tokens, taken.last_lines)
        self._report(flushed)
        return flushed

    def _restore(self, taken: _Buffer) -> None:
        with self._lock:
            newer = self._buffers.get(taken.prefix)
            if newer is not None:
                taken.absorb(newer)
            self._buffers[taken.prefix] = taken

    def _settle(self, written: _Buffer) -> list[Hashable]:
        """Count the written records off their tokens; return the tokens with nothing left pending."""
        done = []
        with self._lock:
            for token in written.tokens:
                self._pending[token] -= 1
                if self._pending[token] == 0:
                    del self._pending[token]
                    done.append(token)
        return done

    def _report(self, flushed: FlushedObject) -> None:
        if self.on_durable is not None:
            self.on_durable(flushed)  # acks first: a slow listener must not hold them back
        for listener in self._listeners if flushed.key else ():
            try:
                listener(flushed)
            except Exception:
                log.exception("a listener of the delivery stream failed on %s", flushed.key)


# One encoder for every line: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _line(document: dict[str, Any]) -> bytes:
    # The IoT rule's Firehose action appends the separator "\n" to each record.
    return (_ENCODER.encode(document) + "\n").encode()
