"""``kedro run --pipelines retraining``: a rolled training set, then training, evaluation, packaging."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
