"""manage.py train: build DeepAR channels from the lake and train a model (a SageMaker-style training job)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from cloud.deepar.hyperparameters import HyperparameterError, parse_assignments
from forecasts.management.pipeline_command import PipelineStepCommand
from forecasts.services.training import training_default_params, training_hyperparameters


class Command(PipelineStepCommand):
    help = (
        "Train DeepAR on one metric's hourly (or --freq) series of all or some devices; stores "
        "models/<job>/output/model.tar.gz and a TrainedModel. Example: train --metric ozone --hp epochs=5"
    )
    kind = "train"

    def add_step_arguments(self, parser: CommandParser) -> None:
        defaults = training_default_params()
        parser.add_argument("--metric", default=defaults["metric"], help="metric to forecast (default %(default)s)")
        parser.add_argument("--devices", help="comma-separated device names (default: all devices)")
        parser.add_argument("--freq", default=defaults["freq"], help="resampling frequency: h, 5min, D ... (default h)")
        parser.add_argument(
            "--hp",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a SageMaker DeepAR hyperparameter, repeatable (e.g. --hp epochs=5 --hp context_length=48)",
        )

    def step_params(self, options: dict[str, Any]) -> dict[str, Any]:
        devices = [d.strip() for d in options["devices"].split(",") if d.strip()] if options["devices"] else None
        try:
            hyperparameters = {**training_default_params()["hyperparameters"], **parse_assignments(options["hp"])}
            training_hyperparameters(options["freq"], hyperparameters)  # fail here, before a run row exists
        except (HyperparameterError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return {
            "metric": options["metric"],
            "devices": devices,
            "freq": options["freq"],
            "hyperparameters": hyperparameters,
        }
