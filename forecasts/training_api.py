"""REST views of training (issue #5): datasets, training jobs, model versions and aliases.

Operators may read; only admins may build datasets, start or cancel jobs and move aliases.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cloud.deepar.channels import ChannelError
from cloud.deepar.hyperparameters import HyperparameterError
from cloud.interfaces import BackendError
from dashboard.roles import IsAdminRoleOrReadOnly
from forecasts import training_selectors as selectors
from forecasts.models import TrainedModel, TrainingJob
from forecasts.services.datasets import DatasetError, DatasetSpec, dataset_build, dataset_channel, dataset_get
from forecasts.services.registry import RegistryError, model_alias_delete, model_alias_set
from forecasts.services.training import training_job_cancel, training_job_submit
from forecasts.training_serializers import (
    AliasInputSerializer,
    AliasOutputSerializer,
    DatasetInputSerializer,
    DatasetOutputSerializer,
    ModelDetailOutputSerializer,
    ModelOutputSerializer,
    TrainingJobInputSerializer,
    TrainingJobOutputSerializer,
)


class LakeUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The lake or its query engine is unavailable."


class _Api(APIView):
    permission_classes = [IsAdminRoleOrReadOnly]


def _dataset(name: str):
    try:
        return dataset_get(name)
    except DatasetError as exc:
        raise NotFound(str(exc)) from exc


class DatasetListApi(_Api):
    """GET the datasets; POST builds one from the lake (DeepAR's rules checked, channels stored)."""

    @extend_schema(responses=DatasetOutputSerializer(many=True), operation_id="training_datasets_list")
    def get(self, request: Request) -> Response:
        return Response(DatasetOutputSerializer(selectors.dataset_list(), many=True).data)

    @extend_schema(
        request=DatasetInputSerializer,
        responses={201: DatasetOutputSerializer},
        operation_id="training_datasets_create",
    )
    def post(self, request: Request) -> Response:
        data = DatasetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            dataset = dataset_build(DatasetSpec(**data.validated_data), created_by=request.user)
        except (DatasetError, ChannelError, ValueError) as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        except BackendError as exc:
            raise LakeUnavailable(str(exc)) from exc
        return Response(DatasetOutputSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(_Api):
    @extend_schema(responses=DatasetOutputSerializer, operation_id="training_datasets_retrieve")
    def get(self, request: Request, name: str) -> Response:
        return Response(DatasetOutputSerializer(_dataset(name)).data)


class DatasetChannelApi(_Api):
    """GET a dataset's channel (train or test) as DeepAR JSON Lines, as a download."""

    @extend_schema(responses={(200, "application/jsonlines"): OpenApiTypes.BINARY}, operation_id="training_channel")
    def get(self, request: Request, name: str, channel: str) -> HttpResponse:
        dataset = _dataset(name)
        try:
            data = dataset_channel(dataset, channel)
        except (ValueError, KeyError) as exc:
            raise NotFound(f"no {channel} channel for dataset {name}") from exc
        response = HttpResponse(data, content_type="application/jsonlines")
        response["Content-Disposition"] = f'attachment; filename="{name}-{channel}.json"'
        return response


class TrainingJobListApi(_Api):
    """GET the training jobs; POST starts one on a dataset (queued on the worker)."""

    @extend_schema(responses=TrainingJobOutputSerializer(many=True), operation_id="training_jobs_list")
    def get(self, request: Request) -> Response:
        return Response(TrainingJobOutputSerializer(selectors.job_list()[:200], many=True).data)

    @extend_schema(
        request=TrainingJobInputSerializer, responses={201: TrainingJobOutputSerializer},
        operation_id="training_jobs_create",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        data = TrainingJobInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            job = training_job_submit(
                values["dataset"], values["hyperparameters"], max_runtime_s=values["max_runtime_s"],
                backtest_windows=values["backtest_windows"], created_by=request.user,
            )  # fmt: skip
        except HyperparameterError as exc:
            raise ValidationError({"hyperparameters": exc.errors}) from exc
        except (DatasetError, ValueError) as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(TrainingJobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class TrainingJobDetailApi(_Api):
    @extend_schema(responses=TrainingJobOutputSerializer, operation_id="training_jobs_retrieve")
    def get(self, request: Request, name: str) -> Response:
        try:
            return Response(TrainingJobOutputSerializer(selectors.job_get(name)).data)
        except TrainingJob.DoesNotExist as exc:
            raise NotFound(f"no training job {name!r}") from exc


class TrainingJobCancelApi(_Api):
    """POST asks a queued or running job to stop; it stops within about a second and registers nothing."""

    @extend_schema(request=None, responses=TrainingJobOutputSerializer, operation_id="training_jobs_cancel")
    def post(self, request: Request, name: str) -> Response:
        try:
            job = training_job_cancel(name)
        except TrainingJob.DoesNotExist as exc:
            raise NotFound(f"no training job {name!r}") from exc
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(TrainingJobOutputSerializer(job).data)


class ModelListApi(_Api):
    @extend_schema(responses=ModelOutputSerializer(many=True), operation_id="registry_models_list")
    def get(self, request: Request) -> Response:
        return Response(ModelOutputSerializer(selectors.model_list()[:200], many=True).data)


class ModelDetailApi(_Api):
    """GET a model version by name or alias (champion, challenger, latest)."""

    @extend_schema(responses=ModelDetailOutputSerializer, operation_id="registry_models_retrieve")
    def get(self, request: Request, name: str) -> Response:
        try:
            return Response(ModelDetailOutputSerializer(selectors.model_resolve_alias(name)).data)
        except selectors.ModelNotFound as exc:
            raise NotFound(str(exc)) from exc


class AliasListApi(_Api):
    @extend_schema(responses=AliasOutputSerializer(many=True), operation_id="registry_aliases_list")
    def get(self, request: Request) -> Response:
        return Response(AliasOutputSerializer(selectors.alias_list(), many=True).data)


class AliasDetailApi(_Api):
    """PUT points an alias at a model version; DELETE removes the alias (the model stays)."""

    @extend_schema(request=AliasInputSerializer, responses=AliasOutputSerializer, operation_id="registry_aliases_set")
    def put(self, request: Request, alias: str) -> Response:
        data = AliasInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                row = model_alias_set(alias, data.validated_data["model"], request.user)
        except RegistryError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        except TrainedModel.DoesNotExist as exc:
            raise NotFound(f"no model {data.validated_data['model']!r}") from exc
        return Response(AliasOutputSerializer(row).data)

    @extend_schema(request=None, responses={204: None}, operation_id="registry_aliases_delete")
    def delete(self, request: Request, alias: str) -> Response:
        if not model_alias_delete(alias):
            raise NotFound(f"no alias {alias!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)
