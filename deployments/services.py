"""Endpoint services: create, deploy to a variant, change weights and capacities, delete; each applied to hosting.

Every change is recorded in the endpoint's history (EndpointEvent) and as a new EndpointConfig snapshot.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cloud.backends import get_backend
from cloud.interfaces import Progress, no_progress
from deployments.models import Endpoint, EndpointConfig, EndpointEvent, ProductionVariant
from deployments.selectors import NotDeployed, endpoint_get, model_resolve, variant_specs
from forecasts.models import TrainedModel

__all__ = ["NotDeployed"]


class EndpointError(ValueError):
    """A request about an endpoint cannot be done (bad weights, unknown variant, busy endpoint); says why."""


def event_record(endpoint_name: str, message: str, status: str = "") -> None:
    """Append a line to the endpoint's history."""
    EndpointEvent.objects.create(endpoint_name=endpoint_name, status=status, message=message[:500])


def endpoint_status_set(endpoint: Endpoint, status: str, reason: str = "") -> Endpoint:
    """Save the endpoint's status (and failure reason) and record it in its history; return the endpoint."""
    endpoint.status, endpoint.failure_reason = status, reason
    endpoint.save(update_fields=["status", "failure_reason", "updated_at"])
    event_record(endpoint.name, reason or f"status {status}", status)
    return endpoint


def weights_validate(weights: dict[str, float], shadows: set[str] = frozenset(), whole: bool = True) -> None:
    """Raise EndpointError unless every weight is a finite number >= 0 and (for a whole endpoint's weights,
    whole=True) a production variant has one > 0."""
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise EndpointError(f"the weight of {name} must be a finite number, got {weight!r}")
        if weight < 0:
            raise EndpointError(f"the weight of {name} must be >= 0, got {weight}")
    if whole and weights and not any(w > 0 for name, w in weights.items() if name not in shadows):
        raise EndpointError("at least one production variant needs a weight > 0 (all zero would serve nothing)")


def config_snapshot(endpoint: Endpoint) -> EndpointConfig:
    """Store the endpoint's variants as a new EndpointConfig, make it the endpoint's config; return it."""
    variants = [
        {"name": v.name, "model": v.model_name, "artifact_key": v.artifact_key, "weight": v.weight,
         "instance_count": v.instance_count, "shadow": v.shadow}
        for v in variant_specs(endpoint)
    ]  # fmt: skip
    stamp = timezone.now().strftime("%Y%m%d%H%M%S%f")
    config = EndpointConfig.objects.create(name=f"{endpoint.name}-{stamp}"[:63], endpoint_name=endpoint.name,
                                           variants=variants)  # fmt: skip
    Endpoint.objects.filter(pk=endpoint.pk).update(config=config)
    endpoint.config = config
    return config


def variant_upsert(
    endpoint_name: str,
    variant_name: str,
    model: TrainedModel,
    weight: float,
    instance_count: int = 1,
    shadow: bool = False,
) -> Endpoint:
    """Create or update the endpoint's variant to serve model with weight; return the endpoint (Creating/Updating).

    Raises EndpointError (a ValueError) for a negative weight.
    """
    weights_validate({variant_name: weight}, whole=False)
    with transaction.atomic():
        endpoint, created = Endpoint.objects.get_or_create(name=endpoint_name)
        ProductionVariant.objects.update_or_create(
            endpoint=endpoint,
            name=variant_name,
            defaults={"model": model, "weight": weight, "instance_count": instance_count, "shadow": shadow},
        )
        status = Endpoint.Status.CREATING if created else Endpoint.Status.UPDATING
        endpoint_status_set(endpoint, status)
    event_record(endpoint_name, f"variant {variant_name} -> model {model.name}, weight {weight:g}")
    return endpoint


def endpoint_apply(endpoint: Endpoint, weights_only: bool = False) -> Endpoint:
    """Apply all the endpoint's variants to the hosting backend; mark it InService, or Failed with the reason.

    Re-raises the backend's error after recording it.
    """
    hosting = get_backend("hosting")
    try:
        apply = hosting.update_weights if weights_only else hosting.apply_endpoint
        apply(endpoint.name, variant_specs(endpoint))
    except Exception as exc:
        endpoint_status_set(endpoint, Endpoint.Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    config = config_snapshot(endpoint)
    event_record(endpoint.name, f"applied config {config.name}")
    return endpoint_status_set(endpoint, Endpoint.Status.IN_SERVICE)


def endpoint_create(name: str, variants: list[dict[str, Any]]) -> Endpoint:
    """Create an endpoint serving variants [{name, model, weight, instance_count?, shadow?}]; return it InService.

    Raises EndpointError (exists already, bad weights), NotDeployed (unknown model), BackendError from hosting.
    """
    if Endpoint.objects.filter(name=name).exists():
        raise EndpointError(f"endpoint {name!r} exists already; change its weights or deploy to it instead")
    if not variants or len({v["name"] for v in variants}) != len(variants):
        raise EndpointError("an endpoint needs at least one variant, with unique names")
    weights_validate({v["name"]: v["weight"] for v in variants}, {v["name"] for v in variants if v.get("shadow")})
    models = {v["name"]: model_resolve(v["model"]) for v in variants}
    with transaction.atomic():
        endpoint = Endpoint.objects.create(name=name)
        for v in variants:
            ProductionVariant.objects.create(
                endpoint=endpoint, name=v["name"], model=models[v["name"]], weight=v["weight"],
                instance_count=v.get("instance_count", 1), shadow=bool(v.get("shadow")),
            )  # fmt: skip
        endpoint_status_set(endpoint, Endpoint.Status.CREATING)
    return endpoint_apply(endpoint)


def endpoint_weights_update(name: str, weights: dict[str, float], capacities: dict[str, int] | None = None) -> Endpoint:
    """Set the named variants' weights (and instance counts) without touching their models; return it InService.

    Variants left out keep theirs. Raises NotDeployed, EndpointError (unknown variant, bad weights), BackendError.
    """
    endpoint = endpoint_get(name)
    variants = {v.name: v for v in endpoint.variants.all()}
    unknown = sorted((set(weights) | set(capacities or {})) - set(variants))
    if unknown:
        raise EndpointError(f"endpoint {name} has no variant {', '.join(unknown)}")
    shadows = {n for n, v in variants.items() if v.shadow}
    weights_validate({**{n: v.weight for n, v in variants.items()}, **weights}, shadows)
    for capacity in (capacities or {}).values():
        if not isinstance(capacity, int) or capacity < 1:
            raise EndpointError(f"an instance count must be an integer >= 1, got {capacity!r}")
    with transaction.atomic():
        for variant_name, variant in variants.items():
            variant.weight = float(weights.get(variant_name, variant.weight))
            variant.instance_count = (capacities or {}).get(variant_name, variant.instance_count)
            variant.save(update_fields=["weight", "instance_count"])
        endpoint_status_set(endpoint, Endpoint.Status.UPDATING, "UpdateEndpointWeightsAndCapacities")
    return endpoint_apply(endpoint, weights_only=True)


def endpoint_delete(name: str) -> None:
    """Stop serving the endpoint and delete it with its variants. Raises NotDeployed, BackendError."""
    endpoint = endpoint_get(name)
    endpoint_status_set(endpoint, Endpoint.Status.DELETING)
    try:
        get_backend("hosting").delete_endpoint(name)
    except Exception as exc:
        endpoint_status_set(endpoint, Endpoint.Status.FAILED, f"delete failed: {type(exc).__name__}: {exc}")
        raise
    endpoint.delete()
    event_record(name, "deleted")


def deploy_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Deploy params["model"] (a name, an alias or "latest") to params["endpoint"]'s variant; return what serves.

    With params["policy"] other than "all" (e.g. "canary:10:60"), the rollout shifts traffic step by step
    (see deployments.rollouts). Returns {"endpoint", "status", "variants": [{"name", "model", "weight"}]}
    (plus "outcome" for a rollout). Raises NotDeployed when the model does not exist, ValueError for a bad
    weight or policy, BackendError when hosting refuses.
    """
    model = model_resolve(params.get("model") or "latest")
    endpoint_name = params.get("endpoint") or settings.DEFAULT_ENDPOINT_NAME
    variant = params.get("variant") or "AllTraffic"
    weight = float(params.get("weight", 1.0))
    policy = params.get("policy") or "all"
    outcome = None
    if policy != "all":
        from deployments.rollouts import RolloutRequest, policy_parse, rollout_execute

        request = RolloutRequest(endpoint_name, model, variant, policy_parse(policy), params.get("alarms") or {})
        outcome = rollout_execute(request, progress)
        endpoint = endpoint_get(endpoint_name)
    else:
        progress(10, f"deploying {model.name} to {endpoint_name}/{variant} (weight {weight:g})")
        endpoint = endpoint_apply(variant_upsert(endpoint_name, variant, model, weight))
    progress(100, f"{endpoint.name} is {endpoint.status}")
    served = [{"name": v.name, "model": v.model_name, "weight": v.weight} for v in variant_specs(endpoint)]
    result = {"endpoint": endpoint.name, "status": endpoint.status, "variants": served}
    return result if outcome is None else {**result, "outcome": outcome}
