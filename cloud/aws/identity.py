"""aws identity backend: AWS IoT Core things, certificates and a policy scoped to the thing's own topics.

register_thing: create_thing, create_keys_and_certificate (active), create_policy (once) with
${iot:Connection.Thing.ThingName}, attach_policy to the certificate, attach_thing_principal.
Rotation adds a certificate the same way; update_certificate sets ACTIVE, INACTIVE or REVOKED.
The broker endpoint is describe_endpoint(endpointType="iot:Data-ATS") on port 8883.
deploy_topic_rule creates (or updates) the Firehose delivery stream and creates (or replaces) the
IoT rule feeding it; apply_topic_rule does so for a TopicRuleSpec, into the S3 lake's bucket and prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from cloud.interfaces import (
    CERTIFICATE_STATES,
    BackendError,
    BackendUnavailable,
    BrokerEndpoint,
    DeviceCredentials,
    DeviceIdentity,
    Lake,
    TopicRuleDeployment,
    TopicRuleSpec,
)

MQTT_TLS_PORT = 8883
DEFAULT_POLICY = "iotcast-device"
THING = "${iot:Connection.Thing.ThingName}"


def device_policy(region: str, account: str) -> dict[str, Any]:
    """Return the policy document: connect as the thing itself, publish only under dt/iotcast/<thing>/."""
    arn = f"arn:aws:iot:{region}:{account}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{THING}"},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/dt/iotcast/{THING}/*"},
        ],
    }


def amazon_root_ca() -> str:
    """Return Amazon Root CA 1 (which signs IoT Core's ATS endpoints) from certifi's bundle."""
    import certifi

    text = open(certifi.where(), encoding="ascii").read()
    label = r"# Label: \"Amazon Root CA 1\"\n.*?(-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----)"
    match = re.search(label, text, re.S)
    if not match:
        raise BackendError("Amazon Root CA 1 is missing from certifi's bundle")
    return match.group(1) + "\n"


class IoTCoreIdentity(DeviceIdentity):
    """Things and X.509 certificates in AWS IoT Core."""

    def __init__(
        self, region: str = "us-east-1", policy_name: str = DEFAULT_POLICY, delivery_role_arn: str = ""
    ) -> None:
        """delivery_role_arn: the role IoT Core assumes to put to Firehose and Firehose assumes to write S3."""
        self.region = region
        self.policy_name = policy_name
        self.delivery_role_arn = delivery_role_arn

    @cached_property
    def _iot(self) -> Any:
        return boto3.client("iot", region_name=self.region)

    def register_thing(self, thing_name: str) -> DeviceCredentials:
        """Create the thing and its first certificate; raise BackendError when IoT Core refuses."""
        with _aws_errors(f"create thing {thing_name}"):
            self._iot.create_thing(thingName=thing_name)
        return self.issue_certificate(thing_name)

    def issue_certificate(self, thing_name: str) -> DeviceCredentials:
        """Create an active certificate, attach the device policy and the thing to it; return the credentials."""
        with _aws_errors(f"issue a certificate for {thing_name}"):
            self._ensure_policy()
            created = self._iot.create_keys_and_certificate(setAsActive=True)
            arn = created["certificateArn"]
            self._iot.attach_policy(policyName=self.policy_name, target=arn)
            self._iot.attach_thing_principal(thingName=thing_name, principal=arn)
        cert = x509.load_pem_x509_certificate(created["certificatePem"].encode())
        return DeviceCredentials(
            certificate_id=created["certificateId"],
            certificate_pem=created["certificatePem"],
            private_key_pem=created["keyPair"]["PrivateKey"],
            ca_pem=amazon_root_ca(),
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            not_after=cert.not_valid_after_utc,
        )

    def set_certificate_state(self, thing_name: str, certificate_id: str, state: str) -> None:
        """update_certificate(newStatus=state); IoT Core closes the connections of a certificate taken out of use."""
        if state not in CERTIFICATE_STATES:
            raise ValueError(f"unknown certificate state {state!r}; use one of {', '.join(CERTIFICATE_STATES)}")
        with _aws_errors(f"set certificate {certificate_id} {state}"):
            self._iot.update_certificate(certificateId=certificate_id, newStatus=state)

    def broker_endpoint(self) -> BrokerEndpoint:
        """Return the account's ATS data endpoint on port 8883."""
        with _aws_errors("describe the IoT data endpoint"):
            host = self._iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        return BrokerEndpoint(host=host, port=MQTT_TLS_PORT)

    def ping(self) -> None:
        """Ask IoT Core for the data endpoint: it answers only when the account's IoT service is reachable."""
        try:
            self.broker_endpoint()
        except BackendError as exc:
            raise BackendUnavailable(str(exc)) from exc

    def _ensure_policy(self) -> None:
        try:
            self._iot.get_policy(policyName=self.policy_name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            account = boto3.client("sts", region_name=self.region).get_caller_identity()["Account"]
            document = json.dumps(device_policy(self.region, account))
            self._iot.create_policy(policyName=self.policy_name, policyDocument=document)

    # --- the topic rule and its delivery stream ------------------------------------------------
    def apply_topic_rule(self, rule: TopicRuleSpec, lake: Lake) -> TopicRuleDeployment:
        """Deploy rule as an IoT rule + Firehose stream into the S3 lake's bucket (under its prefix).

        Raises BackendError when the lake is not in S3, no delivery role is configured, or AWS refuses.
        """
        bucket = getattr(lake, "bucket", None)
        if not bucket:
            raise BackendError(f"a Firehose stream delivers to S3: the lake {getattr(lake, 'url', lake)} is not in S3")
        if not self.delivery_role_arn:
            raise BackendError("no Firehose delivery role: set IOTCAST_FIREHOSE_ROLE_ARN (identity delivery_role_arn)")
        base = f"{lake.prefix.strip('/')}/" if getattr(lake, "prefix", "") else ""
        hints = {"buffer_size_mb": rule.buffer_size_mb, "buffer_interval_s": rule.buffer_interval_s}
        arn = self.deploy_topic_rule(
            rule.name, rule.where, f"arn:aws:s3:::{bucket}", self.delivery_role_arn,
            f"{base}{rule.prefix}", f"{base}{rule.error_prefix}", enabled=rule.enabled, **hints,
        )  # fmt: skip
        state = "enabled" if rule.enabled else "disabled"
        return TopicRuleDeployment(
            arn, f"IoT rule {_rule_identifier(rule.name)} ({state}) and Firehose stream deployed"
        )

    def deploy_topic_rule(
        self,
        rule_name: str,
        where: str,
        bucket_arn: str,
        role_arn: str,
        prefix: str = "raw/",
        error_prefix: str = "errors/",
        buffer_size_mb: int = 5,
        buffer_interval_s: int = 300,
        enabled: bool = True,
    ) -> str:
        """Create or update the Firehose stream (ExtendedS3, hints, prefixes), create or replace the IoT rule
        feeding it; return the rule ARN.

        The stream is named after the rule. Raises ValueError for hints outside Firehose's ranges,
        BackendError when AWS refuses.
        """
        if not 1 <= buffer_size_mb <= 128 or not 0 <= buffer_interval_s <= 900:
            raise ValueError("buffering hints: SizeInMBs must be 1-128 and IntervalInSeconds 0-900")
        destination = _s3_destination(bucket_arn, role_arn, prefix, error_prefix, buffer_size_mb, buffer_interval_s)
        self._put_delivery_stream(rule_name, destination)
        payload = _rule_payload(where, rule_name, role_arn, enabled)
        identifier = _rule_identifier(rule_name)
        with _aws_errors(f"create or replace topic rule {rule_name}"):
            if self._topic_rule_exists(identifier):
                self._iot.replace_topic_rule(ruleName=identifier, topicRulePayload=payload)
            else:
                self._iot.create_topic_rule(ruleName=identifier, topicRulePayload=payload)
            return self._iot.get_topic_rule(ruleName=identifier)["ruleArn"]

    def _put_delivery_stream(self, name: str, destination: dict[str, Any]) -> None:
        firehose = boto3.client("firehose", region_name=self.region)
        with _aws_errors(f"create or update delivery stream {name}"):
            try:
                described = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
            except firehose.exceptions.ResourceNotFoundException:
                firehose.create_delivery_stream(
                    DeliveryStreamName=name,
                    DeliveryStreamType="DirectPut",
                    ExtendedS3DestinationConfiguration=destination,
                )
                return
            firehose.update_destination(
                DeliveryStreamName=name,
                CurrentDeliveryStreamVersionId=described["VersionId"],
                DestinationId=described["Destinations"][0]["DestinationId"],
                ExtendedS3DestinationUpdate=destination,
            )

    def _topic_rule_exists(self, identifier: str) -> bool:
        try:
            self._iot.get_topic_rule(ruleName=identifier)
        except ClientError as exc:
            # IoT Core answers UnauthorizedException for a rule that does not exist; moto ResourceNotFound.
            if exc.response["Error"]["Code"] in ("ResourceNotFoundException", "UnauthorizedException"):
                return False
            raise
        return True


def _rule_identifier(name: str) -> str:
    # IoT rule names allow only letters, digits and underscores.
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _rule_payload(where: str, stream_name: str, role_arn: str, enabled: bool = True) -> dict[str, Any]:
    sql = "SELECT *, topic(3) AS device_id, timestamp() AS received_at FROM 'dt/iotcast/+/telemetry'"
    if where.strip():
        sql += f" WHERE {where.strip()}"
    return {
        "sql": sql,
        "awsIotSqlVersion": "2016-03-23",
        "ruleDisabled": not enabled,
        "actions": [
            {
                "firehose": {
                    "roleArn": role_arn,
                    "deliveryStreamName": stream_name,
                    "separator": "\n",
                    "batchMode": True,
                }
            }
        ],
    }


def _s3_destination(
    bucket_arn: str, role_arn: str, prefix: str, error_prefix: str, size_mb: int, interval_s: int
) -> dict[str, Any]:
    partition = "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
    return {
        "RoleARN": role_arn,
        "BucketARN": bucket_arn,
        "Prefix": f"{prefix}{partition}",
        "ErrorOutputPrefix": f"{error_prefix}!{{firehose:error-output-type}}/{partition}",
        "BufferingHints": {"SizeInMBs": size_mb, "IntervalInSeconds": interval_s},
        "CompressionFormat": "UNCOMPRESSED",
    }


@contextmanager
def _aws_errors(doing: str) -> Iterator[None]:
    """Turn boto errors into BackendError saying what was being done."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise BackendError(f"could not {doing}: {exc}") from exc
