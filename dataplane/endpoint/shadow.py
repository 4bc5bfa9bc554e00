"""The shadow log: one JSON line per mirrored request, what the shadow variant answered next to production.

Every worker process appends to <state>/shadow/<endpoint>.jsonl; the control API reads its tail back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_ANSWER_CHARS = 65536  # a longer shadow answer is cut: the log is for comparing, not for replaying
MAX_LIMIT = 500
_BLOCK = 64 * 1024
_SPARE = 4  # lines read beyond the limit, in place of torn ones


def shadow_append(path: Path, record: dict[str, Any]) -> None:
    """Append record as one JSON line with a single write, so that lines of concurrent workers never interleave."""
    line = (json.dumps(record) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def _tail_lines(path: Path, count: int) -> list[bytes]:
    """Return the file's last count complete lines, reading backwards block by block (the log only grows)."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        position, data = handle.tell(), b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.split(b"\n")
    if position > 0:
        lines = lines[1:]  # the first one may be cut in the middle
    return [line for line in lines if line.strip()][-count:]


def shadow_tail(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    """Return the newest min(limit, MAX_LIMIT) shadow records, newest first; [] when none was written yet.

    A line that does not parse (a worker killed mid-write) is skipped.
    """
    if not path.exists():
        return []
    limit = max(1, min(limit, MAX_LIMIT))
    records = []
    for line in reversed(_tail_lines(path, limit + _SPARE)):
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return records[:limit]
