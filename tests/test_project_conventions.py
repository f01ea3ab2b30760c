"""Conventions that keep the project browsable in kedro-viz and runnable on any runner."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset

from tests.conftest import PROJECT_ROOT, load_yaml

LAYERS = {
    "raw": "raw_",
    "intermediate": "intermediate_",
    "primary": "primary_",
    "feature": "feature_",
    "model_input": "model_input_",
    "models": "models_",
    "model_output": "model_output_",
    "reporting": "reporting_",
}
# Shared by several pipelines, in parameters.yml.
SHARED_PARAMETERS = {"params:schema", "params:model_registry"}
PIPELINE_DIRS = sorted(
    p.name
    for p in (PROJECT_ROOT / "src/shadowdrift/pipelines").iterdir()
    if (p / "pipeline.py").exists()
)


@pytest.fixture(scope="module")
def context():
    # ${project_path:} in mlflow.yml resolves from the working directory, as `kedro run` does
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(PROJECT_ROOT)
        bootstrap_project(PROJECT_ROOT)
        with KedroSession.create(project_path=PROJECT_ROOT) as session:
            yield session.load_context()


@pytest.fixture(scope="module")
def registered():
    bootstrap_project(PROJECT_ROOT)
    return dict(pipelines)


def _catalog_files() -> list[Path]:
    return sorted((PROJECT_ROOT / "conf/base").glob("catalog*.yml"))


def test_every_pipeline_folder_is_registered(registered):
    assert set(PIPELINE_DIRS) <= set(registered)
    assert "__default__" in registered


def test_parameters_live_in_one_file_per_pipeline(registered):
    # A pipeline built from others' nodes (retraining) finds their parameters in their files.
    for name in PIPELINE_DIRS:
        for node in registered[name].nodes:
            owners = [other for other in PIPELINE_DIRS if node in registered[other].nodes]
            for item in node.inputs:
                if item.startswith("params:") and item not in SHARED_PARAMETERS:
                    key = item.removeprefix("params:").split(".")[0]
                    paths = [PROJECT_ROOT / f"conf/base/parameters_{o}.yml" for o in owners]
                    assert any(
                        path.exists() and key in (load_yaml(path) or {}) for path in paths
                    ), f"{item} of pipeline {name} is in none of {[p.name for p in paths]}"


def test_every_dataset_is_in_the_catalog_not_in_memory(registered, context):
    # A distributed runner cannot see in-memory hand-offs between nodes.
    for name, pipeline in registered.items():
        for dataset in pipeline.datasets():
            if dataset.startswith("params:") or dataset == "parameters":
                continue
            assert not isinstance(context.catalog.get(dataset), MemoryDataset), (
                f"{dataset} (pipeline {name}) has no catalog entry"
            )


def test_every_catalog_entry_has_a_layer_matching_its_name():
    for path in _catalog_files():
        for name, entry in (load_yaml(path) or {}).items():
            if name.startswith("_"):
                continue
            layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
            assert layer in LAYERS, (
                f"{name} in {path.name}: kedro-viz layer {layer!r} not one of {sorted(LAYERS)}"
            )
            assert name.startswith(LAYERS[layer]), (
                f"{name} in {path.name} should start with {LAYERS[layer]!r}"
            )


def test_every_node_has_a_readable_name_and_a_tag(registered):
    for name in PIPELINE_DIRS:
        for node in registered[name].nodes:
            assert re.fullmatch(r"[a-z][a-z0-9_]+", node.name), node.name
            assert node.tags, f"node {node.name} has no tag"


# Kept history elsewhere: MLflow datasets live in MLflow runs; the prediction log only appends.
# The ground-truth log is read-only here (the service writes it, append-only too).
UNVERSIONED_BY_DESIGN = (
    "kedro_mlflow.",
    "shadowdrift.datasets.PredictionLogDataset",
    "shadowdrift.datasets.GroundTruthDataset",
)


def test_pipeline_outputs_are_versioned_so_nothing_is_overwritten():
    entries = {}
    for path in _catalog_files():
        entries.update(load_yaml(path) or {})
    for name, entry in entries.items():
        if name.startswith(("raw_", "_")) or entry["type"].startswith(UNVERSIONED_BY_DESIGN):
            continue
        assert entry.get("versioned") is True, f"{name} must be versioned"


def test_telemetry_is_refused_and_mlflow_uses_sqlite(context):
    assert load_yaml(PROJECT_ROOT / ".telemetry") == {"consent": False}
    import os

    import shadowdrift  # noqa: F401

    for variable in (
        "KEDRO_DISABLE_TELEMETRY",
        "DO_NOT_TRACK",
        "NML_DISABLE_USAGE_LOGGING",
        "BENTOML_DO_NOT_TRACK",
        "MLFLOW_DISABLE_TELEMETRY",
    ):
        assert os.environ.get(variable), variable
    mlflow_config = context.config_loader["mlflow"]
    tracking = mlflow_config["server"]["mlflow_tracking_uri"]
    registry = mlflow_config["server"]["mlflow_registry_uri"]
    assert tracking == registry == f"sqlite:///{PROJECT_ROOT}/data/06_models/mlflow.db"
