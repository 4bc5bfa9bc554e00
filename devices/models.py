"""Devices (things) and the certificates that identify them."""

import json

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
    # Set by the ingest once per flushed object (not per message): when the device's latest durable
    # record arrived, and that record (capped in size; see dataplane.ingest.directory).
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_message = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def last_message_json(self) -> str:
        """Return last_message as compact JSON text (empty when there is none), for display."""
        return json.dumps(self.last_message, separators=(",", ":")) if self.last_message else ""

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
    """Raise ValidationError when text is not a WHERE clause the ingest can evaluate.

    Comparing a measurement with a string is refused: it would let text into a numeric column.
    """
    # The ETL's contract: these fields are numeric columns of the lake (lazy: the module loads DuckDB).
    from cloud.local.duckdb_telemetry import DEFAULT_METRICS, LOCATION_COLUMNS

    try:
        compiled = compile_where(text)
    except WhereError as exc:
        raise ValidationError(str(exc)) from exc
    numeric = sorted((compiled.string_fields if compiled else set()) & {*DEFAULT_METRICS, *LOCATION_COLUMNS})
    if numeric:
        raise ValidationError(f"{', '.join(numeric)} hold numbers: compare them with a number, not a string.")


# The rule the ingest applies unless told another (manage.py run_ingest --rule).
DEFAULT_TOPIC_RULE = "iotcast-telemetry"


class TopicRule(models.Model):
    """The IoT rule and its Firehose delivery stream, as the ingest service applies them.

    SELECT *, topic(3) AS device_id, timestamp() AS received_at FROM 'dt/iotcast/+/telemetry' [WHERE ...]
    A payload field the WHERE compares with a string (site = 'harbour') may hold short text: it is used
    to select and is not stored (the lake holds numbers); other payload strings are processing-failed.
    Saved through devices.services.topic_rule_deploy, which deploys it (aws: IoT rule + Firehose stream);
    the local ingest (run_ingest --rule NAME) re-reads it whenever it changes.
    """

    # What the admin form and the REST API show of a rule, in this order (sql and updated_at are read-only).
    SHOWN_FIELDS = (
        "name",
        "enabled",
        "where",
        "sql",
        "buffer_size_mb",
        "buffer_interval_s",
        "prefix",
        "error_output_prefix",
        "updated_at",
    )

    name = models.CharField(max_length=128, unique=True, validators=[THING_NAME_VALIDATOR])
    where = models.TextField(
        blank=True,
        validators=[validate_where],
        help_text="e.g. ozone >= 0 AND (site = 'harbour' OR particulate_matter IS NOT NULL). "
        "A field compared with a string (site) may hold text in the payload: it selects readings and is not stored.",
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
