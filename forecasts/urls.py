"""REST routes of this app, mounted under /api/v1/."""

from django.urls import path

from forecasts.api import CatalogTableListApi, DeviceReadingsApi

app_name = "forecasts"

urlpatterns = [
    path("devices/<int:device_id>/readings", DeviceReadingsApi.as_view(), name="device-readings"),
    path("catalog/tables/", CatalogTableListApi.as_view(), name="catalog-tables"),
]
