"""Dashboard pages and the small JSON views their scripts poll. Reads live in dashboard.selectors."""

from __future__ import annotations

import gzip
import logging
from datetime import timedelta
from functools import cache
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from alarms import selectors as alarm_selectors
from dashboard import selectors
from dashboard.forms import ScheduleForm
from dashboard.past_forecasts import forecast_variants, past_forecasts
from dashboard.roles import admin_required, is_admin, operator_required, operator_required_json
from dashboard.services import pipeline_step_allowed, pipeline_step_start, schedule_update
from dashboard.units import metric_label, metrics_meta
from devices.models import Device
from forecasts import selectors as lake_selectors
from forecasts.models import CatalogTable, PipelineRun

logger = logging.getLogger(__name__)
WINDOWS = {60: "1 h", 360: "6 h", 1440: "24 h", 10080: "7 d"}
NO_MODEL_HINT = (
    "No model deployed yet: the pipeline trains one within a few minutes, "
    "or run python manage.py train && python manage.py deploy"
)


@operator_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """The landing page: devices online, readings per minute, newest readings, pipeline health, alarms."""
    rows, activity_error = selectors.device_rows()
    # The newest readings of the devices seen live most recently (imported-only history is not "newest").
    seen = sorted((row for row in rows if row["last_seen"]), key=lambda row: row["last_seen"], reverse=True)
    latest, readings_error = selectors.latest_readings_safe([row["device"].name for row in seen])
    online = sum(row["online"] for row in rows)
    context = {
        "device_count": len(rows),
        "online_count": online,
        "offline_count": len(rows) - online,
        "per_minute": selectors.readings_per_minute(rows),
        "newest_arrival": selectors.newest_arrival(rows),
        "ingest_lag": selectors.ingest_lag(latest),
        "latest": latest,
        "latest_metrics": metrics_meta(selectors.reading_metrics([item["reading"] for item in latest])),
        "lake_error": activity_error or readings_error,
        "pipeline": selectors.pipeline_latest_by_kind(),
        "endpoints": selectors.endpoints_with_variants(),
        "alarms": alarm_selectors.alarms_active()[:10],
        "alarm_counts": alarm_selectors.alarm_counts(),
    }
    return render(request, "dashboard/overview.html", context)


@operator_required
@require_GET
def devices(request: HttpRequest) -> HttpResponse:
    """Every device with status, last seen (registry) and readings rate (searchable, sortable) and a map of them."""
    rows, error = selectors.device_rows()
    for row in rows:
        row["per_minute"] = row["readings_last_hour"] / 60
    context = {
        "rows": rows,
        "lake_error": error,
        "any_readings": any(row["last_seen"] or row["readings_last_hour"] for row in rows),
        "map_points": selectors.device_map_points(rows),
    }
    return render(request, "dashboard/devices.html", context)


@operator_required
@require_GET
def device(request: HttpRequest, pk: int) -> HttpResponse:
    """One device: live charts of every metric with aggregates, its alarms, certificates and export links."""
    obj = get_object_or_404(Device, pk=pk)
    # Last seen and online come from the registry; only a device never seen live asks the lake for its newest
    # (e.g. imported) reading, so that the page still says how old its data is.
    newest, error = (None, None) if obj.last_seen_at else selectors.newest_reading_at_safe(obj.name)
    context = {
        "device": obj,
        "last_seen": obj.last_seen_at,
        "newest_in_lake": newest,
        "online": selectors.is_online(obj.last_seen_at),
        "certificates": obj.certificates.all(),
        "windows": WINDOWS,
        "buckets": lake_selectors.AGGREGATE_BUCKETS,
        "lake_error": error,
        "alarms": alarm_selectors.alarms_active(obj),
        "export_url": reverse("forecasts:device-readings", args=[obj.pk]),
        "fleet_url": _fleet_url("fleet:device", obj),
        "kit_url": _fleet_url("fleet:kit", obj) if is_admin(request.user) else None,  # POST, admins: a new cert
    }
    return render(request, "dashboard/device.html", context)


def _fleet_url(name: str, obj: Device) -> str | None:
    """Return the fleet page's URL of this device (None where the fleet pages are not installed)."""
    try:
        return reverse(name, args=[obj.pk])
    except NoReverseMatch:
        return None


def _window_minutes(request: HttpRequest) -> int:
    """Return ?minutes= as an int in 1..10080; raise ValueError with a readable message otherwise."""
    raw = request.GET.get("minutes", "60")
    if not raw.isdigit() or not 1 <= int(raw) <= max(WINDOWS):
        raise ValueError(f"minutes must be a whole number from 1 to {max(WINDOWS)}, got {raw!r}")
    return int(raw)


@operator_required_json
@require_GET
def device_readings(request: HttpRequest, pk: int) -> JsonResponse:
    """JSON chart series of a device's readings in the last ?minutes= (default 60)."""
    obj = get_object_or_404(Device, pk=pk)
    try:
        minutes = _window_minutes(request)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    try:
        return JsonResponse(selectors.device_readings_series(obj.name, minutes))
    except Exception as exc:
        logger.warning("readings of %s failed: %s", obj.name, exc, exc_info=True)
        return JsonResponse({"error": f"Could not read the readings from the lake: {exc}"}, status=503)


@operator_required_json
@require_GET
def device_aggregates(request: HttpRequest, pk: int) -> JsonResponse:
    """JSON min/mean/max/p95 per metric per ?bucket= (minute, hour or day; default hour) over the last ?minutes=."""
    obj = get_object_or_404(Device, pk=pk)
    bucket = request.GET.get("bucket", "hour")
    try:
        minutes = _window_minutes(request)
        end = timezone.now()
        rows = lake_selectors.readings_aggregated(obj.name, None, bucket, end - timedelta(minutes=minutes), end)
    except ValueError as exc:  # a bad window or bucket
        return JsonResponse({"error": str(exc)}, status=400)
    except Exception as exc:
        logger.warning("aggregates of %s failed: %s", obj.name, exc, exc_info=True)
        return JsonResponse({"error": f"Could not read the aggregates from the lake: {exc}"}, status=503)
    order = lake_selectors.telemetry_metrics()
    data = {"bucket": bucket, "minutes": minutes, "order": order, "metrics": metrics_meta(order), "buckets": rows}
    return JsonResponse(selectors.json_safe(data))


@operator_required
@require_GET
def pipeline(request: HttpRequest) -> HttpResponse:
    """Recent pipeline runs, start buttons, the schedule, the errors zone and the catalog the crawler found."""
    return _pipeline_page(request)


def _pipeline_page(request: HttpRequest, schedule_form: ScheduleForm | None = None) -> HttpResponse:
    """Render the pipeline page; with schedule_form (invalid, from pipeline_schedule) show its errors, as a 400."""
    kinds = [(kind, pipeline_step_allowed(kind, request.user)) for kind in PipelineRun.Kind.values]
    runs = selectors.pipeline_runs()
    schedule = selectors.schedule_intervals()
    errors_zone, errors_error = selectors.errors_zone_summary()
    context = {
        "runs": runs,
        "active": any(not run.is_finished for run in runs),
        "kinds": kinds,
        "tables": CatalogTable.objects.order_by("database", "name"),
        "schedule": schedule,
        "schedule_form": schedule_form or _schedule_form(schedule),
        "can_schedule": is_admin(request.user),
        "errors_zone": errors_zone,
        "errors_error": errors_error,
    }
    return render(request, "dashboard/pipeline.html", context, status=400 if schedule_form else 200)


def _schedule_form(schedule: dict) -> ScheduleForm:
    """Return the schedule form showing the overrides in force (empty fields: the settings apply)."""
    crawl = schedule["crawl_interval_s"] if schedule["crawl_overridden"] else None
    train = schedule["train_interval_s"] if schedule["train_overridden"] else None
    return ScheduleForm(initial={"crawl_interval_s": crawl, "train_interval_s": train})


@admin_required
@require_POST
def pipeline_schedule(request: HttpRequest) -> HttpResponse:
    """Change the crawl/ETL and retrain intervals (admins); an invalid form shows the page again with its errors."""
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        return _pipeline_page(request, schedule_form=form)
    schedule_update(form.cleaned_data["crawl_interval_s"], form.cleaned_data["train_interval_s"], request.user)
    messages.success(request, "Schedule saved: the next pipeline cycle follows it.")
    return redirect("dashboard:pipeline")


@operator_required_json
@require_GET
def pipeline_runs(request: HttpRequest) -> JsonResponse:
    """JSON of the newest runs, for the pipeline page to refresh itself while something runs."""
    runs = [selectors.run_as_dict(run) for run in selectors.pipeline_runs()]
    return JsonResponse({"runs": runs, "active": any(not run["is_finished"] for run in runs)})


@operator_required
@require_POST
def pipeline_start(request: HttpRequest, kind: str) -> HttpResponse:
    """Queue a crawl/etl/train/deploy run (train and deploy: admins only) and go back to the pipeline page."""
    if kind not in PipelineRun.Kind.values:
        raise Http404(f"unknown pipeline step {kind!r}")
    run = pipeline_step_start(kind, {}, request.user)  # PermissionDenied becomes a 403
    messages.success(request, f"Queued {kind} run #{run.pk}: a worker picks it up shortly.")
    return redirect("dashboard:pipeline")


@operator_required
@require_GET
def forecasts(request: HttpRequest) -> HttpResponse:
    """Pick a device and metric; the page's script fetches and draws the forecast."""
    metrics, error = selectors.forecast_metrics_safe()
    device_names = list(Device.objects.values_list("name", flat=True))
    chosen_device = request.GET.get("device") or (device_names[0] if device_names else "")
    # Default to what the endpoint serves: other metrics have no model to answer them.
    chosen_metric = request.GET.get("metric") or selectors.deployed_metric() or metrics[0]
    context = {
        "device_names": device_names,
        "metrics": [(name, metric_label(name)) for name in metrics],
        "chosen_device": chosen_device,
        "chosen_metric": chosen_metric,
        "metrics_meta": metrics_meta(metrics),
        "lake_error": error,
        "variants": forecast_variants(settings.DEFAULT_ENDPOINT_NAME),
        "chosen_variant": request.GET.get("variant", ""),
    }
    return render(request, "dashboard/forecasts.html", context)


@operator_required_json
@require_GET
def forecast_data(request: HttpRequest) -> JsonResponse:
    """JSON history and forecast for ?device=&metric=[&variant=], or {"error", "hint"} when none can be made."""
    device_name = request.GET.get("device", "")
    metric = request.GET.get("metric") or None
    if not Device.objects.filter(name=device_name).exists():
        return JsonResponse({"error": f"Unknown device {device_name!r}."}, status=404)
    try:
        from forecasts.services.forecasting import forecast_for_device

        data = forecast_for_device(device_name, metric=metric, target_variant=request.GET.get("variant") or None)
    except Exception as exc:
        logger.info("forecast for %s/%s failed: %s", device_name, metric, exc)
        hint = NO_MODEL_HINT if selectors.deployed_model_count() == 0 else ""
        return JsonResponse({"error": str(exc) or type(exc).__name__, "hint": hint}, status=503)
    return JsonResponse(selectors.json_safe(data))


@operator_required_json
@require_GET
def forecast_past(request: HttpRequest) -> JsonResponse:
    """JSON of ?device=&metric='s past forecasts, the actuals over them and the accuracy achieved per variant
    (see dashboard.past_forecasts.past_forecasts); ?variant= narrows the drawn forecasts to that variant."""
    device_name, metric = request.GET.get("device", ""), request.GET.get("metric", "")
    if not Device.objects.filter(name=device_name).exists():
        return JsonResponse({"error": f"Unknown device {device_name!r}."}, status=404)
    if not metric:
        return JsonResponse({"error": "Pick a metric."}, status=400)
    try:
        return JsonResponse(past_forecasts(device_name, metric, request.GET.get("variant") or None))
    except ValueError as exc:  # an unknown metric
        return JsonResponse({"error": str(exc)}, status=400)
    except Exception as exc:
        logger.warning("past forecasts of %s/%s failed: %s", device_name, metric, exc, exc_info=True)
        return JsonResponse({"error": f"Could not read the actuals from the lake: {exc}"}, status=503)


@cache
def _plotly_bytes() -> tuple[bytes, bytes, str]:
    """Return (plotly.min.js, its gzip, plotly's version), read once from the plotly package."""
    import plotly

    raw = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    return raw, gzip.compress(raw, compresslevel=6), plotly.__version__


def plotly_version() -> str:
    """Return the installed plotly version (it versions the script's URL, so caching forever is safe)."""
    import plotly

    return plotly.__version__


@require_GET
def plotly_js(request: HttpRequest, version: str) -> HttpResponse:
    """Serve the plotly.js bundled in the plotly package, so the dashboard needs no CDN."""
    raw, zipped, current = _plotly_bytes()
    if version != current:
        raise Http404("no such plotly version")
    use_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    response = HttpResponse(zipped if use_gzip else raw, content_type="text/javascript; charset=utf-8")
    if use_gzip:
        response["Content-Encoding"] = "gzip"
    response["Vary"] = "Accept-Encoding"
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


# Plotly's geo charts load base-map shapes (topojson) from a CDN by default; the project ships Plotly's own
# world files (dashboard/topojson/README.md) and serves them here, so no request leaves the project.
TOPOJSON_DIR = Path(__file__).resolve().parent / "topojson"
TOPOJSON_FILES = {"world_110m", "world_50m"}


@require_GET
def topojson(request: HttpRequest, name: str = "") -> FileResponse:
    """Serve a shipped plotly topojson file (world_110m, world_50m); any other name is a 404."""
    if name not in TOPOJSON_FILES:
        raise Http404("no such base map")
    response = FileResponse((TOPOJSON_DIR / f"{name}.json").open("rb"), content_type="application/json")
    response["Cache-Control"] = "public, max-age=86400"
    return response
