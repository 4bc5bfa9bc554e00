"""Run the ETL job: new raw objects -> curated Parquet."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cloud.backends import get_backend
from cloud.interfaces import Progress, no_progress


def etl_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Run the configured ETL job over the lake; return its EtlResult as a dict.

    Raises BackendError when the lake or the job fails.
    """
    result = get_backend("etl").run(get_backend("lake"), progress)
    return asdict(result)
