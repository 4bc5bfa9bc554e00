"""manage.py build_dataset: DeepAR train/test channels from the lake's telemetry, stored under datasets/<name>/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.deepar.channels import ChannelError
from cloud.deepar.features import CALENDAR_FEATURES
from cloud.interfaces import BackendError
from forecasts.services.datasets import (
    DEFAULT_CONTEXT_LENGTH,
    DEFAULT_PREDICTION_LENGTH,
    DatasetError,
    DatasetSpec,
    dataset_build,
)


def _when(value: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date or time like 2026-11-01 or 2026-11-01T12:00") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Build a DeepAR dataset: one series per device of one metric, resampled to --freq (gaps stay NaN), "
        "test channel = whole series, train = cut --test-days (default: prediction_length points) earlier. "
        "Example: build_dataset ozone-h --devices sensor-1,sensor-2 --metric ozone --freq H --test-days 2"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="dataset name: lower-case letters, digits, dashes")
        parser.add_argument("--metric", required=True, help="the metric to forecast, e.g. ozone")
        parser.add_argument("--devices", help="comma-separated device names (default: every device with data)")
        parser.add_argument("--freq", default="h", help="frequency: min, 5min, H (or h), D ... (default h)")
        parser.add_argument("--start", type=_when, help="first time to include (UTC unless given)")
        parser.add_argument("--end", type=_when, help="last time to include (UTC unless given)")
        parser.add_argument("--test-days", type=float, help="days held out of train (default: prediction_length)")
        parser.add_argument("--context-length", type=int, default=DEFAULT_CONTEXT_LENGTH, help="default %(default)s")
        parser.add_argument(
            "--prediction-length", type=int, default=DEFAULT_PREDICTION_LENGTH, help="default %(default)s"
        )
        parser.add_argument("--no-cat", action="store_true", help="leave out cat (the device as category)")
        parser.add_argument(
            "--dynamic-feat",
            default="",
            help="comma-separated calendar features written as dynamic_feat (sine and cosine each), e.g. "
            f"hour_of_day,day_of_week; one of {', '.join(CALENDAR_FEATURES)}. Other metrics cannot be used: "
            "their future values are unknown at forecast time",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        devices = [d.strip() for d in options["devices"].split(",") if d.strip()] if options["devices"] else None
        spec = DatasetSpec(
            name=options["name"], metric=options["metric"], devices=devices, freq=_pandas_freq(options["freq"]),
            start=options["start"], end=options["end"], test_days=options["test_days"],
            context_length=options["context_length"], prediction_length=options["prediction_length"],
            use_cat=not options["no_cat"],
            dynamic_feat=[name.strip() for name in options["dynamic_feat"].split(",") if name.strip()],
        )  # fmt: skip
        self.stdout.write(f"building dataset {spec.name}: {spec.metric} at {spec.freq} ...")
        try:
            dataset = dataset_build(spec)
        except (DatasetError, ChannelError, ValueError, BackendError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"dataset {dataset.name}: {dataset.series_count} series, "
                                             f"{dataset.observations} observations"))  # fmt: skip
        self.stdout.write(f"  train: {dataset.train_key}\n  test:  {dataset.test_key}")
        if dataset.dynamic_feat:
            self.stdout.write(f"  dynamic_feat: {', '.join(dataset.dynamic_feat)} (sine and cosine each)")
        for device, reason in dataset.skipped.items():
            self.stdout.write(f"  skipped {device}: {reason}")


def _pandas_freq(freq: str) -> str:
    # SageMaker spells hours "H"; pandas 2.2+ wants "h".
    return freq[:-1] + "h" if freq.endswith("H") else freq
