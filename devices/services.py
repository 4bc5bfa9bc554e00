"""Device registration: create the thing, issue its certificate through the identity backend, write its kit."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from cloud.backends import get_backend
from cloud.interfaces import DeviceCredentials
from device_agent.kit import kit_metadata, write_kit
from devices.models import Device, DeviceCertificate


def _validate_position(latitude: float | None, longitude: float | None) -> None:
    errors = {}
    if latitude is not None and not -90.0 <= latitude <= 90.0:
        errors["latitude"] = "Latitude must be between -90 and 90."
    if longitude is not None and not -180.0 <= longitude <= 180.0:
        errors["longitude"] = "Longitude must be between -180 and 180."
    if errors:
        raise ValidationError(errors)


def device_register(
    name: str,
    latitude: float | None = None,
    longitude: float | None = None,
    attributes: dict[str, Any] | None = None,
) -> tuple[Device, DeviceCredentials]:
    """Create a Device and its first certificate; return both (the credentials hold the only copy of the key).

    Raises ValidationError for a bad or duplicate name or position, BackendError when the identity
    backend cannot issue the certificate (then nothing is saved).
    """
    device = Device(name=name, latitude=latitude, longitude=longitude, attributes=attributes or {})
    _validate_position(latitude, longitude)
    device.full_clean()
    # Issued before saving: if issuing fails nothing is stored; if saving fails we raise before the key leaks.
    credentials = get_backend("identity").register_thing(name)
    try:
        with transaction.atomic():
            device.save()
            device_certificate_add(device, credentials)
    except IntegrityError as exc:  # a concurrent registration won the race for the name
        raise ValidationError({"name": f"A device named {name!r} already exists."}) from exc
    return device, credentials


def device_certificate_add(device: Device, credentials: DeviceCredentials) -> DeviceCertificate:
    """Record an issued certificate (never its key) for device and return the row."""
    return DeviceCertificate.objects.create(
        device=device,
        certificate_id=credentials.certificate_id,
        fingerprint=credentials.fingerprint,
        certificate_pem=credentials.certificate_pem,
        not_after=credentials.not_after,
    )


def device_kit_data(
    device: Device, credentials: DeviceCredentials, kit_dir: str | Path | None = None
) -> dict[str, Any]:
    """Return the kit as data: PEM texts plus host, port, topic, client_id and the agent command.

    kit_dir is where the command expects the kit (default ./<name>-kit).
    """
    endpoint = get_backend("identity").broker_endpoint()
    meta = kit_metadata(
        device.name, endpoint.host, endpoint.port, kit_dir or f"./{device.name}-kit", device.latitude, device.longitude
    )
    return {
        "certificate_pem": credentials.certificate_pem,
        "private_key_pem": credentials.private_key_pem,
        "ca_pem": credentials.ca_pem,
        **meta,
    }


def device_kit_write(
    device: Device, credentials: DeviceCredentials, out_dir: Path, command_dir: str | Path | None = None
) -> Path:
    """Write the device's kit folder (see device_agent.kit) into out_dir and return it.

    command_dir is the folder the kit's start command names (default out_dir).
    Raises device_agent.kit.KitError when out_dir already holds a kit.
    """
    endpoint = get_backend("identity").broker_endpoint()
    return write_kit(
        Path(out_dir),
        thing_name=device.name,
        host=endpoint.host,
        port=endpoint.port,
        certificate_pem=credentials.certificate_pem,
        private_key_pem=credentials.private_key_pem,
        ca_pem=credentials.ca_pem,
        latitude=device.latitude,
        longitude=device.longitude,
        command_dir=command_dir,
    )


def device_kit_zip(device: Device, credentials: DeviceCredentials) -> bytes:
    """Return the kit as a zip holding one folder <name>-kit/ (for a browser download)."""
    folder = f"{device.name}-kit"
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        kit_dir = device_kit_write(device, credentials, Path(tmp) / folder, command_dir=f"./{folder}")
        for path in sorted(kit_dir.iterdir()):
            archive.write(path, f"{folder}/{path.name}")
    return buffer.getvalue()
