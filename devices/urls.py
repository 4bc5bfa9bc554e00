"""REST routes of this app, mounted under /api/v1/."""

from django.urls import path

from devices.api import (
    CertificateRevokeApi,
    DeviceCertificateCollectionApi,
    DeviceCollectionApi,
    DeviceDetailApi,
    DeviceKitApi,
    DevicesBulkApi,
    DeviceStatusApi,
    TopicRuleCollectionApi,
    TopicRuleDetailApi,
)

app_name = "devices"

urlpatterns = [
    path("devices/", DeviceCollectionApi.as_view(), name="device-collection"),
    path("devices/bulk/", DevicesBulkApi.as_view(), name="device-bulk"),
    path("devices/<int:device_id>/", DeviceDetailApi.as_view(), name="device-detail"),
    path("devices/<int:device_id>/status/", DeviceStatusApi.as_view(), name="device-status"),
    path("devices/<int:device_id>/certificates/", DeviceCertificateCollectionApi.as_view(), name="device-certificates"),
    path("devices/<int:device_id>/kit/", DeviceKitApi.as_view(), name="device-kit"),
    path("topic-rules/", TopicRuleCollectionApi.as_view(), name="topic-rule-collection"),
    path("topic-rules/<str:name>/", TopicRuleDetailApi.as_view(), name="topic-rule-detail"),
    path("certificates/<str:certificate_id>/revoke/", CertificateRevokeApi.as_view(), name="certificate-revoke"),
]
