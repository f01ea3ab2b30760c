"""Holdout metrics, per-segment metrics, calibration, latency and plots for a scored table.

Plain module (numpy, scikit-learn, plotly); no Kedro or MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from threadpoolctl import threadpool_limits

# Direction of each metric, for comparisons and the promotion gate.
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "brier": False,
    "log_loss": False,
}


def classification_metrics(
    y_true: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, Any]:
    """ROC AUC, PR AUC, Brier, log loss, and precision/recall/F1 and confusion at ``threshold``."""
    y_true = np.asarray(y_true).astype(int)
    probability = np.clip(np.asarray(probability, dtype=float), 1e-7, 1 - 1e-7)
    label = (probability >= threshold).astype(int)
    both_classes = y_true.min() != y_true.max()
    tn, fp, fn, tp = confusion_matrix(y_true, label, labels=[0, 1]).ravel()
    return {
        "rows": len(y_true),
        "positive_rate": float(y_true.mean()),
        "roc_auc": float(roc_auc_score(y_true, probability)) if both_classes else None,
        "pr_auc": float(average_precision_score(y_true, probability)) if both_classes else None,
        "brier": float(brier_score_loss(y_true, probability)),
        "log_loss": float(log_loss(y_true, probability, labels=[0, 1])),
        "threshold": float(threshold),
        "precision": float(precision_score(y_true, label, zero_division=0)),
        "recall": float(recall_score(y_true, label, zero_division=0)),
        "f1": float(f1_score(y_true, label, zero_division=0)),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def segment_metrics(
    frame: pd.DataFrame,
    target: str,
    probability: str,
    threshold: float,
    segment_columns: list[str],
    min_rows: int,
) -> list[dict[str, Any]]:
    """The same metrics per value of each categorical column (segments under ``min_rows`` skipped)."""
    out = []
    for column in segment_columns:
        for value, group in frame.groupby(column, dropna=False, observed=True):
            if len(group) < min_rows:
                continue
            metrics = classification_metrics(
                group[target].to_numpy(), group[probability].to_numpy(), threshold
            )
            out.append({"feature": column, "segment": str(value), **metrics})
    return out


def calibration(y_true: np.ndarray, probability: np.ndarray, bins: int) -> dict[str, list[float]]:
    observed, predicted = calibration_curve(y_true, probability, n_bins=bins, strategy="quantile")
    return {"predicted": predicted.tolist(), "observed": observed.tolist()}


def ms_per_1000_rows(
    predict: Callable[[pd.DataFrame], Any], records: pd.DataFrame, repeats: int
) -> float:
    """Median wall time of predicting 1,000 rows, in milliseconds (after one warm-up call).

    Measured on one thread, as a service worker runs: otherwise OpenMP's thread pool
    (HistGradientBoosting) spins against whatever else uses the other core, and the figure
    swings by several times between runs.
    """
    batch = records.sample(n=1000, replace=len(records) < 1000, random_state=0).reset_index(
        drop=True
    )
    with threadpool_limits(limits=1):
        predict(batch)
        timings = []
        for _ in range(max(1, repeats)):
            started = time.perf_counter()
            predict(batch)
            timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings))


def roc_figure(y_true: np.ndarray, scores: dict[str, np.ndarray]) -> go.Figure:
    figure = go.Figure()
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y_true, score)
        # thin the curve: thousands of points add nothing visible and bloat the JSON
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 300)).astype(int))
        auc = roc_auc_score(y_true, score)
        figure.add_trace(
            go.Scatter(x=fpr[keep], y=tpr[keep], mode="lines", name=f"{name} (AUC {auc:.4f})")
        )
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot"})
    )
    figure.update_layout(
        title="ROC on the test window",
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
    )
    return figure


def calibration_figure(curves: dict[str, dict[str, list[float]]], target: str) -> go.Figure:
    """Observed share of positive ``target`` per bin of predicted probability, per model."""
    figure = go.Figure()
    for name, curve in curves.items():
        figure.add_trace(
            go.Scatter(x=curve["predicted"], y=curve["observed"], mode="lines+markers", name=name)
        )
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot"})
    )
    figure.update_layout(
        title="Calibration on the test window",
        xaxis_title=f"predicted probability of {target}",
        yaxis_title=f"observed rate of {target}",
    )
    return figure


def segment_figure(segments: list[dict[str, Any]], metric: str = "roc_auc") -> go.Figure:
    frame = pd.DataFrame(segments)
    figure = go.Figure()
    if not frame.empty:
        for model, group in frame.groupby("model", sort=False):
            figure.add_trace(
                go.Bar(
                    x=group["feature"] + "=" + group["segment"], y=group[metric], name=str(model)
                )
            )
    figure.update_layout(
        title=f"{metric} per segment on the test window", barmode="group", yaxis_title=metric
    )
    return figure
