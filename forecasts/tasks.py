"""Celery tasks: thin wrappers that take a run id and call one service."""

import logging

from celery import shared_task

from cloud.interfaces import BackendUnavailable
from forecasts.models import PipelineRun
from forecasts.runs import run_execute, run_requeue
from forecasts.steps import step_work

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=5)
def run_pipeline_step(self, run_id: int) -> str:
    """Execute the queued PipelineRun run_id and return its final status.

    A redelivered task finds the run no longer queued and does nothing. Only a transient
    BackendUnavailable is retried (with backoff); any other failure is recorded on the row and
    returned as "failed", so that a chain of steps goes on (a later step reads the latest state).
    """
    kind = PipelineRun.objects.values_list("kind", flat=True).get(pk=run_id)
    try:
        return run_execute(run_id, step_work(kind)).status
    except BackendUnavailable as exc:
        if self.request.retries >= self.max_retries:
            return PipelineRun.Status.FAILED
        run_requeue(run_id, str(exc))
        raise self.retry(exc=exc, countdown=min(120, 5 * 2**self.request.retries)) from exc
    except Exception:
        logger.exception("%s run %s failed", kind, run_id)
        return PipelineRun.Status.FAILED


@shared_task(time_limit=60, soft_time_limit=50)
def pipeline_cycle() -> list[int]:
    """Queue the scheduled steps that are due (see forecasts.schedule); return the run ids queued."""
    from forecasts.schedule import schedule_due_steps

    return schedule_due_steps()
