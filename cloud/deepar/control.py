"""Stopping a running training job (cancel, time limit) and the structured progress it reports.

A trainer calls progress(percent, message) at least once per epoch and regularly between; the caller's
progress callback may raise TrainingStopped to stop the job, which the trainer lets propagate after
cleaning up, so that no half-written artifact is ever stored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_EPOCH = re.compile(r"epoch (\d+)/(\d+) train_loss (\S+)")


class TrainingStopped(Exception):
    """The job was stopped before it finished; no artifact was stored."""


class TrainingCancelled(TrainingStopped):
    """An operator cancelled the job."""


class TrainingTimeLimit(TrainingStopped):
    """The job ran past its max_runtime_s (SageMaker's StoppingCondition.MaxRuntimeInSeconds)."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    loss: float


def epoch_message(epoch: int, epochs: int, loss: float | None) -> str:
    """Return the progress message of a finished epoch (parse_epoch_message reads it back)."""
    shown = "n/a" if loss is None or math.isnan(loss) else f"{loss:.6g}"
    return f"epoch {epoch}/{epochs} train_loss {shown}"


def parse_epoch_message(message: str) -> EpochReport | None:
    """Return the epoch report in a progress message, None when the message is not one."""
    match = _EPOCH.search(message)
    if match is None:
        return None
    raw = match.group(3)
    try:
        loss = float(raw)
    except ValueError:
        loss = math.nan
    return EpochReport(int(match.group(1)), int(match.group(2)), loss)
