"""Ingest benchmark: N simulated devices (real mTLS MQTT connections) -> Mosquitto -> ingest workers -> lake.

    .venv/bin/python bench/ingest.py [--quick] [--devices N] [--rate R] [--batch B] [--seconds S] [--workers W]

Starts its own broker (the project's config: mTLS, ACL, CRL) on a free port and W ingest workers
(IngestService in separate processes, one shared subscription) writing to a folder lake with
Firehose buffering (--interval s). G generator processes first connect all the devices, then start
together and publish R readings/s in JSON arrays of B readings (the rule's batchMode) at QoS 1;
payloads come from a pre-encoded template (only message_id and timestamp change), and the network
loop reads only sockets that have PUBACKs waiting, so the generator offers the target rate.

Afterwards every object in the lake is read back. Definitions:
- publish window: first publish to last publish over all generators (connection setup excluded).
- readings_per_s (sustained): distinct published readings durable in the lake by the end of the
  window plus buffer interval + 1 s (the latency goal), divided by the publish window. Readings
  that only become durable later do not count, so a backlog at the end lowers the figure.
- readings_per_s_old_definition: every reading found / (last object write - generator spawn), the
  earlier figure: it counted connection setup and the flush tail, so it under-reports.
- offered_readings_per_s: readings published / publish window (what the generators achieved).
- latency: object write time (its mtime) minus the reading's own timestamp (set when published).
- lost: published message ids missing from the lake; duplicated: the extra copies (the ETL drops them).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import selectors
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud.lake import FolderLake  # noqa: E402
from cloud.local.identity import LocalCertificateAuthority  # noqa: E402
from dataplane.broker import INGEST_USER, BrokerHandle  # noqa: E402
from dataplane.ingest.service import IngestConfig, IngestService  # noqa: E402
from dataplane.ports import free_port  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run: 100 devices, 2,000 readings/s, 10 s")
    parser.add_argument("--devices", type=int, default=1000, help="device connections (default 1000)")
    parser.add_argument("--rate", type=int, default=20000, help="readings per second offered (default 20000)")
    parser.add_argument("--batch", type=int, default=50, help="readings per MQTT message (default 50)")
    parser.add_argument("--seconds", type=float, default=60, help="publishing time (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes (default 2)")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--interval", type=float, default=1.0, help="Firehose IntervalInSeconds (default 1)")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.rate, args.seconds = 100, 2000, 10
    return args


# --- ingest workers ---------------------------------------------------------------------------
def ingest_worker(index: int, host: str, port: int, credentials: str, lake_dir: str, interval: float, stop) -> None:
    """Run one IngestService until stop is set, then flush (in a child process)."""
    config = IngestConfig(
        host, port, Path(credentials), client_id=f"bench-ingest-{index}", buffer_interval_s=interval, buffer_size_mb=5
    )
    service = IngestService(FolderLake(f"file://{lake_dir}"), config)
    service.start()
    stop.wait()
    service.stop(flush=True)


# --- load generators -----------------------------------------------------------------------------
# One reading, pre-encoded: only the message id and the timestamp change per message.
_READING = (
    b'{"message_id":"%s-%09d","timestamp":"%s","ozone":41.0,"particulate_matter":12.0,'
    b'"carbon_monoxide":0.4,"sulfur_dioxide":3.0,"nitrogen_dioxide":20.0}'
)


def generator(kits: list[tuple[str, str]], host: str, port: int, rate: float, args: tuple, ready, go, out) -> None:
    """Connect every kit's device, wait for go, publish `rate` readings/s in batches, wait for the PUBACKs.

    args is (batch, seconds). Sends (connections, messages, readings, acked, id prefix, first publish,
    last publish) on out; the message ids are "<prefix>-<n>" for n in range(readings).
    """
    import paho.mqtt.client as mqtt

    batch, seconds = args
    acked = [0]
    clients = []
    for name, folder in kits:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        client.tls_set(f"{folder}/ca.pem", f"{folder}/cert.pem", f"{folder}/key.pem")
        client.max_inflight_messages_set(0)
        client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
        client.connect(host, port, keepalive=300)
        clients.append((f"dt/iotcast/{name}/telemetry", client))
    selector = _Reader([client for _, client in clients])
    selector.pump(0.5)  # CONNACKs
    ready.set()
    go.wait()
    prefix = uuid.uuid4().hex[:12].encode()
    messages, first, last = _publish(clients, selector, rate, batch, seconds, prefix)
    deadline = time.monotonic() + 60
    while acked[0] < messages and time.monotonic() < deadline:
        selector.pump(0.05)
    for _, client in clients:
        client.disconnect()
    out.send((len(clients), messages, messages * batch, acked[0], prefix.decode(), first, last))


class _Reader:
    """Reads only the sockets that have data (PUBACKs), instead of polling every client each turn."""

    def __init__(self, clients: list) -> None:
        self.selector = selectors.DefaultSelector()
        for client in clients:
            self.selector.register(client.socket(), selectors.EVENT_READ, client)
        self.clients = clients
        self.misc_at = 0.0

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            for key, _ in self.selector.select(max(0.0, min(0.01, deadline - time.monotonic()))):
                key.data.loop_read()
            now = time.monotonic()
            if now >= self.misc_at:  # keepalive bookkeeping, once a second is plenty
                for client in self.clients:
                    client.loop_write()
                    client.loop_misc()
                self.misc_at = now + 1.0
            if now >= deadline:
                return


def _publish(clients: list, reader: _Reader, rate: float, batch: int, seconds: float, prefix: bytes) -> tuple:
    """Publish round robin at rate readings/s for seconds; return (messages, first, last publish epoch s).

    paho writes a publish at once when no network thread runs, so only reads need pumping.
    """
    interval = batch / rate
    started, first = time.monotonic(), time.time()
    messages = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = min(int(elapsed / interval) + 1, round(seconds / interval))
        while messages < due:
            topic, client = clients[messages % len(clients)]
            client.publish(topic, _batch(prefix, messages * batch, batch), qos=1)
            messages += 1
        reader.pump(max(0.0, min(interval, started + due * interval - time.monotonic())))
    return messages, first, time.time()


def _batch(prefix: bytes, start: int, size: int) -> bytes:
    now = datetime.now(UTC)
    stamp = (now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z").encode()
    return b"[" + b",".join([_READING % (prefix, n, stamp) for n in range(start, start + size)]) + b"]"


# --- the run ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        port = free_port()
        authority = LocalCertificateAuthority(str(work / "ca"), "127.0.0.1", port)
        with BrokerHandle.start(work, port, authority):
            result = _run(args, work, authority, port)
    print(json.dumps(result))
    return result


def _run(args: argparse.Namespace, work: Path, authority: LocalCertificateAuthority, port: int) -> dict:
    credentials = authority.issue_service_credentials(INGEST_USER, work / "ingest")
    kits = _device_credentials(authority, work, args.devices)
    lake_dir = work / "lake"
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    common = ("127.0.0.1", port, str(credentials), str(lake_dir), args.interval, stop)
    workers = [ctx.Process(target=ingest_worker, args=(i, *common)) for i in range(args.workers)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)  # connected and subscribed
    spawned = time.time()
    reports = _generate(ctx, kits, port, args)
    time.sleep(args.interval + 1.5)  # the last buffers reach their interval
    stop.set()
    for worker in workers:
        worker.join(30)
    return _measure(args, reports, lake_dir, spawned)


def _device_credentials(authority: LocalCertificateAuthority, work: Path, count: int) -> list[tuple[str, str]]:
    kits = []
    for index in range(count):
        name = f"bench-{index:05d}"
        kits.append((name, str(authority.issue_service_credentials(name, work / "devices" / name))))
    return kits


def _generate(ctx, kits: list, port: int, args: argparse.Namespace) -> list[tuple]:
    """Run the generators: all connect first, then all start publishing together."""
    pipes, processes, readies = [], [], []
    share = max(1, args.generators)
    go = ctx.Event()
    for index in range(share):
        receiver, sender = ctx.Pipe(duplex=False)
        ready = ctx.Event()
        work = (args.batch, args.seconds)
        process = ctx.Process(
            target=generator, args=(kits[index::share], "127.0.0.1", port, args.rate / share, work, ready, go, sender)
        )
        process.start()
        pipes.append(receiver)
        processes.append(process)
        readies.append(ready)
    for ready in readies:
        ready.wait(300)
    go.set()
    reports = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join(30)
    return reports


def _measure(args: argparse.Namespace, reports: list, lake_dir: Path, spawned: float) -> dict:
    """Read the lake back and compute the figures (see the module docstring for the definitions)."""
    sent = {f"{r[4]}-{n:09d}" for r in reports for n in range(r[2])}
    window_start, window_end = min(r[5] for r in reports), max(r[6] for r in reports)
    window = max(window_end - window_start, 1e-9)
    allowance = window_end + args.interval + 1.0
    counts: dict[str, int] = {}
    latencies: list[float] = []
    last_durable, in_time = spawned, 0
    for path in (lake_dir / "raw").rglob("iotcast-telemetry-*"):
        durable = path.stat().st_mtime
        last_durable = max(last_durable, durable)
        for line in path.open("rb"):
            record = json.loads(line)
            seen = counts.get(record["message_id"], 0)
            counts[record["message_id"]] = seen + 1
            in_time += seen == 0 and record["message_id"] in sent and durable <= allowance
            latencies.append(durable - datetime.fromisoformat(record["timestamp"]).timestamp())
    latencies.sort()
    found = sum(counts.values())
    return {
        "readings_per_s": round(in_time / window, 1),
        "readings_per_s_old_definition": round(found / max(last_durable - spawned, 1e-9), 1),
        "offered_readings_per_s": round(len(sent) / window, 1),
        "target_readings_per_s": args.rate,
        "messages_per_s": round(sum(r[1] for r in reports) / window, 1),
        "publish_window_s": round(window, 3),
        "connections": sum(r[0] for r in reports),
        "p50_latency_s": round(_quantile(latencies, 0.5), 3),
        "p99_latency_s": round(_quantile(latencies, 0.99), 3),
        "lost": len(sent - counts.keys()),
        "duplicated": found - len(counts),
        "readings_published": len(sent),
        "messages_acked": sum(r[3] for r in reports),
        "seconds": args.seconds,
        "batch": args.batch,
        "workers": args.workers,
        "generators": args.generators,
        "buffer_interval_s": args.interval,
    }


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


if __name__ == "__main__":
    main()
