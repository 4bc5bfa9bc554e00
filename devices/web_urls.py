"""Operator pages of this stage (server-rendered, extending dashboard/base.html), mounted under /fleet/."""

from django.urls import path

from devices import views

app_name = "fleet"

urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("register/", views.fleet_register, name="register"),
    path("bulk/", views.fleet_bulk, name="bulk"),
    path("<int:device_id>/", views.fleet_device, name="device"),
    path("<int:device_id>/kit/", views.fleet_kit, name="kit"),
    path("<int:device_id>/status/", views.fleet_status, name="status"),
    path("certificates/<str:certificate_id>/revoke/", views.fleet_revoke, name="revoke"),
]
