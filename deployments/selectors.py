"""Reads of endpoints, variants, configs, history, operations and the models they serve."""

from __future__ import annotations

from django.db.models import QuerySet

from cloud.interfaces import VariantSpec
from deployments.models import Endpoint, EndpointEvent, EndpointOperation, ProductionVariant
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
