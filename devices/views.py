"""Fleet pages (/fleet/): the registry with certificates; admins register (one or a CSV), download kits,
rotate and revoke certificates, and disable or enable devices. Each action is one service call."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from cloud.interfaces import BackendError
from dashboard.roles import admin_required, is_admin, operator_required
from devices import selectors, services
from devices.models import Device, DeviceCertificate


def _zip(data: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _failure(request: HttpRequest, exc: Exception) -> None:
    text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    messages.error(request, text)


@operator_required
@require_GET
def fleet(request: HttpRequest) -> HttpResponse:
    """The registry: every device with its type, status and certificates."""
    context = {"devices": selectors.device_list(), "can_manage": is_admin(request.user)}
    return render(request, "devices/fleet.html", context)


@operator_required
@require_GET
def fleet_device(request: HttpRequest, device_id: int) -> HttpResponse:
    """One device: attributes, certificates (with revoke buttons for admins), status actions."""
    device = get_object_or_404(selectors.device_list(), pk=device_id)
    return render(request, "devices/fleet_device.html", {"device": device, "can_manage": is_admin(request.user)})


@admin_required
@require_POST
def fleet_register(request: HttpRequest) -> HttpResponse:
    """Register one device from the form and answer with its kit zip (the only copy of its key)."""
    try:
        latitude, longitude = _float(request.POST.get("latitude")), _float(request.POST.get("longitude"))
        device, credentials = services.device_register(
            request.POST.get("name", "").strip(), latitude, longitude, device_type=request.POST.get("device_type", "")
        )
    except (ValidationError, BackendError) as exc:
        _failure(request, exc)
        return redirect("fleet:fleet")
    return _zip(services.device_kit_zip(device, credentials), f"{device.name}-kit.zip")


@admin_required
@require_POST
def fleet_bulk(request: HttpRequest) -> HttpResponse:
    """Register every device of an uploaded CSV (or none) and answer with one zip of all kits."""
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise ValidationError("Choose a CSV file first.")
        rows = services.devices_parse_csv(_text(upload.read()))
        registered = services.devices_register_bulk(rows)
    except (ValidationError, BackendError) as exc:
        _failure(request, exc)
        return redirect("fleet:fleet")
    return _zip(services.devices_kits_zip(registered), "iotcast-kits.zip")


@admin_required
@require_POST
def fleet_kit(request: HttpRequest, device_id: int) -> HttpResponse:
    """Issue a new certificate (the old ones keep working) and answer with the device's kit zip."""
    device = get_object_or_404(Device, pk=device_id)
    try:
        _certificate, credentials = services.device_certificate_rotate(device)
    except (ValidationError, BackendError) as exc:
        _failure(request, exc)
        return redirect("fleet:device", device_id=device.pk)
    return _zip(services.device_kit_zip(device, credentials), f"{device.name}-kit.zip")


@admin_required
@require_POST
def fleet_status(request: HttpRequest, device_id: int) -> HttpResponse:
    """Disable (drops its connections) or enable the device, then show it again."""
    device = get_object_or_404(Device, pk=device_id)
    status = request.POST.get("status", "")
    try:
        services.device_set_status(device, status)
        messages.success(request, f"{device.name} is now {status}.")
    except (ValueError, BackendError) as exc:
        _failure(request, exc)
    return redirect("fleet:device", device_id=device.pk)


@admin_required
@require_POST
def fleet_revoke(request: HttpRequest, certificate_id: str) -> HttpResponse:
    """Revoke one certificate for good (the broker refuses it and drops its device's connections)."""
    certificate = get_object_or_404(DeviceCertificate.objects.select_related("device"), certificate_id=certificate_id)
    try:
        services.device_certificate_revoke(certificate)
        messages.success(request, f"Certificate {certificate.fingerprint[:16]}… revoked.")
    except BackendError as exc:
        _failure(request, exc)
    return redirect("fleet:device", device_id=certificate.device_id)


def _float(text: str | None) -> float | None:
    if not text or not text.strip():
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ValidationError(f"{text!r} is not a number") from exc


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("The CSV must be UTF-8 text.") from exc
