"""Operator pages of training (server-rendered, extending dashboard/base.html), mounted under /training/."""

from django.urls import path

from forecasts import training_views as views

app_name = "training"

urlpatterns = [
    path("", views.training_home, name="home"),
    path("datasets/new", views.dataset_create, name="dataset_create"),
    path("datasets/<slug:name>/<str:channel>/data.json", views.dataset_download, name="dataset_download"),
    path("jobs/new", views.job_start, name="job_start"),
    path("jobs/<str:name>", views.job_detail, name="job"),
    path("jobs/<str:name>/cancel", views.job_cancel, name="job_cancel"),
    path("models/compare", views.model_compare, name="compare"),
    path("models/<str:name>", views.model_detail, name="model"),
    path("models/<str:name>/alias", views.alias_set, name="alias_set"),
]
