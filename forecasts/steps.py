"""Which service function does the work of each pipeline step kind, and how its result reads in the run's log.

Each work function takes (params, progress) and returns a JSON-able result dict.
"""

from typing import Any

from django.utils.module_loading import import_string

from forecasts.runs import RunWork

STEP_WORK = {
    "crawl": "forecasts.services.crawl.crawl_execute",
    "etl": "forecasts.services.etl.etl_execute",
    "train": "forecasts.services.training.training_execute",
    "deploy": "deployments.services.deploy_execute",
}
# The result fields that say what a step processed, in the order the log shows them (a list shows its length).
STEP_FIGURES = {
    "crawl": "table objects_scanned partitions_read columns partitions columns_added type_conflicts".split(),
    "etl": "objects_processed rows_read rows_written duplicates_dropped rows_rejected partitions_written".split(),
    "train": ["model", "dataset", "devices", "skipped"],
    "deploy": ["endpoint", "status", "variants"],
}


def step_work(kind: str) -> RunWork:
    """Return the work function for a step kind; raise KeyError for an unknown kind."""
    return import_string(STEP_WORK[kind])


def step_summary(kind: str, result: dict[str, Any]) -> str:
    """Return the log line for a finished step's result, e.g. "rows read 120, rows written 118" ("" if none)."""
    parts = []
    for key in STEP_FIGURES.get(kind, []):
        value = result.get(key)
        if value is None or isinstance(value, dict):
            continue
        shown = len(value) if isinstance(value, list | tuple) else value
        parts.append(f"{key.replace('_', ' ')} {shown}")
    return ", ".join(parts)
