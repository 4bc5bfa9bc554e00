"""REST views: register devices (one, or many from a CSV), list and show them, kits, rotation, revocation, disabling;
topic rules (saving one deploys it)."""

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.fields import get_error_detail
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cloud.interfaces import BackendError
from dashboard.roles import IsAdminRoleOrReadOnly
from devices import selectors, services
from devices.models import Device, DeviceCertificate, TopicRule
from devices.serializers import (
    CertificateOutputSerializer,
    CertificateRotateOutputSerializer,
    DeviceCreateInputSerializer,
    DeviceCreateOutputSerializer,
    DeviceOutputSerializer,
    DevicesBulkInputSerializer,
    DeviceStatusInputSerializer,
    TopicRuleDeployOutputSerializer,
    TopicRuleInputSerializer,
    TopicRuleOutputSerializer,
)

_ZIP = OpenApiResponse(OpenApiTypes.BINARY, description="application/zip: one <name>-kit/ folder per device")


class IdentityUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The device identity service is unavailable."


class DeviceCollectionApi(APIView):
    """GET lists devices; POST registers one and returns its kit (the private key only this once)."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(responses=DeviceOutputSerializer(many=True), operation_id="devices_list")
    def get(self, request: Request) -> Response:
        return Response(DeviceOutputSerializer(selectors.device_list(), many=True).data)

    @extend_schema(
        request=DeviceCreateInputSerializer,
        responses={201: DeviceCreateOutputSerializer},
        operation_id="devices_create",
    )
    def post(self, request: Request) -> Response:
        data = DeviceCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        device, credentials = _call(services.device_register, **data.validated_data)
        device = selectors.device_get(device.pk)  # re-read with its certificates
        device.kit = services.device_kit_data(device, credentials)
        return Response(DeviceCreateOutputSerializer(device).data, status=status.HTTP_201_CREATED)


class DeviceDetailApi(APIView):
    """GET one device by numeric id."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(responses=DeviceOutputSerializer, operation_id="devices_retrieve")
    def get(self, request: Request, device_id: int) -> Response:
        return Response(DeviceOutputSerializer(_device(device_id)).data)


class DeviceStatusApi(APIView):
    """POST {"status": "disabled"} drops the device's live connections and refuses new ones; "active" undoes it."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(request=DeviceStatusInputSerializer, responses=DeviceOutputSerializer, operation_id="devices_status")
    def post(self, request: Request, device_id: int) -> Response:
        data = DeviceStatusInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        device = _call(services.device_set_status, _device(device_id), data.validated_data["status"])
        return Response(DeviceOutputSerializer(selectors.device_get(device.pk)).data)


class DeviceCertificateCollectionApi(APIView):
    """POST issues one more certificate (rotation: the old ones keep working until revoked); returns its kit once."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(request=None, responses={201: CertificateRotateOutputSerializer}, operation_id="devices_rotate")
    def post(self, request: Request, device_id: int) -> Response:
        device = _device(device_id)
        certificate, credentials = _call(services.device_certificate_rotate, device)
        certificate.kit = services.device_kit_data(device, credentials)
        return Response(CertificateRotateOutputSerializer(certificate).data, status=status.HTTP_201_CREATED)


class DeviceKitApi(APIView):
    """POST issues a new certificate and returns the device's connection kit as a zip (IoT Core's onboarding kit)."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(request=None, responses={(200, "application/zip"): _ZIP}, operation_id="devices_kit")
    def post(self, request: Request, device_id: int) -> HttpResponse:
        device = _device(device_id)
        _certificate, credentials = _call(services.device_certificate_rotate, device)
        return _zip_response(services.device_kit_zip(device, credentials), f"{device.name}-kit.zip")


class CertificateRevokeApi(APIView):
    """POST revokes a certificate for good: the broker refuses it and drops the connections of its device."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(request=None, responses=CertificateOutputSerializer, operation_id="certificates_revoke")
    def post(self, request: Request, certificate_id: str) -> Response:
        try:
            certificate = selectors.certificate_get(certificate_id)
        except DeviceCertificate.DoesNotExist as exc:
            raise NotFound(f"No certificate {certificate_id}.") from exc
        return Response(CertificateOutputSerializer(_call(services.device_certificate_revoke, certificate)).data)


class DevicesBulkApi(APIView):
    """POST a CSV (multipart field "file"): registers every device or, on any bad line, none; returns all kits."""

    permission_classes = [IsAdminRoleOrReadOnly]

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": DevicesBulkInputSerializer},
        responses={(201, "application/zip"): _ZIP},
        operation_id="devices_bulk_create",
    )
    def post(self, request: Request) -> HttpResponse:
        data = DevicesBulkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        text = _decode(data.validated_data["file"].read())
        rows = _call(services.devices_parse_csv, text)
        registered = _call(services.devices_register_bulk, rows)
        return _zip_response(services.devices_kits_zip(registered), "iotcast-kits.zip", status.HTTP_201_CREATED)


class TopicRuleCollectionApi(APIView):
    """GET lists the topic rules (IoT rule + Firehose delivery stream)."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(responses=TopicRuleOutputSerializer(many=True), operation_id="topic_rules_list")
    def get(self, request: Request) -> Response:
        return Response(TopicRuleOutputSerializer(selectors.topic_rule_list(), many=True).data)


class TopicRuleDetailApi(APIView):
    """GET one rule; PUT creates or changes it and deploys it (aws: IoT rule + Firehose; local: the ingest reloads)."""

    permission_classes = [IsAdminRoleOrReadOnly]

    @extend_schema(responses=TopicRuleOutputSerializer, operation_id="topic_rules_retrieve")
    def get(self, request: Request, name: str) -> Response:
        try:
            return Response(TopicRuleOutputSerializer(selectors.topic_rule_detail(name)).data)
        except TopicRule.DoesNotExist as exc:
            raise NotFound(f"No topic rule {name}.") from exc

    @extend_schema(
        request=TopicRuleInputSerializer, responses=TopicRuleDeployOutputSerializer, operation_id="topic_rules_put"
    )
    def put(self, request: Request, name: str) -> Response:
        data = TopicRuleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule, deployment = _call(services.topic_rule_put, name, **data.validated_data)
        rule.deployment = deployment
        return Response(TopicRuleDeployOutputSerializer(rule).data)


def _device(device_id: int) -> Device:
    try:
        return selectors.device_get(device_id)
    except Device.DoesNotExist as exc:
        raise NotFound(f"No device with id {device_id}.") from exc


def _call(service: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run a service, turning its ValidationError into a 400 and BackendError into a 503."""
    try:
        return service(*args, **kwargs)
    except DjangoValidationError as exc:
        raise ValidationError(get_error_detail(exc)) from exc
    except BackendError as exc:
        raise IdentityUnavailable(str(exc)) from exc


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError({"file": "the CSV must be UTF-8 text"}) from exc


def _zip_response(data: bytes, filename: str, code: int = status.HTTP_200_OK) -> HttpResponse:
    response = HttpResponse(data, content_type="application/zip", status=code)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
