"""REST routes of this app, mounted under /api/v1/."""

from django.urls import path

from deployments.api import EndpointListApi, ForecastApi, InvocationApi

app_name = "deployments"

urlpatterns = [
    path("endpoints/", EndpointListApi.as_view(), name="endpoint-list"),
    path("endpoints/<str:name>/invocations", InvocationApi.as_view(), name="endpoint-invocations"),
    path("forecasts/", ForecastApi.as_view(), name="forecast-create"),
]
