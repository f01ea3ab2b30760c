"""Kedro project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

import os
from pathlib import Path

from kedro.utils import find_kedro_project

import shadowdrift  # noqa: F401  (sets the telemetry switches before any plugin runs)
from shadowdrift.dask_hooks import DaskClientHooks
from shadowdrift.hooks import ProtectRealDataHooks
from shadowdrift.workspace import WorkspaceConfigLoader


def _project_path() -> str:
    """The project root, wherever Kedro was started from (a notebook runs from notebooks/)."""
    root = find_kedro_project(Path.cwd())
    return str(root if root is not None else Path.cwd())


def _env_or(name: str, default: str) -> str:
    """An environment variable if set and non-empty, else ``default`` (for MLFLOW_TRACKING_URI)."""
    return os.environ.get(name) or default


# The Dask hook does nothing unless the environment has a dask.yml (conf/dask/).
HOOKS = (ProtectRealDataHooks(), DaskClientHooks())

# kedro-telemetry's hooks stay off even if a user deletes `.telemetry`.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)

# Kedro's OmegaConfigLoader plus the workspace globals (data_root, model_name, ...) that keep
# environments from writing over each other (shadowdrift.workspace).
CONFIG_LOADER_CLASS = WorkspaceConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"project_path": _project_path, "env_or": _env_or},
    "config_patterns": {"dask": ["dask*", "dask*/**"]},  # conf/<env>/dask.yml
}
