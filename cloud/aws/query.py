"""aws query backend: Athena over the lake's curated Parquet and the crawled raw table.

Tables (in the Glue database): `telemetry`, an external Parquet table over curated/telemetry/ whose `date`
partitions Athena finds by partition projection (no MSCK REPAIR after each ETL run), and `telemetry_live`, a
view of `telemetry` UNION ALL the crawled raw table `telemetry_raw` typed the same way, minus the raw
messages already curated on the same date. Unlike the local engine the view does not validate the raw tail
against the physical ranges nor dedupe it within itself, and it sees raw objects only once the crawler
has added their hour partition. The backend creates both once per lake (CREATE ... IF NOT EXISTS /
OR REPLACE), then runs queries through the same read-only guard as the local engine.

Positional ? parameters go to Athena as ExecutionParameters (SQL literals). Results come from
get_query_results, every page, converted by the ColumnInfo types; bytes_scanned is Athena's
DataScannedInBytes and elapsed_ms its EngineExecutionTimeInMillis.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cloud.aws.clients import WaitTimeout, aws_call, lake_s3_uri, poll_until
from cloud.interfaces import BackendError, Lake, QueryEngine, QueryResult, QueryTimeout
from cloud.local.duckdb_telemetry import CURATED_PREFIX, DEFAULT_METRICS, LOCATION_COLUMNS, connect, quote_literal
from cloud.local.query import check_read_only

RESULTS_PREFIX = "athena-results/"
_ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}
_INTEGERS = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOATS = {"double", "float", "real"}


def sql_literal(value: Any) -> str:
    """Return value as an Athena SQL literal for ExecutionParameters."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, datetime):
        moment = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return f"TIMESTAMP '{moment.isoformat(sep=' ', timespec='milliseconds')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return quote_literal(str(value))


def convert(text: str | None, athena_type: str) -> Any:
    """Return an Athena result cell (VarCharValue text, None for NULL) as the Python value of its type."""
    if text is None:
        return None
    kind = athena_type.lower()
    if kind in _INTEGERS:
        return int(text)
    if kind in _FLOATS:
        return float(text)
    if kind == "decimal":
        return Decimal(text)
    if kind == "boolean":
        return text == "true"
    if kind == "date":
        return date.fromisoformat(text)
    if kind.startswith("timestamp"):
        # "2026-11-27 21:00:00.000" (UTC, as the curated data) or with " UTC" for timestamp with time zone.
        return datetime.fromisoformat(text.removesuffix(" UTC")).replace(tzinfo=UTC)
    return text


# The selectors write DuckDB SQL; Athena (Trino) spells these functions differently.
_DIALECT = [(re.compile(r"\bquantile_cont\s*\(", re.IGNORECASE), "approx_percentile(")]


def athena_dialect(sql: str) -> str:
    """Return sql with the DuckDB-only functions the selectors use rewritten for Athena (quantile_cont ->
    approx_percentile, which Athena computes approximately)."""
    for pattern, replacement in _DIALECT:
        sql = pattern.sub(replacement, sql)
    return sql


class AthenaQuery(QueryEngine):
    """Runs read-only SQL on Athena in `workgroup`, results under the lake's athena-results/ prefix.

    database holds the crawled `raw_table`; max_rows bounds what is fetched (a console-like page, not
    an export); poll_s / timeout_s bound the wait for one query.
    """

    def __init__(
        self, region: str = "us-east-1", database: str = "iotcast", workgroup: str = "primary",
        output_prefix: str = RESULTS_PREFIX, raw_table: str = "telemetry_raw", poll_s: float = 0.5,
        timeout_s: float = 300.0, max_rows: int = 100_000,
    ) -> None:  # fmt: skip
        self.region, self.database, self.workgroup = region, database, workgroup
        self.output_prefix = output_prefix.strip("/") + "/"
        self.raw_table, self.poll_s, self.timeout_s, self.max_rows = raw_table, poll_s, timeout_s, max_rows
        self._athena = boto3.client("athena", region_name=region)
        self._glue = boto3.client("glue", region_name=region)
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def execute(
        self, lake: Lake, sql: str, params: list[Any] | None = None, timeout_s: float | None = None
    ) -> QueryResult:
        """Run one SELECT with positional ? params on Athena; return its rows (at most max_rows).

        Raises QueryRejected for anything but one SELECT, QueryTimeout (after stop_query_execution) when it
        runs past timeout_s (default: the backend's timeout_s), BackendError (with Athena's reason) when the query
        fails or is cancelled, BackendUnavailable when Athena cannot be reached.
        """
        with connect() as con:
            check_read_only(con, sql)
        self.ensure_tables(lake)
        literals = [sql_literal(value) for value in params or []]
        execution = self.run_statement(lake, athena_dialect(sql), literals, timeout_s or self.timeout_s)
        columns, rows = self.fetch_rows(execution["QueryExecutionId"])
        statistics = execution.get("Statistics", {})
        return QueryResult(
            columns,
            rows,
            bytes_scanned=int(statistics.get("DataScannedInBytes", 0)),
            elapsed_ms=float(statistics.get("EngineExecutionTimeInMillis", 0)),
        )

    def ensure_tables(self, lake: Lake) -> None:
        """Create `telemetry` and `telemetry_live` once per lake (per process)."""
        with self._lock:
            if lake.url in self._ready:
                return
            raw_columns = self.raw_columns()
            numeric = self.numeric_columns(raw_columns)
            for statement in (self.curated_table_ddl(lake, numeric), self.live_view_ddl(numeric, raw_columns)):
                self.run_statement(lake, statement)
            self._ready.add(lake.url)

    def raw_columns(self) -> dict[str, str] | None:
        """Return the crawled raw table's {column: type}, None when no crawl made it yet."""
        found = aws_call(
            self._glue, "get_table", ok_codes=("EntityNotFoundException",), DatabaseName=self.database,
            Name=self.raw_table,
        )  # fmt: skip
        if found is None:
            return None
        return {c["Name"]: c["Type"] for c in found["Table"].get("StorageDescriptor", {}).get("Columns", [])}

    @staticmethod
    def numeric_columns(raw_columns: dict[str, str] | None) -> list[str]:
        """Return the contract's metric and location columns, then the raw table's other double columns."""
        known = [*DEFAULT_METRICS, *LOCATION_COLUMNS]
        extra = {name for name, kind in (raw_columns or {}).items() if kind == "double" and name.isidentifier()}
        return known + sorted(extra - set(known))

    @staticmethod
    def curated_table_ddl(lake: Lake, numeric: list[str]) -> str:
        """Return the CREATE EXTERNAL TABLE of `telemetry` (partition projection on date)."""
        metrics = "".join(f", `{name}` double" for name in numeric)
        location = lake_s3_uri(lake, CURATED_PREFIX)
        return (
            "CREATE EXTERNAL TABLE IF NOT EXISTS telemetry (message_id string, device_id string, "
            f"`timestamp` timestamp, received_at timestamp{metrics}) PARTITIONED BY (`date` string) "
            f"STORED AS PARQUET LOCATION '{location}' TBLPROPERTIES ('projection.enabled'='true', "
            "'projection.date.type'='date', 'projection.date.format'='yyyy-MM-dd', "
            "'projection.date.range'='2000-01-01,NOW', 'projection.date.interval'='1', "
            f"'projection.date.interval.unit'='DAYS', 'storage.location.template'='{location}date=${{date}}/')"
        )

    def live_view_ddl(self, numeric: list[str], raw_columns: dict[str, str] | None) -> str:
        """Return the CREATE OR REPLACE VIEW of `telemetry_live`: curated plus the raw rows not yet curated.

        Without a crawled raw table yet, the view is the curated table alone.
        """
        names = ", ".join(f'"{name}"' for name in numeric)
        curated = f'SELECT message_id, device_id, "timestamp", received_at, {names}, "date" FROM telemetry'
        if raw_columns is None:
            return f"CREATE OR REPLACE VIEW telemetry_live AS {curated}"
        metrics = "".join(
            f', TRY_CAST(r."{name}" AS double) AS "{name}"'
            if name in raw_columns
            else f', CAST(NULL AS double) AS "{name}"'
            for name in numeric
        )
        ts = "CAST(from_iso8601_timestamp(r.\"timestamp\") AT TIME ZONE 'UTC' AS timestamp)"
        raw = (
            f'SELECT r.message_id, r.device_id, {ts} AS "timestamp", '
            "CAST(from_unixtime(r.received_at / 1000.0) AT TIME ZONE 'UTC' AS timestamp) AS received_at"
            f'{metrics}, CAST(date({ts}) AS varchar) AS "date" FROM {self.raw_table} r'
        )
        return (
            f"CREATE OR REPLACE VIEW telemetry_live AS {curated} UNION ALL SELECT * FROM ({raw}) t "
            'WHERE NOT EXISTS (SELECT 1 FROM telemetry c WHERE c."date" = t."date" AND c.message_id = t.message_id)'
        )

    def run_statement(
        self, lake: Lake, sql: str, parameters: list[str] | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Start sql on Athena and wait for it; return its QueryExecution.

        Raises QueryTimeout (after stop_query_execution) past timeout_s, BackendError with Athena's reason
        when it fails or is cancelled.
        """
        request: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": self.database},
            "WorkGroup": self.workgroup,
            "ResultConfiguration": {"OutputLocation": lake_s3_uri(lake, self.output_prefix)},
        }
        if parameters:
            request["ExecutionParameters"] = parameters
        query_id = aws_call(self._athena, "start_query_execution", **request)["QueryExecutionId"]

        def read() -> dict[str, Any]:
            return aws_call(self._athena, "get_query_execution", QueryExecutionId=query_id)["QueryExecution"]

        limit = timeout_s or self.timeout_s
        try:
            execution = poll_until(read, lambda e: e["Status"]["State"] in _ENDED, self.poll_s, limit, "query")
        except WaitTimeout as exc:
            aws_call(self._athena, "stop_query_execution", QueryExecutionId=query_id)
            raise QueryTimeout(f"query stopped after its time limit of {limit:g} s") from exc
        status = execution["Status"]
        if status["State"] != "SUCCEEDED":
            reason = status.get("AthenaError", {}).get("ErrorMessage") or status.get("StateChangeReason") or "no reason"
            raise BackendError(f"Athena query {status['State'].lower()}: {reason}")
        return execution

    def fetch_rows(self, query_id: str) -> tuple[list[str], list[tuple]]:
        """Return (column names, typed rows) of a finished query: every page, the header row skipped."""
        columns: list[str] = []
        types: list[str] = []
        rows: list[tuple] = []
        pages = self._athena.get_paginator("get_query_results").paginate(
            QueryExecutionId=query_id, PaginationConfig={"PageSize": 1000}
        )
        try:
            for number, page in enumerate(pages):
                if number == 0:
                    info = page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
                    columns, types = [c["Name"] for c in info], [c["Type"] for c in info]
                cells = [row["Data"] for row in page["ResultSet"]["Rows"]]
                # A SELECT's first row is the header (the column names), not data.
                if number == 0 and cells and [cell.get("VarCharValue") for cell in cells[0]] == columns:
                    cells = cells[1:]
                rows += [
                    tuple(convert(c.get("VarCharValue"), t) for c, t in zip(row, types, strict=True)) for row in cells
                ]
                if len(rows) >= self.max_rows:
                    break
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"athena get_query_results failed: {exc}") from exc
        return columns, rows[: self.max_rows]
