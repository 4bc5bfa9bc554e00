"""The DuckDB ETL job over a real folder lake: typing, partitions, bookmarks, dedupe, errors."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from cloud.local.duckdb_telemetry import BOOKMARK_KEY, connect, load_raw, typed_select_sql
from cloud.local.etl import DuckDBEtlJob
from tests.telemetry_helpers import put_raw, reading

DAY1 = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
DAY2 = DAY1 + timedelta(hours=1)


def curated(lake) -> pa.Table:
    """Return all curated rows (read straight from the Parquet files, not through our engine)."""
    tables = []
    for info in lake.list_objects("curated/telemetry/"):
        with lake.local_paths([info.key]) as (path,):
            table = pq.read_table(path)
        tables.append(table.append_column("date", pa.array([info.key.split("/")[2][5:]] * table.num_rows)))
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def test_etl_types_and_partitions_by_date(lake):
    put_raw(lake, [reading("dev-a", DAY1, ozone=41), reading("dev-b", DAY2, ozone=42.5)])

    result = DuckDBEtlJob().run(lake)

    assert (result.objects_processed, result.rows_read, result.rows_written) == (1, 2, 2)
    assert result.partitions_written == ["2026-11-27", "2026-11-28"]
    keys = [info.key for info in lake.list_objects("curated/")]
    assert [key.split("/")[2] for key in keys] == ["date=2026-11-27", "date=2026-11-28"]
    assert all(key.split("/")[3].startswith("part-") and key.endswith(".parquet") for key in keys)
    table = curated(lake)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("ozone").type == pa.float64()
    rows = sorted(table.to_pylist(), key=lambda row: row["timestamp"])
    assert [row["ozone"] for row in rows] == [41.0, 42.5]
    assert rows[0]["timestamp"] == DAY1 and rows[0]["received_at"] == DAY1 + timedelta(milliseconds=250)
    with lake.local_paths([keys[0]]) as (path,):
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_second_run_without_new_objects_processes_nothing(lake):
    put_raw(lake, [reading("dev-a", DAY1)])
    DuckDBEtlJob().run(lake)
    messages = []

    result = DuckDBEtlJob().run(lake, lambda percent, message: messages.append(message))

    assert (result.objects_processed, result.rows_read, result.rows_written) == (0, 0, 0)
    assert messages[-1] == "no new raw objects"
    assert len(lake.list_objects("curated/")) == 1


def test_rerun_after_lost_bookmark_writes_no_duplicates(lake):
    put_raw(lake, [reading("dev-a", DAY1 + timedelta(minutes=i)) for i in range(5)])
    DuckDBEtlJob().run(lake)
    lake.delete(BOOKMARK_KEY)  # as if the job died after writing curated/ but before the bookmark
    put_raw(lake, [reading("dev-a", DAY2)])

    result = DuckDBEtlJob().run(lake)

    assert (result.objects_processed, result.rows_written, result.duplicates_dropped) == (2, 1, 5)
    ids = curated(lake).column("message_id").to_pylist()
    assert len(ids) == len(set(ids)) == 6


def test_duplicates_within_a_batch_are_dropped(lake):
    first = reading("dev-a", DAY1)
    put_raw(lake, [first, first, reading("dev-a", DAY1 + timedelta(seconds=1))])
    put_raw(lake, [first])  # a redelivery landing in another object of the same batch

    result = DuckDBEtlJob().run(lake)

    assert (result.rows_read, result.rows_written, result.duplicates_dropped) == (4, 2, 2)
    assert curated(lake).column("message_id").to_pylist().count(first["message_id"]) == 1


def test_bad_rows_go_to_errors_whole_with_the_reason(lake):
    bad = reading("dev-a", DAY1, timestamp="yesterday-ish", note={"kept": True})
    key = put_raw(lake, [reading("dev-a", DAY1), bad, {**reading("dev-a", DAY1), "message_id": None}])

    result = DuckDBEtlJob().run(lake)

    assert (result.rows_read, result.rows_written, result.rows_rejected) == (3, 1, 2)
    (errors,) = lake.list_objects("errors/etl-failed/")
    assert errors.key.startswith("errors/etl-failed/year=")
    lines = [json.loads(line) for line in lake.get_bytes(errors.key).splitlines()]
    by_reason = {line["reason"]: line for line in lines}
    assert set(by_reason) == {"unparsable timestamp", "missing message_id"}
    rejected = by_reason["unparsable timestamp"]
    assert rejected["raw_key"] == key
    assert rejected["record"]["message_id"] == bad["message_id"]
    assert rejected["record"]["timestamp"] == "yesterday-ish" and rejected["record"]["note"] == {"kept": True}


def test_new_numeric_fields_are_kept(lake):
    put_raw(lake, [reading("dev-a", DAY1)])
    DuckDBEtlJob().run(lake)
    put_raw(lake, [reading("dev-a", DAY1 + timedelta(minutes=1), humidity=61.5, label="text")])

    DuckDBEtlJob().run(lake)

    table = curated(lake)
    assert table.schema.field("humidity").type == pa.float64()
    assert "label" not in table.schema.names  # only numeric fields become columns
    assert sorted(table.column("humidity").to_pylist(), key=lambda v: v is None) == [61.5, None]


def test_many_objects_are_processed_in_batches_with_the_bookmark_moving_on(lake):
    for minute in range(5):
        put_raw(lake, [reading("dev-a", DAY1 + timedelta(minutes=minute))])

    result = DuckDBEtlJob(max_batch_objects=2).run(lake)

    assert (result.objects_processed, result.rows_written) == (5, 5)
    assert len(json.loads(lake.get_bytes(BOOKMARK_KEY))["processed"]) == 5


@pytest.mark.django_db
def test_etl_command_prints_progress_and_result(lake):
    put_raw(lake, [reading("dev-a", DAY1)])
    out = StringIO()
    call_command("etl", stdout=out)
    text = out.getvalue()
    assert "batch 1/1: 1 objects" in text
    assert "etl run #" in text and "succeeded" in text and "rows_written: 1" in text


def test_a_badly_typed_value_past_detection_falls_back_to_the_robust_read(lake):
    key = put_raw(lake, [reading("dev-a", DAY1, ozone="n/a"), reading("dev-a", DAY1, ozone=5)])
    with lake.local_paths([key]) as paths, connect() as con:
        # As if detection had sampled only numbers: the fast typed read fails on "n/a".
        types = load_raw(con, "src", paths, {"ozone": "DOUBLE", "received_at": "BIGINT"})
        values = con.execute(f"SELECT ozone FROM ({typed_select_sql('src', types, ['ozone'])})").fetchall()
    assert types["ozone"] == "JSON"
    assert sorted(values, key=str) == [(5.0,), (None,)]


@pytest.mark.parametrize("per_date_writes_max", [8, 0], ids=["per-date-copies", "partitioned-copy"])
def test_curated_files_are_sorted_by_device_then_time(lake, per_date_writes_max):
    moments = [DAY1 - timedelta(minutes=m) for m in (5, 50, 20)] + [DAY2 + timedelta(minutes=m) for m in (9, 1)]
    put_raw(lake, [reading(device, moment) for moment in moments for device in ("dev-c", "dev-a", "dev-b")])
    put_raw(lake, [reading("dev-aa", DAY1), reading("dev-0", DAY2)])

    result = DuckDBEtlJob(per_date_writes_max=per_date_writes_max).run(lake)

    assert (result.rows_written, result.partitions_written) == (17, ["2026-11-27", "2026-11-28"])
    for info in lake.list_objects("curated/telemetry/"):
        with lake.local_paths([info.key]) as (path,):
            rows = pq.read_table(path, columns=["device_id", "timestamp"]).to_pylist()
        order = [(row["device_id"], row["timestamp"]) for row in rows]
        assert order == sorted(order) and len(set(order)) == len(order) > 2


def test_rejected_rows_name_the_raw_object_they_came_from(lake):
    good = put_raw(lake, [reading("dev-a", DAY1)])
    bad_key = put_raw(lake, [reading("dev-a", DAY1), reading("dev-b", DAY1, timestamp="soon")])

    result = DuckDBEtlJob().run(lake)

    assert (result.rows_read, result.rows_written, result.rows_rejected) == (3, 2, 1)
    (errors,) = lake.list_objects("errors/etl-failed/")
    (line,) = [json.loads(line) for line in lake.get_bytes(errors.key).splitlines()]
    assert line["raw_key"] == bad_key != good
    assert line["record"]["device_id"] == "dev-b" and "_file" not in line["record"]
