"""Workspaces: what an environment writes is named after it; --params override one key."""

from __future__ import annotations

import pytest

from shadowdrift.workspace import WorkspaceConfigLoader, WorkspaceError, workspace_globals
from tests.conftest import PROJECT_ROOT


def loader(env: str | None, runtime_params: dict | None = None) -> WorkspaceConfigLoader:
    return WorkspaceConfigLoader(
        str(PROJECT_ROOT / "conf"),
        env=env,
        base_env="base",
        default_run_env="local",
        runtime_params=runtime_params,
    )


@pytest.mark.parametrize("env", [None, "base", "local", "dask"])
def test_the_demo_and_the_dask_engine_share_the_default_workspace(env):
    params = loader(env)["parameters"]
    assert params["model_registry"]["name"] == "shadowdrift-churn"
    assert params["serving"]["prediction_log"]["path"] == "data/07_model_output/prediction_log"
    assert loader(env)["catalog"]["model_input_{window}"]["filepath"].startswith("data/05_")


def test_an_environment_gets_a_workspace_named_after_it():
    own = loader("example_own_data")
    params = own["parameters"]
    assert params["model_registry"]["name"] == "shadowdrift-example_own_data"
    assert params["serving"]["prediction_log"]["path"] == (
        "data/example_own_data/07_model_output/prediction_log"
    )
    catalog = own["catalog"]
    assert catalog["model_output_prediction_log"]["path"].startswith("data/example_own_data/")
    assert catalog["reporting_drift_report"]["filepath"].startswith("data/example_own_data/")
    # every path a run writes is under the workspace
    written = [
        entry.get("filepath") or entry.get("path") or entry.get("dataset", {}).get("filepath")
        for name, entry in catalog.items()
        if not name.startswith("raw_") and isinstance(entry, dict) and "type" in entry
    ]
    assert all(path.startswith("data/example_own_data/") for path in written if path), written


def test_globals_yml_names_or_shares_the_workspace():
    assert workspace_globals("anything", {"workspace": "wfh"})["model_name"] == "shadowdrift-wfh"
    shared = workspace_globals("dask", {"workspace": ""})
    assert shared["data_root"] == "data" and shared["model_name"] == "shadowdrift-churn"
    assert workspace_globals("x", {"model_name": "mine"})["model_name"] == "mine"


@pytest.mark.parametrize("name", ["My Data", "-x", "a/b"])
def test_a_workspace_that_cannot_name_files_and_models_is_refused(name):
    with pytest.raises(WorkspaceError, match=r"globals\.yml"):
        workspace_globals(name, {})
    with pytest.raises(WorkspaceError, match=r"from globals\.yml"):
        workspace_globals("fine", {"workspace": name})


def test_an_environment_name_in_capitals_gets_a_lowercase_workspace():
    assert workspace_globals("MyData", {})["model_name"] == "shadowdrift-mydata"


@pytest.mark.parametrize("env", ["local", "example_own_data"])
def test_params_on_the_command_line_override_one_key_not_the_block(env):
    params = loader(env, {"evaluation": {"latency_repeats": 1}})["parameters"]
    assert params["evaluation"]["latency_repeats"] == 1
    assert params["evaluation"]["gate"]["primary_metric"] == "roc_auc"
    # an environment's own block still replaces base's whole block
    assert ("size" in params["drift"]["chunking"]) == (env == "local")
