"""The Glue script's Spark transformation on a local Spark (pyspark, Java) against the local DuckDB job.

Both jobs read the same raw objects; the curated rows (columns and their order, values, dedupe) and the
reject reasons must be identical. Glue's own parts (GlueContext, bookmark, job.commit) cannot run here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from cloud.aws.glue import telemetry_etl as script
from cloud.lake import FolderLake
from cloud.local.duckdb_telemetry import DEFAULT_METRICS, LOCATION_COLUMNS
from cloud.local.etl import DEFAULT_RANGES, DuckDBEtlJob
from tests.telemetry_helpers import put_raw, reading

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """A one-core local SparkSession, quiet, its temp files under tmp_path; stopped at the end."""
    tmp = tmp_path_factory.mktemp("spark")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines outlive pytest's captured streams
    (tmp / "log4j2.properties").write_text(
        "rootLogger.level = error\nrootLogger.appenderRef.stderr.ref = console\n"
        "appender.console.type = Console\nappender.console.name = console\nappender.console.target = SYSTEM_ERR\n"
        "appender.console.layout.type = PatternLayout\nappender.console.layout.pattern = %p %c: %m%n\n"
    )
    # The Python workers must run this interpreter and import the script's module as the driver does.
    saved = {name: os.environ.get(name) for name in ("PYSPARK_PYTHON", "PYTHONPATH", "SPARK_LOCAL_DIRS")}
    os.environ.update(PYSPARK_PYTHON=sys.executable, PYTHONPATH=str(ROOT), SPARK_LOCAL_DIRS=str(tmp / "local"))
    java_options = f"-Dlog4j2.configurationFile=file:{tmp}/log4j2.properties -Djava.io.tmpdir={tmp}"
    session = (
        SparkSession.builder.master("local[1]")
        .appName("iotcast-glue-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.local.dir", str(tmp / "local"))
        .config("spark.sql.warehouse.dir", str(tmp / "warehouse"))
        .config("spark.driver.extraJavaOptions", java_options)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    script.configure_session(session)
    yield session
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _raw_lake(tmp_path) -> tuple[FolderLake, list[str]]:
    """Return a folder lake holding good, duplicated, rejected and unparsable raw lines, and its raw keys."""
    start = datetime(2026, 11, 27, 23, 58, tzinfo=UTC)
    good = [reading("dev-1", start + timedelta(minutes=i), ozone=40.0 + i) for i in range(4)]  # over midnight
    # An offset instead of Z: both jobs store it in UTC.
    good[1]["timestamp"] = (start + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    good[2]["temperature"] = 21.5  # a new numeric field
    good[3]["ozone"] = None  # a missing metric stays null
    late = {**good[0], "received_at": good[0]["received_at"] + 5000, "ozone": 99.0}  # the same message, later
    no_arrival = {**good[1], "received_at": None, "ozone": 98.0}  # a missing received_at counts as last
    bad = [
        reading("dev-1", start, ozone=5000.0),
        {**reading("dev-2", start), "device_id": None},
        {**reading("dev-2", start), "message_id": None},
        reading("dev-2", start, timestamp="yesterday-ish"),
        reading("dev-2", start, nitrogen_dioxide="high"),
        reading("dev-2", start, latitude=91.0),
    ]
    lake = FolderLake(f"file://{tmp_path}/lake")
    keys = [put_raw(lake, [late, *good[:2], *bad[:3]]), put_raw(lake, [*good[2:], no_arrival, *bad[3:]])]
    keys.append(put_raw(lake, []))
    lake.put_bytes(keys[-1], b'{"message_id": "x", \n\n[1, 2]\n')
    return lake, keys


def _utc(value):
    """Return a timestamp Spark collected (naive, in this process's local time) as an aware UTC datetime."""
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def test_the_spark_transformation_curates_and_rejects_exactly_as_the_local_job(spark, tmp_path):
    lake, keys = _raw_lake(tmp_path)
    DuckDBEtlJob().run(lake)
    source = script.read_raw(spark, [f"{tmp_path}/lake/raw"])
    curated = script.transform(spark, source, lake.url, [*DEFAULT_METRICS, *LOCATION_COLUMNS], DEFAULT_RANGES)

    local = pq.read_table(f"{tmp_path}/lake/curated/telemetry")
    assert curated.deduped.columns == local.schema.names  # same columns, same order, `date` last
    assert curated.numeric[-1] == "temperature"
    ours = sorted(tuple(_utc(v) for v in row) for row in curated.deduped.collect())
    theirs = sorted(tuple(str(v) if name == "date" else v for name, v in row.items()) for row in local.to_pylist())
    assert ours == theirs and len(ours) == 4
    assert {row[-1] for row in ours} == {"2026-11-27", "2026-11-28"}  # UTC dates
    ozone = curated.deduped.columns.index("ozone")
    assert 99.0 not in {row[ozone] for row in ours} and 98.0 not in {row[ozone] for row in ours}  # first arrivals

    rejects = [json.loads(row.value) for row in curated.rejects.collect()]
    local_errors = [
        json.loads(line) for info in lake.list_objects("errors/") for line in lake.get_bytes(info.key).splitlines()
    ]
    assert sorted(e["reason"] for e in rejects) == sorted(e["reason"] for e in local_errors)
    assert len(rejects) == 8 and {e["raw_key"] for e in rejects} == set(keys)
    assert 'nitrogen_dioxide is not a number: "high"' in {e["reason"] for e in rejects}


def test_a_rerun_drops_the_message_ids_already_curated(spark, tmp_path):
    lake, _ = _raw_lake(tmp_path)
    DuckDBEtlJob().run(lake)
    source = script.read_raw(spark, [f"{tmp_path}/lake/raw"])
    curated = script.transform(spark, source, lake.url, list(DEFAULT_METRICS), DEFAULT_RANGES)
    assert script.drop_curated(spark, curated.deduped, lake.url).count() == 0
    assert script.drop_curated(spark, curated.deduped, f"file://{tmp_path}/empty").count() == 4
