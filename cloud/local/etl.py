"""local ETL backend: a DuckDB job turning new raw JSON objects into curated Parquet (a Glue job).

Bookmark semantics as Glue's (--job-bookmark-option enable / disable / pause, reset): only raw
objects not yet processed are read, and the bookmark is written after the curated output, so a
crash in between redoes those objects and the dedupe by message_id (within the batch and against
the affected curated partitions) drops the repeats: a rerun leaves no duplicates and no gaps.

One batch (up to 1 GiB of raw JSON: a small trailing batch would pay the detection and the
anti-join against curated files again) is one pass over the raw JSON into a typed temp table with
each row's reject reason, then one sorted Parquet write per date; duplicates are found with a hash
aggregate on the ids' hashes instead of a window over every row. A date partition that collects
compact_min_files files is rewritten as one file sorted by device and time (readers never see a row
twice: see Bookmark.compaction).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cloud.interfaces import BOOKMARK_OPTIONS, BackendError, EtlJob, EtlResult, Lake, ObjectInfo, Progress, no_progress
from cloud.local.duckdb_telemetry import (
    CURATED_PREFIX,
    ERRORS_PREFIX,
    RAW_PREFIX,
    Bookmark,
    connect,
    curated_keys,
    detect_raw_columns,
    numeric_fields,
    order_numeric,
    parse_json_object,
    quote_ident,
    quote_literal,
    raw_partition,
    read_raw_sql,
    read_with_fallback,
    reject_reason_sql,
)

# Physical ranges per metric (inclusive), in the contract's units (µg/m³; carbon monoxide mg/m³):
# far wider than any real air, so only broken sensors and unit mix-ups land in errors/.
DEFAULT_RANGES: dict[str, list[float]] = {
    "ozone": [0.0, 1000.0],
    "particulate_matter": [0.0, 2000.0],
    "carbon_monoxide": [0.0, 500.0],
    "sulfur_dioxide": [0.0, 2000.0],
    "nitrogen_dioxide": [0.0, 2000.0],
    "latitude": [-90.0, 90.0],
    "longitude": [-180.0, 180.0],
}

# Small row groups: a device's rows in a date file sit in one or two of them, and the query engine
# skips the rest by their min/max statistics.
ROW_GROUP_ROWS = 16_384

# The UTC date of _ts (TIMESTAMPTZ) as a DATE: floor division of the epoch by a day is exact in UTC
# and about six times cheaper than the time-zone-aware cast (kept for infinite timestamps) and its text.
_UTC_DATE = (
    "CASE WHEN isfinite(_ts) THEN DATE '1970-01-01' + CAST(epoch_us(_ts) // 86400000000 "
    "- CAST(epoch_us(_ts) % 86400000000 < 0 AS BIGINT) AS INTEGER) ELSE CAST(_ts AS DATE) END"
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


def _split_broken_lines(paths: list[Path], key_of: dict[str, str], folder: Path) -> tuple[list[Path], list[dict]]:
    """Copy the parsable lines of the raw files into folder; return (the copies, the broken lines as rejects).

    A reject is {"reason", "raw_key", "line", "record"}; the unparsable text is kept whole in record.
    The copies keep their raw key's name so that rejects found later still point at the raw object.
    """
    copies, broken = [], []
    for index, path in enumerate(paths):
        good = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            text = line.decode("utf-8", "replace")
            try:
                parse_json_object(text)  # stricter than json.loads: what DuckDB would refuse too
            except ValueError as exc:
                if text.strip():
                    reason = f"unparsable JSON line: {exc}"
                    broken.append({"reason": reason, "raw_key": key_of[str(path)], "line": number, "record": text})
                continue
            good.append(line)
        copy = folder / f"{index}-{path.name}"
        copy.write_bytes(b"\n".join(good) + b"\n" if good else b"")
        key_of[str(copy)] = key_of[str(path)]
        copies.append(copy)
    return copies, broken


def _double(name: str, kind: str | None) -> str:
    """Return a SQL expression reading raw field name (read as kind) as DOUBLE."""
    if kind is None:
        return "CAST(NULL AS DOUBLE)"
    column = quote_ident(name)
    return f"try_cast(({column} ->> '$') AS DOUBLE)" if kind == "JSON" else f"CAST({column} AS DOUBLE)"


def curated_columns_sql(types: dict[str, str], numeric: list[str]) -> str:
    """Return the SELECT list turning table src (with _ts, _date) into curated columns, date last."""
    received = _double("received_at", types.get("received_at"))
    metrics = "".join(f", {_double(name, types.get(name))} AS {quote_ident(name)}" for name in numeric)
    return (
        f'message_id, device_id, _ts AS "timestamp", to_timestamp({received} / 1000.0) AS received_at'
        f"{metrics}, CAST(_date AS VARCHAR) AS date"
    )


class DuckDBEtlJob(EtlJob):
    """Curates raw telemetry with DuckDB, in batches of at most max_batch_mb of raw JSON.

    ranges: {metric: [low, high]} physical ranges (default DEFAULT_RANGES; {} turns validation off).
    compact_min_files: a date partition with this many files is compacted into one (0: never).
    sample_lines: lines per object the schema detection reads (new fields appear early in objects).
    per_date_writes_max: a batch with up to this many dates writes one COPY per date, more one partitioned COPY.
    """

    def __init__(
        self,
        max_batch_mb: int = 1024,
        max_batch_objects: int = 5000,
        ranges: dict[str, list[float]] | None = None,
        compact_min_files: int = 8,
        sample_lines: int = 1024,
        compression_level: int = 1,
        per_date_writes_max: int = 8,
    ) -> None:
        self.max_batch_bytes = max_batch_mb * 1024 * 1024
        self.max_batch_objects = max_batch_objects
        source = DEFAULT_RANGES if ranges is None else ranges
        self.ranges = {name: [float(low), float(high)] for name, (low, high) in source.items()}
        self.compact_min_files = compact_min_files
        self.sample_lines = sample_lines
        self.compression_level = compression_level
        self.per_date_writes_max = per_date_writes_max

    def reset_bookmark(self, lake: Lake) -> None:
        """Forget the processed raw objects; the curated schema and any compaction state are kept."""
        bookmark = Bookmark.load(lake)
        bookmark.processed = set()
        bookmark.save(lake)

    def run(
        self, lake: Lake, progress: Progress = no_progress, bookmark_option: str = "job-bookmark-enable"
    ) -> EtlResult:
        """Process the raw objects the bookmark option selects; return counts and the partitions written.

        Raises ValueError for an unknown bookmark option, BackendError when the lake fails.
        """
        if bookmark_option not in BOOKMARK_OPTIONS:
            raise ValueError(f"unknown --job-bookmark-option {bookmark_option!r}; use one of {BOOKMARK_OPTIONS}")
        progress(1, "reading the job bookmark and listing raw objects")
        bookmark = Bookmark.load(lake)
        self._settle_compaction(lake, bookmark)
        bookmark.ranges = self.ranges
        objects = lake.list_objects(RAW_PREFIX)
        if bookmark_option != "job-bookmark-disable":
            objects = [info for info in objects if info.key not in bookmark.processed]
        result = EtlResult()
        if not objects:
            progress(100, "no new raw objects")
            return result
        self._run_batches(lake, objects, bookmark, result, bookmark_option == "job-bookmark-enable", progress)
        result.partitions_written = sorted(set(result.partitions_written))
        result.partitions_compacted = [d for d in result.partitions_written if self._compact(lake, bookmark, d)]
        progress(100, f"{result.objects_processed} objects, {result.rows_written} rows written")
        return result

    def _run_batches(
        self,
        lake: Lake,
        objects: list[ObjectInfo],
        bookmark: Bookmark,
        result: EtlResult,
        move_bookmark: bool,
        progress: Progress,
    ) -> None:
        batches = _batches(objects, self.max_batch_bytes, self.max_batch_objects)
        for number, batch in enumerate(batches, start=1):
            progress(5 + 85 * (number - 1) / len(batches), f"batch {number}/{len(batches)}: {len(batch.keys)} objects")
            self._run_batch(lake, batch, bookmark, result)
            # Only now is the batch durable in curated/: record it, so a crash before here redoes it.
            if move_bookmark:
                bookmark.processed.update(batch.keys)
            bookmark.save(lake)

    def _run_batch(self, lake: Lake, batch: _Batch, bookmark: Bookmark, result: EtlResult) -> None:
        with lake.local_paths(batch.keys) as paths, connect() as con, tempfile.TemporaryDirectory() as tmp:
            con.execute("SET preserve_insertion_order = false")
            key_of = {str(path): key for path, key in zip(paths, batch.keys, strict=True)}
            try:
                types = self._detect_and_load(con, paths, bookmark)
                broken: list[dict] = []
            except duckdb.InvalidInputException:
                # Some object holds lines that are not JSON: set those aside, curate the rest.
                paths, broken = _split_broken_lines(paths, key_of, Path(tmp))
                types = self._detect_and_load(con, paths, bookmark)
            read, rejected = con.execute("SELECT count(*), count(_reason) FROM src").fetchone()
            result.rows_read += read + len(broken)
            result.rows_rejected += rejected + len(broken)
            if rejected or broken:
                self._write_rejects(lake, con, batch, [key_of[str(path)] for path in paths], broken)
            written, dates = self._write_curated(lake, con, types, bookmark)
            result.partitions_written += dates
            result.duplicates_dropped += read - rejected - written
            result.rows_written += written
        result.objects_processed += len(batch.keys)

    def _detect_and_load(self, con: duckdb.DuckDBPyConnection, paths: list[Path], bookmark: Bookmark) -> dict:
        """Detect the batch's fields, widen the bookmark's numeric columns, load table src; return read types."""
        detected = detect_raw_columns(con, paths, self.sample_lines)
        bookmark.numeric = order_numeric({*bookmark.numeric, *numeric_fields(detected)})
        return self._load(con, paths, detected, bookmark.numeric)

    def _load(
        self, con: duckdb.DuckDBPyConnection, paths: list[Path], detected: dict[str, str], numeric: list[str]
    ) -> dict[str, str]:
        """Read the raw files once into temp table src with _ts, _date and _reason; return the read types.

        See read_with_fallback for why a read may happen twice.
        """

        def read(types: dict[str, str]) -> None:
            reason = reject_reason_sql(types, numeric, self.ranges, parsed_ts="_ts")
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE src AS SELECT *, {reason} AS _reason, "
                f"{_UTC_DATE} AS _date FROM "
                f'(SELECT *, try_cast("timestamp" AS TIMESTAMPTZ) AS _ts FROM ({read_raw_sql(paths, types, True)}))'
            )

        return read_with_fallback(detected, read)

    def _write_rejects(
        self, lake: Lake, con: duckdb.DuckDBPyConnection, batch: _Batch, file_keys: list[str], broken: list[dict]
    ) -> None:
        """Write the rows that cannot be curated (and broken lines), whole and with the reason, to errors/.

        file_keys[i] is the raw key of the i-th file src was read from (its rows' _file).
        """
        rows = con.execute(
            "SELECT _reason, _file, to_json(r) FROM (SELECT * EXCLUDE (_ts, _date) FROM src "
            "WHERE _reason IS NOT NULL) r"
        ).fetchall()
        lines = [json.dumps(line) for line in broken]
        for reason, index, record in rows:
            record = json.loads(record)
            for name in ("_reason", "_file"):
                record.pop(name, None)
            lines.append(json.dumps({"reason": reason, "raw_key": file_keys[index], "record": record}))
        # A name derived from the batch's keys: a redone batch overwrites instead of repeating errors.
        digest = hashlib.sha1("\n".join(batch.keys).encode()).hexdigest()[:20]
        part = raw_partition(batch.keys[0])
        prefix = "/".join(f"{name}={part[name]}" for name in ("year", "month", "day", "hour") if name in part)
        key = f"{ERRORS_PREFIX}{prefix + '/' if prefix else ''}iotcast-etl-failed-{digest}"
        lake.put_bytes(key, ("\n".join(lines) + "\n").encode())

    def _fresh_filter(
        self, lake: Lake, con: duckdb.DuckDBPyConnection, types: dict, bookmark: Bookmark
    ) -> tuple[str, list[str]]:
        """Return (the WHERE clause keeping one good row per message_id not yet curated, the good rows' dates)."""
        received = _double("received_at", types.get("received_at"))
        # A hash aggregate on the ids' 64-bit hashes (far cheaper than on the strings) finds the few
        # candidates; grouping those by the id itself is exact. The earliest arrival of each is kept.
        candidates = (
            "SELECT h FROM (SELECT hash(message_id) AS h FROM src WHERE _reason IS NULL) GROUP BY h HAVING count(*) > 1"
        )
        con.execute(
            f"CREATE TEMP TABLE dups AS SELECT message_id, arg_min(rowid, coalesce({received}, 'infinity'::DOUBLE)) "
            f"AS keep FROM src WHERE _reason IS NULL AND hash(message_id) IN ({candidates}) "
            "GROUP BY message_id HAVING count(*) > 1"
        )
        where = (
            "_reason IS NULL AND (NOT EXISTS (SELECT 1 FROM dups d WHERE d.message_id = src.message_id) "
            "OR rowid IN (SELECT keep FROM dups))"
        )
        dates = [
            row[0]
            for row in con.execute(
                "SELECT CAST(d AS VARCHAR) FROM (SELECT DISTINCT _date AS d FROM src WHERE _reason IS NULL)"
            ).fetchall()
        ]
        existing = [key for key, _ in curated_keys(lake, dates, bookmark.hidden_keys())]
        if not existing:
            return where, dates
        with lake.local_paths(existing) as paths:
            files = "[" + ", ".join(quote_literal(str(path)) for path in paths) + "]"
            try:
                con.execute(
                    "CREATE TEMP TABLE existing_ids AS SELECT message_id FROM "
                    f"read_parquet({files}, hive_partitioning=false)"
                )
            except duckdb.Error as exc:
                # A corrupt curated file: stop before writing repeats; the operator replaces or deletes it.
                raise BackendError(f"cannot read the curated files of {', '.join(dates)}: {exc}") from exc
        return where + " AND NOT EXISTS (SELECT 1 FROM existing_ids e WHERE e.message_id = src.message_id)", dates

    def _write_curated(
        self, lake: Lake, con: duckdb.DuckDBPyConnection, types: dict[str, str], bookmark: Bookmark
    ) -> tuple[int, list[str]]:
        """Write the fresh good rows as zstd Parquet under curated/telemetry/date=.../; return (rows, dates)."""
        where, dates = self._fresh_filter(lake, con, types, bookmark)
        columns = curated_columns_sql(types, bookmark.numeric)
        options = (
            f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {self.compression_level}, "
            f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}"
        )
        with tempfile.TemporaryDirectory(prefix="iotcast-etl-") as tmp:
            if len(dates) <= self.per_date_writes_max:
                written, paths = self._copy_per_date(con, columns, where, dates, Path(tmp), options)
            else:
                written, paths = self._copy_partitioned(con, columns, where, Path(tmp), options)
            for path in paths:
                lake.put_bytes(f"{CURATED_PREFIX}{path.parent.name}/{path.name}", path.read_bytes())
        return written, sorted({path.parent.name.removeprefix("date=") for path in paths})

    @staticmethod
    def _copy_per_date(
        con: duckdb.DuckDBPyConnection, columns: str, where: str, dates: list[str], folder: Path, options: str
    ) -> tuple[int, list[Path]]:
        """Write one file per date, each sorted by device and time; return (rows, the non-empty files).

        A plain single-file COPY per date is cheaper than PARTITION_BY (no partition buffers, and
        each sort is smaller), while a few dates make few scans of src. Rows are sorted by device and
        time so that Parquet row-group statistics prune device queries; the device's rank (in
        device_id order) is a far cheaper sort key than the string, for the same order.
        """
        con.execute(
            "CREATE OR REPLACE TEMP TABLE devices AS SELECT device_id, "
            "CAST(row_number() OVER (ORDER BY device_id) AS INTEGER) AS _rank "
            "FROM (SELECT DISTINCT device_id FROM src WHERE _reason IS NULL)"
        )
        written, paths = 0, []
        for date in dates:
            path = folder / f"date={date}" / f"part-{uuid.uuid4()}.parquet"
            path.parent.mkdir()
            fresh = f"SELECT * FROM src WHERE {where} AND _date = {quote_literal(date)}"
            rows = con.execute(
                f"COPY (SELECT * EXCLUDE (date, _rank) FROM (SELECT {columns}, _rank FROM ({fresh}) "
                f'JOIN devices USING (device_id)) ORDER BY _rank, "timestamp") TO '
                f"{quote_literal(str(path))} ({options})"
            ).fetchone()[0]
            written += int(rows)
            if rows:  # every row a repeat: no file, as PARTITION_BY would write none
                paths.append(path)
        return written, paths

    @staticmethod
    def _copy_partitioned(
        con: duckdb.DuckDBPyConnection, columns: str, where: str, folder: Path, options: str
    ) -> tuple[int, list[Path]]:
        """Write the rows of many dates in one partitioned COPY (one scan of src); return (rows, the files)."""
        written = con.execute(
            f'COPY (SELECT {columns} FROM src WHERE {where} ORDER BY device_id, "timestamp") TO '
            f"{quote_literal(str(folder / 'out'))} ({options}, PARTITION_BY (date), FILENAME_PATTERN 'part-{{uuid}}')"
        ).fetchone()[0]
        return int(written), sorted(folder.glob("out/date=*/*.parquet"))

    def _settle_compaction(self, lake: Lake, bookmark: Bookmark) -> None:
        """Finish a compaction a crash interrupted: drop the replaced files (committed) or the new one."""
        if not bookmark.compaction:
            return
        for key in bookmark.hidden_keys():
            lake.delete(key)
        bookmark.compaction = None
        bookmark.save(lake)

    def _compact(self, lake: Lake, bookmark: Bookmark, date: str) -> bool:
        """Rewrite the date partition as one sorted file when it holds compact_min_files or more; return whether."""
        keys = [key for key, _ in curated_keys(lake, [date], bookmark.hidden_keys())]
        if self.compact_min_files <= 0 or len(keys) < max(2, self.compact_min_files):
            return False
        new_key = f"{CURATED_PREFIX}date={date}/part-compacted-{uuid.uuid4()}.parquet"
        bookmark.compaction = {"new": new_key, "old": keys, "committed": False}
        bookmark.save(lake)
        self._write_compacted(lake, keys, new_key, bookmark.numeric)
        bookmark.compaction["committed"] = True
        bookmark.save(lake)
        self._settle_compaction(lake, bookmark)
        return True

    def _write_compacted(self, lake: Lake, keys: list[str], new_key: str, numeric: list[str]) -> None:
        with lake.local_paths(keys) as paths, connect() as con, tempfile.TemporaryDirectory() as tmp:
            files = "[" + ", ".join(quote_literal(str(path)) for path in paths) + "]"
            con.execute(
                f"CREATE VIEW parts AS SELECT * FROM read_parquet({files}, hive_partitioning=false, union_by_name=true)"
            )
            present = {row[0] for row in con.execute("DESCRIBE parts").fetchall()}
            names = ["message_id", "device_id", "timestamp", "received_at", *numeric]
            columns = ", ".join(
                quote_ident(name) if name in present else f"CAST(NULL AS DOUBLE) AS {quote_ident(name)}"
                for name in names
            )
            out = f"{tmp}/compacted.parquet"
            con.execute(
                f'COPY (SELECT {columns} FROM parts ORDER BY device_id, "timestamp") TO {quote_literal(out)} '
                f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {self.compression_level}, "
                f"ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
            )
            lake.put_bytes(new_key, Path(out).read_bytes())
