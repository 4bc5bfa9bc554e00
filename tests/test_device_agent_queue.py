"""The device agent's on-disk queue: readings survive a broker outage and an agent restart; the bound drops the oldest.

The outage test runs a second Mosquitto of its own (stopped and restarted on the same port), so the
session broker the other tests share is never stopped.
"""

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from dataplane.broker import INGEST_USER
from dataplane.ports import free_port
from device_agent.disk_queue import DiskQueue, QueueError
from device_agent.kit import write_kit
from tests.agent_process import agent
from tests.fixtures.broker import RestartableBroker

ROOT = Path(__file__).resolve().parent.parent


def lines(ids: list[str]) -> str:
    return "".join(json.dumps({"message_id": i, "ozone": n}) + "\n" for n, i in enumerate(ids))


# --- the queue itself ------------------------------------------------------------------
def test_disk_queue_is_fifo_bounded_persistent_and_exclusive(tmp_path):
    disk = DiskQueue(tmp_path / "q", max_items=3)
    assert [disk.put(f"r{n}") for n in range(5)] == [0, 0, 0, 1, 1]
    assert (len(disk), disk.dropped) == (3, 2)
    rows = disk.pending(0, 10)
    assert [body for _, body, _ in rows] == ["r2", "r3", "r4"]
    assert [body for _, body, _ in disk.pending(rows[0][0], 10)] == ["r3", "r4"]
    with pytest.raises(QueueError, match="another agent is using the queue"):
        DiskQueue(tmp_path / "q", max_items=3)
    assert disk.remove([rows[1][0], rows[1][0] + 100]) == 1
    disk.close()
    reopened = DiskQueue(tmp_path / "q", max_items=3)
    assert [body for _, body, _ in reopened.pending(0, 10)] == ["r2", "r4"]
    assert (len(reopened), reopened.dropped) == (2, 0)
    reopened.close()


# --- the bound, and a later run sending what an earlier one queued ----------------------
def test_offline_agent_keeps_the_newest_readings_and_the_next_run_sends_them(mqtt_broker, tmp_path):
    thing = "offline-dev"
    credentials = mqtt_broker.authority.register_thing(thing)
    nowhere = write_kit(
        tmp_path / "offline-kit",
        thing_name=thing,
        host="127.0.0.1",
        port=free_port(),
        certificate_pem=credentials.certificate_pem,
        private_key_pem=credentials.private_key_pem,
        ca_pem=credentials.ca_pem,
    )
    queue_dir = tmp_path / "queue"
    ids = [f"q-{n}" for n in range(8)]
    offline = ("--stdin", "--queue-dir", str(queue_dir), "--queue-max", "5", "--keep-trying")
    result = agent("--kit", str(nowhere), *offline, "--reconnect-min", "0.1", "--drain-timeout", "1", stdin=lines(ids))
    assert result.returncode == 1
    assert "attempt 1 failed: cannot reach the broker" in result.stdout
    assert "dropped 3 oldest reading(s): the queue was full (--queue-max 5)" in result.stderr
    assert f"error: 5 unacknowledged reading(s) stay queued in {queue_dir}" in result.stderr

    subscriber = mqtt_broker.subscriber(f"dt/iotcast/{thing}/telemetry", client_id=f"sub-{uuid.uuid4().hex[:6]}")
    try:
        result = agent("--kit", str(mqtt_broker.device_kit(thing)), "--stdin", "--queue-dir", str(queue_dir))
        received = subscriber.wait_for(5)
    finally:
        subscriber.stop()
    assert result.returncode == 0, result.stderr
    assert "5 reading(s) queued by an earlier run are sent first" in result.stdout
    assert [json.loads(payload)["message_id"] for _, payload in received] == ids[3:]


# --- a broker outage while the agent runs ------------------------------------------------
@pytest.fixture
def own_broker(restartable_broker) -> RestartableBroker:
    return restartable_broker


def persistent_subscriber(broker: RestartableBroker, work_dir: Path, topic: str) -> tuple[mqtt.Client, list]:
    """An ingest client with a persistent session (clean_session False): the broker keeps its messages."""
    creds = broker.authority.issue_service_credentials(INGEST_USER, work_dir / "ingest")
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="outage-ingest", clean_session=False
    )
    client.tls_set(ca_certs=str(creds / "ca.pem"), certfile=str(creds / "cert.pem"), keyfile=str(creds / "key.pem"))
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    received: list = []
    subscribed = threading.Event()
    client.on_message = lambda c, u, message: received.append(json.loads(message.payload)["message_id"])
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    assert subscribed.wait(15)
    return client, received


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_readings_taken_while_the_broker_is_down_are_sent_after_it_returns(own_broker, tmp_path):
    thing = "outage-dev"
    kit = own_broker.device_kit(thing, tmp_path / "kit")
    client, received = persistent_subscriber(own_broker, tmp_path, f"dt/iotcast/{thing}/telemetry")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_agent",
            "--kit",
            str(kit),
            "--stdin",
            "--reconnect-min",
            "0.2",
            "--reconnect-max",
            "0.5",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output: queue.SimpleQueue = queue.SimpleQueue()
    seen: list[str] = []
    threading.Thread(target=lambda: [output.put(line) for line in process.stdout], daemon=True).start()

    def printed(fragment: str) -> bool:
        while not output.empty():
            seen.append(output.get())
        return any(fragment in line for line in seen)

    try:
        process.stdin.write(lines(["before-0", "before-1", "before-2"]))
        process.stdin.flush()
        assert wait_until(lambda: len(received) >= 3), seen
        own_broker.stop()
        assert wait_until(lambda: printed("connection lost")), seen
        during = [f"during-{n}" for n in range(4)]
        process.stdin.write(lines(during))
        process.stdin.flush()
        assert wait_until(lambda: printed("#7 ")), seen
        assert wait_until(lambda: printed("attempt 2 failed: cannot reach the broker")), seen
        own_broker.start()
        assert wait_until(lambda: printed("reconnected to")), seen
        process.stdin.write(lines(["after-0"]))
        process.stdin.close()
        assert process.wait(20) == 0, process.stderr.read()
        assert wait_until(lambda: set(received) >= set(during) | {"after-0"}), (received, seen)
    finally:
        process.kill()
        client.loop_stop()
        client.disconnect()
    # Every reading arrived (QoS 1 may repeat one whose PUBACK was lost in the outage), in first-seen order.
    assert list(dict.fromkeys(received)) == ["before-0", "before-1", "before-2", *during, "after-0"]
    assert any("reconnected" in line and "queued reading(s)" in line for line in seen)
    assert any(line.startswith("attempt 1 failed") and "next in" in line for line in seen)
