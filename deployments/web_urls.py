"""Operator pages of this stage (server-rendered, extending dashboard/base.html), mounted under /serving/."""

from django.urls import path

from deployments import views

app_name = "serving"

urlpatterns = [path("", views.serving, name="endpoints")]
