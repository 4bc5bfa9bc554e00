"""Which service function does the work of each pipeline step kind.

Each work function takes (params, progress) and returns a JSON-able result dict.
"""

from django.utils.module_loading import import_string

from forecasts.runs import RunWork

STEP_WORK = {
    "crawl": "forecasts.services.crawl.crawl_execute",
    "etl": "forecasts.services.etl.etl_execute",
    "train": "forecasts.services.training.training_execute",
    "deploy": "deployments.services.deploy_execute",
}


def step_work(kind: str) -> RunWork:
    """Return the work function for a step kind; raise KeyError for an unknown kind."""
    return import_string(STEP_WORK[kind])
