"""REST views: the DeepAR invocation proxy, device forecasts, and the endpoint list."""

from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cloud.backends import get_backend
from cloud.interfaces import BackendUnavailable, InvocationError
from deployments.selectors import endpoint_list
from deployments.serializers import (
    EndpointOutputSerializer,
    ErrorOutputSerializer,
    ForecastInputSerializer,
    ForecastOutputSerializer,
    InvocationInputSerializer,
    InvocationOutputSerializer,
    first_error,
)
from forecasts.services.forecasting import ForecastUnavailable, forecast_for_device

TARGET_VARIANT = "X-Amzn-SageMaker-Target-Variant"
INVOKED_VARIANT = "X-Amzn-Invoked-Production-Variant"
ERRORS = {400: ErrorOutputSerializer, 401: ErrorOutputSerializer, 503: ErrorOutputSerializer}


def error_response(message: str, status_code: int, **extra: object) -> Response:
    """Return the API's error body {"message", ...} with the status."""
    return Response({"message": message, **extra}, status=status_code)


def invalid_response(errors: dict) -> Response:
    """Return a 400 whose message names the first invalid field, with all of DRF's errors alongside."""
    return error_response(f"Invalid request: {first_error(errors)}", status.HTTP_400_BAD_REQUEST, errors=errors)


def hosting_error_response(exc: InvocationError | BackendUnavailable) -> Response:
    """Return the endpoint's own error status (SageMaker's), or 503 when hosting cannot be reached."""
    if isinstance(exc, InvocationError):
        return error_response(exc.message, exc.status, error_type=exc.error_type)
    return error_response(str(exc), status.HTTP_503_SERVICE_UNAVAILABLE)


class InvocationApi(APIView):
    """POST a DeepAR inference request to an endpoint (SageMaker Runtime InvokeEndpoint), get its predictions."""

    @extend_schema(
        request=InvocationInputSerializer,
        responses={200: InvocationOutputSerializer, 424: ErrorOutputSerializer, **ERRORS},
        parameters=[OpenApiParameter(TARGET_VARIANT, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False)],
        operation_id="endpoints_invoke",
    )
    def post(self, request: Request, name: str) -> Response:
        data = InvocationInputSerializer(data=request.data)
        if not data.is_valid():
            return invalid_response(data.errors)
        try:
            answer = get_backend("hosting").invoke(
                name, json.dumps(request.data).encode(), target_variant=request.headers.get(TARGET_VARIANT)
            )
        except (InvocationError, BackendUnavailable) as exc:
            return hosting_error_response(exc)
        # The endpoint's JSON goes back as it came: re-encoding would only cost time.
        response = Response(json.loads(answer.body))
        response[INVOKED_VARIANT] = answer.invoked_variant
        return response


class ForecastApi(APIView):
    """POST {device, metric, prediction_length, quantiles}: forecast the device with the deployed model."""

    @extend_schema(
        request=ForecastInputSerializer,
        responses={200: ForecastOutputSerializer, 404: ErrorOutputSerializer, **ERRORS},
        operation_id="forecasts_create",
    )
    def post(self, request: Request) -> Response:
        data = ForecastInputSerializer(data=request.data)
        if not data.is_valid():
            return invalid_response(data.errors)
        try:
            forecast = forecast_for_device(data.validated_data.pop("device"), **data.validated_data)
        except ForecastUnavailable as exc:
            return error_response(str(exc), status.HTTP_404_NOT_FOUND)
        except ValueError as exc:
            return error_response(str(exc), status.HTTP_400_BAD_REQUEST)
        except (InvocationError, BackendUnavailable) as exc:
            return hosting_error_response(exc)
        return Response(ForecastOutputSerializer(forecast).data)


class EndpointListApi(APIView):
    """GET the endpoints with their status and production variants."""

    @extend_schema(responses=EndpointOutputSerializer(many=True), operation_id="endpoints_list")
    def get(self, request: Request) -> Response:
        return Response(EndpointOutputSerializer(endpoint_list(), many=True).data)
