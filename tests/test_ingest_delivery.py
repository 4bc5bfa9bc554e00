"""The Firehose-like delivery stream: key layout, size and interval flushes, acks only after durability."""

import json
import re
from datetime import UTC, datetime

import pytest

from cloud.interfaces import BackendUnavailable
from dataplane.ingest.delivery import DeliveryStream, object_key
from dataplane.ingest.rule import records_from_message

RAW_KEY = re.compile(
    r"^raw/year=(\d{4})/month=(\d\d)/day=(\d\d)/hour=(\d\d)/"
    r"iotcast-telemetry-1-(\d{4})-(\d\d)-(\d\d)-(\d\d)-\d\d-\d\d-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
T0 = datetime(2026, 11, 27, 21, 5, 9, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(index: int) -> dict:
    return {"message_id": f"m-{index}", "timestamp": "2026-11-27T21:00:00Z", "ozone": 1.0, "device_id": "d"}


def test_object_key_matches_firehose_layout():
    key = object_key("raw/", T0)
    match = RAW_KEY.match(key)
    assert match and match.groups() == ("2026", "11", "27", "21", "2026", "11", "27", "21")
    assert "-2026-11-27-21-05-09-" in key


def test_flush_writes_newline_delimited_json_and_error_prefixes(lake):
    stream = DeliveryStream(lake, clock=Clock())
    good = records_from_message("dt/iotcast/d/telemetry", json.dumps([record(1), record(2)]).encode(), 5)
    bad = records_from_message("dt/iotcast/d/telemetry", b"not json", 6)
    stream.put_records(good.records, good.errors)
    stream.put_records(bad.records, bad.errors)
    flushed = stream.flush()
    assert len(flushed) == 2
    (raw,) = lake.list_objects("raw/")
    assert RAW_KEY.match(raw.key)
    lines = lake.get_bytes(raw.key).decode().splitlines()
    assert [json.loads(line)["message_id"] for line in lines] == ["m-1", "m-2"]
    (error,) = lake.list_objects("errors/processing-failed/year=2026/month=11/day=27/hour=21/iotcast-telemetry-1-")
    assert json.loads(lake.get_bytes(error.key))["errorCode"] == "InvalidJson"
    assert stream.flush() == []


def test_size_hint_flushes_when_the_buffer_is_full(lake):
    stream = DeliveryStream(lake, buffer_size_mb=1, buffer_interval_s=900, clock=Clock())
    line_size = len(json.dumps(record(0), separators=(",", ":"))) + 1
    per_mib = -(-(1024 * 1024) // line_size)
    for _ in range(per_mib - 1):
        stream.put(record(0))
    assert lake.list_objects("raw/") == []
    stream.put(record(0))
    (written,) = lake.list_objects("raw/")
    assert written.size >= 1024 * 1024 and stream.buffered_records() == 0


def test_interval_hint_flushes_once_the_first_record_is_old_enough(lake):
    clock = Clock()
    stream = DeliveryStream(lake, buffer_size_mb=5, buffer_interval_s=60, clock=clock)
    stream.put(record(1))
    clock.now += 59
    assert stream.flush_due() == []
    clock.now += 1
    (flushed,) = stream.flush_due()
    # The key's time is the first record's arrival, as Firehose names objects.
    assert "-2026-11-27-21-05-09-" in flushed.key and flushed.records == 1


def test_tokens_are_reported_only_when_every_record_is_durable(lake):
    events = []

    class WatchedLake:
        def put_bytes(self, key, data):
            events.append(("put", key.split("/")[0]))
            lake.put_bytes(key, data)

    stream = DeliveryStream(
        WatchedLake(), clock=Clock(), on_durable=lambda f: events.append(("durable", f.durable_tokens))
    )
    outcome = records_from_message("dt/iotcast/d/telemetry", json.dumps([record(1), "oops"]).encode(), 1)
    stream.put_records(outcome.records, outcome.errors, token="msg-1")
    assert events == []
    stream.flush()
    # The message's token comes with the second object: its record and its error record are both stored.
    assert events == [("put", "raw"), ("durable", []), ("put", "errors"), ("durable", ["msg-1"])]


def test_a_message_with_nothing_to_write_is_durable_at_once(lake):
    done = []
    stream = DeliveryStream(lake, on_durable=lambda f: done.extend(f.durable_tokens))
    stream.put_records([], [], token="empty-batch")
    assert done == ["empty-batch"]


def test_failed_write_keeps_records_and_withholds_the_ack(lake):
    done = []

    class FlakyLake:
        fail = True

        def put_bytes(self, key, data):
            if self.fail:
                raise BackendUnavailable("store down")
            lake.put_bytes(key, data)

    flaky = FlakyLake()
    stream = DeliveryStream(flaky, clock=Clock(), on_durable=lambda f: done.extend(f.durable_tokens))
    stream.put(record(1), token="a")
    with pytest.raises(BackendUnavailable):
        stream.flush()
    stream.put(record(2), token="b")
    assert done == [] and stream.buffered_records() == 2
    flaky.fail = False
    stream.flush()
    assert sorted(done) == ["a", "b"]
    (written,) = lake.list_objects("raw/")
    assert len(lake.get_bytes(written.key).splitlines()) == 2
