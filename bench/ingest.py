"""Ingest benchmark: N simulated devices (real mTLS MQTT connections) -> Mosquitto -> ingest workers -> lake.

    .venv/bin/python bench/ingest.py [--quick] [--devices N] [--rate R] [--batch B] [--seconds S] [--workers W]

Starts its own broker (the project's config: mTLS, ACL, CRL) on a free port and W ingest workers
(IngestService in separate processes, one shared subscription) writing to a folder lake with
Firehose buffering (--interval s). G generator processes hold the device connections and publish
R readings/s in JSON arrays of B readings (the rule's batchMode) at QoS 1. Afterwards every object
in the lake is read back: readings_per_s counts readings that reached a durable object, latency is
object write time (its mtime) minus the reading's own timestamp (set when it was published), lost
are published message_ids missing from the lake, duplicated the extra copies (which the ETL drops).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
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
def generator(kits: list[tuple[str, str]], host: str, port: int, rate: float, batch: int, seconds: float, out) -> None:
    """Connect every kit's device, publish `rate` readings/s in batches for `seconds`, wait for the PUBACKs.

    Sends (connections, messages, readings, acked messages, message_ids file) on out.
    """
    import paho.mqtt.client as mqtt

    clients = []
    for name, folder in kits:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        client.tls_set(f"{folder}/ca.pem", f"{folder}/cert.pem", f"{folder}/key.pem")
        client.max_inflight_messages_set(0)
        client.connect(host, port, keepalive=120)
        clients.append((name, client))
    _pump(clients, 0.5)  # CONNACKs
    ids_path = Path(tempfile.mkstemp(prefix="bench-ids-")[1])
    messages, readings, infos = _publish(clients, rate, batch, seconds, ids_path)
    deadline = time.monotonic() + 60
    while not all(info.is_published() for info in infos) and time.monotonic() < deadline:
        _pump(clients, 0.05)
    acked = sum(info.is_published() for info in infos)
    for _, client in clients:
        client.disconnect()
    out.send((len(clients), messages, readings, acked, str(ids_path)))


def _pump(clients: list, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        for _, client in clients:
            client.loop_write()
            client.loop_read()
            client.loop_misc()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.002)


def _publish(clients: list, rate: float, batch: int, seconds: float, ids_path: Path) -> tuple[int, int, list]:
    """Publish on the clients round robin at rate readings/s; return (messages, readings, MQTTMessageInfo list)."""
    interval = batch / rate
    started = time.monotonic()
    messages = readings = 0
    infos = []
    with open(ids_path, "w") as ids:
        while time.monotonic() - started < seconds:
            due = int((time.monotonic() - started) / interval) + 1
            while messages < due:
                name, client = clients[messages % len(clients)]
                payload, message_ids = _batch(batch)
                infos.append(client.publish(f"dt/iotcast/{name}/telemetry", payload, qos=1))
                ids.write("\n".join(message_ids) + "\n")
                messages, readings = messages + 1, readings + batch
            _pump(clients, 0)
    return messages, readings, infos


def _batch(size: int) -> tuple[bytes, list[str]]:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    readings = [
        {"message_id": str(uuid.uuid4()), "timestamp": stamp, "ozone": 41.0, "particulate_matter": 12.0,
         "carbon_monoxide": 0.4, "sulfur_dioxide": 3.0, "nitrogen_dioxide": 20.0}
        for _ in range(size)
    ]  # fmt: skip
    return json.dumps(readings, separators=(",", ":")).encode(), [r["message_id"] for r in readings]


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
    started = time.time()
    reports = _generate(ctx, kits, port, args)
    publish_s = time.time() - started
    time.sleep(args.interval + 1.5)  # the last buffers reach their interval
    stop.set()
    for worker in workers:
        worker.join(30)
    return _measure(args, reports, lake_dir, started, publish_s)


def _device_credentials(authority: LocalCertificateAuthority, work: Path, count: int) -> list[tuple[str, str]]:
    kits = []
    for index in range(count):
        name = f"bench-{index:05d}"
        kits.append((name, str(authority.issue_service_credentials(name, work / "devices" / name))))
    return kits


def _generate(ctx, kits: list, port: int, args: argparse.Namespace) -> list[tuple]:
    pipes, processes = [], []
    share = max(1, args.generators)
    for index in range(share):
        receiver, sender = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=generator,
            args=(kits[index::share], "127.0.0.1", port, args.rate / share, args.batch, args.seconds, sender),
        )
        process.start()
        pipes.append(receiver)
        processes.append(process)
    reports = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join(30)
    return reports


def _measure(args: argparse.Namespace, reports: list, lake_dir: Path, started: float, publish_s: float) -> dict:
    sent: set[str] = set()
    for report in reports:
        sent.update(Path(report[4]).read_text().split())
        os.unlink(report[4])
    counts: dict[str, int] = {}
    latencies: list[float] = []
    last_durable = started
    for path in (lake_dir / "raw").rglob("iotcast-telemetry-*"):
        durable = path.stat().st_mtime
        last_durable = max(last_durable, durable)
        for line in path.open("rb"):
            record = json.loads(line)
            counts[record["message_id"]] = counts.get(record["message_id"], 0) + 1
            latencies.append(durable - datetime.fromisoformat(record["timestamp"]).timestamp())
    latencies.sort()
    found = sum(counts.values())
    return {
        "readings_per_s": round(found / max(last_durable - started, 1e-9), 1),
        "messages_per_s": round(sum(r[1] for r in reports) / publish_s, 1),
        "offered_readings_per_s": args.rate,
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
        "buffer_interval_s": args.interval,
    }


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


if __name__ == "__main__":
    main()
