"""The DuckDB query engine and the telemetry selectors over a real folder lake."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from django.utils import timezone

from cloud.interfaces import BackendError
from cloud.local.duckdb_telemetry import BOOKMARK_KEY
from cloud.local.etl import DuckDBEtlJob
from cloud.local.query import DuckDBQuery, QueryRejected
from forecasts.selectors import devices_activity, readings_recent, series_resampled
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM telemetry",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; SELECT 2",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "ATTACH '/tmp/other.db'",
    ],
)
def test_engine_rejects_anything_but_one_select(lake, sql):
    with pytest.raises(QueryRejected):
        DuckDBQuery().execute(lake, sql)


def test_engine_cannot_read_files_outside_its_tables(lake):
    with pytest.raises(BackendError, match="disabled"):
        DuckDBQuery().execute(lake, "SELECT * FROM read_csv('/etc/hostname')")


def test_empty_lake_has_both_tables_with_zero_rows(lake):
    engine = DuckDBQuery()
    for table in ("telemetry", "telemetry_live"):
        result = engine.execute(lake, f"SELECT message_id, timestamp, ozone, date FROM {table}")
        assert result.rows == [] and result.columns == ["message_id", "timestamp", "ozone", "date"]
    assert devices_activity() == {}
    assert readings_recent("nobody") == []


def test_with_query_params_and_scan_figures(lake):
    put_raw(lake, [reading("dev-a", timezone.now(), ozone=7.0)])
    result = DuckDBQuery().execute(
        lake, "WITH r AS (SELECT * FROM telemetry_live) SELECT ozone FROM r WHERE device_id = ?", ["dev-a"]
    )
    assert result.rows == [(7.0,)]
    assert result.bytes_scanned > 0 and result.elapsed_ms > 0


def test_readings_visible_from_the_raw_tail_then_from_curated_without_duplicates(lake):
    now = timezone.now()
    put_raw(lake, [reading("dev-a", now - timedelta(minutes=m), ozone=float(m)) for m in (3, 2, 1)])
    put_raw(lake, [reading("dev-b", now)])

    before = readings_recent("dev-a")
    DuckDBEtlJob().run(lake)
    after = readings_recent("dev-a")
    lake.delete(BOOKMARK_KEY)  # the raw tail now overlaps curated data completely
    overlapping = readings_recent("dev-a")

    assert [row["ozone"] for row in before] == [3.0, 2.0, 1.0]  # newest last
    assert before[0]["timestamp"] < before[-1]["timestamp"]
    assert before == after == overlapping
    assert set(before[0]) == {
        "timestamp",
        "received_at",
        "message_id",
        "ozone",
        "particulate_matter",
        "carbon_monoxide",
        "sulfur_dioxide",
        "nitrogen_dioxide",
    }


def test_readings_recent_window_metrics_and_limit(lake):
    now = timezone.now()
    put_raw(lake, [reading("dev-a", now - timedelta(hours=h), ozone=float(h)) for h in (30, 3, 2, 1)])
    DuckDBEtlJob().run(lake)

    assert [row["ozone"] for row in readings_recent("dev-a")] == [3.0, 2.0, 1.0]  # 30 h ago is outside 24 h
    assert [row["ozone"] for row in readings_recent("dev-a", limit=2)] == [2.0, 1.0]
    window = readings_recent("dev-a", start=now - timedelta(hours=31), end=now - timedelta(hours=2), metrics=["ozone"])
    assert [row["ozone"] for row in window] == [30.0, 3.0, 2.0]
    assert set(window[0]) == {"timestamp", "received_at", "message_id", "ozone"}
    with pytest.raises(ValueError, match="known metrics: ozone"):
        readings_recent("dev-a", metrics=["not_a_metric"])


def test_series_resampled_means_per_hour(lake):
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    put_raw(lake, [reading("dev-a", start + timedelta(minutes=m), ozone=float(m)) for m in (0, 30, 60, 200)])
    DuckDBEtlJob().run(lake)
    put_raw(lake, [reading("dev-b", start + timedelta(minutes=10), ozone=5.0)])  # still in the raw tail

    frame = series_resampled("ozone", None, "h")
    only_a = series_resampled("ozone", ["dev-a"], "h", start=start + timedelta(minutes=45))

    assert list(frame.columns) == ["device_id", "ts", "value"]
    assert str(frame["ts"].dt.tz) == "UTC"
    expected = [
        ("dev-a", pd.Timestamp("2026-11-27 10:00", tz="UTC"), 15.0),
        ("dev-a", pd.Timestamp("2026-11-27 11:00", tz="UTC"), 60.0),
        ("dev-a", pd.Timestamp("2026-11-27 13:00", tz="UTC"), 200.0),  # the empty 12:00 bucket is absent
        ("dev-b", pd.Timestamp("2026-11-27 10:00", tz="UTC"), 5.0),
    ]
    assert list(frame.itertuples(index=False, name=None)) == expected
    assert list(only_a["value"]) == [60.0, 200.0]
    with pytest.raises(ValueError, match="frequency"):
        series_resampled("ozone", None, "MS")


def test_devices_activity_counts(lake):
    now = timezone.now()
    put_raw(lake, [reading("dev-a", now - timedelta(minutes=m)) for m in (5, 90, 200)])
    put_raw(lake, [reading("dev-b", now - timedelta(minutes=10))])

    activity = devices_activity()

    assert set(activity) == {"dev-a", "dev-b"}
    assert activity["dev-a"]["readings_total"] == 3 and activity["dev-a"]["readings_last_hour"] == 1
    assert activity["dev-b"]["readings_last_hour"] == 1
    assert abs(activity["dev-a"]["last_seen"] - (now - timedelta(minutes=5))) < timedelta(seconds=1)
