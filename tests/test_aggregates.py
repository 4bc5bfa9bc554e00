"""Aggregates per minute/hour/day (min, max, mean, p95) through the query service: selector, REST API, JSON view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Device
from forecasts.selectors import readings_aggregated
from forecasts.services.etl import etl_execute
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db

# Two days ago at 00:00 UTC: hour 0 holds ozone 1..5, hour 1 holds 10 and 20 (and one reading without ozone).
DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
WINDOW = {"start": DAY, "end": DAY + timedelta(days=1) - timedelta(microseconds=1)}


@pytest.fixture
def readings(lake):
    hour0 = [reading("dev-agg", DAY + timedelta(minutes=m), ozone=float(m + 1)) for m in range(5)]
    hour1 = [reading("dev-agg", DAY + timedelta(hours=1, minutes=m), ozone=v) for m, v in ((0, 10.0), (30, 20.0))]
    hour1.append(reading("dev-agg", DAY + timedelta(hours=1, minutes=45), ozone=None))
    put_raw(lake, hour0, arrived=DAY + timedelta(minutes=5))
    put_raw(lake, hour1, arrived=DAY + timedelta(hours=1, minutes=50))
    put_raw(lake, [reading("someone-else", DAY, ozone=1000.0)], arrived=DAY)
    return lake


def _ozone(rows: list[dict]) -> list[tuple]:
    return [(row["bucket"], row["count"], *(row["ozone"][s] for s in ("min", "max", "mean", "p95"))) for row in rows]


HOURLY = [
    (DAY, 5, 1.0, 5.0, 3.0, pytest.approx(4.8)),  # p95 of 1..5: 1 + 0.95 * 4
    (DAY + timedelta(hours=1), 3, 10.0, 20.0, 15.0, pytest.approx(19.5)),  # nulls count as readings, not values
]
DAILY = [(DAY, 8, 1.0, 20.0, pytest.approx(45 / 7), pytest.approx(17.0))]  # 1..5, 10, 20: 10 + 0.7 * 10


def _utc(rows: list[dict]) -> list[dict]:
    return [{**row, "bucket": row["bucket"].astimezone(UTC)} for row in rows]


def test_hourly_and_daily_known_answers_from_the_raw_tail_before_etl(readings):
    assert _ozone(_utc(readings_aggregated("dev-agg", ["ozone"], "hour", **WINDOW))) == HOURLY
    assert _ozone(_utc(readings_aggregated("dev-agg", ["ozone"], "day", **WINDOW))) == DAILY
    minutes = readings_aggregated("dev-agg", ["ozone", "particulate_matter"], "minute", **WINDOW)
    assert len(minutes) == 8
    assert minutes[0]["particulate_matter"] == {"min": 12.0, "max": 12.0, "mean": 12.0, "p95": 12.0}
    assert set(minutes[0]) == {"bucket", "count", "ozone", "particulate_matter"}


def test_after_etl_curated_rows_are_not_doubled_and_new_tail_rows_join(readings):
    etl_execute({})
    assert _ozone(_utc(readings_aggregated("dev-agg", ["ozone"], "hour", **WINDOW))) == HOURLY
    put_raw(readings, [reading("dev-agg", DAY + timedelta(hours=1, minutes=59), ozone=30.0)])  # late, after the ETL
    (hour0, hour1) = _utc(readings_aggregated("dev-agg", ["ozone"], "hour", **WINDOW))
    assert hour0["count"] == 5 and hour1["count"] == 4 and hour1["ozone"]["max"] == 30.0


def test_window_bounds_the_buckets(readings):
    rows = readings_aggregated("dev-agg", ["ozone"], "hour", DAY + timedelta(minutes=2), DAY + timedelta(minutes=3))
    assert _ozone(_utc(rows)) == [(DAY, 2, 3.0, 4.0, 3.5, pytest.approx(3.95))]
    assert readings_aggregated("nobody", ["ozone"], "day", **WINDOW) == []


@pytest.mark.parametrize(
    ("bucket", "metrics", "message"),
    [("week", ["ozone"], "unknown bucket 'week'"), ("hour", ["ozone", "x"], "unknown metric(s) x")],
)
def test_bad_bucket_or_metric_is_a_value_error(lake, bucket, metrics, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        readings_aggregated("dev-agg", metrics, bucket)


@pytest.fixture
def api(readings):
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("operator", password="pw-operator-1"))
    return client


@pytest.fixture
def device(readings):
    return Device.objects.create(name="dev-agg")


def test_api_returns_hourly_buckets(api, device):
    params = {"bucket": "hour", "metrics": "ozone,particulate_matter", **{k: v.isoformat() for k, v in WINDOW.items()}}
    response = api.get(f"/api/v1/devices/{device.pk}/aggregates", params)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["device"] == "dev-agg" and body["bucket"] == "hour"
    assert body["metrics"] == ["ozone", "particulate_matter"]
    first, second = body["buckets"]
    assert first["bucket"].endswith("Z") and first["count"] == 5
    assert first["metrics"]["ozone"] == {"min": 1.0, "max": 5.0, "mean": 3.0, "p95": pytest.approx(4.8)}
    assert second["metrics"]["particulate_matter"]["mean"] == 12.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bucket": "week"}, "not a valid choice"),
        ({"metrics": "ozone,unobtainium"}, "unknown metric(s) unobtainium"),
        ({"start": "2026-11-28T00:00:00Z", "end": "2026-11-27T00:00:00Z"}, "start must not be after end"),
    ],
)
def test_api_bad_parameters_are_a_400(api, device, params, message):
    response = api.get(f"/api/v1/devices/{device.pk}/aggregates", params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_api_unknown_device_is_404_and_anonymous_is_401(api, device):
    assert api.get("/api/v1/devices/999999/aggregates").status_code == 404
    assert APIClient().get(f"/api/v1/devices/{device.pk}/aggregates").status_code == 401


def test_dashboard_json_view(client, lake):
    dev = Device.objects.create(name="dev-agg")
    now = timezone.now()
    put_raw(lake, [reading("dev-agg", now - timedelta(minutes=m), ozone=float(m)) for m in (1, 2, 3)])
    url = reverse("dashboard:device_aggregates", args=[dev.pk])
    assert client.get(url).status_code == 401
    client.force_login(get_user_model().objects.create_user("operator", password="pw-operator-1"))

    body = client.get(url, {"bucket": "day", "minutes": 10}).json()
    assert body["bucket"] == "day" and body["order"][0] == "ozone" and body["metrics"]["ozone"]["label"]
    assert sum(row["count"] for row in body["buckets"]) == 3
    if len(body["buckets"]) == 1:  # unless the three readings straddle midnight UTC
        assert body["buckets"][0]["ozone"] == {"min": 1.0, "max": 3.0, "mean": 2.0, "p95": pytest.approx(2.9)}
    assert client.get(url, {"bucket": "week"}).status_code == 400
    assert client.get(url, {"minutes": "0"}).status_code == 400
