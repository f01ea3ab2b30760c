"""Build and fit the two candidate models, and choose their decision thresholds.

Both candidates are scikit-learn Pipelines with the same preprocessing inside them, so raw
feature records go in and the positive class's probability comes out, in training and in serving alike:

- ``gbm``: HistGradientBoostingClassifier with native categorical support;
- ``mlp``: the PyTorch tabular network of ``shadowdrift.torch_model``.

Plain module: importable without Kedro or MLflow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import precision_recall_curve
from sklearn.pipeline import Pipeline

from shadowdrift.preprocessing import build_preprocessor, categorical_mask
from shadowdrift.torch_model import TorchTabularClassifier

logger = logging.getLogger(__name__)

MODEL_KINDS = ("hist_gradient_boosting", "torch_mlp")
THRESHOLD_RULES = ("max_f1", "cost_ratio")


class TrainingConfigError(ValueError):
    """The training parameters are inconsistent; the message names the parameter."""


@dataclass(frozen=True)
class FittedCandidate:
    """A fitted model with what is known about it after training."""

    name: str
    kind: str
    pipeline: Pipeline
    threshold: float
    fit_seconds: float
    validation_rows: int
    train_rows: int


def build_model(
    kind: str, params: dict[str, Any], numeric: list[str], categorical: list[str]
) -> Pipeline:
    """An unfitted Pipeline: shared preprocessing, then the estimator of ``kind``."""
    preprocessor = build_preprocessor(numeric, categorical)
    params = dict(params or {})
    if kind == "hist_gradient_boosting":
        estimator = HistGradientBoostingClassifier(
            categorical_features=categorical_mask(numeric, categorical), **params
        )
    elif kind == "torch_mlp":
        if "hidden_sizes" in params:
            params["hidden_sizes"] = tuple(params["hidden_sizes"])
        estimator = TorchTabularClassifier(n_numeric=len(numeric), **params)
    else:
        raise TrainingConfigError(
            f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}"
        )
    return Pipeline([("preprocess", preprocessor), ("model", estimator)])


def split_validation(
    train: pd.DataFrame, timestamp: str, fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The most recent ``fraction`` of the train window becomes the validation slice."""
    if not 0 < fraction < 1:
        raise TrainingConfigError(f"training.validation_fraction must be in (0, 1), got {fraction}")
    ordered = train.sort_values(timestamp, kind="stable").reset_index(drop=True)
    cut = len(ordered) - max(1, round(fraction * len(ordered)))
    if cut < 1:
        raise TrainingConfigError(
            f"the train window has only {len(ordered)} rows: too few to hold out validation"
        )
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def choose_threshold(
    y_true: np.ndarray, probability: np.ndarray, rule: str, cost_ratio: float = 1.0
) -> float:
    """The decision threshold on validation data.

    ``max_f1``: the threshold with the best F1. ``cost_ratio``: the threshold minimising
    ``cost_ratio * missed positives + false alarms`` (a missed positive costs ``cost_ratio``
    times a false alarm).
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=float)
    if y_true.min() == y_true.max():
        raise TrainingConfigError(
            "the validation slice holds only one class: cannot choose a threshold"
        )
    if rule == "max_f1":
        precision, recall, thresholds = precision_recall_curve(y_true, probability)
        f1 = np.where(
            precision + recall > 0,
            2 * precision * recall / np.maximum(precision + recall, 1e-12),
            0,
        )
        # the last precision/recall pair has no threshold
        return float(thresholds[int(np.argmax(f1[:-1]))])
    if rule == "cost_ratio":
        if not cost_ratio > 0:
            raise TrainingConfigError(
                f"training.threshold.cost_ratio must be positive, got {cost_ratio}"
            )
        candidates = np.unique(probability)
        order = np.argsort(probability)
        sorted_p, sorted_y = probability[order], y_true[order]
        positives_below = np.concatenate([[0], np.cumsum(sorted_y)])
        negatives_below = np.concatenate([[0], np.cumsum(1 - sorted_y)])
        # predicting the positive class for p >= t: rows below t are predicted negative
        below = np.searchsorted(sorted_p, candidates, side="left")
        missed = positives_below[below]
        false_alarms = (len(y_true) - y_true.sum()) - negatives_below[below]
        cost = cost_ratio * missed + false_alarms
        return float(candidates[int(np.argmin(cost))])
    raise TrainingConfigError(
        f"training.threshold.rule must be one of {', '.join(THRESHOLD_RULES)}, got {rule!r}"
    )


def fit_candidate(
    name: str,
    spec: dict[str, Any],
    fit_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    target: str,
    threshold_rule: dict[str, Any],
) -> FittedCandidate:
    """Fit one candidate on ``fit_rows`` and choose its threshold on ``validation_rows``."""
    if "kind" not in spec:
        raise TrainingConfigError(f"training.models.{name}.kind is missing")
    pipeline = build_model(spec["kind"], spec.get("params", {}), numeric, categorical)
    features = numeric + categorical
    started = time.perf_counter()
    pipeline.fit(fit_rows[features], fit_rows[target].to_numpy())
    seconds = time.perf_counter() - started
    probability = pipeline.predict_proba(validation_rows[features])[:, 1]
    threshold = choose_threshold(
        validation_rows[target].to_numpy(),
        probability,
        threshold_rule.get("rule", "max_f1"),
        float(threshold_rule.get("cost_ratio", 1.0)),
    )
    logger.info(
        "Trained %s (%s) on %d rows in %.1f s; threshold %.3f by %s",
        name,
        spec["kind"],
        len(fit_rows),
        seconds,
        threshold,
        threshold_rule.get("rule", "max_f1"),
    )
    return FittedCandidate(
        name, spec["kind"], pipeline, threshold, seconds, len(validation_rows), len(fit_rows)
    )
