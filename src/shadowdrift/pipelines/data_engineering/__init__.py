"""``kedro run --pipelines data_engineering``: validate, clean and split the labelled history."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
