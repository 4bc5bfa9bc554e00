"""The whole local pipeline, end to end, with real parts only.

Mosquitto with mTLS <- the real device agent (awsiotsdk) -> the ingest service -> a real lake, then a
real Celery worker on Redis runs crawl, ETL, a tiny DeepAR training and deploy, the endpoint server
serves the model, and a forecast comes back through the REST proxy (boto3 sagemaker-runtime inside).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import chain
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from forecasts.models import PipelineRun, TrainedModel
from forecasts.runs import run_create
from forecasts.selectors import readings_recent
from tests.fixtures.endpoint import TINY_HYPERPARAMETERS
from tests.fixtures.pipeline import register_device_with_kit

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
THING = "aq-e2e-01"


def publish_with_agent(kit: Path, count: int) -> list[str]:
    """Run the real device agent for count readings; return the lines it printed."""
    completed = subprocess.run(
        [sys.executable, "-m", "device_agent", "--kit", str(kit), "--count", str(count), "--interval", "0.25"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout.splitlines()


def wait_until(predicate, timeout: float, what: str):
    """Poll predicate until it returns something truthy; fail with what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def run_steps_on_worker(steps: list[tuple[str, dict]]) -> list[PipelineRun]:
    """Queue the steps as one chain on the real worker and wait until every run has finished."""
    from forecasts.tasks import run_pipeline_step

    runs = [run_create(kind, params) for kind, params in steps]
    chain(*(run_pipeline_step.si(run.pk) for run in runs)).apply_async()

    def all_finished():
        fresh = [PipelineRun.objects.get(pk=run.pk) for run in runs]
        return fresh if all(run.is_finished for run in fresh) else None

    return wait_until(all_finished, 300, "the crawl, ETL, train and deploy runs")


def test_a_reading_travels_from_device_to_forecast(
    tmp_path, lake, endpoint_server, identity_on_test_broker, ingest_service, celery_worker
):
    kit = register_device_with_kit(THING, tmp_path / "kit")
    ingest_service(lake, buffer_interval_s=1)
    call_command("backfill", days=15, devices=THING)  # history through the same validation path

    publish_with_agent(kit, count=4)
    live = wait_until(
        lambda: [r for r in readings_recent(THING, limit=50) if r["timestamp"].year >= 2026 and r["received_at"]],
        30, "the agent's readings in the lake's raw tail",
    )  # fmt: skip
    assert live

    runs = run_steps_on_worker([
        ("crawl", {}),
        ("etl", {}),
        ("train", {"metric": "ozone", "devices": [THING], "freq": "h", "hyperparameters": TINY_HYPERPARAMETERS}),
        ("deploy", {"model": "latest", "endpoint": "e2e-endpoint"}),
    ])  # fmt: skip
    assert [run.status for run in runs] == ["succeeded"] * 4, [(run.kind, run.error[:500]) for run in runs]
    model = TrainedModel.objects.get()
    assert {"test:RMSE", "test:mean_wQuantileLoss"} <= set(model.metrics)
    assert lake.exists(model.artifact_key)

    token = Token.objects.create(user=_user())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    history = [r["ozone"] for r in readings_recent(THING, limit=200)]
    body = {
        "instances": [{"start": "2026-11-01 00:00:00", "target": history[-48:], "cat": [0]}],
        "configuration": {"num_samples": 50, "output_types": ["mean", "quantiles"], "quantiles": ["0.1", "0.5", "0.9"]},
    }
    response = client.post(
        "/api/v1/endpoints/e2e-endpoint/invocations", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response["X-Amzn-Invoked-Production-Variant"] == "AllTraffic"
    prediction = response.json()["predictions"][0]
    p10, p50, p90 = (prediction["quantiles"][q] for q in ("0.1", "0.5", "0.9"))
    assert len(prediction["mean"]) == len(p50) == 12
    assert all(low <= mid <= high for low, mid, high in zip(p10, p50, p90, strict=True))


def _user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("e2e-client", password="unused-password-e2e")
