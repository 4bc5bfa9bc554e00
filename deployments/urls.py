"""REST routes of this app, mounted under /api/v1/."""

from django.urls import path

from deployments import api

app_name = "deployments"

urlpatterns = [
    path("endpoints/", api.EndpointListApi.as_view(), name="endpoint-list"),
    path("endpoints/<str:name>", api.EndpointDetailApi.as_view(), name="endpoint-detail"),
    path("endpoints/<str:name>/invocations", api.InvocationApi.as_view(), name="endpoint-invocations"),
    path("endpoints/<str:name>/weights", api.EndpointWeightsApi.as_view(), name="endpoint-weights"),
    path("endpoints/<str:name>/deployments", api.EndpointDeploymentsApi.as_view(), name="endpoint-deployments"),
    path(
        "endpoints/<str:name>/operations/<int:operation_id>/stop",
        api.OperationStopApi.as_view(),
        name="endpoint-operation-stop",
    ),
    path("endpoints/<str:name>/metrics", api.EndpointMetricsApi.as_view(), name="endpoint-metrics"),
    path("endpoints/<str:name>/shadow", api.EndpointShadowApi.as_view(), name="endpoint-shadow"),
    path("forecasts/", api.ForecastApi.as_view(), name="forecast-create"),
]
