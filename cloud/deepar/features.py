"""DeepAR's dynamic_feat from the calendar: features whose future values are known at forecast time.

DeepAR needs each dynamic feature for the forecast window too (len(target) + prediction_length values at
inference), so only what the clock decides can be one: other metrics are unknown in the future and refused.
Each calendar feature is encoded as a sine and a cosine (two dynamic_feat rows), so that 23:00 sits next to 00:00.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# name -> (position in its cycle, cycle length)
CALENDAR_FEATURES = {
    "hour_of_day": (lambda index: index.hour + index.minute / 60, 24.0),
    "day_of_week": (lambda index: index.dayofweek + index.hour / 24, 7.0),
    "day_of_month": (lambda index: index.day - 1 + index.hour / 24, 31.0),
    "month_of_year": (lambda index: index.month - 1 + (index.day - 1) / 31, 12.0),
}
ROWS_PER_FEATURE = 2  # sine and cosine


class FeatureError(ValueError):
    """A dynamic feature cannot be used; the message says why and which ones can."""


def check_dynamic_feat(names: list[str] | tuple[str, ...], metrics: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Return the names as a tuple when each is a known calendar feature, listed once.

    Raises FeatureError for another metric (its future values are not known at forecast time) or an unknown name.
    """
    known = ", ".join(CALENDAR_FEATURES)
    for name in names:
        if name in CALENDAR_FEATURES:
            continue
        if name in metrics:
            raise FeatureError(
                f"dynamic_feat {name!r} is a metric: its future values are not known at forecast time, and DeepAR "
                f"needs every dynamic feature over the forecast window too; use calendar features ({known})"
            )
        raise FeatureError(f"unknown dynamic_feat {name!r}: use calendar features ({known})")
    if len(set(names)) != len(names):
        raise FeatureError("each dynamic_feat may be listed once")
    return tuple(names)


def num_dynamic_feat(names: list[str] | tuple[str, ...]) -> int:
    """Return how many dynamic_feat rows the named calendar features make (DeepAR's num_dynamic_feat)."""
    return ROWS_PER_FEATURE * len(names)


def calendar_features(names: list[str] | tuple[str, ...], index: pd.DatetimeIndex) -> list[list[float]]:
    """Return DeepAR's dynamic_feat for the timestamps: per name a sine row then a cosine row, each len(index)."""
    rows: list[list[float]] = []
    for name in names:
        position, cycle = CALENDAR_FEATURES[name]
        angle = 2 * np.pi * np.asarray(position(index), dtype=float) / cycle
        rows += [np.round(np.sin(angle), 6).tolist(), np.round(np.cos(angle), 6).tolist()]
    return rows


def feature_index(start: pd.Timestamp, periods: int, freq: str) -> pd.DatetimeIndex:
    """Return the regular timestamps a series from start covers (periods points at freq)."""
    return pd.date_range(start, periods=periods, freq=freq)
