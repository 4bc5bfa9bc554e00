"""Which things the registry knows, as the ingest service asks it: a cached set refreshed every few seconds.

The ingest must not query the registry per message (20k readings/s); a small cache keeps it
independent of Django too: it is given a loader (e.g. devices.selectors.device_names_active).
DeviceSeenRecorder goes the other way: it reports each device's latest durable record, once per
written object, to a saver (e.g. devices.services.device_seen_update).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("dataplane.ingest")


class CachedDeviceNames:
    """A callable name -> bool answering from a set that load() refills at most every refresh_s seconds.

    Until the first successful load every name is accepted (the registry being down must not turn
    all telemetry into errors); a failed refresh keeps the last good set.
    """

    def __init__(
        self, load: Callable[[], Iterable[str]], refresh_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self._clock = clock
        self._names: frozenset[str] | None = None
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, name: str) -> bool:
        """Return whether name is an active device (True for every name until the registry first answers)."""
        names = self._current()
        return names is None or name in names

    def _current(self) -> frozenset[str] | None:
        with self._lock:
            if self._clock() - self._loaded_at >= self.refresh_s:
                self._loaded_at = self._clock()
                self._refresh()
            return self._names

    def _refresh(self) -> None:
        try:
            self._names = frozenset(self._load())
        except Exception:
            log.exception("could not read the device registry; keeping the last list of devices")


# A device's last message is kept for display; a reading is ~200 bytes, a batch element of 128 KB is not.
LAST_MESSAGE_MAX_BYTES = 4096


class DeviceSeenRecorder:
    """A delivery-stream listener: per written object, save(name -> (received_at ms, last record)).

    Called once per object, never per message, so the registry is written at most once per flush.
    A record above LAST_MESSAGE_MAX_BYTES is replaced by a stub naming its size.
    """

    def __init__(self, save: Callable[[dict[str, tuple[int, dict]]], object]) -> None:
        self._save = save

    def __call__(self, flushed) -> None:
        """Save the devices of flushed (a delivery.FlushedObject); does nothing when it holds none."""
        seen = {name: _seen(line) for name, line in flushed.last_lines.items()}
        if seen:
            self._save(seen)


def _seen(line: bytes) -> tuple[int, dict]:
    record = json.loads(line)
    received_at = int(record.get("received_at") or time.time() * 1000)
    if len(line) > LAST_MESSAGE_MAX_BYTES:
        record = {key: record.get(key) for key in ("message_id", "timestamp", "device_id", "received_at")}
        record["truncated_bytes"] = len(line)
    return received_at, record
