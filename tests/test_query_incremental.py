"""The query engine appends new raw objects to its cached tables in place, answering as a fresh engine would."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from moto.server import ThreadedMotoServer

from cloud.interfaces import BackendError
from cloud.lake import S3Lake
from cloud.local.etl import DuckDBEtlJob
from cloud.local.query import DuckDBQuery
from tests.telemetry_helpers import put_raw, reading

BASE = datetime(2026, 11, 27, 10, tzinfo=UTC)
LIVE = "SELECT * FROM telemetry_live ORDER BY message_id"


def answer(engine: DuckDBQuery, lake) -> tuple[list[str], list[tuple]]:
    result = engine.execute(lake, LIVE)
    return result.columns, result.rows


def ozone_of(engine: DuckDBQuery, lake, message_id: str) -> list[float]:
    return [
        row[0]
        for row in engine.execute(lake, "SELECT ozone FROM telemetry_live WHERE message_id = ?", [message_id]).rows
    ]


def replay(record: dict, delay_ms: int, ozone: float) -> dict:
    """The same message again, received delay_ms later (earlier when negative), with another ozone value."""
    return {**record, "received_at": record["received_at"] + delay_ms, "ozone": ozone}


@pytest.fixture
def seeded(lake):
    """A lake with 5 curated readings of dev-a and 3 of dev-b in the raw tail; an engine that has built its tables."""
    curated = [reading("dev-a", BASE + timedelta(minutes=m), ozone=float(m)) for m in range(5)]
    put_raw(lake, curated)
    DuckDBEtlJob().run(lake)
    tail = [reading("dev-b", BASE + timedelta(minutes=m), ozone=100.0 + m) for m in range(3)]
    put_raw(lake, tail)
    engine = DuckDBQuery()
    assert len(engine.execute(lake, LIVE).rows) == 8
    assert (engine.full_builds, engine.appends) == (1, 0)
    return engine, curated, tail


def test_new_objects_are_appended_deduplicated_against_the_tail_the_curated_ids_and_themselves(lake, seeded):
    engine, curated, tail = seeded
    fresh = [reading("dev-c", BASE + timedelta(minutes=30 + m), ozone=200.0 + m) for m in range(4)]
    twice = reading("dev-c", BASE + timedelta(minutes=40), ozone=300.0)
    put_raw(lake, [*fresh[:2], replay(tail[0], 5000, 901.0), twice])
    columns, first = answer(engine, lake)
    put_raw(lake, [*fresh[2:], replay(curated[1], 5000, 902.0), replay(twice, 1000, 903.0)])
    columns, second = answer(engine, lake)

    assert (engine.full_builds, engine.appends) == (1, 2)  # both objects appended in place
    assert len(first) == 8 + 3 and len(second) == 8 + 5
    assert answer(DuckDBQuery(), lake) == (columns, second)  # what a fresh engine reads
    assert ozone_of(engine, lake, tail[0]["message_id"]) == [100.0]  # the first arrival is kept
    assert ozone_of(engine, lake, curated[1]["message_id"]) == [1.0]  # curated already: not counted again
    assert ozone_of(engine, lake, twice["message_id"]) == [300.0]
    ids = [row[columns.index("message_id")] for row in second]
    assert len(ids) == len(set(ids)) and set(ids) >= {r["message_id"] for r in fresh}


def test_replays_within_one_new_object_keep_its_first_arrival(lake, seeded):
    engine, _, _ = seeded
    message = reading("dev-d", BASE + timedelta(minutes=50), ozone=50.0)
    put_raw(lake, [replay(message, 3000, 503.0), message, replay(message, 1000, 501.0)])

    assert ozone_of(engine, lake, message["message_id"]) == [50.0]
    assert (engine.full_builds, engine.appends) == (1, 1)
    assert answer(engine, lake) == answer(DuckDBQuery(), lake)


def test_a_replay_received_before_the_tails_copy_rebuilds_and_wins(lake, seeded):
    engine, _, tail = seeded
    put_raw(lake, [replay(tail[2], -60_000, 777.0)])  # the device's earlier send reached raw/ late

    assert ozone_of(engine, lake, tail[2]["message_id"]) == [777.0]
    assert (engine.full_builds, engine.appends) == (2, 0)
    assert answer(engine, lake) == answer(DuckDBQuery(), lake)


def test_a_new_column_in_a_new_object_rebuilds_and_is_queryable(lake, seeded):
    engine, _, _ = seeded
    put_raw(lake, [reading("dev-e", BASE + timedelta(minutes=20), ozone=20.0, humidity=55.5)])

    rows = engine.execute(lake, "SELECT device_id, humidity FROM telemetry_live WHERE humidity IS NOT NULL").rows
    assert rows == [("dev-e", 55.5)]
    assert (engine.full_builds, engine.appends) == (2, 0)
    put_raw(lake, [reading("dev-e", BASE + timedelta(minutes=21), ozone=21.0, humidity=56.5)])  # now a known column
    assert answer(engine, lake) == answer(DuckDBQuery(), lake)
    assert (engine.full_builds, engine.appends) == (2, 1)


def test_a_date_new_to_the_tail_is_checked_against_its_curated_ids(lake, seeded):
    engine, _, _ = seeded
    yesterday = [reading("dev-f", BASE - timedelta(days=1, minutes=m), ozone=10.0 + m) for m in range(3)]
    put_raw(lake, yesterday)
    DuckDBEtlJob().run(lake)  # curated now holds two dates; the tail is empty
    engine.execute(lake, LIVE)
    builds = engine.full_builds
    late = reading("dev-f", BASE - timedelta(days=1, minutes=30), ozone=40.0)
    put_raw(lake, [late, replay(yesterday[0], 5000, 904.0)])

    assert ozone_of(engine, lake, yesterday[0]["message_id"]) == [10.0]
    assert ozone_of(engine, lake, late["message_id"]) == [40.0]
    assert (engine.full_builds, engine.appends) == (builds, 1)
    assert answer(engine, lake) == answer(DuckDBQuery(), lake)


def test_an_etl_run_or_a_removed_object_rebuilds(lake, seeded):
    engine, _, _ = seeded
    key = put_raw(lake, [reading("dev-g", BASE + timedelta(minutes=7))])
    engine.execute(lake, LIVE)
    lake.delete(key)
    assert len(engine.execute(lake, LIVE).rows) == 8
    DuckDBEtlJob().run(lake)
    assert answer(engine, lake) == answer(DuckDBQuery(), lake)
    assert (engine.full_builds, engine.appends) == (3, 1)


def test_an_appended_object_with_corrupt_lines_keeps_its_good_lines(lake, seeded):
    engine, _, _ = seeded
    good = reading("dev-h", BASE + timedelta(minutes=9), ozone=9.0)
    key = "raw/year=2026/month=11/day=27/hour=10/torn"
    lake.put_bytes(key, (json.dumps(good) + '\n{"message_id": "torn", "ozo\n').encode())

    assert ozone_of(engine, lake, good["message_id"]) == [9.0]
    assert (engine.full_builds, engine.appends) == (1, 1)
    assert "1 unparsable line(s)" in engine.skipped_objects(lake)[key]
    assert answer(engine, lake) == answer(DuckDBQuery(), lake)


def test_after_an_append_the_sql_still_reads_no_file_and_sees_no_staging_table(lake, seeded):
    engine, _, _ = seeded
    put_raw(lake, [reading("dev-i", BASE)])
    engine.execute(lake, LIVE)
    assert engine.appends == 1

    with pytest.raises(BackendError, match="disabled"):
        engine.execute(lake, "SELECT * FROM read_csv('/etc/hostname')")
    with pytest.raises(BackendError):
        engine.execute(lake, "SELECT * FROM fresh_rows")


def test_queries_from_other_threads_see_the_tail_before_or_after_each_append(lake, seeded):
    engine, _, _ = seeded
    stop, seen, errors = threading.Event(), [], []

    def query() -> None:
        while not stop.is_set():
            try:
                seen.append(
                    engine.execute(lake, "SELECT count(*), count(DISTINCT message_id) FROM telemetry_live").rows[0]
                )
            except Exception as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(3)]
    for thread in threads:
        thread.start()
    for batch in range(6):
        put_raw(lake, [reading("dev-j", BASE + timedelta(minutes=batch, seconds=s)) for s in range(5)])
        engine.execute(lake, LIVE)
    stop.set()
    for thread in threads:
        thread.join()

    assert errors == []
    assert all(total == distinct and (total - 8) % 5 == 0 for total, distinct in seen)  # whole objects, no duplicate
    assert engine.execute(lake, "SELECT count(*) FROM telemetry_live").rows == [(8 + 30,)]
    assert engine.full_builds == 1 and engine.appends == 6


@pytest.fixture
def s3_lake(mocked_aws):
    """A lake on moto's S3 server: the engine reads its curated files through a pyarrow dataset."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Lake(f"s3://iotcast-lake/incremental?endpoint=http://{host}:{port}&region=us-east-1")
    server.stop()


def test_an_s3_lake_appends_too(s3_lake):
    curated = [reading("dev-a", BASE + timedelta(minutes=m), ozone=float(m)) for m in range(4)]
    put_raw(s3_lake, curated)
    DuckDBEtlJob().run(s3_lake)
    put_raw(s3_lake, [reading("dev-b", BASE, ozone=100.0)])
    engine = DuckDBQuery()
    engine.execute(s3_lake, LIVE)
    fresh = reading("dev-b", BASE + timedelta(minutes=1), ozone=101.0)
    put_raw(s3_lake, [fresh, replay(curated[2], 5000, 905.0)])

    assert ozone_of(engine, s3_lake, curated[2]["message_id"]) == [2.0]
    assert ozone_of(engine, s3_lake, fresh["message_id"]) == [101.0]
    assert (engine.full_builds, engine.appends) == (1, 1)
    assert answer(engine, s3_lake) == answer(DuckDBQuery(), s3_lake)
