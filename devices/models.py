"""Devices (things) and the certificates that identify them."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from dataplane.broker import SERVICE_USERS
from dataplane.ingest.where import WhereError, compile_where

THING_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9_-]{1,128}$", "Use 1-128 letters, digits, hyphens or underscores (it becomes an MQTT topic level)."
)

# The broker's own clients authenticate with certificates of these names: no device may take one.
RESERVED_NAMES = SERVICE_USERS


def validate_not_reserved(name: str) -> None:
    """Raise ValidationError when name is one of the broker's service users."""
    if name in RESERVED_NAMES:
        raise ValidationError(f"{name!r} is reserved for an IoTCast service; choose another name.")


class Device(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"

    name = models.CharField(max_length=128, unique=True, validators=[THING_NAME_VALIDATOR, validate_not_reserved])
    device_type = models.CharField(max_length=64, blank=True, help_text="IoT Core's thing type, e.g. air-quality")
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
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.device.name}:{self.fingerprint[:16]}"


def validate_where(text: str) -> None:
    """Raise ValidationError when text is not a WHERE clause the ingest can evaluate."""
    try:
        compile_where(text)
    except WhereError as exc:
        raise ValidationError(str(exc)) from exc


class TopicRule(models.Model):
    """The IoT rule and its Firehose delivery stream, as the ingest service applies them.

    SELECT *, topic(3) AS device_id, timestamp() AS received_at FROM 'dt/iotcast/+/telemetry' [WHERE ...]
    The ingest reads its rule when it starts: restart it to apply a change.
    """

    name = models.CharField(max_length=128, unique=True, validators=[THING_NAME_VALIDATOR])
    where = models.TextField(
        blank=True, validators=[validate_where], help_text="e.g. ozone >= 0 AND (site = 'harbour' OR pm IS NOT NULL)"
    )
    enabled = models.BooleanField(default=True)
    buffer_size_mb = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(128)], help_text="Firehose SizeInMBs, 1-128"
    )
    buffer_interval_s = models.PositiveSmallIntegerField(
        default=300,
        validators=[MinValueValidator(0), MaxValueValidator(900)],
        help_text="Firehose IntervalInSeconds, 0-900",
    )
    prefix = models.CharField(max_length=256, default="raw/")
    error_output_prefix = models.CharField(max_length=256, default="errors/")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def sql(self) -> str:
        """Return the rule's statement as IoT Core would show it."""
        where = f" WHERE {self.where}" if self.where.strip() else ""
        return f"SELECT *, topic(3) AS device_id, timestamp() AS received_at FROM 'dt/iotcast/+/telemetry'{where}"
