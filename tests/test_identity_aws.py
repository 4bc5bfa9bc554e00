"""The aws identity backend against moto: the exact IoT Core, STS and Firehose calls and the state they leave."""

import json
import re

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from cloud.aws.identity import IoTCoreIdentity, amazon_root_ca
from cloud.interfaces import BackendError

REGION = "us-east-1"


@pytest.fixture
def aws(mocked_aws):
    return boto3.client("iot", region_name=REGION)


def test_register_thing_creates_thing_certificate_and_scoped_policy(aws):
    credentials = IoTCoreIdentity(region=REGION).register_thing("sensor-1")
    described = aws.describe_certificate(certificateId=credentials.certificate_id)["certificateDescription"]
    assert described["status"] == "ACTIVE"
    arn = described["certificateArn"]
    assert aws.list_thing_principals(thingName="sensor-1")["principals"] == [arn]
    assert [p["policyName"] for p in aws.list_attached_policies(target=arn)["policies"]] == ["iotcast-device"]
    document = json.loads(aws.get_policy(policyName="iotcast-device")["policyDocument"])
    resources = {s["Action"]: s["Resource"] for s in document["Statement"]}
    assert resources["iot:Connect"] == "arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"
    assert resources["iot:Publish"].endswith(":topic/dt/iotcast/${iot:Connection.Thing.ThingName}/*")
    cert = x509.load_pem_x509_certificate(credentials.certificate_pem.encode())
    key = serialization.load_pem_private_key(credentials.private_key_pem.encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert credentials.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert "Amazon Root CA 1" in x509.load_pem_x509_certificate(credentials.ca_pem.encode()).subject.rfc4514_string()


def test_rotation_adds_a_certificate_and_states_follow_update_certificate(aws):
    identity = IoTCoreIdentity(region=REGION)
    first = identity.register_thing("sensor-2")
    second = identity.issue_certificate("sensor-2")
    assert len(aws.list_thing_principals(thingName="sensor-2")["principals"]) == 2
    assert len(aws.list_policies()["policies"]) == 1  # created once, attached to both
    identity.set_certificate_state("sensor-2", first.certificate_id, "INACTIVE")
    identity.set_certificate_state("sensor-2", second.certificate_id, "REVOKED")

    def status(certificate_id: str) -> str:
        return aws.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"]

    assert (status(first.certificate_id), status(second.certificate_id)) == ("INACTIVE", "REVOKED")
    with pytest.raises(ValueError, match="unknown certificate state"):
        identity.set_certificate_state("sensor-2", first.certificate_id, "GONE")


def test_broker_endpoint_is_the_ats_data_endpoint(aws):
    endpoint = IoTCoreIdentity(region=REGION).broker_endpoint()
    assert endpoint.port == 8883
    # moto makes up a new address per call; IoT Core's ATS addresses look like this.
    assert re.fullmatch(r"[a-z0-9]+-ats\.iot\.us-east-1\.amazonaws\.com", endpoint.host)


def test_aws_refusals_become_backend_errors(aws):
    identity = IoTCoreIdentity(region=REGION)
    with pytest.raises(BackendError, match="set certificate"):
        identity.set_certificate_state("nobody", "0" * 64, "REVOKED")


def test_deploy_topic_rule_creates_the_firehose_stream_and_the_rule(aws):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="iotcast-lake")
    role = "arn:aws:iam::123456789012:role/iotcast-ingest"
    identity = IoTCoreIdentity(region=REGION)
    arn = identity.deploy_topic_rule(
        "iotcast-telemetry", "ozone >= 0", "arn:aws:s3:::iotcast-lake", role, buffer_size_mb=8, buffer_interval_s=60
    )
    rule = aws.get_topic_rule(ruleName="iotcast_telemetry")
    assert rule["ruleArn"] == arn
    assert rule["rule"]["sql"].endswith("FROM 'dt/iotcast/+/telemetry' WHERE ozone >= 0")
    assert rule["rule"]["sql"].startswith("SELECT *, topic(3) AS device_id, timestamp() AS received_at")
    firehose_action = rule["rule"]["actions"][0]["firehose"]
    assert firehose_action == {
        "roleArn": role,
        "deliveryStreamName": "iotcast-telemetry",
        "separator": "\n",
        "batchMode": True,
    }
    stream = boto3.client("firehose", region_name=REGION).describe_delivery_stream(
        DeliveryStreamName="iotcast-telemetry"
    )
    destination = stream["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert destination["BufferingHints"] == {"SizeInMBs": 8, "IntervalInSeconds": 60}
    assert destination["Prefix"].startswith("raw/year=!{timestamp:yyyy}/")
    assert destination["ErrorOutputPrefix"].startswith("errors/!{firehose:error-output-type}/year=")
    with pytest.raises(ValueError, match="SizeInMBs"):
        identity.deploy_topic_rule("other", "", "arn:aws:s3:::iotcast-lake", role, buffer_size_mb=129)


def test_amazon_root_ca_is_a_ca_certificate():
    cert = x509.load_pem_x509_certificate(amazon_root_ca().encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
