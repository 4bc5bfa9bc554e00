"""local query backend: read-only DuckDB SQL over the lake (Athena's role).

Two tables per query: `telemetry` (the curated Parquet, through a pyarrow dataset) and
`telemetry_live` (curated plus the raw objects the ETL has not processed yet, typed the same way
and deduplicated by message_id), so that a reading is queryable as soon as it lands in raw/.

Corrupt objects do not take the tables down: unparsable lines of a raw object are left out of the
tail (as the ETL sends them to errors/), and a curated Parquet file DuckDB cannot read is left out of
`telemetry`. Each is logged once per engine and listed by DuckDBQuery.skipped_objects.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
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


@dataclass
class _Snapshot:
    """A locked-down DuckDB database holding one state of the lake's tables."""

    fingerprint: tuple
    con: duckdb.DuckDBPyConnection
    curated: tuple[str, ...]
    # Arrow datasets registered on con are visible to con alone: queries then share con, in turn, under this lock.
    exclusive: threading.Lock
    # Profiling cannot be switched on once the configuration is locked, so the cursors are made before.
    cursors: queue.Queue | None = None
    bytes_scanned_basis: str = BYTES_SCANNED_BASIS

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
    live-readings query costs a listing and a pruned Parquet read, not a fresh engine.
    """

    def __init__(self, cached_lakes: int = 4) -> None:
        self.cached_lakes = cached_lakes
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
        """Return the lake's current snapshot, building a new one when the lake changed."""
        try:
            bookmark_bytes = lake.get_bytes(BOOKMARK_KEY)
        except KeyError:
            bookmark_bytes = b""
        raw = lake.list_objects(RAW_PREFIX)
        curated = lake.list_objects(CURATED_PREFIX)
        fingerprint = (hashlib.sha1(bookmark_bytes).digest(), tuple(raw), tuple(curated))
        with self._lock:
            cached = self._snapshots.get(lake.url)
            if cached is not None and cached.fingerprint == fingerprint:
                self._snapshots.move_to_end(lake.url)
                return cached
        snapshot = self._build(lake, fingerprint, raw)
        with self._lock:
            self._snapshots[lake.url] = snapshot
            self._snapshots.move_to_end(lake.url)
            while len(self._snapshots) > self.cached_lakes:
                self._snapshots.popitem(last=False)[1].con.close()
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
            shared = self._register_tables(con, lake, raw, bookmark, curated)
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
        return _Snapshot(fingerprint, con, keys, threading.Lock(), cursors, basis)

    def _register_tables(
        self,
        con: duckdb.DuckDBPyConnection,
        lake: Lake,
        raw: list[ObjectInfo],
        bookmark: Bookmark,
        curated: list[tuple[str, int]],
    ) -> bool:
        """Create `telemetry` (over the curated files given) and `telemetry_live` on con.

        Returns whether other cursors of con may read them.
        """
        tail = [info for info in raw if info.key not in bookmark.processed]
        numeric, tail_dates = self._load_tail(con, lake, [info.key for info in tail], bookmark)
        shared = self._register_curated(con, lake, numeric, [key for key, _ in curated])
        # Only the curated partitions of the tail's dates can hold its messages already. Dropping
        # them once here keeps every live query a plain union, with no join against curated ids.
        dates = ", ".join(quote_literal(date) for date in tail_dates) or "NULL"
        con.execute(
            "DELETE FROM raw_tail t WHERE EXISTS (SELECT 1 FROM telemetry c "
            f"WHERE c.date IN ({dates}) AND c.message_id = t.message_id)"
        )
        con.execute("CREATE VIEW telemetry_live AS SELECT * FROM telemetry UNION ALL BY NAME SELECT * FROM raw_tail")
        return shared

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
    ) -> tuple[list[str], list[str]]:
        """Load the raw tail, typed, validated as the ETL does and deduplicated, into table raw_tail.

        Objects with unparsable lines are read without them (see _readable_tail). Returns (numeric
        columns, dates of the tail's rows).
        """
        with lake.local_paths(keys) as paths, tempfile.TemporaryDirectory(prefix="iotcast-tail-") as tmp:
            tail = list(zip(keys, paths, strict=True))
            numeric, types = self._load_readable_tail(con, lake, tail, Path(tmp), bookmark)
            reason = reject_reason_sql(types, numeric, bookmark.ranges)
            typed = typed_select_sql(f"raw_src WHERE ({reason}) IS NULL", types, numeric)
            con.execute(
                f"CREATE TABLE raw_tail AS SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY message_id ORDER BY received_at NULLS LAST) AS rn FROM ({typed})) WHERE rn = 1"
            )
            con.execute("DROP TABLE raw_src")
        dates = [row[0] for row in con.execute("SELECT DISTINCT date FROM raw_tail").fetchall()]
        return numeric, dates

    def _read_tail(
        self, con: duckdb.DuckDBPyConnection, paths: list[Path], bookmark: Bookmark
    ) -> tuple[list[str], dict[str, str]]:
        """Load the raw files into table raw_src; return (numeric columns, the fields' read types)."""
        detected = detect_raw_columns(con, paths)
        numeric = order_numeric({*bookmark.numeric, *numeric_fields(detected)})
        types = load_raw(con, "raw_src", paths, detected, temporary=False) if paths else self._empty_source(con)
        return numeric, types

    def _load_readable_tail(
        self, con: duckdb.DuckDBPyConnection, lake: Lake, tail: list[tuple[str, Path]], folder: Path, bookmark: Bookmark
    ) -> tuple[list[str], dict[str, str]]:
        """Load the tail's (key, path) objects into raw_src, leaving out what DuckDB cannot read; see _read_tail.

        One read of everything when nothing new is broken. On a failure (DuckDB fails the whole read
        for one bad line), every object's lines are checked; failing again, objects DuckDB cannot
        read even alone (lines Python's json accepts and DuckDB does not) are left out whole.
        """
        readable = self._readable_tail(lake, tail, folder, known_only=True)
        try:
            return self._read_tail(con, [path for _, path in readable], bookmark)
        except duckdb.InvalidInputException:
            readable = self._readable_tail(lake, tail, folder, known_only=False)
        try:
            return self._read_tail(con, [path for _, path in readable], bookmark)
        except duckdb.InvalidInputException:
            readable = [(key, path) for key, path in readable if self._reads_alone(con, lake, key, path)]
        return self._read_tail(con, [path for _, path in readable], bookmark)

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
        con.execute(f"CREATE TABLE raw_src ({columns})")
        return types
