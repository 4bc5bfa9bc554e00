"""Shadow answers are recorded and can be read back: endpoint server -> hosting backend -> REST API -> page."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from dataplane.endpoint.shadow import shadow_append, shadow_tail
from deployments.services import endpoint_create


def test_the_shadow_log_tail_is_newest_first_and_skips_a_torn_line(tmp_path: Path):
    log = tmp_path / "air.jsonl"
    assert shadow_tail(log) == []
    for index in range(300):
        shadow_append(log, {"t": index, "answer": "x" * 500})
    with log.open("ab") as handle:
        handle.write(b'{"t": 300, "answ')  # a worker killed mid-line
    assert [r["t"] for r in shadow_tail(log, 3)] == [299, 298, 297]
    assert [r["t"] for r in shadow_tail(log, 1000)] == list(range(299, -1, -1))[:500]


@pytest.fixture
def operator(django_user_model) -> APIClient:
    client = APIClient()
    user = django_user_model.objects.create_user("operator")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.mark.django_db(transaction=True)
def test_a_mirrored_request_is_readable_through_the_rest_api(
    endpoint_server, tiny_trained_model, tiny_model, operator, client, django_user_model
):
    endpoint_create("air", [
        {"name": "Main", "model": "deepar-tiny", "weight": 1.0},
        {"name": "Shadow", "model": "deepar-tiny", "weight": 1.0, "shadow": True},
    ])  # fmt: skip
    assert operator.get("/api/v1/endpoints/air/shadow").json()["records"] == []
    body = {"instances": [json.loads(tiny_model.train_lines[0])], "configuration": {"num_samples": 5}}
    for _ in range(3):
        answer = operator.post("/api/v1/endpoints/air/invocations", body, format="json")
        assert answer.status_code == 200 and answer["X-Amzn-Invoked-Production-Variant"] == "Main"
    for _ in range(200):  # the shadow answers after the client got production's answer
        shadow = operator.get("/api/v1/endpoints/air/shadow?limit=2").json()
        if len(shadow["records"]) == 2:
            break
        threading.Event().wait(0.05)
    assert len(shadow["records"]) == 2, shadow
    newest = shadow["records"][0]
    assert newest["variant"] == "Shadow" and newest["model"] == "deepar-tiny" and newest["status"] == 200
    assert len(json.loads(newest["answer"])["predictions"][0]["mean"]) == 12  # the tiny model's horizon
    assert newest["production_variant"] == "Main" and newest["production_model_ms"] > 0 and newest["model_ms"] > 0
    assert newest["at"] >= shadow["records"][1]["at"] and newest["at"].endswith("Z")
    assert shadow["production_p50_ms"] > 0 and shadow["shadow_p50_ms"] > 0 and shadow["shadow_errors"] == 0

    assert operator.get("/api/v1/endpoints/air/shadow?limit=0").status_code == 400
    assert operator.get("/api/v1/endpoints/nope/shadow").status_code == 404
    assert APIClient().get("/api/v1/endpoints/air/shadow").status_code == 401
    client.force_login(django_user_model.objects.create_user("op"))
    page = client.get("/serving/").content.decode()
    assert 'data-role="shadow" data-variant="Shadow"' in page and "Shadow answers" in page
