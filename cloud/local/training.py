"""local training backend: GluonTS DeepAR (PyTorch) with SageMaker DeepAR's hyperparameters and metrics."""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from cloud.deepar.control import TrainingStopped, epoch_message
from cloud.deepar.formats import read_channel
from cloud.deepar.hyperparameters import DeepARHyperparameters, HyperparameterError, parse_hyperparameters
from cloud.deepar.metrics import mean_weighted_quantile_loss, rmse
from cloud.deepar.model import DeepARModel, pack_predictor, quiet_gluonts
from cloud.interfaces import Lake, Progress, Trainer, TrainingResult, TrainingSpec, no_progress

logger = logging.getLogger(__name__)


def _entries(records: list[dict[str, Any]], freq: str, use_cat: bool, dynamic: int = 0) -> list[dict[str, Any]]:
    """Return GluonTS dataset entries for channel records ("NaN"/null targets become NaN), with their first
    `dynamic` dynamic_feat rows as FEAT_DYNAMIC_REAL."""
    import pandas as pd

    entries = []
    for record in records:
        target = np.asarray([math.nan if v in (None, "NaN") else v for v in record["target"]], dtype=np.float32)
        entry = {"start": pd.Period(record["start"], freq=freq), "target": target}
        if use_cat:
            entry["feat_static_cat"] = np.asarray(record.get("cat", [0])[:1], dtype=np.int64)
        if dynamic:
            entry["feat_dynamic_real"] = np.asarray(record["dynamic_feat"][:dynamic], dtype=np.float32)
        entries.append(entry)
    return entries


def resolve_cardinality(hp: DeepARHyperparameters, records: list[dict[str, Any]]) -> int | None:
    """Return the number of categories the model embeds, None when cat is not used ("auto" uses it if present)."""
    if hp.cardinality == "ignore":
        return None
    cats = [record["cat"][0] for record in records if record.get("cat")]
    if hp.cardinality == "auto":
        return max(cats) + 1 if cats and len(cats) == len(records) else None
    if not cats or len(cats) != len(records) or max(cats) >= hp.cardinality[0]:
        raise HyperparameterError(f"cardinality {hp.cardinality} needs every series to have cat [i] below it")
    return hp.cardinality[0]


def resolve_dynamic_feat(hp: DeepARHyperparameters, records: list[dict[str, Any]]) -> int:
    """Return how many dynamic features the model uses: SageMaker's "auto" takes the data's, "ignore" none.

    Raises HyperparameterError when the series disagree (DeepAR needs the same features on every series, each as
    long as its target) or num_dynamic_feat does not match the data.
    """
    if hp.num_dynamic_feat == "ignore":
        return 0
    counts = {len(record.get("dynamic_feat") or []) for record in records}
    if len(counts) != 1:
        raise HyperparameterError("every series needs the same number of dynamic_feat (or none at all)")
    for number, record in enumerate(records, start=1):
        if any(len(row) != len(record["target"]) for row in record.get("dynamic_feat") or []):
            raise HyperparameterError(f"series {number}: each dynamic_feat must be as long as its target")
    found = counts.pop()
    if hp.num_dynamic_feat != "auto" and int(hp.num_dynamic_feat) != found:
        raise HyperparameterError(f"num_dynamic_feat is {hp.num_dynamic_feat} but the series have {found}")
    return found


def batches_per_epoch(records: list[dict[str, Any]], hp: DeepARHyperparameters) -> int:
    """Return GluonTS batches per epoch so that one epoch draws about as many windows as the data holds."""
    observations = sum(len(record["target"]) for record in records)
    return max(1, round(observations / (hp.context_length + hp.prediction_length) / hp.mini_batch_size))


def _distr_output(likelihood: str) -> Any:
    from gluonts.torch.distributions import (
        BetaOutput,
        LaplaceOutput,
        NegativeBinomialOutput,
        NormalOutput,
        StudentTOutput,
    )

    # deterministic-L1: a Laplace likelihood's location is fitted by L1 loss; its median is the point forecast.
    outputs = {
        "gaussian": NormalOutput,
        "beta": BetaOutput,
        "negative-binomial": NegativeBinomialOutput,
        "student-T": StudentTOutput,
        "deterministic-L1": LaplaceOutput,
    }
    return outputs[likelihood]()


# Between epochs, report at most this often so that a cancel or time limit is noticed within a second or so.
BATCH_REPORT_INTERVAL_S = 1.0


class _EpochProgress:
    """A Lightning callback reporting each finished epoch and, between, every second (built lazily so importing
    this module stays light). The progress callback may raise TrainingStopped, which stops the fit."""

    @staticmethod
    def create(progress: Progress, epochs: int, losses: list[float]) -> Any:
        import lightning.pytorch as pl

        class Callback(pl.Callback):
            last_report = time.monotonic()

            def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
                if time.monotonic() - self.last_report >= BATCH_REPORT_INTERVAL_S:
                    self.last_report = time.monotonic()
                    done = trainer.current_epoch
                    progress(10 + 80 * done / epochs, f"training epoch {done + 1}/{epochs}")

            def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
                loss = trainer.callback_metrics.get("train_loss")
                losses.append(float(loss) if loss is not None else math.nan)
                done = trainer.current_epoch + 1
                self.last_report = time.monotonic()
                progress(10 + 80 * done / epochs, epoch_message(done, epochs, losses[-1]))

        return Callback()


class GluonTSDeepAR(Trainer):
    """Trains GluonTS's DeepAR on the lake's train channel, evaluates on the test channel, stores model.tar.gz."""

    def __init__(self, work_dir: str, seed: int = 0) -> None:
        self.work_dir = Path(work_dir)
        self.seed = seed

    def _estimator(
        self, hp: DeepARHyperparameters, cardinality: int | None, dynamic: int, batches: int, callbacks: list
    ) -> Any:
        from gluonts.torch.model.deepar import DeepAREstimator

        trainer_kwargs = {
            "max_epochs": hp.epochs,
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": callbacks,
        }
        return DeepAREstimator(
            freq=hp.pandas_freq,
            prediction_length=hp.prediction_length,
            context_length=hp.context_length,
            num_layers=hp.num_layers,
            hidden_size=hp.num_cells,
            lr=hp.learning_rate,
            dropout_rate=hp.dropout_rate,
            num_feat_static_cat=1 if cardinality else 0,
            num_feat_dynamic_real=dynamic,
            cardinality=[cardinality] if cardinality else None,
            embedding_dimension=[hp.embedding_dimension] if cardinality else None,
            distr_output=_distr_output(hp.likelihood),
            num_parallel_samples=hp.num_eval_samples,
            batch_size=hp.mini_batch_size,
            num_batches_per_epoch=batches,
            trainer_kwargs=trainer_kwargs,
        )

    def _callbacks(self, hp: DeepARHyperparameters, progress: Progress, losses: list[float]) -> list:
        from lightning.pytorch.callbacks import EarlyStopping

        callbacks = [_EpochProgress.create(progress, hp.epochs, losses)]
        if hp.early_stopping_patience:
            # SageMaker stops when the training loss has not improved for this many epochs.
            callbacks.append(EarlyStopping(monitor="train_loss", patience=hp.early_stopping_patience, mode="min"))
        return callbacks

    def _fit(
        self, hp: DeepARHyperparameters, train: list[dict], progress: Progress, root: Path
    ) -> tuple[Any, int | None, int, float]:
        import lightning.pytorch as pl

        # Lightning sets its own loggers to INFO on import; its banner and checkpoint chatter are noise here.
        for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        cardinality, dynamic = resolve_cardinality(hp, train), resolve_dynamic_feat(hp, train)
        losses: list[float] = []
        pl.seed_everything(self.seed, verbose=False)
        estimator = self._estimator(
            hp, cardinality, dynamic, batches_per_epoch(train, hp), self._callbacks(hp, progress, losses)
        )
        estimator.trainer_kwargs["default_root_dir"] = str(root)
        predictor = estimator.train(_entries(train, hp.pandas_freq, cardinality is not None, dynamic))
        return predictor, cardinality, dynamic, losses[-1] if losses else math.nan

    def train(self, lake: Lake, spec: TrainingSpec, progress: Progress = no_progress) -> TrainingResult:
        """Train, evaluate and store models/<job>/output/model.tar.gz; return its key and SageMaker's metrics.

        Raises HyperparameterError for bad hyperparameters and KeyError when a channel is missing.
        """
        quiet_gluonts()
        hp = parse_hyperparameters(spec.hyperparameters)
        train = read_channel(lake.get_bytes(spec.train_key))
        test = read_channel(lake.get_bytes(spec.test_key))
        progress(5, f"training DeepAR on {len(train)} series")
        try:
            # One root per job: GluonTS always checkpoints, and concurrent jobs must not share the folder.
            predictor, cardinality, dynamic, final_loss = self._fit(hp, train, progress, self.work_dir / spec.job_name)
        finally:
            shutil.rmtree(self.work_dir / spec.job_name, ignore_errors=True)
        resolved = {**hp.as_sagemaker(), "cardinality": f"[{cardinality}]" if cardinality else "ignore"}
        if dynamic:
            resolved["num_dynamic_feat"] = str(dynamic)
        names = spec.dynamic_feat if dynamic else ()
        model = DeepARModel(predictor, parse_hyperparameters(resolved), cardinality, names)
        progress(92, "evaluating on the test channel")
        metrics = {**evaluate(model, test), "train:final_loss": final_loss}
        key = f"{spec.output_prefix.rstrip('/')}/{spec.job_name}/output/model.tar.gz"
        lineage = {**spec.lineage, "training_job": spec.job_name, "lake": lake.url, "train": spec.train_key,
                   "test": spec.test_key}  # fmt: skip
        lake.put_bytes(key, pack_predictor(predictor, resolved, names, lineage))
        try:
            progress(100, f"stored {key}")
        except TrainingStopped:
            lake.delete(key)  # stopped at the last moment: leave no artifact that nothing will register
            raise
        return TrainingResult(artifact_key=key, metrics=metrics)


def evaluate(model: DeepARModel, test: list[dict[str, Any]]) -> dict[str, float]:
    """Return test:RMSE and test:mean_wQuantileLoss forecasting each test series' last prediction_length points."""
    from cloud.deepar.formats import Instance

    hp = model.hyperparameters
    horizon = hp.prediction_length
    instances, actuals = [], []
    for record in test:
        values = [math.nan if v in (None, "NaN") else float(v) for v in record["target"]]
        instance = Instance(
            start=_timestamp(record["start"]), target=values[:-horizon], cat=record.get("cat"),
            dynamic_feat=record.get("dynamic_feat"),
        )  # fmt: skip
        instances.append(instance)
        actuals.append(values[-horizon:])
    entries = [model.dataset_entry(instance) for instance in instances]
    paths = model.sample_paths(entries, hp.num_eval_samples, seed=0)
    actual = np.concatenate(actuals)
    mean = np.concatenate([samples.mean(axis=0) for samples in paths])
    quantiles = {q: np.concatenate([np.quantile(samples, q, axis=0) for samples in paths]) for q in hp.test_quantiles}
    return {"test:RMSE": rmse(actual, mean), "test:mean_wQuantileLoss": mean_weighted_quantile_loss(actual, quantiles)}


def _timestamp(value: str) -> Any:
    import pandas as pd

    return pd.Timestamp(value)
