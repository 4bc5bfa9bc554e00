"""EndpointOperation rows: create, claim, record rollout steps, finish; and the work each kind does.

Transitions are conditional UPDATEs, so that a task delivered twice does the work once.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from django.utils import timezone

from deployments.models import EndpointOperation
from deployments.rollouts import RolloutRequest, policy_parse, rollout_execute
from deployments.selectors import model_resolve, operation_active
from deployments.services import EndpointError, endpoint_create, endpoint_delete, endpoint_weights_update

logger = logging.getLogger(__name__)
Status = EndpointOperation.Status
Op = EndpointOperation


def operation_create(kind: str, endpoint_name: str, params: dict[str, Any], user: Any = None) -> Op:
    """Return a new queued operation; raise EndpointError while another one of the endpoint is unfinished."""
    busy = operation_active(endpoint_name)
    if busy is not None:
        raise EndpointError(f"endpoint {endpoint_name} is busy with {busy.kind} #{busy.pk}; wait or stop it first")
    if kind == Op.Kind.DEPLOY:
        policy_parse(params.get("policy") or "all")  # a bad policy is refused before a row exists
        model_resolve(params["model"])
    requested_by = user if getattr(user, "is_authenticated", False) else None
    return Op.objects.create(kind=kind, endpoint_name=endpoint_name, params=params, requested_by=requested_by)


def operation_enqueue(operation: Op) -> Op:
    """Send the operation to the Celery worker; return it."""
    from deployments.tasks import endpoint_operation

    endpoint_operation.delay(operation.pk)
    return operation


def operation_stop(operation_id: int) -> bool:
    """Ask a queued or running operation to stop (a rollout rolls back); return whether one was asked."""
    active = [Status.QUEUED, Status.RUNNING]
    return Op.objects.filter(pk=operation_id, status__in=active).update(stop_requested=True) == 1


def _update(operation_id: int, **fields: Any) -> None:
    Op.objects.filter(pk=operation_id, status=Status.RUNNING).update(**fields)


def step_reporter(operation_id: int):
    """Return a StepReport that appends (and updates the last, for the same share) the operation's steps."""

    def step(percent: float, message: str, state: str) -> None:
        operation = Op.objects.get(pk=operation_id)
        steps = list(operation.steps)
        line = {"at": timezone.now().isoformat(), "percent": percent, "message": message, "state": state}
        if steps and steps[-1]["percent"] == percent and steps[-1]["state"] == "baking" and state == "done":
            steps[-1] = line
        else:
            steps.append(line)
        _update(operation_id, steps=steps, message=message[:500])

    return step


def _stop_requested(operation_id: int) -> bool:
    return Op.objects.filter(pk=operation_id, stop_requested=True).exists()


def _work(operation: Op) -> tuple[str, dict[str, Any]]:
    params, name = operation.params, operation.endpoint_name
    if operation.kind == Op.Kind.CREATE:
        endpoint = endpoint_create(name, params["variants"])
        return Status.SUCCEEDED, {"status": endpoint.status}
    if operation.kind == Op.Kind.UPDATE_WEIGHTS:
        endpoint = endpoint_weights_update(name, params.get("weights") or {}, params.get("capacities"))
        return Status.SUCCEEDED, {"status": endpoint.status}
    if operation.kind == Op.Kind.DELETE:
        endpoint_delete(name)
        return Status.SUCCEEDED, {"deleted": name}
    request = RolloutRequest(
        name, model_resolve(params["model"]), params.get("variant") or "AllTraffic",
        policy_parse(params.get("policy") or "all"), params.get("alarms") or {},
        should_stop=lambda: _stop_requested(operation.pk), step=step_reporter(operation.pk),
    )  # fmt: skip

    def progress(percent: float, message: str) -> None:
        _update(operation.pk, progress=percent, message=message[:500])

    outcome = rollout_execute(request, progress)
    return outcome, {"outcome": outcome}


def operation_execute(operation_id: int) -> Op:
    """Claim the queued operation, do it, record the outcome; return the row (left alone when not queued).

    Exceptions are recorded on the row (failed) and re-raised.
    """
    now = timezone.now()
    if not Op.objects.filter(pk=operation_id, status=Status.QUEUED).update(status=Status.RUNNING, started_at=now):
        return Op.objects.get(pk=operation_id)
    operation = Op.objects.get(pk=operation_id)
    try:
        status, result = _work(operation)
    except Exception as exc:
        _update(operation_id, status=Status.FAILED, message=f"{type(exc).__name__}: {exc}"[:500],
                error=traceback.format_exc(), finished_at=timezone.now())  # fmt: skip
        raise
    _update(operation_id, status=status, result=result, progress=100.0, finished_at=timezone.now(),
            message={"succeeded": "done"}.get(status, status.replace("_", " ")))  # fmt: skip
    return Op.objects.get(pk=operation_id)
