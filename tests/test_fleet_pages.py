"""The /fleet/ pages: the registry for operators; registration, kits, revocation and disabling for admins."""

import io
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from devices.models import Device
from devices.services import device_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def identity(identity_on_test_broker):
    """The identity backend issuing from the test broker's CA (see tests/fixtures/pipeline.py)."""
    return identity_on_test_broker


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_user("op", password="pw"))
    return client


@pytest.fixture
def admin(client):
    client.force_login(get_user_model().objects.create_user("boss", password="pw", is_staff=True))
    return client


def _zip_names(response) -> set[str]:
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    return set(zipfile.ZipFile(io.BytesIO(response.content)).namelist())


def test_operators_see_the_registry_but_cannot_change_it(identity, operator):
    device, _ = device_register("fleet-1", device_type="air-quality", attributes={"site": "harbour"})
    page = operator.get("/fleet/").content.decode()
    assert "fleet-1" in page and "air-quality" in page and "site=harbour" in page
    assert "Register a device" not in page
    detail = operator.get(f"/fleet/{device.pk}/").content.decode()
    assert device.certificates.get().fingerprint in detail and "Revoke" not in detail
    assert operator.post("/fleet/register/", {"name": "sneaky"}).status_code == 403
    assert operator.post(f"/fleet/{device.pk}/status/", {"status": "disabled"}).status_code == 403
    assert not Device.objects.filter(name="sneaky").exists()


def test_anonymous_users_are_sent_to_the_login_page(client):
    assert client.get("/fleet/").status_code == 302


def test_admins_register_download_kits_disable_and_revoke(identity, admin):
    names = _zip_names(admin.post("/fleet/register/", {"name": "fleet-2", "latitude": "56.1", "longitude": "10.2"}))
    assert "fleet-2-kit/private.pem.key" in names
    device = Device.objects.get(name="fleet-2")
    assert device.latitude == 56.1
    assert "fleet-2-kit/kit.json" in _zip_names(admin.post(f"/fleet/{device.pk}/kit/"))
    assert device.certificates.count() == 2

    old = device.certificates.order_by("created_at").first()
    response = admin.post(f"/fleet/certificates/{old.certificate_id}/revoke/", follow=True)
    assert "revoked" in response.content.decode()
    old.refresh_from_db()
    assert old.status == "revoked"

    admin.post(f"/fleet/{device.pk}/status/", {"status": "disabled"})
    device.refresh_from_db()
    assert device.status == "disabled"
    assert admin.post(f"/fleet/{device.pk}/kit/", follow=True).status_code == 200  # refused with a message
    assert device.certificates.count() == 2


def test_bad_registrations_come_back_with_a_message(identity, admin):
    response = admin.post("/fleet/register/", {"name": "bad name"}, follow=True)
    assert response.status_code == 200 and "letters, digits" in response.content.decode()
    csv = SimpleUploadedFile("d.csv", b"name,latitude\nok-1,north\n", content_type="text/csv")
    response = admin.post("/fleet/bulk/", {"file": csv}, follow=True)
    assert "not a number" in response.content.decode()
    assert not Device.objects.exists()


def test_bulk_upload_downloads_every_kit(identity, admin):
    csv = SimpleUploadedFile("d.csv", b"name,site\nfleet-a,harbour\nfleet-b,park\n", content_type="text/csv")
    names = _zip_names(admin.post("/fleet/bulk/", {"file": csv}))
    assert {name.split("/")[0] for name in names} == {"fleet-a-kit", "fleet-b-kit"}
    assert Device.objects.get(name="fleet-b").attributes == {"site": "park"}
