"""Admin: devices with their certificates; adding a device registers it and offers its kit once."""

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from cloud.interfaces import BackendError, DeviceCredentials
from devices import services
from devices.models import Device, DeviceCertificate, TopicRule

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
    list_display = ("name", "device_type", "status", "latitude", "longitude", "last_seen_at", "created_at")
    list_filter = ("status", "device_type")
    search_fields = ("name",)
    inlines = [DeviceCertificateInline]
    actions = ["disable_devices", "enable_devices"]

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> tuple:
        # The name is the certificate's CN and the topic level; the status changes only through the actions,
        # which also tell the broker.
        return ("name", "status", "created_at", "last_seen_at", "last_message") if obj else ("status",)

    @admin.action(description="Disable (drop their connections, refuse new ones)")
    def disable_devices(self, request: HttpRequest, queryset) -> None:
        self._set_status(request, queryset, Device.Status.DISABLED)

    @admin.action(description="Enable")
    def enable_devices(self, request: HttpRequest, queryset) -> None:
        self._set_status(request, queryset, Device.Status.ACTIVE)

    def _set_status(self, request: HttpRequest, queryset, status: str) -> None:
        try:
            for device in queryset:
                services.device_set_status(device, status)
        except BackendError as exc:
            self.message_user(request, f"stopped at {device.name}: {exc}", messages.ERROR)
            return
        self.message_user(request, f"{queryset.count()} device(s) {status}.", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Device, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        device, credentials = services.device_register(
            obj.name, obj.latitude, obj.longitude, obj.attributes, device_type=obj.device_type
        )
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
    readonly_fields = ("device", *_CERT_FIELDS, "revoked_at", "certificate_pem")
    actions = ["revoke_certificates"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke (for good; the broker drops their connections)")
    def revoke_certificates(self, request: HttpRequest, queryset) -> None:
        try:
            for certificate in queryset.select_related("device"):
                services.device_certificate_revoke(certificate)
        except BackendError as exc:
            self.message_user(request, f"stopped: {exc}", messages.ERROR)
            return
        self.message_user(request, f"{queryset.count()} certificate(s) revoked.", messages.SUCCESS)


@admin.register(TopicRule)
class TopicRuleAdmin(admin.ModelAdmin):
    """The IoT rule + delivery stream; saving deploys it through the identity backend (services.topic_rule_deploy)."""

    list_display = ("name", "enabled", "where", "buffer_size_mb", "buffer_interval_s", "updated_at")
    readonly_fields = ("sql", "updated_at")
    fields = TopicRule.SHOWN_FIELDS

    def save_model(self, request: HttpRequest, obj: TopicRule, form, change: bool) -> None:
        # The form has validated the fields; the service saves and deploys (IoT rule + Firehose on aws).
        try:
            deployment = services.topic_rule_deploy(obj)
        except BackendError as exc:
            self.message_user(request, f"Saved, but not deployed: {exc}. Save again to retry.", messages.ERROR)
            return
        level = messages.WARNING if deployment.restart_needed else messages.INFO
        restart = " Restart the ingest to apply it." if deployment.restart_needed else ""
        self.message_user(request, f"Deployed to {deployment.location}. {deployment.message}{restart}", level)
