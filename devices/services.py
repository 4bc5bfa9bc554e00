"""Device registration: create the thing, issue its certificate through the identity backend, write its kit."""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from cloud.backends import get_backend
from cloud.interfaces import DeviceCredentials, TopicRuleDeployment, TopicRuleSpec
from dataplane.ingest.delivery import DeliveryStream
from dataplane.ingest.directory import DeviceSeenRecorder
from dataplane.ingest.service import IngestService
from device_agent.kit import kit_metadata, write_kit
from devices.models import Device, DeviceCertificate, TopicRule

log = logging.getLogger("devices")


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
    device_type: str = "",
) -> tuple[Device, DeviceCredentials]:
    """Create a Device and its first certificate; return both (the credentials hold the only copy of the key).

    Raises ValidationError for a bad, reserved or duplicate name or position, BackendError when the
    identity backend cannot issue the certificate (then nothing is saved).
    """
    device = Device(
        name=name, latitude=latitude, longitude=longitude, attributes=attributes or {}, device_type=device_type
    )
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


# --- certificates: rotation, revocation; disabling a device ---------------------------------
def device_certificate_rotate(device: Device) -> tuple[DeviceCertificate, DeviceCredentials]:
    """Issue and record a new certificate for device while its others keep working; return the row and the key.

    Raises ValidationError for a disabled device, BackendError when the backend cannot issue.
    """
    if device.status != Device.Status.ACTIVE:
        raise ValidationError(f"{device.name} is disabled: enable it before issuing a certificate.")
    credentials = get_backend("identity").issue_certificate(device.name)
    return device_certificate_add(device, credentials), credentials


def device_certificate_revoke(certificate: DeviceCertificate) -> DeviceCertificate:
    """Revoke the certificate for good: the broker refuses it and drops its device's live connections.

    Returns the updated row (revoking twice is a no-op). Raises BackendError from the backend.
    """
    if certificate.status == DeviceCertificate.Status.REVOKED:
        return certificate
    get_backend("identity").set_certificate_state(certificate.device.name, certificate.certificate_id, "REVOKED")
    certificate.status, certificate.revoked_at = DeviceCertificate.Status.REVOKED, timezone.now()
    certificate.save(update_fields=["status", "revoked_at"])
    return certificate


def device_set_status(device: Device, status: str) -> Device:
    """Disable (every active certificate INACTIVE, live connections dropped) or enable the device; return it.

    The registry changes first for a disable (the ingest stops accepting its telemetry), last for
    an enable. Raises ValueError for an unknown status, BackendError from the backend.
    """
    if status not in Device.Status.values:
        raise ValueError(f"unknown device status {status!r}")
    if device.status == status:
        return device
    state = "ACTIVE" if status == Device.Status.ACTIVE else "INACTIVE"
    identity = get_backend("identity")
    for certificate in device.certificates.filter(status=DeviceCertificate.Status.ACTIVE):
        identity.set_certificate_state(device.name, certificate.certificate_id, state)
    device.status = status
    device.save(update_fields=["status"])
    return device


# --- last seen / last message, as the ingest reports them ---------------------------------------
def device_seen_update(seen: dict[str, tuple[int, dict[str, Any]]]) -> int:
    """Set last_seen_at (from received_at ms) and last_message of the named devices; return how many changed.

    One SELECT and one bulk UPDATE (per 500 devices) per call: the ingest calls it once per written object. A device
    whose stored last_seen_at is already later keeps its values (another worker flushed newer data);
    names missing from the registry are ignored.
    """
    changed = []
    for device in Device.objects.filter(name__in=seen).only("id", "name", "last_seen_at"):
        received_at_ms, record = seen[device.name]
        at = datetime.fromtimestamp(received_at_ms / 1000, UTC)
        if device.last_seen_at is None or device.last_seen_at <= at:
            device.last_seen_at, device.last_message = at, record
            changed.append(device)
    Device.objects.bulk_update(changed, ["last_seen_at", "last_message"], batch_size=500)
    return len(changed)


def ingest_track_devices(stream: DeliveryStream) -> None:
    """Make the ingest's delivery stream keep Device.last_seen_at/last_message after each durable object."""
    stream.add_durable_listener(DeviceSeenRecorder(_device_seen_update_from_ingest))


def _device_seen_update_from_ingest(seen: dict[str, tuple[int, dict[str, Any]]]) -> int:
    # The ingest's threads live outside any request: release (or replace a broken) connection as a request would.
    try:
        return device_seen_update(seen)
    finally:
        close_old_connections()


def ingest_run(
    stop: threading.Event,
    make_service: Callable[[], IngestService],
    rule_version: Callable[[], object],
    refresh_s: float = 5.0,
    say: Callable[[str], object] = log.info,
) -> IngestService:
    """Run the ingest until stop is set, restarting it whenever rule_version() changes; return the last service.

    A restart writes the buffers and acks them before the new service (same client id, same
    persistent session) reconnects, so messages in between are redelivered, not lost. The old
    service keeps running when the new one cannot be built (e.g. a WHERE that does not compile).
    """
    version = _read_version(rule_version, None)
    service = make_service()
    service.start()
    while not stop.wait(refresh_s):
        current = _read_version(rule_version, version)
        if current == version:
            continue
        try:
            replacement = make_service()
        except Exception as exc:
            say(f"topic rule changed but cannot be applied ({exc}); keeping the running ingest")
            version = current
            continue
        say("topic rule changed: writing the buffered records, then restarting the ingest with the new rule")
        service.stop(flush=True)
        service, version = replacement, current
        service.start()
    return service


def _read_version(rule_version: Callable[[], object], last: object) -> object:
    try:
        return rule_version()
    except Exception:  # the registry is down: keep running as we are
        log.exception("cannot read the topic rule; keeping the running ingest")
        return last


# --- topic rules ----------------------------------------------------------------------------------
def topic_rule_spec(rule: TopicRule) -> TopicRuleSpec:
    """Return rule as the identity backends take it."""
    return TopicRuleSpec(
        name=rule.name,
        where=rule.where,
        enabled=rule.enabled,
        buffer_size_mb=rule.buffer_size_mb,
        buffer_interval_s=rule.buffer_interval_s,
        prefix=rule.prefix,
        error_prefix=rule.error_output_prefix,
    )


def topic_rule_deploy(rule: TopicRule) -> TopicRuleDeployment:
    """Validate and save rule, then create or replace it (and its delivery stream) through the identity backend.

    Returns what the backend says about the deployment. Raises ValidationError for invalid fields
    (nothing saved), BackendError when the backend cannot deploy: the row stays saved as the
    wanted state, so deploying again (saving again) retries.
    """
    rule.full_clean()
    rule.save()
    return get_backend("identity").apply_topic_rule(topic_rule_spec(rule), get_backend("lake"))


def topic_rule_put(name: str, **fields: Any) -> tuple[TopicRule, TopicRuleDeployment]:
    """Create the rule named name or replace its fields (the others keep their values), then deploy it.

    Returns the rule and its deployment; raises as topic_rule_deploy.
    """
    rule = TopicRule.objects.filter(name=name).first() or TopicRule(name=name)
    for field, value in fields.items():
        setattr(rule, field, value)
    return rule, topic_rule_deploy(rule)


# --- bulk registration from CSV ------------------------------------------------------------
CSV_COLUMNS = ("name", "device_type", "latitude", "longitude")


@dataclass(frozen=True)
class DeviceRow:
    """One validated CSV row: the arguments of device_register."""

    name: str
    device_type: str
    latitude: float | None
    longitude: float | None
    attributes: dict[str, str]


def devices_parse_csv(text: str) -> list[DeviceRow]:
    """Return the rows of a CSV with a header: name (required), device_type, latitude, longitude; others are attributes.

    Raises ValidationError naming every bad line (a bad number, a missing, reserved or repeated
    name, a name already registered) so that nothing is registered from a file with an error.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames or "name" not in [f.strip() for f in reader.fieldnames]:
        raise ValidationError("the CSV needs a header line with a 'name' column")
    rows, problems, seen = [], [], set()
    for line, raw in enumerate(reader, start=2):
        try:
            row = _device_row(raw)
            if row.name in seen:
                raise ValidationError(f"{row.name!r} appears twice")
            seen.add(row.name)
            rows.append(row)
        except ValidationError as exc:
            problems.append(f"line {line}: {'; '.join(exc.messages)}")
    taken = set(Device.objects.filter(name__in=seen).values_list("name", flat=True))
    problems += [f"{name!r} is already registered" for name in sorted(taken)]
    if problems or not rows:
        raise ValidationError(problems or ["the CSV holds no devices"])
    return rows


def _device_row(raw: dict[str | None, Any]) -> DeviceRow:
    values = {(key or "").strip(): (value or "").strip() for key, value in raw.items() if isinstance(value, str)}
    if None in raw:
        raise ValidationError("more values than header columns")
    device = Device(name=values.get("name", ""), device_type=values.get("device_type", ""))
    device.full_clean(exclude=["latitude", "longitude", "attributes", "status"], validate_unique=False)
    latitude, longitude = _number(values, "latitude"), _number(values, "longitude")
    _validate_position(latitude, longitude)
    attributes = {k: v for k, v in values.items() if k not in CSV_COLUMNS and k and v}
    return DeviceRow(device.name, device.device_type, latitude, longitude, attributes)


def _number(values: dict[str, str], column: str) -> float | None:
    text = values.get(column, "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ValidationError(f"{column} {text!r} is not a number") from exc


def devices_register_bulk(rows: list[DeviceRow]) -> list[tuple[Device, DeviceCredentials]]:
    """Register every row (see devices_parse_csv) and return the devices with their credentials, in order.

    Raises ValidationError or BackendError from device_register; the devices registered before the
    failing row stay registered (their keys are lost with the exception, so issue them new kits).
    """
    return [
        device_register(row.name, row.latitude, row.longitude, row.attributes, device_type=row.device_type)
        for row in rows
    ]


def devices_kits_zip(registered: list[tuple[Device, DeviceCredentials]]) -> bytes:
    """Return one zip holding a <name>-kit/ folder per registered device."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for device, credentials in registered:
            with zipfile.ZipFile(io.BytesIO(device_kit_zip(device, credentials))) as single:
                for info in single.infolist():
                    archive.writestr(info, single.read(info))
    return buffer.getvalue()
