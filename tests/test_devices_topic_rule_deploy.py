"""Saving a topic rule deploys it via the identity backend: IoT rule + Firehose on aws (moto), the ingest locally."""

import json
import threading
import time
import uuid

import boto3
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from cloud.backends import get_backend
from cloud.interfaces import BackendError
from devices import selectors
from devices.management.commands.run_ingest import ingest_service
from devices.models import TopicRule
from devices.services import ingest_run, topic_rule_deploy
from tests.conftest import install_lake
from tests.fixtures.ingest import forget_session

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/iotcast-firehose"


def use_identity(settings, backend: str, **options) -> None:
    backends = dict(settings.CLOUD_BACKENDS)
    backends["identity"] = {"BACKEND": backend, "OPTIONS": options}
    settings.CLOUD_BACKENDS = backends
    get_backend.cache_clear()


@pytest.fixture
def aws_identity(settings, mocked_aws):
    """IoT Core identity (with a delivery role) and an S3 lake at s3://iotcast-lake/prod, all in moto."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="iotcast-lake")
    install_lake(settings, "cloud.lake.S3Lake", "s3://iotcast-lake/prod")
    use_identity(settings, "cloud.aws.identity.IoTCoreIdentity", region=REGION, delivery_role_arn=ROLE)
    yield
    get_backend.cache_clear()


def _stream(name: str) -> dict:
    described = boto3.client("firehose", region_name=REGION).describe_delivery_stream(DeliveryStreamName=name)
    return described["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]


@pytest.mark.django_db
def test_saving_a_rule_creates_then_replaces_the_iot_rule_and_its_firehose_stream(aws_identity):
    rule = TopicRule(name="iotcast-telemetry", where="site = 'harbour'", buffer_interval_s=60)
    deployment = topic_rule_deploy(rule)
    iot = boto3.client("iot", region_name=REGION)
    described = iot.get_topic_rule(ruleName="iotcast_telemetry")
    assert deployment.location == described["ruleArn"] and not deployment.restart_needed
    assert described["rule"]["sql"] == rule.sql and described["rule"]["ruleDisabled"] is False
    action = described["rule"]["actions"][0]["firehose"]
    assert (action["deliveryStreamName"], action["roleArn"], action["batchMode"]) == ("iotcast-telemetry", ROLE, True)
    destination = _stream("iotcast-telemetry")
    assert destination["BucketARN"] == "arn:aws:s3:::iotcast-lake" and destination["RoleARN"] == ROLE
    assert destination["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 60}
    assert destination["Prefix"].startswith("prod/raw/year=!{timestamp:yyyy}/")
    assert destination["ErrorOutputPrefix"].startswith("prod/errors/!{firehose:error-output-type}/year=")

    rule.where, rule.enabled, rule.buffer_size_mb, rule.buffer_interval_s = "ozone > 1", False, 64, 900
    topic_rule_deploy(rule)  # a second save replaces both, never a second rule or stream
    described = iot.get_topic_rule(ruleName="iotcast_telemetry")["rule"]
    assert described["sql"].endswith("WHERE ozone > 1") and described["ruleDisabled"] is True
    assert _stream("iotcast-telemetry")["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 900}
    assert [r["ruleName"] for r in iot.list_topic_rules()["rules"]] == ["iotcast_telemetry"]
    firehose = boto3.client("firehose", region_name=REGION)
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == ["iotcast-telemetry"]
    assert TopicRule.objects.get(name="iotcast-telemetry").buffer_interval_s == 900


@pytest.mark.django_db
def test_an_invalid_rule_is_neither_saved_nor_deployed(aws_identity):
    with pytest.raises(ValidationError):
        topic_rule_deploy(TopicRule(name="bad", where="ozone = 'high'"))
    assert not TopicRule.objects.exists()
    assert boto3.client("iot", region_name=REGION).list_topic_rules()["rules"] == []


@pytest.mark.django_db
def test_without_a_delivery_role_or_an_s3_lake_the_rule_is_saved_but_not_deployed(settings, mocked_aws, lake):
    use_identity(settings, "cloud.aws.identity.IoTCoreIdentity", region=REGION)
    with pytest.raises(BackendError, match="is not in S3"):
        topic_rule_deploy(TopicRule(name="r1"))
    install_lake(settings, "cloud.lake.S3Lake", "s3://iotcast-lake")
    use_identity(settings, "cloud.aws.identity.IoTCoreIdentity", region=REGION)
    with pytest.raises(BackendError, match="IOTCAST_FIREHOSE_ROLE_ARN"):
        topic_rule_deploy(TopicRule(name="r2"))
    assert set(TopicRule.objects.values_list("name", flat=True)) == {"r1", "r2"}  # saved: saving again retries


@pytest.mark.django_db
def test_the_admin_deploys_on_save_and_says_so(identity_on_test_broker, lake, client):
    admin = get_user_model().objects.create_superuser("rules-admin", password="pw")
    client.force_login(admin)
    form = {"name": "iotcast-telemetry", "enabled": "on", "where": "site = 'harbour'"}
    form |= {"buffer_size_mb": 5, "buffer_interval_s": 10, "prefix": "raw/", "error_output_prefix": "errors/"}
    response = client.post("/admin/devices/topicrule/add/", form, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any("Deployed to local ingest" in m and "run_ingest --rule iotcast-telemetry" in m for m in shown), shown
    assert TopicRule.objects.get(name="iotcast-telemetry").buffer_interval_s == 10


@pytest.mark.django_db(transaction=True)
def test_the_running_ingest_applies_a_saved_rule_without_losing_messages(lake, mqtt_broker):
    name = f"rule-{uuid.uuid4().hex[:8]}"
    rule = TopicRule(name=name, where="ozone > 100", buffer_interval_s=0)
    topic_rule_deploy(rule)
    credentials = mqtt_broker.service_credentials("iotcast-ingest")
    options = {
        "host": mqtt_broker.host, "port": mqtt_broker.port, "credentials": credentials, "rule": name,
        "client_id": f"ingest-{name}", "subscription": f"$share/{name}/dt/iotcast/+/telemetry",
        "buffer_size_mb": None, "buffer_interval_s": None,
    }  # fmt: skip
    services, said, stop = [], [], threading.Event()

    def make():
        services.append(ingest_service(options, lake, None))
        return services[-1]

    version = lambda: selectors.topic_rule_version(name)  # noqa: E731
    runner = threading.Thread(target=ingest_run, args=(stop, make, version, 0.2, said.append))
    runner.start()
    device = mqtt_broker.client(mqtt_broker.device_kit("rule-dev"), client_id="rule-dev")
    try:
        _wait(lambda: services)
        assert services[0].connected.wait(15) and mqtt_broker.connect(device)
        publish = lambda ozone: device.publish(  # noqa: E731
            "dt/iotcast/rule-dev/telemetry",
            f'{{"message_id":"{uuid.uuid4()}","timestamp":"2026-11-27T21:00:00Z","ozone":{ozone}}}',
            qos=1,
        ).wait_for_publish(5)
        publish(50)
        _wait(lambda: services[0].stats.filtered == 1)
        rule.where = "ozone < 100"
        topic_rule_deploy(rule)
        _wait(lambda: len(services) == 2 and services[1].connected.is_set())
        publish(60)
        _wait(lambda: lake.list_objects("raw/"))
    finally:
        stop.set()
        runner.join(20)
        for service in services:
            if not service.stopped:
                service.stop()
        device.disconnect()
        device.loop_stop()
        forget_session(mqtt_broker, credentials, options["client_id"])
    records = [json.loads(line) for o in lake.list_objects("raw/") for line in lake.get_bytes(o.key).splitlines()]
    assert [r["ozone"] for r in records] == [60]  # the first reading was filtered by the old rule, not redelivered
    assert len(services) == 2 and services[0].stopped and services[1].stats.records == 1
    assert len(said) == 1 and "restarting the ingest with the new rule" in said[0]


def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.django_db
def test_the_rest_api_puts_and_deploys_a_rule_through_the_aws_backend(aws_identity):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("rules-api", password="pw", is_staff=True))
    created = api.put("/api/v1/topic-rules/iotcast-telemetry/", {"where": "site = 'harbour'"}, format="json")
    assert created.status_code == 200, created.content
    body = created.json()
    assert (body["buffer_size_mb"], body["buffer_interval_s"]) == (5, 300)  # Firehose's defaults
    rule = boto3.client("iot", region_name=REGION).get_topic_rule(ruleName="iotcast_telemetry")
    assert body["deployment"]["location"] == rule["ruleArn"] and rule["rule"]["sql"] == body["sql"]

    changed = api.put("/api/v1/topic-rules/iotcast-telemetry/", {"buffer_interval_s": 30}, format="json").json()
    assert (changed["where"], changed["buffer_interval_s"]) == ("site = 'harbour'", 30)
    assert _stream("iotcast-telemetry")["BufferingHints"]["IntervalInSeconds"] == 30
    refused = api.put("/api/v1/topic-rules/iotcast-telemetry/", {"where": "ozone = 'high'"}, format="json")
    assert refused.status_code == 400 and "compare them with a number" in refused.content.decode()
    assert api.get("/api/v1/topic-rules/iotcast-telemetry/").json()["buffer_interval_s"] == 30
    assert [r["name"] for r in api.get("/api/v1/topic-rules/").json()] == ["iotcast-telemetry"]
    assert api.get("/api/v1/topic-rules/nope/").status_code == 404
