"""Reads of alarms and alarm rules for the dashboard pages."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from alarms.models import Alarm, AlarmRule
from devices.models import Device

SEVERITY_ORDER = [choice for choice, _ in AlarmRule.Severity.choices]


def alarms_active(device: Device | None = None) -> QuerySet[Alarm]:
    """Return the uncleared alarms (of one device, or all), unacknowledged first, newest first."""
    alarms = Alarm.objects.filter(cleared_at=None).select_related("rule", "device", "acknowledged_by")
    if device is not None:
        alarms = alarms.filter(device=device)
    return alarms.order_by("acknowledged_at", "-started_at")


def alarms_cleared(limit: int = 20, device: Device | None = None) -> list[Alarm]:
    """Return the most recently cleared alarms, newest first."""
    alarms = Alarm.objects.exclude(cleared_at=None).select_related("rule", "device", "cleared_by", "acknowledged_by")
    if device is not None:
        alarms = alarms.filter(device=device)
    return list(alarms.order_by("-cleared_at")[:limit])


def alarm_counts() -> dict[str, int]:
    """Return {"active", "unacknowledged", <severity>: active count} for the overview."""
    active = Alarm.objects.filter(cleared_at=None)
    by_severity = dict(active.values_list("severity").annotate(n=Count("pk")).values_list("severity", "n"))
    counts = {"active": active.count(), "unacknowledged": active.filter(acknowledged_at=None).count()}
    counts.update({severity: by_severity.get(severity, 0) for severity in SEVERITY_ORDER})
    return counts


def alarm_rules() -> QuerySet[AlarmRule]:
    """Return every rule with its device."""
    return AlarmRule.objects.select_related("device")
