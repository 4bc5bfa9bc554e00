"""The agent's on-disk queue: readings wait here (sqlite3, stdlib) until the broker acknowledges them.

A reading is written before anything is sent and deleted only after its PUBACK, so readings taken
while the broker is unreachable, or still unacknowledged when the agent stops, are sent after the
next (re)connect, even by the next run of the agent. The queue is bounded: when it holds max_items,
the oldest readings are dropped to make room, and counted.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

QUEUE_FILE = "queue.sqlite3"
LOCK_FILE = "queue.lock"


class QueueError(Exception):
    """The queue folder cannot be used (not writable, or another agent holds it)."""


class DiskQueue:
    """A bounded FIFO of encoded readings in directory/queue.sqlite3; safe to share between threads."""

    def __init__(self, directory: str | Path, max_items: int) -> None:
        """Open (or create) the queue; raise QueueError when the folder is unusable or already in use."""
        self.directory = Path(directory).resolve()
        self.max_items = max_items
        self.dropped = 0  # dropped by this process because the bound was hit
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            self._db = sqlite3.connect(self.directory / QUEUE_FILE, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise QueueError(f"cannot use the queue folder {self.directory}: {exc}") from exc
        try:
            # Two agents draining one queue would send and delete each other's readings.
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise QueueError(f"another agent is using the queue in {self.directory}") from exc
        # WAL + NORMAL: a committed reading survives a crash of the agent (not necessarily a power cut).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS readings (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "body TEXT NOT NULL, queued_at REAL NOT NULL)"
        )
        self._count = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]

    def __len__(self) -> int:
        return self._count

    def put(self, body: str) -> int:
        """Append one encoded reading; return how many of the oldest were dropped to respect max_items."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO readings (body, queued_at) VALUES (?, ?)", (body, time.time()))
            excess = self._count + 1 - self.max_items
            dropped = 0
            if excess > 0:
                cursor = self._db.execute(
                    "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings ORDER BY seq LIMIT ?)", (excess,)
                )
                dropped = cursor.rowcount
            self._db.execute("COMMIT")
            self._count += 1 - dropped
            self.dropped += dropped
            return dropped

    def pending(self, after_seq: int, limit: int) -> list[tuple[int, str, float]]:
        """Return up to limit (seq, body, queued_at) with seq > after_seq, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, body, queued_at FROM readings WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()

    def remove(self, seqs: list[int]) -> int:
        """Delete the readings with these seqs (acknowledged); return how many were still there."""
        with self._lock:
            cursor = self._db.execute(
                f"DELETE FROM readings WHERE seq IN ({','.join('?' * len(seqs))})", seqs
            )  # seqs are ints from this queue: the placeholders are not user input
            self._count -= cursor.rowcount
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
        os.close(self._lock_fd)
