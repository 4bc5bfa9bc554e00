"""Service functions for PipelineRun rows: create, claim, report progress, finish.

Every transition is a conditional UPDATE so that a task delivered twice does the work once.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from cloud.interfaces import Progress
from forecasts.models import PipelineRun

logger = logging.getLogger(__name__)
Status = PipelineRun.Status


def run_create(kind: str, params: dict[str, Any] | None = None) -> PipelineRun:
    """Return a new queued run of the given kind."""
    return PipelineRun.objects.create(kind=kind, params=params or {})


def run_claim(run_id: int) -> bool:
    """Move a queued run to running; return False when another worker already took it."""
    now = timezone.now()
    claimed = PipelineRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now, message="started"
    )
    return claimed == 1


def run_progress_reporter(run_id: int) -> Progress:
    """Return a Progress callback that writes percent and message to the run's row."""

    def report(percent: float, message: str) -> None:
        PipelineRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
            progress=max(0.0, min(100.0, percent)), message=message[:500]
        )

    return report


def run_succeed(run_id: int, result: dict[str, Any]) -> None:
    """Mark a running run succeeded with its result."""
    PipelineRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
        status=Status.SUCCEEDED, progress=100.0, result=result, message="done", finished_at=timezone.now()
    )


def run_fail(run_id: int, error: str) -> None:
    """Mark a queued or running run failed with an operator-readable error."""
    PipelineRun.objects.filter(pk=run_id, status__in=[Status.QUEUED, Status.RUNNING]).update(
        status=Status.FAILED,
        error=error,
        message=error.splitlines()[0][:500] if error else "failed",
        finished_at=timezone.now(),
    )


RunWork = Callable[[dict[str, Any], Progress], dict[str, Any]]


def run_execute(run_id: int, work: RunWork, echo: Progress | None = None) -> PipelineRun:
    """Claim the run, call work(params, progress), record success or failure; return the row.

    echo, when given, also receives every progress report (the CLI prints them).

    A run that is no longer queued is left alone (a redelivered task). Exceptions from work
    are recorded on the row and re-raised so that Celery can decide about retries.
    """
    if not run_claim(run_id):
        logger.info("run %s is not queued any more; skipping", run_id)
        return PipelineRun.objects.get(pk=run_id)
    run = PipelineRun.objects.get(pk=run_id)
    record = run_progress_reporter(run_id)

    def progress(percent: float, message: str) -> None:
        record(percent, message)
        if echo is not None:
            echo(percent, message)

    try:
        result = work(run.params, progress)
    except Exception as exc:
        run_fail(run_id, f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        raise
    run_succeed(run_id, result)
    return PipelineRun.objects.get(pk=run_id)


def run_requeue(run_id: int, reason: str) -> None:
    """Put a failed run back in the queue for a retry, keeping the reason as its message."""
    PipelineRun.objects.filter(pk=run_id, status=Status.FAILED).update(
        status=Status.QUEUED, message=f"retrying: {reason}"[:500], error="", finished_at=None, started_at=None
    )
