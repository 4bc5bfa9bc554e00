"""The device agent (real awsiotsdk client against the real broker) and its simulated sensor."""

import json
import re
import signal
import statistics
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.local.identity import LocalCertificateAuthority
from device_agent.kit import KitError, load_kit, write_kit
from device_agent.simulator import POLLUTANTS, AirQualitySimulator
from device_agent.telemetry import format_timestamp, telemetry_message

ROOT = Path(__file__).resolve().parent.parent
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CONTRACT_KEYS = {"message_id", "timestamp", *POLLUTANTS, "latitude", "longitude"}


def agent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "device_agent", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


# --- the agent against the broker -------------------------------------------------
def test_agent_publishes_count_messages_that_match_the_contract(mqtt_broker):
    subscriber = mqtt_broker.subscriber(client_id="ingest-agent")
    try:
        kit = mqtt_broker.device_kit("agent-1")
        result = agent("--kit", str(kit), "--count", "3", "--interval", "0.25")
        assert result.returncode == 0, result.stderr
        assert "sent 3 message(s) to dt/iotcast/agent-1/telemetry" in result.stdout
        received = subscriber.wait_for(3)
    finally:
        subscriber.stop()
    assert [topic for topic, _ in received] == ["dt/iotcast/agent-1/telemetry"] * 3
    messages = [json.loads(payload) for _, payload in received]
    for message in messages:
        assert set(message) == CONTRACT_KEYS
        assert uuid.UUID(message["message_id"]).version == 4
        assert TIMESTAMP.match(message["timestamp"])
        assert all(isinstance(message[name], float) for name in POLLUTANTS)
    assert len({m["message_id"] for m in messages}) == 3
    instants = [datetime.fromisoformat(m["timestamp"]) for m in messages]
    assert instants == sorted(instants) and instants[-1] - instants[0] >= timedelta(seconds=0.45)


def test_agent_stops_cleanly_on_ctrl_c_and_says_how_many_were_sent(mqtt_broker):
    kit = mqtt_broker.device_kit("agent-interrupted")
    process = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "--kit", str(kit), "--interval", "0.25"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("#2 "):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    sent = int(re.search(r"sent (\d+) message", out).group(1))
    assert sent >= 2
    assert "Traceback" not in err


def test_agent_with_a_certificate_from_another_ca_is_refused_in_one_line(mqtt_broker, tmp_path):
    stranger = LocalCertificateAuthority(str(tmp_path / "ca"), mqtt_broker.host, mqtt_broker.port)
    credentials = stranger.register_thing("stranger")
    kit = write_kit(
        tmp_path / "kit",
        thing_name="stranger",
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        certificate_pem=credentials.certificate_pem,
        private_key_pem=credentials.private_key_pem,
        ca_pem=mqtt_broker.authority.ca_pem,
    )
    result = agent("--kit", str(kit), "--count", "1")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "rejected the connection" in result.stderr


def test_agent_reports_an_unreachable_broker(mqtt_broker, tmp_path):
    from dataplane.ports import free_port

    credentials = mqtt_broker.authority.register_thing("lonely")
    kit = write_kit(
        tmp_path / "kit",
        thing_name="lonely",
        host="127.0.0.1",
        port=free_port(),
        certificate_pem=credentials.certificate_pem,
        private_key_pem=credentials.private_key_pem,
        ca_pem=credentials.ca_pem,
    )
    result = agent("--kit", str(kit), "--count", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the broker at 127.0.0.1:")


def test_agent_reports_a_missing_or_broken_kit(tmp_path):
    result = agent("--kit", str(tmp_path / "nowhere"))
    assert (result.returncode, result.stderr.strip()) == (1, f"error: kit folder {tmp_path / 'nowhere'} does not exist")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "kit.json").write_text("{}")
    result = agent("--kit", str(tmp_path / "partial"))
    assert result.returncode == 1 and "lacks certificate.pem.crt, private.pem.key, ca.pem" in result.stderr


def test_agent_help_explains_every_option_and_rejects_a_too_short_interval():
    help_text = agent("--help").stdout
    for option in ("--kit", "--interval", "--count", "--seed", "--quiet"):
        assert option in help_text
    result = agent("--kit", "x", "--interval", "0.1")
    assert result.returncode == 2 and "at least 0.25" in result.stderr


# --- the kit ---------------------------------------------------------------------------
def test_kit_round_trips_and_refuses_to_overwrite(tmp_path):
    kit_dir = write_kit(
        tmp_path / "k", thing_name="t1", host="h", port=1, certificate_pem="C", private_key_pem="K", ca_pem="A"
    )
    kit = load_kit(kit_dir)
    assert (kit.thing_name, kit.host, kit.port, kit.topic, kit.client_id) == (
        "t1",
        "h",
        1,
        "dt/iotcast/t1/telemetry",
        "t1",
    )
    assert kit.command == f"python -m device_agent --kit {kit_dir}"
    assert kit.command in (kit_dir / "README.txt").read_text()
    assert (kit_dir / "private.pem.key").stat().st_mode & 0o077 == 0
    with pytest.raises(KitError, match="already holds"):
        write_kit(kit_dir, thing_name="t1", host="h", port=1, certificate_pem="C", private_key_pem="K", ca_pem="A")
    (kit_dir / "kit.json").write_text("{not json")
    with pytest.raises(KitError, match="malformed"):
        load_kit(kit_dir)


# --- the simulator ------------------------------------------------------------------------
def test_simulator_is_deterministic_given_seed_and_time():
    when = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    first = AirQualitySimulator(11, 56.2, 10.2)
    # Another instance, asked in another order, must give the same readings.
    second = AirQualitySimulator(11, 56.2, 10.2)
    second.reading_at(when + timedelta(days=3))
    assert first.reading_at(when) == second.reading_at(when)
    assert first.reading_at(when) != AirQualitySimulator(12, 56.2, 10.2).reading_at(when)
    assert first.reading_at(when) != first.reading_at(when + timedelta(hours=1))


def _hourly(simulator, days: int, start=datetime(2026, 6, 1, tzinfo=UTC)):
    return list(simulator.series(start, days * 24))


def _mean_at(rows, name: str, hours: set[int], weekend: bool | None = None) -> float:
    return statistics.mean(
        r[name] for t, r in rows if t.hour in hours and (weekend is None or (t.weekday() >= 5) == weekend)
    )


def test_simulator_shows_daily_and_weekly_cycles():
    rows = _hourly(AirQualitySimulator(3, 0.0, 0.0), days=28)  # longitude 0: local solar time = UTC
    # Ozone peaks mid-afternoon, lowest before dawn.
    assert _mean_at(rows, "ozone", {14, 15}) > 1.5 * _mean_at(rows, "ozone", {4, 5})
    # NO2 and CO peak in the rush hours.
    for name in ("nitrogen_dioxide", "carbon_monoxide"):
        assert _mean_at(rows, name, {8}, weekend=False) > 2 * _mean_at(rows, name, {3}, weekend=False)
        assert _mean_at(rows, name, {17, 18}) > 1.5 * _mean_at(rows, name, {3})
    # Weekend mornings have less traffic.
    assert _mean_at(rows, "nitrogen_dioxide", {8}, weekend=True) < 0.8 * _mean_at(
        rows, "nitrogen_dioxide", {8}, weekend=False
    )


def test_simulator_noise_is_autocorrelated_and_values_stay_plausible():
    simulator = AirQualitySimulator(5, 56.2, 10.2)
    start = datetime(2026, 1, 10, tzinfo=UTC)
    rows = _hourly(simulator, days=30, start=start)
    ranges = {"ozone": (0, 240), "particulate_matter": (1, 300), "carbon_monoxide": (0, 10)}
    ranges |= {"sulfur_dioxide": (0, 120), "nitrogen_dioxide": (0, 250)}
    for name, (low, high) in ranges.items():
        values = [r[name] for _, r in rows]
        assert low <= min(values) and max(values) <= high
        assert statistics.pstdev(values) > 0
    # Readings 5 s apart differ far less than readings hours apart.
    pm_5s = [
        abs(
            simulator.reading_at(t)["particulate_matter"]
            - simulator.reading_at(t + timedelta(seconds=5))["particulate_matter"]
        )
        for t, _ in rows[::24]
    ]
    pm_day = [
        abs(a["particulate_matter"] - b["particulate_matter"]) for (_, a), (_, b) in zip(rows, rows[12:], strict=False)
    ]
    assert statistics.mean(pm_5s) < 0.5 * statistics.mean(pm_day)


def test_simulator_places_devices_without_a_position_at_a_stable_place():
    first, second = AirQualitySimulator(9), AirQualitySimulator(9)
    assert (first.latitude, first.longitude) == (second.latitude, second.longitude)
    assert -90 <= first.latitude <= 90 and -180 <= first.longitude <= 180


def test_telemetry_message_has_the_contract_shape():
    when = datetime(2026, 11, 27, 21, 0, 0, 123456, tzinfo=UTC)
    message = telemetry_message({"ozone": 1.0}, when)
    assert message["timestamp"] == "2026-11-27T21:00:00.123Z"
    assert list(message)[:2] == ["message_id", "timestamp"]
    assert format_timestamp(datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000Z"
