"""simulation and data_engineering through a real KedroSession in a copy of the project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from shadowdrift.schema import DataValidationError
from tests.conftest import SMALL_SIMULATION
from tests.kedro_runs import load_dataset, run_pipeline

SMALL = {"simulation": SMALL_SIMULATION}


def test_simulation_then_data_engineering_produce_versioned_windows(project_path: Path):
    run_pipeline(project_path, "simulation", runtime_params=SMALL)
    events = pd.read_parquet(project_path / "data/01_raw/events.parquet")
    production = pd.read_parquet(project_path / "data/01_raw/production.parquet")
    assert len(events) == SMALL_SIMULATION["n_events"]
    assert len(production) == SMALL_SIMULATION["n_production"]
    assert production["event_time"].min() > events["event_time"].max()
    manifest = json.loads((project_path / "data/01_raw/drift_manifest.json").read_text())
    assert manifest["scenario"] == "none"

    run_pipeline(project_path, "data_engineering", runtime_params=SMALL)
    train = load_dataset(project_path, "model_input_train")
    test = load_dataset(project_path, "model_input_test")
    reference = load_dataset(project_path, "model_input_reference")
    assert len(train) + len(test) + len(reference) == len(events)
    assert train["event_time"].max() < test["event_time"].min()
    assert test["event_time"].max() < reference["event_time"].min()
    # versioned: one timestamped folder per run, nothing overwritten
    versions = list((project_path / "data/05_model_input/train.parquet").iterdir())
    assert len(versions) == 1
    run_pipeline(project_path, "data_engineering", runtime_params=SMALL)
    assert len(list((project_path / "data/05_model_input/train.parquet").iterdir())) == 2
    summary = load_dataset(project_path, "reporting_split_summary")
    assert summary["windows"]["train"]["rows"] == len(train)


def test_a_scenario_is_chosen_by_parameter(project_path: Path):
    params = {"simulation": {**SMALL_SIMULATION, "scenario": "new_category"}}
    run_pipeline(project_path, "simulation", runtime_params=params)
    production = pd.read_parquet(project_path / "data/01_raw/production.parquet")
    manifest = json.loads((project_path / "data/01_raw/drift_manifest.json").read_text())
    assert manifest["scenario"] == "new_category"
    assert (
        (production["payment_method"] == "digital_wallet").sum() == manifest["n_rows_affected"] > 0
    )


def test_data_engineering_stops_on_bad_raw_data_naming_column_and_rows(project_path: Path):
    run_pipeline(project_path, "simulation", runtime_params=SMALL)
    path = project_path / "data/01_raw/events.parquet"
    events = pd.read_parquet(path)
    events.loc[10, "monthly_charges"] = -50.0
    events.to_parquet(path)
    with pytest.raises(DataValidationError) as info:
        run_pipeline(project_path, "data_engineering")
    message = str(info.value)
    assert "column 'monthly_charges'" in message
    assert f"customer_id={events.at[10, 'customer_id']}" in message
    assert not (project_path / "data/05_model_input/train.parquet").exists(), (
        "nothing written on failure"
    )


def _kedro(project_path: Path, *args: str) -> subprocess.CompletedProcess:
    kedro = Path(sys.executable).with_name("kedro")
    return subprocess.run(
        [
            str(kedro),
            "run",
            *args,
            "--params",
            "simulation.n_events=1500,simulation.n_production=500",
        ],
        cwd=project_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("option", ["--pipeline", "--pipelines"])
def test_kedro_cli_runs_the_simulation_pipeline(project_path: Path, option: str):
    result = _kedro(project_path, option, "simulation")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(pd.read_parquet(project_path / "data/01_raw/events.parquet")) == 1500


def test_kedro_cli_reports_a_malformed_schema_by_key(project_path: Path):
    assert _kedro(project_path, "--pipeline", "simulation").returncode == 0
    local = project_path / "conf/local/parameters.yml"
    schema = yaml.safe_load((project_path / "conf/base/parameters.yml").read_text())["schema"]
    schema["numeric"]["age"]["min"] = "eighteen"
    local.write_text(yaml.safe_dump({"schema": schema}))
    result = _kedro(project_path, "--pipeline", "data_engineering")
    assert result.returncode != 0
    assert "schema.numeric.age.min must be a finite number" in result.stdout + result.stderr
