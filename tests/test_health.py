"""GET /healthz reports every dependency, with 200 only when all of them answer."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client


@pytest.fixture
def health_targets(settings, lake, endpoint_server, identity_on_test_broker, redis_url):
    """Point every health check at a live test service."""
    settings.REDIS_URL = redis_url


@pytest.mark.django_db
def test_healthz_is_ok_when_every_part_answers(health_targets):
    response = Client().get("/healthz")
    assert response.status_code == 200, response.json()
    report = response.json()
    assert report["status"] == "ok"
    assert set(report["checks"]) == {"database", "redis", "broker", "lake", "endpoint_server"}
    assert all(check["ok"] for check in report["checks"].values())


@pytest.mark.django_db
def test_healthz_names_what_is_down(health_targets, settings):
    from dataplane.ports import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    backends = dict(settings.CLOUD_BACKENDS)
    backends["identity"] = {
        **backends["identity"],
        "OPTIONS": {**backends["identity"]["OPTIONS"], "broker_port": free_port()},
    }
    settings.CLOUD_BACKENDS = backends
    response = Client().get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["ok"] is False and "Connection" in checks["redis"]["error"]
    assert checks["broker"]["ok"] is False and "no MQTT broker" in checks["broker"]["error"]
    assert checks["lake"]["ok"] is True and checks["database"]["ok"] is True


@pytest.mark.django_db
def test_the_broker_check_needs_a_broker_that_trusts_our_ca_not_just_an_open_port(health_targets, settings):
    """Another program listening on the broker's port (here a plain HTTP server) is reported, not taken for it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backends = dict(settings.CLOUD_BACKENDS)
        options = {**backends["identity"]["OPTIONS"], "broker_port": server.server_address[1]}
        backends["identity"] = {**backends["identity"], "OPTIONS": options}
        settings.CLOUD_BACKENDS = backends
        checks = Client().get("/healthz").json()["checks"]
    finally:
        server.shutdown()
    assert checks["broker"]["ok"] is False and "no MQTT broker" in checks["broker"]["error"], checks["broker"]
