"""local catalog backend: a DuckDB crawler inferring the raw zone's schema (a Glue crawler).

Types are given in Glue/Hive spelling (double, bigint, string) so that both backends' catalog rows
look alike. Partition keys are strings, as a Glue crawler declares Hive path partitions.
"""

from __future__ import annotations

from cloud.interfaces import Column, Crawler, Lake, ObjectInfo, Progress, TableSchema, no_progress
from cloud.local.duckdb_telemetry import (
    DEFAULT_METRICS,
    LOCATION_COLUMNS,
    RAW_PREFIX,
    STRING_COLUMNS,
    connect,
    detect_raw_columns,
    is_numeric_type,
    numeric_fields,
    raw_partition,
)

DATABASE = "iotcast"
TABLE = "telemetry_raw"
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


def sample_objects(objects: list[ObjectInfo], size: int) -> list[ObjectInfo]:
    """Return at most size objects: the newest half (new fields show up there) and an even spread of the rest."""
    if len(objects) <= size:
        return objects
    newest = objects[-(size // 2) :]
    older = objects[: -(size // 2)]
    step = len(older) / (size - len(newest))
    return [older[int(i * step)] for i in range(size - len(newest))] + newest


class DuckDBCrawler(Crawler):
    """Infers table iotcast.telemetry_raw with DuckDB's read_json over a sample of raw objects."""

    def __init__(self, sample_objects: int = 200) -> None:
        self.sample_size = sample_objects

    def crawl(self, lake: Lake, progress: Progress = no_progress) -> TableSchema:
        """Return the raw table's columns, partition keys and partitions (contract columns when empty)."""
        progress(5, "listing raw objects")
        objects = lake.list_objects(RAW_PREFIX)
        sample = sample_objects(objects, self.sample_size)
        progress(20, f"inferring the schema from {len(sample)} of {len(objects)} objects")
        with lake.local_paths([info.key for info in sample]) as paths, connect() as con:
            detected = detect_raw_columns(con, paths) or CONTRACT_COLUMNS
        progress(80, f"found {len(detected)} fields")
        return TableSchema(
            database=DATABASE,
            name=TABLE,
            location=f"{lake.url.rstrip('/')}/{RAW_PREFIX}",
            columns=self._columns(detected),
            partition_keys=[Column(name, "string") for name in PARTITION_KEYS],
            partitions=self._partitions(objects),
            classification="json",
            objects_scanned=len(sample),
        )

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
