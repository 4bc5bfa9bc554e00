"""local catalog backend: a DuckDB crawler inferring the raw zone's schema (a Glue crawler).

Types are given in Glue/Hive spelling (double, bigint, string) so that both backends' catalog rows
look alike. Partition keys are strings, as a Glue crawler declares Hive path partitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cloud.interfaces import (
    Column,
    Crawler,
    CrawlPolicy,
    Lake,
    ObjectInfo,
    Progress,
    TableSchema,
    no_progress,
)
from cloud.local.duckdb_telemetry import (
    CURATED_PREFIX,
    DEFAULT_METRICS,
    FIXED_COLUMNS,
    LOCATION_COLUMNS,
    RAW_PREFIX,
    STRING_COLUMNS,
    Bookmark,
    connect,
    curated_keys,
    detect_raw_columns,
    is_numeric_type,
    numeric_fields,
    raw_partition,
)

DATABASE = "iotcast"
TABLE = "telemetry_raw"
CURATED_TABLE = "telemetry"  # the name the query engines give the curated Parquet
CURATED_PARTITION_KEY = "date"
_DATE_FOLDER = re.compile(r"/date=([^/]+)/")
PARTITION_KEYS = ("year", "month", "day", "hour")
# The contract's fields, reported as the schema of a lake with no raw objects yet.
CONTRACT_COLUMNS = {
    "message_id": "VARCHAR",
    "timestamp": "VARCHAR",
    **{name: "DOUBLE" for name in (*DEFAULT_METRICS, *LOCATION_COLUMNS)},
    "device_id": "VARCHAR",
    "received_at": "BIGINT",
}


def glue_type(name: str, duckdb_type: str) -> str:
    """Return the Glue/Hive type name for a raw field of the given DuckDB type."""
    if name in STRING_COLUMNS:
        return "string"
    if name == "received_at":
        return "bigint"
    if is_numeric_type(duckdb_type):
        return "double"
    return "string" if duckdb_type in {"VARCHAR", "JSON", "UUID"} or "TIME" in duckdb_type else duckdb_type.lower()


NULL_TYPE = '"NULL"'  # DuckDB's type for a field that held only nulls: no evidence of its type


def type_class(duckdb_type: str) -> str:
    """Return "numeric", "string", "mixed" (numbers and text in one field: DuckDB reads JSON) or "other"."""
    if is_numeric_type(duckdb_type):
        return "numeric"
    if duckdb_type == "VARCHAR":
        return "string"
    return "mixed" if duckdb_type == "JSON" else "other"


def partition_types(detected: dict[str, str]) -> dict[str, str]:
    """Return {field: Glue type} of one partition's fields, "mixed" for a field holding numbers and text.

    Fields that held only nulls say nothing about their type and are left out.
    """
    types = {}
    for name, kind in detected.items():
        if kind == NULL_TYPE or name in PARTITION_KEYS or not name.isidentifier():
            continue
        mixed = type_class(kind) == "mixed" and name not in FIXED_COLUMNS
        types[name] = "mixed" if mixed else glue_type(name, kind)
    return types


def sample_objects(objects: list[ObjectInfo], size: int) -> list[ObjectInfo]:
    """Return at most size objects: the newest half (new fields show up there) and an even spread of the rest."""
    if len(objects) <= size:
        return objects
    newest = objects[-(size // 2) :]
    older = objects[: -(size // 2)]
    step = len(older) / (size - len(newest))
    return [older[int(i * step)] for i in range(size - len(newest))] + newest


def partition_path(values: dict[str, str]) -> str:
    """Return a partition's Hive path, e.g. year=2026/month=11/day=27/hour=21 ("" when it has none)."""
    return "/".join(f"{key}={values[key]}" for key in PARTITION_KEYS if values.get(key))


def arrow_glue_type(kind: pa.DataType) -> str:
    """Return the Glue/Hive type name of a Parquet (Arrow) column type."""
    if pa.types.is_timestamp(kind):
        return "timestamp"
    names = {pa.float64(): "double", pa.float32(): "float", pa.int64(): "bigint", pa.int32(): "int",
             pa.string(): "string", pa.large_string(): "string", pa.bool_(): "boolean"}  # fmt: skip
    return names.get(kind, str(kind))


def curated_table(lake: Lake, database: str = DATABASE) -> TableSchema:
    """Return the curated table as its Parquet footers describe it (only the footers are read).

    Columns are the union over the files, in first-seen order (a file written before a metric appeared
    lacks its column); partitions are the date folders. Files whose footer cannot be read are listed
    in unreadable and skipped. Works for any lake pyarrow can read (folder or S3).
    """
    filesystem, base = lake.arrow_filesystem()
    keys = [key for key, _ in curated_keys(lake, hidden=Bookmark.load(lake).hidden_keys())]
    columns: dict[str, str] = {}
    dates: set[str] = set()
    unreadable: list[str] = []
    for key in keys:
        try:
            schema = pq.read_schema(f"{base}/{key}", filesystem=filesystem)
        except (pa.ArrowException, OSError):
            unreadable.append(key)
            continue
        for item in schema:
            if item.name != CURATED_PARTITION_KEY:
                columns.setdefault(item.name, arrow_glue_type(item.type))
        dates.add(_DATE_FOLDER.search(key).group(1) if _DATE_FOLDER.search(key) else "")
    return TableSchema(
        database=database,
        name=CURATED_TABLE,
        location=lake.location(CURATED_PREFIX),
        columns=[Column(name, kind) for name, kind in columns.items()],
        partition_keys=[Column(CURATED_PARTITION_KEY, "string")],
        partitions=[{CURATED_PARTITION_KEY: date} for date in sorted(dates - {""})],
        classification="parquet",
        objects_scanned=len(keys) - len(unreadable),
        unreadable=unreadable,
    )


class DuckDBCrawler(Crawler):
    """Infers table iotcast.telemetry_raw with DuckDB's read_json over a sample of raw objects.

    Each partition read is described on its own, so that a field numeric in one partition and text
    in another shows up as a type conflict instead of being widened silently.
    """

    def __init__(self, sample_objects: int = 200) -> None:
        self.sample_size = sample_objects

    def crawl(
        self,
        lake: Lake,
        progress: Progress = no_progress,
        policy: CrawlPolicy | None = None,
        crawled: list[dict[str, str]] | None = None,
    ) -> TableSchema:
        """Return the raw table's columns, partition keys and partitions (contract columns when empty).

        With CRAWL_NEW_FOLDERS_ONLY, objects of the partitions in crawled are listed but not read.
        """
        policy = policy or CrawlPolicy()
        progress(5, "listing raw objects")
        objects = lake.list_objects(RAW_PREFIX)
        to_read = self._objects_to_read(objects, policy, crawled or [])
        sample = sample_objects(to_read, self.sample_size)
        progress(20, f"inferring the schema from {len(sample)} of {len(objects)} objects")
        unreadable: list[str] = []
        per_partition = self._describe_partitions(lake, sample, unreadable)
        # An empty lake reports the contract; a crawl that read nothing new reports no columns.
        detected = self._union(per_partition.values()) if objects else CONTRACT_COLUMNS
        progress(80, f"found {len(detected)} fields in {len(per_partition)} partitions")
        return TableSchema(
            database=DATABASE,
            name=TABLE,
            location=lake.location(RAW_PREFIX),
            columns=self._columns(detected),
            partition_keys=[Column(name, "string") for name in PARTITION_KEYS],
            partitions=self._partitions(objects),
            classification="json",
            objects_scanned=len(sample),
            partition_columns={path: partition_types(fields) for path, fields in per_partition.items()},
            unreadable=unreadable,
        )

    def register_curated(self, lake: Lake, progress: Progress = no_progress) -> TableSchema:
        """Return the curated table from its Parquet footers; the project's catalog is the local Data Catalog."""
        progress(96, "reading the curated Parquet footers")
        return curated_table(lake)

    @staticmethod
    def _objects_to_read(objects: list[ObjectInfo], policy: CrawlPolicy, crawled: list[dict]) -> list[ObjectInfo]:
        """Return the objects this crawl reads: all, or those of partitions not crawled before."""
        if policy.recrawl_policy != "CRAWL_NEW_FOLDERS_ONLY":
            return objects
        known = {partition_path(values) for values in crawled}
        return [info for info in objects if partition_path(raw_partition(info.key)) not in known]

    @staticmethod
    def _describe_partitions(lake: Lake, sample: list[ObjectInfo], unreadable: list[str]) -> dict[str, dict[str, str]]:
        """Return {partition path: {field: DuckDB type}} for the sampled objects, one DESCRIBE per partition.

        A partition holding a corrupt object is described object by object; the corrupt ones are
        appended to unreadable and skipped.
        """
        groups: dict[str, list[str]] = {}
        for info in sample:
            groups.setdefault(partition_path(raw_partition(info.key)), []).append(info.key)
        found: dict[str, dict[str, str]] = {}
        with connect() as con:
            for path, keys in sorted(groups.items()):
                with lake.local_paths(keys) as paths:
                    try:
                        found[path] = detect_raw_columns(con, paths)
                    except duckdb.Error:
                        found[path] = DuckDBCrawler._describe_each(con, keys, paths, unreadable)
                if not found[path]:
                    del found[path]
        return found

    @staticmethod
    def _describe_each(
        con: duckdb.DuckDBPyConnection, keys: list[str], paths: list[Path], unreadable: list[str]
    ) -> dict[str, str]:
        """Return the union of the readable objects' fields; append the unreadable objects' keys."""
        described = []
        for key, path in zip(keys, paths, strict=True):
            try:
                described.append(detect_raw_columns(con, [path]))
            except duckdb.Error:
                unreadable.append(key)
        return DuckDBCrawler._union(described)

    @staticmethod
    def _union(described: Iterable[dict[str, str]]) -> dict[str, str]:
        """Return the fields of all partitions; a field typed differently across them reads as JSON (mixed)."""
        union: dict[str, str] = {}
        for fields in described:
            for name, kind in fields.items():
                if kind == NULL_TYPE:
                    union.setdefault(name, kind)
                elif union.get(name, NULL_TYPE) == NULL_TYPE:
                    union[name] = kind
                elif type_class(union[name]) != type_class(kind):
                    union[name] = "JSON"
        return union

    @staticmethod
    def _columns(detected: dict[str, str]) -> list[Column]:
        numeric = set(numeric_fields(detected))
        # Fields with names unusable as columns, and the Hive path keys, are not table columns.
        keep = [name for name in detected if name in numeric or name in CONTRACT_COLUMNS or name.isidentifier()]
        return [Column(name, glue_type(name, detected[name])) for name in keep if name not in PARTITION_KEYS]

    @staticmethod
    def _partitions(objects: list[ObjectInfo]) -> list[dict[str, str]]:
        found = {tuple(raw_partition(info.key).get(key, "") for key in PARTITION_KEYS) for info in objects}
        return [dict(zip(PARTITION_KEYS, values, strict=True)) for values in sorted(found) if all(values)]
