"""SageMaker DeepAR hyperparameters: names, defaults, valid ranges, parsed from strings or numbers.

SageMaker passes every hyperparameter as a string; parse_hyperparameters accepts both and reports
each bad value with a message naming the parameter and its valid range.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

LIKELIHOODS = ("gaussian", "beta", "negative-binomial", "student-T", "deterministic-L1")
MAX_PREDICTION_LENGTH = 400
DEFAULT_TEST_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_FREQ = re.compile(r"^(\d*)(min|H|h|D|W|M)$")
# SageMaker's unit letters -> pandas offset aliases (pandas 2.2+ spells hours "h").
_PANDAS_UNIT = {"min": "min", "H": "h", "h": "h", "D": "D", "W": "W", "M": "M"}
REQUIRED = ("time_freq", "context_length", "prediction_length", "epochs")
# (name, type, minimum, maximum, default)
_NUMERIC = (
    ("context_length", int, 1, None, None),
    ("prediction_length", int, 1, MAX_PREDICTION_LENGTH, None),
    ("epochs", int, 1, 1000, None),
    ("num_cells", int, 1, 200, 40),
    ("num_layers", int, 1, 8, 2),
    ("mini_batch_size", int, 1, 1_000_000, 128),
    ("learning_rate", float, 1e-6, 1.0, 1e-3),
    ("dropout_rate", float, 0.0, 1.0, 0.1),
    ("embedding_dimension", int, 1, 1000, 10),
    ("num_eval_samples", int, 1, 10_000, 100),
    ("early_stopping_patience", int, 1, 1000, None),
)
KNOWN = {name for name, *_ in _NUMERIC} | {"time_freq", "likelihood", "cardinality", "num_dynamic_feat"}
KNOWN |= {"test_quantiles"}


class HyperparameterError(ValueError):
    """Hyperparameters are unknown, missing or out of range; the message names each bad one (errors lists them)."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


@dataclass(frozen=True)
class DeepARHyperparameters:
    time_freq: str
    context_length: int
    prediction_length: int
    epochs: int
    num_cells: int = 40
    num_layers: int = 2
    likelihood: str = "student-T"
    mini_batch_size: int = 128
    learning_rate: float = 1e-3
    dropout_rate: float = 0.1
    embedding_dimension: int = 10
    cardinality: str | list[int] = "auto"
    num_dynamic_feat: str = "auto"
    num_eval_samples: int = 100
    test_quantiles: tuple[float, ...] = DEFAULT_TEST_QUANTILES
    early_stopping_patience: int | None = None

    @property
    def dynamic_feat_count(self) -> int:
        """Return the number of dynamic features a trained model uses (0 for auto or ignore, resolved at training)."""
        return int(self.num_dynamic_feat) if self.num_dynamic_feat.isdigit() else 0

    @property
    def pandas_freq(self) -> str:
        """Return time_freq as a pandas offset alias ("H" -> "h", "5min" -> "5min")."""
        count, unit = _FREQ.match(self.time_freq).groups()
        return f"{count}{_PANDAS_UNIT[unit]}"

    def as_sagemaker(self) -> dict[str, str]:
        """Return the hyperparameters as SageMaker's string map (None values left out)."""
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, list | tuple):
                out[name] = json.dumps(list(value))
            else:
                out[name] = str(value)
        return out


def _number(name: str, raw: Any, kind: type, low: float | None, high: float | None) -> int | float:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = kind(raw) if kind is float else int(str(raw).strip())
    except (TypeError, ValueError):
        raise HyperparameterError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
        ) from None
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise HyperparameterError(f"{name} must be {bounds}, got {raw!r}")
    return value


def _json_list(name: str, raw: Any) -> list:
    if isinstance(raw, list | tuple):
        return list(raw)
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list):
        raise HyperparameterError(f"{name} must be a JSON list like [0.1, 0.5, 0.9], got {raw!r}")
    return value


def _time_freq(raw: Any) -> str:
    match = _FREQ.match(str(raw).strip())
    if match is None or match.group(1) in {"0"}:
        raise HyperparameterError(f"time_freq must be like H, 5min, D, W or M (optionally with a count), got {raw!r}")
    return str(raw).strip()


def _likelihood(raw: Any) -> str:
    if raw not in LIKELIHOODS:
        raise HyperparameterError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {raw!r}")
    return raw


def _cardinality(raw: Any) -> str | list[int]:
    if raw in ("auto", "ignore"):
        return raw
    values = _json_list("cardinality", raw)
    if len(values) != 1 or not all(isinstance(v, int) and v >= 1 for v in values):
        raise HyperparameterError(f"cardinality must be auto, ignore or a list of one positive integer, got {raw!r}")
    return values


def _num_dynamic_feat(raw: Any) -> str:
    # SageMaker: "auto" uses the dynamic_feat the data has, "ignore" leaves it out, N must match the data.
    text = str(raw).strip()
    if text in ("auto", "ignore") or (text.isdigit() and int(text) <= 1000):
        return text
    raise HyperparameterError(f"num_dynamic_feat must be auto, ignore or an integer from 0 to 1000, got {raw!r}")


def _test_quantiles(raw: Any) -> tuple[float, ...]:
    values = _json_list("test_quantiles", raw)
    try:
        quantiles = tuple(sorted(float(v) for v in values))
    except (TypeError, ValueError):
        raise HyperparameterError(f"test_quantiles must be numbers, got {raw!r}") from None
    if not quantiles or not all(0 < q < 1 for q in quantiles):
        raise HyperparameterError(f"test_quantiles must be a non-empty list of numbers in (0, 1), got {raw!r}")
    return quantiles


_PARSERS = {
    "time_freq": _time_freq,
    "likelihood": _likelihood,
    "cardinality": _cardinality,
    "num_dynamic_feat": _num_dynamic_feat,
    "test_quantiles": _test_quantiles,
}


def parse_hyperparameters(raw: dict[str, Any]) -> DeepARHyperparameters:
    """Return validated hyperparameters from SageMaker's name -> value map.

    Raises HyperparameterError listing every unknown name, missing required one and bad value (one message each).
    """
    errors: list[str] = []
    unknown = sorted(set(raw) - KNOWN)
    if unknown:
        errors.append(f"unknown DeepAR hyperparameter(s): {', '.join(unknown)}")
    missing = [name for name in REQUIRED if raw.get(name) in (None, "")]
    if missing:
        errors.append(f"missing required DeepAR hyperparameter(s): {', '.join(missing)}")
    values: dict[str, Any] = {}
    checks = [(name, lambda v, a=(kind, low, high), n=name: _number(n, v, *a)) for name, kind, low, high, _ in _NUMERIC]
    for name, parser in [*checks, *_PARSERS.items()]:
        if raw.get(name) in (None, ""):
            continue
        try:
            values[name] = parser(raw[name])
        except HyperparameterError as exc:
            errors.append(str(exc))
    if errors:
        raise HyperparameterError("; ".join(errors), errors)
    return DeepARHyperparameters(**values)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Return {name: value} from ["name=value", ...] (the CLI's --hp); raise HyperparameterError when malformed."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise HyperparameterError(f"hyperparameter {pair!r} must look like name=value")
        out[name.strip()] = value.strip()
    return out
