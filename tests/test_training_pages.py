"""The training pages and the training REST API: who may do what, and what they show."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from forecasts.models import ModelAlias, TrainedModel, TrainingJob
from forecasts.services.datasets import DatasetSpec, dataset_build
from tests.test_training_datasets import put_series

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_user("ada", password="x", is_staff=True))
    return client


@pytest.fixture
def operator_client(client):
    client.force_login(User.objects.create_user("olle", password="x"))
    return client


@pytest.fixture
def models(db):
    base = {"metric": "ozone", "hyperparameters": {"epochs": "5", "num_cells": "40"}}
    first = TrainedModel.objects.create(
        name="m1", artifact_key="models/m1/output/model.tar.gz", metrics={"test:mean_wQuantileLoss": 0.2},
        baseline_metrics={"test:mean_wQuantileLoss": 0.1}, **base,
    )  # fmt: skip
    backtest = {"plot": [{"series": 0, "origin": -3, "actual": [1.0, None, 3.0], "p10": [0, 1, 2], "p50": [1, 2, 3],
                          "p90": [2, 3, 4]}], "windows": [{"origin": -3, "test:RMSE": 1.0}]}  # fmt: skip
    second = TrainedModel.objects.create(
        name="m2", artifact_key="models/m2/output/model.tar.gz", metrics={"test:mean_wQuantileLoss": 0.05},
        baseline_metrics={"test:mean_wQuantileLoss": 0.1}, backtest=backtest, **base,
    )  # fmt: skip
    return first, second


def test_model_pages_show_metrics_against_the_baseline_and_compare(operator_client, models):
    page = operator_client.get(reverse("training:model", args=["m1"])).content.decode()
    assert "does not beat seasonal naive" in page and "2.000" in page  # 0.2 / 0.1
    page = operator_client.get(reverse("training:model", args=["m2"])).content.decode()
    assert "does not beat" not in page and "p10\u2013p90" in page and "<polygon" in page
    page = operator_client.get(reverse("training:compare") + "?a=m1&b=m2").content.decode()
    assert "m1" in page and "m2" in page and "num_cells" in page
    assert operator_client.get(reverse("training:model", args=["nope"])).status_code == 404
    home = operator_client.get(reverse("training:home")).content.decode()
    assert "m2" in home and "Build dataset" not in home  # operators look, admins change


def test_operators_cannot_change_anything(operator_client, models):
    assert operator_client.post(reverse("training:alias_set", args=["m1"]), {"alias": "champion"}).status_code == 403
    assert operator_client.post(reverse("training:dataset_create"), {"name": "x"}).status_code == 403
    assert (
        operator_client.put("/api/v1/registry/aliases/champion", {"model": "m1"}, "application/json").status_code == 403
    )
    assert not ModelAlias.objects.exists()


def test_admins_set_aliases_on_the_page_and_through_the_api(admin_client, models):
    admin_client.post(reverse("training:alias_set", args=["m1"]), {"alias": "champion"})
    assert ModelAlias.objects.get(name="champion").model.name == "m1"
    answer = admin_client.put("/api/v1/registry/aliases/champion", {"model": "m2"}, "application/json")
    assert answer.status_code == 200 and answer.json()["model"] == "m2"
    detail = admin_client.get("/api/v1/registry/models/champion").json()
    assert detail["name"] == "m2" and detail["aliases"] == ["champion"] and detail["beats_baseline"] is True
    assert admin_client.put("/api/v1/registry/aliases/latest", {"model": "m2"}, "application/json").status_code == 400
    assert admin_client.put("/api/v1/registry/aliases/x", {"model": "m9"}, "application/json").status_code == 404
    assert admin_client.delete("/api/v1/registry/aliases/champion").status_code == 204


def test_datasets_and_jobs_through_the_api(admin_client, lake, django_capture_on_commit_callbacks):
    put_series(lake, devices=3, hours=120)
    created = admin_client.post("/api/v1/training/datasets/", {"name": "api-ds", "metric": "ozone"}, "application/json")
    assert created.status_code == 201, created.content
    assert created.json()["series_count"] == 3 and created.json()["created_by"] == "ada"
    download = admin_client.get("/api/v1/training/datasets/api-ds/train/data.json")
    assert download.status_code == 200 and download.content == lake.get_bytes("datasets/api-ds/train/data.json")
    bad = admin_client.post("/api/v1/training/datasets/", {"name": "short", "metric": "ozone", "context_length": 500},
                            "application/json")  # fmt: skip
    assert bad.status_code == 400 and "context_length + prediction_length" in bad.json()["detail"]
    wrong = {"dataset": "api-ds", "hyperparameters": {"num_cells": "0", "likelihood": "poisson"}}
    answer = admin_client.post("/api/v1/training/jobs/", wrong, "application/json")
    assert answer.status_code == 400 and len(answer.json()["hyperparameters"]) == 2
    with django_capture_on_commit_callbacks() as callbacks:
        answer = admin_client.post("/api/v1/training/jobs/", {"dataset": "api-ds", "hyperparameters": {"epochs": "1"}},
                                   "application/json")  # fmt: skip
    job = answer.json()
    assert answer.status_code == 201 and job["status"] == "queued" and len(callbacks) == 1  # queued on the worker
    assert job["hyperparameters"]["context_length"] == "24" and job["run_id"] is not None
    cancelled = admin_client.post(f"/api/v1/training/jobs/{job['name']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    assert TrainingJob.objects.get().cancel_requested
    page = admin_client.get(reverse("training:job", args=[job["name"]])).content.decode()
    assert 'http-equiv="refresh"' in page and "Cancel the job" in page


def test_the_home_page_builds_a_dataset_and_reports_rule_errors(admin_client, lake):
    put_series(lake, devices=3, hours=120)
    form = {"name": "web-ds", "metric": "ozone", "freq": "h", "context_length": "24", "prediction_length": "12",
            "use_cat": "on", "dynamic_feat": " hour_of_day,day_of_week, "}  # fmt: skip
    page = admin_client.post(reverse("training:dataset_create"), form, follow=True).content.decode()
    assert "Dataset web-ds: 3 series" in page and "/training/datasets/web-ds/test/data.json" in page
    from forecasts.models import Dataset

    assert Dataset.objects.get(name="web-ds").dynamic_feat == ["hour_of_day", "day_of_week"]
    page = admin_client.post(reverse("training:dataset_create"), {**form, "name": "x", "prediction_length": "401"},
                             follow=True).content.decode()  # fmt: skip
    assert "prediction_length must be at most 400" in page
    dataset_build(DatasetSpec(name="other", metric="ozone"))
    page = admin_client.post(reverse("training:job_start"), {"dataset": "web-ds", "hyperparameters": "num_cells=0"},
                             follow=True).content.decode()  # fmt: skip
    assert "num_cells must be between 1 and 200" in page and not TrainingJob.objects.exists()


def test_the_dataset_form_takes_a_utc_time_range_and_checks_it(admin_client, lake):
    from datetime import UTC, datetime

    from forecasts.models import Dataset
    from forecasts.services.datasets import dataset_channel
    from tests.test_training_datasets import lines

    put_series(lake, devices=3, hours=200)  # hourly from 2026-11-01 00:00 UTC to 2026-11-09 07:00
    home = admin_client.get(reverse("training:home")).content.decode()
    assert 'type="datetime-local" name="start"' in home and "Start (UTC" in home and "End (UTC" in home
    form = {"name": "ranged", "metric": "ozone", "freq": "h", "context_length": "24", "prediction_length": "12",
            "use_cat": "on", "start": "2026-11-02T00:00", "end": "2026-11-08T07:00"}  # fmt: skip
    page = admin_client.post(reverse("training:dataset_create"), form, follow=True).content.decode()
    assert "Dataset ranged: 3 series" in page
    dataset = Dataset.objects.get(name="ranged")
    # The browser's zone-less wall-clock time is read as UTC, as the label says.
    assert (dataset.start, dataset.end) == (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 8, 7, tzinfo=UTC))
    for record in lines(dataset_channel(dataset, "test")):
        assert record["start"] == "2026-11-02 00:00:00" and len(record["target"]) == 6 * 24 + 8
    reversed_range = {**form, "name": "backwards", "start": "2026-11-08T07:00", "end": "2026-11-02T00:00"}
    page = admin_client.post(reverse("training:dataset_create"), reversed_range, follow=True).content.decode()
    assert "Dataset not built: start must be before end" in page
    malformed = {**form, "name": "malformed", "end": "next tuesday"}
    page = admin_client.post(reverse("training:dataset_create"), malformed, follow=True).content.decode()
    assert "Dataset not built: end &#x27;next tuesday&#x27; is not a date and time" in page
    assert list(Dataset.objects.values_list("name", flat=True)) == ["ranged"]


def test_the_job_page_draws_the_loss_curve_once_epochs_finish(operator_client):
    job = TrainingJob.objects.create(name="deepar-curve", status="running", epoch=0, epochs=3)
    page = operator_client.get(reverse("training:job", args=[job.name])).content.decode()
    assert "No epoch has finished yet" in page and "<polyline" not in page
    TrainingJob.objects.filter(pk=job.pk).update(epoch=3, losses=[2.5, None, 1.25])
    page = operator_client.get(reverse("training:job", args=[job.name])).content.decode()
    assert 'aria-label="training loss per epoch"' in page and "loss 2.5 → 1.25" in page
    points = page.split('<polyline fill="none" stroke="#0969da" stroke-width="2" points="')[1].split('"')[0].split()
    # Epochs 1 and 3 (the unknown loss is left out); the falling loss goes down the chart (SVG's y grows down).
    assert len(points) == 2 and float(points[0].split(",")[1]) < float(points[1].split(",")[1])
