"""local query backend: read-only DuckDB SQL over the lake (Athena's role).

Two tables per query: `telemetry` (the curated Parquet, through a pyarrow dataset) and
`telemetry_live` (curated plus the raw objects the ETL has not processed yet, typed the same way
and deduplicated by message_id), so that a reading is queryable as soon as it lands in raw/.

Corrupt objects do not take the tables down: unparsable lines of a raw object are left out of the
tail (as the ETL sends them to errors/), and a curated Parquet file DuckDB cannot read is left out of
`telemetry`. Each is logged once per engine and listed by DuckDBQuery.skipped_objects.

The tables of a lake are kept between queries and rebuilt when the lake changes; when the only
change is new raw objects (the ingest writes one every few seconds), only those are loaded and
appended to the kept raw tail, deduplicated against it and against the curated ids (see _TailState).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from cloud.interfaces import BackendError, Lake, ObjectInfo, QueryEngine, QueryResult, QueryTimeout
from cloud.local.duckdb_telemetry import (
    BOOKMARK_KEY,
    CURATED_PREFIX,
    RAW_PREFIX,
    Bookmark,
    connect,
    curated_dataset,
    curated_keys,
    detect_raw_columns,
    is_numeric_type,
    load_raw,
    numeric_fields,
    order_numeric,
    parsable_json_lines,
    quote_ident,
    quote_literal,
    reject_reason_sql,
    typed_select_sql,
)

logger = logging.getLogger(__name__)

# Corrupt curated files one query may discover and skip (one rebuild each) before it gives up.
MAX_SKIPPED_PER_QUERY = 16
# Cursors of one snapshot, made (with profiling on) before its configuration is locked: queries at once.
CURSORS_PER_SNAPSHOT = 8
BYTES_SCANNED_BASIS = (
    "bytes the query's scans read: Parquet column chunks of the row groups not pruned (DuckDB's profiler), "
    "plus the in-memory size of the rows read from the raw tail"
)
# A lake outside the local disk is read through a pyarrow dataset, whose scans DuckDB cannot weigh in bytes.
ARROW_BYTES_SCANNED_BASIS = (
    "in-memory size of the rows the query's scans read (partitions and columns pruned; pyarrow reads the "
    "Parquet, so its compressed bytes are not measured), plus the rows read from the raw tail"
)
# A 63-bit hash of a row's message_id (DuckDB's hash, shifted to fit a BIGINT). Sorted numpy arrays of
# them tell in O(log n) whether an id may be among many, at 8 bytes an id; a hit is then checked exactly.
ID_HASH = "CAST(hash(message_id) >> 1 AS BIGINT)"


class QueryRejected(BackendError):
    """The SQL is not a single read-only SELECT statement."""


class _CorruptCurated(Exception):
    """DuckDB failed on the curated file key: the caller skips it and rebuilds the tables."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key, self.reason = key, reason


def _named_key(exc: Exception, keys: Iterable[str]) -> str | None:
    """Return the key among keys that DuckDB's error message names (it quotes the failing file), if any."""
    message = str(exc)
    return next((key for key in keys if key in message), None)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _may_be_file_error(exc: duckdb.Error) -> bool:
    """Return whether exc may come from an unreadable file: never for errors in the SQL itself or its casts."""
    return type(exc) is duckdb.Error or isinstance(
        exc, duckdb.InvalidInputException | duckdb.IOException | duckdb.InternalException
    )


def scanned_bytes(profile: dict[str, Any]) -> int:
    """Return the bytes the table scans of a DuckDB JSON profile read.

    A Parquet scan reports bytes_scanned (the column chunks it read, after partition, row-group and
    projection pruning); a scan of a table in memory (the raw tail) or of an Arrow dataset reports none,
    and counts the size of the rows it produced instead.
    """
    total, stack = 0, list(profile.get("operator", []))
    while stack:
        node = stack.pop()
        stack.extend(node.get("children", []))
        if "bytes_scanned" in node:
            total += int(node["bytes_scanned"])
        elif node.get("type") == "TABLE_SCAN" or node.get("name") == "SEQ_SCAN":
            total += int(node.get("intermediate_size_bytes") or 0)
    return total


def profiled(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Return con with DuckDB's profiler on (kept in memory, printed nowhere): a client setting, set per cursor."""
    con.execute("PRAGMA enable_profiling = 'no_output'")
    return con


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise QueryRejected unless sql is exactly one SELECT (or WITH ... SELECT) statement."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRejected(f"cannot parse the query: {exc}") from exc
    if len(statements) != 1:
        raise QueryRejected(f"expected exactly one SELECT statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryRejected(f"only SELECT queries are allowed, got {statements[0].type.name}")


def _sorted_hashes(con: duckdb.DuckDBPyConnection, sql: str) -> np.ndarray:
    """Return the one BIGINT column of sql's rows as a sorted int64 array."""
    columns = con.execute(sql).fetchnumpy()
    return np.sort(np.asarray(next(iter(columns.values())), dtype=np.int64))


def _hits(sorted_hashes: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Return a boolean mask of the probes found in sorted_hashes."""
    if not len(sorted_hashes) or not len(probes):
        return np.zeros(len(probes), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_hashes, probes), len(sorted_hashes) - 1)
    return sorted_hashes[at] == probes


def _in_list(values: Iterable[str]) -> str:
    """Return values as a SQL IN list of literals (NULL when empty, which matches nothing)."""
    return ", ".join(quote_literal(value) for value in sorted(values)) or "NULL"


def _merged_fields(tail: dict[str, str], new: dict[str, str]) -> dict[str, str] | None:
    """Return the fields read_json finds in the tail's objects and new ones read together, or None when unknown.

    A field numeric in one and not in the other gets a type only DuckDB's union can tell (a NULL-typed
    field turns numeric, a text one does not): the caller rebuilds instead of guessing.
    """
    if any(is_numeric_type(tail[name]) != is_numeric_type(new[name]) for name in tail.keys() & new.keys()):
        return None
    return {**new, **tail}


def _landed(old: tuple, new: tuple) -> list[ObjectInfo] | None:
    """Return the raw objects listed in fingerprint new and not in old, or None when more than that changed.

    A fingerprint is (bookmark digest, raw listing, curated listing); an object whose size changed counts
    as changed, not as new.
    """
    (old_bookmark, old_raw, old_curated), (new_bookmark, new_raw, new_curated) = old, new
    if old_bookmark != new_bookmark or old_curated != new_curated or not set(old_raw) <= set(new_raw):
        return None
    known = set(old_raw)
    return [info for info in new_raw if info not in known]


def _arrived_first(fresh: Any, kept: Any) -> bool:
    """Return whether a row received at fresh sorts before one received at kept (NULLs last), as the dedupe orders."""
    return fresh is not None and (kept is None or fresh < kept)


@dataclass
class _TailState:
    """What appending new raw objects to a snapshot's raw_tail needs, to give the table a full rebuild would.

    A full rebuild keeps, per message_id, the tail row received first, and then drops the rows whose
    message_id the curated files of the tail's dates hold. The hash arrays let an append check a few new
    rows against both without scanning either table: only a hit (a replay, or a hash collision) is
    checked exactly.
    """

    bookmark: Bookmark
    # raw_tail's metric columns, in order, and the fields read_json found in the tail's objects.
    numeric: list[str]
    detected: dict[str, str]
    # Dates of the tail's deduplicated rows, those dropped as already curated included (the rebuild's rule).
    dates: set[str]
    # Sorted ID_HASH of raw_tail's rows.
    tail_hashes: np.ndarray
    # Per date: sorted ID_HASH of the curated rows, each date read once per snapshot, when first needed.
    curated_hashes: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Snapshot:
    """A locked-down DuckDB database holding one state of the lake's tables."""

    fingerprint: tuple
    con: duckdb.DuckDBPyConnection
    curated: tuple[str, ...]
    # Arrow datasets registered on con are visible to con alone: queries then share con, in turn, under this lock.
    # Appends take it too for their work on con, which nothing else touches while cursors serve the queries.
    exclusive: threading.Lock
    # Profiling cannot be switched on once the configuration is locked, so the cursors are made before.
    cursors: queue.Queue | None = None
    bytes_scanned_basis: str = BYTES_SCANNED_BASIS
    tail: _TailState | None = None
    # Held while new raw objects are appended: one append at a time, each on the fingerprint the last one left.
    refresh: threading.Lock = field(default_factory=threading.Lock)
    # The connection appends read new raw objects with (made by the first; a new database costs ~10 ms).
    # It may read files: no user SQL ever runs on it.
    loader: duckdb.DuckDBPyConnection | None = None

    def close(self) -> None:
        """Close the snapshot's connections."""
        self.con.close()
        if self.loader is not None:
            self.loader.close()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a profiled connection to run one query on (a pooled cursor, or con under the lock)."""
        if self.cursors is None:
            with self.exclusive:
                yield self.con
            return
        cursor = self.cursors.get()
        try:
            yield cursor
        finally:
            self.cursors.put(cursor)


class DuckDBQuery(QueryEngine):
    """Runs queries over the lake's curated Parquet and raw tail, on a database kept per lake.

    The database (views over the curated files, the raw tail loaded and deduplicated) is rebuilt
    only when the lake's state changes: the bookmark, the raw listing or the curated listing. A
    query that finds them unchanged reuses it through a cursor of its own (thread-safe), so the
    live-readings query costs a listing and a pruned Parquet read, not a fresh engine. When only new
    raw objects landed, those alone are loaded and appended to the database's raw tail.

    full_builds and appends count the databases built and the in-place appends made.
    """

    def __init__(self, cached_lakes: int = 4) -> None:
        self.cached_lakes = cached_lakes
        self.full_builds = 0
        self.appends = 0
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._lock = threading.Lock()
        # {lake url: {key: why it is skipped}}: corrupt objects found so far, each logged once.
        self._skipped: dict[str, dict[str, str]] = {}
        # (lake url, key) of raw objects DuckDB cannot read even cleaned: left out of the tail whole.
        self._unreadable_raw: set[tuple[str, str]] = set()

    def skipped_objects(self, lake: Lake) -> dict[str, str]:
        """Return {key: reason} of the lake's objects (or their lines) the tables leave out as unreadable."""
        with self._lock:
            return dict(self._skipped.get(lake.url, {}))

    def execute(
        self, lake: Lake, sql: str, params: list[Any] | None = None, timeout_s: float | None = None
    ) -> QueryResult:
        """Run one SELECT with positional ? params; raise QueryRejected for anything else.

        Raises QueryTimeout when it runs past timeout_s, BackendError (with DuckDB's message) when
        the query itself fails. A curated file the query finds corrupt is skipped and the query rerun.
        """
        started = time.perf_counter()
        for _ in range(MAX_SKIPPED_PER_QUERY):
            try:
                return self._run(lake, self._snapshot(lake), sql, params, timeout_s, started)
            except _CorruptCurated as exc:
                self._skip(lake, exc.key, f"unreadable Parquet file left out of telemetry: {exc.reason}")
                with self._lock:
                    # Dropped, not closed: another thread may still be reading it; it closes when collected.
                    self._snapshots.pop(lake.url, None)
        raise BackendError(f"query failed: more than {MAX_SKIPPED_PER_QUERY} corrupt curated files in the lake")

    def _skip(self, lake: Lake, key: str, reason: str) -> None:
        """Record key as left out of the tables (wholly or in part) for reason; log each new reason once."""
        with self._lock:
            known = self._skipped.setdefault(lake.url, {})
            fresh = known.get(key) != reason
            known[key] = reason
        if fresh:
            logger.warning("lake %s: %s: %s", lake.url, key, reason)

    def _forget_gone(self, lake: Lake, present: set[str]) -> None:
        """Forget the skipped objects no longer in the tables' sources (curated by the ETL, or deleted)."""
        with self._lock:
            known = self._skipped.get(lake.url, {})
            for key in set(known) - present:
                del known[key]
                self._unreadable_raw.discard((lake.url, key))

    def _is_skipped(self, lake: Lake, key: str) -> bool:
        with self._lock:
            return key in self._skipped.get(lake.url, {})

    def _corrupt_curated(self, lake: Lake, keys: Iterable[str], exc: duckdb.Error) -> _CorruptCurated | None:
        """Return the curated file behind exc: the one its message names, else (for a possible file error) the
        first file that cannot be read whole. None when exc is not about a curated file.
        """
        keys = list(keys)
        key = _named_key(exc, keys)
        if key is not None:
            return _CorruptCurated(key, _first_line(exc))
        if not _may_be_file_error(exc):
            return None
        # The message names no file (e.g. a garbled page header): read each file whole to find it.
        filesystem, base = lake.arrow_filesystem()
        with connect() as con:
            for key in keys:
                try:
                    if isinstance(filesystem, pafs.LocalFileSystem):
                        path = quote_literal(f"{base}/{key}")
                        con.execute(f"CREATE OR REPLACE TEMP TABLE probe AS SELECT * FROM read_parquet({path})")
                    else:
                        pq.read_table(f"{base}/{key}", filesystem=filesystem)
                except (duckdb.Error, pa.ArrowException, OSError) as probe:
                    return _CorruptCurated(key, _first_line(probe))
        return None

    def _run(
        self,
        lake: Lake,
        snapshot: _Snapshot,
        sql: str,
        params: list[Any] | None,
        timeout_s: float | None,
        started: float,
    ) -> QueryResult:
        """Run sql on snapshot; raise _CorruptCurated when it fails on one of the snapshot's curated files."""
        with snapshot.cursor() as cursor:
            check_read_only(cursor, sql)
            # The time limit interrupts this cursor's query from a timer thread (DuckDB has no statement timeout).
            timer = threading.Timer(timeout_s, cursor.interrupt) if timeout_s else None
            try:
                if timer:
                    timer.start()
                cursor.execute(sql, params or [])
                rows = cursor.fetchall()
                scanned = scanned_bytes(json.loads(cursor.get_profiling_information(format="json")))
            except duckdb.InterruptException as exc:
                raise QueryTimeout(f"query stopped after its time limit of {timeout_s:g} s") from exc
            except duckdb.Error as exc:
                corrupt = self._corrupt_curated(lake, snapshot.curated, exc)
                if corrupt is not None:
                    raise corrupt from exc
                raise BackendError(f"query failed: {exc}") from exc
            finally:
                if timer:
                    timer.cancel()
            columns = [item[0] for item in cursor.description]
        elapsed_ms = (time.perf_counter() - started) * 1000
        return QueryResult(columns, rows, scanned, elapsed_ms, bytes_scanned_basis=snapshot.bytes_scanned_basis)

    def _snapshot(self, lake: Lake) -> _Snapshot:
        """Return the lake's current snapshot: the cached one, brought up to date in place when only new raw
        objects landed, else a new one built when the lake changed.
        """
        for _ in range(2):
            fingerprint, raw = self._listing(lake)
            with self._lock:
                cached = self._snapshots.get(lake.url)
                if cached is not None and cached.fingerprint == fingerprint:
                    self._snapshots.move_to_end(lake.url)
                    return cached
            refreshed = False if cached is None else self._refreshed(lake, cached, fingerprint)
            if refreshed:
                return cached
            if refreshed is False:
                break
        snapshot = self._build(lake, fingerprint, raw)
        with self._lock:
            self.full_builds += 1
            self._snapshots[lake.url] = snapshot
            self._snapshots.move_to_end(lake.url)
            while len(self._snapshots) > self.cached_lakes:
                self._snapshots.popitem(last=False)[1].close()
        return snapshot

    def _build(self, lake: Lake, fingerprint: tuple, raw: list[ObjectInfo]) -> _Snapshot:
        """Return a new snapshot of the lake; raise _CorruptCurated naming a curated file DuckDB cannot read."""
        con = connect()
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        con.execute("SET parquet_metadata_cache = true")
        bookmark = Bookmark.load(lake)
        listed = curated_keys(lake, hidden=bookmark.hidden_keys())
        tail = {info.key for info in raw if info.key not in bookmark.processed}
        self._forget_gone(lake, tail | {key for key, _ in listed})
        curated = [(key, size) for key, size in listed if not self._is_skipped(lake, key)]
        try:
            shared, tail_state = self._register_tables(con, lake, raw, bookmark, curated)
        except duckdb.Error as exc:
            con.close()
            corrupt = self._corrupt_curated(lake, [key for key, _ in curated], exc)
            if corrupt is not None:
                raise corrupt from exc
            raise BackendError(f"cannot open the lake's tables: {exc}") from exc
        # The user's SQL may only read the registered tables, never files or URLs.
        con.execute("SET enable_external_access = false")
        profiled(con)
        cursors: queue.Queue | None = None
        if shared:
            cursors = queue.Queue()
            for _ in range(CURSORS_PER_SNAPSHOT):
                cursors.put(profiled(con.cursor()))
        con.execute("SET lock_configuration = true")
        keys = tuple(key for key, _ in curated)
        basis = BYTES_SCANNED_BASIS if shared else ARROW_BYTES_SCANNED_BASIS
        return _Snapshot(fingerprint, con, keys, threading.Lock(), cursors, basis, tail_state)

    @staticmethod
    def _listing(lake: Lake) -> tuple[tuple, list[ObjectInfo]]:
        """Return (the lake's state: bookmark digest, raw and curated listings; the raw listing)."""
        try:
            bookmark_bytes = lake.get_bytes(BOOKMARK_KEY)
        except KeyError:
            bookmark_bytes = b""
        raw = lake.list_objects(RAW_PREFIX)
        curated = lake.list_objects(CURATED_PREFIX)
        return (hashlib.sha1(bookmark_bytes).digest(), tuple(raw), tuple(curated)), raw

    def _refreshed(self, lake: Lake, snapshot: _Snapshot, fingerprint: tuple) -> bool | None:
        """Bring snapshot up to the lake's state fingerprint in place; return False when only a rebuild can.

        It can when the only change is new raw objects: those are appended to its raw tail. Anything
        else (an ETL run, a bookmark reset, a raw object gone or rewritten, a new column, a replay it
        cannot settle from the hashes) is left to the rebuild, as is a failure on the way. Returns None
        when the snapshot holds raw objects the listing lacks and is otherwise the same: another thread
        appended them after this listing was made, or they were deleted since; a new listing tells which.
        """
        with snapshot.refresh:
            if _landed(fingerprint, snapshot.fingerprint):
                return None
            new = _landed(snapshot.fingerprint, fingerprint)
            if new is None or snapshot.tail is None:
                return False
            try:
                # No new object: another thread appended them while this one waited for the lock.
                appended = not new or self._append(lake, snapshot, new)
            except (duckdb.Error, pa.ArrowException, OSError, KeyError) as exc:
                logger.info("lake %s: new raw objects not appended (%s), rebuilding", lake.url, _first_line(exc))
                return False
            if appended:
                with self._lock:
                    snapshot.fingerprint = fingerprint
                    self.appends += bool(new)
            return appended

    def _append(self, lake: Lake, snapshot: _Snapshot, new: list[ObjectInfo]) -> bool:
        """Append the rows of the new raw objects to the snapshot's raw tail as a rebuild would keep them.

        Returns False, with the tables unchanged, when they need a rebuild. The objects are read on a
        connection of their own: the snapshot's may read no file.
        """
        state = snapshot.tail
        keys = [info.key for info in new if info.key not in state.bookmark.processed]
        if snapshot.loader is None:
            snapshot.loader = connect()
        loaded = self._fresh_rows(snapshot.loader, lake, keys, state)
        if loaded is None:
            return False
        fresh, detected = loaded
        with snapshot.exclusive:
            fresh = self._without_tail_duplicates(snapshot.con, state, fresh)
            if fresh is None:
                return False
            self._insert_fresh(snapshot.con, state, fresh)
        state.detected = detected
        return True

    def _fresh_rows(
        self, side: duckdb.DuckDBPyConnection, lake: Lake, keys: list[str], state: _TailState
    ) -> tuple[pa.Table, dict[str, str]] | None:
        """Return (the rows of the raw objects keys, typed, validated and deduplicated as the tail's, with their
        ID_HASH as column h; the tail's fields with theirs merged in), or None when they change the tail's columns.
        """
        with lake.local_paths(keys) as paths, tempfile.TemporaryDirectory(prefix="iotcast-tail-") as tmp:
            detected, types = self._load_readable_tail(side, lake, list(zip(keys, paths, strict=True)), Path(tmp))
        merged = _merged_fields(state.detected, detected)
        if merged is None or order_numeric({*state.bookmark.numeric, *numeric_fields(merged)}) != state.numeric:
            return None
        typed = self._typed_sql(types, state.numeric, state.bookmark.ranges)
        fresh = side.sql(f"SELECT *, {ID_HASH} AS h FROM ({typed})").to_arrow_table()
        side.execute("DROP TABLE raw_src")
        return fresh, merged

    @staticmethod
    def _without_tail_duplicates(con: duckdb.DuckDBPyConnection, state: _TailState, fresh: pa.Table) -> pa.Table | None:
        """Return fresh less the rows whose message_id the tail holds already, received no later.

        None (rebuild) when the tail's row of such an id was received after the new one (the rebuild
        would keep the new one), or is not there (the hash matched another id).
        """
        suspect = _hits(state.tail_hashes, fresh["h"].to_numpy())
        if not suspect.any():
            return fresh
        chosen = fresh.filter(pa.array(suspect))
        ids = chosen["message_id"].to_pylist()
        kept = dict(
            con.execute(
                "SELECT message_id, received_at FROM raw_tail WHERE list_contains(?, message_id)", [ids]
            ).fetchall()
        )
        for message_id, received in zip(ids, chosen["received_at"].to_pylist(), strict=True):
            if message_id not in kept or _arrived_first(received, kept[message_id]):
                return None
        return fresh.filter(pa.array(~suspect))

    def _insert_fresh(self, con: duckdb.DuckDBPyConnection, state: _TailState, fresh: pa.Table) -> None:
        """Insert the fresh rows not curated yet into raw_tail, in one transaction, and record them in state.

        A date new to the tail widens the rebuild's curated check: the tail's older rows are checked
        against that date's curated ids too.
        """
        new_dates = set(fresh["date"].to_pylist()) - state.dates
        curated = self._curated_ids(con, state, fresh, fresh["h"].to_numpy(), state.dates | new_dates)
        if curated:
            fresh = fresh.filter(pc.invert(pc.is_in(fresh["message_id"], pa.array(sorted(curated)))))
        tail_hashes = state.tail_hashes
        # One transaction: queries on the other cursors see the tail before or after, never half of it.
        con.begin()
        try:
            if self._drop_curated(con, state, tail_hashes, new_dates):
                tail_hashes = _sorted_hashes(con, f"SELECT {ID_HASH} FROM raw_tail")
            if fresh.num_rows:
                self._insert_rows(con, fresh.drop_columns(["h"]))
            con.commit()
        except BaseException:
            con.rollback()
            raise
        added = np.sort(fresh["h"].to_numpy())
        state.tail_hashes = np.insert(tail_hashes, np.searchsorted(tail_hashes, added), added)
        state.dates |= new_dates

    @staticmethod
    def _insert_rows(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        """Insert the Arrow rows into raw_tail (by column name).

        The rows are registered on con only while they are inserted, under the snapshot's exclusive
        lock: a query on con (an Arrow-backed snapshot's) never sees them as a table.
        """
        con.register("fresh_rows", rows)
        try:
            con.execute("INSERT INTO raw_tail BY NAME SELECT * FROM fresh_rows")
        finally:
            con.unregister("fresh_rows")

    def _curated_ids(
        self, con: duckdb.DuckDBPyConnection, state: _TailState, fresh: pa.Table, hashes: np.ndarray, dates: set[str]
    ) -> set[str]:
        """Return the message_ids of fresh (hashes: theirs) that the curated rows of dates hold."""
        mask = self._curated_mask(con, state, hashes, sorted(dates))
        if not mask.any():
            return set()
        ids = fresh["message_id"].filter(pa.array(mask)).to_pylist()
        found = con.execute(
            f"SELECT DISTINCT message_id FROM telemetry WHERE date IN ({_in_list(dates)}) "
            "AND list_contains(?, message_id)",
            [ids],
        ).fetchall()
        return {row[0] for row in found}

    def _register_tables(
        self,
        con: duckdb.DuckDBPyConnection,
        lake: Lake,
        raw: list[ObjectInfo],
        bookmark: Bookmark,
        curated: list[tuple[str, int]],
    ) -> tuple[bool, _TailState]:
        """Create `telemetry` (over the curated files given) and `telemetry_live` on con.

        Returns (whether other cursors of con may read them, what an append to the raw tail needs).
        """
        tail = [info for info in raw if info.key not in bookmark.processed]
        numeric, detected, tail_dates = self._load_tail(con, lake, [info.key for info in tail], bookmark)
        shared = self._register_curated(con, lake, numeric, [key for key, _ in curated])
        hashes = _sorted_hashes(con, f"SELECT {ID_HASH} FROM raw_tail")
        state = _TailState(bookmark, numeric, detected, set(tail_dates), hashes)
        # Only the curated partitions of the tail's dates can hold its messages already. Dropping
        # them once here keeps every live query a plain union, with no join against curated ids.
        if self._drop_curated(con, state, hashes, tail_dates):
            state.tail_hashes = _sorted_hashes(con, f"SELECT {ID_HASH} FROM raw_tail")
        con.execute("CREATE VIEW telemetry_live AS SELECT * FROM telemetry UNION ALL BY NAME SELECT * FROM raw_tail")
        return shared, state

    def _curated_mask(
        self, con: duckdb.DuckDBPyConnection, state: _TailState, probes: np.ndarray, dates: Iterable[str]
    ) -> np.ndarray:
        """Return a mask of the probes (ID_HASH values) that the curated rows of dates may hold.

        Reads the curated ids' hashes of a date on its first use (one scan of that partition), then
        keeps them in state: later probes cost a binary search each, whatever the curated size.
        """
        mask = np.zeros(len(probes), dtype=bool)
        for date in dates:
            if date not in state.curated_hashes:
                sql = f"SELECT {ID_HASH} FROM telemetry WHERE date = {quote_literal(date)}"
                state.curated_hashes[date] = _sorted_hashes(con, sql)
            mask |= _hits(state.curated_hashes[date], probes)
        return mask

    def _drop_curated(
        self, con: duckdb.DuckDBPyConnection, state: _TailState, probes: np.ndarray, dates: Iterable[str]
    ) -> bool:
        """Delete from raw_tail its rows whose message_id the curated rows of dates hold, among those hashed in probes.

        The hashes narrow the rows down; the curated files are read to confirm only when some hash
        matches. Returns whether rows were deleted.
        """
        dates = sorted(dates)
        suspects = probes[self._curated_mask(con, state, probes, dates)]
        if not len(suspects):
            return False
        deleted = con.execute(
            f"DELETE FROM raw_tail t WHERE list_contains(CAST(? AS BIGINT[]), {ID_HASH}) AND EXISTS "
            f"(SELECT 1 FROM telemetry c WHERE c.date IN ({_in_list(dates)}) AND c.message_id = t.message_id)",
            [suspects.tolist()],
        ).fetchall()
        return bool(deleted and deleted[0][0])

    def _register_curated(
        self, con: duckdb.DuckDBPyConnection, lake: Lake, numeric: list[str], keys: list[str]
    ) -> bool:
        """Create view `telemetry` over the curated Parquet files named by keys; return whether cursors see it."""
        filesystem, base = lake.arrow_filesystem()
        if keys and isinstance(filesystem, pafs.LocalFileSystem):
            # Files on local disk: DuckDB's own Parquet reader prunes row groups ~10x faster than a
            # pyarrow dataset scan. It may read the curated folder only, even after lock-down.
            # union_by_name reads every file's footer now: a corrupt file fails here, not in a query.
            files = "[" + ", ".join(quote_literal(f"{base}/{key}") for key in keys) + "]"
            con.execute(
                f"CREATE VIEW telemetry AS SELECT * FROM read_parquet({files}, hive_partitioning=true, "
                "hive_types={'date': 'VARCHAR'}, union_by_name=true)"
            )
            con.execute(f"SET allowed_directories = [{quote_literal(f'{base}/{CURATED_PREFIX}')}]")
            return True
        con.register("curated_arrow", curated_dataset(lake, numeric, keys))
        if not keys:
            con.execute("CREATE TABLE telemetry AS SELECT * FROM curated_arrow")
            return True
        con.execute("CREATE VIEW telemetry AS SELECT * FROM curated_arrow")
        return False

    def _load_tail(
        self, con: duckdb.DuckDBPyConnection, lake: Lake, keys: list[str], bookmark: Bookmark
    ) -> tuple[list[str], dict[str, str], list[str]]:
        """Load the raw tail, typed, validated as the ETL does and deduplicated, into table raw_tail.

        Objects with unparsable lines are read without them (see _readable_tail). Returns (numeric
        columns, the fields read_json found, dates of the tail's rows).
        """
        with lake.local_paths(keys) as paths, tempfile.TemporaryDirectory(prefix="iotcast-tail-") as tmp:
            tail = list(zip(keys, paths, strict=True))
            detected, types = self._load_readable_tail(con, lake, tail, Path(tmp))
        numeric = order_numeric({*bookmark.numeric, *numeric_fields(detected)})
        con.execute(f"CREATE TABLE raw_tail AS {self._typed_sql(types, numeric, bookmark.ranges)}")
        con.execute("DROP TABLE raw_src")
        dates = [row[0] for row in con.execute("SELECT DISTINCT date FROM raw_tail").fetchall()]
        return numeric, detected, dates

    @staticmethod
    def _typed_sql(types: dict[str, str], numeric: list[str], ranges: dict) -> str:
        """Return a SELECT of raw_src's (read with types) valid rows, typed, one per message_id.

        The row received first is kept, as the ETL keeps it.
        """
        reason = reject_reason_sql(types, numeric, ranges)
        typed = typed_select_sql(f"raw_src WHERE ({reason}) IS NULL", types, numeric)
        return (
            "SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER "
            f"(PARTITION BY message_id ORDER BY received_at NULLS LAST) AS rn FROM ({typed})) WHERE rn = 1"
        )

    def _read_tail(self, con: duckdb.DuckDBPyConnection, paths: list[Path]) -> tuple[dict[str, str], dict[str, str]]:
        """Load the raw files into table raw_src; return (the fields read_json found, the fields' read types)."""
        detected = detect_raw_columns(con, paths)
        types = load_raw(con, "raw_src", paths, detected, temporary=False) if paths else self._empty_source(con)
        return detected, types

    def _load_readable_tail(
        self, con: duckdb.DuckDBPyConnection, lake: Lake, tail: list[tuple[str, Path]], folder: Path
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Load the tail's (key, path) objects into raw_src, leaving out what DuckDB cannot read; see _read_tail.

        One read of everything when nothing new is broken. On a failure (DuckDB fails the whole read
        for one bad line), every object's lines are checked; failing again, objects DuckDB cannot
        read even alone (lines Python's json accepts and DuckDB does not) are left out whole.
        """
        readable = self._readable_tail(lake, tail, folder, known_only=True)
        try:
            return self._read_tail(con, [path for _, path in readable])
        except duckdb.InvalidInputException:
            readable = self._readable_tail(lake, tail, folder, known_only=False)
        try:
            return self._read_tail(con, [path for _, path in readable])
        except duckdb.InvalidInputException:
            readable = [(key, path) for key, path in readable if self._reads_alone(con, lake, key, path)]
        return self._read_tail(con, [path for _, path in readable])

    def _readable_tail(
        self, lake: Lake, tail: list[tuple[str, Path]], folder: Path, known_only: bool
    ) -> list[tuple[str, Path]]:
        """Return the (key, path) to read the tail from: broken objects replaced by copies of their parsable lines.

        known_only: clean only the objects already found broken (cheap); else check every object, and
        record (and log once) those with unparsable lines. Objects with no readable line are left out.
        """
        readable = []
        for index, (key, path) in enumerate(tail):
            if known_only and not self._is_skipped(lake, key):
                readable.append((key, path))
                continue
            if (lake.url, key) in self._unreadable_raw:
                continue
            clean, dropped = parsable_json_lines(path.read_bytes())
            if not dropped:
                readable.append((key, path))
                continue
            self._skip(lake, key, f"{dropped} unparsable line(s) left out of the live tail until the ETL runs")
            if clean:
                copy = folder / f"{index}.json"
                copy.write_bytes(clean)
                readable.append((key, copy))
        return readable

    def _reads_alone(self, con: duckdb.DuckDBPyConnection, lake: Lake, key: str, path: Path) -> bool:
        """Return whether DuckDB reads the raw object at path on its own; record and log it when not."""
        try:
            load_raw(con, "raw_probe", [path], detect_raw_columns(con, [path]))
        except duckdb.InvalidInputException as exc:
            with self._lock:
                self._unreadable_raw.add((lake.url, key))
            self._skip(lake, key, f"left out of the live tail, DuckDB cannot read it: {_first_line(exc)}")
            return False
        con.execute("DROP TABLE raw_probe")
        return True

    @staticmethod
    def _empty_source(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Create an empty raw_src table; return its field types."""
        types = {"message_id": "VARCHAR", "device_id": "VARCHAR", "timestamp": "VARCHAR", "received_at": "BIGINT"}
        columns = ", ".join(f"{quote_ident(name)} {kind}" for name, kind in types.items())
        con.execute(f"CREATE OR REPLACE TABLE raw_src ({columns})")
        return types
