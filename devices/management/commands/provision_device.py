"""manage.py provision_device NAME --out DIR [--lat LAT --lon LON]: register a device and write its kit."""

import os
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.interfaces import BackendError, DeviceCredentials
from device_agent.kit import KIT_FILES, agent_command
from devices.models import Device
from devices.services import device_kit_write, device_register


class Command(BaseCommand):
    help = (
        "Register a device (thing), issue its X.509 certificate and write its kit folder "
        "(certificate, private key, CA, kit.json, README.txt); prints the command that starts the agent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="thing name: 1-128 letters, digits, '-' or '_' (becomes its MQTT topic level)")
        parser.add_argument(
            "--out", required=True, type=Path, help="folder to write the kit into (created; must not hold a kit)"
        )
        parser.add_argument("--lat", type=float, default=None, help="latitude in degrees (-90..90), optional")
        parser.add_argument("--lon", type=float, default=None, help="longitude in degrees (-180..180), optional")

    def handle(self, *args, name: str, out: Path, lat: float | None, lon: float | None, **options) -> None:
        out = out.resolve()
        # Prepared before registering: the private key exists only until it is written there.
        created = _prepare_folder(out)
        try:
            device, credentials = _register(name, lat, lon)
        except CommandError:
            if created:
                out.rmdir()
            raise
        kit_dir = device_kit_write(device, credentials, out)
        self.stdout.write(f"registered {device.name} (id {device.pk}), certificate {credentials.certificate_id}")
        self.stdout.write(f"kit written to {kit_dir}")
        self.stdout.write(self.style.SUCCESS(f"start the device with:\n  {agent_command(kit_dir)}"))


def _register(name: str, lat: float | None, lon: float | None) -> tuple[Device, DeviceCredentials]:
    try:
        return device_register(name, latitude=lat, longitude=lon)
    except ValidationError as exc:
        problems = (f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
        raise CommandError("; ".join(problems)) from exc
    except BackendError as exc:
        raise CommandError(f"could not issue a certificate: {exc}") from exc


def _prepare_folder(out: Path) -> bool:
    """Make sure out is a writable folder without a kit; return whether it was created."""
    if any((out / name).exists() for name in KIT_FILES):
        raise CommandError(f"{out} already holds a device kit; choose an empty folder")
    existed = out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create {out}: {exc.strerror}") from exc
    if not out.is_dir() or not os.access(out, os.W_OK):
        raise CommandError(f"cannot write to {out}")
    return not existed
