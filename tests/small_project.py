"""A small trained project copy, built once per test session and shared by the notebook and
kedro-viz tests (building it is most of their run time)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, copy_project
from tests.kedro_runs import run_kedro_cli
from tests.pipelines.test_training_and_evaluation import SMALL

# Everything the notebooks read; one session, so inference runs after evaluation has set the
# registry aliases.
PIPELINES = "simulation,data_engineering,training,evaluation,inference"
_built: dict[str, Path] = {}


def small_trained_project(factory: pytest.TempPathFactory) -> Path:
    """The shared copy (with notebooks/): raw data, splits, models, registry, a prediction log.

    Tests may add files (reports, a kedro-viz build) but must not change what is there.
    """
    if "path" not in _built:
        path = copy_project(factory.mktemp("small_trained") / "project")
        shutil.copytree(PROJECT_ROOT / "notebooks", path / "notebooks")
        run_kedro_cli(path, "--pipelines", PIPELINES, params=SMALL)
        _built["path"] = path
    return _built["path"]
