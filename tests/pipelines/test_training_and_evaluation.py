"""training + evaluation on small data: MLflow runs, registry aliases, a model that reloads exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import SMALL_SIMULATION
from tests.kedro_runs import load_dataset, run_kedro_cli

SMALL = {
    "simulation": SMALL_SIMULATION,
    "training": {
        "models": {
            "gbm": {"params": {"max_iter": 60}},
            "mlp": {"params": {"max_epochs": 4}},
        }
    },
    "evaluation": {"latency_repeats": 1, "segment_min_rows": 20},
}
MODEL_NAME = "shadowdrift-churn"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory):
    from tests.conftest import copy_project

    path = copy_project(tmp_path_factory.mktemp("trained") / "project")
    run_kedro_cli(path, "--pipelines", "simulation,data_engineering", params=SMALL)
    run_kedro_cli(path, "--pipeline", "training", params=SMALL)
    run_kedro_cli(path, "--pipeline", "evaluation", params=SMALL)
    return path


def _client(path: Path) -> MlflowClient:
    uri = f"sqlite:///{path}/data/06_models/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_registry_has_champion_and_challenger_from_the_run(trained_project, monkeypatch):
    monkeypatch.chdir(trained_project)
    client = _client(trained_project)
    aliases = client.get_registered_model(MODEL_NAME).aliases
    assert set(aliases) >= {"champion", "challenger"}
    assert aliases["champion"] != aliases["challenger"]
    decision = load_dataset(trained_project, "reporting_promotion_decision")
    assert decision["promote"] is True
    assert decision["reasons"] == ["no current champion: the first candidate is promoted"]
    report = load_dataset(trained_project, "reporting_evaluation")
    better = max(report["models"], key=lambda n: report["models"][n]["metrics"]["roc_auc"])
    champion = client.get_model_version(MODEL_NAME, aliases["champion"])
    assert champion.tags["candidate"] == better, (
        "on the first run the better model becomes champion"
    )


def test_runs_hold_parameters_metrics_and_models_with_signature(trained_project):
    client = _client(trained_project)
    experiment = client.get_experiment_by_name("shadowdrift")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {"training", "evaluation"} <= set(runs)
    training_run = runs["training"]
    assert "training.gbm_fit_seconds" in training_run.data.metrics
    assert "training" in training_run.data.params
    evaluation_run = runs["evaluation"]
    assert "test.gbm_roc_auc" in evaluation_run.data.metrics
    assert "test.oracle_roc_auc" in evaluation_run.data.metrics
    summary = load_dataset(trained_project, "models_training_summary")
    mlflow.set_tracking_uri(f"sqlite:///{trained_project}/data/06_models/mlflow.db")
    info = mlflow.models.get_model_info(summary["models"]["gbm"]["model_uri"])
    assert info.signature is not None and "tenure_months" in info.signature.inputs.input_names()
    assert info.saved_input_example_info is not None


def test_the_champion_reloads_in_a_fresh_process_and_predicts_exactly_what_the_run_did(
    trained_project, tmp_path
):
    client = _client(trained_project)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    test = load_dataset(trained_project, "model_input_test")
    expected = load_dataset(trained_project, "model_output_test_predictions")[
        f"{champion.tags['candidate']}_probability"
    ]
    records = tmp_path / "records.parquet"
    test.drop(columns=["churned"]).to_parquet(records)
    out = tmp_path / "predictions.parquet"
    script = textwrap.dedent(
        f"""
        import mlflow, pandas as pd
        mlflow.set_tracking_uri("sqlite:///{trained_project}/data/06_models/mlflow.db")
        mlflow.set_registry_uri("sqlite:///{trained_project}/data/06_models/mlflow.db")
        model = mlflow.pyfunc.load_model("models:/{MODEL_NAME}@champion")
        model.predict(pd.read_parquet("{records}")).to_parquet("{out}")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300)
    predicted = pd.read_parquet(out)
    assert list(predicted.columns) == ["probability", "label"]
    assert np.array_equal(predicted["probability"].to_numpy(), expected.to_numpy())


def test_oracle_is_reported_beside_each_model(trained_project):
    report = load_dataset(trained_project, "reporting_evaluation")
    assert 0.5 < report["oracle_roc_auc"] <= 1
    for model in report["models"].values():
        assert model["gap_to_oracle_roc_auc"] == pytest.approx(
            report["oracle_roc_auc"] - model["metrics"]["roc_auc"]
        )
        assert {
            "roc_auc",
            "pr_auc",
            "brier",
            "log_loss",
            "precision",
            "recall",
            "f1",
            "confusion_matrix",
        } <= set(model["metrics"])
        assert model["segments"], "per-segment metrics"
        assert model["calibration"]["predicted"]
    figure = json.loads((trained_project / "data/08_reporting/roc_curve.json").read_text())
    assert len(figure["data"]) == 4  # gbm, mlp, oracle, chance


def test_aliases_move_only_when_the_gate_says_so(trained_project, monkeypatch):
    monkeypatch.chdir(trained_project)
    client = _client(trained_project)
    before = client.get_registered_model(MODEL_NAME).aliases["champion"]
    # the same candidates again cannot beat the champion by the margin
    run_kedro_cli(trained_project, "--pipeline", "evaluation", params=SMALL)
    decision = load_dataset(trained_project, "reporting_promotion_decision")
    assert decision["promote"] is False
    assert any("fails primary roc_auc" in r for r in decision["reasons"])
    assert client.get_registered_model(MODEL_NAME).aliases["champion"] == before


def test_inference_writes_the_prediction_log_with_champion_and_shadow_challenger(trained_project):
    from shadowdrift.prediction_log import read_prediction_log

    run_kedro_cli(trained_project, "--pipeline", "inference", params=SMALL)
    log = read_prediction_log(trained_project / "data/07_model_output/prediction_log")
    production = pd.read_parquet(trained_project / "data/01_raw/production.parquet")
    assert len(log) == len(production)
    assert set(log["customer_id"].astype(int)) == set(production["customer_id"])
    aliases = _client(trained_project).get_registered_model(MODEL_NAME).aliases
    assert set(log["champion_model_version"]) == {str(aliases["champion"])}
    assert set(log["challenger_model_version"]) == {str(aliases["challenger"])}
    assert (log["challenger_status"] == "ok").all()
    assert (log["source"] == "batch").all()
    assert log["champion_probability"].between(0, 1).all()
