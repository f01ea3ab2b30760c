"""``kedro run --pipelines inference``: batch-score raw_production into the prediction log."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
