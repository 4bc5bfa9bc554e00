"""The real ingest service: device -> Mosquitto (mTLS) -> IoT rule -> delivery stream -> lake, acks after durability."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from dataplane.ingest.rule import OVERSIZE, PROCESSING_FAILED, UNKNOWN_DEVICE
from tests.fixtures.ingest import forget_session


def reading(index: int, **fields) -> dict:
    return {
        "message_id": str(uuid.uuid4()),
        "timestamp": f"2026-11-27T21:{index % 60:02d}:00.000Z",
        "ozone": 40.0 + index,
        "particulate_matter": 12.0,
        **fields,
    }


@pytest.fixture
def device(mqtt_broker):
    """A connected paho client holding a fresh device's certificate; publish(payload) waits for the PUBACK."""
    name = f"ingest-{uuid.uuid4().hex[:8]}"
    client = mqtt_broker.client(mqtt_broker.device_kit(name), client_id=name)
    assert mqtt_broker.connect(client)

    def publish(payload) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        client.publish(f"dt/iotcast/{name}/telemetry", body, qos=1).wait_for_publish(5)

    publish.name = name
    yield publish
    client.disconnect()
    client.loop_stop()


def lake_lines(lake, prefix: str) -> list[dict]:
    return [json.loads(line) for o in lake.list_objects(prefix) for line in lake.get_bytes(o.key).splitlines()]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(params=["folder", "s3"])
def any_lake(request):
    return request.getfixturevalue("lake" if request.param == "folder" else "s3_lake")


def test_telemetry_lands_in_raw_and_bad_messages_in_errors(any_lake, ingest_service, device):
    service = ingest_service(any_lake, buffer_interval_s=0.3)
    before_ms = int(time.time() * 1000)
    device(reading(1, device_id="spoofed"))
    device([reading(2), reading(3, wind_speed=4.5)])
    device(b"{not json")
    wait_for(lambda: len(lake_lines(any_lake, "raw/")) == 3 and any_lake.list_objects("errors/"))
    records = lake_lines(any_lake, "raw/")
    assert {r["device_id"] for r in records} == {device.name}
    assert all(before_ms <= r["received_at"] <= time.time() * 1000 for r in records)
    assert [r.get("wind_speed") for r in sorted(records, key=lambda r: r["ozone"])] == [None, None, 4.5]
    (error,) = lake_lines(any_lake, f"errors/{PROCESSING_FAILED}/")
    assert error["errorCode"] == "InvalidJson" and error["topic"] == f"dt/iotcast/{device.name}/telemetry"
    wait_for(lambda: service.stats.acked == 3)


def test_acked_messages_are_not_redelivered(lake, ingest_service, device):
    first = ingest_service(lake, client_id="ingest-ack-test", buffer_interval_s=0.2)
    device(reading(1))
    wait_for(lambda: first.stats.acked == 1)
    first.stop()
    second = ingest_service(lake, client_id="ingest-ack-test", buffer_interval_s=0.2)
    device(reading(2))
    wait_for(lambda: second.stats.messages >= 1)
    time.sleep(0.5)
    # Had the first ack been lost, the broker would resend message 1 to the resumed session.
    assert second.stats.messages == 1
    assert sorted(r["ozone"] for r in lake_lines(lake, "raw/")) == [41.0, 42.0]


def test_unflushed_messages_survive_a_crash(lake, ingest_service, device):
    crashed = ingest_service(lake, client_id="ingest-crash-test", buffer_interval_s=900)
    device(reading(1))
    device(reading(2))
    wait_for(lambda: crashed.stats.messages == 2)
    crashed.stop(flush=False)  # buffered, never written: nothing was acked
    assert lake.list_objects("raw/") == []
    ingest_service(lake, client_id="ingest-crash-test", buffer_interval_s=0.2)
    wait_for(lambda: len(lake_lines(lake, "raw/")) == 2)
    assert sorted(r["ozone"] for r in lake_lines(lake, "raw/")) == [41.0, 42.0]


def test_stop_flushes_the_buffer(lake, ingest_service, device):
    service = ingest_service(lake, buffer_interval_s=900)
    device(reading(1))
    wait_for(lambda: service.stats.messages == 1)
    service.stop()
    assert [r["ozone"] for r in lake_lines(lake, "raw/")] == [41.0]
    assert service.stats.acked == 1


def test_run_ingest_command_flushes_on_sigterm(tmp_path, mqtt_broker, device):
    lake_dir = tmp_path / "lake"
    credentials = mqtt_broker.service_credentials("iotcast-ingest")
    command = [sys.executable, "manage.py", "run_ingest", "--credentials", str(credentials)]
    command += ["--host", mqtt_broker.host, "--port", str(mqtt_broker.port), "--buffer-interval-s", "900"]
    group = f"ingest-cmd-{uuid.uuid4().hex[:6]}"
    command += ["--client-id", group, "--subscription", f"$share/{group}/dt/iotcast/+/telemetry"]
    env = {**os.environ, "IOTCAST_LAKE_URL": f"file://{lake_dir}", "IOTCAST_STATE_DIR": str(tmp_path / "state")}
    process = subprocess.Popen(
        command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    try:
        wait_for(lambda: any("subscribed to" in line for line in output), timeout=20)
        device(reading(1))
        time.sleep(1.0)  # the PUBACK came from the broker; give the service a moment to buffer the message
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
    objects = list(Path(lake_dir, "raw").rglob("iotcast-telemetry-1-*"))
    assert len(objects) == 1, "".join(output)
    assert json.loads(objects[0].read_text())["ozone"] == 41.0
    assert "1 records" in "".join(output)


def test_run_ingest_without_credentials_is_a_clear_error(tmp_path, lake):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=r"cert\.pem is missing"):
        call_command("run_ingest", "--credentials", str(tmp_path))


def test_bad_input_lands_in_errors_by_type_and_good_records_are_kept(lake, ingest_service, device):
    registered = {device.name}
    service = ingest_service(lake, buffer_interval_s=0.3, device_known=registered.__contains__)
    device(b"{not json")
    device([reading(1), reading(2, ozone="high"), reading(3)])  # the bad element alone is rejected
    device(reading(4, padding="x" * 200_000))
    device(b"[]")
    wait_for(lambda: service.stats.messages == 4)
    registered.clear()  # the registry no longer knows this device
    device(reading(5))
    wait_for(lambda: service.stats.acked == 5)
    assert sorted(r["ozone"] for r in lake_lines(lake, "raw/")) == [41.0, 43.0]
    codes = {
        error_type: sorted(e["errorCode"] for e in lake_lines(lake, f"errors/{error_type}/"))
        for error_type in (PROCESSING_FAILED, OVERSIZE, UNKNOWN_DEVICE)
    }
    assert codes == {
        PROCESSING_FAILED: ["EmptyBatch", "InvalidJson", "InvalidMetric"],
        OVERSIZE: ["PayloadTooLarge"],
        UNKNOWN_DEVICE: ["UnknownDevice"],
    }
    assert service.connected.is_set()  # still running


def test_where_clause_selects_what_reaches_the_lake(lake, ingest_service, device):
    service = ingest_service(lake, buffer_interval_s=0.2, where="ozone >= 42")
    device([reading(1), reading(2), reading(3)])
    wait_for(lambda: service.stats.acked == 1)
    assert sorted(r["ozone"] for r in lake_lines(lake, "raw/")) == [42.0, 43.0]
    assert service.stats.filtered == 1


def _run_ingest(tmp_path, mqtt_broker, client_id: str, interval: str) -> tuple[subprocess.Popen, list[str]]:
    credentials = mqtt_broker.service_credentials("iotcast-ingest")
    command = [sys.executable, "manage.py", "run_ingest", "--credentials", str(credentials), "--client-id", client_id]
    # A group of its own: a persistent session left in the default group by another test would take a share.
    command += ["--subscription", f"$share/{client_id}/dt/iotcast/+/telemetry"]
    command += ["--host", mqtt_broker.host, "--port", str(mqtt_broker.port), "--buffer-interval-s", interval]
    env = {**os.environ, "IOTCAST_LAKE_URL": f"file://{tmp_path / 'lake'}", "IOTCAST_STATE_DIR": str(tmp_path / "st")}
    process = subprocess.Popen(
        command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    wait_for(lambda: any("subscribed to" in line for line in output), timeout=20)
    return process, output


def test_kill_9_with_buffered_records_loses_nothing(tmp_path, mqtt_broker, device):
    client_id = f"ingest-kill-{uuid.uuid4().hex[:6]}"
    process, _ = _run_ingest(tmp_path, mqtt_broker, client_id, "900")
    try:
        for index in range(20):
            device(reading(index))
        time.sleep(0.5)  # buffered in the worker, acknowledged to the device by the broker
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert not list(Path(tmp_path, "lake").rglob("iotcast-telemetry-1-*"))
        process, _ = _run_ingest(tmp_path, mqtt_broker, client_id, "0.2")
        wait_for(lambda: len(_raw_lines(tmp_path / "lake")) >= 20, timeout=15)
        time.sleep(0.5)  # and no more than 20
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        forget_session(mqtt_broker, mqtt_broker.service_credentials("iotcast-ingest"), client_id)
    assert sorted(r["ozone"] for r in _raw_lines(tmp_path / "lake")) == [40.0 + index for index in range(20)]


def _raw_lines(lake_dir: Path) -> list[dict]:
    return [json.loads(line) for path in (lake_dir / "raw").rglob("iotcast-*") for line in path.open()]
