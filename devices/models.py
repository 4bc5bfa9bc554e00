"""Devices (things) and the certificates that identify them."""

from django.core.validators import RegexValidator
from django.db import models

THING_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9_-]{1,128}$", "Use 1-128 letters, digits, hyphens or underscores (it becomes an MQTT topic level)."
)


class Device(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"

    name = models.CharField(max_length=128, unique=True, validators=[THING_NAME_VALIDATOR])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def telemetry_topic(self) -> str:
        """Return the only topic this device may publish telemetry on."""
        return f"dt/iotcast/{self.name}/telemetry"


class DeviceCertificate(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        REVOKED = "revoked"

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="certificates")
    certificate_id = models.CharField(max_length=128, unique=True)
    fingerprint = models.CharField(max_length=95)
    certificate_pem = models.TextField()
    not_after = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.device.name}:{self.fingerprint[:16]}"
