"""The train step: DeepAR channels from the lake's telemetry, a training job, and the TrainedModel row."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from cloud.backends import get_backend
from cloud.deepar.channels import Channels, build_channels
from cloud.deepar.hyperparameters import DeepARHyperparameters, parse_hyperparameters
from cloud.interfaces import Progress, TrainingSpec, no_progress
from forecasts.models import TrainedModel
from forecasts.selectors import series_resampled

DEFAULT_METRIC = "ozone"
# Hourly data: a day of context, half a day ahead; small enough to train in seconds on two cores.
DEFAULT_HYPERPARAMETERS = {
    "context_length": "24",
    "prediction_length": "12",
    "epochs": "20",
    "num_cells": "40",
    "num_layers": "2",
    "likelihood": "student-T",
    "mini_batch_size": "32",
    "learning_rate": "0.001",
}
# pandas offset alias -> SageMaker's time_freq letter.
_TIME_FREQ = {"h": "H", "H": "H", "min": "min", "D": "D", "W": "W", "M": "M"}


def training_default_params() -> dict[str, Any]:
    """Return the params of the scheduled training run: all devices, hourly ozone, the default hyperparameters."""
    return {"metric": DEFAULT_METRIC, "devices": None, "freq": "h", "hyperparameters": dict(DEFAULT_HYPERPARAMETERS)}


def time_freq(freq: str) -> str:
    """Return SageMaker's time_freq for a pandas frequency ("h" -> "H", "5min" -> "5min"); raise ValueError."""
    count = freq.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = freq[len(count) :]
    if unit not in _TIME_FREQ:
        raise ValueError(f"unsupported frequency {freq!r}: use h, min, D, W or M, optionally with a count")
    return f"{count}{_TIME_FREQ[unit]}"


def training_hyperparameters(freq: str, overrides: dict[str, Any] | None) -> DeepARHyperparameters:
    """Return the validated hyperparameters: defaults, then overrides, time_freq from freq unless given.

    Raises HyperparameterError naming the first bad value.
    """
    merged = {**DEFAULT_HYPERPARAMETERS, "time_freq": time_freq(freq), **(overrides or {})}
    return parse_hyperparameters(merged)


def training_job_name(metric: str) -> str:
    """Return a new SageMaker-style job name like deepar-ozone-20261127-230500 (unique among models)."""
    base = f"deepar-{metric.replace('_', '-')}-{timezone.now():%Y%m%d-%H%M%S}"
    name, suffix = base, 1
    while TrainedModel.objects.filter(name=name).exists():
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def training_channels_write(job: str, channels: Channels) -> tuple[str, str]:
    """Store the channels under datasets/<job>/ in the lake; return (train_key, test_key)."""
    lake = get_backend("lake")
    keys = (f"datasets/{job}/train/data.json", f"datasets/{job}/test/data.json")
    lake.put_bytes(keys[0], channels.data("train"))
    lake.put_bytes(keys[1], channels.data("test"))
    return keys


def training_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Build channels, train DeepAR through the training backend, record the TrainedModel; return its summary.

    Returns {"model", "metrics", "artifact_key", "devices", "skipped"}. Raises HyperparameterError,
    ChannelError (too little data), ValueError (unknown metric or frequency) or BackendError.
    """
    metric, freq = params.get("metric") or DEFAULT_METRIC, params.get("freq") or "h"
    hp = training_hyperparameters(freq, params.get("hyperparameters"))
    progress(2, f"reading {metric} series at {freq}")
    frame = series_resampled(metric, params.get("devices"), freq)
    channels = build_channels(frame, freq, hp.context_length, hp.prediction_length)
    job = training_job_name(metric)
    train_key, test_key = training_channels_write(job, channels)
    progress(8, f"{len(channels.devices)} series, {channels.observations} observations written for {job}")
    spec = TrainingSpec(job, train_key, test_key, hp.as_sagemaker(), "models")
    result = get_backend("training").train(get_backend("lake"), spec, lambda p, m: progress(8 + 0.9 * p, m))
    TrainedModel.objects.create(
        name=job,
        metric=metric,
        devices=channels.devices,
        freq=freq,
        hyperparameters=spec.hyperparameters,
        metrics=result.metrics,
        artifact_key=result.artifact_key,
    )
    summary = {"model": job, "metrics": result.metrics, "artifact_key": result.artifact_key}
    return {**summary, "devices": channels.devices, "skipped": channels.skipped}
