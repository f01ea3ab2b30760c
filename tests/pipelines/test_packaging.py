"""kedro run --pipelines packaging: registry aliases -> BentoML model store (a temporary BENTOML_HOME)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import copy_project
from tests.kedro_runs import run_kedro_cli
from tests.pipelines.test_training_and_evaluation import MODEL_NAME, SMALL

pytestmark = pytest.mark.slow

_BUILT: dict[str, Path] = {}


# mlflow.set_tracking_uri() (other tests call it) exports MLFLOW_TRACKING_URI, which
# conf/base/mlflow.yml prefers: a project copy must use its own registry.
OWN_REGISTRY = {"MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the subprocesses started inside."""
    previous = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def packaged_project() -> tuple[Path, Path]:
    """A small trained project copy and a BENTOML_HOME holding its champion and challenger.

    Built once per test session (the serving end-to-end test uses it too) in a temporary
    directory removed at exit.
    """
    if "project" not in _BUILT:
        root = Path(tempfile.mkdtemp(prefix="shadowdrift-packaged-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        project = copy_project(root / "project")
        home = root / "bentoml"
        with environment(BENTOML_HOME=str(home), **OWN_REGISTRY):
            run_kedro_cli(project, "--pipelines", "simulation,data_engineering", params=SMALL)
            run_kedro_cli(project, "--pipelines", "training,evaluation", params=SMALL)
            run_kedro_cli(project, "--pipeline", "packaging")
        _BUILT.update(project=project, home=home)
    return _BUILT["project"], _BUILT["home"]


def latest(project: Path, relative: str) -> Path:
    """The newest version of a versioned dataset file of ``project``.

    Read directly rather than through a KedroSession: the project's ``project_path`` resolver
    follows the working directory, and kedro-mlflow would point this process's MLflow at it.
    """
    versions = sorted((project / relative).glob(f"*/{Path(relative).name}"))
    assert versions, f"no version of {relative} in {project}"
    return versions[-1]


def packaging_report(project: Path) -> dict:
    return json.loads(latest(project, "data/08_reporting/packaged_models.json").read_text())


def first_test_rows(project: Path, n_rows: int) -> pd.DataFrame:
    return pd.read_parquet(latest(project, "data/05_model_input/test.parquet")).head(n_rows)


@contextlib.contextmanager
def mlflow_at(uri: str) -> Iterator[None]:
    """Point this process's MLflow at ``uri`` and put everything back afterwards."""
    import mlflow

    tracking, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    saved = {key: os.environ.get(key) for key in OWN_REGISTRY}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry_uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def model_store(home: Path):
    from bentoml._internal.models import ModelStore

    return ModelStore(home / "models")


def registry(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project}/data/06_models/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_packaging_imports_both_aliases_with_their_provenance():
    project, home = packaged_project()
    report = packaging_report(project)
    assert report["registered_model_name"] == MODEL_NAME
    assert report["bentoml_home"] == str(home)
    assert report["differs_from_gate_decision"] == {}
    client = registry(project)
    store = model_store(home)
    for alias in ("champion", "challenger"):
        entry = report["models"][alias]
        version = client.get_model_version_by_alias(MODEL_NAME, alias)
        assert entry["status"] == "imported"
        assert entry["registry_version"] == str(version.version)
        assert entry["run_id"] == version.run_id
        assert entry["bento_tag"].startswith(f"shadowdrift-churn-{alias}:v{version.version}-")
        stored = store.get(entry["bento_tag"])
        assert stored.info.labels == {
            "registered_model": MODEL_NAME,
            "registry_version": str(version.version),
            "alias": alias,
            "run_id": version.run_id,
            "candidate": version.tags["candidate"],
            "project": "shadowdrift",
        }


def test_the_stored_champion_predicts_what_the_registry_model_does():
    from shadowdrift.churn_model import load_churn_model
    from shadowdrift.serving.model_store import load_stored

    project, home = packaged_project()
    report = packaging_report(project)
    stored_model, info = load_stored(
        model_store(home).get(report["models"]["champion"]["bento_tag"])
    )
    with mlflow_at(f"sqlite:///{project}/data/06_models/mlflow.db"):
        registry_model = load_churn_model(f"models:/{MODEL_NAME}@champion")
    test = first_test_rows(project, 200)
    assert np.array_equal(
        stored_model.predict_probability(test), registry_model.predict_probability(test)
    )
    assert info.threshold == registry_model.threshold


def test_packaging_again_changes_nothing():
    project, home = packaged_project()
    before = sorted(str(m.tag) for m in model_store(home).list())
    with environment(BENTOML_HOME=str(home), **OWN_REGISTRY):
        run_kedro_cli(project, "--pipeline", "packaging")
    report = packaging_report(project)
    assert {entry["status"] for entry in report["models"].values()} == {"unchanged"}
    assert sorted(str(m.tag) for m in model_store(home).list()) == before


def test_without_evaluation_packaging_names_what_is_missing(tmp_path):
    project = copy_project(tmp_path / "project")
    with (
        environment(BENTOML_HOME=str(tmp_path / "bentoml"), **OWN_REGISTRY),
        pytest.raises(AssertionError) as caught,
    ):
        run_kedro_cli(project, "--pipeline", "packaging")
    assert "registry_aliases" in str(caught.value)


def test_without_a_champion_in_the_registry_the_node_says_what_to_run(tmp_path, monkeypatch):
    from shadowdrift.pipelines.packaging.nodes import PackagingError, import_registered_models

    uri = f"sqlite:///{tmp_path}/empty.db"
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    params = {"aliases": ["champion"]}
    with mlflow_at(uri), pytest.raises(PackagingError, match="training,evaluation"):
        import_registered_models({"aliases_after": {}}, params, {"name": MODEL_NAME})
