"""manage.py deploy: serve a trained model behind an endpoint's production variant."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from deployments.selectors import NotDeployed, model_resolve
from forecasts.management.pipeline_command import PipelineStepCommand


class Command(PipelineStepCommand):
    help = (
        "Deploy a trained model (by name, or 'latest') to an endpoint's production variant. Another model on "
        "the same variant is replaced; other variants keep serving with their weights."
    )
    kind = "deploy"

    def add_step_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default="latest", help="model name, or 'latest' (default)")
        parser.add_argument(
            "--endpoint", default=settings.DEFAULT_ENDPOINT_NAME, help="endpoint name (default %(default)s)"
        )
        parser.add_argument("--variant", default="AllTraffic", help="production variant name (default AllTraffic)")
        parser.add_argument("--weight", type=float, default=1.0, help="the variant's traffic weight (default 1.0)")

    def step_params(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["weight"] < 0:
            raise CommandError(f"--weight must be >= 0, got {options['weight']}")
        try:
            model_resolve(options["model"])  # a clear error before a run row exists
        except NotDeployed as exc:
            raise CommandError(str(exc)) from None
        keys = ("model", "endpoint", "variant", "weight")
        return {key: options[key] for key in keys}
