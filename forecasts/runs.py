"""Service functions for PipelineRun rows: create, claim, report progress, finish.

Every transition is a conditional UPDATE so that a task delivered twice does the work once.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from cloud.interfaces import Progress
from forecasts.models import PipelineRun

logger = logging.getLogger(__name__)
Status = PipelineRun.Status


def run_create(kind: str, params: dict[str, Any] | None = None) -> PipelineRun:
    """Return a new queued run of the given kind."""
    return PipelineRun.objects.create(kind=kind, params=params or {})


def run_log_append(run_id: int, message: str, level: str = "info") -> None:
    """Append one line to the run's log (keeping the newest PipelineRun.LOG_LINES); a missing run is ignored."""
    with transaction.atomic():  # read-modify-write under a row lock: progress may come from another thread
        log = PipelineRun.objects.select_for_update().filter(pk=run_id).values_list("log", flat=True).first()
        if log is not None:
            PipelineRun.objects.filter(pk=run_id).update(log=PipelineRun.log_with(log, message, level))


def run_claim(run_id: int) -> bool:
    """Move a queued run to running; return False when another worker already took it."""
    now = timezone.now()
    claimed = PipelineRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now, message="started"
    )
    if claimed:
        run = PipelineRun.objects.only("kind", "params").get(pk=run_id)
        shown = ", ".join(f"{key}={value}" for key, value in sorted(run.params.items())) or "defaults"
        run_log_append(run_id, f"started {run.kind} run ({shown})")
    return claimed == 1


def run_progress_reporter(run_id: int) -> Progress:
    """Return a Progress callback that writes percent and message to the run's row and logs each new message."""
    last = {"message": None}

    def report(percent: float, message: str) -> None:
        percent = max(0.0, min(100.0, percent))
        updated = PipelineRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
            progress=percent, message=message[:500]
        )
        if updated and message != last["message"]:  # a repeated message (a heartbeat) says nothing new
            last["message"] = message
            run_log_append(run_id, f"[{percent:3.0f}%] {message}")

    return report


def run_succeed(run_id: int, result: dict[str, Any], summary: str = "") -> None:
    """Mark a running run succeeded with its result; log the summary (e.g. rows processed) and the duration."""
    finished = timezone.now()
    done = PipelineRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
        status=Status.SUCCEEDED, progress=100.0, result=result, message="done", finished_at=finished
    )
    if done:
        started = PipelineRun.objects.values_list("started_at", flat=True).get(pk=run_id)
        took = f" in {(finished - started).total_seconds():.1f} s" if started else ""
        run_log_append(run_id, f"succeeded{took}" + (f": {summary}" if summary else ""))


def run_fail(run_id: int, error: str) -> None:
    """Mark a queued or running run failed with an operator-readable error; log its first line."""
    headline = error.splitlines()[0][:500] if error else "failed"
    failed = PipelineRun.objects.filter(pk=run_id, status__in=[Status.QUEUED, Status.RUNNING]).update(
        status=Status.FAILED, error=error, message=headline, finished_at=timezone.now()
    )
    if failed:
        run_log_append(run_id, f"failed: {headline}", level="error")


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
    run_succeed(run_id, result, _summary(run.kind, result))
    return PipelineRun.objects.get(pk=run_id)


def _summary(kind: str, result: dict[str, Any]) -> str:
    from forecasts.steps import step_summary  # steps imports RunWork from here

    return step_summary(kind, result)


def run_requeue(run_id: int, reason: str) -> None:
    """Put a failed run back in the queue for a retry, keeping the reason as its message (and in the log)."""
    requeued = PipelineRun.objects.filter(pk=run_id, status=Status.FAILED).update(
        status=Status.QUEUED, message=f"retrying: {reason}"[:500], error="", finished_at=None, started_at=None
    )
    if requeued:
        run_log_append(run_id, f"queued again for a retry: {reason}", level="warning")
