"""``kedro run --pipelines packaging``: import the champion and challenger into the BentoML model store."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
