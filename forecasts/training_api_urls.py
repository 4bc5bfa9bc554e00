"""REST routes of training and the model registry; the lead mounts them under /api/v1/."""

from django.urls import path

from forecasts import training_api as api

app_name = "training-api"

urlpatterns = [
    path("training/datasets/", api.DatasetListApi.as_view(), name="datasets"),
    path("training/datasets/<slug:name>", api.DatasetDetailApi.as_view(), name="dataset"),
    path("training/datasets/<slug:name>/<str:channel>/data.json", api.DatasetChannelApi.as_view(), name="channel"),
    path("training/jobs/", api.TrainingJobListApi.as_view(), name="jobs"),
    path("training/jobs/<str:name>", api.TrainingJobDetailApi.as_view(), name="job"),
    path("training/jobs/<str:name>/cancel", api.TrainingJobCancelApi.as_view(), name="job-cancel"),
    path("registry/models/", api.ModelListApi.as_view(), name="models"),
    path("registry/models/<str:name>", api.ModelDetailApi.as_view(), name="model"),
    path("registry/aliases/", api.AliasListApi.as_view(), name="aliases"),
    path("registry/aliases/<slug:alias>", api.AliasDetailApi.as_view(), name="alias"),
]
