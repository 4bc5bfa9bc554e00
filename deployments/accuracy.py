"""Forecast accuracy against actuals as they arrive: record what a variant forecast, score it once the lake has
the actual values, and raise the rollout alarm when a new model forecasts worse than the one it replaces.

A forecast point has matured when the lake holds an actual for its device, metric and time bucket. The score is
SageMaker's mean_wQuantileLoss over ACCURACY_QUANTILES (and MAPE of the mean) over every matured point of a
model's forecasts on an endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.utils import timezone

from cloud.deepar.metrics import mean_weighted_quantile_loss
from deployments.models import ForecastRecord

# Every recorded forecast carries these quantiles, whatever the client asked for, so models compare like for like.
ACCURACY_QUANTILES = ("0.1", "0.5", "0.9")
# Rollout alarm defaults: the new model's wQL may be at most 25% above the old one's, once both have 24
# matured points; max_wql (absolute, off by default) needs no baseline.
DEFAULT_ACCURACY_ALARMS: dict[str, Any] = {"max_wql_increase": 0.25, "min_matured_points": 24, "max_wql": None}
BASELINE_LOOKBACK = timedelta(days=7)  # the old model's forecasts from this long before the rollout count too


@dataclass(frozen=True)
class Accuracy:
    model_name: str
    records: int
    points: int  # matured forecast points
    wql: float | None  # mean_wQuantileLoss over ACCURACY_QUANTILES
    mape: float | None  # mean absolute percentage error of the mean forecast (actuals of 0 left out)

    def __str__(self) -> str:
        if not self.points:
            return f"{self.model_name}: no matured points yet"
        mape = f", MAPE {self.mape:.1%}" if self.mape is not None else ""
        return f"{self.model_name}: wQL {self.wql:.3f}{mape} over {self.points} points"


def forecast_record_create(
    endpoint_name: str, variant: str, model_name: str, device: str, metric: str, freq: str,
    timestamps: list[str], mean: list[float], quantiles: dict[str, list[float]],
) -> ForecastRecord:  # fmt: skip
    """Store a forecast a variant served (timestamps ISO, one per point); return the row."""
    stamps = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    step = pd.tseries.frequencies.to_offset(freq)
    return ForecastRecord.objects.create(
        endpoint_name=endpoint_name, variant=variant, model_name=model_name, device=device, metric=metric,
        freq=freq, origin=(stamps[0] - step).to_pydatetime(), first_target=stamps[0].to_pydatetime(),
        last_target=stamps[-1].to_pydatetime(), timestamps=list(timestamps), mean=list(mean),
        quantiles={q: list(values) for q, values in quantiles.items()},
    )  # fmt: skip


def forecast_records_prune(retention_days: int, now: datetime | None = None) -> int:
    """Delete the forecasts created more than retention_days ago; return how many rows went.

    Accuracy, rollout alarms and the past-forecasts page read only recent records (BASELINE_LOOKBACK and
    the page's window), so older rows only grow the table.
    """
    cutoff = (now or timezone.now()) - timedelta(days=retention_days)
    deleted, _ = ForecastRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _actuals(records: list[ForecastRecord]) -> dict[tuple[str, str, str], pd.Series]:
    """Return the lake's actuals per (metric, freq, device) over the records' forecast windows."""
    from forecasts.selectors import series_resampled

    out: dict[tuple[str, str, str], pd.Series] = {}
    groups: dict[tuple[str, str], list[ForecastRecord]] = {}
    for record in records:
        groups.setdefault((record.metric, record.freq), []).append(record)
    for (metric, freq), rows in groups.items():
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
        start = min(r.first_target for r in rows)
        end = max(r.last_target for r in rows) + step  # the last bucket's readings come after its start
        frame = series_resampled(metric, sorted({r.device for r in rows}), freq, start, end)
        for device, values in frame.groupby("device_id"):
            out[(metric, freq, str(device))] = pd.Series(values["value"].to_numpy(), index=values["ts"])
    return out


def _matured(records: list[ForecastRecord]) -> tuple[np.ndarray, np.ndarray, dict[float, np.ndarray]]:
    """Return (actual, mean, {q: forecast}) over every point whose actual is in the lake."""
    actuals = _actuals(records)
    actual, mean, quantiles = [], [], {float(q): [] for q in ACCURACY_QUANTILES}
    for record in records:
        series = actuals.get((record.metric, record.freq, record.device))
        if series is None or not all(q in record.quantiles for q in ACCURACY_QUANTILES):
            continue
        stamps = pd.to_datetime(record.timestamps, utc=True)
        for index, value in enumerate(series.reindex(stamps).to_numpy()):
            if np.isnan(value) or index >= len(record.mean):
                continue
            actual.append(value)
            mean.append(record.mean[index])
            for q in ACCURACY_QUANTILES:
                quantiles[float(q)].append(record.quantiles[q][index])
    return np.asarray(actual, float), np.asarray(mean, float), {q: np.asarray(v, float) for q, v in quantiles.items()}


def model_accuracy(endpoint_name: str, model_name: str, since: datetime | None = None) -> Accuracy:
    """Return the accuracy of the model's recorded forecasts on the endpoint (made since `since`) against the
    actuals the lake holds now. Raises BackendError when the lake query fails."""
    rows = ForecastRecord.objects.filter(endpoint_name=endpoint_name, model_name=model_name)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    records = list(rows)
    if not records:
        return Accuracy(model_name, 0, 0, None, None)
    actual, mean, quantiles = _matured(records)
    if not len(actual):
        return Accuracy(model_name, len(records), 0, None, None)
    nonzero = actual != 0
    mape = float(np.mean(np.abs((actual[nonzero] - mean[nonzero]) / actual[nonzero]))) if nonzero.any() else None
    wql = mean_weighted_quantile_loss(actual, quantiles)
    return Accuracy(model_name, len(records), len(actual), wql if np.isfinite(wql) else None, mape)


def accuracy_alarm(
    endpoint_name: str, new_model: str, old_model: str, since: datetime, alarms: dict[str, Any] | None = None
) -> str | None:
    """Return why the accuracy alarm fires for new_model (forecasts since `since`) against old_model (forecasts
    since BASELINE_LOOKBACK before), else None. It stays quiet until min_matured_points points have matured.

    Raises BackendError when the lake query fails.
    """
    limits = {**DEFAULT_ACCURACY_ALARMS, **(alarms or {})}
    if new_model == old_model:
        return None
    recorded = ForecastRecord.objects.filter(endpoint_name=endpoint_name, model_name=new_model, created_at__gte=since)
    if not recorded.exists():
        return None  # nothing to score: no lake query
    new = model_accuracy(endpoint_name, new_model, since)
    if new.points < limits["min_matured_points"] or new.wql is None:
        return None
    if limits["max_wql"] is not None and new.wql > limits["max_wql"]:
        return f"forecast accuracy: {new} > max wQL {limits['max_wql']:g}"
    old = model_accuracy(endpoint_name, old_model, since - BASELINE_LOOKBACK)
    if limits["max_wql_increase"] is None or old.points < limits["min_matured_points"] or not old.wql:
        return None
    if new.wql > old.wql * (1 + limits["max_wql_increase"]):
        worse = new.wql / old.wql - 1
        return f"forecast accuracy: {new} is {worse:.0%} worse than {old} (limit {limits['max_wql_increase']:.0%})"
    return None
