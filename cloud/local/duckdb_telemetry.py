"""Shared DuckDB pieces of the local crawler, ETL job and query engine.

The raw zone holds newline-delimited JSON; the curated zone holds Parquet partitioned by
`date=YYYY-MM-DD`. The job bookmark (the raw keys already curated, plus the metric columns the
curated files may hold) lives in the lake so that every process sees the same state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from cloud.interfaces import Lake

RAW_PREFIX = "raw/"
CURATED_PREFIX = "curated/telemetry/"
ERRORS_PREFIX = "errors/etl-failed/"
BOOKMARK_KEY = "state/etl-bookmark.json"

DEFAULT_METRICS = ("ozone", "particulate_matter", "carbon_monoxide", "sulfur_dioxide", "nitrogen_dioxide")
# Numeric columns that describe where a reading was taken rather than what was measured.
LOCATION_COLUMNS = ("latitude", "longitude")
STRING_COLUMNS = ("message_id", "device_id", "timestamp")
FIXED_COLUMNS = (*STRING_COLUMNS, "received_at")
_NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"}
_NUMERIC_TYPES |= {"U" + name for name in _NUMERIC_TYPES}
# Field names become SQL identifiers and Parquet columns: keep them to plain identifiers.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HIVE_PART = re.compile(r"(year|month|day|hour)=([0-9]+)/")


def quote_ident(name: str) -> str:
    """Return name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Return value as a quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def connect() -> duckdb.DuckDBPyConnection:
    """Return an in-memory DuckDB connection working in UTC."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def is_numeric_type(duckdb_type: str) -> bool:
    """Return whether a DuckDB type name is a number type."""
    return duckdb_type in _NUMERIC_TYPES or duckdb_type.startswith("DECIMAL")


def raw_partition(key: str) -> dict[str, str]:
    """Return the Hive partition values (year/month/day/hour) found in a raw key."""
    return dict(_HIVE_PART.findall(key))


def _path_list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join(quote_literal(str(path)) for path in paths) + "]"


def detect_raw_columns(
    con: duckdb.DuckDBPyConnection, paths: list[Path], sample_lines: int | None = None
) -> dict[str, str]:
    """Return {field: DuckDB type} inferred by read_json over the raw files (union of their fields).

    sample_lines bounds the lines read per file (default: DuckDB's 20,480): a field first seen
    past it in every file is missed until a later object shows it early.
    """
    if not paths:
        return {}
    sample = f", sample_size={int(sample_lines)}" if sample_lines else ""
    rows = con.execute(
        f"DESCRIBE SELECT * FROM read_json({_path_list(paths)}, format='newline_delimited', "
        f"union_by_name=true, hive_partitioning=false{sample})"
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a key given twice in one object")
    return found


def parse_json_object(text: str) -> dict:
    """Return the JSON object on one NDJSON line; raise ValueError (naming why) unless DuckDB's reader takes it too.

    Python's json accepts what DuckDB's refuses: NaN and Infinity, a key given twice, a lone surrogate.
    """
    parsed = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    try:
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise ValueError("a lone surrogate in a string") from exc
    return parsed


def parsable_json_lines(data: bytes) -> tuple[bytes, int]:
    """Return (the lines of NDJSON data that are JSON objects, as UTF-8 NDJSON; how many non-blank lines were not).

    Lines parse_json_object refuses count as unparsable.
    """
    good, dropped = [], 0
    for line in data.splitlines():
        text = line.decode("utf-8", "replace")
        try:
            parse_json_object(text)
        except ValueError:
            dropped += 1 if text.strip() else 0
            continue
        good.append(text)
    return "".join(text + "\n" for text in good).encode(), dropped


def numeric_fields(detected: dict[str, str]) -> list[str]:
    """Return the numeric fields (metrics and location) among detected ones, in a stable order."""
    names = {
        name
        for name, kind in detected.items()
        if name not in FIXED_COLUMNS and is_numeric_type(kind) and _IDENTIFIER.match(name)
    }
    return order_numeric(names)


def order_numeric(names: Iterable[str]) -> list[str]:
    """Return names with the contract's metrics and location first, the rest sorted."""
    names = set(names)
    known = [name for name in (*DEFAULT_METRICS, *LOCATION_COLUMNS) if name in names]
    return known + sorted(names - set(known))


def raw_types(detected: dict[str, str], robust: bool = False) -> dict[str, str]:
    """Return {field: type} to read the raw files with: fixed fields as text, numbers as DOUBLE.

    robust reads every non-text field as JSON: it never fails on a badly typed value (a string in
    a numeric field past the detection sample), at about twice the cost. Non-numeric extra fields
    are always read as JSON, which keeps a rejected record whole.
    """
    numeric = set(numeric_fields(detected))
    types = {
        name: "DOUBLE" if name in numeric and not robust else "JSON" for name in detected if _IDENTIFIER.match(name)
    }
    types.update({name: "VARCHAR" for name in STRING_COLUMNS})
    received_numeric = is_numeric_type(detected.get("received_at", "JSON"))
    types["received_at"] = "BIGINT" if received_numeric and not robust else "JSON"
    return types


def read_raw_sql(paths: list[Path], types: dict[str, str], file_index: bool = False) -> str:
    """Return a SELECT reading the raw files with the given field types, plus their filename.

    file_index: give each row's position in paths (column _file) instead of its filename; a small
    integer costs far less to carry through a large batch than a long path string per row.
    """
    columns = "{" + ", ".join(f"{quote_literal(name)}: {quote_literal(kind)}" for name, kind in types.items()) + "}"
    source = ("SELECT *, file_index AS _file", "") if file_index else ("SELECT *", ", filename=true")
    return (
        f"{source[0]} FROM read_json({_path_list(paths)}, format='newline_delimited', columns={columns}"
        f"{source[1]}, hive_partitioning=false)"
    )


def load_raw(
    con: duckdb.DuckDBPyConnection, table: str, paths: list[Path], detected: dict[str, str], temporary: bool = True
) -> dict[str, str]:
    """Create (temp) table `table` holding the raw files' rows; return the field types it was read with."""
    kind = "TEMP TABLE" if temporary else "TABLE"
    return read_with_fallback(
        detected, lambda types: con.execute(f"CREATE OR REPLACE {kind} {table} AS {read_raw_sql(paths, types)}")
    )


def read_with_fallback(detected: dict[str, str], read: Callable[[dict[str, str]], object]) -> dict[str, str]:
    """Call read(types) with the fast types, then with the robust ones if that fails; return the types that worked.

    The fast read types numeric fields as DOUBLE; a text value in one (past the detection sample) makes
    DuckDB fail, and the robust read (every such field as JSON) takes over. Raises what the robust read raises.
    """
    try:
        read(raw_types(detected, robust=False))
        return raw_types(detected, robust=False)
    except (duckdb.ConversionException, duckdb.InvalidInputException):
        types = raw_types(detected, robust=True)
        read(types)
        return types


def reject_reason_sql(
    types: dict[str, str] | None = None,
    numeric: Iterable[str] = (),
    ranges: dict[str, list[float]] | None = None,
    parsed_ts: str = 'try_cast("timestamp" AS TIMESTAMPTZ)',
) -> str:
    """Return a SQL expression naming why a raw row cannot be curated (NULL when it can).

    With types (the fields' read types): a numeric field read as JSON must hold a number or null,
    and a metric outside its physical range in ranges ({metric: [low, high]}) is rejected.
    parsed_ts is the timestamp parsed to TIMESTAMPTZ (a column name when the caller has one).
    """
    cases = [
        "WHEN message_id IS NULL THEN 'missing message_id'",
        "WHEN device_id IS NULL THEN 'missing device_id'",
        f"WHEN {parsed_ts} IS NULL THEN 'unparsable timestamp'",
    ]
    types = types or {}
    for name in numeric:
        if types.get(name) == "JSON":
            column = quote_ident(name)
            cases.append(
                f"WHEN json_type({column}) NOT IN ('NULL', 'BIGINT', 'UBIGINT', 'DOUBLE') "
                f"THEN {quote_literal(f'{name} is not a number: ')} || CAST({column} AS VARCHAR)"
            )
    for name, (low, high) in sorted((ranges or {}).items()):
        if name in types:
            value = _as_double(name, types[name])
            reason = quote_literal(f"{name} outside its physical range [{low:g}, {high:g}]: ")
            cases.append(
                f"WHEN {value} NOT BETWEEN {float(low)!r} AND {float(high)!r} THEN {reason} || CAST({value} AS VARCHAR)"
            )
    return "CASE " + " ".join(cases) + " END"


def _as_double(name: str, kind: str | None) -> str:
    column = quote_ident(name)
    if kind is None:
        return "CAST(NULL AS DOUBLE)"
    if kind == "JSON":
        return f"try_cast(({column} ->> '$') AS DOUBLE)"
    return f"CAST({column} AS DOUBLE)"


def typed_select_sql(source: str, types: dict[str, str], numeric: list[str]) -> str:
    """Return a SELECT typing the raw rows of source (read with types): timestamps UTC, metrics DOUBLE, date.

    Numeric fields that source lacks come out NULL. The date is UTC: connect() sets the session zone.
    """
    metrics = "".join(f", {_as_double(name, types.get(name))} AS {quote_ident(name)}" for name in numeric)
    received = _as_double("received_at", types.get("received_at"))
    return (
        f'SELECT message_id, device_id, ts AS "timestamp", to_timestamp({received} / 1000.0) AS received_at'
        f"{metrics}, CAST(CAST(ts AS DATE) AS VARCHAR) AS date "
        f'FROM (SELECT *, try_cast("timestamp" AS TIMESTAMPTZ) AS ts FROM {source})'
    )


def curated_schema(numeric: list[str]) -> pa.Schema:
    """Return the Arrow schema of the curated table (partition column `date` last)."""
    utc = pa.timestamp("us", tz="UTC")
    fields = [("message_id", pa.string()), ("device_id", pa.string()), ("timestamp", utc), ("received_at", utc)]
    fields += [(name, pa.float64()) for name in numeric]
    return pa.schema([*fields, ("date", pa.string())])


def curated_dataset(lake: Lake, numeric: list[str], keys: list[str]) -> ds.Dataset | pa.Table:
    """Return the curated Parquet files named by keys as one dataset (an empty table when none).

    Files written before a metric appeared lack its column: the explicit schema fills it with nulls.
    """
    schema = curated_schema(numeric)
    if not keys:
        return schema.empty_table()
    filesystem, base = lake.arrow_filesystem()
    partitioning = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    return ds.dataset(
        [f"{base}/{key}" for key in keys],
        schema=schema,
        format="parquet",
        filesystem=filesystem,
        partitioning=partitioning,
        partition_base_dir=f"{base}/{CURATED_PREFIX.rstrip('/')}",
    )


def curated_keys(
    lake: Lake, dates: Iterable[str] | None = None, hidden: set[str] | frozenset[str] = frozenset()
) -> list[tuple[str, int]]:
    """Return (key, size) of the curated Parquet files, only those of the given dates when given.

    hidden names files a compaction has not committed (or has replaced): readers must skip them.
    """
    if dates is None:
        found = lake.list_objects(CURATED_PREFIX)
    else:
        found = [info for date in sorted(dates) for info in lake.list_objects(f"{CURATED_PREFIX}date={date}/")]
    return [(info.key, info.size) for info in found if info.key.endswith(".parquet") and info.key not in hidden]


@dataclass
class Bookmark:
    """The ETL job bookmark: raw keys already curated, the numeric columns curated files hold, the
    physical ranges the job validates with, and a compaction in flight.

    compaction is {"new": key, "old": [keys], "committed": bool}: before the commit readers skip the
    new file, after it the old ones, so a crash at any point shows every row exactly once.
    """

    processed: set[str] = field(default_factory=set)
    numeric: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    ranges: dict[str, list[float]] = field(default_factory=dict)
    compaction: dict | None = None

    @classmethod
    def load(cls, lake: Lake) -> Bookmark:
        """Return the bookmark stored in the lake, an empty one when there is none."""
        try:
            data = json.loads(lake.get_bytes(BOOKMARK_KEY))
        except KeyError:
            return cls()
        numeric = order_numeric({*DEFAULT_METRICS, *data.get("numeric", [])})
        return cls(
            processed=set(data.get("processed", [])),
            numeric=numeric,
            ranges=data.get("ranges", {}),
            compaction=data.get("compaction"),
        )

    def hidden_keys(self) -> set[str]:
        """Return the curated keys readers must skip while a compaction is in flight."""
        if not self.compaction:
            return set()
        return set(self.compaction["old"]) if self.compaction["committed"] else {self.compaction["new"]}

    def save(self, lake: Lake) -> None:
        """Store the bookmark in the lake (atomically: one object put)."""
        data = {
            "version": 2,
            "numeric": self.numeric,
            "ranges": self.ranges,
            "compaction": self.compaction,
            "processed": sorted(self.processed),
        }
        lake.put_bytes(BOOKMARK_KEY, json.dumps(data, separators=(",", ":")).encode())
