"""The /serving/ page: endpoints, their variants' weights, live per-variant metrics and rollouts in progress."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.roles import is_admin
from deployments.selectors import endpoint_history_lines, endpoint_list, operation_active

HISTORY_LINES = 8  # a card shows the newest lines; the endpoint's REST detail has more


@login_required
def serving(request: HttpRequest) -> HttpResponse:
    """Render every endpoint with its history; its script reads and changes them through the REST API (admins
    only change) and follows the shadow variant's answers."""
    cards = [
        {
            "endpoint": endpoint,
            "active": operation_active(endpoint.name),
            "history": endpoint_history_lines(endpoint.name, HISTORY_LINES),
            "shadow": next((v for v in endpoint.variants.all() if v.shadow), None),
        }
        for endpoint in endpoint_list()
    ]
    return render(request, "deployments/serving.html", {"cards": cards, "can_change": is_admin(request.user)})
