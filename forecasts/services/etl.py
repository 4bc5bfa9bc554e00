"""Run the ETL job: new raw objects -> curated Parquet; reset its bookmark."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cloud.backends import get_backend
from cloud.interfaces import Progress, no_progress


def etl_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Run the configured ETL job over the lake; return its EtlResult as a dict.

    params may hold bookmark_option (Glue's --job-bookmark-option; default job-bookmark-enable).
    Raises ValueError for an unknown bookmark option, BackendError when the lake or the job fails.
    """
    option = params.get("bookmark_option", "job-bookmark-enable")
    result = get_backend("etl").run(get_backend("lake"), progress, bookmark_option=option)
    return asdict(result)


def etl_bookmark_reset() -> None:
    """Reset the ETL job's bookmark (Glue's reset-job-bookmark). Raises BackendError when the lake fails."""
    get_backend("etl").reset_bookmark(get_backend("lake"))
