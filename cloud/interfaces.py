"""The capability interfaces every backend implements, and the values they exchange.

A local and an aws class implement each interface; services depend only on these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# progress(percent 0-100, message) lets long work report to the row the UI reads.
Progress = Callable[[float, str], None]


def no_progress(percent: float, message: str) -> None:
    """A Progress callback that discards reports."""


class BackendError(Exception):
    """A cloud backend failed; the message is fit to show an operator."""


class BackendUnavailable(BackendError):
    """A backend's service could not be reached; retrying later may succeed."""


class QueryTimeout(BackendError):
    """A query ran past its time limit and was stopped."""


# --- lake -------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Lake(ABC):
    """An object store holding the raw, errors, curated, datasets and models zones."""

    url: str

    def location(self, prefix: str) -> str:
        """Return where prefix lives, as a catalog's table location: the URL without its query (an endpoint)."""
        return f"{self.url.split('?', 1)[0].rstrip('/')}/{prefix}"

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store data under key; the object is durable when this returns."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes; raise KeyError when it does not exist."""

    @abstractmethod
    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Return the objects under prefix, sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing key is not an error."""

    @abstractmethod
    def arrow_filesystem(self) -> tuple[Any, str]:
        """Return (pyarrow.fs.FileSystem, base path) such that base + '/' + key addresses a key."""

    @abstractmethod
    def local_paths(self, keys: list[str]) -> AbstractContextManager[list[Path]]:
        """Context manager yielding local file paths holding the keys' contents (copies where needed)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailable when the lake cannot be reached."""

    def exists(self, key: str) -> bool:
        """Return whether key exists."""
        try:
            self.get_bytes(key)
        except KeyError:
            return False
        return True


# --- device identity ----------------------------------------------------------
@dataclass(frozen=True)
class DeviceCredentials:
    certificate_id: str
    certificate_pem: str
    private_key_pem: str
    ca_pem: str
    fingerprint: str
    not_after: datetime


CERTIFICATE_STATES = ("ACTIVE", "INACTIVE", "REVOKED")


@dataclass(frozen=True)
class BrokerEndpoint:
    host: str
    port: int


@dataclass(frozen=True)
class TopicRuleSpec:
    """An IoT topic rule with its Firehose delivery stream (devices.models.TopicRule, as the backends see it)."""

    name: str
    where: str = ""
    enabled: bool = True
    buffer_size_mb: int = 5
    buffer_interval_s: int = 300
    prefix: str = "raw/"
    error_prefix: str = "errors/"


@dataclass(frozen=True)
class TopicRuleDeployment:
    """Where a deployed rule lives (an ARN, or the local ingest), and what the operator must know about it."""

    location: str
    message: str
    restart_needed: bool = False


class DeviceIdentity(ABC):
    """Issues device certificates and says where devices connect (IoT Core or the project CA)."""

    @abstractmethod
    def register_thing(self, thing_name: str) -> DeviceCredentials:
        """Create the thing's identity and return its new certificate and key."""

    @abstractmethod
    def broker_endpoint(self) -> BrokerEndpoint:
        """Return the MQTT endpoint devices connect to."""

    @abstractmethod
    def issue_certificate(self, thing_name: str) -> DeviceCredentials:
        """Issue one more certificate for an existing thing (rotation: the old ones keep working)."""

    @abstractmethod
    def set_certificate_state(self, thing_name: str, certificate_id: str, state: str) -> None:
        """Set a certificate ACTIVE, INACTIVE (reversible) or REVOKED (final), as IoT Core's update_certificate.

        INACTIVE and REVOKED take effect on the broker at once and drop the thing's live connections.
        """

    @abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailable when devices could not connect now (the broker or IoT Core is down)."""

    @abstractmethod
    def apply_topic_rule(self, rule: TopicRuleSpec, lake: Lake) -> TopicRuleDeployment:
        """Create or replace the topic rule and its delivery stream writing into lake; say where it lives.

        Idempotent, so deploying again retries a failed deployment. Raises BackendError when it cannot deploy.
        """


# --- catalog (crawler) --------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass
class TableSchema:
    database: str
    name: str
    location: str
    columns: list[Column]
    partition_keys: list[Column]
    partitions: list[dict[str, str]] = field(default_factory=list)
    classification: str = "json"
    objects_scanned: int = 0
    # {partition path "year=2026/month=11/...": {field: type}} of the partitions this crawl read
    # (Glue keeps a schema per partition): the crawl service finds type conflicts with it.
    partition_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    # Objects the crawler could not parse (corrupt JSON): skipped and named, never fatal.
    unreadable: list[str] = field(default_factory=list)


# Glue's SchemaChangePolicy and RecrawlPolicy values.
UPDATE_BEHAVIORS = ("UPDATE_IN_DATABASE", "LOG")
DELETE_BEHAVIORS = ("LOG", "DELETE_FROM_DATABASE", "DEPRECATE_IN_DATABASE")
RECRAWL_POLICIES = ("CRAWL_EVERYTHING", "CRAWL_NEW_FOLDERS_ONLY")


@dataclass(frozen=True)
class CrawlPolicy:
    """How a crawl treats schema changes and which folders it reads (Glue's crawler policies)."""

    update_behavior: str = "UPDATE_IN_DATABASE"
    delete_behavior: str = "DEPRECATE_IN_DATABASE"
    recrawl_policy: str = "CRAWL_EVERYTHING"


class Crawler(ABC):
    """Infers the raw zone's table schema (a Glue crawler)."""

    @abstractmethod
    def crawl(
        self,
        lake: Lake,
        progress: Progress = no_progress,
        policy: CrawlPolicy | None = None,
        crawled: list[dict[str, str]] | None = None,
    ) -> TableSchema:
        """Return the schema found in the lake's raw zone.

        partitions lists every partition present; columns and partition_columns describe the
        objects read. With policy.recrawl_policy CRAWL_NEW_FOLDERS_ONLY only partitions not in
        crawled (those the catalog already holds) are read.
        """

    @abstractmethod
    def register_curated(self, lake: Lake, progress: Progress = no_progress) -> TableSchema:
        """Record the curated Parquet table (`telemetry`, partition key date) in the backend's catalog.

        The ETL job calls it after each run, as a Glue job that updates the Data Catalog does. Returns the
        table: columns from the Parquet files' schemas, one partition per date folder, classification
        parquet; unreadable lists files whose footer cannot be read (skipped). Raises BackendError.
        """


# --- ETL ------------------------------------------------------------------------
@dataclass
class EtlResult:
    objects_processed: int = 0
    rows_read: int = 0
    rows_written: int = 0
    duplicates_dropped: int = 0
    rows_rejected: int = 0
    partitions_written: list[str] = field(default_factory=list)
    partitions_compacted: list[str] = field(default_factory=list)


# Glue's --job-bookmark-option values: enable (only new objects, move the bookmark on), disable
# (every object, bookmark untouched), pause (only new objects, bookmark untouched).
BOOKMARK_OPTIONS = ("job-bookmark-enable", "job-bookmark-disable", "job-bookmark-pause")


class EtlJob(ABC):
    """Turns new raw JSON objects into curated Parquet (a Glue job with bookmarks)."""

    @abstractmethod
    def run(
        self, lake: Lake, progress: Progress = no_progress, bookmark_option: str = "job-bookmark-enable"
    ) -> EtlResult:
        """Process the raw objects the bookmark option selects and return what was done."""

    @abstractmethod
    def reset_bookmark(self, lake: Lake) -> None:
        """Forget what the job has processed (Glue's reset-job-bookmark): the next run reads everything."""


# --- query ------------------------------------------------------------------------
@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    bytes_scanned: int = 0
    elapsed_ms: float = 0.0
    # What bytes_scanned counts, in words ("" for the engine's own figure, e.g. Athena's DataScannedInBytes).
    bytes_scanned_basis: str = ""

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield each row as a column -> value dict."""
        for row in self.rows:
            yield dict(zip(self.columns, row, strict=True))


class QueryEngine(ABC):
    """Runs read-only SQL over the lake (Athena).

    Tables: `telemetry` (curated Parquet) and `telemetry_live` (curated plus the raw tail).
    """

    @abstractmethod
    def execute(
        self, lake: Lake, sql: str, params: list[Any] | None = None, timeout_s: float | None = None
    ) -> QueryResult:
        """Run sql with positional ? params and return its rows.

        timeout_s, when given, stops the query after that many seconds (raise QueryTimeout).
        """


# --- training ---------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingSpec:
    job_name: str
    train_key: str
    test_key: str
    hyperparameters: dict[str, str]
    output_prefix: str
    dynamic_feat: tuple[str, ...] = ()  # names of the channels' calendar features, recorded with the model
    # Where the model comes from (dataset, metric, devices, freq, code version ...), stored with the artifact.
    lineage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingResult:
    artifact_key: str
    metrics: dict[str, float]


class Trainer(ABC):
    """Trains DeepAR on the lake's channels and stores model.tar.gz (SageMaker training)."""

    @abstractmethod
    def train(self, lake: Lake, spec: TrainingSpec, progress: Progress = no_progress) -> TrainingResult:
        """Train, evaluate on the test channel, store the artifact; return its key and metrics."""


# --- hosting -----------------------------------------------------------------------
@dataclass(frozen=True)
class VariantSpec:
    name: str
    model_name: str
    artifact_key: str
    weight: float
    # A shadow variant gets a copy of a share (weight / production weights) of requests; it never answers.
    shadow: bool = False
    instance_count: int = 1


@dataclass(frozen=True)
class Invocation:
    body: bytes
    content_type: str
    invoked_variant: str


@dataclass(frozen=True)
class ShadowRecord:
    """What a shadow variant answered to one mirrored request, next to how production answered it.

    Latencies are None where the backend does not record them (SageMaker's data capture keeps none).
    """

    at: float  # epoch seconds
    variant: str
    status: int
    answer: str
    model: str = ""
    model_ms: float | None = None
    total_ms: float | None = None
    production_variant: str = ""
    production_model_ms: float | None = None
    production_total_ms: float | None = None


class InvocationError(BackendError):
    """The endpoint answered with an error; status and message are SageMaker's."""

    def __init__(self, status: int, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


class Hosting(ABC):
    """Serves models behind named endpoints with weighted production variants (SageMaker hosting)."""

    @abstractmethod
    def apply_endpoint(self, endpoint_name: str, variants: list[VariantSpec]) -> None:
        """Create or update the endpoint so that it serves exactly these variants."""

    @abstractmethod
    def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str = "application/json",
        accept: str = "application/json",
        target_variant: str | None = None,
        custom_attributes: str | None = None,
    ) -> Invocation:
        """Invoke the endpoint; raise InvocationError for an error answer, BackendUnavailable when unreachable."""

    @abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailable when the serving side cannot be reached."""

    def update_weights(self, endpoint_name: str, variants: list[VariantSpec]) -> None:
        """Change only the variants' weights and instance counts (UpdateEndpointWeightsAndCapacities)."""
        self.apply_endpoint(endpoint_name, variants)

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Stop serving the endpoint; deleting a missing endpoint is not an error."""
        raise BackendError(f"{type(self).__name__} cannot delete endpoints")

    def variant_metrics(self, endpoint_name: str, since: float, period: int = 10) -> dict[str, Any]:
        """Return {"period", "since", "variants": {name: {"points": [{t, invocations, errors_4xx, errors_5xx,
        model_latency_ms, overhead_latency_ms, p99_latency_ms}], "total": {...}}}} since epoch seconds."""
        return {"period": period, "since": int(since), "variants": {}}

    def shadow_records(self, endpoint_name: str, limit: int = 20) -> list[ShadowRecord]:
        """Return the newest answers of the endpoint's shadow variant, newest first (at most limit).

        Raise BackendError for an unknown endpoint, NotImplementedError where the backend cannot read them.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read shadow answers")

    def managed_rollout(self, endpoint_name: str, variants: list[VariantSpec], policy: dict[str, Any]) -> bool:
        """Roll variants out with the service's own guardrails (canary/linear, baking, auto-rollback).

        Return False when the backend has none (the deployments app then shifts traffic step by step
        itself); True once the service finished; raise BackendError when it rolled back or failed.
        """
        return False
