"""Training jobs: through the real Celery worker, metrics recomputed independently, cancel, time limit, registry."""

from __future__ import annotations

import io
import json
import math
import tarfile
import time

import numpy as np
import pytest

from cloud.deepar.control import TrainingCancelled, TrainingTimeLimit
from cloud.deepar.formats import read_channel
from cloud.deepar.hyperparameters import HyperparameterError, parse_hyperparameters
from cloud.deepar.model import DeepARModel
from forecasts.models import PipelineRun, TrainedModel, TrainingJob
from forecasts.runs import run_execute
from forecasts.services.datasets import DatasetSpec, dataset_build
from forecasts.services.registry import RegistryError, code_version, model_alias_set
from forecasts.services.training import training_job_cancel, training_job_submit
from forecasts.steps import step_work
from forecasts.training_selectors import ModelNotFound, model_resolve_alias
from tests.fixtures.endpoint import TINY_HYPERPARAMETERS
from tests.test_training_datasets import put_series

TINY = {k: v for k, v in TINY_HYPERPARAMETERS.items() if k not in {"time_freq", "context_length", "prediction_length"}}


def _values(record: dict) -> np.ndarray:
    return np.array([np.nan if v == "NaN" else v for v in record["target"]], dtype=float)


def _wql(actual: np.ndarray, forecasts: dict[float, np.ndarray]) -> float:
    """mean over q of 2 * sum(pinball_q) / sum(|actual|), written out here rather than imported."""
    keep = ~np.isnan(actual)
    losses = []
    for q, forecast in forecasts.items():
        diff = actual[keep] - forecast[keep]
        losses.append(2 * np.sum(np.where(diff >= 0, q * diff, (q - 1) * diff)) / np.sum(np.abs(actual[keep])))
    return float(np.mean(losses))


def _wait_finished(job: TrainingJob, timeout: float = 240) -> TrainingJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            return job
        time.sleep(0.25)
    pytest.fail(f"training job {job.name} did not finish in {timeout} s: {job.status} {job.message}")


def test_a_job_on_the_worker_registers_a_model_whose_metrics_recompute_from_its_forecasts(lake, celery_worker):
    put_series(lake, devices=3, hours=200)
    dataset = dataset_build(DatasetSpec(name="tiny", metric="ozone"))
    job = _wait_finished(training_job_submit("tiny", TINY, backtest_windows=2))
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert (job.epoch, job.epochs, len(job.losses)) == (2, 2, 2) and all(math.isfinite(v) for v in job.losses)
    assert job.run.status == PipelineRun.Status.SUCCEEDED and job.run.result["model"] == job.name
    model = TrainedModel.objects.get(job=job)
    # Lineage: the dataset, the resolved hyperparameters, the code, the artifact.
    assert model.dataset == dataset and model.devices == dataset.devices and model.metric == "ozone"
    assert model.hyperparameters == job.hyperparameters and model.hyperparameters["num_cells"] == "8"
    assert model.code_version == code_version() and model.artifact_key == f"models/{job.name}/output/model.tar.gz"
    # Recompute test:RMSE and test:mean_wQuantileLoss from the stored artifact's forecasts, the way DeepAR does.
    artifact = lake.get_bytes(model.artifact_key)
    deepar = DeepARModel.from_tarball(artifact)
    test = read_channel(lake.get_bytes(dataset.test_key))
    entries = [deepar.dataset_entry(_instance(record)) for record in test]
    paths = deepar.sample_paths(entries, deepar.hyperparameters.num_eval_samples, seed=0)
    actual = np.concatenate([_values(record)[-12:] for record in test])
    mean = np.concatenate([p.mean(axis=0) for p in paths])
    quantiles = {
        q: np.concatenate([np.quantile(p, q, axis=0) for p in paths]) for q in deepar.hyperparameters.test_quantiles
    }
    assert model.metrics["test:RMSE"] == pytest.approx(float(np.sqrt(np.nanmean((actual - mean) ** 2))), rel=1e-4)
    assert model.metrics["test:mean_wQuantileLoss"] == pytest.approx(_wql(actual, quantiles), rel=1e-4)
    assert model.metrics["train:final_loss"] == pytest.approx(job.losses[-1])
    # The seasonal-naive baseline on the same window: yesterday's same hours.
    naive = np.concatenate([_values(record)[-36:-24] for record in test])
    assert model.baseline_metrics["test:RMSE"] == pytest.approx(float(np.sqrt(np.nanmean((actual - naive) ** 2))))
    # Reloaded, the artifact forecasts identically with the same seed.
    again = DeepARModel.from_tarball(artifact).sample_paths(entries, 50, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(deepar.sample_paths(entries, 50, seed=3), again, strict=True))
    assert [w["origin"] for w in model.backtest["windows"]] == [-24, -12] and len(model.backtest["series"]) == 3


def _instance(record: dict):
    import pandas as pd

    from cloud.deepar.formats import Instance

    return Instance(start=pd.Timestamp(record["start"]), target=_values(record)[:-12].tolist(), cat=record["cat"])


@pytest.fixture
def tiny_dataset(db, lake):
    put_series(lake, devices=3, hours=120)
    return dataset_build(DatasetSpec(name="tiny", metric="ozone"))


def test_cancelling_a_running_job_stops_it_and_registers_nothing(tiny_dataset, lake):
    job = training_job_submit("tiny", {**TINY, "epochs": "100"}, queue=False)

    def operator_cancels_after_the_first_epoch(percent: float, message: str) -> None:
        if message.startswith("epoch 1/"):
            training_job_cancel(job.name)

    with pytest.raises(TrainingCancelled):
        run_execute(job.run.pk, step_work("train"), echo=operator_cancels_after_the_first_epoch)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.CANCELLED and job.epoch == 1 and "cancelled" in job.message
    assert job.run.status == PipelineRun.Status.FAILED and "TrainingCancelled" in job.run.error
    assert not TrainedModel.objects.exists() and lake.list_objects(f"models/{job.name}/") == []
    with pytest.raises(ValueError, match="already finished"):
        training_job_cancel(job.name)


def test_a_job_past_its_time_limit_is_stopped(tiny_dataset, lake):
    job = training_job_submit("tiny", {**TINY, "epochs": "200"}, max_runtime_s=1, queue=False)
    with pytest.raises(TrainingTimeLimit):
        run_execute(job.run.pk, step_work("train"))
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.STOPPED and "max_runtime_s of 1 s" in job.message
    assert job.epoch < 200 and not TrainedModel.objects.exists()


def test_a_job_cancelled_while_queued_never_trains(tiny_dataset):
    job = training_job_submit("tiny", TINY, queue=False)
    training_job_cancel(job.name)
    with pytest.raises(TrainingCancelled):
        run_execute(job.run.pk, step_work("train"))
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.CANCELLED and job.epoch == 0


def test_every_bad_hyperparameter_gets_its_own_message(tiny_dataset):
    bad = {"num_cells": "0", "likelihood": "poisson", "dropout_rate": "1.5", "mini_batch_size": "many"}
    with pytest.raises(HyperparameterError) as caught:
        training_job_submit("tiny", bad, queue=False)
    assert len(caught.value.errors) == 4 and not TrainingJob.objects.exists()
    for name in bad:
        assert any(error.startswith(name) for error in caught.value.errors)
    for likelihood in ("gaussian", "beta", "negative-binomial", "student-T", "deterministic-L1"):
        hp = {"time_freq": "H", "context_length": "2", "prediction_length": "1", "epochs": "1"}
        assert parse_hyperparameters({**hp, "likelihood": likelihood}).likelihood == likelihood


def test_deterministic_l1_trains_and_its_artifact_alone_tells_where_it_came_from(tiny_dataset, lake):
    from django.contrib.auth.models import User

    ada = User.objects.create_user("ada")
    hp = {**TINY, "epochs": "1", "likelihood": "deterministic-L1"}
    job = training_job_submit("tiny", hp, queue=False, created_by=ada)
    run = run_execute(job.run.pk, step_work("train"))
    assert run.status == PipelineRun.Status.SUCCEEDED, run.error
    model = TrainedModel.objects.get()
    assert math.isfinite(model.metrics["test:mean_wQuantileLoss"])
    with tarfile.open(fileobj=io.BytesIO(lake.get_bytes(model.artifact_key)), mode="r:gz") as tar:
        lineage = json.load(tar.extractfile("lineage.json"))
        stored = json.load(tar.extractfile("hyperparameters.json"))
    # What the registry row knows, the artifact knows too, without the database.
    assert lineage["training_job"] == job.name and lineage["dataset"] == "tiny" == model.dataset.name
    assert (lineage["metric"], lineage["devices"], lineage["freq"]) == (model.metric, model.devices, model.freq)
    assert lineage["devices"] == ["sensor-0", "sensor-1", "sensor-2"] and lineage["code_version"] == code_version()
    assert (lineage["train"], lineage["test"]) == (tiny_dataset.train_key, tiny_dataset.test_key)
    assert lineage["lake"] == lake.url and lineage["created_by"] == "ada" and lineage["start"] is None
    assert (lineage["context_length"], lineage["prediction_length"]) == (24, 12)
    assert stored["likelihood"] == "deterministic-L1" == model.hyperparameters["likelihood"]


def test_too_many_backtest_windows_are_refused_before_any_job(tiny_dataset, client, capsys):
    from django.contrib.auth.models import User
    from django.core.management import CommandError, call_command

    # 120 points per series leave history before at most 9 windows of 12.
    with pytest.raises(ValueError, match="too short for 10 backtest windows of 12 \\(at most 9\\)"):
        training_job_submit("tiny", TINY, backtest_windows=10, queue=False)
    with pytest.raises(CommandError, match="too short for 10 backtest windows"):
        call_command("train", "--dataset", "tiny", "--backtest", "10")
    with pytest.raises(CommandError, match="backtest_windows must be between 0 and 20"):
        call_command("train", "--metric", "ozone", "--backtest", "-1")
    client.force_login(User.objects.create_user("ada", is_staff=True))
    body = {"dataset": "tiny", "hyperparameters": TINY, "backtest_windows": 10}
    answer = client.post("/api/v1/training/jobs/", body, "application/json")
    assert answer.status_code == 400 and "at most 9" in answer.json()["detail"]
    assert not TrainingJob.objects.exists() and not PipelineRun.objects.exists()
    assert training_job_submit("tiny", TINY, backtest_windows=9, queue=False).name.startswith("deepar-tiny-")


@pytest.mark.parametrize("last_step", ["stored models/", "scoring the seasonal-naive baseline"])
def test_a_cancel_noticed_after_the_artifact_was_written_leaves_nothing_behind(tiny_dataset, lake, last_step):
    job = training_job_submit("tiny", {**TINY, "epochs": "1"}, queue=False)
    seen = []

    def operator_cancels_at_the_last_moment(percent: float, message: str) -> None:
        seen.append(message)
        if message.startswith(last_step):
            assert lake.exists(f"models/{job.name}/output/model.tar.gz")  # the half artifact exists right now
            training_job_cancel(job.name)

    with pytest.raises(TrainingCancelled):
        run_execute(job.run.pk, step_work("train"), echo=operator_cancels_at_the_last_moment)
    job.refresh_from_db()
    assert any(message.startswith(last_step) for message in seen)
    assert job.status == TrainingJob.Status.CANCELLED and not TrainedModel.objects.exists()
    assert lake.list_objects(f"models/{job.name}/") == []


def test_early_stopping_patience_stops_a_real_training_early(tiny_dataset):
    # At the smallest learning rate the loss only wanders; with a patience of 1 the first epoch without a new best
    # ends the training long before its 30 epochs.
    hp = {**TINY, "epochs": "30", "learning_rate": "1e-6", "early_stopping_patience": "1"}
    job = training_job_submit("tiny", hp, queue=False)
    run = run_execute(job.run.pk, step_work("train"))
    assert run.status == PipelineRun.Status.SUCCEEDED, run.error
    job.refresh_from_db()
    assert job.hyperparameters["early_stopping_patience"] == "1" and job.epochs == 30
    assert 2 <= job.epoch < 30 and len(job.losses) == job.epoch
    # Stopped right after the first epoch whose loss was no new minimum.
    assert job.losses[-1] >= min(job.losses[:-1]) and job.losses[:-1] == sorted(job.losses[:-1], reverse=True)


def test_train_wait_follows_the_job_on_the_worker_to_its_metrics(lake, celery_worker, capsys):
    from django.core.management import call_command

    put_series(lake, devices=3, hours=120)
    dataset_build(DatasetSpec(name="tiny", metric="ozone"))
    call_command("train", "--dataset", "tiny", "--wait", "--timeout", "240",
                 *[f"--hp={k}={v}" for k, v in {**TINY, "epochs": "1"}.items()])  # fmt: skip
    out = capsys.readouterr().out
    job = TrainingJob.objects.get()
    assert job.status == TrainingJob.Status.SUCCEEDED and job.run.status == PipelineRun.Status.SUCCEEDED
    assert out.index(f"training job {job.name} on dataset tiny") < out.index("%  [")  # the name first, progress next
    assert f"train run #{job.run.pk} succeeded" in out and f"model: {job.name}" in out
    assert "test:mean_wQuantileLoss" in out and "baseline_metrics" in out


def test_aliases_point_at_versions_and_resolve(db):
    first = TrainedModel.objects.create(name="m1", metric="ozone", artifact_key="models/m1/output/model.tar.gz")
    second = TrainedModel.objects.create(name="m2", metric="ozone", artifact_key="models/m2/output/model.tar.gz")
    model_alias_set("champion", "m1")
    model_alias_set("challenger", "m2")
    assert model_resolve_alias("champion") == first and model_resolve_alias("challenger") == second
    model_alias_set("champion", "m2")
    assert model_resolve_alias("champion") == second and model_resolve_alias("m1") == first
    assert model_resolve_alias("latest") == second
    with pytest.raises(ModelNotFound, match="no model or alias"):
        model_resolve_alias("nothing")
    with pytest.raises(RegistryError):
        model_alias_set("latest", "m1")
    with pytest.raises(RegistryError):
        model_alias_set("m1", "m2")
    with pytest.raises(TrainedModel.DoesNotExist):
        model_alias_set("staging", "m9")


def test_train_command_on_a_dataset_prints_the_job_progress_and_metrics(tiny_dataset, capsys):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="num_cells must be between 1 and 200"):
        call_command("train", "--dataset", "tiny", "--hp", "num_cells=0")
    with pytest.raises(CommandError, match="dataset 'nope' does not exist"):
        call_command("train", "--dataset", "nope")
    assert not PipelineRun.objects.exists()
    call_command("train", "--dataset", "tiny", *[f"--hp={k}={v}" for k, v in {**TINY, "epochs": "1"}.items()])
    out = capsys.readouterr().out
    job = TrainingJob.objects.get()
    assert job.run is not None and job.status == TrainingJob.Status.SUCCEEDED and job.dataset == tiny_dataset
    assert f"model: {job.name}" in out and "epoch 1/1 train_loss" in out and "test:mean_wQuantileLoss" in out
    assert "baseline_metrics" in out
