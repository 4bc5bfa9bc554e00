"""local query backend: read-only DuckDB SQL over the lake (Athena's role).

Two tables per query: `telemetry` (the curated Parquet, through a pyarrow dataset) and
`telemetry_live` (curated plus the raw objects the ETL has not processed yet, typed the same way
and deduplicated by message_id), so that a reading is queryable as soon as it lands in raw/.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
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
    quote_ident,
    quote_literal,
    reject_reason_sql,
    typed_select_sql,
)


class QueryRejected(BackendError):
    """The SQL is not a single read-only SELECT statement."""


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
    bytes_scanned: int
    # Arrow datasets registered on con are visible to con alone: queries then share it, in turn.
    exclusive: threading.Lock | None = None

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a connection to run one query on (a cursor of its own, or con under the lock)."""
        if self.exclusive is not None:
            with self.exclusive:
                yield self.con
            return
        cursor = self.con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()


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

    def execute(
        self, lake: Lake, sql: str, params: list[Any] | None = None, timeout_s: float | None = None
    ) -> QueryResult:
        """Run one SELECT with positional ? params; raise QueryRejected for anything else.

        Raises QueryTimeout when it runs past timeout_s, BackendError (with DuckDB's message) when
        the query itself fails.
        """
        started = time.perf_counter()
        snapshot = self._snapshot(lake)
        with snapshot.cursor() as cursor:
            check_read_only(cursor, sql)
            # The time limit interrupts this cursor's query from a timer thread (DuckDB has no statement timeout).
            timer = threading.Timer(timeout_s, cursor.interrupt) if timeout_s else None
            try:
                if timer:
                    timer.start()
                cursor.execute(sql, params or [])
                rows = cursor.fetchall()
            except duckdb.InterruptException as exc:
                raise QueryTimeout(f"query stopped after its time limit of {timeout_s:g} s") from exc
            except duckdb.Error as exc:
                raise BackendError(f"query failed: {exc}") from exc
            finally:
                if timer:
                    timer.cancel()
            columns = [item[0] for item in cursor.description]
        return QueryResult(columns, rows, snapshot.bytes_scanned, (time.perf_counter() - started) * 1000)

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
        con = connect()
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        con.execute("SET parquet_metadata_cache = true")
        try:
            scanned, shared = self._register_tables(con, lake, raw)
        except duckdb.Error as exc:
            con.close()
            # A corrupt object in the lake: DuckDB's message names the file.
            raise BackendError(f"cannot open the lake's tables: {exc}") from exc
        # The user's SQL may only read the registered tables, never files or URLs.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return _Snapshot(fingerprint, con, scanned, None if shared else threading.Lock())

    def _register_tables(self, con: duckdb.DuckDBPyConnection, lake: Lake, raw: list[ObjectInfo]) -> tuple[int, bool]:
        """Create `telemetry` and `telemetry_live` on con.

        Returns (bytes of the files behind them, whether other cursors of con may read them).
        """
        bookmark = Bookmark.load(lake)
        tail = [info for info in raw if info.key not in bookmark.processed]
        numeric, tail_dates = self._load_tail(con, lake, [info.key for info in tail], bookmark)
        curated = curated_keys(lake, hidden=bookmark.hidden_keys())
        shared = self._register_curated(con, lake, numeric, [key for key, _ in curated])
        # Only the curated partitions of the tail's dates can hold its messages already. Dropping
        # them once here keeps every live query a plain union, with no join against curated ids.
        dates = ", ".join(quote_literal(date) for date in tail_dates) or "NULL"
        con.execute(
            "DELETE FROM raw_tail t WHERE EXISTS (SELECT 1 FROM telemetry c "
            f"WHERE c.date IN ({dates}) AND c.message_id = t.message_id)"
        )
        con.execute("CREATE VIEW telemetry_live AS SELECT * FROM telemetry UNION ALL BY NAME SELECT * FROM raw_tail")
        return sum(size for _, size in curated) + sum(info.size for info in tail), shared

    def _register_curated(
        self, con: duckdb.DuckDBPyConnection, lake: Lake, numeric: list[str], keys: list[str]
    ) -> bool:
        """Create view `telemetry` over the curated Parquet files named by keys; return whether cursors see it."""
        filesystem, base = lake.arrow_filesystem()
        if keys and isinstance(filesystem, pafs.LocalFileSystem):
            # Files on local disk: DuckDB's own Parquet reader prunes row groups ~10x faster than a
            # pyarrow dataset scan. It may read the curated folder only, even after lock-down.
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

        Returns (numeric columns, dates of the tail's rows).
        """
        with lake.local_paths(keys) as paths:
            detected = detect_raw_columns(con, paths)
            numeric = order_numeric({*bookmark.numeric, *numeric_fields(detected)})
            types = load_raw(con, "raw_src", paths, detected, temporary=False) if paths else self._empty_source(con)
            reason = reject_reason_sql(types, numeric, bookmark.ranges)
            typed = typed_select_sql(f"raw_src WHERE ({reason}) IS NULL", types, numeric)
            con.execute(
                f"CREATE TABLE raw_tail AS SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY message_id ORDER BY received_at NULLS LAST) AS rn FROM ({typed})) WHERE rn = 1"
            )
            con.execute("DROP TABLE raw_src")
        dates = [row[0] for row in con.execute("SELECT DISTINCT date FROM raw_tail").fetchall()]
        return numeric, dates

    @staticmethod
    def _empty_source(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Create an empty raw_src table; return its field types."""
        types = {"message_id": "VARCHAR", "device_id": "VARCHAR", "timestamp": "VARCHAR", "received_at": "BIGINT"}
        columns = ", ".join(f"{quote_ident(name)} {kind}" for name, kind in types.items())
        con.execute(f"CREATE TABLE raw_src ({columns})")
        return types
