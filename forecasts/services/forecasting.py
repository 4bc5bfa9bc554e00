"""Forecast one device's metric with the model deployed behind an endpoint (through the hosting backend)."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from cloud.backends import get_backend
from cloud.deepar.channels import regular_series
from cloud.deepar.features import calendar_features, num_dynamic_feat
from cloud.deepar.formats import encode_target, format_start
from deployments.accuracy import ACCURACY_QUANTILES, forecast_record_create
from deployments.models import Endpoint, ProductionVariant
from deployments.selectors import NotDeployed, endpoint_get
from forecasts.models import TrainedModel
from forecasts.selectors import series_resampled

# An endpoint serves while it is being updated or rolled back, as SageMaker's do (a canary needs the traffic).
SERVING = (Endpoint.Status.IN_SERVICE, Endpoint.Status.UPDATING, Endpoint.Status.ROLLING_BACK)
# DeepAR looks back past its context through lagged values (a month for hourly data): send that much.
MAX_HISTORY_POINTS = 800


class ForecastUnavailable(LookupError):
    """No forecast can be made: no endpoint, no serving model, or no history; the message says which."""


def forecast_variant(endpoint_name: str, target_variant: str | None) -> ProductionVariant:
    """Return the variant to ask: the target, else one drawn by weight (so the model matches the instance).

    Raises ForecastUnavailable when the endpoint is not in service or the variant does not exist.
    """
    try:
        endpoint = endpoint_get(endpoint_name)
    except NotDeployed as exc:
        raise ForecastUnavailable(str(exc)) from None
    if endpoint.status not in SERVING:
        raise ForecastUnavailable(f"endpoint {endpoint_name} is {endpoint.status}, not InService")
    variants = [v for v in endpoint.variants.all() if not v.shadow]  # a shadow never answers a client
    if target_variant:
        variants = [v for v in variants if v.name == target_variant]
    if not variants or sum(v.weight for v in variants) <= 0:
        raise ForecastUnavailable(f"endpoint {endpoint_name} has no variant {target_variant or 'with weight > 0'}")
    return random.choices(variants, weights=[v.weight or 1e-12 for v in variants])[0]


def forecast_history(model: TrainedModel, device_name: str) -> pd.Series:
    """Return the device's recent values of the model's metric on a regular range (gaps NaN), newest last.

    Raises ForecastUnavailable when the device has no readings of that metric.
    """
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(model.freq))
    recent = timezone.now() - timedelta(seconds=step.total_seconds() * MAX_HISTORY_POINTS)
    frame = series_resampled(model.metric, [device_name], model.freq, start=recent)
    if frame.empty:  # replayed or stale data: fall back to whatever history exists
        frame = series_resampled(model.metric, [device_name], model.freq)
    if frame.empty:
        raise ForecastUnavailable(f"device {device_name} has no {model.metric} readings to forecast from")
    return regular_series(frame, model.freq)[device_name].iloc[-MAX_HISTORY_POINTS:]


def forecast_instance(model: TrainedModel, device_name: str, history: pd.Series) -> dict[str, Any]:
    """Return the DeepAR instance for the device; cat is its index in the model's training set.

    Raises ForecastUnavailable when the model embeds devices and was not trained on this one.
    """
    instance: dict[str, Any] = {"start": format_start(history.index[0]), "target": encode_target(history.to_numpy())}
    if model.hyperparameters.get("cardinality", "auto") != "ignore":
        if device_name not in model.devices:
            raise ForecastUnavailable(f"model {model.name} was not trained on device {device_name}; retrain first")
        instance["cat"] = [model.devices.index(device_name)]
    names = forecast_dynamic_feat_names(model)
    if names:
        # DeepAR needs the features over the history and the whole forecast window after it.
        horizon = int(model.hyperparameters["prediction_length"])
        step = pd.tseries.frequencies.to_offset(model.freq)
        index = pd.date_range(history.index[0], periods=len(history) + horizon, freq=step)
        instance["dynamic_feat"] = calendar_features(names, index)
    return instance


def forecast_dynamic_feat_names(model: TrainedModel) -> list[str]:
    """Return the calendar features the model was trained with (its dataset's), [] when it uses none.

    Raises ForecastUnavailable when the model uses dynamic features whose names are no longer known.
    """
    count = str(model.hyperparameters.get("num_dynamic_feat", "auto"))
    if count in ("ignore", "0"):
        return []
    names = list(model.dataset.dynamic_feat) if model.dataset is not None else []
    if count.isdigit() and num_dynamic_feat(names) != int(count):  # "auto" trains on whatever the dataset had
        raise ForecastUnavailable(
            f"model {model.name} was trained with {count} dynamic_feat whose calendar features are not known "
            "(its dataset is gone); retrain it"
        )
    return names


def _iso(stamps: pd.DatetimeIndex) -> list[str]:
    return [stamp.isoformat() for stamp in stamps]


def _values(values: Any) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, dtype=float)]


def forecast_for_device(
    device_name: str,
    metric: str | None = None,
    prediction_length: int | None = None,
    quantiles: list[str] = ["0.1", "0.5", "0.9"],  # noqa: B006 - read only
    endpoint: str | None = None,
    target_variant: str | None = None,
) -> dict[str, Any]:
    """Return {"device", "metric", "model", "variant", "history": {timestamps, values}, "forecast": {timestamps,
    mean, quantiles}} from the endpoint's model, fed with the device's recent history. The whole forecast is
    recorded (deployments.accuracy) to be scored against the actuals as they arrive.

    Raises ForecastUnavailable (nothing deployed, no history), ValueError (metric or prediction_length the
    model cannot do) and InvocationError/BackendUnavailable from the hosting backend.
    """
    variant = forecast_variant(endpoint or settings.DEFAULT_ENDPOINT_NAME, target_variant)
    model = variant.model
    if metric and metric != model.metric:
        raise ValueError(f"endpoint {variant.endpoint.name} forecasts {model.metric}, not {metric}")
    horizon = int(model.hyperparameters["prediction_length"])
    length = prediction_length or horizon
    if not 1 <= length <= horizon:
        raise ValueError(f"prediction_length must be between 1 and {horizon} for model {model.name}")
    history = forecast_history(model, device_name)
    # The accuracy quantiles are always asked for too: the recorded forecast is scored on them later.
    asked = list(dict.fromkeys([*quantiles, *ACCURACY_QUANTILES]))
    body = {
        "instances": [forecast_instance(model, device_name, history)],
        "configuration": {"num_samples": 100, "output_types": ["mean", "quantiles"], "quantiles": asked},
    }
    answer = get_backend("hosting").invoke(
        variant.endpoint.name, json.dumps(body).encode(), target_variant=variant.name
    )
    prediction = json.loads(answer.body)["predictions"][0]
    step = pd.tseries.frequencies.to_offset(model.freq)
    ahead = _iso(pd.date_range(history.index[-1] + step, periods=horizon, freq=step))
    forecast_record_create(
        variant.endpoint.name, answer.invoked_variant, model.name, device_name, model.metric, model.freq, ahead,
        prediction["mean"][:horizon], {q: prediction["quantiles"][q][:horizon] for q in asked},
    )  # fmt: skip
    shown = history.iloc[-int(model.hyperparameters["context_length"]) :]
    return {
        "device": device_name,
        "metric": model.metric,
        "model": model.name,
        "variant": answer.invoked_variant,
        "history": {"timestamps": _iso(shown.index), "values": _values(shown.to_numpy())},
        "forecast": {
            "timestamps": ahead[:length],
            "mean": prediction["mean"][:length],
            "quantiles": {q: prediction["quantiles"][q][:length] for q in quantiles},
        },
    }
