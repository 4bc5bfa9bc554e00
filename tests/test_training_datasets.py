"""Datasets: DeepAR channels built from the lake's telemetry, DeepAR's rules, the command and the REST API."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from cloud.deepar.channels import ChannelError
from forecasts.services.datasets import DatasetError, DatasetSpec, dataset_build, dataset_channel
from tests.fixtures.endpoint import synthetic_frame
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db


def put_series(lake, devices: int = 3, hours: int = 120, gap: bool = True) -> None:
    """Store synthetic hourly ozone readings (3 missing hours mid-way when gap) as raw telemetry."""
    frame = synthetic_frame(devices=devices, hours=hours, gap=gap)
    put_raw(lake, [reading(row.device_id, row.ts.to_pydatetime(), ozone=row.value) for row in frame.itertuples()])


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_build_dataset_writes_deepar_json_lines_with_nan_gaps_and_a_time_split(lake, capsys):
    put_series(lake, hours=130)  # the train channel must hold 300 observations after the day held out
    call_command("build_dataset", "ozone-h", "--metric", "ozone", "--devices", "sensor-0,sensor-1,sensor-2",
                 "--freq", "H", "--test-days", "1")  # fmt: skip
    out = capsys.readouterr().out
    assert "dataset ozone-h: 3 series, 381 observations" in out and "datasets/ozone-h/train/data.json" in out
    from forecasts.models import Dataset

    dataset = Dataset.objects.get(name="ozone-h")
    assert dataset.devices == ["sensor-0", "sensor-1", "sensor-2"] and dataset.test_points == 24
    train, test = lines(lake.get_bytes(dataset.train_key)), lines(lake.get_bytes(dataset.test_key))
    expected = synthetic_frame(devices=3, hours=130)
    for record in test:
        assert set(record) == {"start", "target", "cat"} and record["start"] == "2026-11-01 00:00:00"
        device = dataset.devices[record["cat"][0]]
        values = expected[expected.device_id == device].value.tolist()
        target = record["target"]
        assert len(target) == 130 and target[50:53] == ["NaN", "NaN", "NaN"] and 0 not in target
        observed = [v for v in target if v != "NaN"]
        assert observed == pytest.approx(values)  # hourly means of one reading each: the readings themselves
    by_cat = {record["cat"][0]: record for record in test}
    for record in train:
        assert record["target"] == by_cat[record["cat"][0]]["target"][:-24] and record["start"] == "2026-11-01 00:00:00"
    assert dataset_channel(dataset, "test") == lake.get_bytes(dataset.test_key)


def test_channels_are_shuffled_reproducibly_by_name(lake):
    put_series(lake, devices=8, hours=60, gap=False)
    orders = []
    for name in ("shuffled-a", "shuffled-b"):
        dataset = dataset_build(DatasetSpec(name=name, metric="ozone", context_length=24, prediction_length=12))
        orders.append([record["cat"][0] for record in lines(dataset_channel(dataset, "train"))])
    assert sorted(orders[0]) == list(range(8)) and orders != [list(range(8))] * 2


def test_dataset_rules_give_clear_errors(lake):
    put_series(lake, devices=3, hours=120)
    spec = DatasetSpec(name="bad", metric="ozone")
    with pytest.raises(ChannelError, match="prediction_length must be at most 400"):
        dataset_build(DatasetSpec(name="bad", metric="ozone", prediction_length=401, context_length=1))
    with pytest.raises(ChannelError, match="context_length \\+ prediction_length"):
        dataset_build(DatasetSpec(name="bad", metric="ozone", context_length=200))
    with pytest.raises(ChannelError, match="sensor-9: no ozone readings"):
        dataset_build(DatasetSpec(name="bad", metric="ozone", devices=["sensor-0", "sensor-9"]))
    with pytest.raises(ChannelError, match="at least 300 observations"):
        dataset_build(DatasetSpec(name="bad", metric="ozone", devices=["sensor-0", "sensor-1"]))
    with pytest.raises(DatasetError, match="no ozone readings"):
        dataset_build(DatasetSpec(name="bad", metric="ozone", devices=["nobody"]))
    with pytest.raises(ValueError, match="unknown metric"):
        dataset_build(DatasetSpec(name="bad", metric="humidity"))
    with pytest.raises(DatasetError, match="lower-case"):
        dataset_build(DatasetSpec(name="Bad Name", metric="ozone"))
    dataset_build(spec)
    with pytest.raises(DatasetError, match="already exists"):
        dataset_build(spec)
    with pytest.raises(CommandError, match="context_length \\+ prediction_length"):
        call_command("build_dataset", "short", "--metric", "ozone", "--context-length", "300")


def test_an_empty_lake_gives_a_one_line_error(lake):
    with pytest.raises(CommandError, match="no ozone readings"):
        call_command("build_dataset", "empty", "--metric", "ozone")
