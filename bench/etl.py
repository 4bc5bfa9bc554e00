"""ETL and live-query benchmark: the project's job vs plain pandas on the same raw data.

    .venv/bin/python bench/etl.py [--quick] [--rows N] [--query-rows N] [--repeats N] [--after-new-object N]

Generates N raw NDJSON records (default 2,000,000) over 24 hourly raw partitions laid out as the
ingest service writes them (Firehose keys, ~5 MiB objects, 0.5% replayed duplicates), then in one
process measures:
- the project's ETL job (cloud.local.etl.DuckDBEtlJob) over all of it, and a plain pandas
  conversion of the same objects (read_json, dedupe, UTC, partitioned Parquet): rows/s each;
- an incremental run after adding 1% new data (see docs/benchmarks.md for what its cost follows);
- the live-readings query (the readings API's SQL, one device, last 24 h) p50/p95 on a lake of
  --query-rows curated rows (default 10,000,000), with a small raw tail not yet ETL'd. The lake is
  unchanged between these queries, so all but the first reuse the engine's cached snapshot;
- the same query right after a new raw object lands (--after-new-object times: put one small raw
  object, then time one query), p50/p95/max: what a dashboard sees while the ingest keeps writing.
  The engine appends each new object to its cached tables (DuckDBQuery._refreshed) instead of
  rebuilding them; query_full_builds/query_appends count which it did.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
import pandas as pd

from cloud.lake import FolderLake
from cloud.local.etl import DuckDBEtlJob
from cloud.local.query import DuckDBQuery

HOURS = 24
RECORDS_PER_OBJECT = 16_000  # ~5 MiB of NDJSON, Firehose's default buffer size
DEVICES = 1000
# The readings API's query (forecasts.selectors.readings_recent).
LIVE_SQL = (
    'SELECT * FROM telemetry_live WHERE device_id = ? AND "timestamp" >= ? AND "timestamp" <= ? '
    'AND date BETWEEN ? AND ? ORDER BY "timestamp" DESC, message_id LIMIT ?'
)


def generate(lake: FolderLake, rows: int, end: datetime, salt: str, duplicates: float = 0.005) -> int:
    """Write rows raw records (plus replayed duplicates) over the 24 h before end; return records written."""
    start = end - timedelta(hours=HOURS)
    per_hour = max(1, rows // HOURS)
    written = 0
    con = duckdb.connect()
    for hour in range(HOURS):
        moment = start + timedelta(hours=hour)
        prefix = f"raw/year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}/"
        for first in range(0, per_hour, RECORDS_PER_OBJECT):
            count = min(RECORDS_PER_OBJECT, per_hour - first)
            key = f"{prefix}iotcast-telemetry-1-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
            path = lake.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            offset = hour * per_hour + first
            dupes = int(count * duplicates)
            con.execute(_records_sql(offset, count, dupes, moment, salt, path))
            written += count + dupes
    return written


def _records_sql(offset: int, count: int, dupes: int, hour: datetime, salt: str, path: Path) -> str:
    # Deterministic ids (md5 of salt + index) let the duplicates replay exact earlier messages.
    base = hour.strftime("%Y-%m-%d %H:%M:%S")
    return f"""
    COPY (
      SELECT md5('{salt}' || i::VARCHAR) AS message_id,
             strftime(TIMESTAMP '{base}' + to_milliseconds((i - {offset}) * 3600000 // {count}),
                      '%Y-%m-%dT%H:%M:%S.%gZ') AS "timestamp",
             40 + (i % 17) AS ozone, 12 + (i % 5) * 0.5 AS particulate_matter, 0.4 AS carbon_monoxide,
             3.0 + (i % 3) AS sulfur_dioxide, 20.0 + (i % 11) AS nitrogen_dioxide,
             56.2025 AS latitude, 10.2507 AS longitude,
             'dev-' || lpad((i % {DEVICES})::VARCHAR, 4, '0') AS device_id,
             epoch_ms(TIMESTAMP '{base}') + (i - {offset}) * 3600000 // {count} + 250 AS received_at
      FROM (SELECT range AS i FROM range({offset}, {offset + count})
            UNION ALL SELECT range AS i FROM range({offset}, {offset + dupes}))
    ) TO '{path}' (FORMAT json)
    """


def pandas_etl(lake: FolderLake, out: Path) -> int:
    """Plain pandas: read every raw object, dedupe, UTC timestamps, partitioned Parquet; return rows written."""
    frames = [pd.read_json(lake.root / info.key, lines=True, dtype=False) for info in lake.list_objects("raw/")]
    frame = pd.concat(frames, ignore_index=True).drop_duplicates("message_id")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame["received_at"] = pd.to_datetime(frame["received_at"], unit="ms", utc=True)
    frame["date"] = frame["timestamp"].dt.strftime("%Y-%m-%d")
    frame.to_parquet(out, partition_cols=["date"], compression="zstd", index=False)
    return len(frame)


def timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def measure_etl(rows: int, end: datetime) -> dict:
    with tempfile.TemporaryDirectory(prefix="iotcast-bench-") as folder:
        lake = FolderLake(f"file://{folder}/lake")
        records = generate(lake, rows, end, "a")
        job = DuckDBEtlJob()
        result, full_s = timed(job.run, lake)
        pandas_rows, pandas_s = timed(pandas_etl, lake, Path(folder) / "pandas")
        generate(lake, rows // 100, end, "b")
        incremental, incremental_s = timed(job.run, lake)
    return {
        "rows": rows,
        "records_read": records,
        "rows_written": result.rows_written,
        "duplicates_dropped": result.duplicates_dropped,
        "pandas_rows_written": pandas_rows,
        "full_run_s": round(full_s, 3),
        "etl_rows_per_s": round(records / full_s),
        "pandas_s": round(pandas_s, 3),
        "pandas_rows_per_s": round(records / pandas_s),
        "speedup_vs_pandas": round(pandas_s / full_s, 2),
        "incremental_rows": incremental.rows_read,
        "incremental_run_s": round(incremental_s, 3),
        "incremental_fraction_of_full": round(incremental_s / full_s, 3),
    }


def put_object(lake: FolderLake, end: datetime, salt: str, count: int = 20) -> None:
    """Write one small raw object (count records, no duplicates) into the hour before end, as the ingest would."""
    moment = end - timedelta(hours=1)
    key = f"raw/year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}/"
    key += f"iotcast-telemetry-1-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    path = lake.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute(_records_sql(0, count, 0, moment, salt, path))


def percentiles(timings: list[float], prefix: str) -> dict:
    """Return {prefix_p50_ms, prefix_p95_ms, prefix_max_ms} of timings (ms), rounded to 0.01 ms."""
    ordered = sorted(timings)
    return {
        f"{prefix}_p50_ms": round(statistics.median(ordered), 2),
        f"{prefix}_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        f"{prefix}_max_ms": round(ordered[-1], 2),
    }


def query_after_new_object(engine: DuckDBQuery, lake: FolderLake, end: datetime, params: list, times: int) -> dict:
    """Time the live query right after each of `times` new raw objects lands; return its p50/p95/max.

    Wall time around execute: it includes the snapshot rebuild the new object forces.
    """
    timings = []
    for index in range(times):
        put_object(lake, end, f"new-{index}-")
        started = time.perf_counter()
        engine.execute(lake, LIVE_SQL, params)
        timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings, "query_after_new_object") | {
        "query_after_new_object_samples": times,
        "query_full_builds": engine.full_builds,
        "query_appends": engine.appends,
    }


def measure_query(rows: int, end: datetime, repeats: int, after_new_object: int = 30) -> dict:
    with tempfile.TemporaryDirectory(prefix="iotcast-bench-q-") as folder:
        lake = FolderLake(f"file://{folder}/lake")
        generate(lake, rows, end, "q", duplicates=0)
        _, build_s = timed(DuckDBEtlJob().run, lake)
        generate(lake, 2000, end, "tail", duplicates=0)  # a raw tail not yet ETL'd
        engine = DuckDBQuery()
        start = end - timedelta(hours=24)
        params = ["dev-0042", start, end, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}", 1000]
        timings, count = [], 0
        for _ in range(repeats):
            result = engine.execute(lake, LIVE_SQL, params)
            timings.append(result.elapsed_ms)
            count = len(result.rows)
        after = query_after_new_object(engine, lake, end, params, after_new_object) if after_new_object else {}
    timings.sort()
    return {
        "query_lake_rows": rows,
        "query_lake_build_s": round(build_s, 2),
        "query_rows_returned": count,
        "query_min_ms": round(timings[0], 2),
        "query_p50_ms": round(statistics.median(timings), 2),
        "query_p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 2),
        **after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k records and a 1M-row query lake")
    parser.add_argument("--rows", type=int, default=None, help="raw records for the ETL runs (default 2,000,000)")
    parser.add_argument("--query-rows", type=int, default=None, help="curated rows for the query (default 10M)")
    parser.add_argument("--repeats", type=int, default=100, help="live queries to time (default 100)")
    parser.add_argument(
        "--after-new-object", type=int, default=30, help="queries to time, each after a new raw object (default 30)"
    )
    args = parser.parse_args()
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    query_rows = args.query_rows if args.query_rows is not None else (1_000_000 if args.quick else 10_000_000)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    figures = measure_etl(rows, end)
    if query_rows > 0:
        figures.update(measure_query(query_rows, end, args.repeats, args.after_new_object))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
