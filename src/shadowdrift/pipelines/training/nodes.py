"""Nodes of the training pipeline: thin wrappers around ``shadowdrift.training``."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from shadowdrift.churn_model import ChurnModel, input_example, log_churn_model
from shadowdrift.schema import parse_schema
from shadowdrift.training import fit_candidate, split_validation


def split_train_validation(
    model_input_train: pd.DataFrame, schema: dict[str, Any], training: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the most recent slice of the train window for thresholds and early stopping."""
    return split_validation(
        model_input_train, parse_schema(schema).timestamp, training["validation_fraction"]
    )


def train_candidate(
    fit_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    schema: dict[str, Any],
    training: dict[str, Any],
    name: str,
) -> ChurnModel:
    """Fit candidate ``name`` (from ``training.models``) and wrap it with its threshold."""
    data_schema = parse_schema(schema)
    candidate = fit_candidate(
        name,
        training["models"][name],
        fit_rows,
        validation_rows,
        data_schema.numeric_features,
        data_schema.categorical_features,
        data_schema.target,
        training["threshold"],
    )
    model = ChurnModel(
        candidate.pipeline,
        candidate.threshold,
        data_schema.numeric_features,
        data_schema.categorical_features,
        name=name,
        kind=candidate.kind,
        info={
            "fit_seconds": round(candidate.fit_seconds, 3),
            "train_rows": candidate.train_rows,
            "validation_rows": candidate.validation_rows,
            "threshold_rule": training["threshold"].get("rule", "max_f1"),
        },
    )
    return model


def log_candidates(
    validation_rows: pd.DataFrame, training: dict[str, Any], *models: ChurnModel
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Log each candidate to the active MLflow run; return a summary and flat metrics."""
    summary: dict[str, Any] = {"run_id": None, "models": {}}
    metrics: dict[str, Any] = {}
    for model in models:
        example = input_example(
            validation_rows, model, rows=int(training.get("input_example_rows", 5))
        )
        info = log_churn_model(model, example)
        summary["run_id"] = info.run_id or (
            mlflow.active_run().info.run_id if mlflow.active_run() else None
        )
        summary["models"][model.name] = {
            "kind": model.kind,
            "model_uri": info.model_uri,
            "threshold": model.threshold,
            **model.info,
        }
        metrics[f"{model.name}_fit_seconds"] = {
            "value": float(model.info["fit_seconds"]),
            "step": 0,
        }
        metrics[f"{model.name}_threshold"] = {"value": model.threshold, "step": 0}
    return summary, metrics
