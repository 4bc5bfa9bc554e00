"""The REST proxy to endpoints (DeepAR JSON in and out), device forecasts and the endpoint list."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from deployments.services import deploy_execute
from tests.fixtures.endpoint import synthetic_frame
from tests.telemetry_helpers import put_raw, reading

QUANTILES = ["0.1", "0.5", "0.9"]


@pytest.fixture
def api(db) -> APIClient:
    user = get_user_model().objects.create_user("api-user")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def deployed(endpoint_server, tiny_trained_model):
    deploy_execute({"model": "deepar-tiny", "endpoint": "air"})
    deploy_execute({"model": "deepar-tiny", "endpoint": "air", "variant": "Canary", "weight": 0.0})
    return "air"


def invocation(tiny_model, **configuration) -> dict:
    instance = json.loads(tiny_model.train_lines[2])
    return {"instances": [instance], "configuration": {"num_samples": 50, "quantiles": QUANTILES, **configuration}}


def test_proxy_needs_a_token(db):
    response = APIClient().post("/api/v1/endpoints/air/invocations", {"instances": []}, format="json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "instances: This field is required."),
        ({"instances": []}, "instances: "),
        ({"instances": [{"start": "2026-11-01 00:00:00", "target": [1.0, "abc"]}]}, "instances[0].target[1]: "),
        ({"instances": [{"start": "yesterday", "target": [1.0]}]}, "instances[0].start: "),
        ({"instances": [{"start": "2026-11-01 00:00:00", "target": [1.0]}], "configuration": {"quantiles": ["0.95x"]}},
         "configuration.quantiles[0]: quantile '0.95x' must be a number in (0, 1)"),
        ({"instances": [{"start": "2026-11-01 00:00:00", "target": [1.0]}], "configuration": {"output_types": ["p"]}},
         "configuration.output_types[0]: "),
    ],
)  # fmt: skip
def test_proxy_rejects_invalid_deepar_requests_with_a_clear_message(api, payload, message):
    response = api.post("/api/v1/endpoints/air/invocations", payload, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid request: ") and message in response.json()["message"]


def test_proxy_answers_with_ordered_quantiles_and_the_variant(api, deployed, tiny_model):
    response = api.post(f"/api/v1/endpoints/{deployed}/invocations", invocation(tiny_model), format="json")
    assert response.status_code == 200 and response["X-Amzn-Invoked-Production-Variant"] == "AllTraffic"
    prediction = response.json()["predictions"][0]
    low, mid, high = (prediction["quantiles"][q] for q in QUANTILES)
    assert len(prediction["mean"]) == 12 and all(a <= b <= c for a, b, c in zip(low, mid, high, strict=True))
    targeted = api.post(
        f"/api/v1/endpoints/{deployed}/invocations",
        invocation(tiny_model),
        format="json",
        HTTP_X_AMZN_SAGEMAKER_TARGET_VARIANT="Canary",
    )
    assert targeted.status_code == 200 and targeted["X-Amzn-Invoked-Production-Variant"] == "Canary"


def test_proxy_passes_the_endpoints_errors_through(api, deployed, tiny_model):
    response = api.post("/api/v1/endpoints/nope/invocations", invocation(tiny_model), format="json")
    assert response.status_code == 400 and "Endpoint nope of account local not found" in response.json()["message"]
    bad_cat = invocation(tiny_model)
    bad_cat["instances"][0]["cat"] = [7]
    response = api.post(f"/api/v1/endpoints/{deployed}/invocations", bad_cat, format="json")
    assert response.status_code == 400 and "cat [i] with 0 <= i < 3" in response.json()["message"]


def test_forecast_for_a_device_uses_its_recent_history(api, deployed, lake):
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=100)
    frame = synthetic_frame(devices=2, hours=100)
    shift = start - frame.ts.min().to_pydatetime()
    put_raw(lake, [reading(r.device_id, r.ts.to_pydatetime() + shift, ozone=r.value) for r in frame.itertuples()])
    payload = {"device": "sensor-1", "metric": "ozone", "prediction_length": 6, "quantiles": QUANTILES}
    payload["endpoint"] = deployed
    response = api.post("/api/v1/forecasts/", payload, format="json")
    assert response.status_code == 200, response.json()
    forecast = response.json()
    assert (forecast["device"], forecast["model"], forecast["variant"]) == ("sensor-1", "deepar-tiny", "AllTraffic")
    assert len(forecast["history"]["values"]) == 24 and len(forecast["forecast"]["mean"]) == 6
    last = datetime.fromisoformat(forecast["history"]["timestamps"][-1].replace("Z", "+00:00"))
    first_ahead = datetime.fromisoformat(forecast["forecast"]["timestamps"][0].replace("Z", "+00:00"))
    assert first_ahead - last == timedelta(hours=1) and last >= start + timedelta(hours=98)
    low, high = forecast["forecast"]["quantiles"]["0.1"], forecast["forecast"]["quantiles"]["0.9"]
    assert all(a <= b for a, b in zip(low, high, strict=True))


def test_forecast_errors_are_clear(api, deployed, lake, settings):
    settings.DEFAULT_ENDPOINT_NAME = deployed
    too_long = api.post("/api/v1/forecasts/", {"device": "sensor-1", "prediction_length": 13}, format="json")
    assert too_long.status_code == 400 and "prediction_length must be between 1 and 12" in too_long.json()["message"]
    no_history = api.post("/api/v1/forecasts/", {"device": "sensor-0"}, format="json")
    assert no_history.status_code == 404 and "no ozone readings" in no_history.json()["message"]
    settings.DEFAULT_ENDPOINT_NAME = "missing"
    no_endpoint = api.post("/api/v1/forecasts/", {"device": "sensor-0"}, format="json")
    assert no_endpoint.status_code == 404 and "endpoint 'missing' does not exist" in no_endpoint.json()["message"]


def test_endpoint_list(api, deployed):
    endpoints = api.get("/api/v1/endpoints/").json()
    assert [(e["name"], e["status"]) for e in endpoints] == [("air", "InService")]
    assert {v["name"]: v["weight"] for v in endpoints[0]["variants"]} == {"AllTraffic": 1.0, "Canary": 0.0}


def test_invocation_throttle_is_a_token_bucket_per_token(db, settings):
    from django.core.cache import cache
    from rest_framework.test import APIRequestFactory

    from deployments.api import InvocationThrottle

    cache.clear()
    settings.ENDPOINT_INVOKE_THROTTLE_RATE = "3/min"
    users = [get_user_model().objects.create_user(name) for name in ("one", "two")]
    clock = [1000.0]

    def allowed(user) -> tuple[bool, float | None]:
        request = APIRequestFactory().post("/api/v1/endpoints/air/invocations")
        request.user = user
        throttle = InvocationThrottle()
        throttle.timer = lambda: clock[0]
        return throttle.allow_request(request, None), throttle.wait()

    assert [allowed(users[0])[0] for _ in range(3)] == [True, True, True]
    denied, wait = allowed(users[0])
    assert not denied and wait == pytest.approx(20.0)  # one request every 60 / 3 s
    assert allowed(users[1])[0]  # another token has its own bucket
    clock[0] += 19.0
    assert not allowed(users[0])[0]
    clock[0] += 1.0
    assert allowed(users[0])[0] and not allowed(users[0])[0]
    cache.clear()
