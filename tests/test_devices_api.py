"""Device registration: the service, the REST API, the admin and the provision_device command."""

import io
import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from devices.models import Device, DeviceCertificate
from devices.selectors import device_get, device_list, device_names_active
from devices.services import device_kit_write, device_register, devices_parse_csv

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


@pytest.fixture
def identity(identity_on_test_broker):
    """The identity backend issuing from the test broker's CA (see tests/fixtures/pipeline.py)."""
    return identity_on_test_broker


@pytest.fixture
def api():
    """A REST client signed in as an admin (staff): registering and revoking are admins' work."""
    user = get_user_model().objects.create_user("admin-1", password="pw", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_operators_may_read_devices_but_not_register_or_revoke_them(identity):
    device, _ = device_register("station-ro")
    operator = APIClient()
    operator.force_authenticate(get_user_model().objects.create_user("operator", password="pw"))
    assert operator.get("/api/v1/devices/").status_code == 200
    assert operator.post("/api/v1/devices/", {"name": "station-new"}, format="json").status_code == 403
    disable = {"status": "disabled"}
    assert operator.post(f"/api/v1/devices/{device.pk}/status/", disable, format="json").status_code == 403
    certificate = device.certificates.get()
    assert operator.post(f"/api/v1/certificates/{certificate.certificate_id}/revoke/").status_code == 403
    assert device.certificates.get().status == "active"
    assert not Device.objects.filter(name="station-new").exists()
    assert Device.objects.get(pk=device.pk).status == Device.Status.ACTIVE


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


# --- rotation, revocation, disabling (on the running test broker) ----------------------------------
def _kit_from_zip(content: bytes, out: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        archive.extractall(out)
        [folder] = {name.split("/")[0] for name in archive.namelist()}
    return out / folder


def _connects(mqtt_broker, kit: Path, client_id: str) -> bool:
    client = mqtt_broker.client(kit, client_id)
    accepted = mqtt_broker.connect(client, timeout=2)
    if accepted:
        client.disconnect()
        client.loop_stop()
    return accepted


def test_api_kit_zip_issues_a_working_certificate_and_rotation_keeps_the_old_one(identity, api, mqtt_broker, tmp_path):
    device, credentials = device_register("kit-zip-1")
    first = device_kit_write(device, credentials, tmp_path / "first")
    response = api.post(f"/api/v1/devices/{device.pk}/kit/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    second = _kit_from_zip(response.content, tmp_path / "second")
    assert second.name == "kit-zip-1-kit"
    assert json.loads((second / "kit.json").read_text())["topic"] == "dt/iotcast/kit-zip-1/telemetry"
    assert device.certificates.filter(status="active").count() == 2
    assert _connects(mqtt_broker, second, "kit-zip-1") and _connects(mqtt_broker, first, "kit-zip-1")

    rotated = api.post(f"/api/v1/devices/{device.pk}/certificates/")
    assert rotated.status_code == 201 and "PRIVATE KEY" in rotated.json()["kit"]["private_key_pem"]
    assert device.certificates.count() == 3


def test_api_revocation_refuses_the_certificate_and_keeps_the_others(identity, api, mqtt_broker, tmp_path):
    device, credentials = device_register("revoke-api-1")
    old = device_kit_write(device, credentials, tmp_path / "old")
    new = _kit_from_zip(api.post(f"/api/v1/devices/{device.pk}/kit/").content, tmp_path / "new")
    response = api.post(f"/api/v1/certificates/{credentials.certificate_id}/revoke/")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert response.json()["revoked_at"]
    assert not _connects(mqtt_broker, old, "revoke-api-1")
    assert _connects(mqtt_broker, new, "revoke-api-1")
    assert api.post(f"/api/v1/certificates/{credentials.certificate_id}/revoke/").status_code == 200  # idempotent
    assert api.post("/api/v1/certificates/ffff/revoke/").status_code == 404


def test_api_disabling_a_device_drops_it_and_enabling_lets_it_back(identity, api, mqtt_broker, tmp_path):
    device, credentials = device_register("disable-api-1")
    kit = device_kit_write(device, credentials, tmp_path / "kit")
    live = mqtt_broker.client(kit, "disable-api-1")
    assert mqtt_broker.connect(live)
    dropped = threading.Event()
    live.on_disconnect = lambda *args: dropped.set()
    live.reconnect_delay_set(60, 60)
    try:
        response = api.post(f"/api/v1/devices/{device.pk}/status/", {"status": "disabled"}, format="json")
        assert response.status_code == 200 and response.json()["status"] == "disabled"
        assert dropped.wait(5), "the disabled device's live connection was not dropped"
    finally:
        live.loop_stop()
    assert not _connects(mqtt_broker, kit, "disable-api-1")
    assert device_names_active() == []
    assert (
        api.post(f"/api/v1/devices/{device.pk}/certificates/").status_code == 400
    )  # no new certificate while disabled
    assert api.post(f"/api/v1/devices/{device.pk}/status/", {"status": "active"}, format="json").status_code == 200
    assert _connects(mqtt_broker, kit, "disable-api-1")
    assert device_names_active() == ["disable-api-1"]
    assert api.post(f"/api/v1/devices/{device.pk}/status/", {"status": "gone"}, format="json").status_code == 400


# --- bulk registration ------------------------------------------------------------------------------
BULK_CSV = "name,device_type,latitude,longitude,site\nbulk-1,air-quality,56.1,10.2,harbour\nbulk-2,,,,\n"


def test_api_bulk_registration_returns_every_kit(identity, api, mqtt_broker, tmp_path):
    upload = SimpleUploadedFile("devices.csv", BULK_CSV.encode(), content_type="text/csv")
    response = api.post("/api/v1/devices/bulk/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content[:500]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"bulk-1-kit", "bulk-2-kit"}
        archive.extractall(tmp_path)
    first = Device.objects.get(name="bulk-1")
    assert (first.device_type, first.latitude, first.attributes) == ("air-quality", 56.1, {"site": "harbour"})
    assert _connects(mqtt_broker, tmp_path / "bulk-2-kit", "bulk-2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name\nok-1\nbad name\n", "line 3"),
        ("name,latitude\nok-1,north\n", "not a number"),
        ("name\nok-1\nok-1\n", "appears twice"),
        ("name\niotcast-ingest\n", "reserved"),
        ("site\nharbour\n", "'name' column"),
        ("name\n", "no devices"),
    ],
)
def test_bulk_registration_with_any_bad_line_registers_nothing(identity, text, message):
    with pytest.raises(ValidationError, match=message):
        devices_parse_csv(text)
    assert not Device.objects.exists()


def test_bulk_registration_refuses_names_already_registered(identity, api):
    device_register("bulk-1")
    upload = SimpleUploadedFile("devices.csv", BULK_CSV.encode(), content_type="text/csv")
    response = api.post("/api/v1/devices/bulk/", {"file": upload}, format="multipart")
    assert response.status_code == 400 and "already registered" in response.content.decode()
    assert list(Device.objects.values_list("name", flat=True)) == ["bulk-1"]


def test_register_devices_command_writes_one_kit_per_row(identity, tmp_path):
    csv_path = tmp_path / "devices.csv"
    csv_path.write_text(BULK_CSV)
    out = io.StringIO()
    call_command("register_devices", str(csv_path), "--out", str(tmp_path / "kits"), stdout=out)
    assert (tmp_path / "kits" / "bulk-1-kit" / "private.pem.key").exists()
    assert "registered 2 device(s)" in out.getvalue()
    with pytest.raises(CommandError, match="already registered"):
        call_command("register_devices", str(csv_path), "--out", str(tmp_path / "again"))
