"""``kedro run --pipelines simulation``: the default data set with a named drift scenario."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
