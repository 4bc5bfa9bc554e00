"""Input and output serializers of the deployments API (DeepAR inference JSON, forecasts, endpoints)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cloud.deepar.formats import MAX_NUM_SAMPLES, OUTPUT_TYPES
from deployments.models import Endpoint, EndpointOperation, ProductionVariant


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN"]}], "nullable": True})
class TargetValueField(serializers.Field):
    """A target value: a number, or "NaN"/null for a missing one (DeepAR never wants 0 for missing)."""

    default_error_messages = {"invalid": 'A target value must be a number, "NaN" or null; got {value!r}.'}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        return (True, None) if data is None else super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> float | str:
        if data == "NaN":
            return "NaN"
        if isinstance(data, bool) or not isinstance(data, int | float) or math.isinf(data):
            self.fail("invalid", value=data)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def _quantile(value: str) -> str:
    try:
        ok = 0 < float(value) < 1
    except ValueError:
        ok = False
    if not ok:
        raise serializers.ValidationError(
            f'quantile {value!r} must be a number in (0, 1) written as a string like "0.5".'
        )
    return value


class InstanceSerializer(serializers.Serializer):
    start = serializers.DateTimeField(input_formats=["iso-8601", "%Y-%m-%d %H:%M:%S"], format="%Y-%m-%d %H:%M:%S")
    target = serializers.ListField(child=TargetValueField(), min_length=1)
    cat = serializers.ListField(child=serializers.IntegerField(min_value=0), required=False)
    dynamic_feat = serializers.ListField(child=serializers.ListField(child=TargetValueField()), required=False)

    def validate_target(self, target: list) -> list:
        if all(value is None or value == "NaN" for value in target):
            raise serializers.ValidationError("The target has no observed value.")
        return target


class ConfigurationSerializer(serializers.Serializer):
    num_samples = serializers.IntegerField(min_value=1, max_value=MAX_NUM_SAMPLES, required=False)
    output_types = serializers.ListField(child=serializers.ChoiceField(OUTPUT_TYPES), min_length=1, required=False)
    quantiles = serializers.ListField(child=serializers.CharField(validators=[_quantile]), min_length=1, required=False)
    seed = serializers.IntegerField(required=False)


class InvocationInputSerializer(serializers.Serializer):
    """A DeepAR inference request, as SageMaker's built-in DeepAR documents it."""

    instances = InstanceSerializer(many=True, allow_empty=False)
    configuration = ConfigurationSerializer(required=False)


class PredictionSerializer(serializers.Serializer):
    mean = serializers.ListField(child=serializers.FloatField(), required=False)
    quantiles = serializers.DictField(child=serializers.ListField(child=serializers.FloatField()), required=False)
    samples = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()), required=False)


class InvocationOutputSerializer(serializers.Serializer):
    predictions = PredictionSerializer(many=True)


class ErrorOutputSerializer(serializers.Serializer):
    message = serializers.CharField()
    errors = serializers.JSONField(required=False)


class ForecastInputSerializer(serializers.Serializer):
    device = serializers.CharField(max_length=128)
    metric = serializers.CharField(max_length=64, required=False)
    prediction_length = serializers.IntegerField(min_value=1, max_value=400, required=False)
    quantiles = serializers.ListField(
        child=serializers.CharField(validators=[_quantile]), min_length=1, default=["0.1", "0.5", "0.9"]
    )
    endpoint = serializers.CharField(max_length=63, required=False)
    target_variant = serializers.CharField(max_length=63, required=False)


class SeriesSerializer(serializers.Serializer):
    timestamps = serializers.ListField(child=serializers.DateTimeField())
    values = serializers.ListField(child=serializers.FloatField(allow_null=True))


class ForecastSeriesSerializer(serializers.Serializer):
    timestamps = serializers.ListField(child=serializers.DateTimeField())
    mean = serializers.ListField(child=serializers.FloatField())
    quantiles = serializers.DictField(child=serializers.ListField(child=serializers.FloatField()))


class ForecastOutputSerializer(serializers.Serializer):
    device = serializers.CharField()
    metric = serializers.CharField()
    model = serializers.CharField()
    variant = serializers.CharField()
    history = SeriesSerializer()
    forecast = ForecastSeriesSerializer()


class VariantOutputSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    artifact_key = serializers.CharField(source="model.artifact_key")

    class Meta:
        model = ProductionVariant
        fields = ["name", "model", "artifact_key", "weight", "instance_count", "shadow"]


class EndpointOutputSerializer(serializers.ModelSerializer):
    variants = VariantOutputSerializer(many=True)
    config = serializers.CharField(source="config.name", default=None)

    class Meta:
        model = Endpoint
        fields = ["name", "status", "failure_reason", "config", "variants", "created_at", "updated_at"]


VARIANT_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"  # SageMaker's pattern for endpoint and variant names


class VariantInputSerializer(serializers.Serializer):
    name = serializers.RegexField(VARIANT_NAME)
    model = serializers.CharField(max_length=128, help_text="a model name, an alias (champion) or latest")
    weight = serializers.FloatField(min_value=0, default=1.0)
    instance_count = serializers.IntegerField(min_value=1, max_value=100, default=1)
    shadow = serializers.BooleanField(default=False)


class EndpointCreateInputSerializer(serializers.Serializer):
    name = serializers.RegexField(VARIANT_NAME)
    variants = VariantInputSerializer(many=True, allow_empty=False)


class WeightsInputSerializer(serializers.Serializer):
    weights = serializers.DictField(child=serializers.FloatField(min_value=0), allow_empty=False)
    capacities = serializers.DictField(child=serializers.IntegerField(min_value=1, max_value=100), required=False)


class AlarmsInputSerializer(serializers.Serializer):
    max_error_rate = serializers.FloatField(min_value=0, max_value=1, required=False)
    max_p99_ms = serializers.FloatField(min_value=0, required=False)
    min_invocations = serializers.IntegerField(min_value=1, required=False)
    max_wql_increase = serializers.FloatField(
        min_value=0, required=False, allow_null=True,
        help_text="forecast accuracy: roll back when the new model's wQL exceeds the old one's by more than this "
        "share (0.25 = 25%; null: off)",
    )  # fmt: skip
    min_matured_points = serializers.IntegerField(min_value=1, required=False)
    max_wql = serializers.FloatField(min_value=0, required=False, allow_null=True)


class DeploymentInputSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=128, help_text="a model name, an alias (champion) or latest")
    variant = serializers.RegexField(VARIANT_NAME, default="AllTraffic")
    policy = serializers.CharField(
        max_length=64,
        default="all",
        help_text="all[:BAKE_S], canary:PCT:BAKE_S, linear:PCT:EVERY_S[:BAKE_S] or shadow:PCT",
    )
    alarms = AlarmsInputSerializer(required=False)


class OperationOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = EndpointOperation
        fields = [
            "id", "kind", "endpoint_name", "params", "status", "progress", "message", "steps", "result", "error",
            "stop_requested", "created_at", "started_at", "finished_at",
        ]  # fmt: skip


class EventOutputSerializer(serializers.Serializer):
    """A history line (deployments.selectors.HistoryLine)."""

    at = serializers.DateTimeField()
    status = serializers.CharField()
    message = serializers.CharField()
    config = serializers.CharField(help_text="the endpoint config in effect after this line (empty before the first)")
    actor = serializers.CharField(help_text='who asked for the change: a user, "command line" or "system"')


class EndpointDetailOutputSerializer(EndpointOutputSerializer):
    history = serializers.SerializerMethodField()
    operations = serializers.SerializerMethodField()

    class Meta(EndpointOutputSerializer.Meta):
        fields = [*EndpointOutputSerializer.Meta.fields, "history", "operations"]

    @extend_schema_field(EventOutputSerializer(many=True))
    def get_history(self, endpoint: Endpoint) -> list[dict]:
        from deployments.selectors import endpoint_history_lines

        return EventOutputSerializer(endpoint_history_lines(endpoint.name, 50), many=True).data

    @extend_schema_field(OperationOutputSerializer(many=True))
    def get_operations(self, endpoint: Endpoint) -> list[dict]:
        from deployments.selectors import operation_list

        return OperationOutputSerializer(operation_list(endpoint.name, 10), many=True).data


class ShadowQueryInputSerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=200, default=20)


class ShadowRecordOutputSerializer(serializers.Serializer):
    """One mirrored request: what the shadow variant answered (never returned to the client) and production's time."""

    at = serializers.SerializerMethodField()
    variant = serializers.CharField()
    model = serializers.CharField()
    status = serializers.IntegerField(help_text="the shadow's own status; 200, or SageMaker's error status")
    model_ms = serializers.FloatField(allow_null=True)
    total_ms = serializers.FloatField(allow_null=True)
    production_variant = serializers.CharField()
    production_model_ms = serializers.FloatField(allow_null=True)
    production_total_ms = serializers.FloatField(allow_null=True)
    answer = serializers.CharField(help_text="the shadow's DeepAR JSON answer (or error message), cut at 64 KiB")

    @extend_schema_field(serializers.DateTimeField())
    def get_at(self, record: Any) -> str:
        return datetime.fromtimestamp(record.at, UTC).isoformat().replace("+00:00", "Z")


class ShadowOutputSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    production_p50_ms = serializers.FloatField(allow_null=True, help_text="median model latency of production")
    shadow_p50_ms = serializers.FloatField(allow_null=True, help_text="median model latency of the shadow")
    shadow_errors = serializers.IntegerField()
    records = ShadowRecordOutputSerializer(many=True, help_text="newest first")


def first_error(errors: Any, where: str = "") -> str:
    """Return the first message of DRF's nested errors as 'instances[0].target[2]: message'."""
    if isinstance(errors, dict):
        key, value = next(iter(errors.items()))
        if key == "non_field_errors":  # DRF's name for "the whole object": the path already says which
            path = where
        else:
            path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
        return first_error(value, path)
    if isinstance(errors, list):
        for index, value in enumerate(errors):
            if value:
                nested = isinstance(value, dict | list)
                return first_error(value, f"{where}[{index}]" if nested and isinstance(value, dict) else where)
    return f"{where}: {errors}" if where else str(errors)
