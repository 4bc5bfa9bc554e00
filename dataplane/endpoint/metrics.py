"""Per-variant invocation metrics like CloudWatch's, kept as one-second buckets shared through files.

Each worker process counts in memory and, once a second, appends the seconds that are over to
metrics/<pid>-<hour>.jsonl; a reader merges every worker's files (at most ~1 s behind). Latencies go
into a fixed log-spaced histogram so that p99 can be merged across processes.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Upper bounds (ms) of the latency histogram's buckets; the last one catches everything slower.
BOUNDS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 2000, 5000, 1e12)
KEEP_HOURS = 24


@dataclass
class Bucket:
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    model_ms: float = 0.0
    overhead_ms: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * len(BOUNDS_MS))

    def add(self, status: int, model_ms: float, overhead_ms: float) -> None:
        self.invocations += 1
        self.errors_4xx += 400 <= status < 424 or 425 <= status < 500
        self.errors_5xx += status == 424 or status >= 500  # a model's failure reaches clients as 424 ModelError
        self.model_ms += model_ms
        self.overhead_ms += overhead_ms
        self.histogram[bisect.bisect_left(BOUNDS_MS, model_ms + overhead_ms)] += 1

    def merge(self, other: Bucket) -> None:
        self.invocations += other.invocations
        self.errors_4xx += other.errors_4xx
        self.errors_5xx += other.errors_5xx
        self.model_ms += other.model_ms
        self.overhead_ms += other.overhead_ms
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]

    def quantile_ms(self, q: float) -> float | None:
        """Return the histogram bucket bound below which a share q of the latencies lie (None when empty)."""
        total = sum(self.histogram)
        if not total:
            return None
        seen = 0
        for bound, count in zip(BOUNDS_MS, self.histogram, strict=True):
            seen += count
            if seen >= q * total:
                return float(min(bound, 1e5))
        return None

    def summary(self) -> dict[str, Any]:
        """Return the bucket's CloudWatch-like statistics (averages in ms)."""
        calls = self.invocations or 1
        return {
            "invocations": self.invocations,
            "errors_4xx": self.errors_4xx,
            "errors_5xx": self.errors_5xx,
            "model_latency_ms": round(self.model_ms / calls, 3),
            "overhead_latency_ms": round(self.overhead_ms / calls, 3),
            "p99_latency_ms": self.quantile_ms(0.99),
        }


Key = tuple[str, str, int]  # endpoint, variant, second


class MetricsRecorder:
    """Counts invocations of this process and flushes finished seconds to the shared metrics folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._buckets: dict[Key, Bucket] = defaultdict(Bucket)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, endpoint: str, variant: str, status: int, model_ms: float, overhead_ms: float) -> None:
        """Count one invocation answered with status."""
        with self._lock:
            self._buckets[(endpoint, variant, int(time.time()))].add(status, model_ms, overhead_ms)

    def _take_finished(self, everything: bool = False) -> dict[Key, Bucket]:
        now = int(time.time())
        with self._lock:
            done = {key: b for key, b in self._buckets.items() if everything or key[2] < now}
            for key in done:
                del self._buckets[key]
        return done

    def flush(self, everything: bool = False) -> None:
        """Append the finished seconds (all of them when everything) to this process's file."""
        done = self._take_finished(everything)
        if not done:
            return
        path = self.folder / f"{os.getpid()}-{time.strftime('%Y%m%d%H', time.gmtime())}.jsonl"
        lines = [json.dumps({"e": e, "v": v, "t": t, **bucket_row(b)}) for (e, v, t), b in done.items()]
        with path.open("a") as handle:
            handle.write("\n".join(lines) + "\n")

    def pending(self) -> dict[Key, Bucket]:
        """Return a copy of the not yet flushed buckets (a reader in this process adds them)."""
        with self._lock:
            return {key: _copy(b) for key, b in self._buckets.items()}

    def start(self, interval: float = 1.0) -> None:
        """Flush every interval seconds in a daemon thread, and prune files older than a day."""

        def loop() -> None:
            while not self._stop.wait(interval):
                self.flush()
                prune(self.folder)

        self._thread = threading.Thread(target=loop, name="metrics-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flush thread and write out everything counted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush(everything=True)


def bucket_row(bucket: Bucket) -> dict[str, Any]:
    return {
        "n": bucket.invocations, "e4": bucket.errors_4xx, "e5": bucket.errors_5xx,
        "ml": round(bucket.model_ms, 3), "ol": round(bucket.overhead_ms, 3), "h": bucket.histogram,
    }  # fmt: skip


def _copy(bucket: Bucket) -> Bucket:
    return Bucket(**{**bucket.__dict__, "histogram": list(bucket.histogram)})


def row_bucket(row: dict[str, Any]) -> Bucket:
    return Bucket(row["n"], row["e4"], row["e5"], row["ml"], row["ol"], list(row["h"]))


def prune(folder: Path) -> None:
    """Delete metrics files not written for KEEP_HOURS."""
    cutoff = time.time() - KEEP_HOURS * 3600
    for path in folder.glob("*.jsonl"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass  # another worker pruned it first


def _file_rows(folder: Path, since: int) -> list[dict[str, Any]]:
    hour = time.strftime("%Y%m%d%H", time.gmtime(since - 3600))
    rows = []
    for path in folder.glob("*.jsonl"):
        if path.stem.rsplit("-", 1)[-1] < hour:
            continue
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line another process is writing right now
    return rows


def read_metrics(
    folder: Path, endpoint: str, since: int, period: int = 10, pending: dict[Key, Bucket] | None = None
) -> dict[str, Any]:
    """Return {"period", "variants": {name: {"points": [{t, invocations, ...}], "total": {...}}}} since since.

    Points are period-second buckets (t = the bucket's start, epoch seconds) of all worker processes.
    """
    merged: dict[str, dict[int, Bucket]] = defaultdict(lambda: defaultdict(Bucket))
    totals: dict[str, Bucket] = defaultdict(Bucket)
    rows = [(r["v"], r["t"], row_bucket(r)) for r in _file_rows(Path(folder), since) if r["e"] == endpoint]
    rows += [(v, t, b) for (e, v, t), b in (pending or {}).items() if e == endpoint]
    for variant, second, bucket in rows:
        if second >= since:
            merged[variant][second - second % period].merge(bucket)
            totals[variant].merge(bucket)
    variants = {
        name: {
            "points": [{"t": t, **merged[name][t].summary()} for t in sorted(merged[name])],
            "total": totals[name].summary(),
        }
        for name in sorted(merged)
    }
    return {"period": period, "since": since, "variants": variants}
