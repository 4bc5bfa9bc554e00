"""Celery tasks: thin wrappers that take a run id and call one service."""

from celery import shared_task

from cloud.interfaces import BackendUnavailable
from forecasts.runs import run_execute
from forecasts.steps import step_work


@shared_task(
    bind=True,
    autoretry_for=(BackendUnavailable,),
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=5,
)
def run_pipeline_step(self, run_id: int) -> str:
    """Execute the queued PipelineRun run_id; return its final status."""
    from forecasts.models import PipelineRun

    kind = PipelineRun.objects.values_list("kind", flat=True).get(pk=run_id)
    return run_execute(run_id, step_work(kind)).status


@shared_task(time_limit=60)
def pipeline_cycle() -> list[int]:
    """Queue the scheduled steps that are due (see forecasts.schedule); return the run ids queued."""
    from forecasts.schedule import schedule_due_steps

    return schedule_due_steps()
