"""Build DeepAR's train and test channels from resampled series, checking DeepAR's data rules."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cloud.deepar.features import calendar_features, check_dynamic_feat
from cloud.deepar.formats import series_line
from cloud.deepar.hyperparameters import MAX_PREDICTION_LENGTH

MIN_OBSERVATIONS = 300  # SageMaker DeepAR refuses less training data than this


class ChannelError(ValueError):
    """The series cannot make DeepAR channels; the message says why and what to change."""


@dataclass
class Channels:
    train: list[str]
    test: list[str]
    devices: list[str]
    observations: int  # observed (non-NaN) values of the whole series, the test channel
    skipped: dict[str, str] = field(default_factory=dict)
    train_observations: int = 0  # observed values of the train channel: what DeepAR's 300 minimum counts

    def data(self, channel: str) -> bytes:
        """Return a channel ("train" or "test") as JSON Lines bytes."""
        return ("\n".join(getattr(self, channel)) + "\n").encode()


def regular_series(frame: pd.DataFrame, freq: str) -> dict[str, pd.Series]:
    """Return each device's values on a full regular range (first to last reading), gaps as NaN, never 0."""
    out: dict[str, pd.Series] = {}
    for device, rows in frame.groupby("device_id", sort=True):
        values = rows.set_index(pd.DatetimeIndex(rows["ts"]))["value"].astype(float)
        values = values[~values.index.duplicated(keep="last")].sort_index()
        span = pd.date_range(values.index[0], values.index[-1], freq=freq)
        out[str(device)] = values.reindex(span)
    return out


def build_channels(
    frame: pd.DataFrame,
    freq: str,
    context_length: int,
    prediction_length: int,
    *,
    test_points: int | None = None,
    use_cat: bool = True,
    shuffle_seed: int | None = None,
    dynamic_feat: tuple[str, ...] = (),
) -> Channels:
    """Return the channels for a frame of (device_id, ts, value): test holds whole series, train cuts the last
    test_points (default prediction_length) points. Series shorter than context_length + test_points are
    skipped and listed. cat [i] is the device's index in Channels.devices (sorted); with shuffle_seed the lines
    of both channels are shuffled (SageMaker recommends shuffled training data). dynamic_feat names calendar
    features (cloud.deepar.features): each line then has their sine and cosine rows, as long as its target.

    Raises FeatureError for a dynamic_feat that is not a calendar feature, ChannelError when prediction_length is
    over 400, no series is long enough or the train channel holds fewer than 300 observed (non-NaN) values.
    """
    dynamic_feat = check_dynamic_feat(dynamic_feat)
    if prediction_length > MAX_PREDICTION_LENGTH:
        raise ChannelError(f"prediction_length must be at most {MAX_PREDICTION_LENGTH}, got {prediction_length}")
    cut = max(prediction_length, test_points or prediction_length)
    kept, skipped = _long_enough(regular_series(frame, freq), context_length + cut, context_length, cut)
    observations = _observed(kept.values(), 0)
    # DeepAR trains on the train channel only: the held-out points must not make up for too little history.
    train_observations = _observed(kept.values(), cut)
    if train_observations < MIN_OBSERVATIONS:
        raise ChannelError(
            f"DeepAR needs at least {MIN_OBSERVATIONS} observations in total in the train channel; it holds "
            f"{train_observations} (the test channel's {observations} include {cut} held-out points per series)"
        )
    train, test = [], []
    for cat, series in enumerate(kept.values()):
        values, category = series.to_numpy(), [cat] if use_cat else None
        features = calendar_features(dynamic_feat, series.index) if dynamic_feat else None
        test.append(series_line(series.index[0], values, category, features))
        train.append(series_line(series.index[0], values[:-cut], category, _cut_rows(features, cut)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(train)
        random.Random(shuffle_seed + 1).shuffle(test)
    return Channels(train, test, list(kept), observations, skipped, train_observations)


def _observed(series: Iterable[pd.Series], cut: int) -> int:
    """Return how many values are observed (not NaN) in the series without their last `cut` points."""
    return int(sum(np.count_nonzero(~np.isnan(values.to_numpy()[: len(values) - cut])) for values in series))


def _cut_rows(rows: list[list[float]] | None, cut: int) -> list[list[float]] | None:
    return [row[:-cut] for row in rows] if rows else None


def _long_enough(
    series: dict[str, pd.Series], needed: int, context_length: int, cut: int
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    kept = {device: values for device, values in series.items() if len(values) >= needed}
    skipped = {
        device: f"{len(values)} points < context_length + test points = {context_length} + {cut}"
        for device, values in series.items()
        if len(values) < needed
    }
    if not kept:
        raise ChannelError(
            f"no series has the {needed} points context_length + prediction_length need"
            + (f" (with {cut} test points)" if cut != needed - context_length else "")
        )
    return kept, skipped
