"""`kedro run` (the `__default__` pipeline behind `make demo`) end to end, on small data."""

from __future__ import annotations

import pytest

from tests.conftest import copy_project
from tests.kedro_runs import load_dataset, run_kedro_cli
from tests.pipelines.test_drift_pipeline import PARAMS

pytestmark = pytest.mark.slow


def test_the_default_pipeline_runs_every_stage(tmp_path):
    project = copy_project(tmp_path / "project")
    run_kedro_cli(project, params=PARAMS)
    assert load_dataset(project, "reporting_promotion_decision")["promote"] is True
    assert load_dataset(project, "reporting_retraining_decision")["decision"] in {
        "no_retrain",
        "retrain",
        "insufficient_data",
    }
    packaged = load_dataset(project, "reporting_packaged_models")
    assert set(packaged["models"]) >= {"champion", "challenger"}
    assert (project / "data/07_model_output/prediction_log").is_dir()
