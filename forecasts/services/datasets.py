"""Datasets: DeepAR train and test channels built from the lake's telemetry, stored under datasets/<name>/."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from cloud.backends import get_backend
from cloud.deepar.channels import ChannelError, build_channels
from cloud.deepar.features import FeatureError, check_dynamic_feat
from forecasts.models import Dataset
from forecasts.selectors import series_resampled

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
DEFAULT_CONTEXT_LENGTH = 24
DEFAULT_PREDICTION_LENGTH = 12


class DatasetError(ValueError):
    """The dataset cannot be built as asked; the message says why and what to change."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    metric: str
    devices: list[str] | None = None  # None: every device with data
    freq: str = "h"
    start: datetime | None = None
    end: datetime | None = None
    test_days: float | None = None  # None: the test channel adds prediction_length points to train
    context_length: int = DEFAULT_CONTEXT_LENGTH
    prediction_length: int = DEFAULT_PREDICTION_LENGTH
    use_cat: bool = True
    dynamic_feat: tuple[str, ...] | list[str] = ()  # calendar features (cloud.deepar.features.CALENDAR_FEATURES)


def dataset_keys(name: str) -> tuple[str, str]:
    """Return the lake keys (train, test) of a dataset's channels."""
    return f"datasets/{name}/train/data.json", f"datasets/{name}/test/data.json"


def _test_points(spec: DatasetSpec, freq_seconds: int) -> int:
    if not spec.test_days:
        return spec.prediction_length
    return max(spec.prediction_length, round(spec.test_days * 86400 / freq_seconds))


def _check_spec(spec: DatasetSpec) -> None:
    if not _NAME.match(spec.name):
        raise DatasetError(f"dataset name {spec.name!r} must be lower-case letters, digits and dashes (max 100)")
    if Dataset.objects.filter(name=spec.name).exists():
        raise DatasetError(f"dataset {spec.name!r} already exists; choose another name")
    if spec.start and spec.end and spec.start >= spec.end:
        raise DatasetError("start must be before end")
    if spec.test_days is not None and spec.test_days <= 0:
        raise DatasetError(f"test days must be positive, got {spec.test_days}")
    if spec.context_length < 1 or spec.prediction_length < 1:
        raise DatasetError("context_length and prediction_length must be positive")
    _check_dynamic_feat(spec.dynamic_feat)


def _check_dynamic_feat(names: tuple[str, ...] | list[str]) -> None:
    from forecasts.selectors import telemetry_metrics

    try:
        # Other metrics are refused by name: DeepAR needs their future values, which nobody knows.
        check_dynamic_feat(list(names), tuple(telemetry_metrics()))
    except FeatureError as exc:
        raise DatasetError(str(exc)) from None


def _check_named_devices(spec: DatasetSpec, found: list[str], skipped: dict[str, str] | None = None) -> None:
    # Devices named explicitly must all make it: a silently smaller dataset would be a surprise.
    if spec.devices is None:
        return
    problems = [f"{device}: no {spec.metric} readings" for device in spec.devices if device not in found]
    problems += [f"{device}: {reason}" for device, reason in (skipped or {}).items()]
    if problems:
        raise ChannelError("series too short or missing: " + "; ".join(problems))


def dataset_build(spec: DatasetSpec, created_by: Any = None, strict_devices: bool = True) -> Dataset:
    """Build, check and store the dataset's channels (shuffled JSON Lines) and return its new row.

    With strict_devices, every device named in spec.devices must yield a long enough series; otherwise too
    short series are left out and listed in the row's skipped.

    Raises DatasetError (bad spec, no data, a dynamic_feat that is not a calendar feature), ChannelError
    (DeepAR's rules: 300 observations, prediction_length <= 400, series long enough), ValueError (unknown metric
    or frequency) or BackendError.
    """
    from forecasts.selectors import _freq_seconds

    _check_spec(spec)
    frame = series_resampled(spec.metric, spec.devices, spec.freq, spec.start, spec.end)
    if frame.empty:
        raise DatasetError(f"no {spec.metric} readings for these devices in this time range")
    if strict_devices:
        _check_named_devices(spec, sorted(frame["device_id"].unique()))
    channels = build_channels(
        frame, spec.freq, spec.context_length, spec.prediction_length,
        test_points=_test_points(spec, _freq_seconds(spec.freq)), use_cat=spec.use_cat,
        shuffle_seed=zlib.crc32(spec.name.encode()), dynamic_feat=tuple(spec.dynamic_feat),
    )  # fmt: skip
    if strict_devices:
        _check_named_devices(spec, list(channels.devices), channels.skipped)
    train_key, test_key = dataset_keys(spec.name)
    lake = get_backend("lake")
    lake.put_bytes(train_key, channels.data("train"))
    lake.put_bytes(test_key, channels.data("test"))
    with transaction.atomic():
        return Dataset.objects.create(
            name=spec.name, metric=spec.metric, devices=channels.devices, freq=spec.freq, start=spec.start,
            end=spec.end, context_length=spec.context_length, prediction_length=spec.prediction_length,
            test_points=_test_points(spec, _freq_seconds(spec.freq)), use_cat=spec.use_cat,
            dynamic_feat=list(spec.dynamic_feat), train_key=train_key,
            test_key=test_key, series_count=len(channels.devices), observations=channels.observations,
            skipped=channels.skipped, created_by=created_by,
        )  # fmt: skip


def dataset_channel(dataset: Dataset, channel: str) -> bytes:
    """Return a dataset's channel ("train" or "test") as stored; raise ValueError for another name, KeyError
    when the lake lost it."""
    if channel not in ("train", "test"):
        raise ValueError(f"channel must be train or test, got {channel!r}")
    return get_backend("lake").get_bytes(dataset.train_key if channel == "train" else dataset.test_key)


def dataset_get(name: str) -> Dataset:
    """Return the named dataset; raise DatasetError naming the known ones when it does not exist."""
    try:
        return Dataset.objects.get(name=name)
    except Dataset.DoesNotExist:
        known = ", ".join(Dataset.objects.values_list("name", flat=True)[:20]) or "none yet"
        raise DatasetError(f"dataset {name!r} does not exist (known: {known})") from None
