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
