"""manage.py run_endpoint_server: serve the SageMaker Runtime invoke API for models in the lake."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.backends import get_backend
from dataplane.endpoint_server import make_server


class Command(BaseCommand):
    help = (
        "Run the endpoint server: POST /endpoints/<name>/invocations answers like SageMaker Runtime, "
        "PUT/GET /admin/endpoints/<name> configure variants (the local hosting backend does this on deploy)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")

    def handle(self, *args: Any, **options: Any) -> None:
        state_dir = settings.STATE_DIR / "endpoints"
        try:
            server = make_server(get_backend("lake"), state_dir, options["host"], options["port"])
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc}") from None
        self.stdout.write(f"endpoint server on http://{options['host']}:{options['port']} (state in {state_dir})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopping")
        finally:
            server.server_close()
