"""The pipeline schedule: which steps the periodic cycle queues, and in what order."""

from __future__ import annotations

from datetime import timedelta

from celery import chain
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from forecasts.models import PipelineRun, TrainedModel
from forecasts.runs import run_create

Kind, Status = PipelineRun.Kind, PipelineRun.Status
ACTIVE = [Status.QUEUED, Status.RUNNING]


def step_in_progress(kind: str) -> bool:
    """Return whether a run of this kind is queued or running (and not abandoned for an hour)."""
    recent = timezone.now() - timedelta(hours=1)
    return PipelineRun.objects.filter(kind=kind, status__in=ACTIVE, created_at__gte=recent).exists()


def intervals() -> dict:
    """Return the schedule in force: TRAIN/PIPELINE_INTERVAL_S, or the admins' run-time overrides (dashboard)."""
    from dashboard.selectors import schedule_intervals

    return schedule_intervals()


def training_due() -> bool:
    """Return True when no model exists yet or the newest is older than the train interval."""
    newest = TrainedModel.objects.order_by("-created_at").first()
    if newest is None:
        return not step_in_progress(Kind.TRAIN)
    age = timezone.now() - newest.created_at
    return age.total_seconds() >= intervals()["train_interval_s"] and not step_in_progress(Kind.TRAIN)


def crawl_due() -> bool:
    """Return True unless crawl/ETL is in progress or the newest ETL run is younger than the crawl interval.

    Beat fires the cycle every PIPELINE_INTERVAL_S, so an age within half a cycle of the interval counts as due:
    otherwise jitter would make the default interval skip every other cycle.
    """
    if step_in_progress(Kind.CRAWL) or step_in_progress(Kind.ETL):
        return False
    newest = PipelineRun.objects.filter(kind=Kind.ETL).order_by("-created_at").first()
    if newest is None:
        return True
    age = (timezone.now() - newest.created_at).total_seconds()
    return age + settings.PIPELINE_INTERVAL_S / 2 >= intervals()["crawl_interval_s"]


def due_steps() -> list[tuple[str, dict]]:
    """Return the (kind, params) of the steps this cycle should run, in order."""
    from forecasts.services.crawl import crawl_scheduled_params
    from forecasts.services.training import training_default_params

    steps: list[tuple[str, dict]] = []
    if crawl_due():
        steps += [(Kind.CRAWL, crawl_scheduled_params()), (Kind.ETL, {})]
    if training_due():
        steps += [(Kind.TRAIN, training_default_params()), (Kind.DEPLOY, {"model": "latest"})]
    return steps


def schedule_due_steps() -> list[int]:
    """Create the due runs and queue them as one Celery chain; return their ids."""
    from forecasts.tasks import run_pipeline_step

    with transaction.atomic():
        runs = [run_create(kind, params) for kind, params in due_steps()]
    if runs:
        chain(*(run_pipeline_step.si(run.pk) for run in runs)).apply_async()
    return [run.pk for run in runs]
