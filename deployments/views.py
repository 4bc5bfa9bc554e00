"""The /serving/ page: endpoints, their variants' weights, live per-variant metrics and rollouts in progress."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.roles import is_admin
from deployments.selectors import endpoint_list, operation_active


@login_required
def serving(request: HttpRequest) -> HttpResponse:
    """Render every endpoint; its script reads and changes them through the REST API (admins only change)."""
    endpoints = [(endpoint, operation_active(endpoint.name)) for endpoint in endpoint_list()]
    return render(request, "deployments/serving.html", {"endpoints": endpoints, "can_change": is_admin(request.user)})
