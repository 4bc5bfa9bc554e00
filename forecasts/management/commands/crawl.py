"""manage.py crawl: infer the raw zone's schema into the catalog (a Glue crawler run), with Glue's policies."""

from typing import Any

from django.core.management.base import CommandParser

from cloud.interfaces import DELETE_BEHAVIORS, RECRAWL_POLICIES, UPDATE_BEHAVIORS
from forecasts.management.pipeline_command import PipelineStepCommand


class Command(PipelineStepCommand):
    help = (
        "Crawl the lake's raw zone: infer the telemetry_raw table's columns (new numeric fields from "
        "devices appear as new columns) and partitions, and store them in the catalog. Type conflicts "
        "are reported, never coerced. Policies default to the CRAWLER_* settings."
    )
    kind = "crawl"

    def add_step_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--update-behavior",
            choices=UPDATE_BEHAVIORS,
            help="new fields: UPDATE_IN_DATABASE adds them as columns, LOG only records them",
        )
        parser.add_argument(
            "--delete-behavior",
            choices=DELETE_BEHAVIORS,
            help="partitions gone from the lake: LOG keeps them, DELETE_FROM_DATABASE drops them, "
            "DEPRECATE_IN_DATABASE marks them deprecated",
        )
        parser.add_argument(
            "--recrawl-policy",
            choices=RECRAWL_POLICIES,
            help="CRAWL_EVERYTHING reads every partition, CRAWL_NEW_FOLDERS_ONLY only those not crawled before",
        )

    def step_params(self, options: dict[str, Any]) -> dict[str, Any]:
        names = ("update_behavior", "delete_behavior", "recrawl_policy")
        return {name: options[name] for name in names if options.get(name)}
