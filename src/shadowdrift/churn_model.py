"""The logged model: raw feature records in, the positive class's probability and the label out.

``ChurnModel`` is an MLflow ``PythonModel`` wrapping a fitted scikit-learn Pipeline (the
preprocessing is inside it) together with its decision threshold, so whoever loads
``models:/<name>@champion`` gets the whole inference path and cannot skew from training.

Why not kedro-mlflow's ``pipeline_ml_factory``: its ``KedroPipelineModel`` runs a Kedro
pipeline (catalog, runner, hooks) on every predict, which costs several milliseconds per call
on top of the model; see docs/training.md and benchmarks/bench_model_overhead.py.
"""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

PROBABILITY = "probability"
LABEL = "label"

# What the logged model needs at load time (the project package itself must be importable:
# the torch network's class lives in it).
_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "torch", "cloudpickle")


class ChurnModel(mlflow.pyfunc.PythonModel):
    """A fitted Pipeline, its threshold and the feature order it expects."""

    # The logged model carries an explicit signature; MLflow's type-hint validation would wrap
    # predict (costing time on every call) and warn about hints it does not support.
    _skip_type_hint_validation = True

    def __init__(
        self,
        pipeline: Pipeline,
        threshold: float,
        numeric_features: list[str],
        categorical_features: list[str],
        name: str,
        kind: str,
        info: dict[str, Any] | None = None,
    ):
        self.pipeline = pipeline
        self.threshold = float(threshold)
        self.numeric_features = list(numeric_features)
        self.categorical_features = list(categorical_features)
        self.name = name
        self.kind = kind
        # how it was trained (rows, seconds, threshold rule): shown in summaries and the registry
        self.info = dict(info or {})

    @property
    def features(self) -> list[str]:
        return self.numeric_features + self.categorical_features

    def predict_probability(self, records: pd.DataFrame) -> np.ndarray:
        """The positive class's probability per record; columns beyond the features are ignored."""
        missing = [c for c in self.features if c not in records.columns]
        if missing:
            raise ValueError(f"records lack feature column(s): {', '.join(missing)}")
        return self.pipeline.predict_proba(records[self.features])[:, 1]

    # No type hints on purpose: MLflow would try, and fail, to derive a signature from them.
    def predict(self, context, model_input, params=None):
        """MLflow's entry point: a DataFrame with ``probability`` and ``label`` (0/1)."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        probability = self.predict_probability(frame)
        return pd.DataFrame(
            {PROBABILITY: probability, LABEL: (probability >= self.threshold).astype(np.int64)}
        )


def input_example(records: pd.DataFrame, model: ChurnModel, rows: int = 5) -> pd.DataFrame:
    """A few validated raw records: the signature then mirrors the schema (int stays long).

    MLflow refuses to convert int64 to float64 at load time, so declaring integer features as
    double would reject the very records the model was trained on.
    """
    example = records[model.features].head(rows).copy()
    for column in model.categorical_features:
        example[column] = example[column].astype(object)
    return example.reset_index(drop=True)


def signature_for(model: ChurnModel, example: pd.DataFrame) -> ModelSignature:
    return infer_signature(example, model.predict(None, example))


def _pinned_requirements() -> list[str]:
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def log_churn_model(model: ChurnModel, example: pd.DataFrame, name: str | None = None) -> Any:
    """Log ``model`` to the active MLflow run with a signature and an input example."""
    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values: by design, the schema
        # declares integer features non-nullable, and the signature mirrors the schema.
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
        )
        info = mlflow.pyfunc.log_model(
            name=name or model.name,
            python_model=model,
            signature=signature_for(model, example),
            input_example=example,
            # explicit pins: inferring requirements spawns a process and takes seconds
            pip_requirements=_pinned_requirements(),
        )
    logger.info("Logged %s to MLflow as %s", model.name, info.model_uri)
    return info


def load_churn_model(model_uri: str) -> ChurnModel:
    """The ``ChurnModel`` behind an MLflow model URI (``models:/name@alias``, ``runs:/...``)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
