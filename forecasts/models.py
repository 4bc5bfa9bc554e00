"""Pipeline runs (crawl, ETL, train, deploy), the data catalog and trained models."""

from django.db import models
from django.utils import timezone


class PipelineRun(models.Model):
    """One run of a pipeline step; the Celery task updates it and the UI reads it."""

    class Kind(models.TextChoices):
        CRAWL = "crawl"
        ETL = "etl"
        TRAIN = "train"
        DEPLOY = "deploy"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED}

    @property
    def duration_s(self) -> float | None:
        """Return seconds from start to finish (or to now while running), None before start."""
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


class CatalogTable(models.Model):
    """A table the crawler found (the Glue Data Catalog, kept in the Django DB)."""

    database = models.CharField(max_length=128, default="iotcast")
    name = models.CharField(max_length=128)
    location = models.CharField(max_length=500)
    classification = models.CharField(max_length=32, default="json")
    columns = models.JSONField(default=list)
    partition_keys = models.JSONField(default=list)
    partitions = models.JSONField(default=list)
    objects_scanned = models.IntegerField(default=0)
    last_crawled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        unique_together = [("database", "name")]

    def __str__(self) -> str:
        return f"{self.database}.{self.name}"


class TrainedModel(models.Model):
    """A model produced by a successful training job, with its lineage and metrics."""

    name = models.CharField(max_length=128, unique=True)
    run = models.OneToOneField(PipelineRun, null=True, blank=True, on_delete=models.SET_NULL)
    metric = models.CharField(max_length=64)
    devices = models.JSONField(default=list)
    freq = models.CharField(max_length=16, default="h")
    hyperparameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    artifact_key = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name
