"""Run the ETL job: new raw objects -> curated Parquet; reset its bookmark."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cloud.backends import get_backend
from cloud.interfaces import Progress, no_progress
from forecasts.services.crawl import catalog_curated_register


def etl_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Run the configured ETL job over the lake, then record the curated table in the catalog.

    Returns its EtlResult as a dict, with catalog_table (the table's name) and catalog_partitions.
    params may hold bookmark_option (Glue's --job-bookmark-option; default job-bookmark-enable).
    Raises ValueError for an unknown bookmark option, BackendError when the lake, the job or the catalog fails.
    """
    option = params.get("bookmark_option", "job-bookmark-enable")
    result = get_backend("etl").run(get_backend("lake"), progress, bookmark_option=option)
    table = catalog_curated_register(progress)
    return {**asdict(result), "catalog_table": str(table), "catalog_partitions": len(table.partitions)}


def etl_bookmark_reset() -> None:
    """Reset the ETL job's bookmark (Glue's reset-job-bookmark). Raises BackendError when the lake fails."""
    get_backend("etl").reset_bookmark(get_backend("lake"))
