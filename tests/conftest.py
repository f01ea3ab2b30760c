"""Shared fixtures: a throwaway copy of the project to run real Kedro sessions in."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Small sizes that keep a whole pipeline run to a few seconds.
SMALL_SIMULATION = {"n_events": 3000, "n_production": 1200}


def copy_project(target: Path) -> Path:
    """Copy what a Kedro run needs (config, metadata, empty data layers) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy2(PROJECT_ROOT / name, target / name)
    shutil.copytree(PROJECT_ROOT / "conf", target / "conf", ignore=shutil.ignore_patterns("local"))
    (target / "conf" / "local").mkdir(exist_ok=True)
    for layer in sorted((PROJECT_ROOT / "data").iterdir()):
        if layer.is_dir():
            (target / "data" / layer.name).mkdir(parents=True, exist_ok=True)
    # The package is installed (editable); Kedro only needs a src/ folder inside the project.
    (target / "src").mkdir(exist_ok=True)
    return target


@pytest.fixture
def project_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh copy of the project as the working directory (catalog paths are relative)."""
    path = copy_project(tmp_path / "project")
    monkeypatch.chdir(path)
    yield path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def base_parameters() -> dict[str, Any]:
    """``conf/base``'s parameters as a run sees them (globals such as the model name resolved)."""
    from shadowdrift.serving.config import load_parameters

    return load_parameters(PROJECT_ROOT, env="base")


@pytest.fixture(scope="session")
def base_params() -> dict[str, Any]:
    return base_parameters()


@pytest.fixture(autouse=True)
def _no_global_mlflow_uri() -> Iterator[None]:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which every later `kedro run`
    subprocess would then follow (conf/base/mlflow.yml honours it): undo it after each test."""
    yield
    forget_mlflow_state()


def forget_mlflow_state() -> None:
    """Undo what an in-process Kedro session leaves behind in MLflow and kedro-mlflow."""
    import mlflow

    # In-process Kedro sessions can leave kedro-mlflow's run active; the next session would
    # then ignore mlflow.yml and log into the previous test's database.
    while mlflow.active_run() is not None:
        mlflow.end_run()
    # kedro-mlflow's hook is a process-wide singleton that remembers the last run id; a later
    # in-process session with tracking disabled would try to reopen it in another database.
    from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook

    mlflow_hook.run_id = None
    mlflow.set_tracking_uri(None)
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(variable, None)


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Quiet, and never touching the user's BentoML store or a global MLflow URI.

    Packaging is part of ``__default__``: without this, a test run would import its small test
    models into ~/bentoml and move the user's ``:latest`` tags. Set in os.environ so that the
    ``kedro run`` subprocesses inherit it.
    """
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ["BENTOML_HOME"] = str(tmp_path_factory.mktemp("bentoml_home"))
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(variable, None)
