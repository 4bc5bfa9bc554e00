"""Dashboard pages, the JSON views their scripts poll, and the locally served plotly.js."""

from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("devices/", views.devices, name="devices"),
    path("devices/<int:pk>/", views.device, name="device"),
    path("devices/<int:pk>/readings.json", views.device_readings, name="device_readings"),
    path("pipeline/", views.pipeline, name="pipeline"),
    path("pipeline/runs.json", views.pipeline_runs, name="pipeline_runs"),
    path("pipeline/start/<str:kind>/", views.pipeline_start, name="pipeline_start"),
    path("forecasts/", views.forecasts, name="forecasts"),
    path("forecasts/data.json", views.forecast_data, name="forecast_data"),
    path("assets/plotly-<str:version>.min.js", views.plotly_js, name="plotly_js"),
]
