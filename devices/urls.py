"""REST routes of this app, mounted under /api/v1/."""

from django.urls import path

from devices.api import DeviceCollectionApi, DeviceDetailApi

app_name = "devices"

urlpatterns = [
    path("devices/", DeviceCollectionApi.as_view(), name="device-collection"),
    path("devices/<int:device_id>/", DeviceDetailApi.as_view(), name="device-detail"),
]
