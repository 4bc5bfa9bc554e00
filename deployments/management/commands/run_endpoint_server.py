"""manage.py run_endpoint_server: serve the SageMaker Runtime invoke API for models in the lake."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.backends import get_backend
from dataplane.endpoint_server import serve


class Command(BaseCommand):
    help = (
        "Run the endpoint server: POST /endpoints/<name>/invocations answers like SageMaker Runtime, "
        "PUT/GET /admin/endpoints/<name> configure variants (the local hosting backend does this on deploy)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
        parser.add_argument(
            "--workers", type=int, default=2, help="worker processes; each loads the models once (default 2)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1:
            raise CommandError(f"--workers must be at least 1, got {options['workers']}")
        state_dir = settings.STATE_DIR / "endpoints"
        host, port = options["host"], options["port"]

        def ready(address: tuple[str, int]) -> None:
            workers = options["workers"]
            self.stdout.write(f"endpoint server on http://{host}:{address[1]}, {workers} workers, state in {state_dir}")
            self.stdout.flush()

        try:
            serve(get_backend("lake"), state_dir, host, port, options["workers"], ready=ready)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
        self.stdout.write("stopped")
