"""The model registry: register a trained model version with its lineage, and move aliases between versions."""

from __future__ import annotations

import math
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from forecasts.models import Dataset, ModelAlias, TrainedModel, TrainingJob

_ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
RESERVED_ALIASES = {"latest"}


class RegistryError(ValueError):
    """A registry request is invalid; the message says why."""


@cache
def code_version() -> str:
    """Return the code's version: IOTCAST_CODE_VERSION if set, else the git commit (with +dirty), else ""."""
    configured = getattr(settings, "IOTCAST_CODE_VERSION", "")
    if configured:
        return configured
    root = Path(settings.BASE_DIR)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit[:12]}+dirty" if dirty else commit[:12]


def finite(values: Any) -> Any:
    """Return values with every NaN or infinity replaced by None (JSON has neither), recursively."""
    if isinstance(values, float):
        return values if math.isfinite(values) else None
    if isinstance(values, dict):
        return {key: finite(value) for key, value in values.items()}
    if isinstance(values, list | tuple):
        return [finite(value) for value in values]
    return values


def model_lineage(job: TrainingJob, dataset: Dataset) -> dict[str, Any]:
    """Return what the registry knows at train time of where a model comes from, for the artifact's lineage.json:
    the dataset and its metric, devices, frequency, time range and shape, the code version and who asked."""
    when = {"start": dataset.start, "end": dataset.end}
    return {
        "dataset": dataset.name, "metric": dataset.metric, "devices": list(dataset.devices), "freq": dataset.freq,
        **{key: value.isoformat() if value else None for key, value in when.items()},
        "context_length": dataset.context_length, "prediction_length": dataset.prediction_length,
        "test_points": dataset.test_points, "use_cat": dataset.use_cat, "dynamic_feat": list(dataset.dynamic_feat),
        "code_version": code_version(), "created_by": job.created_by.get_username() if job.created_by else None,
    }  # fmt: skip


def model_register(
    job: TrainingJob, dataset: Dataset, artifact_key: str, metrics: dict[str, float], baseline: dict[str, float],
    backtest: dict[str, Any] | None = None,
) -> TrainedModel:  # fmt: skip
    """Return the new model version of a successful job, with its lineage (dataset, hyperparameters, code)."""
    return TrainedModel.objects.create(
        name=job.name, job=job, dataset=dataset, metric=dataset.metric, devices=dataset.devices, freq=dataset.freq,
        hyperparameters=job.hyperparameters, metrics=finite(metrics), baseline_metrics=finite(baseline),
        backtest=finite(backtest or {}), artifact_key=artifact_key, code_version=code_version(),
        created_by=job.created_by,
    )  # fmt: skip


def model_alias_set(alias: str, model_name: str, user: Any = None) -> ModelAlias:
    """Point alias (champion, challenger, ...) at the named model, creating the alias if needed; return it.

    Raises RegistryError for a malformed or reserved alias, TrainedModel.DoesNotExist for an unknown model.
    """
    if not _ALIAS.match(alias) or alias in RESERVED_ALIASES:
        raise RegistryError(f"alias {alias!r} must be lower-case letters, digits and dashes, and not 'latest'")
    model = TrainedModel.objects.get(name=model_name)
    if TrainedModel.objects.filter(name=alias).exists():
        raise RegistryError(f"alias {alias!r} would hide the model of the same name")
    with transaction.atomic():
        row, _ = ModelAlias.objects.update_or_create(name=alias, defaults={"model": model, "updated_by": user})
    return row


def model_alias_delete(alias: str) -> bool:
    """Delete the alias; return whether it existed."""
    deleted, _ = ModelAlias.objects.filter(name=alias).delete()
    return deleted > 0
