"""Reads of telemetry from the lake, all through the configured query backend (DuckDB or Athena).

Every read uses `telemetry_live` (curated data plus the raw tail), so a reading is visible within
seconds of landing in the lake, before any ETL run.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from django.db.models import QuerySet
from django.utils import timezone

from cloud.backends import get_backend
from cloud.interfaces import QueryResult
from forecasts.models import CatalogTable

# The telemetry contract's metrics (DESIGN.md), used until the crawler has seen the lake.
DEFAULT_METRICS = ["ozone", "particulate_matter", "carbon_monoxide", "sulfur_dioxide", "nitrogen_dioxide"]
# Numeric fields that locate a reading rather than measure something.
NON_METRIC_NUMERIC = {"latitude", "longitude", "received_at"}
RAW_TABLE = ("iotcast", "telemetry_raw")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _query(sql: str, params: list[Any]) -> QueryResult:
    return get_backend("query").execute(get_backend("lake"), sql, params)


def _date_bounds(start: datetime, end: datetime) -> list[str]:
    # The curated zone is partitioned by UTC date: bounding `date` lets the engine skip partitions.
    return [start.astimezone(UTC).strftime("%Y-%m-%d"), end.astimezone(UTC).strftime("%Y-%m-%d")]


def telemetry_metrics() -> list[str]:
    """Return the numeric metric columns: the crawled table's doubles, else the contract's defaults."""
    table = CatalogTable.objects.filter(database=RAW_TABLE[0], name=RAW_TABLE[1]).first()
    if table is None:
        return list(DEFAULT_METRICS)
    found = {
        column["name"]
        for column in table.columns
        if column.get("type") == "double" and column["name"] not in NON_METRIC_NUMERIC
    }
    found = {name for name in found if _IDENTIFIER.match(name)}
    if not found:
        return list(DEFAULT_METRICS)
    return [name for name in DEFAULT_METRICS if name in found] + sorted(found - set(DEFAULT_METRICS))


def _check_metrics(metrics: list[str]) -> None:
    """Raise ValueError naming the known metrics when any of metrics is unknown."""
    known = telemetry_metrics()
    unknown = [name for name in metrics if name not in known]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known metrics: {', '.join(known)}")


def _reading_window(
    metrics: list[str] | None, start: datetime | None, end: datetime | None
) -> tuple[list[str], datetime, datetime]:
    """Return (metrics, start, end) with the defaults (all metrics, the last 24 h); raise ValueError when invalid."""
    metrics = list(metrics) if metrics else telemetry_metrics()
    _check_metrics(metrics)
    end = end or timezone.now()
    start = start or end - timedelta(hours=24)
    if start > end:
        raise ValueError("start must not be after end")
    return metrics, start, end


def readings_recent(
    device_name: str,
    start: datetime | None = None,
    end: datetime | None = None,
    metrics: list[str] | None = None,
    limit: int = 1000,
) -> list[dict]:
    """Return the device's newest readings in [start, end] (default: the last 24 h), newest last.

    Each reading is {"timestamp", "received_at", "message_id", <metric>: float | None, ...}.
    Raises ValueError for an unknown metric or a start after end; BackendError when the query fails.
    """
    metrics, start, end = _reading_window(metrics, start, end)
    result = _query(
        'SELECT * FROM telemetry_live WHERE device_id = ? AND "timestamp" >= ? AND "timestamp" <= ? '
        'AND date BETWEEN ? AND ? ORDER BY "timestamp" DESC, message_id LIMIT ?',
        [device_name, start, end, *_date_bounds(start, end), int(limit)],
    )
    readings = [
        {
            "timestamp": row["timestamp"],
            "received_at": row.get("received_at"),
            "message_id": row["message_id"],
            **{name: row.get(name) for name in metrics},
        }
        for row in result.records()
    ]
    readings.reverse()
    return readings


EXPORT_MAX_ROWS = 5_000_000


def readings_export(
    device_name: str, start: datetime | None, end: datetime | None, metrics: list[str] | None = None
) -> QueryResult:
    """Return the device's readings in [start, end] (default: the last 24 h), oldest first, for export.

    Columns: timestamp, received_at, message_id and the metrics (default: all). At most EXPORT_MAX_ROWS rows.
    Raises ValueError for an unknown metric or a start after end; BackendError when the query fails.
    """
    metrics, start, end = _reading_window(metrics, start, end)
    columns = ", ".join(['"timestamp"', "received_at", "message_id", *(f'"{name}"' for name in metrics)])
    return _query(
        f'SELECT {columns} FROM telemetry_live WHERE device_id = ? AND "timestamp" >= ? AND "timestamp" <= ? '
        'AND date BETWEEN ? AND ? ORDER BY "timestamp", message_id LIMIT ?',
        [device_name, start, end, *_date_bounds(start, end), EXPORT_MAX_ROWS],
    )


def _freq_seconds(freq: str) -> int:
    """Return a fixed pandas frequency ("h", "5min", "D") in whole seconds; raise ValueError otherwise."""
    try:
        seconds = pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).total_seconds()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unsupported frequency {freq!r}: use a fixed one such as 'min', '5min', 'h' or 'D'") from exc
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"unsupported frequency {freq!r}: it must be a whole number of seconds")
    return int(seconds)


def series_resampled(
    metric: str,
    devices: list[str] | None,
    freq: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Return the mean of metric per device per freq bucket as columns [device_id, ts (UTC), value].

    devices None means all devices; start/end None mean unbounded. Buckets without data are absent.
    Raises ValueError for an unknown metric or frequency; BackendError when the query fails.
    """
    _check_metrics([metric])
    seconds = _freq_seconds(freq)
    column = '"' + metric + '"'
    where, params = [f"{column} IS NOT NULL"], [seconds, seconds]
    if devices is not None:
        if not devices:
            return _series_frame([])
        where.append(f"device_id IN ({', '.join('?' for _ in devices)})")
        params += list(devices)
    if start is not None:
        where += ['"timestamp" >= ?', "date >= ?"]
        params += [start, start.astimezone(UTC).strftime("%Y-%m-%d")]
    if end is not None:
        where += ['"timestamp" <= ?', "date <= ?"]
        params += [end, end.astimezone(UTC).strftime("%Y-%m-%d")]
    result = _query(
        f'SELECT device_id, to_timestamp(floor(epoch("timestamp") / ?) * ?) AS ts, avg({column}) AS value '
        f"FROM telemetry_live WHERE {' AND '.join(where)} GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    )
    return _series_frame(result.rows)


def _series_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["device_id", "ts", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["value"] = frame["value"].astype("float64")
    return frame


AGGREGATE_BUCKETS = ("minute", "hour", "day")
AGGREGATE_STATS = ("min", "max", "mean", "p95")
AGGREGATE_MAX_BUCKETS = 20_000


def _aggregate_columns(metrics: list[str]) -> str:
    """Return the SELECT list of min, max, mean and p95 per metric, aliased <metric>__<stat>."""
    parts = []
    for name in metrics:
        column = '"' + name + '"'
        parts += [
            f'min({column}) AS "{name}__min"',
            f'max({column}) AS "{name}__max"',
            f'avg({column}) AS "{name}__mean"',
            f'quantile_cont({column}, 0.95) AS "{name}__p95"',
        ]
    return ", ".join(parts)


def readings_aggregated(
    device_name: str,
    metrics: list[str] | None,
    bucket: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict]:
    """Return one row per UTC-aligned bucket ("minute", "hour" or "day") of the device's readings in [start, end].

    Each row is {"bucket": datetime, "count": int, <metric>: {"min", "max", "mean", "p95"}} (values None when the
    metric has no reading in the bucket), oldest first; buckets without readings are absent. Defaults: all metrics,
    the last 24 h. Raises ValueError for an unknown bucket or metric or a start after end; BackendError when the
    query fails.
    """
    if bucket not in AGGREGATE_BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; use one of {', '.join(AGGREGATE_BUCKETS)}")
    metrics, start, end = _reading_window(metrics, start, end)
    result = _query(
        # bucket is one of AGGREGATE_BUCKETS and the session runs in UTC, so buckets align to UTC.
        f"SELECT date_trunc('{bucket}', \"timestamp\") AS bucket, count(*) AS count, {_aggregate_columns(metrics)} "
        'FROM telemetry_live WHERE device_id = ? AND "timestamp" >= ? AND "timestamp" <= ? AND date BETWEEN ? AND ? '
        "GROUP BY 1 ORDER BY 1 LIMIT ?",
        [device_name, start, end, *_date_bounds(start, end), AGGREGATE_MAX_BUCKETS],
    )
    return [
        {
            "bucket": row["bucket"],
            "count": row["count"],
            **{name: {stat: row[f"{name}__{stat}"] for stat in AGGREGATE_STATS} for name in metrics},
        }
        for row in result.records()
    ]


def devices_activity() -> dict[str, dict]:
    """Return device_id -> {"last_seen", "readings_last_hour", "readings_total"} over all telemetry.

    last_seen is the latest arrival time (the reading's own timestamp when arrival is unknown). It scans the
    whole lake: pages read last seen from the registry (Device.last_seen_at) and the rate from
    devices_readings_last_hour instead. Raises BackendError when the query fails.
    """
    seen = 'coalesce(received_at, "timestamp")'
    result = _query(
        f"SELECT device_id, max({seen}) AS last_seen, count(*) FILTER (WHERE {seen} >= ?) AS readings_last_hour, "
        "count(*) AS readings_total FROM telemetry_live GROUP BY device_id ORDER BY device_id",
        [timezone.now() - timedelta(hours=1)],
    )
    return {row.pop("device_id"): row for row in result.records()}


def devices_readings_last_hour(now: datetime | None = None) -> dict[str, int]:
    """Return device_id -> how many readings timestamped in the hour before now (default: now) the lake holds.

    Bounded by the reading's own timestamp and its date partition, so it reads the current day's
    partitions (two around midnight), never the whole lake. Devices with none are absent.
    Raises BackendError when the query fails.
    """
    end = now or timezone.now()
    start = end - timedelta(hours=1)
    result = _query(
        'SELECT device_id, count(*) AS readings FROM telemetry_live WHERE "timestamp" >= ? AND "timestamp" <= ? '
        "AND date BETWEEN ? AND ? GROUP BY device_id",
        [start, end, *_date_bounds(start, end)],
    )
    return {row[0]: row[1] for row in result.rows}


def device_newest_reading_at(device_name: str) -> datetime | None:
    """Return the newest reading's own timestamp of the device anywhere in the lake; None when it has none.

    Unbounded in time (it finds imported history too), so it is for one device's page, not a fleet list.
    Raises BackendError when the query fails.
    """
    result = _query('SELECT max("timestamp") FROM telemetry_live WHERE device_id = ?', [device_name])
    return result.rows[0][0] if result.rows else None


def catalog_tables() -> QuerySet[CatalogTable]:
    """Return the crawled tables, ordered by database and name."""
    return CatalogTable.objects.order_by("database", "name")
