"""REST views: a device's readings from the lake, and the tables in the data catalog."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cloud.interfaces import BackendError
from devices.models import Device
from devices.selectors import device_get
from forecasts import selectors
from forecasts.serializers import CatalogTableOutputSerializer, ReadingsOutputSerializer, ReadingsQueryInputSerializer


class QueryUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The telemetry query engine is unavailable."


class DeviceReadingsApi(APIView):
    """GET a device's readings in a time window (default: the last 24 h), newest last."""

    @extend_schema(
        parameters=[ReadingsQueryInputSerializer],
        responses=ReadingsOutputSerializer,
        operation_id="devices_readings_list",
    )
    def get(self, request: Request, device_id: int) -> Response:
        try:
            device = device_get(device_id)
        except Device.DoesNotExist as exc:
            raise NotFound(f"No device with id {device_id}.") from exc
        query = ReadingsQueryInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            readings = selectors.readings_recent(device.name, **query.validated_data)
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        except BackendError as exc:
            raise QueryUnavailable(str(exc)) from exc
        data = {"device": device.name, "count": len(readings), "readings": readings}
        return Response(ReadingsOutputSerializer(data).data)


class CatalogTableListApi(APIView):
    """GET the tables the crawler has recorded in the data catalog."""

    @extend_schema(responses=CatalogTableOutputSerializer(many=True), operation_id="catalog_tables_list")
    def get(self, request: Request) -> Response:
        return Response(CatalogTableOutputSerializer(selectors.catalog_tables(), many=True).data)
