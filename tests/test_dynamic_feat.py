"""dynamic_feat end to end: calendar features in the channels, a tiny training with them, the endpoint checking
them as DeepAR does, and device forecasts building them for the forecast window."""

from __future__ import annotations

import io
import json
import math
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from cloud.deepar.channels import build_channels
from cloud.deepar.features import FeatureError, calendar_features, check_dynamic_feat
from cloud.deepar.formats import RequestError, parse_request, read_channel
from cloud.deepar.hyperparameters import HyperparameterError, parse_hyperparameters
from cloud.deepar.model import DeepARModel
from dataplane.endpoint.fastpredict import forecaster
from deployments.services import deploy_execute
from forecasts.models import PipelineRun, TrainedModel
from forecasts.runs import run_execute
from forecasts.services.datasets import DatasetError, DatasetSpec, dataset_build
from forecasts.services.forecasting import forecast_for_device
from forecasts.services.training import training_job_submit
from forecasts.steps import step_work
from tests.fixtures.endpoint import synthetic_frame
from tests.test_training_datasets import put_series
from tests.test_training_jobs import TINY

FEATURES = ["hour_of_day", "day_of_week"]


def test_channels_carry_sine_and_cosine_calendar_rows_as_long_as_each_target():
    channels = build_channels(synthetic_frame(), "h", 24, 12, dynamic_feat=tuple(FEATURES))
    for train, test in zip(read_channel(channels.data("train")), read_channel(channels.data("test")), strict=True):
        for record in (train, test):
            rows = record["dynamic_feat"]
            assert len(rows) == 4 and all(len(row) == len(record["target"]) for row in rows)
        assert [row[: len(train["target"])] for row in test["dynamic_feat"]] == train["dynamic_feat"]
    first = read_channel(channels.data("test"))[0]
    hours = pd.date_range(first["start"], periods=len(first["target"]), freq="h")
    hour_sin, hour_cos, week_sin, _ = (np.asarray(row) for row in first["dynamic_feat"])
    assert hour_sin[6] == pytest.approx(1.0) and hour_cos[0] == pytest.approx(1.0)  # 06:00 and 00:00
    assert hour_sin == pytest.approx(np.sin(2 * np.pi * hours.hour / 24), abs=1e-6)
    assert week_sin == pytest.approx(np.sin(2 * np.pi * (hours.dayofweek + hours.hour / 24) / 7), abs=1e-6)
    plain = read_channel(build_channels(synthetic_frame(), "h", 24, 12).data("test"))[0]
    assert "dynamic_feat" not in plain


def test_metrics_and_unknown_names_are_refused_as_dynamic_feat():
    with pytest.raises(FeatureError, match="'ozone' is a metric: its future values are not known at forecast time"):
        check_dynamic_feat(["hour_of_day", "ozone"], ("ozone",))
    with pytest.raises(FeatureError, match="unknown dynamic_feat 'sunshine'"):
        check_dynamic_feat(["sunshine"])
    with pytest.raises(FeatureError, match="listed once"):
        check_dynamic_feat(["hour_of_day", "hour_of_day"])
    assert len(calendar_features(["month_of_year"], pd.date_range("2026-01-01", periods=3, freq="D"))) == 2


@pytest.mark.django_db
def test_build_dataset_records_the_features_and_refuses_other_metrics(lake, capsys):
    put_series(lake, devices=3, hours=120)
    call_command("build_dataset", "ozone-cal", "--metric", "ozone", "--freq", "H",
                 "--dynamic-feat", "hour_of_day,day_of_week")  # fmt: skip
    assert "dynamic_feat: hour_of_day, day_of_week" in capsys.readouterr().out
    from forecasts.models import Dataset

    dataset = Dataset.objects.get(name="ozone-cal")
    assert dataset.dynamic_feat == FEATURES
    assert all(len(r["dynamic_feat"]) == 4 for r in read_channel(lake.get_bytes(dataset.train_key)))
    with pytest.raises(CommandError, match="'particulate_matter' is a metric: its future values are not known"):
        call_command("build_dataset", "pm-feat", "--metric", "ozone", "--dynamic-feat", "particulate_matter")
    with pytest.raises(DatasetError, match="unknown dynamic_feat"):
        dataset_build(DatasetSpec(name="bad-feat", metric="ozone", dynamic_feat=["rain"]))


def test_num_dynamic_feat_hyperparameter_and_request_parsing():
    hp = {"time_freq": "H", "context_length": "24", "prediction_length": "12", "epochs": "1"}
    assert parse_hyperparameters({**hp, "num_dynamic_feat": "4"}).dynamic_feat_count == 4
    assert parse_hyperparameters({**hp, "num_dynamic_feat": "auto"}).dynamic_feat_count == 0
    with pytest.raises(HyperparameterError, match="num_dynamic_feat must be auto, ignore or an integer"):
        parse_hyperparameters({**hp, "num_dynamic_feat": "some"})
    start = "2026-11-01 00:00:00"
    parsed = parse_request({"instances": [{"start": start, "target": [1.0], "dynamic_feat": [[0.5, 1]]}]})
    assert parsed.instances[0].dynamic_feat == [[0.5, 1.0]]
    for bad, message in [([[1.0, "NaN"]], r"dynamic_feat\[0\]\[1\] must be a finite number"),
                         ([[1.0], [1.0, 2.0]], "same length"), ([], "non-empty list")]:  # fmt: skip
        with pytest.raises(RequestError, match=message):
            parse_request({"instances": [{"start": start, "target": [1.0], "dynamic_feat": bad}]})


@pytest.fixture
def calendar_model(lake) -> TrainedModel:
    """A tiny model trained through the training service on a dataset with hour_of_day and day_of_week."""
    put_series(lake, devices=3, hours=200)
    dataset_build(DatasetSpec(name="tiny-cal", metric="ozone", dynamic_feat=FEATURES))
    job = training_job_submit("tiny-cal", TINY, backtest_windows=2, queue=False)
    run = run_execute(job.run.pk, step_work("train"))
    assert run.status == PipelineRun.Status.SUCCEEDED, run.error
    return TrainedModel.objects.get(job=job)


def _invoke(url: str, endpoint: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/endpoints/{endpoint}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db
def test_a_model_trained_with_calendar_features_records_them_and_the_endpoint_checks_them(
    calendar_model, lake, endpoint_server
):
    assert calendar_model.hyperparameters["num_dynamic_feat"] == "4"
    assert math.isfinite(calendar_model.metrics["test:mean_wQuantileLoss"]) and calendar_model.backtest["windows"]
    artifact = lake.get_bytes(calendar_model.artifact_key)
    with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as tar:
        assert json.loads(tar.extractfile("dynamic_feat.json").read()) == {"names": FEATURES}
        assert json.loads(tar.extractfile("hyperparameters.json").read())["num_dynamic_feat"] == "4"
    loaded = DeepARModel.from_tarball(artifact)
    assert (loaded.num_dynamic_feat, loaded.dynamic_feat) == (4, tuple(FEATURES))

    deploy_execute({"model": calendar_model.name, "endpoint": "cal"})
    record = read_channel(lake.get_bytes(calendar_model.dataset.test_key))[0]
    target, rows = record["target"][:-12], record["dynamic_feat"]  # rows: len(target) + prediction_length
    good = {"start": record["start"], "target": target, "cat": record["cat"], "dynamic_feat": rows}
    config = {"num_samples": 20, "seed": 3}
    status, answer = _invoke(endpoint_server, "cal", {"instances": [good], "configuration": config})
    assert status == 200 and len(answer["predictions"][0]["mean"]) == 12
    cases = [
        ({k: v for k, v in good.items() if k != "dynamic_feat"}, "trained with 4 dynamic_feat: each instance needs"),
        ({**good, "dynamic_feat": [row[:-12] for row in rows]}, "len(target) + prediction_length = 188 + 12 = 200"),
        ({**good, "dynamic_feat": rows[:2]}, "trained with 4 dynamic_feat, the instance has 2"),
    ]
    for instance, message in cases:
        status, error = _invoke(endpoint_server, "cal", {"instances": [instance], "configuration": config})
        assert status == 400 and message in error["message"], error
    assert _invoke(endpoint_server, "cal", {"instances": [good], "configuration": config}) == (200, answer)
    # The endpoint's fast sampling path draws exactly GluonTS's samples with dynamic features too.
    seeded = parse_request({"instances": [good], "configuration": {**config, "output_types": ["samples"]}})
    assert forecaster(loaded) is not loaded
    assert json.dumps(forecaster(loaded).predict(seeded)) == json.dumps(loaded.predict(seeded))

    # A device forecast builds the features for the history and the window after it.
    forecast = forecast_for_device("sensor-1", "ozone", 6, endpoint="cal")
    assert len(forecast["forecast"]["mean"]) == 6 and all(math.isfinite(v) for v in forecast["forecast"]["mean"])
    calendar_model.dataset.delete()
    calendar_model.refresh_from_db()
    from forecasts.services.forecasting import ForecastUnavailable

    with pytest.raises(ForecastUnavailable, match="trained with 4 dynamic_feat whose calendar features are not known"):
        forecast_for_device("sensor-1", "ozone", 6, endpoint="cal")
