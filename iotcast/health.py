"""GET /healthz: the status of every part the pipeline depends on, as JSON."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from cloud.backends import get_backend


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()


def _check_broker() -> None:
    get_backend("identity").ping()


def _check_lake() -> None:
    get_backend("lake").ping()


def _check_endpoint_server() -> None:
    get_backend("hosting").ping()


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "redis": _check_redis,
    "broker": _check_broker,
    "lake": _check_lake,
    "endpoint_server": _check_endpoint_server,
}


def health_report() -> dict:
    """Return {"status": "ok"|"degraded", "checks": {name: {"ok", "ms", "error"?}}}."""
    checks = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        entry: dict = {"ok": True}
        try:
            check()
        except Exception as exc:  # a health check reports every failure, whatever its type
            entry = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        entry["ms"] = round((time.perf_counter() - started) * 1000, 1)
        checks[name] = entry
    status = "ok" if all(entry["ok"] for entry in checks.values()) else "degraded"
    return {"status": status, "checks": checks}


def healthz(request: HttpRequest) -> JsonResponse:
    """Answer 200 when every check passes, 503 otherwise, with the report as JSON."""
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
