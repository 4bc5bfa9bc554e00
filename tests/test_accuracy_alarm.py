"""The forecast-accuracy alarm: forecasts a variant served are recorded, scored against the actuals as they reach
the lake, and a canary whose model forecasts worse than the old one rolls back (real endpoint server, real lake)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from cloud.deepar.model import DeepARModel, pack_predictor
from deployments.accuracy import ACCURACY_QUANTILES, accuracy_alarm, model_accuracy
from deployments.models import Endpoint, ForecastRecord
from deployments.rollouts import RolloutRequest, policy_parse, rollout_execute
from deployments.services import deploy_execute
from forecasts.models import TrainedModel
from forecasts.services.forecasting import forecast_for_device
from tests.fixtures.endpoint import synthetic_frame
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db
DEVICES = ["sensor-0", "sensor-1", "sensor-2"]
HISTORY_HOURS, HORIZON = 200, 12


class Lake:
    """Synthetic hourly ozone: 200 hours of history ending a day ago, then 12 hours of actuals held back."""

    def __init__(self, lake) -> None:
        self.lake = lake
        frame = synthetic_frame(devices=3, hours=HISTORY_HOURS + HORIZON, gap=False)
        last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)
        frame["ts"] = frame["ts"] + (pd.Timestamp(last) - frame["ts"].iloc[HISTORY_HOURS - 1])
        self.history = frame[frame.ts <= pd.Timestamp(last)]
        self.actuals = frame[frame.ts > pd.Timestamp(last)]
        self._put(self.history)

    def _put(self, rows: pd.DataFrame) -> None:
        put_raw(self.lake, [reading(r.device_id, r.ts.to_pydatetime(), ozone=r.value) for r in rows.itertuples()])

    def arrive(self, hours: int = HORIZON) -> None:
        """Write the next hours of actuals into the lake, as the ingest would."""
        first = self.actuals.ts.min()
        self._put(self.actuals[self.actuals.ts < first + pd.Timedelta(hours=hours)])
        self.actuals = self.actuals[self.actuals.ts >= first + pd.Timedelta(hours=hours)]


def shifted_artifact(artifact: bytes, shift: float = 3.0) -> bytes:
    """Return the model with its location projection shifted: it forecasts about shift x the level too high."""
    import torch

    model = DeepARModel.from_tarball(artifact)
    with torch.no_grad():
        model.predictor.prediction_net.model.param_proj.proj[1].bias += shift  # Student-T: df, loc, scale
    return pack_predictor(model.predictor, model.hyperparameters.as_sagemaker())


@pytest.fixture
def air(endpoint_server, tiny_trained_model, tiny_model, lake) -> Lake:
    """Endpoint air serving deepar-tiny; "same" (its twin) and "shifted" (a worse model) registered."""
    deploy_execute({"model": "deepar-tiny", "endpoint": "air"})
    fields = {"metric": "ozone", "devices": tiny_model.devices, "hyperparameters": tiny_model.hyperparameters}
    TrainedModel.objects.create(name="same", artifact_key=tiny_trained_model.artifact_key, **fields)
    lake.put_bytes("models/shifted/output/model.tar.gz", shifted_artifact(tiny_model.artifact))
    TrainedModel.objects.create(name="shifted", artifact_key="models/shifted/output/model.tar.gz", **fields)
    return Lake(lake)


def forecast_all(variant: str | None = None) -> None:
    for device in DEVICES:
        forecast_for_device(device, "ozone", 6, ["0.5"], endpoint="air", target_variant=variant)


def _wql(actual: np.ndarray, forecasts: dict[float, np.ndarray]) -> float:
    """mean over q of 2 * sum(pinball_q) / sum(|actual|), written out here rather than imported."""
    losses = []
    for q, forecast in forecasts.items():
        diff = actual - forecast
        losses.append(2 * np.sum(np.where(diff >= 0, q * diff, (q - 1) * diff)) / np.sum(np.abs(actual)))
    return float(np.mean(losses))


def test_served_forecasts_are_recorded_and_scored_as_actuals_arrive(air):
    forecast_all()
    records = list(ForecastRecord.objects.order_by("device"))
    assert [(r.device, r.variant, r.model_name, len(r.timestamps)) for r in records] == [
        (device, "AllTraffic", "deepar-tiny", HORIZON) for device in DEVICES
    ]
    assert set(records[0].quantiles) == {"0.5", *ACCURACY_QUANTILES} and records[0].origin == air.history.ts.max()
    assert model_accuracy("air", "deepar-tiny").points == 0  # nothing has matured yet
    expected = air.actuals
    air.arrive(hours=5)
    assert model_accuracy("air", "deepar-tiny").points == 3 * 5
    air.arrive()
    accuracy = model_accuracy("air", "deepar-tiny")
    actual, forecasts = [], {float(q): [] for q in ACCURACY_QUANTILES}
    for record in records:
        actual += expected[expected.device_id == record.device].value.tolist()
        for q in ACCURACY_QUANTILES:
            forecasts[float(q)] += record.quantiles[q]
    assert accuracy.points == 3 * HORIZON and accuracy.records == 3
    assert accuracy.wql == pytest.approx(_wql(np.array(actual), {q: np.array(v) for q, v in forecasts.items()}))
    assert 0 < accuracy.wql < 1 and 0 < accuracy.mape < 1  # a 2-epoch model: rough, but not absurd


def _rollout(model: str, on_baking) -> tuple[str, list[str]]:
    """Roll model out to air's AllTraffic by canary:50:1; on_baking(percent) runs as each step starts baking."""
    messages: list[str] = []

    def step(percent: float, message: str, state: str) -> None:
        messages.append(message)
        if state == "baking":
            on_baking(percent)

    request = RolloutRequest(
        "air", TrainedModel.objects.get(name=model), "AllTraffic", policy_parse("canary:50:1"),
        {"min_matured_points": 12, "max_wql_increase": 0.25}, step=step,
    )  # fmt: skip
    return rollout_execute(request, lambda percent, message: None), messages


def test_a_canary_forecasting_worse_than_the_old_model_rolls_back_once_actuals_arrive(air):
    forecast_all()  # the old model's forecasts: the baseline

    def canary_traffic(percent: float) -> None:
        if percent < 100:
            forecast_all("AllTraffic-green")  # the new model forecasts the same hours ...
            air.arrive()  # ... and then the actuals of those hours reach the lake

    outcome, messages = _rollout("shifted", canary_traffic)
    assert outcome == "rolled_back", messages
    assert "forecast accuracy: shifted: wQL" in messages[-1] and "worse than deepar-tiny" in messages[-1]
    endpoint = Endpoint.objects.get(name="air")
    assert endpoint.status == "InService" and [(v.name, v.model.name) for v in endpoint.variants.all()] == [
        ("AllTraffic", "deepar-tiny")
    ]
    new, old = model_accuracy("air", "shifted"), model_accuracy("air", "deepar-tiny")
    assert new.points == old.points == 36 and new.wql > 2 * old.wql


def test_no_accuracy_alarm_before_points_mature_nor_for_an_equally_good_model(air):
    forecast_all()

    def twin_traffic(percent: float) -> None:
        if percent < 100:
            forecast_all("AllTraffic-green")
            air.arrive()

    outcome, messages = _rollout("same", twin_traffic)
    assert outcome == "succeeded", messages
    assert model_accuracy("air", "same").points == 36
    # The worse model goes live when no actual of its forecasts has arrived during the bake: nothing to judge.
    outcome, messages = _rollout("shifted", lambda percent: forecast_all("AllTraffic-green") if percent < 100 else None)
    assert outcome == "succeeded", messages
    assert model_accuracy("air", "shifted").points == 0
    assert accuracy_alarm("air", "shifted", "same", datetime.now(UTC) - timedelta(hours=1)) is None


@pytest.mark.django_db
def test_forecasts_older_than_the_retention_are_pruned_and_newer_ones_kept():
    from deployments.accuracy import forecast_record_create
    from deployments.tasks import prune_forecast_records

    def record(age_days: float) -> ForecastRecord:
        row = forecast_record_create(
            "air", "AllTraffic", "m1", "sensor-0", "ozone", "h",
            ["2026-11-01T01:00:00+00:00", "2026-11-01T02:00:00+00:00"], [1.0, 2.0], {"0.5": [1.0, 2.0]},
        )  # fmt: skip
        ForecastRecord.objects.filter(pk=row.pk).update(created_at=datetime.now(UTC) - timedelta(days=age_days))
        return row

    record(91)  # past the retention
    edge, recent = record(89.9), record(1)
    assert prune_forecast_records.apply().get() == 1  # the task as beat runs it (settings: 90 days)
    assert set(ForecastRecord.objects.values_list("pk", flat=True)) == {edge.pk, recent.pk}
    assert prune_forecast_records.apply().get() == 0  # a rerun deletes nothing more
