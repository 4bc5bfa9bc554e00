"""manage.py backfill --days 30: simulated history for registered devices, through the live ingest path."""

from datetime import UTC, datetime, timedelta

import pandas as pd
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.backends import get_backend
from cloud.interfaces import BackendError
from dataplane.ingest.backfill import BackfillDevice, backfill_instants, history_backfill
from devices.selectors import device_list


class Command(BaseCommand):
    help = (
        "Generate simulated history for registered devices with the device agent's simulator and push "
        "every reading through the same IoT rule and delivery stream as live telemetry, so it lands in "
        "the lake's raw/ zone exactly like live data. Message ids are derived from seed, device and "
        "time: running it twice does not double the history once the ETL has deduplicated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=30, help="days of history before --end (default 30)")
        parser.add_argument("--devices", default="", help="comma-separated thing names (default: every device)")
        parser.add_argument("--freq", default="h", help="time between readings, a pandas frequency (default 'h')")
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="simulator seed mixed with each name (default: the live agent's per-device seed)",
        )
        parser.add_argument(
            "--end",
            default=None,
            help="ISO-8601 end, exclusive (default: now, floored to --freq), e.g. 2026-11-27T00:00Z",
        )

    def handle(self, *args, days: float, devices: str, freq: str, seed: int | None, end: str | None, **options) -> None:
        if days <= 0:
            raise CommandError("--days must be positive")
        step = _step(freq)
        instants = backfill_instants(_end(end, step), days, step)
        targets = _devices(devices)
        lake = get_backend("lake")
        self.stdout.write(f"backfilling {len(instants)} readings x {len(targets)} devices into {lake.url}")
        try:
            result = history_backfill(lake, targets, instants, seed=seed, progress=self._progress)
        except BackendError as exc:
            raise CommandError(f"the lake refused a write: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"backfilled {result.records} records ({result.errors} rejected) in {len(result.objects)} objects"
            )
        )

    def _progress(self, percent: float, message: str) -> None:
        self.stdout.write(f"[{percent:5.1f}%] {message}")


def _step(freq: str) -> timedelta:
    """Return freq as a fixed timedelta; raise CommandError for unknown or calendar frequencies."""
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).to_pytimedelta()
    except (ValueError, TypeError) as exc:
        raise CommandError(f"--freq {freq!r} is not a fixed pandas frequency (try h, 15min, D)") from exc
    if step <= timedelta(0):
        raise CommandError("--freq must be positive")
    return step


def _end(end: str | None, step: timedelta) -> datetime:
    """Return the exclusive end: the given instant (UTC), or now floored to a multiple of step."""
    if end is None:
        now = datetime.now(UTC)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return epoch + ((now - epoch) // step) * step
    try:
        parsed = datetime.fromisoformat(end)
    except ValueError as exc:
        raise CommandError(f"--end {end!r} is not ISO-8601") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _devices(names: str) -> list[BackfillDevice]:
    """Return the devices to backfill; raise CommandError for unknown names or an empty registry."""
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    devices = device_list().filter(name__in=wanted) if wanted else device_list()
    found = [BackfillDevice(d.name, d.latitude, d.longitude) for d in devices]
    missing = sorted(set(wanted) - {d.name for d in found})
    if missing:
        raise CommandError(f"unknown devices: {', '.join(missing)}")
    if not found:
        raise CommandError("no devices are registered (provision_device NAME first)")
    return found
