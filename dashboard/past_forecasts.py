"""Reads behind the forecasts page's "Past forecasts and what happened": the recorded forecasts
(deployments.models.ForecastRecord) of one device and metric, the actuals the lake holds over their horizons,
and the accuracy each model/variant achieved on them (scored as deployments.accuracy scores a model).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.utils import timezone

from cloud.deepar.metrics import mean_weighted_quantile_loss
from dashboard.selectors import iso, json_safe
from deployments.accuracy import ACCURACY_QUANTILES
from deployments.models import ForecastRecord

SHOWN_RECORDS = 4  # drawn on the chart: more overlapping fans stop being readable
SCORED_LOOKBACK = timedelta(days=7)  # forecasts made this recently count towards the accuracy table
SCORED_RECORDS = 200


def past_records(device: str, metric: str, now: datetime | None = None) -> list[ForecastRecord]:
    """Return the device's forecasts of metric made within SCORED_LOOKBACK whose first point is past, newest
    first, one per (variant, model, origin): reloading the page re-records the same forecast."""
    now = now or timezone.now()
    rows = ForecastRecord.objects.filter(
        device=device, metric=metric, first_target__lte=now, created_at__gte=now - SCORED_LOOKBACK
    ).order_by("-created_at", "-pk")[:SCORED_RECORDS]
    seen: set[tuple[str, str, datetime]] = set()
    records = []
    for record in rows:
        key = (record.variant, record.model_name, record.origin)
        if key not in seen:
            seen.add(key)
            records.append(record)
    return records


def _actuals(device: str, metric: str, records: list[ForecastRecord]) -> dict[str, pd.Series]:
    """Return {freq: the lake's bucket means of the device's metric over those records' horizons}.

    Raises BackendError when the lake query fails."""
    from forecasts.selectors import series_resampled

    out = {}
    for freq in sorted({record.freq for record in records}):
        rows = [record for record in records if record.freq == freq]
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
        start, end = min(r.first_target for r in rows), max(r.last_target for r in rows) + step
        frame = series_resampled(metric, [device], freq, start, end)
        out[freq] = pd.Series(frame["value"].to_numpy(dtype=float), index=pd.DatetimeIndex(frame["ts"]))
    return out


def _aligned(record: ForecastRecord, actuals: pd.Series) -> list[float | None]:
    """Return the actual of each of the record's points (None where none has arrived)."""
    values = actuals.reindex(pd.to_datetime(record.timestamps, utc=True)).to_numpy(dtype=float)
    return [None if np.isnan(value) else float(value) for value in values]


def _score(points: list[tuple[float, float, dict[str, float]]]) -> dict[str, Any]:
    """Return {"points", "wql", "mape"} over (actual, mean, {q: forecast}) points (None before any)."""
    if not points:
        return {"points": 0, "wql": None, "mape": None}
    actual = np.asarray([p[0] for p in points], float)
    mean = np.asarray([p[1] for p in points], float)
    quantiles = {float(q): np.asarray([p[2][q] for p in points], float) for q in ACCURACY_QUANTILES}
    nonzero = actual != 0
    mape = float(np.mean(np.abs((actual[nonzero] - mean[nonzero]) / actual[nonzero]))) if nonzero.any() else None
    return {"points": len(points), "wql": mean_weighted_quantile_loss(actual, quantiles), "mape": mape}


def _accuracy(records: list[ForecastRecord], aligned: dict[int, list[float | None]]) -> list[dict[str, Any]]:
    """Return [{"variant", "model", "records", "points", "wql", "mape"}] per (variant, model), newest first."""
    groups: dict[tuple[str, str], list[ForecastRecord]] = {}
    for record in records:
        groups.setdefault((record.variant, record.model_name), []).append(record)
    table = []
    for (variant, model), rows in groups.items():
        points = []
        for record in rows:
            if not all(q in record.quantiles for q in ACCURACY_QUANTILES):
                continue  # scored like for like only: deployments.accuracy skips these too
            for index, value in enumerate(aligned[record.pk]):
                if value is not None and index < len(record.mean):
                    forecast = {q: record.quantiles[q][index] for q in ACCURACY_QUANTILES}
                    points.append((value, record.mean[index], forecast))
        table.append({"variant": variant, "model": model, "records": len(rows), **_score(points)})
    return table


def _record_dict(record: ForecastRecord, actual: list[float | None]) -> dict[str, Any]:
    quantiles = record.quantiles
    return {
        "id": record.pk,
        "variant": record.variant,
        "model": record.model_name,
        "created_at": iso(record.created_at),
        "origin": iso(record.origin),
        "timestamps": record.timestamps,
        "p10": quantiles.get("0.1"),
        "p50": quantiles.get("0.5"),
        "p90": quantiles.get("0.9"),
        "mean": record.mean,
        "matured": sum(value is not None for value in actual),
    }


def past_forecasts(device: str, metric: str, variant: str | None = None) -> dict[str, Any]:
    """Return the device's past forecasts of metric and what happened (JSON-safe):

    {"device", "metric", "records": [newest SHOWN_RECORDS with a matured point, of `variant` (all when None),
     see _record_dict],
     "actuals": {"timestamps", "values"} over the shown records' horizons,
     "accuracy": [{"variant", "model", "records", "points", "wql", "mape"}] over every recent record}.
    Raises BackendError when the lake query fails.
    """
    records = past_records(device, metric)
    actuals = _actuals(device, metric, records) if records else {}
    aligned = {record.pk: _aligned(record, actuals[record.freq]) for record in records}
    matured = [record for record in records if any(value is not None for value in aligned[record.pk])]
    shown = [record for record in matured if not variant or record.variant == variant][:SHOWN_RECORDS]
    stamps: dict[str, float | None] = {}
    for record in shown:
        stamps.update(zip(record.timestamps, aligned[record.pk], strict=False))
    present = sorted((stamp, value) for stamp, value in stamps.items() if value is not None)
    data = {
        "device": device,
        "metric": metric,
        "records": [_record_dict(record, aligned[record.pk]) for record in shown],
        "actuals": {"timestamps": [s for s, _ in present], "values": [v for _, v in present]},
        "accuracy": _accuracy(records, aligned),
    }
    return json_safe(data)


def forecast_variants(endpoint_name: str) -> list[dict[str, Any]]:
    """Return [{"name", "model", "weight"}] of the endpoint's variants that answer clients (no shadows)."""
    from deployments.models import ProductionVariant

    variants = ProductionVariant.objects.filter(endpoint__name=endpoint_name, shadow=False).select_related("model")
    return [{"name": v.name, "model": v.model.name, "weight": v.weight} for v in variants.order_by("name")]
