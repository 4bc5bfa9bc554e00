"""manage.py deploy: serve a trained model behind an endpoint's production variant, at once or step by step."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from deployments.models import EndpointOperation
from deployments.operations import operation_create, operation_enqueue, operation_execute
from deployments.rollouts import policy_parse
from deployments.selectors import NotDeployed, model_resolve
from deployments.services import EndpointError
from forecasts.management.pipeline_command import PipelineStepCommand


class Command(PipelineStepCommand):
    help = (
        "Deploy a trained model (by name, alias such as champion, or 'latest') to an endpoint's production variant. "
        "Without --policy the variant switches at once (other variants keep their weights); with --policy "
        "canary:PCT:BAKE_S, linear:PCT:EVERY_S[:BAKE_S] or shadow:PCT the traffic shifts step by step and rolls "
        "back on an alarm. Waits until the endpoint is InService or rolled back."
    )
    kind = "deploy"

    def add_step_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default="latest", help="model name, alias, or 'latest' (default)")
        parser.add_argument(
            "--endpoint", default=settings.DEFAULT_ENDPOINT_NAME, help="endpoint name (default %(default)s)"
        )
        parser.add_argument("--variant", default="AllTraffic", help="production variant name (default AllTraffic)")
        parser.add_argument("--weight", type=float, default=1.0, help="the variant's traffic weight (default 1.0)")
        parser.add_argument(
            "--policy", default="", help="canary:10:60, linear:20:30[:60], shadow:20 or all[:BAKE_S] (default: at once)"
        )
        parser.add_argument("--max-error-rate", type=float, default=None, help="alarm: 5xx share, e.g. 0.05")
        parser.add_argument("--max-p99-ms", type=float, default=None, help="alarm: p99 latency in ms")
        parser.add_argument(
            "--max-wql-increase", type=float, default=None,
            help="alarm: the new model's forecast wQL against actuals may exceed the old one's by this share (0.25)",
        )  # fmt: skip

    def step_params(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["weight"] < 0:
            raise CommandError(f"--weight must be >= 0, got {options['weight']}")
        try:
            model_resolve(options["model"])  # a clear error before a run row exists
            if options["policy"]:
                policy_parse(options["policy"])
        except (NotDeployed, ValueError) as exc:
            raise CommandError(str(exc)) from None
        keys = ("model", "endpoint", "variant", "weight")
        return {key: options[key] for key in keys}

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["policy"]:
            return super().handle(*args, **options)
        params = self.step_params(options)
        alarms = {"max_error_rate": options["max_error_rate"], "max_p99_ms": options["max_p99_ms"],
                  "max_wql_increase": options["max_wql_increase"]}  # fmt: skip
        params.update(policy=options["policy"], alarms={k: v for k, v in alarms.items() if v is not None})
        try:
            operation = operation_create(EndpointOperation.Kind.DEPLOY, params.pop("endpoint"), params)
        except (EndpointError, NotDeployed, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"deployment #{operation.pk} of {params['model']} to {operation.endpoint_name} created")
        if options["queue"]:
            operation_enqueue(operation)
        else:
            try:
                operation_execute(operation.pk)
            except Exception:
                pass  # recorded on the row; reported below
        self._follow(operation, options["timeout"])

    def _follow(self, operation: EndpointOperation, timeout: float) -> None:
        deadline, shown = time.monotonic() + timeout, 0
        while True:
            operation.refresh_from_db()
            for step in operation.steps[shown:]:
                self.stdout.write(f"  {step['percent']:5.1f}%  [{step['state']}] {step['message']}")
            shown = len(operation.steps)
            if operation.is_finished:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"deployment #{operation.pk} did not finish within {timeout:.0f} s")
            time.sleep(0.5)
        if operation.status == EndpointOperation.Status.SUCCEEDED:
            self.stdout.write(self.style.SUCCESS(f"deployment #{operation.pk} succeeded: endpoint InService"))
        elif operation.status in {EndpointOperation.Status.ROLLED_BACK, EndpointOperation.Status.STOPPED}:
            raise CommandError(f"deployment #{operation.pk} {operation.message}: the old model serves again")
        else:
            raise CommandError(f"deployment #{operation.pk} failed: {operation.message}")
