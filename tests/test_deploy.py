"""The deploy step: endpoints and variants in the DB, applied to the endpoint server, answering invocations."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from cloud.backends import get_backend
from cloud.interfaces import BackendError
from deployments.models import Endpoint
from deployments.selectors import NotDeployed
from deployments.services import deploy_execute
from forecasts.models import PipelineRun, TrainedModel


def body(tiny_model) -> bytes:
    return json.dumps(
        {"instances": [json.loads(tiny_model.train_lines[1])], "configuration": {"num_samples": 5}}
    ).encode()


@pytest.mark.django_db
def test_deploy_latest_sets_up_an_endpoint_that_answers(endpoint_server, tiny_trained_model, tiny_model):
    result = deploy_execute({"model": "latest", "endpoint": "air"}, lambda p, m: None)
    assert result == {"endpoint": "air", "status": "InService", "variants": [
        {"name": "AllTraffic", "model": "deepar-tiny", "weight": 1.0}]}  # fmt: skip
    endpoint = Endpoint.objects.get(name="air")
    assert endpoint.status == Endpoint.Status.IN_SERVICE and endpoint.variants.get().model == tiny_trained_model
    answer = get_backend("hosting").invoke("air", body(tiny_model))
    assert answer.invoked_variant == "AllTraffic" and len(json.loads(answer.body)["predictions"][0]["mean"]) == 12


@pytest.mark.django_db
def test_a_new_model_replaces_the_variant_and_a_second_variant_splits_traffic(
    endpoint_server, tiny_trained_model, tiny_model
):
    deploy_execute({"model": "deepar-tiny", "endpoint": "air"})
    newer = TrainedModel.objects.create(
        name="deepar-tiny-2", metric="ozone", devices=tiny_model.devices, artifact_key=tiny_trained_model.artifact_key
    )
    deploy_execute({"model": "deepar-tiny-2", "endpoint": "air"})
    deploy_execute({"model": "deepar-tiny", "endpoint": "air", "variant": "Canary", "weight": 0.0})
    variants = {v.name: (v.model.name, v.weight) for v in Endpoint.objects.get(name="air").variants.all()}
    assert variants == {"AllTraffic": (newer.name, 1.0), "Canary": ("deepar-tiny", 0.0)}
    hosting = get_backend("hosting")
    assert {hosting.invoke("air", body(tiny_model)).invoked_variant for _ in range(5)} == {"AllTraffic"}
    assert hosting.invoke("air", body(tiny_model), target_variant="Canary").invoked_variant == "Canary"


@pytest.mark.django_db
def test_deploy_marks_the_endpoint_failed_when_hosting_refuses(endpoint_server, lake, tiny_trained_model):
    TrainedModel.objects.create(name="ghost", metric="ozone", artifact_key="models/ghost/output/model.tar.gz")
    with pytest.raises(BackendError, match="not in the lake"):
        deploy_execute({"model": "ghost", "endpoint": "air"})
    endpoint = Endpoint.objects.get(name="air")
    assert endpoint.status == Endpoint.Status.FAILED and "not in the lake" in endpoint.failure_reason


@pytest.mark.django_db
def test_deploy_without_a_model_says_so(lake):
    with pytest.raises(NotDeployed, match="no trained model exists yet"):
        deploy_execute({"model": "latest"})
    with pytest.raises(CommandError, match="model 'nope' does not exist"):
        call_command("deploy", "--model", "nope")
    assert not PipelineRun.objects.exists()


@pytest.mark.django_db
def test_deploy_command_runs_the_step_and_prints_progress(endpoint_server, tiny_trained_model, capsys, settings):
    call_command("deploy", "--model", "latest", "--variant", "Blue", "--weight", "2")
    out = capsys.readouterr().out
    assert "deploy run #" in out and "succeeded" in out and f"{settings.DEFAULT_ENDPOINT_NAME} is InService" in out
    run = PipelineRun.objects.get(kind="deploy")
    assert run.status == PipelineRun.Status.SUCCEEDED and run.result["variants"][0]["weight"] == 2.0


@pytest.mark.django_db
def test_create_api_token_prints_a_stable_token(capsys):
    with pytest.raises(CommandError, match="pass --create"):
        call_command("create_api_token", "alice")
    call_command("create_api_token", "alice", "--create")
    first = capsys.readouterr().out.strip()
    call_command("create_api_token", "alice")
    assert len(first) == 40 and capsys.readouterr().out.strip() == first
