"""manage.py import_readings FILE --device NAME: historical telemetry into the raw zone, as live data."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.interfaces import BackendError
from devices.models import Device
from devices.selectors import device_get
from forecasts.services.imports import metric_map_parse, readings_import


class Command(BaseCommand):
    help = (
        "Import historical readings of one device from a CSV file (with a header row) or NDJSON file. Each "
        "row needs a timestamp (ISO-8601) and may carry message_id; other columns are metrics (or only the "
        "--metric-map ones). Rows go through the IoT rule and delivery stream into raw/, like live data; "
        "the next ETL run validates and curates them. Bad rows are reported with line numbers and skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the CSV or NDJSON file (.csv, .ndjson, .jsonl or .json)")
        parser.add_argument("--device", required=True, help="the registered device (thing name) the rows belong to")
        parser.add_argument(
            "--metric-map",
            nargs="*",
            default=[],
            metavar="COL=METRIC",
            help="import only these columns, renamed, e.g. o3=ozone pm25=particulate_matter",
        )
        parser.add_argument("--format", choices=["csv", "ndjson"], help="file format (default: from the extension)")

    def handle(self, *args: Any, file: str, device: str, metric_map: list[str], **options: Any) -> None:
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        kind = options["format"] or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
        try:
            mapping = metric_map_parse(metric_map)
            name = device_get(device).name
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except Device.DoesNotExist as exc:
            raise CommandError(f"no device named {device!r}; register it first") from exc
        with path.open("rb") as handle:
            try:
                result = readings_import(handle, name, kind, mapping, path.stat().st_size, self._progress)
            except BackendError as exc:
                raise CommandError(f"the lake refused a write: {exc}") from exc
        for line, reason in result.errors:
            self.stderr.write(f"line {line}: {reason}")
        if result.rejected > len(result.errors):
            self.stderr.write(f"... and {result.rejected - len(result.errors)} more rejected rows")
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {result.imported} of {result.rows} rows for {name} ({result.rejected} rejected) "
                f"in {len(result.objects)} raw objects; run `manage.py etl` to curate them"
            )
        )

    def _progress(self, percent: float, message: str) -> None:
        filled = int(percent / 5)
        self.stdout.write(f"[{'#' * filled}{'.' * (20 - filled)}] {percent:5.1f}%  {message}")
