"""Reads of datasets, training jobs and the model registry (issue #5)."""

from __future__ import annotations

from django.db.models import QuerySet

from forecasts.models import Dataset, ModelAlias, TrainedModel, TrainingJob


class ModelNotFound(LookupError):
    """No model or alias has that name; the message says so."""


def model_resolve_alias(name_or_alias: str) -> TrainedModel:
    """Return the model an alias (champion, challenger, ...) points at, else the model of that name, else the
    newest one for "latest". Raises ModelNotFound when none matches."""
    alias = ModelAlias.objects.select_related("model").filter(name=name_or_alias).first()
    if alias is not None:
        return alias.model
    if name_or_alias == "latest":
        model = TrainedModel.objects.order_by("-created_at", "-pk").first()
        if model is None:
            raise ModelNotFound("no trained model exists yet; run training first (manage.py train)")
        return model
    try:
        return TrainedModel.objects.get(name=name_or_alias)
    except TrainedModel.DoesNotExist:
        raise ModelNotFound(f"no model or alias is named {name_or_alias!r}") from None


def dataset_list() -> QuerySet[Dataset]:
    """Return the datasets, newest first."""
    return Dataset.objects.select_related("created_by")


def job_list() -> QuerySet[TrainingJob]:
    """Return the training jobs, newest first, with their dataset and model."""
    return TrainingJob.objects.select_related("dataset", "created_by")


def job_get(name: str) -> TrainingJob:
    """Return the named job; raise TrainingJob.DoesNotExist."""
    return job_list().get(name=name)


def model_list() -> QuerySet[TrainedModel]:
    """Return the model versions, newest first, with their dataset and aliases."""
    return TrainedModel.objects.select_related("dataset", "job").prefetch_related("aliases")


def alias_list() -> QuerySet[ModelAlias]:
    """Return the aliases with their models."""
    return ModelAlias.objects.select_related("model")


def beats_baseline(model: TrainedModel) -> bool | None:
    """Return whether the model's test:mean_wQuantileLoss is below the seasonal-naive baseline's; None if unknown."""
    ours = model.metrics.get("test:mean_wQuantileLoss")
    theirs = (model.baseline_metrics or {}).get("test:mean_wQuantileLoss")
    if ours is None or theirs is None:
        return None
    return ours < theirs
