"""Training jobs: DeepAR on a dataset through the training backend, with progress, cancel, time limit, baseline
metrics and registration of the model version."""

from __future__ import annotations

import logging
import math
import time
import traceback
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cloud.backends import get_backend
from cloud.deepar.backtest import check_backtest_windows, rolling_backtest
from cloud.deepar.control import TrainingCancelled, TrainingTimeLimit, parse_epoch_message
from cloud.deepar.features import num_dynamic_feat
from cloud.deepar.formats import read_channel
from cloud.deepar.hyperparameters import DeepARHyperparameters, parse_hyperparameters
from cloud.deepar.metrics import seasonal_naive_metrics
from cloud.deepar.model import DeepARModel
from cloud.interfaces import Progress, TrainingSpec, no_progress
from forecasts.models import Dataset, PipelineRun, TrainedModel, TrainingJob
from forecasts.runs import run_create
from forecasts.services.datasets import DatasetError, DatasetSpec, dataset_build, dataset_channel, dataset_get
from forecasts.services.registry import model_lineage, model_register

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "ozone"
# Hourly data: a day of context, half a day ahead; small enough to train in seconds on two cores.
DEFAULT_HYPERPARAMETERS = {
    "context_length": "24",
    "prediction_length": "12",
    "epochs": "20",
    "num_cells": "40",
    "num_layers": "2",
    "likelihood": "student-T",
    "mini_batch_size": "32",
    "learning_rate": "0.001",
}
# pandas offset alias -> SageMaker's time_freq letter.
_TIME_FREQ = {"h": "H", "H": "H", "min": "min", "D": "D", "W": "W", "M": "M"}


def training_default_params() -> dict[str, Any]:
    """Return the params of the scheduled training run: all devices, hourly ozone, the default hyperparameters."""
    return {"metric": DEFAULT_METRIC, "devices": None, "freq": "h", "hyperparameters": dict(DEFAULT_HYPERPARAMETERS)}


def time_freq(freq: str) -> str:
    """Return SageMaker's time_freq for a pandas frequency ("h" -> "H", "5min" -> "5min"); raise ValueError."""
    count = freq.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = freq[len(count) :]
    if unit not in _TIME_FREQ:
        raise ValueError(f"unsupported frequency {freq!r}: use h, min, D, W or M, optionally with a count")
    return f"{count}{_TIME_FREQ[unit]}"


def training_hyperparameters(freq: str, overrides: dict[str, Any] | None) -> DeepARHyperparameters:
    """Return the validated hyperparameters: defaults, then overrides, time_freq from freq unless given.

    Raises HyperparameterError naming the first bad value.
    """
    merged = {**DEFAULT_HYPERPARAMETERS, "time_freq": time_freq(freq), **(overrides or {})}
    return parse_hyperparameters(merged)


def training_job_name(base_name: str) -> str:
    """Return a new SageMaker-style job name like deepar-ozone-20261127-230500 (unique among jobs and models)."""
    base = f"deepar-{base_name.replace('_', '-').lower()}-{timezone.now():%Y%m%d-%H%M%S}"[:56]  # SageMaker: 63 chars
    name, suffix = base, 1
    while (
        TrainedModel.objects.filter(name=name).exists()
        or TrainingJob.objects.filter(name=name).exists()
        or Dataset.objects.filter(name=name).exists()
    ):
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def _max_runtime_s(params: dict[str, Any]) -> int:
    # Stop a little before Celery's soft limit, so that the job row records why it stopped.
    ceiling = max(30, getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", 1800) - 30)
    asked = params.get("max_runtime_s")
    return min(int(asked), ceiling) if asked else ceiling


def dataset_hyperparameters(dataset: Dataset, overrides: dict[str, Any] | None) -> DeepARHyperparameters:
    """Return validated hyperparameters for training on the dataset: defaults, the dataset's time_freq,
    context_length and prediction_length, then overrides. Raises HyperparameterError (every bad value),
    ValueError when overrides contradict the dataset."""
    fixed = {
        "time_freq": time_freq(dataset.freq),
        "context_length": str(dataset.context_length),
        "prediction_length": str(dataset.prediction_length),
    }
    merged = {**DEFAULT_HYPERPARAMETERS, **fixed, **{k: str(v) for k, v in (overrides or {}).items()}}
    if not dataset.use_cat:
        merged.setdefault("cardinality", "ignore")
    if dataset.dynamic_feat:  # SageMaker checks the channels' dynamic_feat against this number
        merged.setdefault("num_dynamic_feat", str(num_dynamic_feat(dataset.dynamic_feat)))
    hp = parse_hyperparameters(merged)
    if hp.prediction_length != dataset.prediction_length:
        raise ValueError(f"dataset {dataset.name} was cut for prediction_length {dataset.prediction_length}")
    return hp


def _adhoc_dataset(job: str, params: dict[str, Any]) -> Dataset:
    """Build the dataset of a job given a metric rather than a dataset (the scheduled training)."""
    hp = training_hyperparameters(params.get("freq") or "h", params.get("hyperparameters"))
    spec = DatasetSpec(
        name=job, metric=params.get("metric") or DEFAULT_METRIC, devices=params.get("devices"),
        freq=params.get("freq") or "h", context_length=hp.context_length, prediction_length=hp.prediction_length,
    )  # fmt: skip
    return dataset_build(spec, strict_devices=False)


def _job_start(params: dict[str, Any]) -> TrainingJob:
    """Return the job row of these params (created now for a run queued without one), marked running."""
    name = params.get("job") or training_job_name(params.get("dataset") or params.get("metric") or DEFAULT_METRIC)
    # A run queued with a job name (manage.py train --dataset) links to its job; the schedule's runs have none.
    run = PipelineRun.objects.filter(kind=PipelineRun.Kind.TRAIN, params__job=name).first() if "job" in params else None
    job, _ = TrainingJob.objects.get_or_create(
        name=name, defaults={"hyperparameters": params.get("hyperparameters") or {}, "run": run}
    )
    if job.cancel_requested:
        _job_finish(job, TrainingJob.Status.CANCELLED, "cancelled before it started")
        raise TrainingCancelled(f"training job {name} was cancelled before it started")
    TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.RUNNING, started_at=timezone.now())
    return job


def _job_finish(job: TrainingJob, status: str, message: str, error: str = "") -> None:
    TrainingJob.objects.filter(pk=job.pk).update(
        status=status, message=message[:500], error=error, finished_at=timezone.now()
    )


def _job_progress(job: TrainingJob, progress: Progress, max_runtime_s: int) -> Progress:
    """Return a Progress that records epochs and losses on the job row, then raises TrainingCancelled when
    the job's cancel flag is set and TrainingTimeLimit past max_runtime_s (the trainer stops on either)."""
    deadline = time.monotonic() + max_runtime_s

    def report(percent: float, message: str) -> None:
        progress(percent, message)
        epoch = parse_epoch_message(message)
        row = TrainingJob.objects.filter(pk=job.pk)
        if epoch is not None:
            job.losses.append(None if math.isnan(epoch.loss) else epoch.loss)
            row.update(epoch=epoch.epoch, epochs=epoch.epochs, losses=job.losses, message=message[:500])
        else:
            row.update(message=message[:500])
        if row.filter(cancel_requested=True).exists():
            raise TrainingCancelled(f"training job {job.name} was cancelled")
        if time.monotonic() > deadline:
            raise TrainingTimeLimit(f"training job {job.name} ran past its max_runtime_s of {max_runtime_s} s")

    return report


def _job_dataset(job: TrainingJob, params: dict[str, Any]) -> tuple[Dataset, DeepARHyperparameters]:
    if params.get("dataset"):
        dataset = dataset_get(params["dataset"])
    else:
        dataset = _adhoc_dataset(job.name, params)
    hp = dataset_hyperparameters(dataset, params.get("hyperparameters"))
    TrainingJob.objects.filter(pk=job.pk).update(dataset=dataset, hyperparameters=hp.as_sagemaker(), epochs=hp.epochs)
    job.refresh_from_db()
    return dataset, hp


def _evaluate_extras(
    dataset: Dataset, hp: DeepARHyperparameters, artifact_key: str, windows: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Return the seasonal-naive baseline's metrics on the test channel and, when asked, a rolling backtest."""
    test = read_channel(dataset_channel(dataset, "test"))
    baseline = seasonal_naive_metrics(test, hp.prediction_length, hp.time_freq, hp.test_quantiles)
    if not windows:
        return baseline, {}
    try:
        model = DeepARModel.from_tarball(get_backend("lake").get_bytes(artifact_key))
    except (ValueError, KeyError) as exc:  # a SageMaker-built artifact is not a GluonTS predictor
        return baseline, {"error": f"backtest needs a local model artifact: {exc}"}
    return baseline, rolling_backtest(model, test, windows)


def dataset_backtest_check(dataset: Dataset, windows: int) -> None:
    """Check that every series of the dataset is long enough for `windows` rolling-backtest origins; return None.

    Raises ValueError (too many windows, saying how many fit) or DatasetError when the lake lost the test channel.
    """
    try:
        records = read_channel(dataset_channel(dataset, "test")) if windows > 0 else []
    except KeyError:
        raise DatasetError(f"dataset {dataset.name}: the lake lost its test channel {dataset.test_key}") from None
    check_backtest_windows([len(record["target"]) for record in records], windows, dataset.prediction_length)


def _artifacts_discard(job: TrainingJob) -> None:
    """Delete whatever the job stored under models/<job>/ (a stopped or failed job registers nothing)."""
    lake = get_backend("lake")
    try:
        for item in lake.list_objects(f"models/{job.name}/"):
            lake.delete(item.key)
    except Exception:  # the job's own error is the one to report; a leftover is only logged
        logger.exception("could not delete the artifacts of training job %s", job.name)


def training_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Train DeepAR on a dataset (params["dataset"]) or on channels built now from params metric/devices/freq,
    through the training backend; register the model version with baseline metrics; return its summary.

    Returns {"model", "metrics", "baseline_metrics", "artifact_key", "devices", "skipped", "dataset"}. Raises
    HyperparameterError, ChannelError or DatasetError (data), TrainingStopped (cancelled or past its time limit:
    nothing registered), ValueError (unknown metric or frequency) or BackendError.
    """
    job = _job_start(params)
    try:
        return _train_and_register(job, params, progress)
    except TrainingCancelled as exc:
        _artifacts_discard(job)
        _job_finish(job, TrainingJob.Status.CANCELLED, str(exc))
        raise
    except TrainingTimeLimit as exc:
        _artifacts_discard(job)
        _job_finish(job, TrainingJob.Status.STOPPED, str(exc))
        raise
    except Exception as exc:
        _artifacts_discard(job)
        _job_finish(job, TrainingJob.Status.FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise


def _train_and_register(job: TrainingJob, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    progress(2, f"preparing the channels of {job.name}")
    dataset, hp = _job_dataset(job, params)
    windows = int(params.get("backtest_windows") or 0)
    dataset_backtest_check(dataset, windows)  # before training: a late refusal would waste the whole run
    progress(8, f"{dataset.series_count} series, {dataset.observations} observations in dataset {dataset.name}")
    spec = TrainingSpec(
        job.name, dataset.train_key, dataset.test_key, hp.as_sagemaker(), "models", tuple(dataset.dynamic_feat),
        lineage=model_lineage(job, dataset),
    )  # fmt: skip
    # One guard for the whole job: a cancel or the time limit also stops the scoring after training.
    guarded = _job_progress(job, progress, _max_runtime_s(params))
    result = get_backend("training").train(get_backend("lake"), spec, lambda p, m: guarded(8 + 0.85 * p, m))
    guarded(94, "scoring the seasonal-naive baseline on the test channel")
    baseline, backtest = _evaluate_extras(dataset, hp, result.artifact_key, windows)
    guarded(97, f"registering model {job.name}")
    model = model_register(job, dataset, result.artifact_key, result.metrics, baseline, backtest)
    _job_finish(job, TrainingJob.Status.SUCCEEDED, f"registered model {model.name}")
    summary = {"model": model.name, "metrics": model.metrics, "baseline_metrics": model.baseline_metrics}
    return {**summary, "artifact_key": model.artifact_key, "devices": dataset.devices, "skipped": dataset.skipped,
            "dataset": dataset.name}  # fmt: skip


def training_job_submit(
    dataset_name: str, hyperparameters: dict[str, Any] | None = None, *, max_runtime_s: int | None = None,
    backtest_windows: int = 0, created_by: Any = None, queue: bool = True,
) -> TrainingJob:  # fmt: skip
    """Create a training job on a dataset (and its pipeline run), queue it on the worker after commit unless
    queue is False; return the job. Raises DatasetError, HyperparameterError (every bad value) or ValueError
    before anything is created (too many backtest_windows for the series is a ValueError)."""
    dataset = dataset_get(dataset_name)
    hp = dataset_hyperparameters(dataset, hyperparameters)
    dataset_backtest_check(dataset, backtest_windows)
    if max_runtime_s is not None and max_runtime_s < 1:
        raise ValueError(f"max_runtime_s must be positive, got {max_runtime_s}")
    name = training_job_name(dataset.name)
    params = {
        "job": name, "dataset": dataset.name, "max_runtime_s": max_runtime_s, "backtest_windows": backtest_windows,
        "hyperparameters": {key: str(value) for key, value in (hyperparameters or {}).items()},
    }  # fmt: skip
    with transaction.atomic():
        run = run_create(PipelineRun.Kind.TRAIN, params)
        job = TrainingJob.objects.create(
            name=name, run=run, dataset=dataset, hyperparameters=hp.as_sagemaker(), epochs=hp.epochs,
            max_runtime_s=max_runtime_s, created_by=created_by,
        )  # fmt: skip
        if queue:
            transaction.on_commit(lambda: _enqueue(run.pk))
    return job


def _enqueue(run_id: int) -> None:
    from forecasts.tasks import run_pipeline_step

    run_pipeline_step.delay(run_id)


def training_job_cancel(name: str) -> TrainingJob:
    """Ask a queued or running job to stop (the trainer notices within about a second); return the job.

    Raises TrainingJob.DoesNotExist; ValueError when the job has already finished.
    """
    job = TrainingJob.objects.get(name=name)
    if job.is_finished:
        raise ValueError(f"training job {name} has already finished ({job.status})")
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True, message="cancel requested")
    job.refresh_from_db()
    return job
