"""The workspace: one name for everything a Kedro environment writes.

Two environments in one project (the demo and your own data, or two data sets) must not share
a prediction log, reports, a registered model or BentoML models: the second would read the
first one's records, overwrite its reports and take over its ``champion`` alias. So every path
and name that a run writes is derived from the environment's *workspace*, which Kedro's config
loader offers as globals (``${globals:data_root}`` in the catalogs, ``${globals:model_name}``
in the parameters):

============== ============================ ==========================================
global          default workspace ("")        workspace ``w`` (``kedro run --env w``)
============== ============================ ==========================================
``workspace``   ``""``                        ``w``
``data_root``   ``data``                      ``data/w``
``model_name``  ``shadowdrift-churn``         ``shadowdrift-w`` (MLflow registered model;
                                              BentoML models ``<model_name>-<alias>``)
``experiment``  ``shadowdrift``               ``shadowdrift-w`` (MLflow experiment)
============== ============================ ==========================================

The workspace is the environment's name, except for ``base`` and ``local`` (``kedro run``
without ``--env``), which use the default workspace, the demo's. An environment overrides it in
its ``globals.yml`` (``workspace: my_name``; ``workspace: ""`` shares the default one, as the
Dask environment does, being another engine over the demo's data); any of the derived globals
can be set there too.

Plain Python apart from the config loader class, which Kedro's settings name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

DEFAULT_WORKSPACE = ""
DEFAULT_MODEL_NAME = "shadowdrift-churn"
DEFAULT_EXPERIMENT = "shadowdrift"
# Environments that use the default workspace unless they say otherwise.
DEFAULT_ENVIRONMENTS = ("base", "local")
# BentoML model names are lowercase; MLflow and file paths accept the same characters.
_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]*[a-z0-9])?")


class WorkspaceError(ValueError):
    """The workspace name cannot name files and models; the message says where it came from."""


def workspace_globals(env: str | None, configured: Mapping[str, Any]) -> dict[str, Any]:
    """The workspace globals for ``env``: ``configured`` (globals.yml) wins, the rest derived."""
    if "workspace" in configured:
        workspace, source = configured["workspace"], "globals.yml `workspace`"
    elif env in DEFAULT_ENVIRONMENTS or env is None:
        workspace, source = DEFAULT_WORKSPACE, "the default workspace"
    else:
        # BentoML model names are lowercase: `--env MyData` gets the workspace "mydata"
        workspace, source = env.lower(), f"the environment name {env!r}"
    workspace = "" if workspace is None else str(workspace)
    if workspace and not _NAME.fullmatch(workspace):
        raise WorkspaceError(
            f"workspace {workspace!r} (from {source}) cannot name data folders and models: use "
            "lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or "
            "digit; set `workspace: <name>` in the environment's globals.yml"
        )
    derived = {
        "workspace": workspace,
        "data_root": f"data/{workspace}" if workspace else "data",
        "model_name": f"shadowdrift-{workspace}" if workspace else DEFAULT_MODEL_NAME,
        "experiment": f"shadowdrift-{workspace}" if workspace else DEFAULT_EXPERIMENT,
    }
    return {**derived, **configured, "workspace": workspace}


class WorkspaceConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader`` with the workspace globals filled in (module docstring).

    It also applies ``kedro run --params`` once, on top of the merged parameters. Kedro 1.7
    merges them into base's and into the environment's files separately, so with an
    environment that has a parameters file, ``--params evaluation.latency_repeats=1`` made an
    ``evaluation`` block of one key there, which then replaced base's whole block.
    """

    def __init__(self, conf_source: Any, env: str | None = None, **kwargs: Any) -> None:
        super().__init__(conf_source, env=env, **kwargs)
        self._globals = workspace_globals(env or self.default_run_env, self._globals or {})
        self._globals_oc = None  # the resolver's cached copy of the globals

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key == "parameters" and self.runtime_params and key not in self.data:
            merged = OmegaConf.merge(OmegaConf.create(config), self.runtime_params)
            config = OmegaConf.to_container(merged, resolve=True)
        return config

    def _merge_and_resolve(self, key: str, config_per_file: dict[Path, Any]) -> dict[str, Any]:
        if key != "parameters" or not config_per_file:
            return super()._merge_and_resolve(key, config_per_file)
        # the files alone; __getitem__ adds the run's parameters to the merged result
        merged = OmegaConf.unsafe_merge(*config_per_file.values())
        return OmegaConf.to_container(merged, resolve=True)

    @property
    def workspace(self) -> dict[str, Any]:
        """The workspace globals of this environment (``workspace``, ``data_root``, ...)."""
        return {key: self._globals[key] for key in ("workspace", "data_root", "model_name")}


def workspace_of(project_path: Path, env: str | None = None) -> dict[str, Any]:
    """The workspace globals of ``env`` in the project at ``project_path`` (for tools outside
    a Kedro session, such as the notebook report)."""
    from shadowdrift.settings import CONFIG_LOADER_ARGS  # noqa: PLC0415  (settings imports us)

    loader = WorkspaceConfigLoader(
        str(project_path / "conf"),
        env=env,
        base_env=CONFIG_LOADER_ARGS["base_env"],
        default_run_env=CONFIG_LOADER_ARGS["default_run_env"],
    )
    return loader.workspace
