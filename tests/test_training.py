"""DeepAR hyperparameters, channels, metrics, the local GluonTS trainer and the train step."""

from __future__ import annotations

import io
import json
import math
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from cloud.deepar.channels import MIN_OBSERVATIONS, ChannelError, build_channels
from cloud.deepar.hyperparameters import HyperparameterError, parse_assignments, parse_hyperparameters
from cloud.deepar.metrics import mean_weighted_quantile_loss, rmse, weighted_quantile_loss
from cloud.local.training import batches_per_epoch
from tests.fixtures.endpoint import TINY_HYPERPARAMETERS, synthetic_frame
from tests.telemetry_helpers import put_raw, reading

REQUIRED = {"time_freq": "H", "context_length": "24", "prediction_length": "12", "epochs": "3"}


def test_hyperparameters_parse_sagemaker_strings_with_defaults():
    hp = parse_hyperparameters({**REQUIRED, "likelihood": "gaussian", "test_quantiles": "[0.9, 0.1]"})
    assert (hp.context_length, hp.prediction_length, hp.epochs) == (24, 12, 3)
    assert hp.num_cells == 40 and hp.num_layers == 2 and hp.mini_batch_size == 128 and hp.learning_rate == 1e-3
    assert hp.likelihood == "gaussian" and hp.test_quantiles == (0.1, 0.9) and hp.pandas_freq == "h"
    assert parse_hyperparameters(hp.as_sagemaker()) == hp


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"num_cells": "0"}, "num_cells must be between 1 and 200"),
        ({"num_layers": "two"}, "num_layers must be an integer"),
        ({"likelihood": "poisson"}, "likelihood must be one of"),
        ({"prediction_length": "401"}, "prediction_length must be between 1 and 400"),
        ({"learning_rate": "2"}, "learning_rate must be between"),
        ({"time_freq": "fortnight"}, "time_freq must be like"),
        ({"test_quantiles": "[0.5, 1.5]"}, "test_quantiles must be a non-empty list of numbers in (0, 1)"),
        ({"cardinality": "[0]"}, "cardinality must be auto, ignore"),
        ({"num_cells": "201"}, "num_cells must be between 1 and 200"),
        ({"num_layers": "9"}, "num_layers must be between 1 and 8"),
        ({"epochs": "0"}, "epochs must be between 1 and 1000, got '0'"),
        ({"epochs": "1001"}, "epochs must be between 1 and 1000, got '1001'"),
        ({"epochs": "2.5"}, "epochs must be an integer, got '2.5'"),
        ({"context_length": "0"}, "context_length must be >= 1, got '0'"),
        ({"context_length": "a day"}, "context_length must be an integer"),
        ({"prediction_length": "0"}, "prediction_length must be between 1 and 400"),
        ({"embedding_dimension": "0"}, "embedding_dimension must be between 1 and 1000, got '0'"),
        ({"embedding_dimension": "1001"}, "embedding_dimension must be between 1 and 1000, got '1001'"),
        ({"num_eval_samples": "0"}, "num_eval_samples must be between 1 and 10000, got '0'"),
        ({"num_eval_samples": "lots"}, "num_eval_samples must be an integer"),
        ({"early_stopping_patience": "0"}, "early_stopping_patience must be between 1 and 1000, got '0'"),
        ({"early_stopping_patience": "-3"}, "early_stopping_patience must be between 1 and 1000, got '-3'"),
        ({"mini_batch_size": "0"}, "mini_batch_size must be between 1 and 1000000, got '0'"),
        ({"mini_batch_size": "1000001"}, "mini_batch_size must be between 1 and 1000000"),
        ({"learning_rate": "1e-7"}, "learning_rate must be between 1e-06 and 1.0"),
        ({"learning_rate": "fast"}, "learning_rate must be a number"),
        ({"dropout_rate": "-0.1"}, "dropout_rate must be between 0.0 and 1.0"),
        ({"likelihood": "Gaussian"}, "likelihood must be one of gaussian, beta, negative-binomial"),
        ({"time_freq": "0H"}, "time_freq must be like"),
        ({"cardinality": "[2, 3]"}, "cardinality must be auto, ignore or a list of one positive integer"),
        ({"cardinality": "many"}, "cardinality must be a JSON list"),
        ({"num_dynamic_feat": "1001"}, "num_dynamic_feat must be auto, ignore or an integer from 0 to 1000"),
        ({"test_quantiles": "[]"}, "test_quantiles must be a non-empty list"),
        ({"test_quantiles": "0.5"}, "test_quantiles must be a JSON list"),
        ({"test_quantiles": '["low"]'}, "test_quantiles must be numbers"),
        ({"num_hidden": "3"}, "unknown DeepAR hyperparameter(s): num_hidden"),
        ({"epochs": ""}, "missing required DeepAR hyperparameter(s): epochs"),
    ],
)
def test_hyperparameters_reject_bad_values_naming_them(override, message):
    with pytest.raises(HyperparameterError) as caught:
        parse_hyperparameters({**REQUIRED, **override})
    assert message in str(caught.value)


def test_early_stopping_patience_maps_to_lightning_early_stopping_on_the_training_loss(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping

    from cloud.interfaces import no_progress
    from cloud.local.training import GluonTSDeepAR

    trainer = GluonTSDeepAR(str(tmp_path))
    patient = trainer._callbacks(parse_hyperparameters({**REQUIRED, "early_stopping_patience": "4"}), no_progress, [])
    stopping = [callback for callback in patient if isinstance(callback, EarlyStopping)]
    assert len(stopping) == 1 and len(patient) == 2
    assert (stopping[0].monitor, stopping[0].patience, stopping[0].mode) == ("train_loss", 4, "min")
    # Unset (SageMaker's default), training runs all its epochs.
    plain = trainer._callbacks(parse_hyperparameters(REQUIRED), no_progress, [])
    assert not any(isinstance(callback, EarlyStopping) for callback in plain) and len(plain) == 1


def test_cli_assignments_parse_and_reject_malformed():
    assert parse_assignments(["epochs=5", " num_cells = 8 "]) == {"epochs": "5", "num_cells": "8"}
    with pytest.raises(HyperparameterError, match="name=value"):
        parse_assignments(["epochs"])


def test_channels_keep_gaps_as_nan_and_cut_train_by_prediction_length():
    channels = build_channels(synthetic_frame(devices=3, hours=120), "h", 24, 12)
    train = [json.loads(line) for line in channels.train]
    test = [json.loads(line) for line in channels.test]
    assert channels.devices == ["sensor-0", "sensor-1", "sensor-2"] and channels.observations == 3 * 117
    assert channels.train_observations == 3 * (117 - 12)
    assert [t["cat"] for t in test] == [[0], [1], [2]] and test[0]["start"] == "2026-11-01 00:00:00"
    assert len(test[0]["target"]) == 120 and test[0]["target"][50:53] == ["NaN", "NaN", "NaN"]
    assert 0 not in test[0]["target"]
    assert train[0]["target"] == test[0]["target"][:-12] and train[0]["start"] == test[0]["start"]
    assert channels.data("train").decode().count("\n") == 3


def test_channels_need_300_observations_and_long_enough_series():
    with pytest.raises(ChannelError, match=f"at least {MIN_OBSERVATIONS} observations"):
        build_channels(synthetic_frame(devices=2, hours=140, gap=False), "h", 24, 12)
    with pytest.raises(ChannelError, match="context_length \\+ prediction_length"):
        build_channels(synthetic_frame(devices=3, hours=30), "h", 24, 12)
    # 2 x 160 = 320 observations in all, but the train channel holds 2 x 148 = 296: DeepAR trains on those only.
    with pytest.raises(ChannelError, match="observations in total in the train channel; it holds 296"):
        build_channels(synthetic_frame(devices=2, hours=160, gap=False), "h", 24, 12)
    assert build_channels(synthetic_frame(devices=2, hours=162, gap=False), "h", 24, 12).train_observations == 300
    frame = synthetic_frame(devices=4, hours=120, gap=False)
    frame = frame[(frame.device_id != "sensor-3") | (frame.ts < frame.ts.min() + timedelta(hours=10))]
    channels = build_channels(frame, "h", 24, 12)
    assert channels.devices == ["sensor-0", "sensor-1", "sensor-2"] and "sensor-3" in channels.skipped


def test_metrics_match_hand_computed_values():
    actual, forecast = np.array([10.0, 20.0, math.nan]), np.array([12.0, 16.0, 5.0])
    assert rmse(actual, forecast) == pytest.approx(math.sqrt((4 + 16) / 2))
    # q=0.5: pinball = 0.5*|e| -> 2 * (1 + 2) / 30
    assert weighted_quantile_loss(actual, forecast, 0.5) == pytest.approx(0.2)
    # q=0.9: e = -2 -> 0.1*2 = 0.2; e = 4 -> 0.9*4 = 3.6 -> 2 * 3.8 / 30
    assert weighted_quantile_loss(actual, forecast, 0.9) == pytest.approx(7.6 / 30)
    assert mean_weighted_quantile_loss(actual, {0.5: forecast, 0.9: forecast}) == pytest.approx((0.2 + 7.6 / 30) / 2)


def test_an_epoch_draws_about_as_many_windows_as_the_data_holds():
    hp = parse_hyperparameters({**REQUIRED, "mini_batch_size": "32"})
    records = [{"target": [1.0] * 1000}] * 20  # 20000 / 36 / 32 = 17.4
    assert batches_per_epoch(records, hp) == 17
    assert batches_per_epoch([{"target": [1.0] * 50}], hp) == 1


def test_tiny_training_stores_model_tarball_and_sagemaker_metrics(tiny_model):
    with tarfile.open(fileobj=io.BytesIO(tiny_model.artifact), mode="r:gz") as tar:
        names = set(tar.getnames())
        stored = json.load(tar.extractfile("hyperparameters.json"))
        lineage = json.load(tar.extractfile("lineage.json"))
    assert {"hyperparameters.json", "lineage.json", "prediction-net-state.pt"} <= names
    assert lineage["training_job"] == "deepar-tiny"
    assert (lineage["train"], lineage["test"]) == (
        "datasets/deepar-tiny/train/data.json", "datasets/deepar-tiny/test/data.json",
    )  # fmt: skip
    assert stored["num_cells"] == "8" and stored["cardinality"] == "[3]"
    assert set(tiny_model.metrics) == {"test:RMSE", "test:mean_wQuantileLoss", "train:final_loss"}
    assert all(math.isfinite(value) for value in tiny_model.metrics.values())
    # The series swing +-10 around 40: even a two-epoch model must be nearer than predicting 0.
    assert 0 < tiny_model.metrics["test:RMSE"] < 40 and 0 < tiny_model.metrics["test:mean_wQuantileLoss"] < 1
    repo = Path(__file__).resolve().parent.parent
    assert not (repo / "checkpoints").exists() and not (repo / "lightning_logs").exists()


def _raw_hours(lake, devices: int, hours: int) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    frame = synthetic_frame(devices=devices, hours=hours)
    offset = start - frame.ts.min().to_pydatetime()
    records = [reading(row.device_id, row.ts.to_pydatetime() + offset, ozone=row.value) for row in frame.itertuples()]
    put_raw(lake, records)


@pytest.mark.django_db
def test_training_execute_end_to_end_from_raw_telemetry(lake, settings, tmp_path):
    from forecasts.models import TrainedModel
    from forecasts.services.training import training_execute

    settings.CLOUD_BACKENDS = {
        **settings.CLOUD_BACKENDS,
        "training": {"BACKEND": "cloud.local.training.GluonTSDeepAR", "OPTIONS": {"work_dir": str(tmp_path / "w")}},
    }
    _raw_hours(lake, devices=2, hours=200)
    reports = []
    hp = {key: value for key, value in TINY_HYPERPARAMETERS.items() if key != "time_freq"} | {"epochs": "1"}
    result = training_execute({"metric": "ozone", "hyperparameters": hp}, lambda p, m: reports.append((p, m)))
    model = TrainedModel.objects.get(name=result["model"])
    assert model.name.startswith("deepar-ozone-") and model.devices == ["sensor-0", "sensor-1"]
    assert model.hyperparameters["time_freq"] == "H" and model.hyperparameters["epochs"] == "1"
    assert lake.exists(model.artifact_key) and model.artifact_key == f"models/{model.name}/output/model.tar.gz"
    assert lake.exists(f"datasets/{model.name}/train/data.json") and lake.exists(
        f"datasets/{model.name}/test/data.json"
    )
    assert set(result["metrics"]) == {"test:RMSE", "test:mean_wQuantileLoss", "train:final_loss"}
    assert any("epoch 1/1" in message for _, message in reports) and reports[-1][0] <= 100


@pytest.mark.django_db
def test_train_command_rejects_bad_hyperparameters_before_any_run(lake):
    from forecasts.models import PipelineRun

    with pytest.raises(CommandError, match="num_cells must be between 1 and 200"):
        call_command("train", "--hp", "num_cells=0")
    with pytest.raises(CommandError, match="name=value"):
        call_command("train", "--hp", "epochs")
    assert not PipelineRun.objects.exists()


@pytest.mark.django_db
def test_train_command_reports_too_little_data_as_a_failed_run(lake):
    from forecasts.models import PipelineRun

    _raw_hours(lake, devices=1, hours=60)
    with pytest.raises(CommandError, match="at least 300 observations"):
        call_command("train", "--metric", "ozone", "--hp", "epochs=1")
    assert PipelineRun.objects.get().status == PipelineRun.Status.FAILED
