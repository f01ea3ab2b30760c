"""MLflow tracking and registry on PostgreSQL by configuration alone (MLFLOW_TRACKING_URI)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from mlflow import MlflowClient

from tests.conftest import copy_project
from tests.kedro_runs import run_kedro_cli
from tests.pipelines.test_training_and_evaluation import MODEL_NAME, SMALL
from tests.postgres_server import postgres_bin_dir, throwaway_postgres

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        postgres_bin_dir() is None and not os.environ.get("CI"),
        reason="PostgreSQL server not installed (make test installs it: apt-get install -y postgresql)",
    ),
]


def test_training_and_evaluation_against_postgres(tmp_path):
    project = copy_project(tmp_path / "project")
    with throwaway_postgres() as uri:
        env = {"MLFLOW_TRACKING_URI": uri}
        run_kedro_cli(
            project, "--pipelines", "simulation,data_engineering", params=SMALL, env_vars=env
        )
        run_kedro_cli(project, "--pipelines", "training,evaluation", params=SMALL, env_vars=env)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        aliases = client.get_registered_model(MODEL_NAME).aliases
        assert {"champion", "challenger"} <= set(aliases)
        assert not (project / "data/06_models/mlflow.db").exists(), (
            "nothing went to the SQLite default"
        )
        script = textwrap.dedent(
            f"""
            import mlflow, pandas as pd
            mlflow.set_tracking_uri({uri!r})
            model = mlflow.pyfunc.load_model("models:/{MODEL_NAME}@champion")
            records = pd.read_parquet({str(project / "data/01_raw/production.parquet")!r}).head(50)
            out = model.predict(records)
            assert out["probability"].between(0, 1).all() and len(out) == 50
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=300, cwd=tmp_path)
