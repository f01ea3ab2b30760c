"""Bring your own data: a Kedro environment with its own catalog and schema, no code changes."""

from __future__ import annotations

import pytest

from shadowdrift import simulation as sim
from tests.conftest import copy_project
from tests.kedro_runs import load_dataset, run_kedro_cli

pytestmark = pytest.mark.slow
RENAME = {
    "customer_id": "account_id",
    "event_time": "snapshot_date",
    "contract_type": "plan_type",
    "monthly_charges": "monthly_fee",
    "num_support_tickets": "support_calls",
    "churned": "churn",
}
KEEP = [
    "account_id",
    "snapshot_date",
    "tenure_months",
    "monthly_fee",
    "support_calls",
    "plan_type",
    "region",
]
# No --params here: with an environment that has its own parameters.yml, Kedro 1.7 lets a
# nested --params entry replace the whole top-level block. Defaults are fast on 3,000 rows.


@pytest.fixture
def own_data_project(tmp_path):
    project = copy_project(tmp_path / "project")
    events, _ = sim.simulate_history(3000, 2, "2023-01-01", 300, 30)
    events = events.rename(columns=RENAME)[[*KEEP, "churn"]]
    events.to_csv(project / "data/01_raw/own_events.csv", index=False)
    return project


def test_own_data_runs_through_training_and_evaluation(own_data_project):
    run_kedro_cli(
        own_data_project,
        "--env",
        "example_own_data",
        "--pipelines",
        "data_engineering,training,evaluation",
    )
    train = load_dataset(own_data_project, "model_input_train", env="example_own_data")
    assert list(train.columns) == [*KEEP, "churn"]
    report = load_dataset(own_data_project, "reporting_evaluation", env="example_own_data")
    assert report["oracle_roc_auc"] is None, "real data has no oracle"
    assert report["models"]["gbm"]["metrics"]["roc_auc"] > 0.6


def test_the_simulator_refuses_to_overwrite_real_data(own_data_project):
    before = (own_data_project / "data/01_raw/own_events.csv").read_bytes()
    with pytest.raises(AssertionError, match=r"simulation\.enabled: false"):
        run_kedro_cli(own_data_project, "--env", "example_own_data")
    assert (own_data_project / "data/01_raw/own_events.csv").read_bytes() == before
