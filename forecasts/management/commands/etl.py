"""manage.py etl: turn the raw objects not yet processed into curated Parquet (a Glue job run)."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from cloud.interfaces import BOOKMARK_OPTIONS, BackendError
from forecasts.management.pipeline_command import PipelineStepCommand
from forecasts.services.etl import etl_bookmark_reset


class Command(PipelineStepCommand):
    help = (
        "Run the ETL job: read the raw objects not in the job bookmark, validate and type them, drop duplicate "
        "message_ids, write curated/telemetry/date=YYYY-MM-DD/*.parquet, compact partitions with many small "
        "files and move the bookmark on. --job-bookmark-option and --reset-job-bookmark work as Glue's."
    )
    kind = "etl"

    def add_step_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--job-bookmark-option",
            choices=BOOKMARK_OPTIONS,
            default="job-bookmark-enable",
            help="enable: only new raw objects, bookmark moves on (default); disable: every raw object, "
            "bookmark untouched (duplicates are still dropped); pause: only new objects, bookmark untouched",
        )
        parser.add_argument(
            "--reset-job-bookmark",
            action="store_true",
            help="forget what the job has processed, then exit (Glue's reset-job-bookmark): the next run "
            "reads every raw object again; curated data is kept and repeats are dropped",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reset_job_bookmark"]:
            try:
                etl_bookmark_reset()
            except BackendError as exc:
                raise CommandError(f"could not reset the job bookmark: {exc}") from exc
            self.stdout.write(self.style.SUCCESS("job bookmark reset: the next run processes every raw object"))
            return
        super().handle(*args, **options)

    def step_params(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"bookmark_option": options["job_bookmark_option"]}
