"""The IoT rule: SELECT *, topic(3) AS device_id, timestamp() AS received_at, batchMode, error records."""

import base64
import json

import pytest

from dataplane.ingest.rule import MAX_PAYLOAD_BYTES, OVERSIZE, PROCESSING_FAILED, records_from_message

TOPIC = "dt/iotcast/sensor-7/telemetry"
NOW_MS = 1_795_000_000_123


def reading(**fields):
    return {"message_id": "m-1", "timestamp": "2026-11-27T21:00:00.000Z", "ozone": 41.0, **fields}


def raw(error):
    return base64.b64decode(error.document["rawData"])


def test_object_becomes_one_record_with_device_and_arrival():
    outcome = records_from_message(TOPIC, json.dumps(reading(wind_speed=3)).encode(), NOW_MS)
    assert outcome.errors == []
    assert outcome.records == [{**reading(wind_speed=3), "device_id": "sensor-7", "received_at": NOW_MS}]


def test_array_fans_out_one_record_per_element():
    batch = [reading(message_id=f"m-{i}", ozone=float(i)) for i in range(3)]
    outcome = records_from_message(TOPIC, json.dumps(batch).encode(), NOW_MS)
    assert [r["message_id"] for r in outcome.records] == ["m-0", "m-1", "m-2"]
    assert {r["device_id"] for r in outcome.records} == {"sensor-7"}


def test_device_id_comes_from_the_topic_never_the_payload():
    payload = json.dumps(reading(device_id="someone-else", received_at=1)).encode()
    (record,) = records_from_message(TOPIC, payload, NOW_MS).records
    assert (record["device_id"], record["received_at"]) == ("sensor-7", NOW_MS)


def test_invalid_json_is_kept_whole_with_the_reason():
    payload = b'{"message_id": "m-1", "ozone": 4'
    outcome = records_from_message(TOPIC, payload, NOW_MS)
    assert outcome.records == []
    (error,) = outcome.errors
    assert error.error_type == PROCESSING_FAILED
    assert raw(error) == payload
    assert error.document["errorCode"] == "InvalidJson" and "not valid JSON" in error.document["errorMessage"]
    assert (error.document["attemptsMade"], error.document["arrivalTimestamp"]) == (1, NOW_MS)
    assert error.document["topic"] == TOPIC


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (reading(ozone="high"), "InvalidMetric"),
        (reading(ozone=True), "InvalidMetric"),
        (reading(timestamp="yesterday"), "InvalidTimestamp"),
        ({k: v for k, v in reading().items() if k != "timestamp"}, "InvalidTimestamp"),
        ({k: v for k, v in reading().items() if k != "message_id"}, "InvalidMessageId"),
        ([1, 2], "NotAnObject"),
        ("just a string", "NotAnObject"),
    ],
)
def test_bad_readings_become_processing_failed(payload, code):
    outcome = records_from_message(TOPIC, json.dumps(payload).encode(), NOW_MS)
    assert outcome.records == [] and outcome.errors
    assert {e.error_type for e in outcome.errors} == {PROCESSING_FAILED}
    assert {e.document["errorCode"] for e in outcome.errors} == {code}


def test_nan_constant_is_not_a_number():
    (error,) = records_from_message(
        TOPIC, b'{"message_id":"m","timestamp":"2026-01-01T00:00:00Z","ozone":NaN}', 0
    ).errors
    assert error.document["errorCode"] == "InvalidJson"


def test_a_bad_element_in_a_batch_rejects_only_that_element():
    batch = [reading(message_id="good"), reading(message_id="bad", ozone="x")]
    outcome = records_from_message(TOPIC, json.dumps(batch).encode(), NOW_MS)
    assert [r["message_id"] for r in outcome.records] == ["good"]
    (error,) = outcome.errors
    assert json.loads(raw(error))["message_id"] == "bad"
    assert error.document["errorMessage"].startswith("element 1:")


def test_null_metric_is_a_missing_reading_not_an_error():
    (record,) = records_from_message(TOPIC, json.dumps(reading(ozone=None)).encode(), NOW_MS).records
    assert record["ozone"] is None


def test_oversize_payload_is_kept_whole():
    payload = json.dumps(reading(padding="x" * MAX_PAYLOAD_BYTES)).encode()
    (error,) = records_from_message(TOPIC, payload, NOW_MS).errors
    assert error.error_type == OVERSIZE and raw(error) == payload


def test_foreign_topic_is_a_caller_error():
    with pytest.raises(ValueError):
        records_from_message("dt/iotcast/a/b/telemetry", b"{}", NOW_MS)
