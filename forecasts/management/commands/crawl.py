"""manage.py crawl: infer the raw zone's schema into the catalog (a Glue crawler run)."""

from forecasts.management.pipeline_command import PipelineStepCommand


class Command(PipelineStepCommand):
    help = (
        "Crawl the lake's raw zone: infer the telemetry_raw table's columns (new numeric fields from "
        "devices appear as new columns) and partitions, and store them in the catalog."
    )
    kind = "crawl"
