"""The deploy step: put a trained model behind an endpoint's production variant and apply it to hosting."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from cloud.backends import get_backend
from cloud.interfaces import Progress, no_progress
from deployments.models import Endpoint, ProductionVariant
from deployments.selectors import model_resolve, variant_specs
from forecasts.models import TrainedModel


def variant_upsert(endpoint_name: str, variant_name: str, model: TrainedModel, weight: float) -> Endpoint:
    """Create or update the endpoint's variant to serve model with weight; return the endpoint (Updating).

    Raises ValueError for a negative weight.
    """
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    with transaction.atomic():
        endpoint, created = Endpoint.objects.get_or_create(name=endpoint_name)
        ProductionVariant.objects.update_or_create(
            endpoint=endpoint, name=variant_name, defaults={"model": model, "weight": weight}
        )
        endpoint.status = Endpoint.Status.CREATING if created else Endpoint.Status.UPDATING
        endpoint.failure_reason = ""
        endpoint.save(update_fields=["status", "failure_reason", "updated_at"])
    return endpoint


def endpoint_apply(endpoint: Endpoint) -> Endpoint:
    """Apply all the endpoint's variants to the hosting backend; mark it InService, or Failed with the reason.

    Re-raises the backend's error after recording it.
    """
    try:
        get_backend("hosting").apply_endpoint(endpoint.name, variant_specs(endpoint))
    except Exception as exc:
        endpoint.status, endpoint.failure_reason = Endpoint.Status.FAILED, f"{type(exc).__name__}: {exc}"
        endpoint.save(update_fields=["status", "failure_reason", "updated_at"])
        raise
    endpoint.status, endpoint.failure_reason = Endpoint.Status.IN_SERVICE, ""
    endpoint.save(update_fields=["status", "failure_reason", "updated_at"])
    return endpoint


def deploy_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Deploy params["model"] (a name or "latest") to params["endpoint"]'s variant; return what now serves.

    Returns {"endpoint", "status", "variants": [{"name", "model", "weight"}]}. Raises NotDeployed when
    the model does not exist, ValueError for a bad weight, BackendError when hosting refuses.
    """
    model = model_resolve(params.get("model") or "latest")
    endpoint_name = params.get("endpoint") or settings.DEFAULT_ENDPOINT_NAME
    variant = params.get("variant") or "AllTraffic"
    weight = float(params.get("weight", 1.0))
    progress(10, f"deploying {model.name} to {endpoint_name}/{variant} (weight {weight:g})")
    endpoint = endpoint_apply(variant_upsert(endpoint_name, variant, model, weight))
    progress(100, f"{endpoint.name} is {endpoint.status}")
    served = [{"name": v.name, "model": v.model_name, "weight": v.weight} for v in variant_specs(endpoint)]
    return {"endpoint": endpoint.name, "status": endpoint.status, "variants": served}
