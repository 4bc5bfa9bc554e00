"""The ingest service: the IoT rule and the Firehose delivery stream in front of the local broker.

It subscribes (QoS 1, MQTT 5, mutual TLS) to $share/ingest/dt/iotcast/+/telemetry, applies the rule
to each message, buffers the records, and acknowledges a message only once every record made
from it is in an object the lake has stored. A message that was received but not yet durable
when the service died is therefore redelivered: the session is persistent (fixed client id,
clean_start false, a session expiry), so the broker resends its unacknowledged messages when the
client returns, and queues what is published for it meanwhile. Several workers (each with its own
client id: host + worker index) share the load through the shared subscription.

The broker persists sessions, so they also outlive a broker restart; each worker additionally holds
the plain restore marker of its shared subscription (dataplane.broker.RESTORE_MARKER), from which
the broker gets the shared subscription back before it accepts devices (Mosquitto 2.0 does not
persist shared subscriptions itself).

Mosquitto hands shared-subscription messages round robin to every member, connected or not: a
stopped worker's share waits in its session until that worker number runs again. So scale down only
for a while; a worker number retired for good keeps collecting its share until its session expires
(session_expiry_s), and Mosquitto then drops what was queued (a known limit, not handled here).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.interfaces import Lake
from dataplane.broker import restore_marker
from dataplane.ingest.delivery import DeliveryStream, FlushedObject
from dataplane.ingest.rule import records_from_message
from dataplane.ingest.where import compile_where

log = logging.getLogger("dataplane.ingest")

SHARED_SUBSCRIPTION = "$share/ingest/dt/iotcast/+/telemetry"
# MQTT 5's Receive Maximum caps how many unacknowledged QoS 1 messages the broker sends us; acks
# wait for the buffer to be durable, so the cap must hold a whole buffer's worth of messages.
RECEIVE_MAXIMUM = 65535
# Devices reconnect within a fraction of a second after a broker restart; the ingest follows quickly
# so that the messages queued for its session meanwhile do not pile up (seconds).
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 2.0


def default_client_id(worker: int = 0) -> str:
    """Return the client id of worker number `worker` on this host.

    Stable across restarts (no pid), so a restarted worker resumes its own session and receives what
    was queued for it; distinct per worker, so two workers on one host never take over each other's
    session.
    """
    return f"iotcast-ingest-{socket.gethostname()}-{worker}"


@dataclass(frozen=True)
class IngestConfig:
    """Where the service connects and how it buffers."""

    host: str
    port: int
    credentials_dir: Path  # cert.pem, key.pem, ca.pem
    client_id: str = field(default_factory=default_client_id)
    buffer_size_mb: float = 5
    buffer_interval_s: float = 300
    subscription: str = SHARED_SUBSCRIPTION
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    reconnect_min_s: float = RECONNECT_MIN_S  # paho doubles the wait per failed attempt up to the max
    reconnect_max_s: float = RECONNECT_MAX_S
    where: str = ""  # the rule's WHERE clause (dataplane.ingest.where); empty selects every reading
    prefix: str = "raw/"
    error_prefix: str = "errors/"

    def credential_files(self) -> tuple[Path, Path, Path]:
        """Return (cert.pem, key.pem, ca.pem); raise FileNotFoundError naming the first one missing."""
        files = tuple(Path(self.credentials_dir) / name for name in ("cert.pem", "key.pem", "ca.pem"))
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"ingest credentials incomplete: {path} is missing")
        return files


@dataclass
class IngestStats:
    messages: int = 0
    records: int = 0
    errors: int = 0
    filtered: int = 0
    objects: int = 0
    acked: int = 0
    # thing -> [last arrival (epoch ms), messages]: device status without a database write per message.
    devices: dict[str, list[int]] = field(default_factory=dict)


class IngestService:
    """Runs the MQTT client and the delivery stream; start() returns at once, stop() flushes and disconnects."""

    def __init__(self, lake: Lake, config: IngestConfig, device_known: Callable[[str], bool] | None = None) -> None:
        """device_known (e.g. a CachedDeviceNames) sends unregistered things to errors/unknown-device/.

        Raises WhereError when config.where cannot be compiled.
        """
        self.config = config
        self.stats = IngestStats()
        self.where = compile_where(config.where)
        self.device_known = device_known
        self.stream = DeliveryStream(
            lake,
            config.buffer_size_mb,
            config.buffer_interval_s,
            prefix=config.prefix,
            error_prefix=config.error_prefix,
            on_durable=self._on_durable,
        )
        self.connected = threading.Event()
        self._closing = False
        self._stop = threading.Event()
        self._ack_lock = threading.Lock()
        self._generation = 0  # bumped per connection: an ack token is only valid on its own connection
        self._client = self._make_client()
        self._ticker = threading.Thread(target=self._tick, name="ingest-flush", daemon=True)

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        cert, key, ca = self.config.credential_files()
        client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
        client.reconnect_delay_set(min_delay=self.config.reconnect_min_s, max_delay=self.config.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    @property
    def stopped(self) -> bool:
        """Return whether stop() was called."""
        return self._closing

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start the flush timer."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.config.session_expiry_s
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(
            self.config.host, self.config.port, self.config.keepalive_s, clean_start=False, properties=properties
        )
        self._client.loop_start()
        self._ticker.start()
        log.info("ingest %s connecting to %s:%s", self.config.client_id, self.config.host, self.config.port)

    def stop(self, flush: bool = True) -> None:
        """Stop taking messages, write what is buffered (unless flush is False), ack it, and disconnect.

        With flush=False (a crash, in effect) the buffered messages stay unacknowledged and the
        broker redelivers them to the next session with this client id.
        """
        self._closing = True  # messages arriving from now on stay unacked: the next session gets them
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        if flush:
            self.stream.flush()
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()
        log.info("ingest %s stopped: %s", self.config.client_id, self.stats)

    # --- paho callbacks (run on paho's network thread) ------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:
            self._generation += 1
        if reason_code.is_failure:
            log.error("broker refused ingest connection: %s", reason_code)
            return
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self._topics()])
        log.info("ingest connected (session present: %s)", flags.session_present)

    def _topics(self) -> list[str]:
        """Return the subscription, plus its restore marker when it is shared (see the module docstring)."""
        subscription = self.config.subscription
        return [subscription, restore_marker(subscription)] if subscription.startswith("$share/") else [subscription]

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if reason_codes[0].is_failure:
            log.error("broker refused subscription %s: %s", self.config.subscription, reason_codes[0])
            return
        if any(code.is_failure for code in reason_codes[1:]):
            # Still works; only a broker restart may then drop what arrives before the re-subscribe.
            log.warning("broker refused the restore marker of %s: %s", self.config.subscription, reason_codes)
        log.info("ingest subscribed to %s", self.config.subscription)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:
            self._generation += 1
        self.connected.clear()
        if not self._closing:
            log.warning("ingest lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if self._closing:
            return
        now_ms = int(time.time() * 1000)
        try:
            outcome = records_from_message(message.topic, message.payload, now_ms, self.where, self.device_known)
        except ValueError:
            # Not a telemetry topic (the subscription rules that out); never let it stop the loop.
            log.exception("ignoring message on %s", message.topic)
            return
        self._count(message.topic, outcome, now_ms)
        token = (self._generation, message.mid, message.qos)
        try:
            self.stream.put_records(outcome.records, outcome.errors, token=token)
        except Exception:
            # The lake refused a full buffer: the records stay buffered and the timer retries.
            log.exception("writing a full buffer to the lake failed; will retry")

    def _count(self, topic: str, outcome, now_ms: int) -> None:
        stats = self.stats
        stats.messages += 1
        stats.records += len(outcome.records)
        stats.errors += len(outcome.errors)
        stats.filtered += outcome.filtered
        seen = stats.devices.setdefault(topic.split("/")[2], [0, 0])
        seen[0], seen[1] = now_ms, seen[1] + 1

    # --- durability -> acks ---------------------------------------------------------------
    def _on_durable(self, flushed: FlushedObject) -> None:
        if flushed.key:
            self.stats.objects += 1
            log.info("ingest wrote %s records, %s bytes to %s", flushed.records, flushed.size, flushed.key)
        with self._ack_lock:
            for generation, mid, qos in flushed.durable_tokens:
                # After a reconnect the broker redelivers instead; acking an old mid could hit another message.
                if generation == self._generation and qos > 0:
                    self._client.ack(mid, qos)
                    self.stats.acked += 1

    def _tick(self) -> None:
        period = min(1.0, max(0.05, self.config.buffer_interval_s / 4))
        while not self._stop.wait(period):
            try:
                self.stream.flush_due()
            except Exception:
                log.exception("writing to the lake failed; the records stay buffered and unacknowledged")
