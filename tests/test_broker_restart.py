"""A broker restart while a device agent publishes: every reading reaches the lake's raw zone (at least once).

Everything is real and shipped as is: Mosquitto with the project's own configuration (persistence,
mTLS, ACL), two ingest workers sharing $share/ingest/... into a folder lake, and a device agent
process fed readings continuously on stdin. The broker runs on a port of its own (it is stopped and
started again there), so the session broker other tests share is never restarted.

The ingest workers here wait 3 s before reconnecting, well after the device agent (0.2-0.5 s): what
the agent publishes in between must be queued for the workers' sessions, which needs the sessions
and their shared subscription to outlive the restart (dataplane.broker.restore_shared_subscriptions).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from dataplane.broker import (
    INGEST_SHARED_SUBSCRIPTION,
    INGEST_USER,
    restore_marker,
    restore_shared_subscriptions,
    store_path,
)
from dataplane.ingest.service import IngestConfig, IngestService
from dataplane.ports import port_open
from tests.fixtures.broker import RestartableBroker

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 30.0  # generous: the test machine is shared and loaded
SLOW_INGEST_RECONNECT_S = 3.0


@pytest.fixture
def broker(restartable_broker) -> RestartableBroker:
    return restartable_broker


class Feeder:
    """Writes one reading per line to the agent's stdin until stopped; remembers when each id was written."""

    def __init__(self, stdin, period_s: float = 0.02) -> None:
        self.stdin = stdin
        self.period_s = period_s
        self.sent: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        number = 0
        while not self._stop.wait(self.period_s):
            message_id = f"restart-{number}"
            self.stdin.write(json.dumps({"message_id": message_id, "ozone": 30.0 + number % 50}) + "\n")
            self.stdin.flush()
            self.sent.append((time.monotonic(), message_id))
            number += 1

    def finish(self) -> None:
        """Stop writing and close stdin: the agent then drains its queue and exits."""
        self._stop.set()
        self._thread.join(WAIT_S)
        self.stdin.close()

    def ids_between(self, start: float, end: float) -> list[str]:
        return [message_id for when, message_id in self.sent if start <= when <= end]


def wait_until(condition, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def raw_message_ids(lake) -> list[str]:
    """Return the message_id of every record in the raw zone, repeats included."""
    return [
        json.loads(line)["message_id"]
        for item in lake.list_objects("raw/")
        for line in lake.get_bytes(item.key).splitlines()
    ]


def start_workers(broker: RestartableBroker, lake, work_dir: Path, count: int) -> list[IngestService]:
    credentials = broker.authority.issue_service_credentials(INGEST_USER, work_dir / "ingest")
    workers = []
    for worker in range(count):
        config = IngestConfig(
            "127.0.0.1",
            broker.port,
            credentials,
            client_id=f"iotcast-ingest-restart-test-{worker}",
            buffer_interval_s=0.3,
            reconnect_min_s=SLOW_INGEST_RECONNECT_S,
            reconnect_max_s=SLOW_INGEST_RECONNECT_S,
        )
        workers.append(IngestService(lake, config))
        workers[-1].start()
    assert wait_until(lambda: all(w.connected.is_set() for w in workers)), "the ingest workers did not subscribe"
    return workers


def start_agent(broker: RestartableBroker, work_dir: Path) -> subprocess.Popen:
    thing = "restart-dev"
    kit = broker.device_kit(thing, work_dir / "kit")
    options = ["--stdin", "--quiet", "--reconnect-min", "0.2", "--reconnect-max", "0.5", "--drain-timeout", "60"]
    return subprocess.Popen(
        [sys.executable, "-m", "device_agent", "--kit", str(kit), *options],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_broker_restart_loses_no_reading(broker, lake, tmp_path, record_property):
    workers = start_workers(broker, lake, tmp_path, count=2)
    agent = start_agent(broker, tmp_path)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(agent.stdout), daemon=True).start()
    feeder = Feeder(agent.stdin)
    try:
        assert wait_until(lambda: len(raw_message_ids(lake)) >= 20), ("nothing reached the lake", output)
        restarted_at = time.monotonic()
        broker.restart()
        assert wait_until(lambda: all(w.connected.is_set() for w in workers)), "the workers did not come back"
        back_at = time.monotonic()
        time.sleep(1.0)  # keep publishing a little after the workers are back
        feeder.finish()
        assert agent.wait(WAIT_S * 2) == 0, "".join(output)
        sent = [message_id for _, message_id in feeder.sent]
        assert wait_until(lambda: set(raw_message_ids(lake)) >= set(sent)), (
            sorted(set(sent) - set(raw_message_ids(lake)))[:20],
            "".join(output),
        )
    finally:
        if agent.poll() is None:
            agent.kill()
        for worker in workers:
            worker.stop()
    # The workers came back long after the broker: readings published meanwhile were queued for them.
    window = feeder.ids_between(restarted_at + 1.5, back_at)
    assert window, "no reading was published while the ingest was away"
    assert all(w.stats.acked for w in workers), "a worker got no share of the shared subscription"
    counts = Counter(raw_message_ids(lake))
    assert set(counts) == set(sent)  # nothing lost, nothing invented
    duplicates = sum(n - 1 for n in counts.values())
    record_property("readings", len(sent))
    record_property("duplicates", duplicates)
    print(f"{len(sent)} readings, {len(window)} published while the ingest was away, {duplicates} duplicate(s)")


# --- the restore itself, and the entry point the demo's supervisor runs ------------------------
def persistent_client(broker: RestartableBroker, credentials: Path, received: list) -> mqtt.Client:
    """Connect an MQTT 5 client with a persistent session (clean start off, 1 h expiry); wait for the CONNACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="restore-probe", protocol=mqtt.MQTTv5)
    client.tls_set(str(credentials / "ca.pem"), str(credentials / "cert.pem"), str(credentials / "key.pem"))
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.on_message = lambda c, u, message: received.append(json.loads(message.payload)["message_id"])
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
    client.loop_start()
    assert connected.wait(WAIT_S)
    return client


def publish(broker: RestartableBroker, work_dir: Path, message_id: str) -> None:
    kit = broker.authority.issue_service_credentials("probe-dev", work_dir / "probe-dev")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe-dev")
    client.tls_set(str(kit / "ca.pem"), str(kit / "cert.pem"), str(kit / "key.pem"))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        payload = json.dumps({"message_id": message_id})
        client.publish("dt/iotcast/probe-dev/telemetry", payload, qos=1).wait_for_publish(WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_entry_point_restores_shared_subscriptions_recorded_by_their_markers(broker, tmp_path):
    credentials = broker.authority.issue_service_credentials(INGEST_USER, tmp_path / "ingest")
    received: list[str] = []
    client = persistent_client(broker, credentials, received)
    topics = [INGEST_SHARED_SUBSCRIPTION, restore_marker(INGEST_SHARED_SUBSCRIPTION)]
    result, _ = client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in topics])
    assert result == mqtt.MQTT_ERR_SUCCESS
    publish(broker, tmp_path, "before")
    assert wait_until(lambda: received == ["before"])
    client.disconnect()
    client.loop_stop()
    broker.stop()

    store = store_path(broker.config)
    saved = store.read_bytes()
    assert restore_shared_subscriptions(store) == 1
    assert restore_shared_subscriptions(store) == 0  # already there: nothing appended twice
    store.write_bytes(saved)  # the entry point must do it by itself
    broker.process = subprocess.Popen(
        [sys.executable, "-m", "dataplane.broker", str(broker.config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_until(lambda: port_open(broker.port, "127.0.0.1")), "python -m dataplane.broker did not start"
    assert Path(f"/proc/{broker.process.pid}/comm").read_text().startswith("mosquitto")  # exec'd, same pid
    publish(broker, tmp_path, "while-away")  # the session is offline and has not re-subscribed
    client = persistent_client(broker, credentials, received)
    try:
        assert wait_until(lambda: "while-away" in received), received
    finally:
        client.disconnect()
        client.loop_stop()
