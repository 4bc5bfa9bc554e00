"""local query backend: read-only DuckDB SQL over the lake (Athena's role).

Two tables per query: `telemetry` (the curated Parquet, through a pyarrow dataset) and
`telemetry_live` (curated plus the raw objects the ETL has not processed yet, typed the same way
and deduplicated by message_id), so that a reading is queryable as soon as it lands in raw/.
"""

from __future__ import annotations

import time
from typing import Any

import duckdb
from pyarrow import fs as pafs

from cloud.interfaces import BackendError, Lake, QueryEngine, QueryResult
from cloud.local.duckdb_telemetry import (
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


class DuckDBQuery(QueryEngine):
    """Runs each query in a fresh in-memory DuckDB over the lake's curated Parquet and raw tail."""

    def execute(self, lake: Lake, sql: str, params: list[Any] | None = None) -> QueryResult:
        """Run one SELECT with positional ? params; raise QueryRejected for anything else.

        Raises BackendError (with DuckDB's message) when the query itself fails.
        """
        started = time.perf_counter()
        with connect() as con:
            check_read_only(con, sql)
            scanned = self._register_tables(con, lake)
            # The user's SQL may only read the registered tables, never files or URLs.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            try:
                cursor = con.execute(sql, params or [])
                rows = cursor.fetchall()
            except duckdb.Error as exc:
                raise BackendError(f"query failed: {exc}") from exc
            columns = [item[0] for item in cursor.description]
        return QueryResult(columns, rows, scanned, (time.perf_counter() - started) * 1000)

    def _register_tables(self, con: duckdb.DuckDBPyConnection, lake: Lake) -> int:
        """Create `telemetry` and `telemetry_live` on con; return the bytes of the files behind them."""
        bookmark = Bookmark.load(lake)
        tail = [info for info in lake.list_objects(RAW_PREFIX) if info.key not in bookmark.processed]
        numeric, tail_dates = self._load_tail(con, lake, [info.key for info in tail], bookmark.numeric)
        curated = curated_keys(lake)
        self._register_curated(con, lake, numeric, [key for key, _ in curated])
        # Only the curated partitions of the tail's dates can hold its messages already.
        dates = ", ".join(quote_literal(date) for date in tail_dates) or "NULL"
        con.execute(
            "CREATE VIEW telemetry_live AS SELECT * FROM telemetry UNION ALL BY NAME "
            "SELECT * FROM raw_tail t WHERE NOT EXISTS (SELECT 1 FROM telemetry c "
            f"WHERE c.date IN ({dates}) AND c.message_id = t.message_id)"
        )
        return sum(size for _, size in curated) + sum(info.size for info in tail)

    def _register_curated(
        self, con: duckdb.DuckDBPyConnection, lake: Lake, numeric: list[str], keys: list[str]
    ) -> None:
        """Create view `telemetry` over the curated Parquet files named by keys."""
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
            return
        con.register("curated_arrow", curated_dataset(lake, numeric, keys))
        con.execute("CREATE VIEW telemetry AS SELECT * FROM curated_arrow")

    def _load_tail(
        self, con: duckdb.DuckDBPyConnection, lake: Lake, keys: list[str], numeric: list[str]
    ) -> tuple[list[str], list[str]]:
        """Load the raw tail, typed and deduplicated, into temp table raw_tail; return (numeric columns, dates)."""
        with lake.local_paths(keys) as paths:
            detected = detect_raw_columns(con, paths)
            numeric = order_numeric({*numeric, *numeric_fields(detected)})
            types = load_raw(con, "raw_src", paths, detected) if paths else self._empty_source(con)
            typed = typed_select_sql(f"raw_src WHERE ({reject_reason_sql()}) IS NULL", types, numeric)
            con.execute(
                f"CREATE TEMP TABLE raw_tail AS SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY message_id ORDER BY received_at NULLS LAST) AS rn FROM ({typed})) WHERE rn = 1"
            )
        dates = [row[0] for row in con.execute("SELECT DISTINCT date FROM raw_tail").fetchall()]
        return numeric, dates

    @staticmethod
    def _empty_source(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Create an empty raw_src table; return its field types."""
        types = {"message_id": "VARCHAR", "device_id": "VARCHAR", "timestamp": "VARCHAR", "received_at": "BIGINT"}
        columns = ", ".join(f"{quote_ident(name)} {kind}" for name, kind in types.items())
        con.execute(f"CREATE TEMP TABLE raw_src ({columns})")
        return types
