"""The aws hosting backend reads shadow answers from SageMaker's data capture in S3 (against moto)."""

from __future__ import annotations

import base64
import json

import boto3
import pytest

from cloud.aws.hosting import CAPTURE_ENV, SageMakerHosting
from cloud.interfaces import BackendError
from tests.conftest import install_lake
from tests.test_aws_hosting import ROLE, record_calls, variants

CAPTURE = "s3://iotcast-capture/datacapture"


@pytest.fixture
def s3_lake(mocked_aws, settings):
    """moto's S3 with the lake on it (SageMaker models load their artifacts from the lake)."""
    from cloud.backends import get_backend

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="iotcast-lake")
    install_lake(settings, "cloud.lake.S3Lake", "s3://iotcast-lake")
    yield
    get_backend.cache_clear()


def capture_line(data: str, when: str, encoding: str = "JSON") -> str:
    """One line of SageMaker data capture, as its documentation shows it."""
    request = json.dumps({"instances": [{"start": "2026-11-01 00:00:00", "target": [1.0, 2.0]}]})
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "data": request,
                              "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": data,
                               "encoding": encoding},
        },
        "eventMetadata": {"eventId": "0d3b-1", "inferenceTime": when},
        "eventVersion": "0",
    })  # fmt: skip


def test_without_a_capture_location_reading_shadow_answers_says_what_to_set(mocked_aws, monkeypatch):
    monkeypatch.delenv(CAPTURE_ENV, raising=False)
    with pytest.raises(NotImplementedError, match=CAPTURE_ENV):
        SageMakerHosting("us-east-1", role_arn=ROLE).shadow_records("air")


def test_shadow_answers_come_from_the_captured_files_of_the_shadow_variant(s3_lake, monkeypatch):
    hosting = SageMakerHosting("us-east-1", role_arn=ROLE, poll_s=0.01, timeout_s=5, capture_s3_uri=CAPTURE)
    sent = record_calls(hosting, monkeypatch)
    hosting.apply_endpoint("air", variants())
    capture = sent["CreateEndpointConfig"][0]["DataCaptureConfig"]
    assert capture["EnableCapture"] and capture["DestinationS3Uri"] == CAPTURE
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="iotcast-capture")
    shadow = json.dumps({"predictions": [{"mean": [7.0]}]})
    older = capture_line(json.dumps({"predictions": [{"mean": [5.0]}]}), "2026-11-28T01:00:00Z")
    newer = capture_line(base64.b64encode(shadow.encode()).decode(), "2026-11-28T01:00:05Z", "BASE64")
    s3.put_object(Bucket="iotcast-capture", Key="datacapture/air/Shadow/2026/11/28/01/a.jsonl",
                  Body=f"{older}\nnot json\n{newer}\n".encode())  # fmt: skip
    production = capture_line(json.dumps({"predictions": [{"mean": [1.0]}]}), "2026-11-28T01:00:06Z")
    s3.put_object(Bucket="iotcast-capture", Key="datacapture/air/Blue/2026/11/28/01/b.jsonl", Body=production)

    records = hosting.shadow_records("air", limit=5)
    assert [(r.variant, json.loads(r.answer)["predictions"][0]["mean"]) for r in records] == [
        ("Shadow", [7.0]), ("Shadow", [5.0])
    ]  # fmt: skip
    assert records[0].at - records[1].at == 5 and records[0].model_ms is None
    assert len(hosting.shadow_records("air", limit=1)) == 1
    with pytest.raises(BackendError, match="cannot read the shadow answers of nope"):
        hosting.shadow_records("nope")
