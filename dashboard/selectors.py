"""Reads behind the dashboard pages: models from the DB, readings from the lake.

The lake selectors (forecasts.selectors) query DuckDB/Athena and can fail while the lake is empty
or unreachable; the *_safe readers here turn that failure into (empty value, error message) so a
page shows an inline error instead of a 500. They are imported lazily so this module always imports.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from dashboard.units import NON_METRIC_FIELDS, metric_order, metrics_meta
from deployments.models import Endpoint, ProductionVariant
from devices.models import Device, DeviceCertificate
from forecasts.models import PipelineRun

logger = logging.getLogger(__name__)
ONLINE_WINDOW = timedelta(minutes=5)
READINGS_LIMIT = 5000


def iso(value: datetime | str | None) -> str | None:
    """Return an ISO 8601 UTC string for a datetime or ISO string (naive is UTC); None for anything else."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_safe(value: Any) -> Any:
    """Return value with NaN/inf replaced by None and datetimes by ISO strings (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _failure(what: str, exc: Exception) -> str:
    logger.warning("dashboard: %s failed: %s", what, exc, exc_info=True)
    return f"Could not read {what}: {exc}"


def readings_last_hour_safe() -> tuple[dict[str, int], str | None]:
    """Return (device name -> readings in the last hour, None), or ({}, error message) when the lake cannot answer."""
    try:
        from forecasts.selectors import devices_readings_last_hour

        return devices_readings_last_hour(), None
    except Exception as exc:
        return {}, _failure("the readings rate from the lake", exc)


def newest_reading_at_safe(device_name: str) -> tuple[datetime | None, str | None]:
    """Return (the device's newest reading time in the lake or None, None), or (None, error message)."""
    try:
        from forecasts.selectors import device_newest_reading_at

        return device_newest_reading_at(device_name), None
    except Exception as exc:
        return None, _failure("the newest reading from the lake", exc)


def is_online(last_seen: datetime | None, now: datetime | None = None) -> bool:
    """Return whether last_seen (Device.last_seen_at: the ingest's newest durable reading) is within ONLINE_WINDOW."""
    if last_seen is None:
        return False
    if timezone.is_naive(last_seen):
        last_seen = last_seen.replace(tzinfo=UTC)
    return (now or timezone.now()) - last_seen <= ONLINE_WINDOW


def device_rows() -> tuple[list[dict[str, Any]], str | None]:
    """Return ([{"device", "last_seen", "online", "readings_last_hour", "certificate"}], error) for every device.

    last_seen and online come from the registry (Device.last_seen_at, kept by the ingest), not the lake;
    last_seen is None for a device never seen live (e.g. only imported history). readings_last_hour is the
    one lake figure (a query over the current day's partitions only; 0 when the lake fails).
    error is the lake's failure message, else None.
    """
    rates, error = readings_last_hour_safe()
    active_certs = DeviceCertificate.objects.filter(status=DeviceCertificate.Status.ACTIVE)
    devices = Device.objects.prefetch_related(Prefetch("certificates", queryset=active_certs, to_attr="active_certs"))
    now = timezone.now()
    rows = []
    for device in devices:
        rows.append(
            {
                "device": device,
                "last_seen": device.last_seen_at,
                "online": is_online(device.last_seen_at, now),
                "readings_last_hour": rates.get(device.name, 0),
                "certificate": device.active_certs[0] if device.active_certs else None,
            }
        )
    return rows, error


def latest_readings_safe(names: list[str], count: int = 8) -> tuple[list[dict[str, Any]], str | None]:
    """Return ([{"device", "reading"}], error): the newest reading of up to count of the named devices."""
    latest = []
    try:
        from forecasts.selectors import readings_recent

        for name in names[:count]:
            rows = readings_recent(name, limit=1)
            if rows:
                latest.append({"device": name, "reading": rows[-1]})
    except Exception as exc:
        return latest, _failure("the newest readings", exc)
    latest.sort(key=lambda item: iso(item["reading"].get("timestamp")) or "", reverse=True)
    return latest, None


def pipeline_latest_by_kind() -> list[tuple[str, PipelineRun | None]]:
    """Return [(kind, newest run of that kind or None)] for crawl, etl, train, deploy in that order."""
    return [(kind, PipelineRun.objects.filter(kind=kind).first()) for kind in PipelineRun.Kind.values]


def endpoints_with_variants() -> QuerySet[Endpoint]:
    """Return all endpoints with their variants and the variants' models prefetched."""
    variants = ProductionVariant.objects.select_related("model")
    return Endpoint.objects.prefetch_related(Prefetch("variants", queryset=variants))


def pipeline_runs(limit: int = 30) -> list[PipelineRun]:
    """Return the newest runs, newest first."""
    return list(PipelineRun.objects.all()[:limit])


def run_as_dict(run: PipelineRun) -> dict[str, Any]:
    """Return the JSON the pipeline page draws a run's row from."""
    return {
        "id": run.pk,
        "kind": run.kind,
        "status": run.status,
        "progress": round(run.progress, 1),
        "message": run.message,
        "error": run.error,
        "log": run.log,
        "result": json_safe(run.result),
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_s": None if run.duration_s is None else round(run.duration_s, 1),
        "is_finished": run.is_finished,
    }


def reading_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """Return the numeric measurement fields present in rows, in display order."""
    found = set()
    for row in rows:
        for key, value in row.items():
            if key not in NON_METRIC_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
                found.add(key)
    return metric_order(sorted(found))


def _bucket_freq(minutes: int, max_points: int = 1500) -> str:
    """Return the smallest of 1/5/10/15/30/60 min that keeps the window under max_points buckets."""
    for step in (1, 5, 10, 15, 30):
        if minutes / step <= max_points:
            return f"{step}min"
    return "h"


def _resampled_values(device_name: str, minutes: int, order: list[str]) -> tuple[list[str], dict[str, list]]:
    """Return (bucket timestamps, {metric: mean per bucket}) for the window, via the lake's resampling query."""
    from forecasts.selectors import series_resampled

    start, freq = timezone.now() - timedelta(minutes=minutes), _bucket_freq(minutes)
    per_metric = {}
    for name in order:
        frame = series_resampled(name, [device_name], freq, start=start)
        pairs = zip(frame["ts"], frame["value"], strict=True)
        per_metric[name] = {iso(ts.to_pydatetime()): value for ts, value in pairs}
    stamps = sorted({stamp for values in per_metric.values() for stamp in values})
    return stamps, {name: [per_metric[name].get(stamp) for stamp in stamps] for name in order}


def device_readings_series(device_name: str, minutes: int, limit: int | None = None) -> dict[str, Any]:
    """Return the device's readings of the last `minutes` as chart series (JSON-safe).

    {"device", "minutes", "count", "resampled" (bucket size or None), "metrics": {name: {"label", "unit"}},
     "order": [...], "timestamps": [iso...], "values": {metric: [...]}, "latest": {"timestamp", "values"} | None,
     "aggregates": {metric: {"min", "max", "mean", "count"}}}.
    A window holding more than `limit` (default READINGS_LIMIT) readings comes back as per-bucket
    means, so 7 days still fit one chart.
    Raises whatever the lake selectors raise.
    """
    from forecasts.selectors import readings_recent

    limit = limit or READINGS_LIMIT
    rows = readings_recent(device_name, start=timezone.now() - timedelta(minutes=minutes), limit=limit)
    order = reading_metrics(rows)
    latest = None
    if rows:
        last = rows[-1]
        latest = {"timestamp": iso(last.get("timestamp")), "values": {name: last.get(name) for name in order}}
    stamps = [iso(row.get("timestamp")) for row in rows]
    values = {name: [row.get(name) for row in rows] for name in order}
    resampled = _bucket_freq(minutes) if len(rows) >= limit else None
    if resampled:
        stamps, values = _resampled_values(device_name, minutes, order)
    stats = aggregates(values)  # over the raw readings, or the bucket means when resampled
    series = {
        "device": device_name,
        "minutes": minutes,
        "count": len(rows),
        "resampled": resampled,
        "metrics": metrics_meta(order),
        "order": order,
        "timestamps": stamps,
        "values": values,
        "latest": latest,
        "aggregates": stats,
    }
    return json_safe(series)


def forecast_metrics_safe() -> tuple[list[str], str | None]:
    """Return (the forecastable metrics, error); falls back to the standard five when the lake fails."""
    from dashboard.units import DEFAULT_METRICS

    try:
        from forecasts.selectors import telemetry_metrics

        metrics = telemetry_metrics()
    except Exception as exc:
        return DEFAULT_METRICS, _failure("the metric list", exc)
    return metric_order(list(metrics)) or DEFAULT_METRICS, None


def deployed_model_count() -> int:
    """Return how many production variants exist (0 means nothing can answer a forecast yet)."""
    return ProductionVariant.objects.count()


def deployed_metric() -> str | None:
    """Return the metric the most recently deployed model forecasts, None when nothing is deployed."""
    variant = ProductionVariant.objects.select_related("model").order_by("-model__created_at").first()
    return variant.model.metric if variant else None


def readings_per_minute(rows: list[dict[str, Any]]) -> float:
    """Return the fleet's readings per minute, averaged over the last hour (from device_rows' readings_last_hour)."""
    return sum(row["readings_last_hour"] for row in rows) / 60


def newest_arrival(rows: list[dict[str, Any]]) -> datetime | None:
    """Return when the newest live reading reached the lake across devices (registry; None before any)."""
    return max((row["last_seen"] for row in rows if row["last_seen"] is not None), default=None)


RAW_PREFIX = "raw/"
# Firehose names each raw object after the moment its buffer opened: ...-YYYY-MM-DD-HH-MM-SS-<uuid>.
RAW_KEY_TIME = re.compile(r"-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-[0-9a-fA-F-]{36}$")
RAW_DAYS_LOOKED_AT = 2


def newest_raw_object_at(now: datetime | None = None) -> datetime | None:
    """Return the time in the newest raw object's key (today's or yesterday's partitions); None when there is none.

    Only the last RAW_DAYS_LOOKED_AT days' prefixes are listed, so that a years-old raw zone is not listed on
    every page view. Raises what the lake raises.
    """
    from cloud.backends import get_backend

    lake, now = get_backend("lake"), now or timezone.now()
    for back in range(RAW_DAYS_LOOKED_AT):
        day = now - timedelta(days=back)
        listed = lake.list_objects(f"{RAW_PREFIX}{day:year=%Y/month=%m/day=%d/}")
        found = [RAW_KEY_TIME.search(info.key) for info in listed]
        stamps = [datetime.strptime(match[1], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=UTC) for match in found if match]
        if stamps:
            return max(stamps)
    return None


def ingest_lag(latest: list[dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
    """Return {"object_at", "since_object_s", "transport_s", "error"} for the overview's ingest line.

    since_object_s: seconds since the newest raw object's key time (when its buffer opened: it landed within
    them); transport_s: the newest reading's arrival minus its own timestamp (device to lake); each None when
    unknown. latest is latest_readings_safe()'s list, newest first.
    """
    now = now or timezone.now()
    lag: dict[str, Any] = {"object_at": None, "since_object_s": None, "transport_s": None, "error": None}
    try:
        lag["object_at"] = newest_raw_object_at(now)
    except Exception as exc:
        lag["error"] = _failure("the raw zone", exc)
    if lag["object_at"] is not None:
        lag["since_object_s"] = max(0.0, (now - lag["object_at"]).total_seconds())
    reading = latest[0]["reading"] if latest else {}
    sent, arrived = _aware(reading.get("timestamp")), _aware(reading.get("received_at"))
    if sent is not None and arrived is not None:
        lag["transport_s"] = (arrived - sent).total_seconds()
    return lag


def _aware(value: Any) -> datetime | None:
    stamp = iso(value)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def aggregates(values: dict[str, list]) -> dict[str, dict[str, float | None]]:
    """Return {metric: {"min", "max", "mean", "count"}} over each series' non-missing values."""
    out = {}
    for name, series in values.items():
        present = [v for v in series if isinstance(v, int | float) and math.isfinite(v)]
        if present:
            out[name] = {"min": min(present), "max": max(present), "mean": sum(present) / len(present)}
        else:
            out[name] = {"min": None, "max": None, "mean": None}
        out[name]["count"] = len(present)
    return out


def device_map_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return [{"name", "lat", "lon", "online", "url"}] of the devices that have a location (for the map)."""
    from django.urls import reverse

    return [
        {
            "name": row["device"].name,
            "lat": row["device"].latitude,
            "lon": row["device"].longitude,
            "online": row["online"],
            "url": reverse("dashboard:device", args=[row["device"].pk]),
        }
        for row in rows
        if row["device"].latitude is not None and row["device"].longitude is not None
    ]


def schedule_intervals() -> dict[str, Any]:
    """Return the pipeline schedule in force: {"crawl_interval_s", "train_interval_s", "cycle_s" (beat's period),
    "crawl_overridden", "train_overridden", "updated_at", "updated_by"}; overrides from PipelineSchedule, else settings.
    """
    from django.conf import settings

    from dashboard.models import PipelineSchedule

    row = PipelineSchedule.objects.select_related("updated_by").filter(pk=1).first()
    crawl, train = (row.crawl_interval_s, row.train_interval_s) if row else (None, None)
    return {
        "crawl_interval_s": crawl or settings.PIPELINE_INTERVAL_S,
        "train_interval_s": train or settings.TRAIN_INTERVAL_S,
        "cycle_s": settings.PIPELINE_INTERVAL_S,
        "crawl_overridden": crawl is not None,
        "train_overridden": train is not None,
        "updated_at": row.updated_at if row else None,
        "updated_by": row.updated_by if row else None,
    }


ERRORS_PREFIX = "errors/"
ERROR_OBJECTS_READ = 20  # per error type: the newest objects are read for record counts and samples


def _error_line(line: str) -> dict[str, str]:
    """Return {"reason", "record"} of one errors-zone line (Firehose error document or ETL reject)."""
    import base64
    import json

    try:
        doc = json.loads(line)
    except ValueError:
        return {"reason": "unreadable error line", "record": line[:2000]}
    if not isinstance(doc, dict):
        return {"reason": "", "record": line[:2000]}
    reason = doc.get("errorMessage") or doc.get("reason") or doc.get("errorCode") or ""
    if "rawData" in doc:  # Firehose's error output keeps the payload base64-encoded and whole
        try:
            record = base64.b64decode(doc["rawData"]).decode("utf-8", "replace")
        except ValueError:
            record = str(doc["rawData"])
    else:
        raw = doc.get("record", doc)
        record = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)
    return {"reason": str(reason), "record": record[:2000]}


def _error_type_summary(lake: Any, error_type: str, objects: list) -> dict[str, Any]:
    """Return one error type's row: objects, bytes, records in the newest objects, newest reason and record."""
    newest = sorted(objects, key=lambda info: info.key)[-ERROR_OBJECTS_READ:]
    lines: list[str] = []
    for info in newest:
        lines += [line for line in lake.get_bytes(info.key).decode("utf-8", "replace").splitlines() if line.strip()]
    samples = [_error_line(line) for line in lines[-3:]][::-1]  # newest first
    return {
        "type": error_type,
        "objects": len(objects),
        "bytes": sum(info.size for info in objects),
        "records": len(lines),
        "records_exact": len(newest) == len(objects),
        "newest_key": newest[-1].key if newest else "",
        "reason": samples[0]["reason"] if samples else "",
        "samples": samples,
    }


def errors_zone_summary() -> tuple[list[dict[str, Any]], str | None]:
    """Return ([per error type, see _error_type_summary], error) for the lake's errors/ prefix, by type name.

    Object keys are errors/<type>/year=.../...; the newest ERROR_OBJECTS_READ objects of each type are read,
    so "records" is exact only where "records_exact" is True. A lake that cannot answer gives ([], message).
    """
    from cloud.backends import get_backend

    try:
        lake = get_backend("lake")
        by_type: dict[str, list] = {}
        for info in lake.list_objects(ERRORS_PREFIX):
            error_type = info.key[len(ERRORS_PREFIX) :].split("/", 1)[0] or "(none)"
            by_type.setdefault(error_type, []).append(info)
        return [_error_type_summary(lake, name, by_type[name]) for name in sorted(by_type)], None
    except Exception as exc:
        return [], _failure("the errors zone", exc)
