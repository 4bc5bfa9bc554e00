"""The IoT rule: SELECT *, topic(3) AS device_id, timestamp() AS received_at, batchMode, error records."""

import base64
import json

import pytest

from dataplane.ingest.rule import (
    MAX_PAYLOAD_BYTES,
    OVERSIZE,
    PROCESSING_FAILED,
    UNKNOWN_DEVICE,
    records_from_message,
)
from dataplane.ingest.where import compile_where

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


def test_overflowing_number_is_not_finite():
    (error,) = records_from_message(
        TOPIC, b'{"message_id":"m","timestamp":"2026-01-01T00:00:00Z","ozone":1e400}', 0
    ).errors
    assert error.document["errorCode"] == "InvalidMetric"


def test_ints_nulls_and_payload_rule_fields_pass_the_metric_check():
    payload = reading(ozone=None, co=3, device_id=7.5, received_at="early")
    (record,) = records_from_message(TOPIC, json.dumps(payload).encode(), NOW_MS).records
    assert (record["ozone"], record["co"], record["device_id"], record["received_at"]) == (None, 3, "sensor-7", NOW_MS)


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


def test_an_empty_array_is_a_processing_failure_kept_whole():
    outcome = records_from_message(TOPIC, b"[]", NOW_MS)
    assert outcome.records == [] and [e.error_type for e in outcome.errors] == [PROCESSING_FAILED]
    assert outcome.errors[0].document["errorCode"] == "EmptyBatch" and raw(outcome.errors[0]) == b"[]"


def test_an_unknown_device_is_kept_whole_in_its_own_error_type():
    payload = json.dumps([reading(), reading(message_id="m-2")]).encode()
    outcome = records_from_message(TOPIC, payload, NOW_MS, device_known=lambda name: name != "sensor-7")
    (error,) = outcome.errors
    assert outcome.records == [] and error.error_type == UNKNOWN_DEVICE and raw(error) == payload
    assert error.document["errorCode"] == "UnknownDevice"
    assert records_from_message(TOPIC, payload, NOW_MS, device_known={"sensor-7"}.__contains__).errors == []


def test_where_selects_readings_after_the_select_and_counts_the_rest():
    payload = json.dumps([reading(ozone=5.0), reading(ozone=50.0), reading(ozone="bad")]).encode()
    outcome = records_from_message(TOPIC, payload, NOW_MS, where=compile_where("ozone > 10 AND device_id = 'sensor-7'"))
    assert [r["ozone"] for r in outcome.records] == [50.0]
    assert outcome.filtered == 1 and len(outcome.errors) == 1  # the bad element is an error, never filtered away
