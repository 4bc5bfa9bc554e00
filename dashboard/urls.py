"""Dashboard pages, the JSON views their scripts poll, and the locally served plotly.js."""

from django.urls import path

from dashboard import alarm_views, views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("devices/", views.devices, name="devices"),
    path("devices/<int:pk>/", views.device, name="device"),
    path("devices/<int:pk>/readings.json", views.device_readings, name="device_readings"),
    path("devices/<int:pk>/aggregates.json", views.device_aggregates, name="device_aggregates"),
    path("pipeline/", views.pipeline, name="pipeline"),
    path("pipeline/runs.json", views.pipeline_runs, name="pipeline_runs"),
    path("pipeline/start/<str:kind>/", views.pipeline_start, name="pipeline_start"),
    path("pipeline/schedule/", views.pipeline_schedule, name="pipeline_schedule"),
    path("forecasts/", views.forecasts, name="forecasts"),
    path("forecasts/data.json", views.forecast_data, name="forecast_data"),
    path("forecasts/past.json", views.forecast_past, name="forecast_past"),
    path("alarms/", alarm_views.alarms, name="alarms"),
    path("alarms/evaluate/", alarm_views.alarms_evaluate, name="alarms_evaluate"),
    path("alarms/<int:pk>/acknowledge/", alarm_views.alarm_acknowledge, name="alarm_acknowledge"),
    path("alarms/<int:pk>/clear/", alarm_views.alarm_clear, name="alarm_clear"),
    path("alarms/rules/", alarm_views.alarm_rule_create, name="alarm_rule_create"),
    path("alarms/rules/<int:pk>/toggle/", alarm_views.alarm_rule_toggle, name="alarm_rule_toggle"),
    path("alarms/rules/<int:pk>/delete/", alarm_views.alarm_rule_delete, name="alarm_rule_delete"),
    path("assets/plotly-<str:version>.min.js", views.plotly_js, name="plotly_js"),
    path("assets/topojson/", views.topojson, name="topojson_base"),
    path("assets/topojson/<str:name>.json", views.topojson, name="topojson"),
]
