"""drift through Kedro: no alarm on the `none` scenario, retraining named on a covariate shift."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import copy_project
from tests.kedro_runs import load_dataset, run_kedro_cli

pytestmark = pytest.mark.slow

PARAMS = {
    "simulation": {"n_events": 12000, "n_production": 4000},
    "training": {
        "models": {"gbm": {"params": {"max_iter": 80}}, "mlp": {"params": {"max_epochs": 6}}}
    },
    "evaluation": {"latency_repeats": 1, "segment_min_rows": 50},
    "drift": {"chunking": {"by": "size", "size": 600, "min_rows": 400}},
}


@pytest.fixture(scope="module")
def monitored_project(tmp_path_factory):
    path = copy_project(tmp_path_factory.mktemp("drift") / "project")
    run_kedro_cli(
        path, "--pipelines", "simulation,data_engineering,training,evaluation", params=PARAMS
    )
    return path


def _drift_on(project, scenario: str) -> dict:
    params = {**PARAMS, "simulation": {**PARAMS["simulation"], "scenario": scenario}}
    shutil.rmtree(project / "data/07_model_output/prediction_log", ignore_errors=True)
    run_kedro_cli(project, "--pipeline", "simulation", params=params)
    run_kedro_cli(project, "--pipelines", "inference,drift", params=params)
    return load_dataset(project, "reporting_retraining_decision")


def test_no_drift_no_retraining(monitored_project):
    decision = _drift_on(monitored_project, "none")
    assert decision["decision"] == "no_retrain", decision["reasons"]
    report = monitored_project / "data/08_reporting/drift_report.html"
    html = next(report.iterdir()).joinpath("drift_report.html").read_text()
    assert "no_retrain" in html.lower() or "no retrain" in html.lower()
    assert '<script src="http' not in html, "the report must open offline"


def test_covariate_shift_calls_for_retraining_naming_the_feature(monitored_project):
    decision = _drift_on(monitored_project, "covariate_shift")
    assert decision["decision"] == "retrain"
    assert any("monthly_charges" in str(reason) for reason in decision["reasons"]), decision[
        "reasons"
    ]
    summary = load_dataset(monitored_project, "reporting_drift_summary")
    assert "monthly_charges" in str(summary)
    # the default baseline: features on all labelled history, performance out of sample
    baseline = summary["baseline"]
    assert baseline["features"]["source"] == "all_history"
    assert baseline["features"]["windows"] == ["train", "test", "reference"]
    assert baseline["performance"]["source"] == "out_of_sample"
    assert baseline["performance"]["windows"] == ["test", "reference"]
    assert baseline["features"]["n_rows"] == PARAMS["simulation"]["n_events"]
    assert summary["warnings"] == []


def test_a_raw_reference_file_becomes_the_baseline(monitored_project):
    # A labelled file the models never trained on, dropped where the catalog's raw_reference
    # points: here the reference window itself.
    reference = load_dataset(monitored_project, "model_input_reference")
    reference.to_parquet(monitored_project / "data/01_raw/reference.parquet")
    baseline = {"baseline": {"features": "raw_reference", "performance": "raw_reference"}}
    run_kedro_cli(
        monitored_project,
        "--pipeline",
        "drift",
        params={**PARAMS, "drift": {**PARAMS["drift"], **baseline}},
    )
    summary = load_dataset(monitored_project, "reporting_drift_summary")
    for role in ("features", "performance"):
        assert summary["baseline"][role]["source"] == "raw_reference"
        assert summary["baseline"][role]["windows"] == ["raw_reference"]
        assert summary["baseline"][role]["n_rows"] == len(reference)
