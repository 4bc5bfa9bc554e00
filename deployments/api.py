"""REST views: the DeepAR invocation proxy, device forecasts, and the endpoint list."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from cloud.backends import get_backend
from cloud.deepar.formats import RequestError, parse_request
from cloud.interfaces import BackendError, BackendUnavailable, InvocationError
from dashboard.roles import IsAdminRoleOrReadOnly
from deployments.models import EndpointOperation
from deployments.operations import operation_create, operation_enqueue, operation_stop
from deployments.selectors import (
    NotDeployed,
    endpoint_get,
    endpoint_list,
    model_resolve,
    operation_get,
    operation_list,
    shadow_answers,
)
from deployments.serializers import (
    DeploymentInputSerializer,
    EndpointCreateInputSerializer,
    EndpointDetailOutputSerializer,
    EndpointOutputSerializer,
    ErrorOutputSerializer,
    ForecastInputSerializer,
    ForecastOutputSerializer,
    InvocationInputSerializer,
    InvocationOutputSerializer,
    OperationOutputSerializer,
    ShadowOutputSerializer,
    ShadowQueryInputSerializer,
    WeightsInputSerializer,
    first_error,
)
from deployments.services import EndpointError, weights_validate
from forecasts.services.forecasting import ForecastUnavailable, forecast_for_device

TARGET_VARIANT = "X-Amzn-SageMaker-Target-Variant"
INVOKED_VARIANT = "X-Amzn-Invoked-Production-Variant"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
ERRORS = {400: ErrorOutputSerializer, 401: ErrorOutputSerializer, 503: ErrorOutputSerializer}
ADMIN_ERRORS = {**ERRORS, 403: ErrorOutputSerializer, 404: ErrorOutputSerializer, 409: ErrorOutputSerializer}
# DeepAR's start strings, the only ones the fast path lets through without the serializer's checks.
_START = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$")


class IsAdminOrReadOnly(IsAdminRoleOrReadOnly):
    """Operators (any logged-in user) read; only admins (dashboard.roles.is_admin: staff or "admin" group) change."""

    message = "Only admins may change endpoints."


class InvocationThrottle(UserRateThrottle):
    """Invocations per API token (per user), at settings.ENDPOINT_INVOKE_THROTTLE_RATE (default 6000/min).

    A token bucket (a burst of the rate's count, refilled at the rate) kept as one small cache entry: DRF's
    sliding log stores every request of the last window, and at hundreds of requests a second re-pickling
    that list cost the proxy about a millisecond a request.
    """

    scope = "invocations"
    cache_format = "throttle_bucket_%(scope)s_%(ident)s"

    def get_rate(self) -> str:
        return getattr(settings, "ENDPOINT_INVOKE_THROTTLE_RATE", "6000/min")

    def allow_request(self, request: Request, view: object) -> bool:
        """Return whether the token has a request left in its bucket (and take it); otherwise remember the wait."""
        self.key = self.get_cache_key(request, view) if self.rate is not None else None
        if self.key is None:
            return True
        now, per_second = self.timer(), self.num_requests / self.duration
        tokens, last = self.cache.get(self.key, (float(self.num_requests), now))
        tokens = min(float(self.num_requests), tokens + (now - last) * per_second)
        if tokens < 1:
            self._wait = (1 - tokens) / per_second
            return False
        self.cache.set(self.key, (tokens - 1, now), self.duration)
        return True

    def wait(self) -> float | None:
        """Return the seconds until the bucket holds a request again."""
        return getattr(self, "_wait", None)


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

    throttle_classes = [InvocationThrottle]

    @extend_schema(
        request=InvocationInputSerializer,
        responses={200: InvocationOutputSerializer, 424: ErrorOutputSerializer, **ERRORS},
        parameters=[OpenApiParameter(TARGET_VARIANT, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False)],
        operation_id="endpoints_invoke",
    )
    def post(self, request: Request, name: str) -> Response | HttpResponse:
        body = request.body
        invalid = invocation_invalid(body)
        if invalid is not None:
            return invalid
        try:
            answer = get_backend("hosting").invoke(
                name,
                body,
                target_variant=request.headers.get(TARGET_VARIANT),
                custom_attributes=request.headers.get(CUSTOM_ATTRIBUTES),
            )
        except (InvocationError, BackendUnavailable) as exc:
            return hosting_error_response(exc)
        # The endpoint's JSON goes back as it came: parsing and re-encoding would only cost time.
        response = HttpResponse(answer.body, content_type=answer.content_type or "application/json")
        response[INVOKED_VARIANT] = answer.invoked_variant
        return response


def invocation_invalid(body: bytes) -> Response | None:
    """Return a 400 naming the first invalid field of a DeepAR request body, None when it is valid.

    A well-formed request passes DeepAR's own parser in well under a millisecond; only a request that fails it
    (or carries what that parser does not check) goes through the serializer, whose messages name the field.
    """
    try:
        payload = json.loads(body or b"null")
        parsed = parse_request(payload)
        if all(_START.match(raw["start"]) and "dynamic_feat" not in raw for raw in payload["instances"]):
            return None
        fast_error = None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response("Invalid request: the body is not JSON", status.HTTP_400_BAD_REQUEST)
    except RequestError as exc:
        parsed, fast_error = None, str(exc)
    data = InvocationInputSerializer(data=payload)
    if not data.is_valid():
        return invalid_response(data.errors)
    if parsed is None:
        return error_response(f"Invalid request: {fast_error}", status.HTTP_400_BAD_REQUEST)
    return None


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


def operation_response(kind: str, name: str, params: dict[str, Any], request: Request) -> Response:
    """Create and enqueue an operation; return 202 with it, or 409 while the endpoint is busy."""
    try:
        operation = operation_create(kind, name, params, request.user)
    except EndpointError as exc:
        return error_response(str(exc), status.HTTP_409_CONFLICT)
    except NotDeployed as exc:
        return error_response(str(exc), status.HTTP_400_BAD_REQUEST)
    except ValueError as exc:
        return error_response(str(exc), status.HTTP_400_BAD_REQUEST)
    operation_enqueue(operation)
    return Response(OperationOutputSerializer(operation).data, status=status.HTTP_202_ACCEPTED)


class EndpointListApi(APIView):
    """GET the endpoints with their status and production variants; POST (admins) creates one."""

    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(responses=EndpointOutputSerializer(many=True), operation_id="endpoints_list")
    def get(self, request: Request) -> Response:
        return Response(EndpointOutputSerializer(endpoint_list(), many=True).data)

    @extend_schema(
        request=EndpointCreateInputSerializer,
        responses={202: OperationOutputSerializer, **ADMIN_ERRORS},
        operation_id="endpoints_create",
    )
    def post(self, request: Request) -> Response:
        data = EndpointCreateInputSerializer(data=request.data)
        if not data.is_valid():
            return invalid_response(data.errors)
        name, variants = data.validated_data["name"], [dict(v) for v in data.validated_data["variants"]]
        if endpoint_list().filter(name=name).exists():
            return error_response(f"endpoint {name!r} exists already", status.HTTP_409_CONFLICT)
        try:
            weights_validate({v["name"]: v["weight"] for v in variants}, {v["name"] for v in variants if v["shadow"]})
            for variant in variants:
                model_resolve(variant["model"])
        except (EndpointError, NotDeployed) as exc:
            return error_response(str(exc), status.HTTP_400_BAD_REQUEST)
        return operation_response(EndpointOperation.Kind.CREATE, name, {"variants": variants}, request)


def _endpoint_or_404(name: str) -> Any:
    try:
        return endpoint_get(name)
    except NotDeployed as exc:
        return error_response(str(exc), status.HTTP_404_NOT_FOUND)


class EndpointDetailApi(APIView):
    """GET one endpoint with its history and latest operations; DELETE (admins) deletes it."""

    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(responses={200: EndpointDetailOutputSerializer, 404: ErrorOutputSerializer},
                   operation_id="endpoints_retrieve")  # fmt: skip
    def get(self, request: Request, name: str) -> Response:
        endpoint = _endpoint_or_404(name)
        if isinstance(endpoint, Response):
            return endpoint
        return Response(EndpointDetailOutputSerializer(endpoint).data)

    @extend_schema(responses={202: OperationOutputSerializer, **ADMIN_ERRORS}, operation_id="endpoints_delete")
    def delete(self, request: Request, name: str) -> Response:
        endpoint = _endpoint_or_404(name)
        if isinstance(endpoint, Response):
            return endpoint
        return operation_response(EndpointOperation.Kind.DELETE, name, {}, request)


class EndpointWeightsApi(APIView):
    """PATCH (admins) the variants' weights and instance counts (UpdateEndpointWeightsAndCapacities)."""

    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(
        request=WeightsInputSerializer,
        responses={202: OperationOutputSerializer, **ADMIN_ERRORS},
        operation_id="endpoints_weights_update",
    )
    def patch(self, request: Request, name: str) -> Response:
        data = WeightsInputSerializer(data=request.data)
        if not data.is_valid():
            return invalid_response(data.errors)
        endpoint = _endpoint_or_404(name)
        if isinstance(endpoint, Response):
            return endpoint
        variants = {v.name: v for v in endpoint.variants.all()}
        weights, capacities = data.validated_data["weights"], data.validated_data.get("capacities") or {}
        unknown = sorted((set(weights) | set(capacities)) - set(variants))
        try:
            if unknown:
                raise EndpointError(f"endpoint {name} has no variant {', '.join(unknown)}")
            shadows = {n for n, v in variants.items() if v.shadow}
            weights_validate({**{n: v.weight for n, v in variants.items()}, **weights}, shadows)
        except EndpointError as exc:
            return error_response(str(exc), status.HTTP_400_BAD_REQUEST)
        params = {"weights": weights, "capacities": capacities}
        return operation_response(EndpointOperation.Kind.UPDATE_WEIGHTS, name, params, request)


class EndpointDeploymentsApi(APIView):
    """GET the endpoint's operations; POST (admins) deploys a model to a variant with a deployment policy."""

    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(responses=OperationOutputSerializer(many=True), operation_id="endpoints_deployments_list")
    def get(self, request: Request, name: str) -> Response:
        return Response(OperationOutputSerializer(operation_list(name), many=True).data)

    @extend_schema(
        request=DeploymentInputSerializer,
        responses={202: OperationOutputSerializer, **ADMIN_ERRORS},
        operation_id="endpoints_deployments_create",
    )
    def post(self, request: Request, name: str) -> Response:
        data = DeploymentInputSerializer(data=request.data)
        if not data.is_valid():
            return invalid_response(data.errors)
        params = {**data.validated_data, "alarms": dict(data.validated_data.get("alarms") or {})}
        return operation_response(EndpointOperation.Kind.DEPLOY, name, params, request)


class OperationStopApi(APIView):
    """POST (admins): stop an endpoint's operation in progress; a rollout rolls back to the old model."""

    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(request=None, responses={202: OperationOutputSerializer, **ADMIN_ERRORS},
                   operation_id="endpoints_operations_stop")  # fmt: skip
    def post(self, request: Request, name: str, operation_id: int) -> Response:
        try:  # an operation id of another endpoint is not this endpoint's: it must not stop that rollout
            operation = operation_get(name, operation_id)
        except NotDeployed as exc:
            return error_response(str(exc), status.HTTP_404_NOT_FOUND)
        if not operation_stop(operation.pk):
            return error_response(f"operation {operation_id} of {name} is not in progress", status.HTTP_409_CONFLICT)
        operation.refresh_from_db()
        return Response(OperationOutputSerializer(operation).data, status=status.HTTP_202_ACCEPTED)


class EndpointMetricsApi(APIView):
    """GET per-variant metrics (invocations, 4xx, 5xx, model and overhead latency, p99) of the last minutes."""

    @extend_schema(
        parameters=[OpenApiParameter("minutes", OpenApiTypes.INT), OpenApiParameter("period", OpenApiTypes.INT)],
        responses={200: OpenApiTypes.OBJECT, 503: ErrorOutputSerializer},
        operation_id="endpoints_metrics",
    )
    def get(self, request: Request, name: str) -> Response:
        try:
            minutes = min(1440, max(1, int(request.query_params.get("minutes", 15))))
            period = min(3600, max(1, int(request.query_params.get("period", 10))))
        except ValueError:
            return error_response("minutes and period must be integers", status.HTTP_400_BAD_REQUEST)
        try:
            metrics = get_backend("hosting").variant_metrics(name, time.time() - 60 * minutes, period)
        except BackendUnavailable as exc:
            return error_response(str(exc), status.HTTP_503_SERVICE_UNAVAILABLE)
        except BackendError as exc:
            return error_response(str(exc), status.HTTP_404_NOT_FOUND)
        return Response(metrics)


class EndpointShadowApi(APIView):
    """GET the newest answers of the endpoint's shadow variant (recorded, never returned to clients) with the
    median model latency of production and of the shadow over them."""

    @extend_schema(
        parameters=[ShadowQueryInputSerializer],
        responses={200: ShadowOutputSerializer, 400: ErrorOutputSerializer, 404: ErrorOutputSerializer,
                   501: ErrorOutputSerializer, 503: ErrorOutputSerializer},
        operation_id="endpoints_shadow",
    )  # fmt: skip
    def get(self, request: Request, name: str) -> Response:
        query = ShadowQueryInputSerializer(data=request.query_params)
        if not query.is_valid():
            return invalid_response(query.errors)
        try:
            answers = shadow_answers(name, query.validated_data["limit"])
        except NotDeployed as exc:
            return error_response(str(exc), status.HTTP_404_NOT_FOUND)
        except NotImplementedError as exc:
            return error_response(str(exc), status.HTTP_501_NOT_IMPLEMENTED)
        except BackendUnavailable as exc:
            return error_response(str(exc), status.HTTP_503_SERVICE_UNAVAILABLE)
        except BackendError as exc:
            return error_response(str(exc), status.HTTP_404_NOT_FOUND)
        return Response(ShadowOutputSerializer(answers).data)
