"""Connect with the kit's certificate (awsiotsdk, as on IoT Core) and publish simulated telemetry at QoS 1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime

from awscrt import mqtt
from awscrt.exceptions import AwsCrtError
from awsiot import mqtt_connection_builder

from device_agent.kit import Kit
from device_agent.simulator import AirQualitySimulator
from device_agent.telemetry import encode, telemetry_message

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 10.0

# What awscrt's error names mean to someone starting a device.
_UNREACHABLE = ("SOCKET_CONNECTION_REFUSED", "SOCKET_TIMEOUT", "DNS", "NO_ROUTE", "NETWORK_DOWN", "SOCKET_NETWORK")
_REJECTED = ("TLS", "UNEXPECTED_HANGUP", "SOCKET_CLOSED", "CONNECTION_RESET", "PROTOCOL_ERROR", "NOT_AUTHORIZED")


class AgentError(Exception):
    """The agent cannot run; the message is one line fit for the operator."""


def explain(error: BaseException, kit: Kit) -> str:
    """Return a one-line explanation of a connection failure."""
    name = getattr(error, "name", "") or type(error).__name__
    where = f"{kit.host}:{kit.port}"
    if any(marker in name for marker in _UNREACHABLE):
        return f"cannot reach the broker at {where} ({name}): is it running and is the address right?"
    if any(marker in name for marker in _REJECTED):
        return (
            f"the broker at {where} rejected the connection ({name}): "
            "is this kit's certificate issued by this broker's CA, and still valid?"
        )
    return f"could not connect to {where}: {name}: {error}"


def connect(kit: Kit, timeout: float = CONNECT_TIMEOUT_S) -> mqtt.Connection:
    """Return a connected MQTT connection using the kit's certificate; raise AgentError when it fails."""
    try:
        connection = mqtt_connection_builder.mtls_from_path(
            endpoint=kit.host,
            port=kit.port,
            cert_filepath=str(kit.certificate_path),
            pri_key_filepath=str(kit.private_key_path),
            ca_filepath=str(kit.ca_path),
            client_id=kit.client_id,
            clean_session=True,
            keep_alive_secs=30,
            enable_metrics_collection=False,
        )
    except (AwsCrtError, RuntimeError, ValueError) as exc:
        raise AgentError(f"cannot load the kit's certificate, key or CA in {kit.directory}: {exc}") from exc
    try:
        connection.connect().result(timeout)
    except TimeoutError as exc:
        raise AgentError(f"no answer from the broker at {kit.host}:{kit.port} within {timeout:.0f} s") from exc
    except Exception as exc:  # awscrt raises several exception types for a failed connect
        raise AgentError(explain(exc, kit)) from exc
    return connection


class Publisher:
    """Publishes readings at QoS 1 and counts those the broker acknowledged."""

    def __init__(self, connection: mqtt.Connection, topic: str) -> None:
        self.connection = connection
        self.topic = topic
        self.acknowledged = 0
        self.failed = 0
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    def publish(self, message: dict) -> None:
        future, _packet_id = self.connection.publish(self.topic, encode(message), mqtt.QoS.AT_LEAST_ONCE)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)
            if not future.cancelled() and future.exception() is None:
                self.acknowledged += 1
            else:
                self.failed += 1

    def drain(self, timeout: float = ACK_TIMEOUT_S) -> int:
        """Wait up to timeout seconds for outstanding PUBACKs; return how many are still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return 0
            time.sleep(0.02)
        with self._lock:
            return len(self._pending)


def run(
    kit: Kit,
    simulator: AirQualitySimulator,
    interval: float,
    count: int | None,
    report: Callable[[str], None] = print,
) -> Publisher:
    """Connect, publish count readings (forever when None) every interval seconds, drain and disconnect.

    Returns the publisher (its acknowledged count); KeyboardInterrupt stops the loop but still
    drains and disconnects. Raises AgentError when the connection fails.
    """
    connection = connect(kit)
    publisher = Publisher(connection, kit.topic)
    report(f"connected to {kit.host}:{kit.port} as {kit.client_id}; publishing to {kit.topic}")
    try:
        _loop(publisher, simulator, interval, count, report)
    except KeyboardInterrupt:
        report("stopping")
    finally:
        missing = publisher.drain()
        if missing:
            report(f"{missing} message(s) were not acknowledged by the broker")
        connection.disconnect().result(5)
    return publisher


def _loop(
    publisher: Publisher, simulator: AirQualitySimulator, interval: float, count: int | None, report: Callable
) -> None:
    started = time.monotonic()
    sent = 0
    while count is None or sent < count:
        # Scheduled from the start, so the cadence does not drift with publishing time.
        delay = started + sent * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = datetime.now(UTC)
        message = telemetry_message(simulator.reading_at(now), now)
        publisher.publish(message)
        sent += 1
        report(
            f"#{sent} {message['timestamp']} ozone={message['ozone']} pm={message['particulate_matter']} "
            f"co={message['carbon_monoxide']} so2={message['sulfur_dioxide']} no2={message['nitrogen_dioxide']}"
        )
