"""Project pipelines: one folder per runnable pipeline under ``pipelines/``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` runs the whole demo."""
    pipelines = find_pipelines(raise_errors=True)
    # Starting from an empty Pipeline keeps kedro-mlflow's PipelineML out of first place in
    # the sum, which it does not support.
    # `retraining` rewrites the model-input windows that data_engineering writes: it runs on
    # its own (`kedro loop` runs it when drift says retrain), never inside the demo.
    demo = {name: p for name, p in pipelines.items() if name != "retraining"}
    pipelines["__default__"] = sum(demo.values(), Pipeline([]))
    # Everything but the simulator: the run for an environment with real data.
    pipelines["lifecycle"] = sum(
        (p for name, p in demo.items() if name != "simulation"), Pipeline([])
    )
    return pipelines
