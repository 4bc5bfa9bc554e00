"""GET /healthz reports every dependency, with 200 only when all of them answer."""

import pytest
from django.test import Client


@pytest.fixture
def health_targets(settings, lake, endpoint_server, mqtt_broker, redis_url):
    """Point every health check at a live test service."""
    settings.REDIS_URL = redis_url
    settings.BROKER_HOST, settings.BROKER_PORT = mqtt_broker.host, mqtt_broker.port


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
    settings.BROKER_PORT = free_port()
    response = Client().get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["ok"] is False and "Connection" in checks["redis"]["error"]
    assert checks["broker"]["ok"] is False and "no MQTT broker" in checks["broker"]["error"]
    assert checks["lake"]["ok"] is True and checks["database"]["ok"] is True
