"""manage.py train: a DeepAR training job (SageMaker-style) on a dataset, or on channels built from the lake now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from cloud.deepar.backtest import check_backtest_windows
from cloud.deepar.hyperparameters import HyperparameterError, parse_assignments
from forecasts.management.pipeline_command import PipelineStepCommand
from forecasts.services.datasets import DatasetError, dataset_get
from forecasts.services.training import (
    dataset_backtest_check,
    dataset_hyperparameters,
    training_default_params,
    training_hyperparameters,
    training_job_name,
)


class Command(PipelineStepCommand):
    help = (
        "Train DeepAR and register the model version with its metrics and a seasonal-naive baseline. Either on a "
        "dataset (see build_dataset): train --dataset ozone-h --hp epochs=5 [--wait]; or on one metric's series "
        "of all or some devices built now: train --metric ozone --hp epochs=5. Stores "
        "models/<job>/output/model.tar.gz. Runs in this process unless --queue/--wait sends it to the worker."
    )
    kind = "train"

    def add_step_arguments(self, parser: CommandParser) -> None:
        defaults = training_default_params()
        parser.add_argument("--dataset", help="train on this dataset (manage.py build_dataset); else --metric ...")
        parser.add_argument("--metric", default=defaults["metric"], help="metric to forecast (default %(default)s)")
        parser.add_argument("--devices", help="comma-separated device names (default: all devices)")
        parser.add_argument("--freq", default=defaults["freq"], help="resampling frequency: h, 5min, D ... (default h)")
        parser.add_argument(
            "--hp",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a SageMaker DeepAR hyperparameter, repeatable (e.g. --hp epochs=5 --hp likelihood=gaussian)",
        )
        parser.add_argument("--max-runtime", type=int, metavar="S", help="stop the job after S seconds")
        parser.add_argument("--backtest", type=int, default=0, metavar="N", help="rolling backtest with N windows")
        parser.add_argument("--wait", action="store_true", help="queue the job on the worker and follow it to the end")

    def handle(self, *args: Any, **options: Any) -> None:
        options["queue"] = options["queue"] or options["wait"]
        super().handle(*args, **options)

    def step_params(self, options: dict[str, Any]) -> dict[str, Any]:
        try:
            assigned = parse_assignments(options["hp"])
            extra = {"max_runtime_s": options["max_runtime"], "backtest_windows": options["backtest"]}
            if options["dataset"]:
                dataset = dataset_get(options["dataset"])
                dataset_hyperparameters(dataset, assigned)  # fail here, before a run row exists
                dataset_backtest_check(dataset, options["backtest"])
                job = training_job_name(dataset.name)
                self.stdout.write(f"training job {job} on dataset {dataset.name}")
                return {"job": job, "dataset": dataset.name, "hyperparameters": assigned, **extra}
            hyperparameters = {**training_default_params()["hyperparameters"], **assigned}
            hp = training_hyperparameters(options["freq"], hyperparameters)
            # The series are built when the run starts; it checks their length before training.
            check_backtest_windows([], options["backtest"], hp.prediction_length)
        except (HyperparameterError, DatasetError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        devices = [d.strip() for d in options["devices"].split(",") if d.strip()] if options["devices"] else None
        return {
            "metric": options["metric"], "devices": devices, "freq": options["freq"],
            "hyperparameters": hyperparameters, **extra,
        }  # fmt: skip
