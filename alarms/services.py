"""Evaluate alarm rules against the lake's readings and the deployed model's forecasts; acknowledge and clear.

An evaluation answers, per rule and device, True (the condition holds: raise or keep the alarm), False (it
does not: clear an active alarm) or None (cannot tell: no fresh readings or no forecast; leave alarms alone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from alarms.models import Alarm, AlarmRule
from dashboard.units import metric_label, metric_unit
from devices.models import Device

logger = logging.getLogger(__name__)
# A device whose newest reading is older than this is not judged by a threshold rule (it is offline).
STALE_AFTER = timedelta(minutes=5)
READINGS_LIMIT = 20000


@dataclass(frozen=True)
class Verdict:
    holds: bool | None
    value: float | None = None
    error: str = ""


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value


def threshold_verdict(rule: AlarmRule, device_name: str, now: datetime) -> Verdict:
    """Return whether every reading of the last rule.duration_minutes crosses (the crossing streak is that long).

    None when the device has no reading of the metric in the last STALE_AFTER. Raises what the lake raises.
    """
    from forecasts.selectors import readings_recent

    window = timedelta(minutes=rule.duration_minutes)
    rows = readings_recent(
        device_name, start=now - 2 * window - STALE_AFTER, end=now, metrics=[rule.metric], limit=READINGS_LIMIT
    )
    rows = [(_utc(row["timestamp"]), row[rule.metric]) for row in rows if row.get(rule.metric) is not None]
    if not rows or now - rows[-1][0] > STALE_AFTER:
        return Verdict(None)
    streak_start = None
    for stamp, value in reversed(rows):  # newest first: how long has it been crossing without a break?
        if not rule.crosses(value):
            break
        streak_start = stamp
    holds = streak_start is not None and now - streak_start >= window
    return Verdict(holds, rows[-1][1])


def forecast_verdict(rule: AlarmRule, device_name: str) -> Verdict:
    """Return whether the forecast's rule.quantile crosses the threshold anywhere within the horizon.

    None (with the reason) when no forecast can be made for this device and metric.
    """
    from forecasts.services.forecasting import forecast_for_device

    try:
        data = forecast_for_device(device_name, metric=rule.metric, quantiles=["0.1", "0.5", "0.9"])
    except Exception as exc:  # no model, another metric, an endpoint down: cannot judge, say why
        return Verdict(None, error=f"{device_name}: {exc}")
    values = [v for v in data["forecast"]["quantiles"].get(rule.quantile, []) if v is not None]
    if not values:
        return Verdict(None, error=f"{device_name}: the forecast has no p{int(float(rule.quantile) * 100)}")
    extreme = max(values) if rule.operator == AlarmRule.Operator.ABOVE else min(values)
    return Verdict(rule.crosses(extreme), extreme)


def alarm_message(rule: AlarmRule, value: float | None) -> str:
    """Return the one-line text of an alarm, e.g. 'Particulate matter 61.2 µg/m³ > 50 µg/m³ for 10 min'."""
    unit = metric_unit(rule.metric)
    shown = "?" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")
    what = f"{metric_label(rule.metric)} {shown} {unit} {rule.get_operator_display()} {rule.threshold:g} {unit}"
    if rule.kind == AlarmRule.Kind.FORECAST:
        return f"Forecast {rule.get_quantile_display()} of " + what[0].lower() + what[1:] + " within the horizon"
    return what + (f" for {rule.duration_minutes} min" if rule.duration_minutes else "")


def alarm_raise(rule: AlarmRule, device: Device, value: float | None) -> tuple[Alarm, bool]:
    """Return (the device's open alarm of this rule, created?): create it, or refresh its value and message."""
    message = alarm_message(rule, value)[:500]
    try:
        with transaction.atomic():
            alarm, created = Alarm.objects.get_or_create(
                rule=rule, device=device, cleared_at=None,
                defaults={"severity": rule.severity, "value": value, "message": message},
            )  # fmt: skip
    except IntegrityError:  # another evaluator created it between our read and our write
        alarm, created = Alarm.objects.get(rule=rule, device=device, cleared_at=None), False
    if not created:
        Alarm.objects.filter(pk=alarm.pk).update(value=value, message=message)
    return alarm, created


def alarm_auto_clear(rule: AlarmRule, device: Device) -> int:
    """Clear the device's open alarm of this rule (the condition no longer holds); return how many were cleared."""
    return Alarm.objects.filter(rule=rule, device=device, cleared_at=None).update(cleared_at=timezone.now())


def _rule_devices(rule: AlarmRule) -> list[Device]:
    if rule.device_id is not None:
        return [rule.device]
    return list(Device.objects.filter(status=Device.Status.ACTIVE))


def alarm_rule_evaluate(rule: AlarmRule, now: datetime | None = None) -> dict[str, int]:
    """Judge the rule on each of its devices, raise and clear alarms; return {"raised", "cleared", "errors"}.

    Failures are recorded on the rule (last_error) rather than raised, so one bad rule stops no other.
    """
    now = now or timezone.now()
    counts, errors = {"raised": 0, "cleared": 0, "errors": 0}, []
    for device in _rule_devices(rule):
        try:
            if rule.kind == AlarmRule.Kind.FORECAST:
                verdict = forecast_verdict(rule, device.name)
            else:
                verdict = threshold_verdict(rule, device.name, now)
        except Exception as exc:
            logger.warning("alarm rule %s on %s failed: %s", rule.pk, device.name, exc)
            verdict = Verdict(None, error=f"{device.name}: {type(exc).__name__}: {exc}")
        if verdict.error:
            errors.append(verdict.error)
        if verdict.holds:
            counts["raised"] += alarm_raise(rule, device, verdict.value)[1]
        elif verdict.holds is False:
            counts["cleared"] += alarm_auto_clear(rule, device)
    counts["errors"] = len(errors)
    AlarmRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, last_error="\n".join(errors[:5]))
    return counts


def alarms_evaluate(now: datetime | None = None) -> dict[str, int]:
    """Evaluate every enabled rule; return the totals {"rules", "raised", "cleared", "errors"}."""
    totals = {"rules": 0, "raised": 0, "cleared": 0, "errors": 0}
    for rule in AlarmRule.objects.filter(enabled=True).select_related("device"):
        totals["rules"] += 1
        for key, count in alarm_rule_evaluate(rule, now).items():
            totals[key] += count
    return totals


def alarm_acknowledge(alarm_id: int, user: AbstractBaseUser) -> Alarm:
    """Acknowledge the alarm (a no-op when already acknowledged); return it. Raises Alarm.DoesNotExist."""
    Alarm.objects.filter(pk=alarm_id, acknowledged_at=None).update(acknowledged_at=timezone.now(), acknowledged_by=user)
    return Alarm.objects.get(pk=alarm_id)


def alarm_clear(alarm_id: int, user: AbstractBaseUser) -> Alarm:
    """Clear the alarm by hand (a no-op when already cleared); return it. Raises Alarm.DoesNotExist."""
    Alarm.objects.filter(pk=alarm_id, cleared_at=None).update(cleared_at=timezone.now(), cleared_by=user)
    return Alarm.objects.get(pk=alarm_id)
