"""``kedro run --pipelines evaluation``: holdout metrics, the oracle, the promotion gate, registry aliases."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
