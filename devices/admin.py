"""Admin: devices with their certificates; adding a device registers it and offers its kit once."""

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from cloud.interfaces import DeviceCredentials
from devices import services
from devices.models import Device, DeviceCertificate

_KIT_SESSION_KEY = "devices.kit.{}"
_CERT_FIELDS = ("certificate_id", "fingerprint", "not_after", "status", "created_at")


class DeviceCertificateInline(admin.TabularInline):
    model = DeviceCertificate
    extra = 0
    can_delete = False
    fields = readonly_fields = _CERT_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Device | None = None) -> bool:
        # Certificates are issued by registration, never typed in.
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "latitude", "longitude", "created_at")
    list_filter = ("status",)
    search_fields = ("name",)
    inlines = [DeviceCertificateInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> tuple:
        # The name is the certificate's CN and the topic level: it cannot change after registration.
        return ("name", "created_at") if obj else ()

    def save_model(self, request: HttpRequest, obj: Device, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        device, credentials = services.device_register(obj.name, obj.latitude, obj.longitude, obj.attributes)
        # The admin goes on with obj (inlines, messages, redirect): make it the saved row.
        obj.pk, obj.created_at, obj._state.adding, obj._state.db = device.pk, device.created_at, False, device._state.db
        request.session[_KIT_SESSION_KEY.format(device.pk)] = {
            "certificate_pem": credentials.certificate_pem,
            "private_key_pem": credentials.private_key_pem,
            "ca_pem": credentials.ca_pem,
        }

    def response_add(self, request: HttpRequest, obj: Device, post_url_continue: str | None = None) -> HttpResponse:
        url = reverse("admin:devices_device_kit", args=[obj.pk])
        messages.warning(
            request,
            format_html(
                '<a href="{}">Download the device kit for {}</a> now: it holds the only copy of its key.', url, obj
            ),
        )
        return super().response_add(request, obj, post_url_continue)

    def get_urls(self) -> list:
        kit = path("<int:device_id>/kit/", self.admin_site.admin_view(self.kit_view), name="devices_device_kit")
        return [kit, *super().get_urls()]

    def kit_view(self, request: HttpRequest, device_id: int) -> HttpResponse:
        """Return the kit zip once (the key leaves the session with it), else go back to the device."""
        device = get_object_or_404(Device, pk=device_id)
        if not self.has_change_permission(request, device):
            return HttpResponse(status=403)
        pems = request.session.pop(_KIT_SESSION_KEY.format(device_id), None)
        if pems is None:
            messages.error(request, "The kit was already downloaded (or never issued in this session).")
            return HttpResponseRedirect(reverse("admin:devices_device_change", args=[device_id]))
        certificate = device.certificates.get(certificate_pem=pems["certificate_pem"])
        credentials = DeviceCredentials(
            certificate_id=certificate.certificate_id,
            fingerprint=certificate.fingerprint,
            not_after=certificate.not_after,
            **pems,
        )
        response = HttpResponse(services.device_kit_zip(device, credentials), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{device.name}-kit.zip"'
        return response


@admin.register(DeviceCertificate)
class DeviceCertificateAdmin(admin.ModelAdmin):
    list_display = ("device", "certificate_id", "status", "not_after", "created_at")
    list_filter = ("status",)
    search_fields = ("device__name", "certificate_id", "fingerprint")
    readonly_fields = ("device", *_CERT_FIELDS, "certificate_pem")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
