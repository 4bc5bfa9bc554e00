"""Rolling backtest: forecast each test series from several origins and score every window and series."""

from __future__ import annotations

from typing import Any

import numpy as np

from cloud.deepar.formats import Instance
from cloud.deepar.metrics import mean_weighted_quantile_loss, rmse
from cloud.deepar.model import DeepARModel

BAND = (0.1, 0.5, 0.9)
MAX_PLOTTED_SERIES = 12  # the model page draws a few series; the errors cover all of them


def _values(record: dict[str, Any]) -> np.ndarray:
    return np.asarray([np.nan if v in (None, "NaN") else float(v) for v in record["target"]], float)


def _window(model: DeepARModel, records: list[dict], cut: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    import pandas as pd

    horizon = model.hyperparameters.prediction_length
    entries, actuals = [], []
    for record in records:
        values = _values(record)
        history = values[:-cut]
        # dynamic_feat covers the history and the forecast window after it (len(target) + prediction_length).
        rows = [row[: len(history) + horizon] for row in record.get("dynamic_feat") or []] or None
        instance = Instance(
            start=pd.Timestamp(record["start"]), target=history.tolist(), cat=record.get("cat"), dynamic_feat=rows
        )
        entries.append(model.dataset_entry(instance))
        actuals.append(values[len(history) : len(history) + horizon])
    paths = model.sample_paths(entries, model.hyperparameters.num_eval_samples, seed=seed)
    return list(zip(actuals, paths, strict=True))


MAX_WINDOWS = 20


def check_backtest_windows(lengths: list[int], windows: int, horizon: int) -> None:
    """Check that every series (of these lengths) leaves history before `windows` origins prediction_length
    apart; return None. Raises ValueError saying how many windows the shortest series allows."""
    if windows < 0 or windows > MAX_WINDOWS:
        raise ValueError(f"backtest_windows must be between 0 and {MAX_WINDOWS}, got {windows}")
    if not windows or not lengths:
        return
    shortest = min(lengths)
    if shortest - windows * horizon < 1:
        allowed = max(0, (shortest - 1) // horizon)
        raise ValueError(
            f"a series of {shortest} points is too short for {windows} backtest windows of {horizon} "
            f"(at most {allowed})"
        )


def rolling_backtest(model: DeepARModel, records: list[dict], windows: int, seed: int = 0) -> dict[str, Any]:
    """Return per-window and per-series errors of forecasts from `windows` origins, prediction_length apart,
    the last one being the test channel's own; plus actuals and the p10/p50/p90 band of the first series.

    Raises ValueError when a series is too short for that many windows.
    """
    hp = model.hyperparameters
    horizon, quantiles = hp.prediction_length, hp.test_quantiles
    check_backtest_windows([len(record["target"]) for record in records], windows, horizon)
    per_series: dict[int, list[dict[str, float]]] = {index: [] for index in range(len(records))}
    out: dict[str, Any] = {"windows": [], "series": [], "plot": []}
    for window in range(windows, 0, -1):
        results = _window(model, records, window * horizon, seed)
        actual = np.concatenate([a for a, _ in results])
        mean = np.concatenate([p.mean(axis=0) for _, p in results])
        band = {q: np.concatenate([np.quantile(p, q, axis=0) for _, p in results]) for q in quantiles}
        out["windows"].append(
            {"origin": -window * horizon, "test:RMSE": rmse(actual, mean),
             "test:mean_wQuantileLoss": mean_weighted_quantile_loss(actual, band)}
        )  # fmt: skip
        for index, (series_actual, paths) in enumerate(results):
            qs = {q: np.quantile(paths, q, axis=0) for q in quantiles}
            per_series[index].append(
                {"rmse": rmse(series_actual, paths.mean(axis=0)), "wql": mean_weighted_quantile_loss(series_actual, qs)}
            )
            if index < MAX_PLOTTED_SERIES:
                p10, p50, p90 = (np.quantile(paths, q, axis=0).tolist() for q in BAND)
                out["plot"].append({"series": index, "origin": -window * horizon,
                                    "actual": [None if np.isnan(v) else v for v in series_actual.tolist()],
                                    "p10": p10, "p50": p50, "p90": p90})  # fmt: skip
    for index, scores in per_series.items():
        out["series"].append(
            {"series": index, "cat": records[index].get("cat"),
             "rmse": float(np.nanmean([s["rmse"] for s in scores])),
             "wql": float(np.nanmean([s["wql"] for s in scores]))}
        )  # fmt: skip
    return out
