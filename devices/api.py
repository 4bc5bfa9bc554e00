"""REST views: register a device (returns its kit once), list devices, show one."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.fields import get_error_detail
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cloud.interfaces import BackendError
from devices import selectors, services
from devices.models import Device
from devices.serializers import DeviceCreateInputSerializer, DeviceCreateOutputSerializer, DeviceOutputSerializer


class IdentityUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The device identity service is unavailable."


class DeviceCollectionApi(APIView):
    """GET lists devices; POST registers one and returns its kit (the private key only this once)."""

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
        try:
            device, credentials = services.device_register(**data.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(get_error_detail(exc)) from exc
        except BackendError as exc:
            raise IdentityUnavailable(str(exc)) from exc
        device = selectors.device_get(device.pk)  # re-read with its certificates
        device.kit = services.device_kit_data(device, credentials)
        return Response(DeviceCreateOutputSerializer(device).data, status=status.HTTP_201_CREATED)


class DeviceDetailApi(APIView):
    """GET one device by numeric id."""

    @extend_schema(responses=DeviceOutputSerializer, operation_id="devices_retrieve")
    def get(self, request: Request, device_id: int) -> Response:
        try:
            device = selectors.device_get(device_id)
        except Device.DoesNotExist as exc:
            raise NotFound(f"No device with id {device_id}.") from exc
        return Response(DeviceOutputSerializer(device).data)
