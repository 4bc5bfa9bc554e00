"""REST views: a device's readings and their aggregates from the lake, and the tables in the data catalog."""

import json

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from cloud.interfaces import BackendError
from devices.models import Device
from devices.selectors import device_get
from forecasts import selectors
from forecasts.serializers import (
    AggregatesOutputSerializer,
    AggregatesQueryInputSerializer,
    CatalogTableOutputSerializer,
    ReadingsOutputSerializer,
    ReadingsQueryInputSerializer,
)
from forecasts.services.export import EXPORT_FORMATS, readings_export_bytes


def _device_or_404(device_id: int) -> Device:
    """Return the device with this id; raise NotFound (404) naming the id when there is none."""
    try:
        return device_get(device_id)
    except Device.DoesNotExist as exc:
        raise NotFound(f"No device with id {device_id}.") from exc


class QueryUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The telemetry query engine is unavailable."


class _FileRenderer(BaseRenderer):
    """Passes ready-made file bytes through; selected by ?format= (DRF's format override)."""

    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        return json.dumps(data).encode()  # an error body


class CsvRenderer(_FileRenderer):
    media_type = EXPORT_FORMATS["csv"]
    format = "csv"


class ParquetRenderer(_FileRenderer):
    media_type = EXPORT_FORMATS["parquet"]
    format = "parquet"


class DeviceReadingsApi(APIView):
    """GET a device's readings in a time window (default: the last 24 h), newest last.

    ?format=csv or ?format=parquet downloads every reading of the window (oldest first) as a file.
    """

    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CsvRenderer, ParquetRenderer]

    @extend_schema(
        parameters=[ReadingsQueryInputSerializer],
        responses=ReadingsOutputSerializer,
        operation_id="devices_readings_list",
    )
    def get(self, request: Request, device_id: int) -> Response:
        device = _device_or_404(device_id)
        query = ReadingsQueryInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        fmt = request.accepted_renderer.format
        if fmt in EXPORT_FORMATS:
            return self._export(device.name, fmt, query.validated_data)
        try:
            readings = selectors.readings_recent(device.name, **query.validated_data)
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        except BackendError as exc:
            raise QueryUnavailable(str(exc)) from exc
        data = {"device": device.name, "count": len(readings), "readings": readings}
        return Response(ReadingsOutputSerializer(data).data)

    def _export(self, device: str, fmt: str, params: dict) -> Response:
        try:
            result = selectors.readings_export(device, params.get("start"), params.get("end"), params.get("metrics"))
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        except BackendError as exc:
            raise QueryUnavailable(str(exc)) from exc
        response = Response(readings_export_bytes(result, fmt), content_type=EXPORT_FORMATS[fmt])
        response["Content-Disposition"] = f'attachment; filename="{device}-readings.{fmt}"'
        return response


class DeviceAggregatesApi(APIView):
    """GET min, max, mean and p95 per metric per UTC minute/hour/day of a device's readings (default: last 24 h)."""

    @extend_schema(
        parameters=[AggregatesQueryInputSerializer],
        responses=AggregatesOutputSerializer,
        operation_id="devices_aggregates_list",
    )
    def get(self, request: Request, device_id: int) -> Response:
        device = _device_or_404(device_id)
        query = AggregatesQueryInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            rows = selectors.readings_aggregated(
                device.name, params.get("metrics"), params["bucket"], params.get("start"), params.get("end")
            )
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        except BackendError as exc:
            raise QueryUnavailable(str(exc)) from exc
        metrics = params.get("metrics") or selectors.telemetry_metrics()
        buckets = [{"bucket": row["bucket"], "count": row["count"], "metrics": _stats(row, metrics)} for row in rows]
        data = {"device": device.name, "bucket": params["bucket"], "metrics": metrics, "buckets": buckets}
        return Response(AggregatesOutputSerializer(data).data)


def _stats(row: dict, metrics: list[str]) -> dict[str, dict]:
    return {name: row[name] for name in metrics}


class CatalogTableListApi(APIView):
    """GET the tables the crawler has recorded in the data catalog."""

    @extend_schema(responses=CatalogTableOutputSerializer(many=True), operation_id="catalog_tables_list")
    def get(self, request: Request) -> Response:
        return Response(CatalogTableOutputSerializer(selectors.catalog_tables(), many=True).data)
