"""A DeepAR model artifact: pack a GluonTS predictor into model.tar.gz, load it, answer inference requests."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cloud.deepar.formats import Configuration, InferenceRequest, Instance, RequestError
from cloud.deepar.hyperparameters import DeepARHyperparameters, parse_hyperparameters

HYPERPARAMETERS_FILE = "hyperparameters.json"
# The names of the calendar features behind dynamic_feat (SageMaker's artifact has only their number).
DYNAMIC_FEAT_FILE = "dynamic_feat.json"
# Where the model came from: the training job and its input channels.
LINEAGE_FILE = "lineage.json"


def quiet_gluonts() -> None:
    """Silence GluonTS's per-batch torch indexing warning and its json-module notice (noise, not signal)."""
    warnings.filterwarnings("ignore", message=r".*Using a non-tuple sequence for multidimensional indexing.*")
    warnings.filterwarnings("ignore", message=r".*Using `json`-module for json-handling.*")
    warnings.filterwarnings("ignore", message=r".*To copy construct from a tensor.*")
    warnings.filterwarnings("ignore", message=r".*non-zero dropout expects num_layers greater than 1.*")
    warnings.filterwarnings("ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def pack_predictor(
    predictor: Any,
    hyperparameters: dict[str, str],
    dynamic_feat: tuple[str, ...] | list[str] = (),
    lineage: dict[str, Any] | None = None,
) -> bytes:
    """Return model.tar.gz bytes holding the serialized predictor, hyperparameters.json, lineage.json (when
    given: the training job and its channels) and, when the model uses dynamic features, dynamic_feat.json."""
    with tempfile.TemporaryDirectory(prefix="deepar-pack-") as tmp:
        folder = Path(tmp)
        predictor.serialize(folder)
        (folder / HYPERPARAMETERS_FILE).write_text(json.dumps(hyperparameters, indent=2, sort_keys=True))
        if dynamic_feat:
            (folder / DYNAMIC_FEAT_FILE).write_text(json.dumps({"names": list(dynamic_feat)}))
        if lineage:
            (folder / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=path.name)
    return buffer.getvalue()


class DeepARModel:
    """A loaded predictor; predict() is thread-safe (one forecast at a time, so seeds are honoured)."""

    def __init__(
        self,
        predictor: Any,
        hyperparameters: DeepARHyperparameters,
        cardinality: int | None,
        dynamic_feat: tuple[str, ...] = (),
    ) -> None:
        self.predictor = predictor
        self.hyperparameters = hyperparameters
        self.cardinality = cardinality
        self.num_dynamic_feat = hyperparameters.dynamic_feat_count
        self.dynamic_feat = tuple(dynamic_feat)  # calendar feature names, when known
        self._lock = threading.Lock()

    @classmethod
    def from_tarball(cls, data: bytes) -> DeepARModel:
        """Return the model stored in model.tar.gz bytes; raise ValueError when they hold no DeepAR model."""
        quiet_gluonts()
        from gluonts.torch.model.predictor import PyTorchPredictor

        with tempfile.TemporaryDirectory(prefix="deepar-load-") as tmp:
            try:
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    tar.extractall(tmp, filter="data")
                raw = json.loads((Path(tmp) / HYPERPARAMETERS_FILE).read_text())
                names_file = Path(tmp) / DYNAMIC_FEAT_FILE
                names = json.loads(names_file.read_text())["names"] if names_file.exists() else []
                predictor = PyTorchPredictor.deserialize(Path(tmp), device="cpu")
            except (tarfile.TarError, OSError, json.JSONDecodeError, KeyError) as exc:
                raise ValueError(f"not a DeepAR model.tar.gz: {exc}") from exc
        hyperparameters = parse_hyperparameters(raw)
        cardinality = hyperparameters.cardinality
        return cls(predictor, hyperparameters, cardinality[0] if isinstance(cardinality, list) else None, names)

    def dataset_entry(self, instance: Instance) -> dict[str, Any]:
        """Return the GluonTS entry for an instance; raise RequestError when its cat does not fit the model."""
        entry: dict[str, Any] = {
            "start": pd.Period(instance.start, freq=self.hyperparameters.pandas_freq),
            "target": np.asarray(instance.target, dtype=np.float32),
        }
        if self.cardinality is not None:
            if not instance.cat or instance.cat[0] >= self.cardinality:
                raise RequestError(f"each instance needs cat [i] with 0 <= i < {self.cardinality} for this model")
            entry["feat_static_cat"] = np.asarray(instance.cat[:1], dtype=np.int64)
        if self.num_dynamic_feat:
            entry["feat_dynamic_real"] = self._dynamic_feat(instance)
        return entry

    def _dynamic_feat(self, instance: Instance) -> np.ndarray:
        """Return the instance's dynamic_feat as a (features, len(target) + prediction_length) array.

        Raises RequestError, in DeepAR's words, when it is missing, has another number of features or length.
        """
        count, needed = self.num_dynamic_feat, len(instance.target) + self.hyperparameters.prediction_length
        rows = instance.dynamic_feat
        if not rows:
            raise RequestError(f"the model was trained with {count} dynamic_feat: each instance needs dynamic_feat")
        if len(rows) != count:
            raise RequestError(f"the model was trained with {count} dynamic_feat, the instance has {len(rows)}")
        if len(rows[0]) != needed:
            raise RequestError(
                f"each dynamic_feat must have length len(target) + prediction_length = {len(instance.target)} + "
                f"{self.hyperparameters.prediction_length} = {needed}, got {len(rows[0])}"
            )
        return np.asarray(rows, dtype=np.float32)

    def sample_paths(
        self, entries: list[dict[str, Any]], num_samples: int, seed: int | None = None
    ) -> list[np.ndarray]:
        """Return one (num_samples, prediction_length) array of sample paths per entry."""
        import torch

        with self._lock:
            if seed is not None:
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
            # One forward pass draws all the samples (GluonTS would otherwise loop in chunks of the training value).
            network = getattr(self.predictor.prediction_net, "model", None)
            if network is not None and hasattr(network, "num_parallel_samples"):
                network.num_parallel_samples = num_samples
            forecasts = self.predictor.predict(entries, num_samples=num_samples)
            return [np.asarray(forecast.samples[:num_samples]) for forecast in forecasts]

    def predict(self, request: InferenceRequest) -> dict[str, Any]:
        """Return DeepAR's inference response for a validated request."""
        entries = [self.dataset_entry(instance) for instance in request.instances]
        config = request.configuration
        paths = self.sample_paths(entries, config.num_samples, config.seed)
        return {"predictions": [prediction_record(samples, config) for samples in paths]}


def prediction_record(samples: np.ndarray, config: Configuration) -> dict[str, Any]:
    """Return one prediction: mean, sample quantiles (monotone in q by construction), samples on request."""
    record: dict[str, Any] = {}
    if "mean" in config.output_types:
        record["mean"] = samples.mean(axis=0).tolist()
    if "quantiles" in config.output_types:
        levels = [float(q) for q in config.quantiles]
        values = np.quantile(samples, levels, axis=0)
        record["quantiles"] = {name: row.tolist() for name, row in zip(config.quantiles, values, strict=True)}
    if "samples" in config.output_types:
        record["samples"] = samples.tolist()
    return record
