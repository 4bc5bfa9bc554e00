"""The Alarms page: active and cleared alarms (acknowledge, clear), the rules, evaluating on demand."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from alarms import selectors, services
from alarms.models import Alarm, AlarmRule
from dashboard.forms import AlarmRuleForm
from dashboard.roles import admin_required, is_admin, operator_required


def _back(request: HttpRequest) -> HttpResponse:
    """Redirect to ?next= when it is a local URL (the device page posts here too), else to the Alarms page."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("dashboard:alarms")


def _page(request: HttpRequest, form: AlarmRuleForm | None, status: int = 200) -> HttpResponse:
    context = {
        "active": selectors.alarms_active(),
        "cleared": selectors.alarms_cleared(),
        "rules": selectors.alarm_rules(),
        "form": form if form is not None else (AlarmRuleForm() if is_admin(request.user) else None),
    }
    return render(request, "dashboard/alarms.html", context, status=status)


@operator_required
@require_GET
def alarms(request: HttpRequest) -> HttpResponse:
    """Active alarms (unacknowledged first), recently cleared ones, and the rules (admins: a form for new ones)."""
    return _page(request, None)


@operator_required
@require_POST
def alarm_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """Acknowledge one alarm (operators and admins) and go back."""
    alarm = get_object_or_404(Alarm, pk=pk)
    services.alarm_acknowledge(alarm.pk, request.user)
    messages.success(request, f"Acknowledged: {alarm.message} on {alarm.device.name}.")
    return _back(request)


@operator_required
@require_POST
def alarm_clear(request: HttpRequest, pk: int) -> HttpResponse:
    """Clear one alarm by hand (operators and admins) and go back."""
    alarm = get_object_or_404(Alarm, pk=pk)
    services.alarm_clear(alarm.pk, request.user)
    messages.success(request, f"Cleared: {alarm.message} on {alarm.device.name}.")
    return _back(request)


@operator_required
@require_POST
def alarms_evaluate(request: HttpRequest) -> HttpResponse:
    """Evaluate every enabled rule now (the scheduler does it every IOTCAST_ALARM_INTERVAL_S) and go back."""
    totals = services.alarms_evaluate()
    messages.success(
        request,
        f"Evaluated {totals['rules']} rules: {totals['raised']} alarms raised, {totals['cleared']} cleared"
        + (f", {totals['errors']} could not be judged (see the rules)." if totals["errors"] else "."),
    )
    return _back(request)


@admin_required
@require_POST
def alarm_rule_create(request: HttpRequest) -> HttpResponse:
    """Create a rule from the form (admins only); on invalid input show the page again with the errors (400)."""
    form = AlarmRuleForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    rule = form.save()
    messages.success(request, f"Created rule {rule.name}: it is evaluated within a minute, or press Evaluate now.")
    return redirect("dashboard:alarms")


@admin_required
@require_POST
def alarm_rule_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    """Enable or disable a rule (admins only)."""
    rule = get_object_or_404(AlarmRule, pk=pk)
    AlarmRule.objects.filter(pk=rule.pk).update(enabled=not rule.enabled)
    messages.success(request, f"Rule {rule.name} {'disabled' if rule.enabled else 'enabled'}.")
    return redirect("dashboard:alarms")


@admin_required
@require_POST
def alarm_rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a rule and its alarms (admins only)."""
    rule = get_object_or_404(AlarmRule, pk=pk)
    rule.delete()
    messages.success(request, f"Deleted rule {rule.name} and its alarms.")
    return redirect("dashboard:alarms")
