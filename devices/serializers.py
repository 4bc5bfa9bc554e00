"""Input and output serializers of the devices API."""

from rest_framework import serializers

from devices.models import THING_NAME_VALIDATOR, Device, DeviceCertificate, TopicRule


class DeviceCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=[THING_NAME_VALIDATOR])
    device_type = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    latitude = serializers.FloatField(required=False, allow_null=True, min_value=-90, max_value=90)
    longitude = serializers.FloatField(required=False, allow_null=True, min_value=-180, max_value=180)
    attributes = serializers.DictField(required=False, default=dict)


class CertificateOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeviceCertificate
        fields = ["certificate_id", "fingerprint", "not_after", "status", "created_at", "revoked_at"]


class DeviceOutputSerializer(serializers.ModelSerializer):
    telemetry_topic = serializers.CharField(read_only=True)
    certificates = CertificateOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "name",
            "device_type",
            "status",
            "latitude",
            "longitude",
            "attributes",
            "created_at",
            "last_seen_at",
            "last_message",
            "telemetry_topic",
            "certificates",
        ]


class DeviceKitOutputSerializer(serializers.Serializer):
    certificate_pem = serializers.CharField()
    private_key_pem = serializers.CharField(help_text="Returned only once, at registration: keep it.")
    ca_pem = serializers.CharField()
    host = serializers.CharField()
    port = serializers.IntegerField()
    topic = serializers.CharField()
    client_id = serializers.CharField()
    command = serializers.CharField(help_text="Starts the agent once the kit files are saved in that folder.")


class DeviceCreateOutputSerializer(DeviceOutputSerializer):
    kit = DeviceKitOutputSerializer(read_only=True)

    class Meta(DeviceOutputSerializer.Meta):
        fields = [*DeviceOutputSerializer.Meta.fields, "kit"]


class DeviceStatusInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Device.Status.choices)


class CertificateRotateOutputSerializer(CertificateOutputSerializer):
    kit = DeviceKitOutputSerializer(read_only=True)

    class Meta(CertificateOutputSerializer.Meta):
        fields = [*CertificateOutputSerializer.Meta.fields, "kit"]


class DevicesBulkInputSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="CSV with a header: name (required), device_type, latitude, longitude; other columns are attributes"
    )


class TopicRuleInputSerializer(serializers.Serializer):
    """Fields to set (the model validates them; Firehose's ranges for the hints); missing ones keep their values."""

    where = serializers.CharField(required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    buffer_size_mb = serializers.IntegerField(required=False, min_value=1, max_value=128)
    buffer_interval_s = serializers.IntegerField(required=False, min_value=0, max_value=900)
    prefix = serializers.CharField(required=False, max_length=256)
    error_output_prefix = serializers.CharField(required=False, max_length=256)


class TopicRuleDeploymentSerializer(serializers.Serializer):
    location = serializers.CharField()
    message = serializers.CharField()
    restart_needed = serializers.BooleanField()


class TopicRuleOutputSerializer(serializers.ModelSerializer):
    sql = serializers.CharField(read_only=True)

    class Meta:
        model = TopicRule
        fields = list(TopicRule.SHOWN_FIELDS)


class TopicRuleDeployOutputSerializer(TopicRuleOutputSerializer):
    deployment = TopicRuleDeploymentSerializer(read_only=True)

    class Meta(TopicRuleOutputSerializer.Meta):
        fields = [*TopicRuleOutputSerializer.Meta.fields, "deployment"]
