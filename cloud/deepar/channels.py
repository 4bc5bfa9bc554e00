"""Build DeepAR's train and test channels from resampled series, checking DeepAR's data rules."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cloud.deepar.formats import series_line

MIN_OBSERVATIONS = 300  # SageMaker DeepAR refuses less training data than this


class ChannelError(ValueError):
    """The series cannot make DeepAR channels; the message says why and what to change."""


@dataclass
class Channels:
    train: list[str]
    test: list[str]
    devices: list[str]
    observations: int
    skipped: dict[str, str] = field(default_factory=dict)

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


def build_channels(frame: pd.DataFrame, freq: str, context_length: int, prediction_length: int) -> Channels:
    """Return the channels for a frame of (device_id, ts, value): test holds whole series, train cuts the last
    prediction_length points. Series too short for context_length + prediction_length are skipped and listed.

    Raises ChannelError when no series is long enough or fewer than 300 values are observed in total.
    """
    needed = context_length + prediction_length
    kept, skipped = {}, {}
    for device, series in regular_series(frame, freq).items():
        if len(series) < needed:
            skipped[device] = f"{len(series)} points < context_length + prediction_length = {needed}"
        else:
            kept[device] = series
    if not kept:
        raise ChannelError(f"no series has the {needed} points context_length + prediction_length need")
    observations = int(sum(np.count_nonzero(~np.isnan(series.to_numpy())) for series in kept.values()))
    if observations < MIN_OBSERVATIONS:
        raise ChannelError(
            f"DeepAR needs at least {MIN_OBSERVATIONS} observations in total; the series hold {observations}"
        )
    train, test = [], []
    for cat, series in enumerate(kept.values()):
        values = series.to_numpy()
        test.append(series_line(series.index[0], values, [cat]))
        train.append(series_line(series.index[0], values[:-prediction_length], [cat]))
    return Channels(train, test, list(kept), observations, skipped)
