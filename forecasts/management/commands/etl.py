"""manage.py etl: turn the raw objects not yet processed into curated Parquet (a Glue job run)."""

from forecasts.management.pipeline_command import PipelineStepCommand


class Command(PipelineStepCommand):
    help = (
        "Run the ETL job: read the raw objects not in the job bookmark, type them, drop duplicate "
        "message_ids, write curated/telemetry/date=YYYY-MM-DD/*.parquet and move the bookmark on."
    )
    kind = "etl"
