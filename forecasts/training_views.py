"""Operator pages of training: datasets, jobs with live progress and a loss curve, model versions, compare.

Everyone signed in may look; building datasets, starting or cancelling jobs and moving aliases need the admin role.
Charts are small server-drawn SVGs, so the pages need no script and no CDN.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from cloud.deepar.channels import ChannelError
from cloud.deepar.hyperparameters import HyperparameterError, parse_assignments
from cloud.interfaces import BackendError
from dashboard.roles import admin_required, is_admin, operator_required
from forecasts import training_selectors as selectors
from forecasts.models import TrainedModel, TrainingJob
from forecasts.services.datasets import DatasetError, DatasetSpec, dataset_build, dataset_channel, dataset_get
from forecasts.services.registry import RegistryError, model_alias_set
from forecasts.services.training import training_job_cancel, training_job_submit
from forecasts.training_charts import backtest_svg, loss_svg


@operator_required
@require_GET
def training_home(request: HttpRequest) -> HttpResponse:
    """Datasets, recent jobs and model versions, with the forms to build and train (admins)."""
    context = {
        "datasets": selectors.dataset_list()[:50],
        "jobs": selectors.job_list()[:30],
        "models": selectors.model_list()[:30],
        "aliases": selectors.alias_list(),
        "can_change": is_admin(request.user),
        "active": selectors.job_list().filter(status__in=["queued", "running"]).exists(),
    }
    return render(request, "training/home.html", context)


def _form_time(post: Any, field: str) -> datetime | None:
    """Return the form's datetime-local value as UTC (the form says so), None when empty; raise DatasetError."""
    raw = post.get(field, "").strip()
    if not raw:
        return None
    try:
        stamp = datetime.fromisoformat(raw)
    except ValueError:
        raise DatasetError(f"{field} {raw!r} is not a date and time like 2026-11-01T12:00") from None
    # The browser sends wall-clock time without a zone; the label says UTC, so that is what it means.
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _form_spec(post: Any) -> DatasetSpec:
    """Return the dataset spec of the build form; raise DatasetError or ValueError for malformed fields."""
    devices = [d.strip() for d in post.get("devices", "").split(",") if d.strip()] or None
    return DatasetSpec(
        name=post.get("name", "").strip(), metric=post.get("metric", "").strip(), devices=devices,
        freq=post.get("freq", "h").strip() or "h", start=_form_time(post, "start"), end=_form_time(post, "end"),
        test_days=float(post["test_days"]) if post.get("test_days") else None,
        context_length=int(post.get("context_length") or 24),
        prediction_length=int(post.get("prediction_length") or 12),
        use_cat=post.get("use_cat") == "on",
        dynamic_feat=[name.strip() for name in post.get("dynamic_feat", "").split(",") if name.strip()],
    )  # fmt: skip


@admin_required
@require_POST
def dataset_create(request: HttpRequest) -> HttpResponse:
    """Build a dataset from the form; go back to the training page with the outcome."""
    try:
        dataset = dataset_build(_form_spec(request.POST), created_by=request.user)
    except (DatasetError, ChannelError, ValueError, BackendError) as exc:
        messages.error(request, f"Dataset not built: {exc}")
    else:
        messages.success(
            request, f"Dataset {dataset.name}: {dataset.series_count} series, {dataset.observations} observations."
        )
    return redirect("training:home")


@operator_required
@require_GET
def dataset_download(request: HttpRequest, name: str, channel: str) -> HttpResponse:
    """The dataset's train or test channel as DeepAR JSON Lines."""
    try:
        data = dataset_channel(dataset_get(name), channel)
    except (DatasetError, ValueError, KeyError) as exc:
        raise Http404(str(exc)) from exc
    response = HttpResponse(data, content_type="application/jsonlines")
    response["Content-Disposition"] = f'attachment; filename="{name}-{channel}.json"'
    return response


@admin_required
@require_POST
def job_start(request: HttpRequest) -> HttpResponse:
    """Start a training job on a dataset with the hyperparameters typed as name=value lines."""
    try:
        hyperparameters = parse_assignments(request.POST.get("hyperparameters", "").split())
        job = training_job_submit(request.POST.get("dataset", ""), hyperparameters, created_by=request.user,
                                  backtest_windows=int(request.POST.get("backtest_windows") or 0))  # fmt: skip
    except HyperparameterError as exc:
        for error in exc.errors:
            messages.error(request, f"Hyperparameter: {error}")
        return redirect("training:home")
    except (DatasetError, ValueError) as exc:
        messages.error(request, f"Job not started: {exc}")
        return redirect("training:home")
    messages.success(request, f"Queued training job {job.name}.")
    return redirect("training:job", name=job.name)


@operator_required
@require_GET
def job_detail(request: HttpRequest, name: str) -> HttpResponse:
    """A job's progress, loss curve and outcome; refreshes itself while the job runs."""
    try:
        job = selectors.job_get(name)
    except TrainingJob.DoesNotExist as exc:
        raise Http404(f"no training job {name}") from exc
    model = TrainedModel.objects.filter(job=job).first()
    context = {"job": job, "model": model, "loss_chart": loss_svg(job.losses), "can_change": is_admin(request.user)}
    return render(request, "training/job.html", context)


@admin_required
@require_POST
def job_cancel(request: HttpRequest, name: str) -> HttpResponse:
    try:
        training_job_cancel(name)
    except TrainingJob.DoesNotExist as exc:
        raise Http404(f"no training job {name}") from exc
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Cancel requested for {name}: it stops within a second or so.")
    return redirect("training:job", name=name)


def _model(name: str) -> TrainedModel:
    try:
        return selectors.model_resolve_alias(name)
    except selectors.ModelNotFound as exc:
        raise Http404(str(exc)) from exc


METRIC_NAMES = ("test:RMSE", "test:mean_wQuantileLoss", "train:final_loss")


def _metric_rows(model: TrainedModel) -> list[dict[str, Any]]:
    rows = []
    for metric in METRIC_NAMES:
        ours, base = model.metrics.get(metric), (model.baseline_metrics or {}).get(metric)
        ratio = ours / base if ours is not None and base else None
        rows.append({"name": metric, "model": ours, "baseline": base, "ratio": ratio})
    return rows


@operator_required
@require_GET
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    """A model version: lineage, metrics against the seasonal-naive baseline, backtest plot, aliases."""
    model = _model(name)
    context = {
        "model": model, "rows": _metric_rows(model), "beats": selectors.beats_baseline(model),
        "backtest_chart": backtest_svg(model.backtest), "can_change": is_admin(request.user),
        "others": selectors.model_list().exclude(pk=model.pk)[:30],
    }  # fmt: skip
    return render(request, "training/model.html", context)


@admin_required
@require_POST
def alias_set(request: HttpRequest, name: str) -> HttpResponse:
    alias = request.POST.get("alias", "").strip()
    try:
        model_alias_set(alias, name, request.user)
    except (RegistryError, TrainedModel.DoesNotExist) as exc:
        messages.error(request, f"Alias not set: {exc}")
    else:
        messages.success(request, f"{alias} now points at {name}.")
    return redirect("training:model", name=name)


@operator_required
@require_GET
def model_compare(request: HttpRequest) -> HttpResponse:
    """Two model versions side by side: lineage, hyperparameters and metrics against their baselines."""
    first, second = _model(request.GET.get("a", "")), _model(request.GET.get("b", ""))
    keys = sorted(set(first.hyperparameters) | set(second.hyperparameters))
    hyper = [(key, first.hyperparameters.get(key), second.hyperparameters.get(key)) for key in keys]
    rows = list(zip(_metric_rows(first), _metric_rows(second), strict=True))
    return render(request, "training/compare.html", {"a": first, "b": second, "hyper": hyper, "rows": rows})
