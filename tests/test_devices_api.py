"""Device registration: the service, the REST API, the admin and the provision_device command."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from cloud.backends import get_backend
from devices.models import Device, DeviceCertificate
from devices.selectors import device_get, device_list
from devices.services import device_register

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


@pytest.fixture
def identity(settings, mqtt_broker):
    """Install the test broker's CA as the identity backend, so issued kits connect to that broker."""
    backends = dict(settings.CLOUD_BACKENDS)
    backends["identity"] = {
        "BACKEND": "cloud.local.identity.LocalCertificateAuthority",
        "OPTIONS": {
            "ca_dir": str(mqtt_broker.authority.ca_dir),
            "broker_host": mqtt_broker.host,
            "broker_port": mqtt_broker.port,
        },
    }
    settings.CLOUD_BACKENDS = backends
    get_backend.cache_clear()
    yield get_backend("identity")
    get_backend.cache_clear()


@pytest.fixture
def api():
    user = get_user_model().objects.create_user("operator", password="pw")
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- service and selectors ----------------------------------------------------------
def test_device_register_creates_the_device_and_its_certificate(identity):
    device, credentials = device_register("station-1", latitude=56.2, longitude=10.25, attributes={"site": "harbour"})
    certificate = device.certificates.get()
    assert certificate.certificate_id == credentials.certificate_id
    assert certificate.fingerprint == credentials.fingerprint
    assert certificate.certificate_pem == credentials.certificate_pem
    assert (device.latitude, device.longitude, device.attributes) == (56.2, 10.25, {"site": "harbour"})
    assert device_get("station-1") == device == device_get(device.pk) == device_get(str(device.pk))
    assert list(device_list()) == [device]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "bad/name"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "ok", "latitude": 91.0}, "latitude"),
        ({"name": "ok", "longitude": -181.0}, "longitude"),
    ],
)
def test_device_register_rejects_bad_input_and_saves_nothing(identity, kwargs, field):
    with pytest.raises(ValidationError) as caught:
        device_register(**kwargs)
    assert field in caught.value.message_dict
    assert not Device.objects.exists() and not DeviceCertificate.objects.exists()


def test_device_register_rejects_a_duplicate_name(identity):
    device_register("twin")
    with pytest.raises(ValidationError, match="already exists"):
        device_register("twin")
    assert DeviceCertificate.objects.count() == 1


def test_device_get_raises_for_an_unknown_device():
    with pytest.raises(Device.DoesNotExist):
        device_get("nobody")


# --- REST -----------------------------------------------------------------------------------
def test_api_requires_authentication(identity):
    client = APIClient()
    assert client.post("/api/v1/devices/", {"name": "x"}, format="json").status_code == 401
    assert client.get("/api/v1/devices/").status_code == 401
    assert not Device.objects.exists()


def test_api_creates_a_device_and_returns_its_kit_once(identity, api, mqtt_broker):
    response = api.post("/api/v1/devices/", {"name": "api-1", "latitude": 56.1, "longitude": 10.2}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    kit = body["kit"]
    assert (body["name"], body["telemetry_topic"]) == ("api-1", "dt/iotcast/api-1/telemetry")
    assert (kit["host"], kit["port"], kit["topic"], kit["client_id"]) == (
        mqtt_broker.host,
        mqtt_broker.port,
        "dt/iotcast/api-1/telemetry",
        "api-1",
    )
    assert kit["command"].startswith("python -m device_agent --kit ")
    cert = x509.load_pem_x509_certificate(kit["certificate_pem"].encode())
    key = serialization.load_pem_private_key(kit["private_key_pem"].encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(kit["ca_pem"].encode()))
    assert body["certificates"][0]["fingerprint"] == cert.fingerprint(cert.signature_hash_algorithm).hex()

    detail = api.get(f"/api/v1/devices/{body['id']}/")
    listing = api.get("/api/v1/devices/")
    assert detail.status_code == 200 and detail.json()["name"] == "api-1"
    assert [d["name"] for d in listing.json()] == ["api-1"]
    assert "PRIVATE KEY" not in detail.content.decode() + listing.content.decode()


def test_api_rejects_bad_and_duplicate_devices(identity, api):
    assert api.post("/api/v1/devices/", {"name": "a b"}, format="json").status_code == 400
    assert api.post("/api/v1/devices/", {"name": "dup"}, format="json").status_code == 201
    response = api.post("/api/v1/devices/", {"name": "dup"}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    assert api.get("/api/v1/devices/999999/").status_code == 404


# --- provision_device ----------------------------------------------------------------------------
def test_provision_device_writes_a_kit_that_connects_and_publishes(identity, mqtt_broker, tmp_path):
    out = io.StringIO()
    call_command("provision_device", "provisioned-1", "--out", str(tmp_path / "kit"), "--lat", "56.2", stdout=out)
    assert f"python -m device_agent --kit {tmp_path / 'kit'}" in out.getvalue()
    assert Device.objects.get(name="provisioned-1").latitude == 56.2
    assert json.loads((tmp_path / "kit" / "kit.json").read_text())["latitude"] == 56.2

    subscriber = mqtt_broker.subscriber(client_id="ingest-provisioned")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "device_agent", "--kit", str(tmp_path / "kit"), "--count", "1", "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        [(topic, payload)] = subscriber.wait_for(1)
    finally:
        subscriber.stop()
    assert topic == "dt/iotcast/provisioned-1/telemetry"
    assert json.loads(payload)["latitude"] == 56.2


def test_provision_device_fails_in_one_line_and_loses_nothing(identity, tmp_path):
    call_command("provision_device", "first", "--out", str(tmp_path / "kit"), stdout=io.StringIO())
    with pytest.raises(CommandError, match="already holds a device kit"):
        call_command("provision_device", "second", "--out", str(tmp_path / "kit"))
    with pytest.raises(CommandError, match="name: "):
        call_command("provision_device", "first", "--out", str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()
    assert list(Device.objects.values_list("name", flat=True)) == ["first"]


# --- admin ------------------------------------------------------------------------------------------
def test_admin_registration_issues_a_certificate_and_offers_the_kit_once(identity, client):
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    response = client.post(
        "/admin/devices/device/add/",
        {
            "name": "admin-1",
            "status": "active",
            "latitude": "",
            "longitude": "",
            "attributes": "{}",
            "certificates-TOTAL_FORMS": "0",
            "certificates-INITIAL_FORMS": "0",
            "certificates-MIN_NUM_FORMS": "0",
            "certificates-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    device = Device.objects.get(name="admin-1")
    assert device.certificates.count() == 1
    kit = client.get(f"/admin/devices/device/{device.pk}/kit/")
    assert kit.status_code == 200 and kit["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(kit.content)).namelist()
    assert "admin-1-kit/private.pem.key" in names and "admin-1-kit/kit.json" in names
    assert client.get(f"/admin/devices/device/{device.pk}/kit/").status_code == 302  # the key is gone now
