"""A base for the crawl/etl/train/deploy commands: run a step inline or on the worker, with progress."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from forecasts.models import PipelineRun
from forecasts.runs import run_create, run_execute
from forecasts.steps import step_work


class PipelineStepCommand(BaseCommand):
    kind = ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="store_true",
            help="send the step to the Celery worker and follow its progress (default: run it in this process)",
        )
        parser.add_argument("--timeout", type=float, default=1800, help="with --queue: seconds to wait (default 1800)")
        self.add_step_arguments(parser)

    def add_step_arguments(self, parser: CommandParser) -> None:
        """Add the step's own options."""

    def step_params(self, options: dict[str, Any]) -> dict[str, Any]:
        """Return the run's params from the parsed options."""
        return {}

    def handle(self, *args: Any, **options: Any) -> None:
        run = run_create(self.kind, self.step_params(options))
        self.stdout.write(f"{self.kind} run #{run.pk} created")
        if options["queue"]:
            run = self._follow_on_worker(run, options["timeout"])
        else:
            run = self._run_inline(run)
        self._report(run)

    def _run_inline(self, run: PipelineRun) -> PipelineRun:
        try:
            return run_execute(run.pk, step_work(self.kind), echo=self._echo)
        except Exception:
            return PipelineRun.objects.get(pk=run.pk)

    def _follow_on_worker(self, run: PipelineRun, timeout: float) -> PipelineRun:
        from forecasts.tasks import run_pipeline_step

        run_pipeline_step.delay(run.pk)
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if (run.progress, run.message) != last:
                last = (run.progress, run.message)
                self._echo(run.progress, f"[{run.status}] {run.message}")
            if run.is_finished:
                return run
            time.sleep(0.5)
        raise CommandError(f"{self.kind} run #{run.pk} did not finish within {timeout:.0f} s (status {run.status})")

    def _echo(self, percent: float, message: str) -> None:
        self.stdout.write(f"  {percent:5.1f}%  {message}")

    def _report(self, run: PipelineRun) -> None:
        if run.status == PipelineRun.Status.FAILED:
            raise CommandError(f"{self.kind} run #{run.pk} failed: {run.error.splitlines()[0] if run.error else ''}")
        self.stdout.write(self.style.SUCCESS(f"{self.kind} run #{run.pk} succeeded"))
        for key, value in run.result.items():
            self.stdout.write(f"  {key}: {value}")
