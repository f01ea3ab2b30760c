"""Bring your own data: environments with their own catalog and schema, run as the docs say.

One project holds two environments with different schemas, run one after the other:
``example_own_data`` (NannyML's synthetic work-from-home data, CSV, a boolean feature, a
timestamp column called ``timestamp``) and ``titanic`` (real data in parquet: integer-coded and
nullable categories, missing numbers, a "yes"/"no" target, tied event times). Each runs the
documented ``kedro run --env <env> --pipeline(s) lifecycle``; the first is then served by a real
``bentoml serve``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from shadowdrift.example_data import write_example_files
from shadowdrift.prediction_log import read_prediction_log
from tests.conftest import copy_project
from tests.kedro_runs import run_kedro_cli
from tests.own_data import ENV as TITANIC
from tests.own_data import titanic_frames, write_titanic_environment
from tests.pipelines.test_packaging import environment, model_store, registry
from tests.test_serving_service_e2e import running_server

pytestmark = pytest.mark.slow

EXAMPLE = "example_own_data"
# Every 2nd record: 25,000 labelled and 25,000 production records, about 625 a month (the
# environment's monthly chunks need 500).
EVERY = 2


def latest_json(project: Path, env_root: str, relative: str) -> dict:
    versions = sorted((project / env_root / relative).glob(f"*/{Path(relative).name}"))
    assert versions, f"no version of {env_root}/{relative}"
    return json.loads(versions[-1].read_text())


def workspace_files(project: Path, env: str) -> dict[str, int]:
    """Every file the environment wrote, with its modification time (ns)."""
    root = project / "data" / env
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file()
    }


def aliases(project: Path, name: str) -> dict[str, str]:
    client = registry(project)
    return {
        alias: str(client.get_model_version_by_alias(name, alias).version)
        for alias in ("champion", "challenger")
    }


def store_tags(home: Path) -> list[str]:
    return sorted(str(model.tag) for model in model_store(home).list())


@pytest.fixture(scope="module")
def two_environments(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_data")
    project = copy_project(root / "project")
    home = root / "bentoml"
    write_example_files(project / "data" / EXAMPLE / "01_raw", every=EVERY)
    write_titanic_environment(project)
    with environment(BENTOML_HOME=str(home), MLFLOW_TRACKING_URI=None, MLFLOW_REGISTRY_URI=None):
        # the form the guide gives first; Kedro 1.7 still accepts --pipeline
        run_kedro_cli(project, "--env", EXAMPLE, "--pipeline", "lifecycle")
        before = {
            "files": workspace_files(project, EXAMPLE),
            "aliases": aliases(project, f"shadowdrift-{EXAMPLE}"),
            "store": [t for t in store_tags(home) if EXAMPLE in t],
        }
        run_kedro_cli(project, "--env", TITANIC, "--pipelines", "lifecycle")
    return project, home, before


def test_the_example_environment_runs_the_whole_lifecycle(two_environments):
    project, home, _ = two_environments
    root = f"data/{EXAMPLE}"
    split = latest_json(project, root, "08_reporting/split_summary.json")
    assert sum(w["rows"] for w in split["windows"].values()) == 50_000 // EVERY
    decision = latest_json(project, root, "08_reporting/retraining_decision.json")
    assert decision["decision"] in ("retrain", "no_retrain"), decision["summary"]
    packaged = latest_json(project, root, "08_reporting/packaged_models.json")
    assert packaged["registered_model_name"] == f"shadowdrift-{EXAMPLE}"
    assert {f"shadowdrift-{EXAMPLE}-champion", f"shadowdrift-{EXAMPLE}-challenger"} <= {
        tag.split(":")[0] for tag in store_tags(home)
    }
    # nothing of this environment lands in the demo's folders
    assert not any((project / "data" / "07_model_output").iterdir())


def test_event_time_is_the_datas_own_timestamp_column(two_environments):
    project, _, _ = two_environments
    log = read_prediction_log(project / "data" / EXAMPLE / "07_model_output/prediction_log")
    production = pd.read_csv(project / "data" / EXAMPLE / "01_raw/production.csv")
    expected = pd.to_datetime(production.set_index("id")["timestamp"]).dt.tz_localize("UTC")
    logged = log.set_index(log["id"].astype(int))["event_time"]
    pd.testing.assert_series_equal(
        logged.sort_index(), expected.sort_index(), check_names=False, check_freq=False
    )
    summary = latest_json(project, f"data/{EXAMPLE}", "08_reporting/drift_summary.json")
    # monthly chunks from 2017-09 to 2021-01, and labels arrived for all but the last month
    assert summary["analysis"]["chunks"] >= 35
    assert summary["analysis"]["n_labelled"] > 0.9 * len(production)


def test_a_second_environment_changes_nothing_of_the_first(two_environments):
    project, home, before = two_environments
    assert workspace_files(project, EXAMPLE) == before["files"]
    assert aliases(project, f"shadowdrift-{EXAMPLE}") == before["aliases"]
    assert [t for t in store_tags(home) if EXAMPLE in t] == before["store"]
    # and the second got its own of each
    assert aliases(project, f"shadowdrift-{TITANIC}")["champion"] == "1"
    assert any(tag.startswith(f"shadowdrift-{TITANIC}-champion") for tag in store_tags(home))


def test_types_arrive_as_they_are(two_environments):
    """Titanic from parquet: integer codes, nullable categories and numbers, a yes/no target."""
    project, _, _ = two_environments
    root = project / "data" / TITANIC
    train = pd.read_parquet(next((root / "05_model_input/train.parquet").glob("*/train.parquet")))
    assert set(train["Pclass"]) == {"1", "2", "3"}
    assert set(train["survived"]) == {0, 1}
    events, _ = titanic_frames()
    positives = (events.set_index("PassengerId")["survived"] == "yes").astype(int)
    assert (train.set_index("PassengerId")["survived"] == positives.loc[train["PassengerId"]]).all()
    assert train["Age"].isna().any() and train["Embarked"].isna().any()
    log = read_prediction_log(root / "07_model_output/prediction_log")
    assert log["Age"].isna().sum() == 86 and log["Fare"].isna().sum() == 1
    summary = latest_json(project, f"data/{TITANIC}", "08_reporting/drift_summary.json")
    # every analysed record's label has arrived (delay 0); the first boarding day of production
    # is also the reference's last and is not analysed (drift.analysis_start: after_reference)
    assert summary["analysis"]["n_labelled"] == summary["analysis"]["n_rows"] > 400
    evaluation = latest_json(project, f"data/{TITANIC}", "08_reporting/evaluation.json")
    assert evaluation["models"]["gbm"]["metrics"]["roc_auc"] > 0.75


def test_bentoml_serve_answers_with_the_environments_schema(two_environments, tmp_path):
    project, home, _ = two_environments
    record = {
        "id": 1,
        "timestamp": "2019-06-03T09:00:00Z",
        "distance_from_office": 3.2,
        "gas_price_per_litre": 2.1,
        "public_transportation_cost": 7.0,
        "tenure": 4.5,
        "salary_range": "40K - 60K €",
        "wfh_prev_workday": True,
        "workday": "Monday",
    }
    with running_server(
        tmp_path, packaged=(project, home), extra_env={"KEDRO_ENV": EXAMPLE}
    ) as server:
        answer = server.post("/predict", {"records": [record]})
        assert answer.status_code == 200, answer.text
        info = server.get("/model_info").json()
        wrong_type = server.post("/predict", {"records": [{**record, "wfh_prev_workday": "yes"}]})
        demo_record = server.post("/predict", {"records": [{"customer_id": 1, "age": 30}]})
    assert (
        info["champion"]["model_version"] == aliases(project, f"shadowdrift-{EXAMPLE}")["champion"]
    )
    assert wrong_type.status_code == 422
    assert "wfh_prev_workday" in wrong_type.text and "boolean" in wrong_type.text
    assert demo_record.status_code == 422
    log = read_prediction_log(tmp_path / "data" / EXAMPLE / "07_model_output/prediction_log")
    assert log["wfh_prev_workday"].tolist() == ["true"]
    assert log["event_time"].iloc[0] == pd.Timestamp("2019-06-03T09:00:00Z")


def test_nulls_are_served_for_nullable_features(two_environments, tmp_path):
    project, home, _ = two_environments
    passenger = {"Age": None, "SibSp": 0, "Parch": 0, "Fare": 7.25, "Pclass": 3}
    passenger |= {"Sex": "male", "Embarked": None}
    with running_server(
        tmp_path, packaged=(project, home), extra_env={"KEDRO_ENV": TITANIC}
    ) as server:
        answer = server.post("/predict", {"records": [passenger]})
    assert answer.status_code == 200, answer.text
    probability = answer.json()["predictions"][0]
    assert 0.0 <= next(v for k, v in probability.items() if k.endswith("probability")) <= 1.0


def test_shuffled_production_gives_the_same_chunks_and_verdict(two_environments):
    """Size chunks over tied event times: the file's row order must not change them."""
    project, home, _ = two_environments
    root = f"data/{TITANIC}"
    sorted_summary = latest_json(project, root, "08_reporting/drift_summary.json")
    shutil.rmtree(project / root / "07_model_output/prediction_log")
    write_titanic_environment(project, shuffle_production=True)
    with environment(BENTOML_HOME=str(home), MLFLOW_TRACKING_URI=None, MLFLOW_REGISTRY_URI=None):
        run_kedro_cli(project, "--env", TITANIC, "--pipelines", "inference,drift")
    shuffled = latest_json(project, root, "08_reporting/drift_summary.json")
    assert shuffled["chunks"] == sorted_summary["chunks"]
    assert shuffled["feature_drift"] == sorted_summary["feature_drift"]
    assert shuffled["decision"]["decision"] == sorted_summary["decision"]["decision"]
    assert shuffled["decision"]["reasons"] == sorted_summary["decision"]["reasons"]


def test_the_simulator_refuses_to_overwrite_real_data(two_environments):
    project, _, _ = two_environments
    events = project / "data" / EXAMPLE / "01_raw/events.csv"
    before = events.read_bytes()
    with pytest.raises(AssertionError, match=r"simulation\.enabled: false"):
        run_kedro_cli(project, "--env", EXAMPLE)
    assert events.read_bytes() == before


def test_a_mismatched_type_names_the_column_and_both_types(tmp_path):
    project = copy_project(tmp_path / "project")
    raw = project / "data" / EXAMPLE / "01_raw"
    write_example_files(raw, every=50)
    events = pd.read_csv(raw / "events.csv")
    events["wfh_prev_workday"] = events["wfh_prev_workday"].map({True: "yes", False: "no"})
    events.to_csv(raw / "events.csv", index=False)
    with pytest.raises(AssertionError) as caught:
        run_kedro_cli(project, "--env", EXAMPLE, "--pipeline", "data_engineering")
    message = " ".join(str(caught.value).split())
    assert "column 'wfh_prev_workday'" in message
    assert "is boolean like the schema's boolean [true, false]" in message
    assert "'yes'" in message
