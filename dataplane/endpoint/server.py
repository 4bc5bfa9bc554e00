"""HTTP front of the endpoint server: SageMaker Runtime's invoke API, /ping, and the local control API.

POST /endpoints/{name}/invocations      InvokeEndpoint (boto3's sagemaker-runtime works unchanged)
GET  /ping                              health
PUT/GET/DELETE /admin/endpoints/{name}  the local hosting backend's control API
GET  /admin/endpoints/{name}/metrics    per-variant CloudWatch-like metrics (?since=epoch&period=s)
GET  /admin/endpoints/{name}/shadow     the newest shadow records, newest first (?limit=n)
GET  /admin/endpoints                   the endpoints' names

serve() pre-forks worker processes that share one listening socket (like gunicorn); each loads the
models it serves once and keeps them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from cloud.deepar.formats import InferenceRequest, RequestError, parse_request
from cloud.interfaces import Lake
from dataplane.endpoint import fastlags
from dataplane.endpoint.metrics import MetricsRecorder, read_metrics
from dataplane.endpoint.registry import (
    EndpointRegistry,
    ServingError,
    Variant,
    model_error,
    parse_variants,
    validation_error,
)
from dataplane.endpoint.shadow import MAX_ANSWER_CHARS, shadow_append, shadow_tail

logger = logging.getLogger(__name__)
_INVOKE = re.compile(r"^/endpoints/([A-Za-z0-9-]{1,63})/invocations$")
_ADMIN = re.compile(r"^/admin/endpoints/([A-Za-z0-9-]{1,63})(?:/(metrics|shadow))?$")
MAX_BODY = 6 * 1024 * 1024  # SageMaker's payload limit for real-time endpoints
MAX_PATHS = 100_000  # instances x num_samples per request: more would hold a worker for many seconds
_SEED = re.compile(r"(?:^|[;,\s])seed=(-?\d+)")


def custom_seed(custom_attributes: str | None) -> int | None:
    """Return N from X-Amzn-SageMaker-Custom-Attributes "seed=N" (among other key=value pairs), else None."""
    match = _SEED.search(custom_attributes or "")
    return int(match.group(1)) if match else None


def parse_invocation(body: bytes, custom_attributes: str | None) -> InferenceRequest:
    """Return the validated request, seeded from the custom attributes when its configuration has no seed."""
    try:
        request = parse_request(body)
    except RequestError as exc:
        raise validation_error(str(exc)) from None
    config = request.configuration
    if len(request.instances) * config.num_samples > MAX_PATHS:
        raise validation_error(f"instances x configuration.num_samples must be at most {MAX_PATHS}")
    seed = custom_seed(custom_attributes)
    if config.seed is None and seed is not None:
        request = dataclasses.replace(request, configuration=dataclasses.replace(config, seed=seed))
    return request


class Serving:
    """What one process serves: the registry, its metrics, and a thread for shadow invocations."""

    def __init__(self, lake: Lake, state_dir: Path) -> None:
        fastlags.install()
        self.registry = EndpointRegistry(lake, state_dir)
        self.metrics = MetricsRecorder(Path(state_dir) / "metrics")
        self.shadow_log = Path(state_dir) / "shadow"
        self.shadow_log.mkdir(parents=True, exist_ok=True)
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._shadow_pending = threading.BoundedSemaphore(8)

    def predict(self, endpoint: str, variant: Variant, request: InferenceRequest) -> tuple[bytes, float]:
        """Return (DeepAR's JSON answer, model milliseconds); raise ServingError(424) when the model fails."""
        import torch

        model = self.registry.forecaster(variant.artifact_key)
        started = time.perf_counter()
        try:
            # inference_mode skips autograd's version counting: the same numbers, about a millisecond sooner.
            with torch.inference_mode():
                response = model.predict(request)
        except RequestError as exc:
            raise validation_error(str(exc)) from None
        except Exception as exc:  # whatever the model raises is SageMaker's ModelError, never a dropped connection
            logger.exception("model %s of endpoint %s failed", variant.model_name, endpoint)
            raise model_error(endpoint, 500, f"{type(exc).__name__}: {exc}") from exc
        return json.dumps(response).encode(), (time.perf_counter() - started) * 1000

    def mirror(self, endpoint: str, request: InferenceRequest, production: dict[str, Any]) -> None:
        """Send the request to the endpoint's shadow variant in the background, sometimes (its share).

        production ({"variant", "model_ms", "total_ms"}: how the answer the client got was made) goes into the
        shadow record, so that both can be compared request by request.
        """
        state = self.registry.state(endpoint)
        if state.shadow is None or state.shadow_share <= 0 or not self._shadow_pending.acquire(blocking=False):
            return
        if state.shadow_share < 1 and (time.perf_counter_ns() % 10_000) / 10_000 >= state.shadow_share:
            self._shadow_pending.release()
            return
        self._shadow_pool.submit(self._run_shadow, endpoint, state.shadow, request, production)

    def _run_shadow(self, endpoint: str, variant: Variant, request: InferenceRequest, production: dict) -> None:
        started, status, answer = time.perf_counter(), 200, b""
        try:
            answer, model_ms = self.predict(endpoint, variant, request)
        except ServingError as error:
            status, answer, model_ms = error.status, error.message.encode(), 0.0
        finally:
            self._shadow_pending.release()
        total_ms = (time.perf_counter() - started) * 1000
        self.metrics.record(endpoint, variant.name, status, model_ms, total_ms - model_ms)
        record = {
            "t": time.time(), "variant": variant.name, "model": variant.model_name, "status": status,
            "model_ms": round(model_ms, 3), "total_ms": round(total_ms, 3),
            "production": production, "answer": answer[:MAX_ANSWER_CHARS].decode(errors="replace"),
        }  # fmt: skip
        shadow_append(self.shadow_log / f"{endpoint}.jsonl", record)

    def shadow_records(self, endpoint: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """Return {"name", "records"}: the endpoint's newest shadow records (?limit=n, default 20), newest first."""
        self.registry.state(endpoint)  # an unknown endpoint is a 404, as for its metrics
        try:
            limit = max(1, int(query.get("limit", ["20"])[0]))
        except ValueError:
            raise validation_error("limit must be an integer") from None
        return {"name": endpoint, "records": shadow_tail(self.shadow_log / f"{endpoint}.jsonl", limit)}

    def endpoint_metrics(self, endpoint: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """Return the endpoint's per-variant metrics for ?since=epoch seconds&period=seconds."""
        self.registry.state(endpoint)
        try:
            since = int(float(query.get("since", [time.time() - 900])[0]))
            period = max(1, int(query.get("period", ["10"])[0]))
        except ValueError:
            raise validation_error("since and period must be numbers") from None
        return read_metrics(self.metrics.folder, endpoint, since, period, self.metrics.pending())


class EndpointHandler(BaseHTTPRequestHandler):
    server_version = "IoTCastEndpointServer/2.0"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, delayed ACKs add ~40 ms to every answer.
    disable_nagle_algorithm = True
    serving: Serving  # set on the subclass make_handler builds

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, payload: Any) -> None:
        self._send(200, json.dumps(payload).encode())

    def _send_error(self, error: ServingError, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(error.body()).encode()
        self._send(error.status, body, {"x-amzn-ErrorType": error.error_type, **(headers or {})})

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise validation_error("Content-Length is not a number") from None
        if length > MAX_BODY:
            self.close_connection = True  # the unread body would otherwise be taken for the next request
            raise validation_error(f"the request body is larger than {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise validation_error("the body is not JSON") from None

    def _route_admin(self, method: str) -> tuple[str, str | None]:
        """Return (endpoint name, sub-resource: "metrics", "shadow" or None); raise ServingError(404) otherwise."""
        match = _ADMIN.match(urlparse(self.path).path)
        if match is None:
            raise ServingError(404, "UnknownOperationException", f"no route for {method} {self.path}")
        return match.group(1), match.group(2)

    def do_GET(self) -> None:
        registry = self.serving.registry
        try:
            if self.path == "/ping":
                return self._send(200, b"{}")
            if self.path == "/admin/endpoints":
                return self._send_json({"endpoints": registry.names()})
            name, resource = self._route_admin("GET")
            query = parse_qs(urlparse(self.path).query)
            if resource == "metrics":
                return self._send_json(self.serving.endpoint_metrics(name, query))
            if resource == "shadow":
                return self._send_json(self.serving.shadow_records(name, query))
            self._send_json({"name": name, "variants": [asdict(v) for v in registry.variants(name)]})
        except ServingError as error:
            self._send_error(error)

    def do_PUT(self) -> None:
        try:
            name, resource = self._route_admin("PUT")
            if resource:
                raise ServingError(405, "UnknownOperationException", f"{resource} is read-only")
            variants = parse_variants(self._json_body())
            self.serving.registry.apply(name, variants)
            self._send_json({"name": name, "variants": [asdict(v) for v in variants]})
        except ServingError as error:
            self._send_error(error)

    def do_DELETE(self) -> None:
        try:
            name, resource = self._route_admin("DELETE")
            if resource:
                raise ServingError(405, "UnknownOperationException", f"{resource} cannot be deleted on its own")
            self.serving.registry.delete(name)
            self._send_json({"name": name, "deleted": True})
        except ServingError as error:
            self._send_error(error)

    def do_POST(self) -> None:
        started = time.perf_counter()
        match = _INVOKE.match(self.path)
        headers: dict[str, str] = {}
        variant, model_ms, status = None, 0.0, 200
        try:
            if match is None:
                raise ServingError(404, "UnknownOperationException", f"no route for POST {self.path}")
            body = self._body()
            variant = self.serving.registry.choose(match.group(1), self.headers.get("X-Amzn-SageMaker-Target-Variant"))
            # Every answer from a variant names it, errors included, as SageMaker does.
            headers["x-Amzn-Invoked-Production-Variant"] = variant.name
            custom = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
            request = parse_invocation(body, custom)
            answer, model_ms = self.serving.predict(match.group(1), variant, request)
            if custom:
                headers["X-Amzn-SageMaker-Custom-Attributes"] = custom
            self._send(200, answer, headers)
            production = {"variant": variant.name, "model_ms": round(model_ms, 3),
                          "total_ms": round((time.perf_counter() - started) * 1000, 3)}  # fmt: skip
            self.serving.mirror(match.group(1), request, production)
        except ServingError as error:
            status = error.status
            self._send_error(error, headers)
        finally:
            if variant is not None:
                total_ms = (time.perf_counter() - started) * 1000
                self.serving.metrics.record(match.group(1), variant.name, status, model_ms, total_ms - model_ms)


def make_handler(serving: Serving) -> type[EndpointHandler]:
    """Return the handler class bound to what this process serves."""
    return type("BoundEndpointHandler", (EndpointHandler,), {"serving": serving})


class EndpointServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    serving: Serving

    def server_close(self) -> None:
        super().server_close()
        self.serving.metrics.stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a request that failed outside the handler; a client that went away is not worth a traceback."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.exception("request from %s failed", client_address)


def make_server(lake: Lake, state_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> EndpointServer:
    """Return a bound, not yet serving, single-process endpoint server (call serve_forever on it)."""
    serving = Serving(lake, state_dir)
    server = EndpointServer((host, port), make_handler(serving))
    server.serving = serving
    serving.metrics.start()
    return server


def _worker(sock: socket.socket, lake: Lake, state_dir: Path) -> None:
    """Serve on the inherited listening socket until SIGTERM (runs in a forked child)."""
    import torch

    # One intra-op thread per worker: the workers already use every core, more threads only contend.
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    serving = Serving(lake, state_dir)
    server = EndpointServer(sock.getsockname()[:2], make_handler(serving), bind_and_activate=False)
    server.socket.close()
    server.socket, server.serving = sock, serving
    serving.metrics.start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        serving.metrics.stop()


def _spawn(sock: socket.socket, lake: Lake, state_dir: Path) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _worker(sock, lake, state_dir)
        except BaseException:
            logger.exception("endpoint worker %s failed", os.getpid())
            code = 1
        os._exit(code)
    return pid


def serve(lake: Lake, state_dir: Path, host: str, port: int, workers: int = 2, ready: Any = None) -> None:
    """Serve with `workers` pre-forked processes on host:port until SIGINT/SIGTERM; restart a worker that dies.

    ready, when given, is called with the bound (host, port) once the workers are started.
    """
    sock = socket.create_server((host, port), backlog=512, reuse_port=False)
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    children = {_spawn(sock, lake, state_dir) for _ in range(max(1, workers))}
    stopping = threading.Event()

    def stop(*_: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    if ready is not None:
        ready(sock.getsockname()[:2])
    try:
        while not stopping.is_set():
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid in children:
                logger.error("endpoint worker %s exited; starting another", pid)
                children.discard(pid)
                children.add(_spawn(sock, lake, state_dir))
            stopping.wait(0.2)
    finally:
        _stop_children(children)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_children(children: set[int]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    for pid in children:
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
