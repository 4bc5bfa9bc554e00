"""manage.py run_ingest: the ingest service (IoT rule + Firehose delivery stream) until SIGTERM/SIGINT."""

import signal
import threading
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.backends import get_backend
from cloud.interfaces import BackendError
from dataplane.ingest.directory import CachedDeviceNames
from dataplane.ingest.service import SHARED_SUBSCRIPTION, IngestConfig, IngestService, default_client_id
from devices import selectors, services
from devices.models import DEFAULT_TOPIC_RULE

DEFAULT_RULE = DEFAULT_TOPIC_RULE


class Command(BaseCommand):
    help = (
        "Run the ingest service: read device telemetry from the broker's shared subscription "
        "$share/ingest/dt/iotcast/+/telemetry, apply the IoT rule, and write newline-delimited JSON "
        "objects to the lake's raw/ and errors/ zones as Kinesis Firehose would. Messages are acked "
        "only once durable. The topic rule named by --rule (admin: Devices > Topic rules) supplies the WHERE "
        "clause, buffering hints and prefixes, and is re-read when it changes (the ingest writes its buffers and "
        "restarts with it); things missing from the registry go to errors/unknown-device/. "
        "Runs until SIGTERM or Ctrl-C, then flushes its buffers and exits."
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
            default=None,
            help="write an object once this many MiB are buffered (default: the rule's, else INGEST_BUFFER_SIZE_MB)",
        )
        parser.add_argument(
            "--buffer-interval-s",
            type=float,
            default=None,
            help="write an object once its first record is this old "
            "(default: the rule's, else INGEST_BUFFER_INTERVAL_S)",
        )
        parser.add_argument(
            "--subscription",
            default=SHARED_SUBSCRIPTION,
            help="the shared subscription to read (default %(default)s): workers of one group share the messages",
        )
        parser.add_argument(
            "--rule", default=DEFAULT_RULE, help="name of the topic rule to apply (default %(default)s; none: defaults)"
        )
        parser.add_argument(
            "--registry-refresh-s",
            type=float,
            default=5.0,
            help="how often to re-read the active device names (default %(default)s s)",
        )
        parser.add_argument(
            "--worker",
            type=int,
            default=0,
            help="this worker's number on the host (default %(default)s): give each parallel worker its own; "
            "the default client id is derived from it",
        )
        parser.add_argument(
            "--rule-refresh-s",
            type=float,
            default=5.0,
            help="how often to check the topic rule for changes (default %(default)s s)",
        )
        parser.add_argument(
            "--client-id",
            default=None,
            help=f"MQTT client id, kept across restarts so the worker resumes its session "
            f"(default {default_client_id()} for worker 0, ...-1 for worker 1, ...)",
        )

    def handle(self, *args, **options) -> None:
        config = _config(options)
        lake = get_backend("lake")
        try:
            lake.ping()
        except BackendError as exc:
            raise CommandError(f"the lake {lake.url} is not usable: {exc}") from exc
        registry = CachedDeviceNames(selectors.device_names_active, options["registry_refresh_s"])
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"ingest {config.client_id}: {config.host}:{config.port} -> {lake.url} (Ctrl-C to stop)")
        service = services.ingest_run(
            stop,
            lambda: ingest_service(options, lake, registry),
            lambda: selectors.topic_rule_version(options["rule"]),
            options["rule_refresh_s"],
            self.stdout.write,
        )
        self.stdout.write("stopping: writing buffered records...")
        service.stop(flush=True)
        stats = service.stats
        self.stdout.write(
            self.style.SUCCESS(
                f"ingest stopped: {stats.messages} messages, {stats.records} records, "
                f"{stats.errors} error records, {stats.objects} objects"
            )
        )


def ingest_service(options: dict, lake, registry) -> IngestService:
    """Return an (unstarted) ingest service configured from options and the rule, keeping device status.

    Raises CommandError for bad options, WhereError for a rule whose WHERE does not compile.
    """
    service = IngestService(lake, _config(options), registry)
    services.ingest_track_devices(service.stream)
    return service


def _rule_settings(options: dict) -> dict:
    """Return IngestConfig fields from the rule (if it exists and is enabled) overlaid by explicit options."""
    rule = selectors.topic_rule_get(options["rule"])
    found = {}
    if rule is not None:
        found = {"where": rule.where, "prefix": rule.prefix, "error_prefix": rule.error_output_prefix}
        found |= {"buffer_size_mb": rule.buffer_size_mb, "buffer_interval_s": rule.buffer_interval_s}
    size = options["buffer_size_mb"] or found.get("buffer_size_mb", settings.INGEST_BUFFER_SIZE_MB)
    interval = options["buffer_interval_s"]
    interval = interval if interval is not None else found.get("buffer_interval_s", settings.INGEST_BUFFER_INTERVAL_S)
    if not 0 < size <= 128 or not 0 <= interval <= 900:
        raise CommandError("--buffer-size-mb must be in (0, 128] and --buffer-interval-s in [0, 900] (Firehose hints)")
    return {**found, "buffer_size_mb": size, "buffer_interval_s": interval}


def _config(options: dict) -> IngestConfig:
    """Return the service's configuration from the options and the rule; raise CommandError for bad values."""
    config = IngestConfig(
        host=options["host"],
        port=options["port"],
        credentials_dir=options["credentials"].resolve(),
        client_id=options["client_id"] or default_client_id(options["worker"]),
        subscription=options["subscription"],
    )
    try:
        config.credential_files()
    except FileNotFoundError as exc:
        raise CommandError(f"{exc} (issue the service credentials first)") from exc
    return replace(config, **_rule_settings(options))
