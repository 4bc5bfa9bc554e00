"""The /lake/ pages: the data catalog, the admin SQL console, readings import (admins) and export."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from cloud.interfaces import BackendError
from dashboard.roles import admin_required, operator_required
from forecasts import selectors
from forecasts.lake_forms import ExportForm, ImportForm, SqlConsoleForm
from forecasts.services.export import EXPORT_FORMATS, readings_export_bytes
from forecasts.services.imports import readings_import
from forecasts.services.lake_sql import console_tables, lake_sql_run


@operator_required
def catalog(request: HttpRequest) -> HttpResponse:
    """The crawled tables: columns and types, partitions, last crawl and its policy, conflicts and changes."""
    return render(request, "lake/catalog.html", {"tables": selectors.catalog_tables()})


@admin_required
@require_http_methods(["GET", "POST"])
def sql_console(request: HttpRequest) -> HttpResponse:
    """Run one read-only SELECT over the lake's tables; errors are shown on the page, never as a 500."""
    form = SqlConsoleForm(request.POST or None)
    context: dict = {"form": form, "tables": console_tables()}
    if request.method == "POST" and form.is_valid():
        try:
            context["result"] = lake_sql_run(form.cleaned_data["sql"])
        except BackendError as exc:
            context["error"] = str(exc)
    return render(request, "lake/sql.html", context)


@admin_required
@require_http_methods(["GET", "POST"])
def import_readings(request: HttpRequest) -> HttpResponse:
    """Upload a CSV or NDJSON file of one device's readings into the raw zone; show what was kept and rejected."""
    form = ImportForm(request.POST or None, request.FILES or None)
    context: dict = {"form": form}
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        path = getattr(upload, "temporary_file_path", None)
        try:
            # A large upload is spooled to disk by Django: read that file, not the whole upload in memory.
            with Path(path()).open("rb") if path else nullcontext(upload.file) as handle:
                context["result"] = readings_import(
                    handle, form.cleaned_data["device"], form.kind, form.cleaned_data["metric_map"], upload.size
                )
        except BackendError as exc:
            context["error"] = f"the lake refused a write: {exc}"
    return render(request, "lake/import.html", context)


@operator_required
def export_readings(request: HttpRequest) -> HttpResponse:
    """The export form; submitted, a CSV or Parquet download of a device's readings in a time range."""
    form = ExportForm(request.GET or None)
    context: dict = {"form": form}
    if request.GET and form.is_valid():
        data = form.cleaned_data
        try:
            result = selectors.readings_export(data["device"], data["start"], data["end"], data["metrics"] or None)
        except (ValueError, BackendError) as exc:
            context["error"] = str(exc)
        else:
            response = HttpResponse(
                readings_export_bytes(result, data["format"]), content_type=EXPORT_FORMATS[data["format"]]
            )
            response["Content-Disposition"] = f'attachment; filename="{data["device"]}-readings.{data["format"]}"'
            return response
    return render(request, "lake/export.html", context)
