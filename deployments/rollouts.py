"""Safe rollouts: shift an endpoint variant's traffic to a new model step by step, bake, roll back on alarms.

A policy is "all[:BAKE_S]", "canary:PERCENT:BAKE_S", "linear:PERCENT:EVERY_S[:BAKE_S]" or "shadow:PERCENT".
During a canary or linear rollout the new model serves as variant "<variant>-green" next to the old one, which
keeps its name; the two share the variant's weight. When every step baked without an alarm, the variant itself
serves the new model and the green variant goes. An alarm (error rate, p99 latency of the variant being watched,
or the new model's forecasts scoring worse against the actuals than the old model's: deployments.accuracy) or a
stop request puts the old model back on all the traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from django.db import transaction
from django.utils import timezone

from cloud.backends import get_backend
from cloud.interfaces import BackendError, Progress
from deployments.accuracy import DEFAULT_ACCURACY_ALARMS, accuracy_alarm
from deployments.models import Endpoint, ProductionVariant
from deployments.selectors import variant_specs
from deployments.services import (
    config_snapshot,
    endpoint_apply,
    endpoint_status_set,
    event_record,
    variant_upsert,
)
from forecasts.models import TrainedModel

logger = logging.getLogger(__name__)
DEFAULT_ALARMS = {"max_error_rate": 0.05, "max_p99_ms": 2000.0, "min_invocations": 1, **DEFAULT_ACCURACY_ALARMS}
POLL_S = 0.5
ACCURACY_POLL_S = 2.0  # scoring queries the lake: less often than the endpoint's metrics


@dataclass(frozen=True)
class Policy:
    kind: str  # all, canary, linear, shadow
    percent: float = 100.0
    interval_s: float = 0.0
    baking_s: float = 0.0

    def steps(self) -> list[tuple[float, float]]:
        """Return (percent of the variant's traffic on the new model, seconds to bake) per step."""
        if self.kind == "canary":
            return [(self.percent, self.baking_s), (100.0, self.baking_s)]
        if self.kind == "linear":
            shares = [min(100.0, self.percent * i) for i in range(1, int(100 // self.percent) + 2)]
            shares = sorted(set(shares))
            return [(share, self.interval_s) for share in shares[:-1]] + [(100.0, self.baking_s)]
        return [(100.0, self.baking_s)]

    def __str__(self) -> str:
        if self.kind == "canary":
            return f"canary {self.percent:g}% then the rest, baking {self.baking_s:g} s"
        if self.kind == "linear":
            return f"linear {self.percent:g}% every {self.interval_s:g} s, baking {self.baking_s:g} s"
        if self.kind == "shadow":
            return f"shadow mirroring {self.percent:g}% of the traffic"
        return f"all at once, baking {self.baking_s:g} s"


def _number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ValueError(f"policy {what} must be a number from {low:g} to {high:g}, got {text!r}")
    return value


def policy_parse(text: str) -> Policy:
    """Return the policy written as all[:BAKE], canary:PCT:BAKE, linear:PCT:EVERY[:BAKE] or shadow:PCT.

    Raises ValueError saying what is wrong.
    """
    kind, *args = (text or "all").strip().split(":")
    counts = {"all": (0, 1), "canary": (2, 2), "linear": (2, 3), "shadow": (1, 1)}
    if kind not in counts or not counts[kind][0] <= len(args) <= counts[kind][1]:
        raise ValueError(f"unknown policy {text!r}: use all[:BAKE_S], canary:PCT:BAKE_S, linear:PCT:EVERY_S[:BAKE_S]"
                         " or shadow:PCT")  # fmt: skip
    if kind == "all":
        return Policy("all", baking_s=_number(args[0], "baking seconds", 0, 86400) if args else 0.0)
    percent = _number(args[0], "percent", 0.1, 100 if kind == "shadow" else 99.9)
    if kind == "shadow":
        return Policy("shadow", percent)
    seconds = _number(args[1], "seconds", 0, 86400)
    if kind == "canary":
        return Policy("canary", percent, baking_s=seconds)
    baking = _number(args[2], "baking seconds", 0, 86400) if len(args) == 3 else seconds
    return Policy("linear", percent, interval_s=seconds, baking_s=baking)


StepReport = Callable[[float, str, str], None]  # (percent of traffic on the new model, message, state)


@dataclass
class RolloutRequest:
    endpoint_name: str
    model: TrainedModel
    variant: str
    policy: Policy
    alarms: dict[str, Any] = field(default_factory=dict)
    should_stop: Callable[[], bool] = lambda: False
    step: StepReport = lambda percent, message, state: None
    baseline_model: str = ""  # the model being replaced, whose forecast accuracy the new one must keep
    started_at: Any = None  # when the rollout began: the new model's forecasts since then are scored


def alarm_check(metrics: dict[str, Any], variant: str, alarms: dict[str, Any]) -> str | None:
    """Return why an alarm fires for the variant's totals in metrics (hosting.variant_metrics), else None."""
    limits = {**DEFAULT_ALARMS, **alarms}
    total = metrics.get("variants", {}).get(variant, {}).get("total", {})
    calls = total.get("invocations", 0)
    if calls < limits["min_invocations"]:
        return None
    error_rate = total.get("errors_5xx", 0) / calls
    if error_rate > limits["max_error_rate"]:
        return f"{variant}: error rate {error_rate:.1%} > {limits['max_error_rate']:.1%} over {calls} invocations"
    p99 = total.get("p99_latency_ms")
    if p99 is not None and p99 > limits["max_p99_ms"]:
        return f"{variant}: p99 latency {p99:g} ms > {limits['max_p99_ms']:g} ms"
    return None


def bake(request: RolloutRequest, watched: str, seconds: float) -> str | None:
    """Watch the variant for seconds; return the alarm or "stopped" that ended the bake early, else None."""
    hosting, since = get_backend("hosting"), time.time()
    deadline, next_accuracy = time.monotonic() + seconds, 0.0
    while True:
        if request.should_stop():
            return "stopped"
        alarm = alarm_check(hosting.variant_metrics(request.endpoint_name, since - 1, 60), watched, request.alarms)
        if not alarm and (time.monotonic() >= next_accuracy or time.monotonic() >= deadline):
            next_accuracy = time.monotonic() + ACCURACY_POLL_S
            alarm = accuracy_check(request)
        if alarm:
            return alarm
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def accuracy_check(request: RolloutRequest) -> str | None:
    """Return why the forecast-accuracy alarm fires for the rollout's model, else None (also when the lake
    cannot be read: a lake outage must not roll back a good model)."""
    if not request.baseline_model:
        return None
    since = request.started_at or timezone.now()
    limits = {**DEFAULT_ALARMS, **request.alarms}
    try:
        return accuracy_alarm(request.endpoint_name, request.model.name, request.baseline_model, since, limits)
    except BackendError as exc:
        logger.warning("forecast accuracy of %s not checked: %s", request.model, exc)
        return None


def _green_name(variant: str) -> str:
    return f"{variant}-green"[:63]


def traffic_shift(endpoint: Endpoint, request: RolloutRequest, old: ProductionVariant, weight: float, pct: float):
    """Give pct% of the variant's weight to the new model (as the green variant, or the variant itself at 100)."""
    green = _green_name(request.variant)
    with transaction.atomic():
        if pct >= 100:
            ProductionVariant.objects.filter(endpoint=endpoint, name=green).delete()
            ProductionVariant.objects.filter(pk=old.pk).update(model=request.model, weight=weight)
        else:
            ProductionVariant.objects.filter(pk=old.pk).update(weight=weight * (1 - pct / 100))
            ProductionVariant.objects.update_or_create(
                endpoint=endpoint, name=green, defaults={"model": request.model, "weight": weight * pct / 100}
            )
        endpoint_status_set(endpoint, Endpoint.Status.UPDATING, f"{pct:g}% of {request.variant} on {request.model}")
    endpoint_apply(endpoint)


def rollback(endpoint: Endpoint, request: RolloutRequest, old_model: TrainedModel, weight: float, why: str) -> None:
    """Put all of the variant's traffic back on old_model and drop the green variant."""
    endpoint_status_set(endpoint, Endpoint.Status.ROLLING_BACK, f"rolling back: {why}")
    with transaction.atomic():
        ProductionVariant.objects.filter(endpoint=endpoint, name=_green_name(request.variant)).delete()
        ProductionVariant.objects.filter(endpoint=endpoint, name=request.variant).update(model=old_model, weight=weight)
    endpoint_apply(endpoint)
    event_record(endpoint.name, f"rolled back to {old_model.name}: {why}")


def shadow_set(request: RolloutRequest) -> str:
    """Add (or move) the endpoint's shadow variant to the model, mirroring policy.percent of the traffic."""
    endpoint = Endpoint.objects.get(name=request.endpoint_name)
    production = sum(v.weight for v in variant_specs(endpoint) if not v.shadow)
    name = f"{request.variant}-shadow"[:63]
    ProductionVariant.objects.filter(endpoint=endpoint, shadow=True).exclude(name=name).delete()
    variant_upsert(endpoint.name, name, request.model, production * request.policy.percent / 100, shadow=True)
    endpoint_apply(endpoint)
    request.step(0, f"{name} mirrors {request.policy.percent:g}% of the traffic", "done")
    return "succeeded"


def managed_rollout(endpoint: Endpoint, request: RolloutRequest, old: ProductionVariant) -> str | None:
    """Let a hosting service with its own guardrails (SageMaker) do the rollout; None when it has none.

    Returns succeeded (the variant now serves the new model) or rolled_back (the service put the old one back).
    Raises ValueError when the service cannot watch a guardrail asked for (the endpoint is left as it was).
    """
    target = [
        replace(v, model_name=request.model.name, artifact_key=request.model.artifact_key) if v.name == old.name else v
        for v in variant_specs(endpoint)
    ]
    # The service's alarms get the same error-rate and latency defaults as the rollouts done here; the
    # accuracy guardrails go only as asked (a service that cannot watch them refuses them: ValueError).
    guardrails = {key: DEFAULT_ALARMS[key] for key in ("max_error_rate", "max_p99_ms", "min_invocations")}
    policy = {**asdict(request.policy), "variant": request.variant, "alarms": {**guardrails, **request.alarms}}
    endpoint_status_set(endpoint, Endpoint.Status.UPDATING, f"rollout: {request.policy} of {request.model}")
    try:
        if not get_backend("hosting").managed_rollout(endpoint.name, target, policy):
            return None
    except ValueError as exc:  # refused before anything changed: the endpoint serves as before
        endpoint_status_set(endpoint, Endpoint.Status.IN_SERVICE, f"rollout refused: {exc}")
        raise
    except BackendError as exc:
        endpoint_status_set(endpoint, Endpoint.Status.IN_SERVICE, f"rolled back by the service: {exc}")
        request.step(0, f"rolled back by the service: {exc}", "rolled_back")
        return "rolled_back"
    ProductionVariant.objects.filter(pk=old.pk).update(model=request.model)
    config_snapshot(endpoint)
    endpoint_status_set(endpoint, Endpoint.Status.IN_SERVICE)
    request.step(100, f"{request.model} serves {request.variant} ({request.policy})", "done")
    return "succeeded"


def rollout_execute(request: RolloutRequest, progress: Progress) -> str:
    """Roll the model out to the endpoint's variant by the policy; return succeeded, rolled_back or stopped.

    Raises NotDeployed-like Endpoint.DoesNotExist never: a missing endpoint or variant is deployed at once.
    """
    endpoint = Endpoint.objects.filter(name=request.endpoint_name).first()
    old = endpoint and endpoint.variants.filter(name=request.variant, shadow=False).select_related("model").first()
    if request.policy.kind == "shadow":
        if endpoint is None:
            raise ValueError(f"endpoint {request.endpoint_name} does not exist: deploy a model before a shadow")
        return shadow_set(request)
    if not old:  # nothing to protect: the first model of a variant goes live at once
        endpoint_apply(variant_upsert(request.endpoint_name, request.variant, request.model, 1.0))
        request.step(100, f"{request.variant} created with {request.model}", "done")
        return "succeeded"
    old_model, weight = old.model, old.weight or 1.0
    request.baseline_model, request.started_at = old_model.name, timezone.now()
    event_record(endpoint.name, f"rollout of {request.model} to {request.variant}: {request.policy}")
    managed = managed_rollout(endpoint, request, old)
    if managed is not None:
        return managed
    steps = request.policy.steps()
    for index, (percent, seconds) in enumerate(steps):
        traffic_shift(endpoint, request, old, weight, percent)
        request.step(percent, f"{percent:g}% on {request.model}, baking {seconds:g} s", "baking")
        progress(100 * index / len(steps), f"{percent:g}% of {request.variant} on {request.model}")
        watched = request.variant if percent >= 100 else _green_name(request.variant)
        why = bake(request, watched, seconds)
        if why:
            rollback(endpoint, request, old_model, weight, why)
            request.step(0, f"rolled back to {old_model}: {why}", "rolled_back")
            return "stopped" if why == "stopped" else "rolled_back"
        request.step(percent, f"{percent:g}% baked without alarm", "done")
    event_record(endpoint.name, f"rollout of {request.model} to {request.variant} succeeded")
    return "succeeded"
