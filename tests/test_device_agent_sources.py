"""The device agent's sources (replay of CSV and NDJSON files, stdin) and batching, through the real broker."""

import json
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_agent.agent import _fit, backoff_delay
from device_agent.sources import MAX_PAYLOAD_BYTES, BadLine, FieldMap, parse_timestamp
from tests.agent_process import agent

ROOT = Path(__file__).resolve().parent.parent
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def topic_of(thing: str) -> str:
    return f"dt/iotcast/{thing}/telemetry"


def subscribe(mqtt_broker, thing: str):
    """A direct (not shared) subscription, so no other ingest client in the session takes a share."""
    return mqtt_broker.subscriber(topic_of(thing), client_id=f"sub-{thing}-{uuid.uuid4().hex[:6]}")


def payloads(received) -> list:
    return [json.loads(payload) for _, payload in received]


CSV = """time,o3,PM2.5,co,so2,no2,lat,lon,station,temperature
2026-01-01T00:00:00Z,40.5,12,0.4,3,20,56.1,10.2,north,4.5
2026-01-01T00:00:05Z,41.5,13,0.5,3.5,21,56.1,10.2,north,4.6
2026-01-01T00:00:10Z,abc,13,0.5,3.5,21,56.1,10.2,north,4.6
2026-01-01T00:00:15Z,42.5,14,0.6,4,22,56.1,10.2
2026-01-01T00:00:20Z,43.5,,0.6,4,22,56.1,10.2,north,4.7
"""


def test_replay_of_a_csv_publishes_its_readings_in_order_paced_by_its_timestamps(mqtt_broker, tmp_path):
    thing = "replay-csv"
    kit = mqtt_broker.device_kit(thing)
    (tmp_path / "readings.csv").write_text(CSV)
    subscriber = subscribe(mqtt_broker, thing)
    arrivals = []
    subscriber.client.on_message = lambda client, userdata, message: arrivals.append((time.monotonic(), message))
    replay = ("--kit", str(kit), "--replay", str(tmp_path / "readings.csv"))
    try:
        result = agent(*replay, "--speed", "20", "--map", "station=-")
        deadline = time.monotonic() + 5
        while len(arrivals) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        subscriber.stop()
    assert result.returncode == 0, result.stderr
    messages = [json.loads(message.payload) for _, message in arrivals]
    assert [m["timestamp"] for m in messages] == [
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:00:05.000Z",
        "2026-01-01T00:00:20.000Z",
    ]
    assert messages[0] | {"message_id": None} == {
        "message_id": None,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "ozone": 40.5,
        "particulate_matter": 12.0,
        "carbon_monoxide": 0.4,
        "sulfur_dioxide": 3.0,
        "nitrogen_dioxide": 20.0,
        "latitude": 56.1,
        "longitude": 10.2,
        "temperature": 4.5,
    }
    assert [m["ozone"] for m in messages] == [40.5, 41.5, 43.5]
    assert "particulate_matter" not in messages[2]  # an empty cell is no value, not an error
    assert uuid.UUID(messages[0]["message_id"]).version == 4
    # 20 s of file at 20x real time: about a second between the first and the last reading.
    assert arrivals[-1][0] - arrivals[0][0] >= 0.9
    assert "readings.csv line 4: o3: 'abc' is not a number" in result.stderr
    assert "readings.csv line 5: fewer fields than the header's 10; skipped" in result.stderr
    assert "skipped 2 bad line(s)" in result.stderr
    assert "sent 3 message(s) to dt/iotcast/replay-csv/telemetry" in result.stdout

    # A text column that is not ignored makes every line bad: each is reported, none published.
    result = agent(*replay, "--speed", "0")
    assert result.returncode == 0, result.stderr
    assert "readings.csv line 2: station: 'north' is not a number (--map station=- ignores the column)" in result.stderr
    assert "skipped 5 bad line(s)" in result.stderr and "sent 0 message(s)" in result.stdout


def test_replay_of_an_ndjson_file_maps_keys_and_skips_bad_lines(mqtt_broker, tmp_path):
    thing = "replay-ndjson"
    kit = mqtt_broker.device_kit(thing)
    start_ms = int(datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC).timestamp() * 1000)
    lines = [
        json.dumps({"id": "r-1", "ts": start_ms, "o3": 10, "pm25": 5.5, "device_id": "spoofed"}),
        "{not json",
        json.dumps([{"o3": 1}]),
        json.dumps({"id": "r-2", "ts": start_ms + 1000, "o3": 11, "humidity": 80}),
        "",
        json.dumps({"id": "r-3", "ts": start_ms + 2000, "o3": 12, "no2": "high"}),
        json.dumps({"id": "r-4", "timestamp": "2026-02-03T05:05:09+01:00", "ozone": 13}),
    ]
    (tmp_path / "readings.ndjson").write_text("\n".join(lines) + "\n")
    subscriber = subscribe(mqtt_broker, thing)
    try:
        result = agent("--kit", str(kit), "--replay", str(tmp_path / "readings.ndjson"), "--speed", "0", "--quiet")
        received = payloads(subscriber.wait_for(3))
    finally:
        subscriber.stop()
    assert result.returncode == 0, result.stderr
    assert received == [
        {"message_id": "r-1", "timestamp": "2026-02-03T04:05:06.000Z", "ozone": 10.0, "particulate_matter": 5.5},
        {"message_id": "r-2", "timestamp": "2026-02-03T04:05:07.000Z", "ozone": 11.0, "humidity": 80.0},
        {"message_id": "r-4", "timestamp": "2026-02-03T04:05:09.000Z", "ozone": 13.0},
    ]
    errors = result.stderr
    assert "readings.ndjson line 2: invalid JSON" in errors
    assert "readings.ndjson line 3: not a JSON object; skipped" in errors
    assert "readings.ndjson line 6: no2: 'high' is not a number" in errors
    assert "skipped 3 bad line(s)" in errors
    assert "#" not in result.stdout  # --quiet


def test_stdin_readings_get_a_message_id_and_timestamp_when_absent(mqtt_broker):
    thing = "stdin-dev"
    kit = mqtt_broker.device_kit(thing)
    lines = [
        {"ozone": 1.5},
        {"message_id": "given", "timestamp": "2026-05-06T07:08:09.5Z", "ozone": 2.5},
        {"ozone": 3.5, "particulate_matter": 4},
    ]
    subscriber = subscribe(mqtt_broker, thing)
    try:
        before = datetime.now(UTC)
        result = agent("--kit", str(kit), "--stdin", stdin="".join(json.dumps(line) + "\n" for line in lines))
        received = payloads(subscriber.wait_for(3))
    finally:
        subscriber.stop()
    assert result.returncode == 0, result.stderr
    assert [m["ozone"] for m in received] == [1.5, 2.5, 3.5]
    assert received[1] == {"message_id": "given", "timestamp": "2026-05-06T07:08:09.500Z", "ozone": 2.5}
    for message in (received[0], received[2]):
        assert uuid.UUID(message["message_id"]).version == 4
        assert TIMESTAMP.match(message["timestamp"])
        assert datetime.fromisoformat(message["timestamp"]) >= before.replace(microsecond=0)
    assert "sent 3 message(s) to dt/iotcast/stdin-dev/telemetry" in result.stdout


def test_batching_sends_json_arrays_of_up_to_n_readings(mqtt_broker):
    thing = "batcher"
    kit = mqtt_broker.device_kit(thing)
    subscriber = subscribe(mqtt_broker, thing)
    lines = "".join(json.dumps({"message_id": f"b-{index}", "ozone": index}) + "\n" for index in range(7))
    try:
        result = agent("--kit", str(kit), "--stdin", "--batch", "3", stdin=lines)
        received = payloads(subscriber.wait_for(3))
    finally:
        subscriber.stop()
    assert result.returncode == 0, result.stderr
    assert all(isinstance(message, list) for message in received)
    assert [[reading["message_id"] for reading in message] for message in received] == [
        ["b-0", "b-1", "b-2"],
        ["b-3", "b-4", "b-5"],
        ["b-6"],
    ]
    assert "sent 3 message(s) to dt/iotcast/batcher/telemetry (7 reading(s), up to 3 per message)" in result.stdout


def test_a_batch_never_exceeds_the_payload_limit():
    body = json.dumps({"message_id": "x", "pad": "y" * 30_000})
    rows = [(seq, body, 0.0) for seq in range(1, 11)]
    fitted = _fit(rows)
    assert len(fitted) == 4
    assert len("[" + ",".join(b for _, b, _ in fitted) + "]") <= MAX_PAYLOAD_BYTES
    assert len("[" + ",".join(b for _, b, _ in rows[:5]) + "]") > MAX_PAYLOAD_BYTES
    assert _fit(rows[:1]) == rows[:1]


def test_field_mapping_and_timestamps():
    mapping = FieldMap({"Temp C": "temperature", "junk": "-"})
    message, when = mapping.message({"Time": "1767225600", "O3": "7", "Temp C": "3", "junk": "x"}, False)
    assert message["timestamp"] == "2026-01-01T00:00:00.000Z" and when.tzinfo is UTC
    assert (message["ozone"], message["temperature"]) == (7.0, 3.0) and "junk" not in message
    assert parse_timestamp("2026-01-01 01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(BadLine, match="no timestamp"):
        mapping.message({"o3": 1}, default_now=False)
    with pytest.raises(BadLine, match="not a finite number"):
        mapping.message({"o3": "nan"}, default_now=True)
    with pytest.raises(BadLine, match="over 128 KB"):
        mapping.message({"note": 1.0, **{f"f{i}": 1.0 for i in range(12_000)}}, default_now=True)


def test_backoff_is_exponential_with_full_jitter_and_bounded():
    import random

    rng = random.Random(1)
    for attempt, cap in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)]:
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= cap
        assert max(delays) > 0.8 * cap and min(delays) < 0.2 * cap  # spread over the whole range


def test_help_explains_every_option_and_bad_replay_input_is_one_line(tmp_path, mqtt_broker):
    help_text = agent("--help").stdout
    for option in ("--replay", "--speed", "--stdin", "--map", "--batch", "--linger", "--queue-dir", "--queue-max"):
        assert option in help_text
    for option in ("--keep-trying", "--reconnect-min", "--reconnect-max", "--drain-timeout", "--count", "--quiet"):
        assert option in help_text
    kit = mqtt_broker.device_kit("replay-errors")
    result = agent("--kit", str(kit), "--replay", str(tmp_path / "missing.csv"))
    assert (result.returncode, result.stderr.strip()) == (
        1,
        f"error: cannot read {tmp_path / 'missing.csv'}: No such file or directory",
    )
    (tmp_path / "no-time.csv").write_text("o3,no2\n1,2\n")
    result = agent("--kit", str(kit), "--replay", str(tmp_path / "no-time.csv"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "has no timestamp column (header: o3, no2)" in result.stderr
    result = agent("--kit", str(kit), "--stdin", "--replay", "x.csv")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr
    result = agent("--kit", str(kit), "--batch", "0")
    assert result.returncode == 2 and "must be at least 1" in result.stderr
