"""``kedro run --pipelines drift``: reference vs the prediction log, a report and a retraining decision."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
