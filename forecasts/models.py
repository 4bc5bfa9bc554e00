"""Pipeline runs (crawl, ETL, train, deploy), the data catalog and trained models."""

from django.conf import settings
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
    # The run's log, oldest first: [{"t": ISO time, "level": "info"|"warning"|"error", "message"}], the newest
    # LOG_LINES only, so that a long training run cannot grow the row without bound.
    log = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    LOG_LINES = 200
    LOG_MESSAGE_CHARS = 500

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

    @classmethod
    def log_with(cls, log: list[dict], message: str, level: str = "info") -> list[dict]:
        """Return log with one line {t, level, message} appended, cut to the newest LOG_LINES."""
        line = {"t": timezone.now().isoformat(), "level": level, "message": message[: cls.LOG_MESSAGE_CHARS]}
        return [*log, line][-cls.LOG_LINES :]


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
    # Schema change policy (issue #4): partitions gone from the lake under DEPRECATE_IN_DATABASE,
    # fields found but not added under UpdateBehavior LOG, open type conflicts
    # ({"column", "table_type", "found": {partition: type}}), the change log, the last crawl's summary.
    deprecated_partitions = models.JSONField(default=list, blank=True)
    pending_columns = models.JSONField(default=list, blank=True)
    schema_conflicts = models.JSONField(default=list, blank=True)
    schema_changes = models.JSONField(default=list, blank=True)
    last_crawl = models.JSONField(default=dict, blank=True)

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
    # Registry lineage (issue #5): what it was trained on, by whom, from which code, and how a baseline did.
    dataset = models.ForeignKey("Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="models")
    job = models.OneToOneField("TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="model")
    baseline_metrics = models.JSONField(default=dict, blank=True)
    backtest = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Dataset(models.Model):
    """DeepAR train and test channels built from the lake (issue #5): one series per device for one metric."""

    name = models.SlugField(max_length=100, unique=True)
    metric = models.CharField(max_length=64)
    devices = models.JSONField(default=list)
    freq = models.CharField(max_length=16, default="h")
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    context_length = models.PositiveIntegerField()
    prediction_length = models.PositiveIntegerField()
    test_points = models.PositiveIntegerField()
    use_cat = models.BooleanField(default=True)
    dynamic_feat = models.JSONField(default=list, blank=True)
    train_key = models.CharField(max_length=500)
    test_key = models.CharField(max_length=500)
    series_count = models.PositiveIntegerField(default=0)
    observations = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class TrainingJob(models.Model):
    """A training job (issue #5): hyperparameters, live progress (epoch, losses), cancel flag and outcome."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        STOPPED = "stopped"  # ran past max_runtime_s

    name = models.CharField(max_length=128, unique=True)
    run = models.OneToOneField(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_job"
    )
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    hyperparameters = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    max_runtime_s = models.PositiveIntegerField(null=True, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    epochs = models.PositiveIntegerField(default=0)
    losses = models.JSONField(default=list, blank=True)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_finished(self) -> bool:
        return self.status not in {self.Status.QUEUED, self.Status.RUNNING}


class ModelAlias(models.Model):
    """A movable name (champion, challenger, ...) for one model version; deployments refer to aliases."""

    name = models.SlugField(max_length=64, unique=True)
    model = models.ForeignKey(TrainedModel, on_delete=models.CASCADE, related_name="aliases")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} -> {self.model.name}"
