"""SageMaker hosting's control plane: endpoints, their production variants and configs, history, operations."""

from django.conf import settings
from django.db import models

from forecasts.models import TrainedModel


class Endpoint(models.Model):
    class Status(models.TextChoices):
        CREATING = "Creating"
        IN_SERVICE = "InService"
        UPDATING = "Updating"
        ROLLING_BACK = "RollingBack"
        FAILED = "Failed"
        DELETING = "Deleting"

    name = models.CharField(max_length=63, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATING)
    failure_reason = models.TextField(blank=True)
    config = models.ForeignKey("EndpointConfig", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProductionVariant(models.Model):
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=63)
    model = models.ForeignKey(TrainedModel, on_delete=models.PROTECT, related_name="variants")
    weight = models.FloatField(default=1.0)
    instance_count = models.PositiveIntegerField(default=1)
    # A shadow variant receives a copy of a share (weight / production weights) of requests; it never answers.
    shadow = models.BooleanField(default=False)

    class Meta:
        unique_together = [("endpoint", "name")]
        ordering = ["shadow", "name"]

    def __str__(self) -> str:
        return f"{self.endpoint.name}/{self.name}"


class EndpointConfig(models.Model):
    """An immutable snapshot of the variants an endpoint was given (SageMaker's EndpointConfig)."""

    name = models.CharField(max_length=63, unique=True)
    endpoint_name = models.CharField(max_length=63, db_index=True)
    # [{"name", "model", "artifact_key", "weight", "instance_count", "shadow"}]
    variants = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class EndpointEvent(models.Model):
    """One line of an endpoint's history: a status change, an applied config, a rollout step."""

    endpoint_name = models.CharField(max_length=63, db_index=True)
    status = models.CharField(max_length=16, blank=True)
    message = models.CharField(max_length=500)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.endpoint_name} {self.at:%Y-%m-%d %H:%M:%S} {self.message}"


class EndpointOperation(models.Model):
    """An admin operation on an endpoint, executed by a Celery task; the UI and the CLI follow this row."""

    class Kind(models.TextChoices):
        CREATE = "create"
        UPDATE_WEIGHTS = "update_weights"
        DEPLOY = "deploy"
        DELETE = "delete"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        ROLLED_BACK = "rolled_back"
        STOPPED = "stopped"
        FAILED = "failed"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    endpoint_name = models.CharField(max_length=63, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    # Rollout steps as they happen: [{"at", "percent", "message", "state"}]
    steps = models.JSONField(default=list, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    stop_requested = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.endpoint_name} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status not in {self.Status.QUEUED, self.Status.RUNNING}


class ForecastRecord(models.Model):
    """A forecast a variant served (issue #6): kept to score it against the actuals as they reach the lake, so a
    rollout can roll back a model that forecasts worse than the one it replaces."""

    endpoint_name = models.CharField(max_length=63)
    variant = models.CharField(max_length=63)
    model_name = models.CharField(max_length=128)
    device = models.CharField(max_length=128)
    metric = models.CharField(max_length=64)
    freq = models.CharField(max_length=16, default="h")
    origin = models.DateTimeField(help_text="the last observed time the forecast starts after")
    first_target = models.DateTimeField()
    last_target = models.DateTimeField()
    timestamps = models.JSONField(default=list)  # ISO times, one per forecast point
    mean = models.JSONField(default=list)
    quantiles = models.JSONField(default=dict)  # {"0.1": [...], "0.5": [...], ...}
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["endpoint_name", "model_name", "created_at"])]

    def __str__(self) -> str:
        return f"{self.endpoint_name}/{self.variant} {self.device} {self.metric} from {self.origin:%Y-%m-%d %H:%M}"
