"""Alarm rules (threshold and forecast) and the alarms they raise, with ThingsBoard's acknowledge/clear states."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from devices.models import Device


class AlarmRule(models.Model):
    """A condition on one metric, for one device or for every device."""

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "threshold on readings"
        FORECAST = "forecast", "forecast crossing"

    class Operator(models.TextChoices):
        ABOVE = "gt", ">"
        BELOW = "lt", "<"

    class Severity(models.TextChoices):
        CRITICAL = "critical"
        MAJOR = "major"
        MINOR = "minor"
        WARNING = "warning"

    class Quantile(models.TextChoices):
        P50 = "0.5", "p50"
        P90 = "0.9", "p90"

    name = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.THRESHOLD)
    metric = models.CharField(max_length=64)
    operator = models.CharField(max_length=2, choices=Operator.choices, default=Operator.ABOVE)
    threshold = models.FloatField()
    # Threshold rules: every reading of the last duration_minutes crosses (0: the newest reading does).
    duration_minutes = models.PositiveIntegerField(default=0)
    # Forecast rules: which quantile of the forecast must cross within the model's horizon.
    quantile = models.CharField(max_length=4, choices=Quantile.choices, default=Quantile.P90)
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, related_name="alarm_rules")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MAJOR)
    enabled = models.BooleanField(default=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name

    def crosses(self, value: float | None) -> bool:
        """Return whether value crosses the threshold in the rule's direction (None never does)."""
        if value is None or value != value:
            return False
        return value > self.threshold if self.operator == self.Operator.ABOVE else value < self.threshold


class Alarm(models.Model):
    """One alarm of a rule on a device: active until cleared, acknowledged or not (ThingsBoard's four states)."""

    rule = models.ForeignKey(AlarmRule, on_delete=models.CASCADE, related_name="alarms")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="alarms")
    severity = models.CharField(max_length=16, choices=AlarmRule.Severity.choices)
    value = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=500)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cleared_at = models.DateTimeField(null=True, blank=True)
    # None with cleared_at set: cleared by the evaluator because the condition no longer holds.
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            # At most one uncleared alarm per rule and device, even with two evaluators at once.
            models.UniqueConstraint(fields=["rule", "device"], condition=Q(cleared_at=None), name="one_open_alarm")
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} on {self.device.name} ({self.status})"

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def status(self) -> str:
        """Return ThingsBoard's status name: active_unack, active_ack, cleared_unack or cleared_ack."""
        return f"{'active' if self.active else 'cleared'}_{'ack' if self.acknowledged else 'unack'}"
