"""Reads of endpoints, variants and the models they serve."""

from __future__ import annotations

from django.db.models import QuerySet

from cloud.interfaces import VariantSpec
from deployments.models import Endpoint, ProductionVariant
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


def model_resolve(name: str) -> TrainedModel:
    """Return the named model, or the newest for "latest"; raise NotDeployed when there is none."""
    if name == "latest":
        model = TrainedModel.objects.order_by("-created_at", "-pk").first()
        if model is None:
            raise NotDeployed("no trained model exists yet; run training first (manage.py train)")
        return model
    try:
        return TrainedModel.objects.get(name=name)
    except TrainedModel.DoesNotExist:
        raise NotDeployed(f"model {name!r} does not exist") from None


def variant_specs(endpoint: Endpoint) -> list[VariantSpec]:
    """Return the hosting backend's view of all the endpoint's variants."""
    variants = ProductionVariant.objects.filter(endpoint=endpoint).select_related("model")
    return [VariantSpec(v.name, v.model.name, v.model.artifact_key, v.weight) for v in variants]
