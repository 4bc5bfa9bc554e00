"""Benchmark: DeepAR forecasts through the REST proxy (gunicorn + Django) to a two-variant endpoint.

Trains a model with the production hyperparameters (2 layers x 40 cells, 2 epochs on generated data), starts
the endpoint server (2 worker processes) and the Django app under gunicorn (1 process x 8 threads), deploys
the model to two variants weighted 70/30 and drives POST /api/v1/endpoints/bench/invocations with
concurrent keep-alive clients.
Phases: one series with 100 samples (rps, p50, p99), the same steady load kept on until at least 10,000
requests were routed (for the split), ten series per request (p50), a weight change under load, and a canary
deployment (10% then the rest) under load. The split is the observed share of each variant against its
configured weight over every steady-phase request (weights unchanged). The clients are threads each holding
one http.client keep-alive connection, so the load generator costs little of the CPU it shares with the servers.
Prints one JSON object.

    .venv/bin/python bench/serve.py [--quick] [--seconds 30] [--clients 6] [--split-requests 10000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
HYPERPARAMETERS = {
    "time_freq": "H", "context_length": "24", "prediction_length": "12", "epochs": "2", "num_cells": "40",
    "num_layers": "2", "likelihood": "student-T", "mini_batch_size": "32", "learning_rate": "0.001",
}  # fmt: skip
WEIGHTS = {"Blue": 0.7, "Green": 0.3}
SEARCH_PATH = "/api/v1/endpoints/bench/invocations"


def environment(tmp: Path, endpoint_port: int) -> dict[str, str]:
    """Return the environment every process of the run shares (its own state dir, DB, lake)."""
    return {
        **os.environ,
        "IOTCAST_STATE_DIR": str(tmp / "state"),
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "IOTCAST_LAKE_URL": f"file://{tmp / 'lake'}",
        "IOTCAST_ENDPOINT_SERVER_URL": f"http://127.0.0.1:{endpoint_port}",
        "IOTCAST_LOG_LEVEL": "WARNING",
        "IOTCAST_API_THROTTLE_RATE": "1000000/min",
        "DJANGO_SETTINGS_MODULE": "iotcast.settings",
    }


def train_model(lake) -> tuple[str, list[str], list[dict]]:
    """Train the bench model into the lake; return (artifact key, devices, instances to send)."""
    from bench.train import generated_frame
    from cloud.deepar.channels import build_channels
    from cloud.interfaces import TrainingSpec
    from cloud.local.training import GluonTSDeepAR

    channels = build_channels(generated_frame(10, 400), "h", 24, 12)
    lake.put_bytes("datasets/bench/train/data.json", channels.data("train"))
    lake.put_bytes("datasets/bench/test/data.json", channels.data("test"))
    spec = TrainingSpec(
        "bench-serve", "datasets/bench/train/data.json", "datasets/bench/test/data.json", HYPERPARAMETERS, "models"
    )
    work = Path(lake.root).parent / "work"
    result = GluonTSDeepAR(str(work)).train(lake, spec)
    instances = []
    for index, line in enumerate(channels.train):
        record = json.loads(line)
        instances.append({"start": record["start"], "target": record["target"][-200:], "cat": [index]})
    return result.artifact_key, channels.devices, instances


class Load:
    """Concurrent keep-alive clients posting one body; records latency, status and variant of each answer."""

    def __init__(self, port: int, token: str, body: bytes, clients: int) -> None:
        self.port, self.token, self.body, self.clients = port, token, body, clients
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.variants: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _client(self) -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Token {self.token}"}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                connection.request("POST", SEARCH_PATH, self.body, headers)
                response = connection.getresponse()
                response.read()
                status, variant = response.status, response.getheader("X-Amzn-Invoked-Production-Variant", "")
            except (OSError, http.client.HTTPException) as exc:
                status, variant = type(exc).__name__, ""
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            elapsed = (time.perf_counter() - started) * 1000
            with self._lock:
                if status == 200:
                    self.latencies.append(elapsed)
                    self.variants[variant] += 1
                else:
                    self.failures[str(status)] += 1
        connection.close()

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def reset(self) -> None:
        with self._lock:
            self.latencies, self.failures, self.variants = [], Counter(), Counter()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else float("nan")


def split_deviation_pp(variants: Counter[str], weights: dict[str, float]) -> float:
    total, weight_sum = sum(variants.values()), sum(weights.values())
    return round(max(abs(100 * variants[n] / total - 100 * w / weight_sum) for n, w in weights.items()), 3)


def start_processes(
    tmp: Path, env: dict[str, str], endpoint_port: int, web_port: int, args: argparse.Namespace
) -> list[subprocess.Popen]:
    from dataplane.ports import wait_for_port

    log = open(tmp / "servers.log", "w")  # lives as long as the processes
    endpoint = subprocess.Popen(
        [PYTHON, "manage.py", "run_endpoint_server", "--port", str(endpoint_port), "--workers",
         str(args.endpoint_workers)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    web = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "iotcast.wsgi", "-b", f"127.0.0.1:{web_port}", "-w", str(args.web_workers),
         "-k", "gthread", "--threads", str(args.web_threads), "--keep-alive", "30", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for_port(endpoint_port, timeout=60)
    wait_for_port(web_port, timeout=60)
    return [endpoint, web]


def setup_django(tmp: Path, env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def deploy_two_variants(artifact_key: str, devices: list[str]) -> str:
    """Create the model rows and the 70/30 endpoint; return an admin's API token."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from deployments.services import deploy_execute
    from forecasts.models import TrainedModel

    for name in ("bench-blue", "bench-green"):
        TrainedModel.objects.create(
            name=name, metric="ozone", devices=devices, hyperparameters=HYPERPARAMETERS, artifact_key=artifact_key
        )
    deploy_execute({"model": "bench-blue", "endpoint": "bench", "variant": "Blue", "weight": WEIGHTS["Blue"]})
    deploy_execute({"model": "bench-green", "endpoint": "bench", "variant": "Green", "weight": WEIGHTS["Green"]})
    admin = get_user_model().objects.create_user("bench-admin", is_staff=True)
    return Token.objects.create(user=admin).key


def phase(load: Load, seconds: float) -> dict[str, object]:
    load.reset()
    time.sleep(seconds)
    latencies = list(load.latencies)
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "failed": sum(load.failures.values()),
        "variants": dict(load.variants),
    }


def weight_change_under_load(load: Load, seconds: float) -> int:
    """Flip the weights back and forth under load; return the failed requests during the changes."""
    from cloud.backends import get_backend
    from cloud.interfaces import VariantSpec
    from deployments.models import Endpoint

    endpoint = Endpoint.objects.get(name="bench")
    variants = [VariantSpec(v.name, v.model.name, v.model.artifact_key, v.weight) for v in endpoint.variants.all()]
    load.reset()
    deadline = time.monotonic() + seconds
    flips = 0
    while time.monotonic() < deadline:
        weights = [0.5, 0.5] if flips % 2 == 0 else [WEIGHTS[v.name] for v in variants]
        get_backend("hosting").update_weights(
            "bench",
            [VariantSpec(v.name, v.model_name, v.artifact_key, w) for v, w in zip(variants, weights, strict=True)],
        )
        flips += 1
        time.sleep(0.5)
    get_backend("hosting").update_weights("bench", variants)
    return sum(load.failures.values())


def canary_under_load(load: Load, baking_s: float) -> tuple[int, str]:
    """Roll bench-green out to Blue as a canary (10%, bake, then the rest) under load; return (failed, outcome)."""
    from deployments.models import EndpointOperation
    from deployments.operations import operation_create, operation_execute

    load.reset()
    params = {"model": "bench-green", "variant": "Blue", "policy": f"canary:10:{baking_s:g}"}
    operation = operation_execute(operation_create(EndpointOperation.Kind.DEPLOY, "bench", params).pk)
    return sum(load.failures.values()), operation.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s phases instead of 30 s")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of the main phase (default 30)")
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients (default 6)")
    parser.add_argument(
        "--split-requests", type=int, default=None, help="steady requests the split is counted over (10000; quick 2000)"
    )
    parser.add_argument("--endpoint-workers", type=int, default=2, help="endpoint server processes (default 2)")
    # One gunicorn process with threads: on 2 cores a second one only added context switches and its own
    # copy of the app (the proxy's CPU per request went from about 3.4 to 3.0 ms).
    parser.add_argument("--web-workers", type=int, default=1, help="gunicorn worker processes (default 1)")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    args = parser.parse_args()
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    args.split_requests = args.split_requests or (2_000 if args.quick else 10_000)
    from dataplane.ports import free_port

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        endpoint_port, web_port = free_port(), free_port()
        env = environment(tmp, endpoint_port)
        setup_django(tmp, env)
        from cloud.backends import get_backend

        artifact_key, devices, instances = train_model(get_backend("lake"))
        processes = start_processes(tmp, env, endpoint_port, web_port, args)
        try:
            token = deploy_two_variants(artifact_key, devices)
            pids = {"endpoint_server": processes[0].pid, "proxy": processes[1].pid}
            result = run_phases(web_port, token, instances, seconds, args.clients, args.split_requests, pids)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    print(json.dumps(result))


def body(instances: list[dict], count: int) -> bytes:
    config = {"num_samples": 100, "output_types": ["mean", "quantiles"], "quantiles": ["0.1", "0.5", "0.9"]}
    return json.dumps({"instances": instances[:count], "configuration": config}).encode()


def sequential_ms(port: int, path: str, payload: bytes, headers: dict[str, str], count: int = 40) -> float:
    """Return the median latency of count requests sent one after another (no queueing)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("POST", path, payload, {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        latencies.append((time.perf_counter() - started) * 1000)
    connection.close()
    return percentile(latencies[5:], 0.5)


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """Return the CPU seconds (user + system) used so far by each named process tree (this process: "client")."""
    import psutil

    used = {"client": sum(os.times()[:2])}
    for role, pid in processes.items():
        root = psutil.Process(pid)
        used[role] = sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])
    return used


def split_phase(load: Load, requests: int, cap_s: float) -> tuple[Counter[str], int]:
    """Keep the steady load on until `requests` more answers were routed (or cap_s passed).

    Returns (the variants that answered, the failed requests)."""
    load.reset()
    deadline = time.monotonic() + cap_s
    while requests > 0 and sum(load.variants.values()) < requests and time.monotonic() < deadline:
        time.sleep(0.2)
    with load._lock:
        return Counter(load.variants), sum(load.failures.values())


def run_phases(
    port: int,
    token: str,
    instances: list[dict],
    seconds: float,
    clients: int,
    split_requests: int = 10_000,
    pids: dict[str, int] | None = None,
) -> dict[str, object]:
    from django.conf import settings

    endpoint_port = int(settings.ENDPOINT_SERVER_URL.rsplit(":", 1)[1])
    direct = sequential_ms(endpoint_port, "/endpoints/bench/invocations", body(instances, 1), {})
    proxied = sequential_ms(port, SEARCH_PATH, body(instances, 1), {"Authorization": f"Token {token}"})
    routed: Counter[str] = Counter()
    with Load(port, token, body(instances, 1), clients) as load:
        phase(load, 3)  # warm-up: connections, model caches
        cpu_before = cpu_seconds(pids or {})
        one = phase(load, seconds)
        cpu_after = cpu_seconds(pids or {})
        routed.update(one["variants"])
        split_variants, failed_split = split_phase(load, split_requests - one["requests"], max(10.0, 4 * seconds))
        routed.update(split_variants)
        failed_weights = weight_change_under_load(load, max(4.0, seconds / 4))
        failed_canary, canary_outcome = canary_under_load(load, max(2.0, seconds / 10))
    with Load(port, token, body(instances, 10), clients) as load:
        phase(load, 2)
        ten = phase(load, max(5.0, seconds / 3))
        routed.update(ten["variants"])
    return {
        "rps": one["rps"],
        "p50_ms": one["p50_ms"],
        "p99_ms": one["p99_ms"],
        "p50_ms_10_series": ten["p50_ms"],
        "rps_10_series": ten["rps"],
        "split_max_deviation_pp": split_deviation_pp(routed, WEIGHTS),
        "split_requests": sum(routed.values()),
        "failed_during_weight_change": failed_weights,
        "failed_during_canary": failed_canary,
        "canary_outcome": canary_outcome,
        "failed_steady": one["failed"] + failed_split + ten["failed"],
        # Where the 2 cores went during the main phase: CPU milliseconds per answered request, per process tree.
        "cpu_ms_per_request": {
            role: round(1000 * (cpu_after[role] - cpu_before[role]) / max(1, one["requests"]), 2) for role in cpu_after
        },
        "p50_ms_one_client_direct": direct,
        "p50_ms_one_client_proxy": proxied,
        "seconds": seconds,
        "clients": clients,
        "sagemaker_documented_ms_per_series": "300-1000",
        "median_ms_vs_sagemaker_300ms": round(300 / one["p50_ms"], 1) if one["p50_ms"] else None,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


if __name__ == "__main__":
    main()
