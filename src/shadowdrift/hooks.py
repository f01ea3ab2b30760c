"""Project hooks."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline


class SimulationGuard(ValueError):
    """A run would overwrite a user's own raw data with simulated data."""


class ProtectRealDataHooks:
    """Refuse to run the simulator in an environment that declares its raw data real.

    An environment that points ``raw_events`` / ``raw_production`` at a user's own files sets
    ``simulation.enabled: false``; without this guard, ``kedro run`` (whose ``__default__``
    starts with the simulation) would overwrite those files with simulated records.
    """

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        if not any("simulation" in node.tags for node in pipeline.nodes):
            return
        params = catalog.load("params:simulation") if "params:simulation" in catalog else {}
        if isinstance(params, dict) and params.get("enabled", True) is False:
            raise SimulationGuard(
                f"environment {run_params.get('env')!r} sets simulation.enabled: false (its raw data "
                "is real), but this run includes the simulation pipeline, which would overwrite "
                "raw_events and raw_production. Run `kedro run --env <env> --pipeline lifecycle` "
                "(everything but the simulation) or name the pipelines you want."
            )
