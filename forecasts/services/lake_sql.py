"""The admin SQL console over the lake (Athena's query editor): one read-only SELECT, a row and a time limit."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
from django.conf import settings

from cloud.backends import get_backend
from cloud.interfaces import BackendError
from forecasts.models import CatalogTable

# Catalog tables the query engines serve (by name); the raw JSON table is read through telemetry_live.
QUERYABLE_CLASSIFICATIONS = ("parquet",)
# Views the engines define over the catalog's tables (as Athena views are), with what they hold.
CONSOLE_VIEWS = {"telemetry_live": "view: telemetry plus the raw readings the ETL has not curated yet"}


class SqlRejected(BackendError):
    """The console's SQL is not a single read-only SELECT."""


@dataclass(frozen=True)
class ConsoleTable:
    name: str
    kind: str  # "table" or "view"
    description: str


def console_tables() -> list[ConsoleTable]:
    """Return what a console query may read: the catalog's Parquet tables, then the engines' views."""
    tables = [
        ConsoleTable(table.name, "table", f"{table.database}.{table.name}: {table.classification}, "
                     f"{len(table.columns)} columns, {len(table.partitions)} partitions at {table.location}")
        for table in CatalogTable.objects.filter(classification__in=QUERYABLE_CLASSIFICATIONS).order_by("name")
    ]  # fmt: skip
    return tables + [ConsoleTable(name, "view", description) for name, description in CONSOLE_VIEWS.items()]


@dataclass
class ConsoleResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool  # more rows than the limit: only the first row_limit are shown
    row_limit: int
    elapsed_ms: float
    bytes_scanned: int  # what this query's scans read (Athena's "Data scanned"), not the size of the tables
    bytes_scanned_basis: str = ""  # how the engine counts it, shown next to the figure


def sql_single_select(sql: str) -> str:
    """Return sql's one statement without its trailing semicolon; raise SqlRejected unless it is one SELECT.

    The check parses with DuckDB's parser; SQL it cannot parse (another engine's dialect) is left
    to the query engine, which refuses anything but a SELECT on its own.
    """
    text = sql.strip()
    if not text:
        raise SqlRejected("enter a SELECT query")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error:
        return text.rstrip("; \n\t")
    if len(statements) != 1:
        raise SqlRejected(f"expected exactly one SELECT statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise SqlRejected(f"only SELECT queries are allowed, got {statements[0].type.name}")
    return statements[0].query.strip().rstrip(";")


def lake_sql_run(sql: str, row_limit: int | None = None, timeout_s: float | None = None) -> ConsoleResult:
    """Run one SELECT over the lake's tables; return at most row_limit rows (settings.LAKE_SQL_MAX_ROWS).

    The query is wrapped in a LIMIT so that the engine never materialises more than the limit.
    Raises SqlRejected for anything but one SELECT, QueryTimeout past timeout_s
    (settings.LAKE_SQL_TIMEOUT_S), BackendError when the query fails.
    """
    row_limit = row_limit or settings.LAKE_SQL_MAX_ROWS
    statement = sql_single_select(sql)
    # Newlines keep a trailing -- comment from swallowing the wrapper.
    wrapped = f"SELECT * FROM (\n{statement}\n) AS console_query LIMIT {int(row_limit) + 1}"
    engine = get_backend("query")
    result = engine.execute(get_backend("lake"), wrapped, timeout_s=timeout_s or settings.LAKE_SQL_TIMEOUT_S)
    return ConsoleResult(
        columns=result.columns,
        rows=result.rows[:row_limit],
        truncated=len(result.rows) > row_limit,
        row_limit=row_limit,
        elapsed_ms=result.elapsed_ms,
        bytes_scanned=result.bytes_scanned,
        bytes_scanned_basis=result.bytes_scanned_basis,
    )
