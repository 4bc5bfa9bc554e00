"""manage.py run_ingest: the ingest service (IoT rule + Firehose delivery stream) until SIGTERM/SIGINT."""

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.backends import get_backend
from cloud.interfaces import BackendError
from dataplane.ingest.service import IngestConfig, IngestService, default_client_id


class Command(BaseCommand):
    help = (
        "Run the ingest service: read device telemetry from the broker's shared subscription "
        "$share/ingest/dt/iotcast/+/telemetry, apply the IoT rule, and write newline-delimited JSON "
        "objects to the lake's raw/ and errors/ zones as Kinesis Firehose would. Messages are acked "
        "only once durable. Runs until SIGTERM or Ctrl-C, then flushes its buffers and exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        default_credentials = Path(settings.STATE_DIR) / "services" / "iotcast-ingest"
        parser.add_argument(
            "--credentials",
            type=Path,
            default=default_credentials,
            help=f"folder with the service's cert.pem, key.pem and ca.pem (default {default_credentials})",
        )
        parser.add_argument("--host", default=settings.BROKER_HOST, help="broker host (default: BROKER_HOST)")
        parser.add_argument("--port", type=int, default=settings.BROKER_PORT, help="broker port (default: BROKER_PORT)")
        parser.add_argument(
            "--buffer-size-mb",
            type=float,
            default=settings.INGEST_BUFFER_SIZE_MB,
            help="write an object once this many MiB are buffered (default: INGEST_BUFFER_SIZE_MB)",
        )
        parser.add_argument(
            "--buffer-interval-s",
            type=float,
            default=settings.INGEST_BUFFER_INTERVAL_S,
            help="write an object once its first record is this old (default: INGEST_BUFFER_INTERVAL_S)",
        )
        parser.add_argument(
            "--client-id",
            default=default_client_id(),
            help="MQTT client id: one per worker on a host, kept across restarts (default %(default)s)",
        )

    def handle(self, *args, **options) -> None:
        config = _config(options)
        lake = get_backend("lake")
        try:
            lake.ping()
        except BackendError as exc:
            raise CommandError(f"the lake {lake.url} is not usable: {exc}") from exc
        service = IngestService(lake, config)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        service.start()
        self.stdout.write(f"ingest {config.client_id}: {config.host}:{config.port} -> {lake.url} (Ctrl-C to stop)")
        while not stop.wait(1.0):
            pass
        self.stdout.write("stopping: writing buffered records...")
        service.stop(flush=True)
        stats = service.stats
        self.stdout.write(
            self.style.SUCCESS(
                f"ingest stopped: {stats.messages} messages, {stats.records} records, "
                f"{stats.errors} error records, {stats.objects} objects"
            )
        )


def _config(options: dict) -> IngestConfig:
    """Return the service's configuration from the options; raise CommandError for bad values."""
    if options["buffer_size_mb"] <= 0 or options["buffer_interval_s"] < 0:
        raise CommandError("--buffer-size-mb must be > 0 and --buffer-interval-s >= 0")
    config = IngestConfig(
        host=options["host"],
        port=options["port"],
        credentials_dir=options["credentials"].resolve(),
        client_id=options["client_id"],
        buffer_size_mb=options["buffer_size_mb"],
        buffer_interval_s=options["buffer_interval_s"],
    )
    try:
        config.credential_files()
    except FileNotFoundError as exc:
        raise CommandError(f"{exc} (issue the service credentials first)") from exc
    return config
