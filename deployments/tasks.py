"""Celery tasks: thin wrappers that take an operation id and call one service."""

import logging

from celery import shared_task

from cloud.interfaces import BackendUnavailable

logger = logging.getLogger(__name__)


@shared_task(time_limit=7200, soft_time_limit=7100)
def endpoint_operation(operation_id: int) -> str:
    """Execute the queued EndpointOperation and return its final status.

    A redelivered task finds the row no longer queued and does nothing. Failures are recorded on the
    row; hosting being unreachable is transient but a half-applied rollout must not be repeated blindly,
    so nothing is retried here: the operator sees the failure and starts again.
    """
    from deployments.operations import operation_execute

    try:
        return operation_execute(operation_id).status
    except BackendUnavailable:
        logger.warning("endpoint operation %s: hosting unreachable", operation_id)
    except Exception:
        logger.exception("endpoint operation %s failed", operation_id)
    return "failed"


@shared_task(time_limit=600, soft_time_limit=570)
def prune_forecast_records() -> int:
    """Delete forecasts older than FORECAST_RETENTION_DAYS (beat, daily); return how many went.

    Deleting what is already gone deletes nothing, so a rerun is harmless.
    """
    from django.conf import settings

    from deployments.accuracy import forecast_records_prune

    deleted = forecast_records_prune(settings.FORECAST_RETENTION_DAYS)
    logger.info("pruned %s forecast record(s) older than %s days", deleted, settings.FORECAST_RETENTION_DAYS)
    return deleted
