"""Device.last_seen_at / last_message: kept by the real ingest once per durable object, shown by REST and the fleet."""

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from dataplane.ingest.delivery import DeliveryStream
from dataplane.ingest.directory import LAST_MESSAGE_MAX_BYTES, DeviceSeenRecorder
from devices.models import Device
from devices.services import device_seen_update, ingest_track_devices

# The ingest writes from its own threads: they only see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def reading(ozone: float, **fields) -> dict:
    stamp = datetime.now(UTC).isoformat()
    return {"message_id": str(uuid.uuid4()), "timestamp": stamp, "ozone": ozone, **fields}


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_published_reading_sets_last_seen_and_last_message(lake, ingest_service, mqtt_broker):
    name = f"seen-{uuid.uuid4().hex[:8]}"
    device = Device.objects.create(name=name)
    silent = Device.objects.create(name=f"silent-{uuid.uuid4().hex[:8]}")
    service = ingest_service(lake, buffer_interval_s=0.3)
    ingest_track_devices(service.stream)
    client = mqtt_broker.client(mqtt_broker.device_kit(name), client_id=name)
    assert mqtt_broker.connect(client)
    # received_at (and so last_seen_at) is kept in epoch milliseconds, as IoT Core's timestamp()
    before = datetime.now(UTC).replace(microsecond=0)
    try:
        batch = [reading(41.0), reading(42.5, humidity=55.0)]
        client.publish(f"dt/iotcast/{name}/telemetry", json.dumps(batch), qos=1).wait_for_publish(5)
        wait_for(lambda: Device.objects.get(pk=device.pk).last_seen_at is not None)
    finally:
        client.disconnect()
        client.loop_stop()
    device.refresh_from_db()
    assert before <= device.last_seen_at <= datetime.now(UTC)
    # The batch's last element is the device's last message, with the rule's fields added.
    assert device.last_message["ozone"] == 42.5 and device.last_message["message_id"] == batch[1]["message_id"]
    assert device.last_message["device_id"] == name
    assert device.last_seen_at == datetime.fromtimestamp(device.last_message["received_at"] / 1000, UTC)
    assert Device.objects.get(pk=silent.pk).last_seen_at is None

    admin = get_user_model().objects.create_user("seen-admin", password="pw", is_staff=True)
    api = APIClient()
    api.force_authenticate(admin)
    body = api.get(f"/api/v1/devices/{device.pk}/").json()
    assert body["last_message"] == device.last_message
    assert datetime.fromisoformat(body["last_seen_at"].replace("Z", "+00:00")) == device.last_seen_at
    api.logout()
    page = _fleet_client(admin).get("/fleet/").content.decode()
    assert device.last_seen_at.strftime("%Y-%m-%d %H:%M:%S") in page


def _fleet_client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_one_listener_call_and_one_update_per_object_not_per_message(lake):
    saved = []
    stream = DeliveryStream(lake, buffer_interval_s=300)
    stream.add_durable_listener(DeviceSeenRecorder(saved.append))
    for index in range(50):
        stream.put_records([{"ozone": float(index), "device_id": "a", "received_at": 1_000 + index}])
        stream.put_records([{"ozone": -float(index), "device_id": "b", "received_at": 2_000 + index}])
    assert saved == []  # nothing durable yet, nothing reported
    stream.flush()
    assert len(saved) == 1
    assert saved[0] == {
        "a": (1_049, {"ozone": 49.0, "device_id": "a", "received_at": 1_049}),
        "b": (2_049, {"ozone": -49.0, "device_id": "b", "received_at": 2_049}),
    }


def test_an_oversized_last_record_is_kept_as_a_stub(lake):
    saved = []
    stream = DeliveryStream(lake)
    stream.add_durable_listener(DeviceSeenRecorder(saved.append))
    stream.put({"device_id": "big", "received_at": 5, "message_id": "m", "blob": "x" * LAST_MESSAGE_MAX_BYTES})
    stream.flush()
    ((received_at, stub),) = saved[0].values()
    assert received_at == 5 and stub["message_id"] == "m" and "blob" not in stub
    assert stub["truncated_bytes"] > LAST_MESSAGE_MAX_BYTES


def test_a_failing_listener_neither_loses_records_nor_stops_acks(lake):
    durable = []

    def broken(flushed):
        raise RuntimeError("database down")

    stream = DeliveryStream(lake, on_durable=lambda flushed: durable.extend(flushed.durable_tokens))
    stream.add_durable_listener(broken)
    stream.put({"device_id": "a", "received_at": 1}, token="t1")
    stream.flush()
    assert durable == ["t1"] and len(lake.list_objects("raw/")) == 1


def test_device_seen_update_is_one_update_and_never_goes_back_in_time():
    first, second = Device.objects.create(name="upd-a"), Device.objects.create(name="upd-b")
    newer_ms = int(time.time() * 1000)
    with CaptureQueriesContext(connection) as queries:
        changed = device_seen_update(
            {"upd-a": (newer_ms, {"v": 1}), "upd-b": (newer_ms, {"v": 2}), "unregistered": (newer_ms, {})}
        )
    assert changed == 2
    assert sum(q["sql"].startswith("UPDATE") for q in queries.captured_queries) == 1
    assert device_seen_update({"upd-a": (newer_ms - 60_000, {"v": "older"})}) == 0
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.last_message == {"v": 1} and second.last_message == {"v": 2}
    assert first.last_seen_at == datetime.fromtimestamp(newer_ms / 1000, UTC)
