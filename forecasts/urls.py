"""REST routes of this app, mounted under /api/v1/."""

from django.urls import path

from forecasts.api import CatalogTableListApi, DeviceAggregatesApi, DeviceReadingsApi

app_name = "forecasts"

urlpatterns = [
    path("devices/<int:device_id>/readings", DeviceReadingsApi.as_view(), name="device-readings"),
    path("devices/<int:device_id>/aggregates", DeviceAggregatesApi.as_view(), name="device-aggregates"),
    path("catalog/tables/", CatalogTableListApi.as_view(), name="catalog-tables"),
]
