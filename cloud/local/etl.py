"""local ETL backend: a DuckDB job turning new raw JSON objects into curated Parquet (a Glue job).

Bookmark semantics as Glue's: only raw objects not yet processed are read, and the bookmark is
written after the curated output, so a crash in between redoes those objects and the dedupe by
message_id (within the batch and against the affected curated partitions) drops the repeats.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from cloud.interfaces import EtlJob, EtlResult, Lake, ObjectInfo, Progress, no_progress
from cloud.local.duckdb_telemetry import (
    CURATED_PREFIX,
    ERRORS_PREFIX,
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
    raw_partition,
    reject_reason_sql,
    typed_select_sql,
)


@dataclass
class _Batch:
    objects: list[ObjectInfo]

    @property
    def keys(self) -> list[str]:
        return [info.key for info in self.objects]


def _batches(objects: list[ObjectInfo], max_bytes: int, max_objects: int) -> list[_Batch]:
    """Split objects into batches of at most max_bytes (at least one object) and max_objects."""
    batches, current, size = [], [], 0
    for info in objects:
        if current and (size + info.size > max_bytes or len(current) >= max_objects):
            batches.append(_Batch(current))
            current, size = [], 0
        current.append(info)
        size += info.size
    if current:
        batches.append(_Batch(current))
    return batches


class DuckDBEtlJob(EtlJob):
    """Curates raw telemetry with DuckDB, in batches of at most max_batch_mb of raw JSON."""

    def __init__(self, max_batch_mb: int = 512, max_batch_objects: int = 5000) -> None:
        self.max_batch_bytes = max_batch_mb * 1024 * 1024
        self.max_batch_objects = max_batch_objects

    def run(self, lake: Lake, progress: Progress = no_progress) -> EtlResult:
        """Process the raw objects not in the bookmark; return counts and the partitions written."""
        progress(1, "reading the job bookmark and listing raw objects")
        bookmark = Bookmark.load(lake)
        new = [info for info in lake.list_objects(RAW_PREFIX) if info.key not in bookmark.processed]
        result = EtlResult()
        if not new:
            progress(100, "no new raw objects")
            return result
        batches = _batches(new, self.max_batch_bytes, self.max_batch_objects)
        for number, batch in enumerate(batches, start=1):
            progress(5 + 90 * (number - 1) / len(batches), f"batch {number}/{len(batches)}: {len(batch.keys)} objects")
            self._run_batch(lake, batch, bookmark, result)
            # Only now is the batch durable in curated/: record it, so a crash before here redoes it.
            bookmark.processed.update(batch.keys)
            bookmark.save(lake)
        result.partitions_written = sorted(set(result.partitions_written))
        progress(100, f"{result.objects_processed} objects, {result.rows_written} rows written")
        return result

    def _run_batch(self, lake: Lake, batch: _Batch, bookmark: Bookmark, result: EtlResult) -> None:
        with lake.local_paths(batch.keys) as paths, connect() as con:
            key_of = {str(path): key for path, key in zip(paths, batch.keys, strict=True)}
            detected = detect_raw_columns(con, paths)
            bookmark.numeric = order_numeric({*bookmark.numeric, *numeric_fields(detected)})
            types = load_raw(con, "src", paths, detected)
            result.rows_read += con.execute("SELECT count(*) FROM src").fetchone()[0]
            result.rows_rejected += self._write_rejects(lake, con, batch, key_of)
            fresh, dropped = self._dedupe(lake, con, types, bookmark.numeric)
            result.duplicates_dropped += dropped
            result.rows_written += fresh
            result.partitions_written += self._write_curated(lake, con, bookmark.numeric)
        result.objects_processed += len(batch.keys)

    def _write_rejects(self, lake: Lake, con: duckdb.DuckDBPyConnection, batch: _Batch, key_of: dict) -> int:
        """Write the rows that cannot be curated, whole and with the reason, to errors/; return their count."""
        rows = con.execute(
            f"SELECT reason, filename, to_json(r) FROM (SELECT {reject_reason_sql()} AS reason, "
            "filename, * EXCLUDE (filename) FROM src) r WHERE reason IS NOT NULL"
        ).fetchall()
        if not rows:
            return 0
        lines = []
        for reason, filename, record in rows:
            record = json.loads(record)
            record.pop("reason", None)
            record.pop("filename", None)
            lines.append(json.dumps({"reason": reason, "raw_key": key_of.get(filename, filename), "record": record}))
        # A name derived from the batch's keys: a redone batch overwrites instead of repeating errors.
        digest = hashlib.sha1("\n".join(batch.keys).encode()).hexdigest()[:20]
        part = raw_partition(batch.keys[0])
        prefix = "/".join(f"{name}={part[name]}" for name in ("year", "month", "day", "hour") if name in part)
        key = f"{ERRORS_PREFIX}{prefix + '/' if prefix else ''}iotcast-etl-failed-{digest}"
        lake.put_bytes(key, ("\n".join(lines) + "\n").encode())
        return len(rows)

    def _dedupe(
        self, lake: Lake, con: duckdb.DuckDBPyConnection, types: dict[str, str], numeric: list[str]
    ) -> tuple[int, int]:
        """Keep one row per message_id not yet curated in table `fresh`; return (kept, dropped)."""
        con.execute(
            "CREATE TEMP TABLE good AS "
            + typed_select_sql(f"src WHERE ({reject_reason_sql()}) IS NULL", types, numeric)
        )
        dates = [row[0] for row in con.execute("SELECT DISTINCT date FROM good").fetchall()]
        existing = [key for key, _ in curated_keys(lake, dates)]
        dataset = curated_dataset(lake, numeric, existing)
        ids = dataset.select(["message_id"]) if isinstance(dataset, pa.Table) else dataset.to_table(["message_id"])
        con.register("existing_ids", ids)
        con.execute(
            "CREATE TEMP TABLE fresh AS SELECT * EXCLUDE (rn) FROM ("
            "SELECT *, row_number() OVER (PARTITION BY message_id ORDER BY received_at NULLS LAST) AS rn FROM good"
            ") g WHERE rn = 1 AND NOT EXISTS (SELECT 1 FROM existing_ids e WHERE e.message_id = g.message_id)"
        )
        good = con.execute("SELECT count(*) FROM good").fetchone()[0]
        fresh = con.execute("SELECT count(*) FROM fresh").fetchone()[0]
        return fresh, good - fresh

    def _write_curated(self, lake: Lake, con: duckdb.DuckDBPyConnection, numeric: list[str]) -> list[str]:
        """Write table `fresh` as zstd Parquet under curated/telemetry/date=.../; return the dates written."""
        columns = ", ".join(quote_ident(name) for name in ["message_id", "device_id", "timestamp", "received_at"])
        columns += "".join(", " + quote_ident(name) for name in numeric)
        with tempfile.TemporaryDirectory(prefix="iotcast-etl-") as tmp:
            # Sorted by device and time so that Parquet row-group statistics prune device queries.
            con.execute(
                f"COPY (SELECT {columns}, date FROM fresh ORDER BY device_id, \"timestamp\") TO '{tmp}/out' "
                "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date), FILENAME_PATTERN 'part-{uuid}')"
            )
            written = sorted(Path(tmp, "out").glob("date=*/*.parquet"))
            for path in written:
                lake.put_bytes(f"{CURATED_PREFIX}{path.parent.name}/{path.name}", path.read_bytes())
        return sorted({path.parent.name.removeprefix("date=") for path in written})
