"""Crawl -> ETL -> query over one generated data set with known answers, and a lake with corrupt objects.

Everything is real: a folder lake, the DuckDB crawler, ETL job and query engine, read through the
selectors the readings API and the dashboard use. Expected figures are computed from the generated
records, never typed in.
"""

import json
import logging
import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from cloud.backends import get_backend
from cloud.local.duckdb_telemetry import CURATED_PREFIX
from forecasts.models import CatalogTable
from forecasts.selectors import (
    devices_activity,
    readings_aggregated,
    readings_export,
    readings_recent,
    telemetry_metrics,
)
from forecasts.services.crawl import crawl_execute
from forecasts.services.etl import etl_execute
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db

DAYS = [datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)]
DEVICES = ["dev-a", "dev-b", "dev-c"]
START, END = DAYS[0], DAYS[-1] + timedelta(days=3)


def generate(seed: int = 7) -> list[dict]:
    """Return readings for every device on every day: a seeded number of them, at distinct minutes."""
    rng = random.Random(seed)
    records = []
    for day in DAYS:
        for device in DEVICES:
            for minute in sorted(rng.sample(range(24 * 60), rng.randint(4, 12))):
                ozone = round(rng.uniform(5.0, 120.0), 3)
                records.append(reading(device, day + timedelta(minutes=minute), ozone=ozone))
    return records


def expected_by_device_day(records: list[dict], metric: str = "ozone") -> dict[tuple[str, str], list[float]]:
    """Return {(device, YYYY-MM-DD): [values of metric]} of the records (each message once)."""
    found = defaultdict(list)
    for record in {record["message_id"]: record for record in records}.values():
        found[record["device_id"], record["timestamp"][:10]].append(record[metric])
    return found


def arrival(day: datetime) -> datetime:
    """Return when a day's readings landed in raw/ (its last hour): one raw partition per day."""
    return day + timedelta(hours=23, minutes=30)


def load_lake(lake, records: list[dict]) -> tuple[list[dict], datetime]:
    """Store records in one raw object per day, then a replay of some of them in an object of its own.

    Returns (the replayed records, the replay's arrival time).
    """
    for day in DAYS:
        put_raw(lake, [r for r in records if r["timestamp"].startswith(f"{day:%Y-%m-%d}")], arrived=arrival(day))
    replayed = random.Random(3).sample(records, 5)
    # A device replays what it did not see acknowledged: same message, later arrival.
    resent = [{**record, "received_at": record["received_at"] + 60_000} for record in replayed]
    replay_at = DAYS[-1] + timedelta(days=1, hours=2)
    put_raw(lake, resent + resent[:1], arrived=replay_at)
    return replayed, replay_at


def query_answers() -> dict:
    """Return what the selectors answer per device: daily counts/means/min/max, exported ids, totals."""
    answers = {"daily": {}, "ids": {}, "totals": {}}
    for device in DEVICES:
        for row in readings_aggregated(device, ["ozone"], "day", start=START, end=END):
            stats = row["ozone"]
            key = (device, f"{row['bucket']:%Y-%m-%d}")
            answers["daily"][key] = (row["count"], stats["mean"], stats["min"], stats["max"])
        export = readings_export(device, START, END, ["ozone"])
        answers["ids"][device] = [row["message_id"] for row in export.records()]
    answers["totals"] = {device: row["readings_total"] for device, row in devices_activity().items()}
    return answers


def expected_answers(records: list[dict]) -> dict:
    expected = expected_by_device_day(records)
    return {
        "daily": {
            key: (len(values), pytest.approx(statistics.fmean(values), rel=1e-12), min(values), max(values))
            for key, values in expected.items()
        },
        "totals": dict(Counter(r["device_id"] for r in records)),
    }


def assert_answers(answers: dict, records: list[dict]) -> None:
    expected = expected_answers(records)
    assert answers["daily"] == expected["daily"]
    assert answers["totals"] == expected["totals"]
    for device, ids in answers["ids"].items():
        assert len(ids) == len(set(ids)) == expected["totals"][device]  # each replayed message once
        assert set(ids) == {r["message_id"] for r in records if r["device_id"] == device}


def test_crawl_etl_query_round_trip_with_replayed_duplicates(lake):
    records = generate()
    replayed, replay_at = load_lake(lake, records)

    crawl = crawl_execute({})
    live_before_etl = query_answers()  # the raw tail alone, deduplicated
    etl = etl_execute({})
    curated = query_answers()

    table = CatalogTable.objects.get(database="iotcast", name="telemetry_raw")
    hours = sorted({arrival(day) for day in DAYS} | {replay_at})
    assert table.partitions == [
        {"year": f"{h:%Y}", "month": f"{h:%m}", "day": f"{h:%d}", "hour": f"{h:%H}"} for h in hours
    ]
    assert crawl["partitions"] == len(hours) and crawl["type_conflicts"] == []
    assert {"ozone": "double", "device_id": "string"}.items() <= {c["name"]: c["type"] for c in table.columns}.items()
    duplicates = len(replayed) + 1
    assert etl["rows_read"] == len(records) + duplicates
    assert (etl["rows_written"], etl["duplicates_dropped"], etl["rows_rejected"]) == (len(records), duplicates, 0)
    assert etl["partitions_written"] == [f"{day:%Y-%m-%d}" for day in DAYS]
    assert_answers(live_before_etl, records)
    assert_answers(curated, records)
    per_date = get_backend("query").execute(lake, "SELECT date, count(*) FROM telemetry GROUP BY date ORDER BY date")
    assert per_date.rows == sorted(Counter(r["timestamp"][:10] for r in records).items())
    # The replay kept the first arrival of each message (its original received_at).
    first = replayed[0]
    row = next(
        r for r in readings_export(first["device_id"], START, END).records() if r["message_id"] == first["message_id"]
    )
    assert int(row["received_at"].timestamp() * 1000) == first["received_at"]


def test_a_device_sending_a_new_metric_becomes_a_queryable_column(lake):
    records = generate(seed=11)
    load_lake(lake, records)
    crawl_execute({})
    etl_execute({})
    assert "co2" not in telemetry_metrics()
    new_day = DAYS[-1] + timedelta(days=1)
    rng = random.Random(5)
    with_co2 = [
        reading("dev-b", new_day + timedelta(minutes=10 * i), ozone=30.0 + i, co2=round(rng.uniform(400, 900), 2))
        for i in range(7)
    ]
    put_raw(lake, with_co2, arrived=new_day + timedelta(hours=2))
    with pytest.raises(ValueError, match="unknown metric"):
        readings_export("dev-b", START, END, ["co2"])

    crawl = crawl_execute({})
    live = [row["co2"] for row in readings_recent("dev-b", START, END, ["co2"])]  # still in the raw tail
    etl = etl_execute({})
    curated = readings_recent("dev-b", START, END, ["co2", "ozone"])
    daily = readings_aggregated("dev-b", ["co2"], "day", start=START, end=END)

    table = CatalogTable.objects.get(database="iotcast", name="telemetry_raw")
    assert crawl["columns_added"] == ["co2"] and {"name": "co2", "type": "double"} in table.columns
    assert "co2" in telemetry_metrics()
    old = [r for r in records if r["device_id"] == "dev-b"]
    expected = [None] * len(old) + [r["co2"] for r in with_co2]  # oldest first: rows before co2 have none
    assert live == expected
    assert [row["co2"] for row in curated] == expected
    assert [row["ozone"] for row in curated][-len(with_co2) :] == [r["ozone"] for r in with_co2]
    assert etl["rows_written"] == len(with_co2) and etl["partitions_written"] == [f"{new_day:%Y-%m-%d}"]
    new_bucket = next(row for row in daily if row["bucket"].date() == new_day.date())
    values = [r["co2"] for r in with_co2]
    assert new_bucket["count"] == len(values)
    assert new_bucket["co2"]["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert all(row["co2"]["mean"] is None for row in daily if row is not new_bucket)


def skipped_warnings(caplog, key: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if key in record.getMessage() and record.levelno == logging.WARNING]


def test_live_queries_answer_around_a_corrupt_raw_object(lake, caplog):
    records = generate(seed=21)
    load_lake(lake, records)
    etl_execute({})  # most data curated; the rest arrives after
    now = datetime.now(UTC)
    late = [reading("dev-a", now - timedelta(minutes=m), ozone=float(m)) for m in (30, 20, 10)]
    corrupt = late[1:]
    twice = json.dumps(reading("dev-a", now))[:-1] + ', "ozone": 1.0}'  # DuckDB refuses a key given twice
    lines = [json.dumps(late[0]), '{"message_id": "torn", "ozo', "NaN", twice, json.dumps(corrupt[0])]
    lake.put_bytes(
        f"raw/year={now:%Y}/month={now:%m}/day={now:%d}/hour={now:%H}/torn-object",
        ("\n".join(lines) + "\n").encode() + b"\x00\xff\xfe binary \x80\n" + json.dumps(corrupt[1]).encode(),
    )
    garbage_key = f"raw/year={now:%Y}/month={now:%m}/day={now:%d}/hour={now:%H}/garbage-object"
    lake.put_bytes(garbage_key, bytes(random.Random(1).randrange(256) for _ in range(2000)))

    with caplog.at_level(logging.WARNING, logger="cloud.local.query"):
        first = [row["ozone"] for row in readings_recent("dev-a", now - timedelta(hours=1), now)]
        put_raw(lake, [reading("dev-c", now - timedelta(minutes=5))])  # the tables are rebuilt
        totals = {device: row["readings_total"] for device, row in devices_activity().items()}
        again = [row["ozone"] for row in readings_recent("dev-a", now - timedelta(hours=1), now)]

    assert first == again == [30.0, 20.0, 10.0]
    counted = Counter(r["device_id"] for r in records)
    assert totals == {**counted, "dev-a": counted["dev-a"] + 3, "dev-c": counted["dev-c"] + 1}
    skipped = get_backend("query").skipped_objects(lake)
    assert set(skipped) == {f"raw/year={now:%Y}/month={now:%m}/day={now:%d}/hour={now:%H}/torn-object", garbage_key}
    assert "4 unparsable line(s)" in skipped[next(key for key in skipped if key.endswith("torn-object"))]
    for key in skipped:  # logged once, not on every query or rebuild
        assert len(skipped_warnings(caplog, key)) == 1

    etl = etl_execute({})  # the ETL sets the broken lines aside; the answers stay the same
    assert etl["rows_written"] == 4
    errors = [
        json.loads(line) for info in lake.list_objects("errors/") for line in lake.get_bytes(info.key).splitlines()
    ]
    assert any("a key given twice" in error["reason"] for error in errors)
    assert etl["rows_rejected"] == len(errors)
    assert [row["ozone"] for row in readings_recent("dev-a", now - timedelta(hours=1), now)] == first
    assert get_backend("query").skipped_objects(lake) == {}  # nothing left out any more


def test_a_raw_object_duckdb_cannot_read_even_cleaned_is_left_out_whole(lake, caplog):
    now = datetime.now(UTC)
    kept = put_raw(lake, [reading("dev-a", now - timedelta(minutes=3), ozone=3.0)])
    # Valid for Python's json (so no line is dropped), refused by DuckDB: nested past its depth limit of 128.
    deep = (
        json.dumps(reading("dev-a", now - timedelta(minutes=2), ozone=2.0))[:-1]
        + ', "x": '
        + "[" * 200
        + "]" * 200
        + "}"
    )
    odd = put_raw(lake, [reading("dev-a", now - timedelta(minutes=1), ozone=1.0)])
    lake.put_bytes(odd, lake.get_bytes(odd) + deep.encode() + b"\n")

    with caplog.at_level(logging.WARNING, logger="cloud.local.query"):
        first = [row["ozone"] for row in readings_recent("dev-a", now - timedelta(hours=1), now)]
        put_raw(lake, [reading("dev-b", now)])
        again = [row["ozone"] for row in readings_recent("dev-a", now - timedelta(hours=1), now)]

    assert first == again == [3.0]
    skipped = get_backend("query").skipped_objects(lake)
    assert list(skipped) == [odd] and "cannot read it" in skipped[odd] and kept not in skipped
    assert len(skipped_warnings(caplog, odd)) == 1


def _curated_file(lake) -> tuple[str, bytes]:
    key = next(info.key for info in lake.list_objects(CURATED_PREFIX) if info.key.endswith(".parquet"))
    return key, lake.get_bytes(key)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _scrambled_pages(data: bytes) -> bytes:
    # The footer (and so the schema DuckDB binds to) stays valid; every column chunk before it is garbled.
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    return data[:4] + bytes((b * 7 + 3) & 0xFF for b in data[4:footer_start]) + data[footer_start:]


@pytest.mark.parametrize("damage", [_truncated, _scrambled_pages, lambda data: b"not parquet at all" * 3])
def test_a_corrupt_curated_file_is_skipped_with_a_warning(lake, caplog, damage):
    records = generate(seed=31)
    load_lake(lake, records)
    etl_execute({})
    key, data = _curated_file(lake)
    date = key.split("date=")[1].split("/")[0]
    bad_key = f"{CURATED_PREFIX}date={date}/part-damaged.parquet"
    lake.put_bytes(bad_key, damage(data))  # a copy of good rows: if it were read, they would count twice

    with caplog.at_level(logging.WARNING, logger="cloud.local.query"):
        answers = query_answers()
        put_raw(lake, [reading("dev-c", datetime.now(UTC))])  # a rebuild must not warn again
        activity = devices_activity()

    assert_answers(answers, records)
    assert activity["dev-c"]["readings_total"] == answers["totals"]["dev-c"] + 1
    assert set(get_backend("query").skipped_objects(lake)) == {bad_key}
    assert len(skipped_warnings(caplog, bad_key)) == 1
    lake.delete(bad_key)  # the operator's fix
    assert devices_activity() == activity and get_backend("query").skipped_objects(lake) == {}
