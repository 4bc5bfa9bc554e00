"""Benchmark: 20-epoch DeepAR (3 layers x 40 cells) on 100 series x 2,000 hourly points, against seasonal naive.

Generated data: per-series level and amplitude, a daily and a weekly cycle, noise. The held-out window is each
series' last prediction_length points (the test channel, as SageMaker evaluates). Prints one JSON object:
train_s (the whole training job: fit, evaluation, packing), s_per_epoch, wql (test:mean_wQuantileLoss),
baseline_wql (seasonal naive on the same window), wql_ratio, rmse, baseline_rmse.

    .venv/bin/python bench/train.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud.deepar.channels import build_channels
from cloud.deepar.formats import read_channel
from cloud.deepar.metrics import seasonal_naive_metrics
from cloud.interfaces import TrainingSpec
from cloud.lake import FolderLake
from cloud.local.training import GluonTSDeepAR


def generated_frame(series: int, points: int, seed: int = 11) -> pd.DataFrame:
    """Return [device_id, ts, value] hourly series with daily and weekly seasonality and noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(points)
    stamps = pd.date_range("2026-01-05", periods=points, freq="h", tz="UTC")
    frames = []
    for index in range(series):
        level, daily, weekly = rng.uniform(20, 80), rng.uniform(5, 15), rng.uniform(3, 10)
        phase = rng.uniform(0, 2 * np.pi)
        values = (
            level
            + daily * np.sin(2 * np.pi * hours / 24 + phase)
            + weekly * np.sin(2 * np.pi * hours / 168)
            + rng.normal(0, 0.3 * daily, points)
        )
        frames.append(pd.DataFrame({"device_id": f"series-{index:03d}", "ts": stamps, "value": values}))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 series x 500 points, 3 epochs (a smoke run)")
    args = parser.parse_args()
    series, points, epochs = (20, 500, 3) if args.quick else (100, 2000, 20)
    hp = {
        "time_freq": "H", "context_length": "48", "prediction_length": "24", "epochs": str(epochs),
        "num_layers": "3", "num_cells": "40", "mini_batch_size": "128", "learning_rate": "0.003",
        "likelihood": "student-T",
    }  # fmt: skip
    epoch_ends: list[float] = []

    def progress(percent: float, message: str) -> None:
        if message.startswith("epoch "):
            epoch_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        lake = FolderLake(f"file://{tmp}/lake")
        channels = build_channels(generated_frame(series, points), "h", 48, 24)
        lake.put_bytes("datasets/bench/train/data.json", channels.data("train"))
        lake.put_bytes("datasets/bench/test/data.json", channels.data("test"))
        spec = TrainingSpec("bench", "datasets/bench/train/data.json", "datasets/bench/test/data.json", hp, "models")
        started = time.perf_counter()
        result = GluonTSDeepAR(f"{tmp}/work").train(lake, spec, progress)
        train_s = time.perf_counter() - started
        baseline = seasonal_naive_metrics(
            read_channel(channels.data("test")), 24, "H", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        )
    epoch_s = np.diff([started, *epoch_ends]) if epoch_ends else np.array([float("nan")])
    wql, baseline_wql = result.metrics["test:mean_wQuantileLoss"], baseline["test:mean_wQuantileLoss"]
    print(json.dumps({
        "series": series, "points": points, "epochs": epochs, "epochs_run": len(epoch_ends),
        "train_s": round(train_s, 2), "s_per_epoch": round(float(np.median(epoch_s)), 3),
        "wql": round(wql, 4), "baseline_wql": round(baseline_wql, 4), "wql_ratio": round(wql / baseline_wql, 3),
        "rmse": round(result.metrics["test:RMSE"], 3), "baseline_rmse": round(baseline["test:RMSE"], 3),
        "final_loss": round(result.metrics["train:final_loss"], 4),
        "goal": {"train_s_max": 120, "wql_ratio_max": 0.8},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
