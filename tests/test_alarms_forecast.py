"""Forecast alarms against a real deployed model: the tiny DeepAR served by the endpoint server over the lake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alarms.models import Alarm, AlarmRule
from alarms.services import alarm_rule_evaluate, alarms_evaluate
from alarms.tasks import evaluate_alarms
from deployments.models import ForecastRecord
from devices.models import Device
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployed(lake, endpoint_server, tiny_trained_model, settings) -> Device:
    """Deploy the tiny model and give sensor-0 (a device it knows) a week of hourly ozone ending now."""
    from deployments.services import deploy_execute
    from tests.fixtures.endpoint import synthetic_frame

    deploy_execute({"model": tiny_trained_model.name, "endpoint": settings.DEFAULT_ENDPOINT_NAME})
    device = Device.objects.create(name="sensor-0", latitude=56.2, longitude=10.2)
    values = list(synthetic_frame(devices=1, hours=24 * 7, start="2000-01-01", gap=False)["value"])
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    put_raw(lake, [reading(device.name, end - timedelta(hours=len(values) - i), ozone=v) for i, v in enumerate(values)])
    return device


def forecast_rule(name: str, quantile: str, operator: str, threshold: float) -> AlarmRule:
    return AlarmRule.objects.create(
        name=name, kind=AlarmRule.Kind.FORECAST, metric="ozone", quantile=quantile, operator=operator,
        threshold=threshold,
    )  # fmt: skip


def newest_forecast(quantile: str) -> list[float]:
    """Return the quantile's values of the forecast the endpoint served last (every forecast is recorded)."""
    return ForecastRecord.objects.filter(device="sensor-0", metric="ozone").latest("pk").quantiles[quantile]


def test_a_p90_or_p50_crossing_within_the_horizon_raises_and_an_uncrossed_threshold_clears(deployed):
    # Ozone cycles around 40 µg/m³: p90 above 0 and p50 below 1000 are crossed somewhere in the horizon.
    p90_above = forecast_rule("ozone p90 high", AlarmRule.Quantile.P90, AlarmRule.Operator.ABOVE, 0.0)
    assert alarm_rule_evaluate(p90_above) == {"raised": 1, "cleared": 0, "errors": 0}
    p90_values = newest_forecast("0.9")
    assert len(p90_values) == 12  # the whole horizon (prediction_length) is judged
    alarm = Alarm.objects.get(rule=p90_above)
    assert alarm.status == "active_unack" and alarm.device == deployed
    assert alarm.value == pytest.approx(max(p90_values))  # the extreme of the p90, not of another quantile
    assert alarm.message.startswith("Forecast p90 of ozone") and alarm.message.endswith("within the horizon")

    p50_below = forecast_rule("ozone p50 low", AlarmRule.Quantile.P50, AlarmRule.Operator.BELOW, 1000.0)
    assert alarm_rule_evaluate(p50_below)["raised"] == 1
    assert Alarm.objects.get(rule=p50_below).value == pytest.approx(min(newest_forecast("0.5")))

    # Thresholds the forecast does not reach: the beat task clears both alarms and raises none.
    AlarmRule.objects.filter(pk=p90_above.pk).update(threshold=1e6)
    AlarmRule.objects.filter(pk=p50_below.pk).update(threshold=-1e6)
    assert evaluate_alarms() == {"rules": 2, "raised": 0, "cleared": 2, "errors": 0}
    assert {a.status for a in Alarm.objects.all()} == {"cleared_unack"}
    assert not Alarm.objects.filter(cleared_by__isnull=False).exists()  # cleared by the evaluator, not a person
    assert set(AlarmRule.objects.values_list("last_error", flat=True)) == {""}


def test_a_forecast_threshold_never_crossed_raises_nothing(deployed):
    rule = forecast_rule("ozone p50 absurd", AlarmRule.Quantile.P50, AlarmRule.Operator.ABOVE, 1e6)
    assert alarms_evaluate() == {"rules": 1, "raised": 0, "cleared": 0, "errors": 0}
    assert max(newest_forecast("0.5")) < rule.threshold and not Alarm.objects.exists()
    rule.refresh_from_db()
    assert rule.last_evaluated_at is not None and rule.last_error == ""
