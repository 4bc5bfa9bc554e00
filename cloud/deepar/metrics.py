"""SageMaker DeepAR's evaluation metrics: test:RMSE and test:mean_wQuantileLoss."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def rmse(actual: np.ndarray, mean_forecast: np.ndarray) -> float:
    """Return the root mean squared error over the observed (non-NaN) points; NaN when none is observed."""
    actual, mean_forecast = np.asarray(actual, float), np.asarray(mean_forecast, float)
    observed = ~np.isnan(actual)
    if not observed.any():
        return float("nan")
    return float(np.sqrt(np.mean((actual[observed] - mean_forecast[observed]) ** 2)))


def weighted_quantile_loss(actual: np.ndarray, quantile_forecast: np.ndarray, quantile: float) -> float:
    """Return wQuantileLoss[q] = 2 * sum(pinball loss) / sum(|actual|) over the observed points."""
    actual, forecast = np.asarray(actual, float), np.asarray(quantile_forecast, float)
    observed = ~np.isnan(actual)
    actual, forecast = actual[observed], forecast[observed]
    error = actual - forecast
    pinball = np.maximum(quantile * error, (quantile - 1) * error)
    scale = np.abs(actual).sum()
    return float(2 * pinball.sum() / scale) if scale > 0 else float("nan")


def mean_weighted_quantile_loss(actual: np.ndarray, quantile_forecasts: Mapping[float, np.ndarray]) -> float:
    """Return the mean over quantiles of weighted_quantile_loss (SageMaker's test:mean_wQuantileLoss)."""
    losses = [weighted_quantile_loss(actual, forecast, q) for q, forecast in quantile_forecasts.items()]
    return float(np.mean(losses))


# Seasonal period per time_freq unit: a day for sub-daily data, a week for daily, a year otherwise.
_SEASON_PER_DAY = {"min": 1440, "H": 24, "h": 24}
_SEASON = {"D": 7, "W": 52, "M": 12}


def season_length(time_freq: str) -> int:
    """Return the seasonal-naive period for a SageMaker time_freq ("H" -> 24, "5min" -> 288, "D" -> 7)."""
    count = "".join(ch for ch in time_freq if ch.isdigit())
    unit = time_freq[len(count) :]
    step = int(count) if count else 1
    if unit in _SEASON_PER_DAY:
        return max(1, _SEASON_PER_DAY[unit] // step)
    return _SEASON.get(unit, 1)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Return the next horizon values repeating the last observed season (the last observed value where missing)."""
    history = np.asarray(history, float)
    observed = history[~np.isnan(history)]
    fallback = observed[-1] if observed.size else 0.0
    if len(history) < season:
        return np.full(horizon, fallback)
    last = history[-season:]
    forecast = np.array([last[step % season] for step in range(horizon)])
    return np.where(np.isnan(forecast), fallback, forecast)


def split_test_series(records: list[dict], horizon: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return (histories, actuals): each test series without and with only its last horizon points."""
    histories, actuals = [], []
    for record in records:
        values = np.asarray([np.nan if v in (None, "NaN") else float(v) for v in record["target"]], float)
        histories.append(values[:-horizon])
        actuals.append(values[-horizon:])
    return histories, actuals


def point_metrics(actual: np.ndarray, point: np.ndarray, quantiles: tuple[float, ...]) -> dict[str, float]:
    """Return test:RMSE and test:mean_wQuantileLoss of a point forecast (every quantile equals the point)."""
    return {
        "test:RMSE": rmse(actual, point),
        "test:mean_wQuantileLoss": mean_weighted_quantile_loss(actual, {q: point for q in quantiles}),
    }


def seasonal_naive_metrics(
    records: list[dict], horizon: int, time_freq: str, quantiles: tuple[float, ...]
) -> dict[str, float]:
    """Return the seasonal-naive baseline's test:RMSE and test:mean_wQuantileLoss on a test channel."""
    season = season_length(time_freq)
    histories, actuals = split_test_series(records, horizon)
    forecast = np.concatenate([seasonal_naive(history, horizon, season) for history in histories])
    return point_metrics(np.concatenate(actuals), forecast, quantiles)
