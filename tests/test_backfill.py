"""manage.py backfill: simulated history through the live rule and delivery stream into raw/."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from device_agent.simulator import AirQualitySimulator, seed_for
from devices.models import Device

END = "2026-11-27T00:00:00Z"


def raw_records(lake) -> list[dict]:
    return [json.loads(line) for o in lake.list_objects("raw/") for line in lake.get_bytes(o.key).splitlines()]


@pytest.fixture
def devices(db):
    Device.objects.create(name="north", latitude=56.2, longitude=10.2)
    Device.objects.create(name="south")
    Device.objects.create(name="idle")


def test_backfill_writes_hourly_history_like_live_data(lake, devices, capsys):
    call_command("backfill", "--days", "2", "--devices", "north,south", "--end", END)
    records = raw_records(lake)
    assert len(records) == 2 * 48
    assert {r["device_id"] for r in records} == {"north", "south"}
    assert all(isinstance(r["received_at"], int) for r in records)
    north = sorted((r for r in records if r["device_id"] == "north"), key=lambda r: r["timestamp"])
    assert (north[0]["timestamp"], north[-1]["timestamp"]) == ("2026-11-25T00:00:00.000Z", "2026-11-26T23:00:00.000Z")
    # The same sensor the live agent runs for this device (its default seed comes from the name).
    first = AirQualitySimulator(seed_for("north"), 56.2, 10.2).reading_at(datetime(2026, 11, 25, tzinfo=UTC))
    assert {k: north[0][k] for k in first} == first
    assert all(
        re.match(r"raw/year=\d{4}/month=\d\d/day=\d\d/hour=\d\d/iotcast-telemetry-1-", o.key)
        for o in lake.list_objects("raw/")
    )
    out = capsys.readouterr().out
    assert "100.0%" in out and "backfilled 96 records (0 rejected)" in out


def test_running_twice_repeats_message_ids_for_dedupe(lake, devices):
    call_command("backfill", "--days", "1", "--devices", "north", "--end", END, "--seed", "7")
    first = {r["message_id"]: r["ozone"] for r in raw_records(lake)}
    call_command("backfill", "--days", "1", "--devices", "north", "--end", END, "--seed", "7")
    records = raw_records(lake)
    assert len(records) == 48 and len(first) == 24
    assert {r["message_id"]: r["ozone"] for r in records} == first


def test_default_is_every_device_and_freq_is_honoured(lake, devices):
    call_command("backfill", "--days", "0.5", "--freq", "30min", "--end", END)
    records = raw_records(lake)
    assert len(records) == 3 * 24
    stamps = sorted({r["timestamp"] for r in records})
    gap = datetime.fromisoformat(stamps[1]) - datetime.fromisoformat(stamps[0])
    assert gap == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "north,nobody"], "unknown devices: nobody"),
        (["--freq", "fortnightly"], "not a fixed pandas frequency"),
        (["--days", "0"], "--days must be positive"),
        (["--end", "soon"], "not ISO-8601"),
    ],
)
def test_bad_input_is_a_clear_error(lake, devices, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("backfill", *args)
    assert lake.list_objects("raw/") == []


@pytest.mark.django_db
def test_no_devices_is_a_clear_error(lake):
    with pytest.raises(CommandError, match="no devices are registered"):
        call_command("backfill")
