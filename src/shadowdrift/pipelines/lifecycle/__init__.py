"""``kedro run --pipelines lifecycle``: everything but the simulator, for an environment with real data."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
