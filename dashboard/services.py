"""Actions the dashboard starts: queueing pipeline steps on behalf of a signed-in user, changing the schedule."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import transaction

from dashboard.models import PipelineSchedule
from dashboard.roles import is_admin, is_operator
from forecasts.models import PipelineRun

logger = logging.getLogger(__name__)
# Training and deploying change what answers forecasts, so only admins may start them.
ADMIN_ONLY_KINDS = frozenset({PipelineRun.Kind.TRAIN, PipelineRun.Kind.DEPLOY})


def pipeline_step_allowed(kind: str, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Return whether user may start a step of this kind (operators: crawl/ETL; admins: all)."""
    if not is_operator(user) or kind not in PipelineRun.Kind.values:
        return False
    return kind not in ADMIN_ONLY_KINDS or is_admin(user)


def _queue(run_id: int) -> None:
    from forecasts.runs import run_fail
    from forecasts.tasks import run_pipeline_step

    try:
        run_pipeline_step.delay(run_id)
    except Exception as exc:
        # Without this the run would sit "queued" forever with nothing to tell the operator why.
        logger.exception("could not queue pipeline run %s", run_id)
        run_fail(run_id, f"Could not queue the task (is Redis running?): {exc}")


def pipeline_step_start(
    kind: str, params: dict[str, Any] | None, user: AbstractBaseUser | AnonymousUser
) -> PipelineRun:
    """Create a queued PipelineRun and send its Celery task once the row is committed; return the run.

    Raises PermissionDenied when the user may not start this kind, ValueError for an unknown kind.
    """
    from forecasts.runs import run_create

    if kind not in PipelineRun.Kind.values:
        raise ValueError(f"unknown pipeline step {kind!r}; known: {', '.join(PipelineRun.Kind.values)}")
    if not pipeline_step_allowed(kind, user):
        raise PermissionDenied(f"Only admins may start {kind} runs.")
    with transaction.atomic():
        run = run_create(kind, params or {})
        # The worker must find the row, so the task is sent only after the commit.
        transaction.on_commit(lambda: _queue(run.pk))
    logger.info("user %s queued %s run %s", user, kind, run.pk)
    return run


def schedule_update(
    crawl_interval_s: int | None, train_interval_s: int | None, user: AbstractBaseUser | AnonymousUser
) -> PipelineSchedule:
    """Store the run-time schedule overrides (None: back to the setting); return the row.

    Raises PermissionDenied unless user is an admin, ValidationError for intervals out of range.
    """
    if not is_admin(user):
        raise PermissionDenied("Only admins may change the pipeline schedule.")
    row, _created = PipelineSchedule.objects.get_or_create(pk=1)
    row.crawl_interval_s, row.train_interval_s = crawl_interval_s, train_interval_s
    row.updated_by = user if user.is_authenticated else None
    row.full_clean()
    row.save()
    logger.info("user %s set the schedule: %s", user, row)
    return row
