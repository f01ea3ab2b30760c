"""Project pipelines: one folder per runnable pipeline under ``pipelines/``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Not part of the demo run: `retraining` rewrites the model-input windows that data_engineering
# writes (`kedro loop` runs it when drift says retrain), and `lifecycle` repeats the demo's
# pipelines without the simulation (the run for an environment with real data).
NOT_IN_DEFAULT = ("retraining", "lifecycle")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` runs the whole demo."""
    pipelines = find_pipelines(raise_errors=True)
    demo = [p for name, p in sorted(pipelines.items()) if name not in NOT_IN_DEFAULT]
    # Starting from an empty Pipeline keeps kedro-mlflow's PipelineML out of first place in
    # the sum, which it does not support.
    pipelines["__default__"] = sum(demo, Pipeline([]))
    return pipelines
