"""Input and output serializers of the forecasts API (readings and the data catalog)."""

from rest_framework import serializers

from forecasts.models import CatalogTable


class ReadingsQueryInputSerializer(serializers.Serializer):
    """The query parameters of GET /devices/{id}/readings."""

    start = serializers.DateTimeField(required=False, help_text="ISO-8601; default: 24 h before end")
    end = serializers.DateTimeField(required=False, help_text="ISO-8601; default: now")
    metrics = serializers.CharField(
        required=False, help_text="comma-separated metric names, e.g. ozone,particulate_matter; default: all"
    )
    limit = serializers.IntegerField(required=False, default=1000, min_value=1, max_value=100_000)

    def validate_metrics(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            raise serializers.ValidationError("give at least one metric name")
        return names

    def validate(self, attrs: dict) -> dict:
        if "start" in attrs and "end" in attrs and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"start": "start must not be after end"})
        return attrs


class ReadingOutputSerializer(serializers.Serializer):
    """One reading; its metric values are added as extra float fields by to_representation."""

    timestamp = serializers.DateTimeField()
    received_at = serializers.DateTimeField(allow_null=True)
    message_id = serializers.CharField()

    def to_representation(self, instance: dict) -> dict:
        data = super().to_representation(instance)
        data.update({key: value for key, value in instance.items() if key not in data})
        return data


class ReadingsOutputSerializer(serializers.Serializer):
    device = serializers.CharField()
    count = serializers.IntegerField()
    readings = ReadingOutputSerializer(many=True)


class AggregatesQueryInputSerializer(serializers.Serializer):
    """The query parameters of GET /devices/{id}/aggregates."""

    bucket = serializers.ChoiceField(
        choices=["minute", "hour", "day"], default="hour", help_text="UTC-aligned bucket size; default: hour"
    )
    start = serializers.DateTimeField(required=False, help_text="ISO-8601; default: 24 h before end")
    end = serializers.DateTimeField(required=False, help_text="ISO-8601; default: now")
    metrics = serializers.CharField(
        required=False, help_text="comma-separated metric names, e.g. ozone,particulate_matter; default: all"
    )

    validate_metrics = ReadingsQueryInputSerializer.validate_metrics
    validate = ReadingsQueryInputSerializer.validate


class MetricStatsOutputSerializer(serializers.Serializer):
    """One metric's statistics in one bucket (null where the bucket has no value of the metric)."""

    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True, help_text="95th percentile, linearly interpolated")


class AggregateBucketOutputSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField(help_text="start of the UTC-aligned bucket")
    count = serializers.IntegerField(help_text="readings in the bucket")
    metrics = serializers.DictField(child=MetricStatsOutputSerializer(), help_text="metric name -> statistics")


class AggregatesOutputSerializer(serializers.Serializer):
    device = serializers.CharField()
    bucket = serializers.CharField()
    metrics = serializers.ListField(child=serializers.CharField())
    buckets = AggregateBucketOutputSerializer(many=True)


class CatalogTableOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = CatalogTable
        fields = [
            "id",
            "database",
            "name",
            "location",
            "classification",
            "columns",
            "partition_keys",
            "partitions",
            "objects_scanned",
            "last_crawled_at",
            "deprecated_partitions",
            "pending_columns",
            "schema_conflicts",
            "schema_changes",
            "last_crawl",
        ]
