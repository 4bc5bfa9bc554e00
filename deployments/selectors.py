"""Reads of endpoints, variants, configs, history, operations and the models they serve."""

from __future__ import annotations

from django.db.models import QuerySet

from cloud.interfaces import VariantSpec
from deployments.models import Endpoint, EndpointEvent, EndpointOperation, ProductionVariant
from forecasts.models import TrainedModel


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


def _model_by_alias(name: str) -> TrainedModel | None:
    try:  # the training app's selector, when it has one; else its ModelAlias table
        from forecasts.selectors import model_resolve_alias  # type: ignore[attr-defined]

        return model_resolve_alias(name)
    except ImportError:
        pass
    except LookupError:
        return None
    from forecasts.models import ModelAlias

    alias = ModelAlias.objects.select_related("model").filter(name=name).first()
    return alias.model if alias else None


def model_resolve(name: str) -> TrainedModel:
    """Return the named model, the model an alias (champion, ...) points at, or the newest for "latest".

    Raises NotDeployed when there is none.
    """
    if name == "latest":
        model = TrainedModel.objects.order_by("-created_at", "-pk").first()
        if model is None:
            raise NotDeployed("no trained model exists yet; run training first (manage.py train)")
        return model
    model = TrainedModel.objects.filter(name=name).first() or _model_by_alias(name)
    if model is None:
        raise NotDeployed(f"model {name!r} does not exist")
    return model


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


def operation_active(endpoint_name: str) -> EndpointOperation | None:
    """Return the endpoint's queued or running operation, if any."""
    active = [EndpointOperation.Status.QUEUED, EndpointOperation.Status.RUNNING]
    return EndpointOperation.objects.filter(endpoint_name=endpoint_name, status__in=active).first()
