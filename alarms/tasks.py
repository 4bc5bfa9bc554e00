"""Celery task: evaluate every enabled alarm rule (queued by beat every IOTCAST_ALARM_INTERVAL_S)."""

from celery import shared_task


@shared_task(time_limit=120, soft_time_limit=110, ignore_result=True)
def evaluate_alarms() -> dict[str, int]:
    """Evaluate all enabled rules and return the totals; idempotent (an open alarm is never duplicated)."""
    from alarms.services import alarms_evaluate

    return alarms_evaluate()
