"""Safe rollouts against the real endpoint server: canary/linear steps, auto-rollback, stop, shadow, delete."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from cloud.backends import get_backend
from cloud.interfaces import InvocationError
from deployments.models import Endpoint, EndpointConfig, EndpointEvent, EndpointOperation
from deployments.operations import operation_create, operation_execute, operation_stop
from deployments.rollouts import policy_parse
from deployments.services import EndpointError, deploy_execute, endpoint_delete, endpoint_weights_update
from forecasts.models import TrainedModel
from tests.fixtures.endpoint import broken_artifact

pytestmark = pytest.mark.django_db(transaction=True)


def body(tiny_model, cat: int = 1) -> bytes:
    instance = {**json.loads(tiny_model.train_lines[1]), "cat": [cat]}
    return json.dumps({"instances": [instance], "configuration": {"num_samples": 5}}).encode()


class Traffic:
    """Background clients invoking the endpoint; count answers per variant and failures."""

    def __init__(self, payload: bytes, endpoint: str = "air", clients: int = 2) -> None:
        self.payload, self.endpoint = payload, endpoint
        self.variants: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        hosting = get_backend("hosting")
        while not self.stop.is_set():
            try:
                self.variants[hosting.invoke(self.endpoint, self.payload).invoked_variant] += 1
            except InvocationError as exc:
                self.errors[exc.status] += 1

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


@pytest.fixture
def live(endpoint_server, tiny_trained_model, tiny_model, lake):
    """Endpoint air serving deepar-tiny on AllTraffic; a second good model and a broken one registered."""
    deploy_execute({"model": "deepar-tiny", "endpoint": "air"})
    fields = {"metric": "ozone", "devices": tiny_model.devices, "hyperparameters": tiny_model.hyperparameters}
    TrainedModel.objects.create(name="good-2", artifact_key=tiny_trained_model.artifact_key, **fields)
    lake.put_bytes("models/broken/output/model.tar.gz", broken_artifact(tiny_model.artifact))
    TrainedModel.objects.create(name="broken", artifact_key="models/broken/output/model.tar.gz", **fields)
    return "air"


def deploy(model: str, policy: str, **alarms) -> EndpointOperation:
    params = {"model": model, "variant": "AllTraffic", "policy": policy, "alarms": alarms}
    return operation_execute(operation_create(EndpointOperation.Kind.DEPLOY, "air", params).pk)


def serving(endpoint: str = "air") -> dict[str, tuple[str, float]]:
    return {v.name: (v.model.name, v.weight) for v in Endpoint.objects.get(name=endpoint).variants.all()}


def test_policies_parse_into_steps():
    assert policy_parse("canary:10:60").steps() == [(10.0, 60.0), (100.0, 60.0)]
    assert policy_parse("linear:40:5:30").steps() == [(40.0, 5.0), (80.0, 5.0), (100.0, 30.0)]
    assert policy_parse("all").steps() == [(100.0, 0.0)]
    for bad in ("canary:10", "canary:0:5", "linear:120:5", "blue", "canary:x:5"):
        with pytest.raises(ValueError, match="policy"):
            policy_parse(bad)


def test_a_canary_that_errors_rolls_back_to_the_old_model(live, tiny_model):
    # cat 5: the old model refuses it (400, a client error), the broken one fails on it (424 ModelError).
    with Traffic(body(tiny_model, cat=5)) as traffic:
        operation = deploy("broken", "canary:50:3", max_error_rate=0.05)
    assert operation.status == EndpointOperation.Status.ROLLED_BACK, operation.message
    assert serving() == {"AllTraffic": ("deepar-tiny", 1.0)} and Endpoint.objects.get(name="air").status == "InService"
    assert [s["state"] for s in operation.steps] == ["baking", "rolled_back"] and "error rate" in operation.steps[-1][
        "message"
    ]
    assert traffic.errors[424] >= 1 and traffic.variants == Counter()
    statuses = list(EndpointEvent.objects.filter(endpoint_name="air").values_list("status", flat=True))
    assert "RollingBack" in statuses and "Updating" in statuses
    answer = get_backend("hosting").invoke("air", body(tiny_model))
    assert answer.invoked_variant == "AllTraffic"


def test_a_linear_rollout_of_a_good_model_shifts_all_traffic_without_a_failed_request(live, tiny_model):
    with Traffic(body(tiny_model)) as traffic:
        operation = deploy("good-2", "linear:50:1:1")
    assert operation.status == EndpointOperation.Status.SUCCEEDED, operation.message
    assert [(s["percent"], s["state"]) for s in operation.steps] == [(50.0, "done"), (100.0, "done")]
    assert serving() == {"AllTraffic": ("good-2", 1.0)}
    assert sum(traffic.errors.values()) == 0 and traffic.variants["AllTraffic-green"] > 0
    assert EndpointConfig.objects.filter(endpoint_name="air").count() >= 3  # one snapshot per applied step


def test_a_latency_alarm_and_a_stop_both_roll_back(live, tiny_model):
    with Traffic(body(tiny_model)):
        slow = deploy("good-2", "canary:50:3", max_p99_ms=0.5)
    assert slow.status == EndpointOperation.Status.ROLLED_BACK and "p99 latency" in slow.steps[-1]["message"]
    operation = operation_create(EndpointOperation.Kind.DEPLOY, "air", {"model": "good-2", "policy": "canary:50:30"})
    assert operation_stop(operation.pk)
    stopped = operation_execute(operation.pk)
    assert stopped.status == EndpointOperation.Status.STOPPED and serving() == {"AllTraffic": ("deepar-tiny", 1.0)}


def test_one_operation_at_a_time_per_endpoint(live):
    operation_create(EndpointOperation.Kind.DEPLOY, "air", {"model": "good-2", "policy": "canary:50:30"})
    with pytest.raises(EndpointError, match="busy"):
        operation_create(EndpointOperation.Kind.UPDATE_WEIGHTS, "air", {"weights": {"AllTraffic": 2}})


def test_a_shadow_variant_gets_copies_but_never_answers(live, tiny_model, endpoint_server, tmp_path):
    assert deploy("good-2", "shadow:100").status == EndpointOperation.Status.SUCCEEDED
    assert serving()["AllTraffic-shadow"] == ("good-2", 1.0)
    hosting = get_backend("hosting")
    answered = {hosting.invoke("air", body(tiny_model)).invoked_variant for _ in range(6)}
    assert answered == {"AllTraffic"}
    with pytest.raises(InvocationError, match="Target variant AllTraffic-shadow does not exist"):
        hosting.invoke("air", body(tiny_model), target_variant="AllTraffic-shadow")
    shadow_log = tmp_path / "endpoint-state" / "shadow" / "air.jsonl"
    for _ in range(100):
        if shadow_log.exists() and len(shadow_log.read_text().splitlines()) >= 3:
            break
        threading.Event().wait(0.05)
    records = [json.loads(line) for line in shadow_log.read_text().splitlines()]
    assert records and all(r["variant"] == "AllTraffic-shadow" and r["status"] == 200 for r in records)
    assert "predictions" in records[0]["answer"]


def test_weights_update_and_delete(live, tiny_model):
    deploy_execute({"model": "good-2", "endpoint": "air", "variant": "B", "weight": 1.0})
    with pytest.raises(EndpointError, match="weight > 0"):
        endpoint_weights_update("air", {"AllTraffic": 0, "B": 0})
    with pytest.raises(EndpointError, match="no variant C"):
        endpoint_weights_update("air", {"C": 1})
    endpoint_weights_update("air", {"AllTraffic": 0.0, "B": 3.0}, {"B": 2})
    assert serving() == {"AllTraffic": ("deepar-tiny", 0.0), "B": ("good-2", 3.0)}
    assert {get_backend("hosting").invoke("air", body(tiny_model)).invoked_variant for _ in range(5)} == {"B"}
    endpoint_delete("air")
    assert not Endpoint.objects.filter(name="air").exists()
    with pytest.raises(InvocationError, match="Endpoint air of account local not found"):
        get_backend("hosting").invoke("air", body(tiny_model))


def test_deploy_command_with_a_policy_waits_and_reports(live, capsys):
    call_command("deploy", "--model", "good-2", "--endpoint", "air", "--policy", "canary:50:0")
    out = capsys.readouterr().out
    assert "deployment #" in out and "50.0%" in out and "succeeded: endpoint InService" in out
    assert serving() == {"AllTraffic": ("good-2", 1.0)}
    with pytest.raises(CommandError, match="unknown policy"):
        call_command("deploy", "--model", "good-2", "--endpoint", "air", "--policy", "blue:1")
