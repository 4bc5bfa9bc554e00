"""The endpoints REST API: operators read, admins change (through queued operations), bad input is a clear 4xx."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from deployments.models import Endpoint, EndpointOperation
from deployments.operations import operation_create, operation_execute
from deployments.services import deploy_execute
from forecasts.models import ModelAlias, TrainedModel


def client_for(username: str, staff: bool) -> APIClient:
    user = get_user_model().objects.create_user(username, is_staff=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def admin(db, celery_app_on_redis) -> APIClient:
    return client_for("admin", staff=True)


@pytest.fixture
def operator(db) -> APIClient:
    return client_for("operator", staff=False)


@pytest.fixture
def air(endpoint_server, tiny_trained_model):
    deploy_execute({"model": "deepar-tiny", "endpoint": "air", "variant": "A", "weight": 1.0})
    deploy_execute({"model": "deepar-tiny", "endpoint": "air", "variant": "B", "weight": 1.0})
    return "air"


def run_queued(response) -> EndpointOperation:
    """Do what the worker would do with the operation the response queued; return the finished row."""
    assert response.status_code == 202, response.json()
    return operation_execute(response.json()["id"])


def test_no_token_is_401_and_operators_cannot_change(operator, air, db):
    from rest_framework.test import APIClient as Anonymous

    assert Anonymous().get("/api/v1/endpoints/").status_code == 401
    assert Anonymous().patch("/api/v1/endpoints/air/weights", {}, format="json").status_code == 401
    assert operator.get("/api/v1/endpoints/air").json()["name"] == "air"
    assert operator.patch("/api/v1/endpoints/air/weights", {"weights": {"A": 2}}, format="json").status_code == 403
    assert operator.post("/api/v1/endpoints/air/deployments", {"model": "latest"}, format="json").status_code == 403
    assert operator.delete("/api/v1/endpoints/air").status_code == 403
    assert not EndpointOperation.objects.exists()


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"A": -1}, "weights.A"), ({"A": 0, "B": 0}, "weight > 0"), ({"C": 1}, "no variant C"), ({"A": "x"}, "weights.A")],
)
def test_bad_weights_are_refused(admin, air, weights, message):
    response = admin.patch("/api/v1/endpoints/air/weights", {"weights": weights}, format="json")
    assert response.status_code == 400 and message in response.json()["message"]


def test_admin_changes_weights_through_a_queued_operation(admin, air, tiny_model):
    operation = run_queued(admin.patch("/api/v1/endpoints/air/weights", {"weights": {"A": 0, "B": 2}}, format="json"))
    assert operation.status == "succeeded" and operation.requested_by.username == "admin"
    detail = admin.get("/api/v1/endpoints/air").json()
    assert {v["name"]: v["weight"] for v in detail["variants"]} == {"A": 0.0, "B": 2.0}
    assert detail["operations"][0]["kind"] == "update_weights" and detail["history"]
    body = {"instances": [json.loads(tiny_model.train_lines[0])], "configuration": {"num_samples": 5}}
    answers = {
        admin.post("/api/v1/endpoints/air/invocations", body, format="json")["X-Amzn-Invoked-Production-Variant"]
        for _ in range(4)
    }
    assert answers == {"B"}
    metrics = admin.get("/api/v1/endpoints/air/metrics?minutes=5&period=60").json()
    assert metrics["variants"]["B"]["total"]["invocations"] == 4


def test_admin_creates_deploys_and_deletes(admin, endpoint_server, tiny_trained_model):
    payload = {"name": "new-one", "variants": [{"name": "Main", "model": "deepar-tiny", "weight": 1}]}
    assert admin.post("/api/v1/endpoints/", {**payload, "name": "bad name!"}, format="json").status_code == 400
    missing = {"name": "x", "variants": [{"name": "Main", "model": "nope"}]}
    assert "model 'nope' does not exist" in admin.post("/api/v1/endpoints/", missing, format="json").json()["message"]
    assert run_queued(admin.post("/api/v1/endpoints/", payload, format="json")).status == "succeeded"
    assert Endpoint.objects.get(name="new-one").status == "InService"
    assert admin.post("/api/v1/endpoints/", payload, format="json").status_code == 409
    bad_policy = {"model": "deepar-tiny", "variant": "Main", "policy": "sideways"}
    assert admin.post("/api/v1/endpoints/new-one/deployments", bad_policy, format="json").status_code == 400
    deployment = {"model": "deepar-tiny", "variant": "Main", "policy": "canary:20:0"}
    operation = run_queued(admin.post("/api/v1/endpoints/new-one/deployments", deployment, format="json"))
    assert operation.status == "succeeded" and [s["percent"] for s in operation.steps] == [20.0, 100.0]
    stop = admin.post(f"/api/v1/endpoints/new-one/operations/{operation.pk}/stop")
    assert stop.status_code == 409
    assert run_queued(admin.delete("/api/v1/endpoints/new-one")).status == "succeeded"
    assert admin.get("/api/v1/endpoints/new-one").status_code == 404


def test_proxy_throttles_per_token(admin, air, settings, tiny_model):
    from django.core.cache import cache

    cache.clear()
    settings.ENDPOINT_INVOKE_THROTTLE_RATE = "2/min"
    body = {"instances": [json.loads(tiny_model.train_lines[0])], "configuration": {"num_samples": 2}}
    statuses = [admin.post("/api/v1/endpoints/air/invocations", body, format="json").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    cache.clear()


def test_serving_page_shows_variants_and_only_admins_can_change(air, client, django_user_model):
    assert client.get("/serving/").status_code == 302  # to the login page
    client.force_login(django_user_model.objects.create_user("op"))
    page = client.get("/serving/").content.decode()
    assert 'data-endpoint="air"' in page and "Only admins may change weights." in page
    assert page.count('type="range"') == 2 and page.count("disabled") >= 4 and "plotly" in page
    client.force_login(django_user_model.objects.create_user("boss", is_staff=True))
    page = client.get("/serving/").content.decode()
    assert "Apply weights" in page and "disabled" not in page.split('data-role="weights"')[1].split("</form>")[0]


def test_stop_acts_only_on_an_operation_of_the_named_endpoint(db):
    boss = client_for("boss", staff=True)
    mine = operation_create(EndpointOperation.Kind.UPDATE_WEIGHTS, "first", {"weights": {"A": 1.0}})
    theirs = operation_create(EndpointOperation.Kind.DELETE, "second", {})
    crossed = boss.post(f"/api/v1/endpoints/first/operations/{theirs.pk}/stop")
    assert crossed.status_code == 404 and f"no operation {theirs.pk}" in crossed.json()["message"]
    assert boss.post("/api/v1/endpoints/first/operations/999999/stop").status_code == 404
    theirs.refresh_from_db()
    assert theirs.stop_requested is False and theirs.status == EndpointOperation.Status.QUEUED
    stopped = boss.post(f"/api/v1/endpoints/first/operations/{mine.pk}/stop")
    assert stopped.status_code == 202
    assert stopped.json()["id"] == mine.pk and stopped.json()["stop_requested"] is True
    mine.refresh_from_db()
    assert mine.stop_requested is True
    operator = client_for("watcher", staff=False)
    assert operator.post(f"/api/v1/endpoints/second/operations/{theirs.pk}/stop").status_code == 403


def test_deploying_an_alias_serves_the_model_it_points_at(admin, air, tiny_trained_model):
    fields = {"metric": "ozone", "devices": tiny_trained_model.devices, "artifact_key": tiny_trained_model.artifact_key}
    promoted = TrainedModel.objects.create(name="deepar-promoted", **fields)
    ModelAlias.objects.create(name="champion", model=promoted)
    deployment = {"model": "champion", "variant": "B"}
    operation = run_queued(admin.post("/api/v1/endpoints/air/deployments", deployment, format="json"))
    assert operation.status == "succeeded", operation.message
    variants = {v["name"]: v["model"] for v in admin.get("/api/v1/endpoints/air").json()["variants"]}
    assert variants == {"A": "deepar-tiny", "B": "deepar-promoted"}
    served = deploy_execute({"model": "champion", "endpoint": "air", "variant": "A"})
    assert {v["name"]: v["model"] for v in served["variants"]} == {"A": "deepar-promoted", "B": "deepar-promoted"}
    missing = admin.post("/api/v1/endpoints/air/deployments", {"model": "challenger"}, format="json")
    assert missing.status_code == 400 and "model 'challenger' does not exist" in missing.json()["message"]
