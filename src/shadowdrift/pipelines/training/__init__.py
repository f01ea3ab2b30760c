"""``kedro run --pipelines training``: fit the gbm and mlp candidates and log them to MLflow."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
