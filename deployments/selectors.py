"""Reads of endpoints, variants, configs, history, operations and the models they serve."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from cloud.backends import get_backend
from cloud.interfaces import ShadowRecord, VariantSpec
from deployments.models import Endpoint, EndpointConfig, EndpointEvent, EndpointOperation, ProductionVariant
from forecasts.models import TrainedModel
from forecasts.training_selectors import ModelNotFound, model_resolve_alias


class NotDeployed(LookupError):
    """The endpoint, variant or model asked for does not exist; the message says which."""


def endpoint_list() -> QuerySet[Endpoint]:
    """Return all endpoints with their variants and models prefetched."""
    return Endpoint.objects.prefetch_related("variants__model")


def endpoint_get(name: str) -> Endpoint:
    """Return the endpoint; raise NotDeployed when it does not exist."""
    try:
        return endpoint_list().get(name=name)
    except Endpoint.DoesNotExist:
        raise NotDeployed(f"endpoint {name!r} does not exist; deploy a model first (manage.py deploy)") from None


def model_resolve(name: str) -> TrainedModel:
    """Return the model an alias (champion, ...) points at, else the model of that name, else the newest one
    for "latest" (the training app's resolution, so that both apps agree on what an alias means).

    Raises NotDeployed when there is none.
    """
    try:
        return model_resolve_alias(name)
    except ModelNotFound as exc:
        if name == "latest":
            raise NotDeployed(str(exc)) from None
        raise NotDeployed(f"model {name!r} does not exist (no model or alias has that name)") from None


def variant_specs(endpoint: Endpoint) -> list[VariantSpec]:
    """Return the hosting backend's view of all the endpoint's variants."""
    variants = ProductionVariant.objects.filter(endpoint=endpoint).select_related("model")
    return [
        VariantSpec(v.name, v.model.name, v.model.artifact_key, v.weight, v.shadow, v.instance_count) for v in variants
    ]


def endpoint_history(name: str, limit: int = 50) -> QuerySet[EndpointEvent]:
    """Return the endpoint's latest history lines, newest first."""
    return EndpointEvent.objects.filter(endpoint_name=name)[:limit]


@dataclass(frozen=True)
class HistoryLine:
    """One history line with the config in effect when it happened and who asked for the change."""

    at: datetime
    status: str
    message: str
    config: str  # the endpoint config in effect after the line ("" before the first one)
    actor: str  # the user whose operation made it, "command line" (manage.py deploy), or "system"


def _config_at(configs: list[EndpointConfig], at: datetime) -> str:
    """Return the name of the newest of configs (newest first) created at or before at, else ""."""
    return next((config.name for config in configs if config.created_at <= at), "")


def _actor_at(operations: list[EndpointOperation], at: datetime) -> str:
    """Return who asked for the operation (newest first) that was under way at at; "system" when none was."""
    now = timezone.now()
    for operation in operations:
        if operation.created_at <= at <= (operation.finished_at or now):
            return operation.requested_by.get_username() if operation.requested_by else "command line"
    return "system"


def endpoint_history_lines(name: str, limit: int = 20) -> list[HistoryLine]:
    """Return the endpoint's latest history lines, newest first, each with its config and who made it."""
    events = list(endpoint_history(name, limit))
    if not events:
        return []
    oldest = events[-1].at
    configs = list(EndpointConfig.objects.filter(endpoint_name=name).order_by("-created_at", "-pk"))
    operations = list(
        EndpointOperation.objects.filter(endpoint_name=name, created_at__lte=events[0].at)
        .exclude(finished_at__lt=oldest)
        .select_related("requested_by")
    )
    return [
        HistoryLine(e.at, e.status, e.message, _config_at(configs, e.at), _actor_at(operations, e.at)) for e in events
    ]


@dataclass(frozen=True)
class ShadowAnswers:
    """The newest shadow records of an endpoint and the median latencies of both sides over them."""

    endpoint: str
    records: list[ShadowRecord]
    production_p50_ms: float | None
    shadow_p50_ms: float | None
    shadow_errors: int


def _p50(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 3) if known else None


def shadow_answers(name: str, limit: int = 20) -> ShadowAnswers:
    """Return the endpoint's newest shadow answers with production's and the shadow's p50 model latency.

    Raises NotDeployed (unknown endpoint), BackendError/BackendUnavailable from hosting, NotImplementedError
    where the hosting backend cannot read shadow answers.
    """
    endpoint_get(name)
    records = get_backend("hosting").shadow_records(name, limit)
    return ShadowAnswers(
        endpoint=name,
        records=records,
        production_p50_ms=_p50([r.production_model_ms for r in records]),
        shadow_p50_ms=_p50([r.model_ms for r in records if r.status == 200]),
        shadow_errors=sum(1 for r in records if r.status != 200),
    )


def operation_list(endpoint_name: str | None = None, limit: int = 20) -> QuerySet[EndpointOperation]:
    """Return the latest operations (of one endpoint when named), newest first."""
    operations = EndpointOperation.objects.all()
    if endpoint_name:
        operations = operations.filter(endpoint_name=endpoint_name)
    return operations[:limit]


def operation_get(endpoint_name: str, operation_id: int) -> EndpointOperation:
    """Return the endpoint's operation; raise NotDeployed when no operation of that endpoint has the id."""
    operation = EndpointOperation.objects.filter(pk=operation_id, endpoint_name=endpoint_name).first()
    if operation is None:
        raise NotDeployed(f"endpoint {endpoint_name!r} has no operation {operation_id}")
    return operation


def operation_active(endpoint_name: str) -> EndpointOperation | None:
    """Return the endpoint's queued or running operation, if any."""
    active = [EndpointOperation.Status.QUEUED, EndpointOperation.Status.RUNNING]
    return EndpointOperation.objects.filter(endpoint_name=endpoint_name, status__in=active).first()
