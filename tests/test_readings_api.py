"""GET /api/v1/devices/{id}/readings and /api/v1/catalog/tables/ over real HTTP handling and a real lake."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Device
from forecasts.services.crawl import crawl_execute
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("operator", password="pw-operator-1"))
    return api


@pytest.fixture
def device(lake):
    now = timezone.now()
    put_raw(lake, [reading("dev-api", now - timedelta(minutes=m), ozone=float(m)) for m in (2, 1)])
    put_raw(lake, [reading("someone-else", now)])
    return Device.objects.create(name="dev-api")


def test_readings_are_returned_newest_last(client, device):
    response = client.get(f"/api/v1/devices/{device.pk}/readings", {"metrics": "ozone, particulate_matter"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["device"] == "dev-api" and body["count"] == 2
    assert [row["ozone"] for row in body["readings"]] == [2.0, 1.0]
    assert set(body["readings"][0]) == {"timestamp", "received_at", "message_id", "ozone", "particulate_matter"}
    assert body["readings"][0]["timestamp"].endswith("Z")


def test_readings_window_and_limit(client, device):
    start = (timezone.now() - timedelta(minutes=90)).isoformat()
    response = client.get(f"/api/v1/devices/{device.pk}/readings", {"start": start, "limit": 1})
    assert response.status_code == 200
    assert [row["ozone"] for row in response.json()["readings"]] == [1.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"metrics": "ozone,unobtainium"}, "unknown metric(s) unobtainium"),
        ({"start": "not-a-date"}, "Datetime has wrong format"),
        ({"start": "2026-11-28T00:00:00Z", "end": "2026-11-27T00:00:00Z"}, "start must not be after end"),
        ({"limit": "0"}, "greater than or equal to 1"),
    ],
)
def test_bad_parameters_are_a_400_with_a_clear_message(client, device, params, message):
    response = client.get(f"/api/v1/devices/{device.pk}/readings", params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_unknown_device_is_a_404(client, lake):
    response = client.get("/api/v1/devices/999999/readings")
    assert response.status_code == 404
    assert "No device with id 999999" in response.json()["detail"]


def test_unauthenticated_is_a_401(device):
    assert APIClient().get(f"/api/v1/devices/{device.pk}/readings").status_code == 401
    assert APIClient().get("/api/v1/catalog/tables/").status_code == 401


def test_catalog_tables_lists_crawled_tables(client, device):
    assert client.get("/api/v1/catalog/tables/").json() == []
    crawl_execute({})

    (table,) = client.get("/api/v1/catalog/tables/").json()

    assert (table["database"], table["name"], table["objects_scanned"]) == ("iotcast", "telemetry_raw", 2)
    assert {"name": "ozone", "type": "double"} in table["columns"]
    assert [key["name"] for key in table["partition_keys"]] == ["year", "month", "day", "hour"]


def test_readings_export_as_csv_and_parquet(client, device):
    import io

    import pyarrow.parquet as pq

    csv_response = client.get(f"/api/v1/devices/{device.pk}/readings", {"format": "csv", "metrics": "ozone"})
    parquet_response = client.get(f"/api/v1/devices/{device.pk}/readings?format=parquet")
    bad = client.get(f"/api/v1/devices/{device.pk}/readings", {"format": "csv", "metrics": "nope"})

    assert csv_response.status_code == 200, csv_response.content
    assert csv_response["Content-Type"].startswith("text/csv")
    assert 'filename="dev-api-readings.csv"' in csv_response["Content-Disposition"]
    lines = csv_response.content.decode().splitlines()
    assert lines[0] == "timestamp,received_at,message_id,ozone"
    assert [line.split(",")[3] for line in lines[1:]] == ["2.0", "1.0"]  # oldest first
    assert lines[1].split(",")[0].endswith("Z")
    table = pq.read_table(io.BytesIO(parquet_response.content))
    assert parquet_response.status_code == 200 and table.num_rows == 2
    assert table.column("ozone").to_pylist() == [2.0, 1.0] and "nitrogen_dioxide" in table.column_names
    assert bad.status_code == 400
