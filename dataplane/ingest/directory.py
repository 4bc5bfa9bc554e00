"""Which things the registry knows, as the ingest service asks it: a cached set refreshed every few seconds.

The ingest must not query the registry per message (20k readings/s); a small cache keeps it
independent of Django too: it is given a loader (e.g. devices.selectors.device_names_active).
"""

from __future__ import annotations

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
