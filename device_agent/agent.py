"""Connect with the kit's certificate (awsiotsdk, as on IoT Core) and deliver queued readings at QoS 1.

A producer thread takes readings from the source and appends them to the on-disk queue; the main
thread publishes from the queue (one reading per message, or JSON arrays with --batch) and deletes a
reading only after the broker's PUBACK. When the connection drops it reconnects with exponential
backoff and full jitter, then resends everything still queued (at least once: the ETL drops
duplicates by message_id).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import islice

from awscrt import mqtt
from awscrt.exceptions import AwsCrtError
from awsiot import mqtt_connection_builder

from device_agent.disk_queue import DiskQueue
from device_agent.kit import Kit
from device_agent.simulator import POLLUTANTS
from device_agent.sources import MAX_PAYLOAD_BYTES
from device_agent.telemetry import encode

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 100  # messages published and not yet acknowledged
# A certificate refused this many times in a row after having worked was revoked: stop trying.
MAX_REJECTIONS = 3

# What awscrt's error names mean to someone starting a device.
_UNREACHABLE = ("SOCKET_CONNECTION_REFUSED", "SOCKET_TIMEOUT", "DNS", "NO_ROUTE", "NETWORK_DOWN", "SOCKET_NETWORK")
_REJECTED = ("TLS", "UNEXPECTED_HANGUP", "SOCKET_CLOSED", "CONNECTION_RESET", "PROTOCOL_ERROR", "NOT_AUTHORIZED")
_SHORT = {"ozone": "ozone", "particulate_matter": "pm", "carbon_monoxide": "co"}
_SHORT |= {"sulfur_dioxide": "so2", "nitrogen_dioxide": "no2"}


class AgentError(Exception):
    """The agent cannot run; the message is one line fit for the operator. kind: unreachable, rejected or other."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


def explain(error: BaseException, kit: Kit) -> AgentError:
    """Return a one-line explanation of a connection failure."""
    name = getattr(error, "name", "") or type(error).__name__
    where = f"{kit.host}:{kit.port}"
    if any(marker in name for marker in _UNREACHABLE):
        return AgentError(
            f"cannot reach the broker at {where} ({name}): is it running and is the address right?", "unreachable"
        )
    if any(marker in name for marker in _REJECTED):
        return AgentError(
            f"the broker at {where} rejected the connection ({name}): "
            "is this kit's certificate issued by this broker's CA, and still valid?",
            "rejected",
        )
    return AgentError(f"could not connect to {where}: {name}: {error}")


def connect(kit: Kit, timeout: float = CONNECT_TIMEOUT_S, on_interrupted: Callable | None = None) -> mqtt.Connection:
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
            # A publish without a PUBACK in this time fails, so the agent reconnects and resends it.
            protocol_operation_timeout_ms=int(ACK_TIMEOUT_S * 1000),
            on_connection_interrupted=on_interrupted,
            enable_metrics_collection=False,
        )
    except (AwsCrtError, RuntimeError, ValueError) as exc:
        raise AgentError(f"cannot load the kit's certificate, key or CA in {kit.directory}: {exc}") from exc
    try:
        connection.connect().result(timeout)
    except TimeoutError as exc:
        raise AgentError(
            f"no answer from the broker at {kit.host}:{kit.port} within {timeout:.0f} s", "unreachable"
        ) from exc
    except Exception as exc:  # awscrt raises several exception types for a failed connect
        raise explain(exc, kit) from exc
    return connection


def describe(number: int, message: dict) -> str:
    """Return the progress line of the number-th reading."""
    values = " ".join(f"{_SHORT[name]}={message[name]}" for name in POLLUTANTS if name in message)
    others = len(set(message) - {"message_id", "timestamp", *POLLUTANTS, "latitude", "longitude"})
    return f"#{number} {message['timestamp']} {values}" + (f" +{others} field(s)" if others else "")


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Return the wait after failed attempt number attempt (1, 2, ...): exponential backoff with full jitter.

    Uniform in [0, min(high, low * 2 ** (attempt - 1))], so many devices cut off together do not
    all come back at the same instant.
    """
    return (rng or random).uniform(0.0, min(high, low * 2 ** max(attempt - 1, 0)))


@dataclass
class Options:
    batch: int = 1  # readings per message; above 1 every message is a JSON array
    linger: float = 1.0  # with batch > 1: how long a partial batch waits for more readings
    drain_timeout: float = 30.0  # after the source ends: how long to wait for acknowledgements
    keep_trying: bool = False  # start without the broker instead of failing on the first connect
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    count: int | None = None  # stop after this many readings


@dataclass
class Stats:
    produced: int = 0
    acknowledged: int = 0  # readings acknowledged and removed from the queue
    messages: int = 0  # messages acknowledged
    attempts: int = 0  # failed connection attempts


class Agent:
    """Runs one source into the queue and the queue to the broker; see the module docstring."""

    def __init__(
        self,
        kit: Kit,
        source,
        disk_queue: DiskQueue,
        options: Options,
        report: Callable[[str], None] = print,
        warn: Callable[[str], None] = print,
    ) -> None:
        self.kit, self.source, self.queue, self.options = kit, source, disk_queue, options
        self.report, self.warn = report, warn
        self.stats = Stats()
        self.stop = threading.Event()  # tells the producer to stop
        self.wake = threading.Event()  # something changed: a reading, an ack, a lost connection
        self.acks: queue.SimpleQueue = queue.SimpleQueue()
        self.connection: mqtt.Connection | None = None
        self.generation = 0  # bumped per connection, so late callbacks of an old one are recognised
        self.interrupted: tuple[int, str] | None = None
        self.cursor = 0  # highest seq published on the current connection
        self.in_flight = 0
        self.ever_connected = False
        self.producer_done = threading.Event()
        self.producer_error: BaseException | None = None
        self.deadline: float | None = None
        # Set from a signal handler, so a plain flag: an Event would take a lock the interrupted code may hold.
        self.stop_requested = False
        self.stopping = False

    # --- the whole run ------------------------------------------------------------------
    def run(self) -> Stats:
        """Deliver the source's readings; return the counts. Raises AgentError when the agent cannot run.

        request_stop() (Ctrl-C, SIGTERM) stops the source, waits up to ACK_TIMEOUT_S for what is
        queued, and returns; what is left stays queued for the next start.
        """
        if len(self.queue):
            self.report(f"{len(self.queue)} reading(s) queued by an earlier run are sent first")
        if not self.options.keep_trying:
            self._connected(connect(self.kit, on_interrupted=self._on_interrupted))
        threading.Thread(target=self._produce, name="source", daemon=True).start()
        try:
            self._deliver()
        except KeyboardInterrupt:
            self.request_stop()
            self._deliver()
        finally:
            self.stop.set()
            self._disconnect()
        return self.stats

    def _produce(self) -> None:
        try:
            for message in islice(self.source.readings(self.stop), self.options.count):
                dropped = self.queue.put(encode(message).decode())
                self.stats.produced += 1
                self.report(describe(self.stats.produced, message))
                if dropped and (self.queue.dropped == dropped or self.queue.dropped % 1000 < dropped):
                    self.warn(
                        f"queue full ({self.queue.max_items} readings): dropped the oldest, {self.queue.dropped} so far"
                    )
                self.wake.set()
        except Exception as exc:  # e.g. undecodable stdin: end the run, keep what is queued
            self.producer_error = exc
        finally:
            self.producer_done.set()
            self.wake.set()

    def request_stop(self) -> None:
        """Ask the run to stop soon; safe to call from a signal handler (it only sets a flag)."""
        self.stop_requested = True

    def _begin_stop(self) -> None:
        """Stop the source and give what is in flight ACK_TIMEOUT_S to be acknowledged."""
        self.stopping = True
        self.report("stopping")
        self.stop.set()
        self.deadline = time.monotonic() + ACK_TIMEOUT_S

    def _deliver(self) -> None:
        """Publish until the source is done and the queue empty, the drain deadline passes, or a stop."""
        while True:
            if self.stop_requested and not self.stopping:
                self._begin_stop()
            self._take_acks()
            if self.producer_done.is_set() and not len(self.queue):
                return
            if self._past_deadline():
                return
            if self.connection is None:
                if self.stopping:
                    return
                self._reconnect()
                continue
            self._send_ready()
            self.wake.wait(0.2)
            self.wake.clear()

    def _past_deadline(self) -> bool:
        """Whether the drain deadline (set when the source ends, or on Ctrl-C) has passed."""
        if self.producer_done.is_set() and self.deadline is None:
            self.deadline = time.monotonic() + self.options.drain_timeout
        return self.deadline is not None and time.monotonic() > self.deadline

    # --- connection -----------------------------------------------------------------------
    def _on_interrupted(self, connection: mqtt.Connection, error: Exception, **kwargs: object) -> None:
        self.interrupted = (self.generation, getattr(error, "name", str(error)))
        self.wake.set()

    def _connected(self, connection: mqtt.Connection) -> None:
        self.connection = connection
        self.generation += 1
        self.cursor = 0  # resend everything still queued: an unacknowledged reading may never have arrived
        self.in_flight = 0
        self.interrupted = None
        if not self.ever_connected:
            self.report(
                f"connected to {self.kit.host}:{self.kit.port} as {self.kit.client_id}; publishing to {self.kit.topic}"
            )
        else:
            self.report(f"reconnected to {self.kit.host}:{self.kit.port}; sending {len(self.queue)} queued reading(s)")
        self.ever_connected = True

    def _lost(self, reason: str) -> None:
        self.report(f"connection lost ({reason}); {len(self.queue)} reading(s) queued; reconnecting")
        # Not waited for: a lost connection's disconnect completes only when awscrt gives up on it.
        self._disconnect(wait=0.0)

    def _disconnect(self, wait: float = 5.0) -> None:
        connection, self.connection = self.connection, None
        self.generation += 1
        if connection is None:
            return
        try:  # also stops awscrt's own reconnecting: this agent reconnects with jitter itself
            done = connection.disconnect()
            if wait:
                done.result(wait)
        except Exception:  # already gone: nothing to close
            pass

    def _reconnect(self) -> None:
        """Try to connect, waiting with backoff between attempts, until connected or the drain deadline passes."""
        attempt, rejections = 0, 0
        while not self._past_deadline():
            attempt += 1
            try:
                self._connected(connect(self.kit, on_interrupted=self._on_interrupted))
                return
            except AgentError as exc:
                rejections = rejections + 1 if exc.kind == "rejected" else 0
                if exc.kind == "rejected" and (not self.ever_connected or rejections >= MAX_REJECTIONS):
                    raise
                self.stats.attempts += 1
                delay = backoff_delay(attempt, self.options.reconnect_min, self.options.reconnect_max)
                self.report(f"attempt {attempt} failed: {exc}; next in {delay:.1f} s, {len(self.queue)} queued")
                self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not self._past_deadline():
            time.sleep(min(left, 0.2))
            self._take_acks()

    # --- publishing ------------------------------------------------------------------------
    def _send_ready(self) -> None:
        if self.interrupted and self.interrupted[0] == self.generation:
            self._lost(self.interrupted[1])
            return
        while self.in_flight < MAX_IN_FLIGHT:
            rows = self.queue.pending(self.cursor, self.options.batch)
            if not rows or not self._batch_ready(rows):
                return
            rows = _fit(rows)
            bodies = [body for _, body, _ in rows]
            payload = bodies[0] if self.options.batch == 1 else "[" + ",".join(bodies) + "]"
            seqs = [seq for seq, _, _ in rows]
            future, _ = self.connection.publish(self.kit.topic, payload.encode(), mqtt.QoS.AT_LEAST_ONCE)
            self.cursor = seqs[-1]
            self.in_flight += 1
            future.add_done_callback(partial(self._on_ack, self.generation, seqs))

    def _batch_ready(self, rows: list) -> bool:
        """A partial batch waits up to linger seconds for more readings, unless the source has ended."""
        full = len(rows) >= self.options.batch
        return (
            full or self.producer_done.is_set() or self.stop.is_set() or time.time() - rows[0][2] >= self.options.linger
        )

    def _on_ack(self, generation: int, seqs: list[int], future) -> None:
        # awscrt's thread: hand over to the main thread, which owns all delivery state.
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        self.acks.put((generation, seqs, error))
        self.wake.set()

    def _take_acks(self) -> None:
        while True:
            try:
                generation, seqs, error = self.acks.get_nowait()
            except queue.Empty:
                return
            current = generation == self.generation and self.connection is not None
            if current:
                self.in_flight -= 1
            if error is None:
                self.stats.acknowledged += self.queue.remove(seqs)
                self.stats.messages += 1
            elif current:
                self._lost(f"no acknowledgement: {getattr(error, 'name', error)}")


def _fit(rows: list) -> list:
    """Return the longest prefix of rows whose JSON array stays within the payload limit (at least one)."""
    size = 2
    for index, (_, body, _) in enumerate(rows):
        size += len(body) + (1 if index else 0)
        if size > MAX_PAYLOAD_BYTES and index:
            return rows[:index]
    return rows
