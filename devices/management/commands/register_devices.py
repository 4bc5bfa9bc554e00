"""manage.py register_devices FILE.csv --out DIR: bulk registration, one kit folder per device."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.interfaces import BackendError
from devices.services import device_kit_write, devices_parse_csv, devices_register_bulk


class Command(BaseCommand):
    help = (
        "Register many devices from a CSV with a header line: name (required), device_type, latitude, "
        "longitude; any other column becomes an attribute (e.g. site). Every line is checked first: one bad "
        "line registers nothing. Writes each device's kit to DIR/<name>-kit/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", type=Path, help="the CSV file (UTF-8)")
        parser.add_argument("--out", required=True, type=Path, help="folder for the kits (created; kits must be new)")

    def handle(self, *args, csv: Path, out: Path, **options) -> None:
        rows = _rows(csv)
        out = out.resolve()
        clashes = [row.name for row in rows if (out / f"{row.name}-kit").exists()]
        if clashes:
            raise CommandError(f"{out} already holds kits for {', '.join(clashes)}; choose an empty folder")
        try:
            registered = devices_register_bulk(rows)
        except (ValidationError, BackendError) as exc:
            raise CommandError(f"registration stopped: {exc}") from exc
        for index, (device, credentials) in enumerate(registered, start=1):
            kit = device_kit_write(device, credentials, out / f"{device.name}-kit")
            self.stdout.write(f"[{index}/{len(registered)}] {device.name}: kit in {kit}")
        self.stdout.write(self.style.SUCCESS(f"registered {len(registered)} device(s); kits in {out}"))


def _rows(csv: Path) -> list:
    try:
        text = csv.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {csv}: {exc}") from exc
    try:
        return devices_parse_csv(text)
    except ValidationError as exc:
        raise CommandError("; ".join(exc.messages)) from exc
