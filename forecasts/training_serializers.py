"""Input and output serializers of the training API: datasets, training jobs, model versions and aliases."""

from rest_framework import serializers

from forecasts.models import Dataset, ModelAlias, TrainedModel, TrainingJob
from forecasts.services.datasets import DEFAULT_CONTEXT_LENGTH, DEFAULT_PREDICTION_LENGTH


class DatasetInputSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    metric = serializers.CharField(max_length=64)
    devices = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True, default=None)
    freq = serializers.CharField(default="h", help_text="pandas frequency: min, 5min, h, D ...")
    start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    end = serializers.DateTimeField(required=False, allow_null=True, default=None)
    test_days = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0.001)
    context_length = serializers.IntegerField(default=DEFAULT_CONTEXT_LENGTH, min_value=1)
    prediction_length = serializers.IntegerField(default=DEFAULT_PREDICTION_LENGTH, min_value=1)
    use_cat = serializers.BooleanField(default=True)
    dynamic_feat = serializers.ListField(
        child=serializers.CharField(), required=False, default=list,
        help_text="calendar features as dynamic_feat: hour_of_day, day_of_week, day_of_month, month_of_year",
    )  # fmt: skip


class DatasetOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField()

    class Meta:
        model = Dataset
        fields = [
            "name", "metric", "devices", "freq", "start", "end", "context_length", "prediction_length", "test_points",
            "use_cat", "dynamic_feat", "train_key", "test_key", "series_count", "observations", "skipped", "created_by",
            "created_at",
        ]  # fmt: skip


class TrainingJobInputSerializer(serializers.Serializer):
    dataset = serializers.CharField()
    hyperparameters = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, default=dict,
        help_text="SageMaker DeepAR hyperparameters as strings, e.g. {\"epochs\": \"20\"}",
    )  # fmt: skip
    max_runtime_s = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    backtest_windows = serializers.IntegerField(required=False, default=0, min_value=0, max_value=20)


class TrainingJobOutputSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    model = serializers.SerializerMethodField()
    run_id = serializers.IntegerField(source="run.pk", default=None, read_only=True)
    created_by = serializers.StringRelatedField()

    class Meta:
        model = TrainingJob
        fields = [
            "name", "status", "dataset", "hyperparameters", "epoch", "epochs", "losses", "message", "error",
            "cancel_requested", "max_runtime_s", "run_id", "model", "created_by", "created_at", "started_at",
            "finished_at",
        ]  # fmt: skip

    def get_model(self, job: TrainingJob) -> str | None:
        model = getattr(job, "model", None)
        return model.name if model is not None else None


class ModelOutputSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    job = serializers.SlugRelatedField(slug_field="name", read_only=True)
    aliases = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    created_by = serializers.StringRelatedField()
    beats_baseline = serializers.SerializerMethodField()

    class Meta:
        model = TrainedModel
        fields = [
            "name", "metric", "devices", "freq", "dataset", "job", "hyperparameters", "metrics", "baseline_metrics",
            "beats_baseline", "code_version", "artifact_key", "aliases", "created_by", "created_at",
        ]  # fmt: skip

    def get_beats_baseline(self, model: TrainedModel) -> bool | None:
        from forecasts.training_selectors import beats_baseline

        return beats_baseline(model)


class ModelDetailOutputSerializer(ModelOutputSerializer):
    class Meta(ModelOutputSerializer.Meta):
        fields = [*ModelOutputSerializer.Meta.fields, "backtest"]


class AliasInputSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="the model version's name")


class AliasOutputSerializer(serializers.ModelSerializer):
    model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    updated_by = serializers.StringRelatedField()

    class Meta:
        model = ModelAlias
        fields = ["name", "model", "updated_by", "updated_at"]
