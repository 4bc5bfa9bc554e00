"""Operator pages of the data lake (server-rendered, extending dashboard/base.html), mounted at /lake/."""

from django.urls import path

from forecasts import lake_views

app_name = "lake"

urlpatterns = [
    path("", lake_views.catalog, name="catalog"),
    path("sql/", lake_views.sql_console, name="sql"),
    path("import/", lake_views.import_readings, name="import"),
    path("export/", lake_views.export_readings, name="export"),
]
