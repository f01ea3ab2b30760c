"""Close the loop end to end: a real service, replayed traffic, drift, retraining, reload, rollback.

One story in a project copy, told by the commands a user runs (``kedro replay``, ``kedro loop``,
``kedro rollback``) against a real ``bentoml serve`` on a free loopback port:

1. a champion trained on the history serves; a quarter of ``none`` traffic is replayed with its
   ground truth; the loop says no retraining and changes nothing;
2. the next quarter's traffic drifts in concept (labels arriving through ``POST /feedback``); the
   loop detects it from realised performance, retrains on the rolled window, the gate promotes
   the new model, and the service answers with it, better on post-drift data;
3. rollback restores the old champion in the registry and in the service.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from shadowdrift.churn_model import load_churn_model
from shadowdrift.prediction_log import read_prediction_log
from tests.conftest import copy_project
from tests.kedro_runs import kedro_command, params_argument, run_kedro_cli
from tests.pipelines.test_packaging import environment, latest, mlflow_at
from tests.test_serving_service_e2e import TOKEN, running_server

pytestmark = pytest.mark.slow

MODEL = "shadowdrift-churn"
# A quarter of production at a rate that fills weekly drift chunks; small, quick models.
QUARTER = {"n_production": 12000, "production_days": 90, "onset": 0.2}
PARAMS = {
    "training": {
        "models": {"gbm": {"params": {"max_iter": 60}}, "mlp": {"params": {"max_epochs": 4}}}
    },
    # one timed predict on a machine shared with other tests: latency is noise here, so the gate
    # judges the models on quality (tests/test_promotion.py covers the latency check)
    "evaluation": {"latency_repeats": 1, "gate": {"max_latency_ratio": 10.0}},
    "drift": {"chunking": {"min_rows": 300}},
    "retraining": {"window_days": 90},
}
FIRST_QUARTER = {"simulation": {**QUARTER, "n_events": 20000, "scenario": "none"}}
# The next quarter: the history is generated 90 days longer (and larger, so production ids do
# not repeat the first quarter's); only raw_production is used from this run.
SECOND_QUARTER = {
    "simulation": {
        **QUARTER,
        "n_events": 40000,
        "history_days": 455,
        "scenario": "concept_drift",
    }
}


def _client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project}/data/06_models/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(project: Path) -> str:
    return str(_client(project).get_model_version_by_alias(MODEL, "champion").version)


def _aliases(project: Path) -> dict[str, str]:
    return {k: str(v) for k, v in _client(project).get_registered_model(MODEL).aliases.items()}


def _kedro(project: Path, home: Path, *args: str) -> str:
    """A project command (``kedro replay|loop|rollback``) as a user runs it; its stdout."""
    env = {"BENTOML_HOME": str(home), "SHADOWDRIFT_RELOAD_TOKEN": TOKEN, "COLUMNS": "200"}
    return kedro_command(project, *args, env_vars=env, timeout=900).stdout


def _params() -> str:
    return params_argument(PARAMS)


def _replay(project: Path, home: Path, url: str) -> dict[str, Any]:
    report = project / "replay.json"
    _kedro(
        project, home, "replay", "--url", url, "--batch-size", "100", "--rate", "20000",
        "--max-seconds", "300", "--feedback-delay", "0.5", "--report", str(report),
    )  # fmt: skip
    return json.loads(report.read_text())


def _last_record(project: Path, command: str) -> dict[str, Any]:
    records = sorted((project / "data/08_reporting/loop_runs").glob(f"{command}_*.json"))
    assert records, f"kedro {command} left no record"
    return json.loads(records[-1].read_text())


def _wait_for_labels(project: Path, expected: int, timeout: float = 10.0) -> None:
    """The service flushes the ground-truth log every second."""
    from shadowdrift.serving.feedback import read_ground_truth

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_ground_truth(project / "data/07_model_output/ground_truth")) >= expected:
            return
        time.sleep(0.25)
    raise AssertionError(f"fewer than {expected} labels reached the ground-truth log")


def _live_record(project: Path) -> dict[str, Any]:
    production = pd.read_parquet(project / "data/01_raw/production.parquet").head(1)
    record = json.loads(production.drop(columns=["churned"]).to_json(orient="records"))[0]
    record["event_time"] = str(production["event_time"].iloc[0])
    return record


class LiveTraffic:
    """Requests, one after another, while the loop runs: (status, champion version) in order."""

    def __init__(self, url: str, record: dict[str, Any]):
        self.url, self.record = url, record
        self.answers: list[tuple[int, str | None, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                request_id = f"live-{len(self.answers):05d}"
                response = client.post(
                    "/predict",
                    json={"records": [self.record]},
                    headers={"X-Request-ID": request_id},
                )
                version = (
                    response.json()["predictions"][0]["model_version"]
                    if response.status_code == 200
                    else None
                )
                self.answers.append((response.status_code, version, request_id))
                time.sleep(0.02)

    def __enter__(self) -> LiveTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("loop")
    project = copy_project(root / "project")
    home = root / "bentoml"
    facts: dict[str, Any] = {"project": project}
    started = time.perf_counter()
    with environment(BENTOML_HOME=str(home), MLFLOW_TRACKING_URI=None, MLFLOW_REGISTRY_URI=None):
        run_kedro_cli(
            project,
            "--pipelines",
            "simulation,data_engineering",
            params={**PARAMS, **FIRST_QUARTER},
        )
        run_kedro_cli(project, "--pipelines", "training,evaluation", params=PARAMS)
        run_kedro_cli(project, "--pipeline", "packaging")
    facts["setup_seconds"] = time.perf_counter() - started
    facts["first_champion"] = _champion(project)
    with running_server(project, config_path=project, packaged=(project, home)) as server:
        # 1. a quiet quarter: nothing changes
        facts["none_replay"] = _replay(project, home, server.url)
        _wait_for_labels(project, facts["none_replay"]["labels_posted"])
        aliases = _aliases(project)
        _kedro(project, home, "loop", "--url", server.url, "--params", _params())
        facts["none_loop"] = _last_record(project, "loop")
        facts["aliases_before_and_after_none"] = (aliases, _aliases(project))
        facts["serving_after_none"] = server.get("/model_info").json()["champion"]["model_version"]

        # 2. the next quarter drifts in concept
        run_kedro_cli(project, "--pipeline", "simulation", params={**PARAMS, **SECOND_QUARTER})
        facts["drift_replay"] = _replay(project, home, server.url)
        _wait_for_labels(
            project, facts["none_replay"]["labels_posted"] + facts["drift_replay"]["labels_posted"]
        )
        loop_started = time.perf_counter()
        with LiveTraffic(server.url, _live_record(project)) as live:
            _kedro(project, home, "loop", "--url", server.url, "--params", _params())
            time.sleep(0.5)  # a few answers after the reload
        facts["live"] = live.answers
        facts["loop_seconds"] = time.perf_counter() - loop_started
        facts["drift_loop"] = _last_record(project, "loop")
        facts["serving_after_loop"] = server.get("/model_info").json()["champion"]["model_version"]
        # post-drift records nobody trained on: the new reference window, with its labels
        reference = pd.read_parquet(latest(project, "data/05_model_input/reference.parquet"))
        records = reference.drop(columns=["churned"])
        records["event_time"] = records["event_time"].astype(str)
        answer = server.post(
            "/predict",
            {"records": json.loads(records.to_json(orient="records"))},
            headers={"X-Request-ID": "post-drift-check"},
        )
        facts["post_drift_answer"] = answer.json()
        facts["post_drift_reference"] = reference

        # 3. rollback
        _kedro(project, home, "rollback", "--url", server.url)
        facts["rollback"] = _last_record(project, "rollback")
        facts["serving_after_rollback"] = server.get("/model_info").json()["champion"][
            "model_version"
        ]
        probe = server.post(
            "/predict", {"records": json.loads(records.iloc[:1].to_json(orient="records"))}
        )
        facts["rollback_answer_version"] = probe.json()["predictions"][0]["model_version"]
    facts["log"] = read_prediction_log(project / "data/07_model_output/prediction_log")
    facts["total_seconds"] = time.perf_counter() - started
    return facts


def test_quiet_traffic_changes_nothing(story):
    assert story["none_replay"]["records_answered"] == 12000
    assert story["none_replay"]["labels_posted"] == 12000
    outcome = story["none_loop"]
    assert outcome["result"] == "no_retraining", outcome
    assert outcome["decision"]["decision"] == "no_retrain", outcome
    assert [step["name"] for step in outcome["steps"]] == ["drift"]
    before, after = story["aliases_before_and_after_none"]
    assert before == after
    assert story["serving_after_none"] == story["first_champion"]


def test_concept_drift_is_detected_from_realised_performance(story):
    outcome = story["drift_loop"]
    assert outcome["decision"]["decision"] == "retrain", outcome
    assert any("realised roc_auc" in reason for reason in outcome["reasons"]), outcome["reasons"]
    assert [step["name"] for step in outcome["steps"]] == ["drift", "retraining"]


def test_a_new_champion_passed_the_gate_and_the_service_answers_with_it(story):
    outcome = story["drift_loop"]
    assert outcome["gate"]["promote"] is True, outcome["gate"]
    new = str(outcome["champion_after"])
    assert new != story["first_champion"]
    assert outcome["service"]["champion"] == new
    assert story["serving_after_loop"] == new
    versions = {p["model_version"] for p in story["post_drift_answer"]["predictions"]}
    assert versions == {new}
    # the log: the drifted quarter was answered by the old champion, the check by the new one
    log = story["log"]
    assert set(log.loc[log["request_id"] == "post-drift-check", "champion_model_version"]) == {new}
    replayed = log[log["request_id"].str.startswith("replay-")]
    assert set(replayed["champion_model_version"]) == {story["first_champion"]}


def test_the_switch_has_no_downtime_and_the_log_follows_it(story):
    answers = story["live"]
    assert len(answers) > 50
    assert {status for status, _, _ in answers} == {200}
    versions = [version for _, version, _ in answers]
    old, new = story["first_champion"], str(story["drift_loop"]["champion_after"])
    switch = versions.index(new)
    assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}
    logged = story["log"].set_index("request_id")["champion_model_version"]
    assert all(logged[request_id] == version for _, version, request_id in answers)


def test_the_new_champion_is_better_on_post_drift_data(story):
    reference = story["post_drift_reference"]
    y = reference["churned"].to_numpy()
    new_p = np.array([p["probability"] for p in story["post_drift_answer"]["predictions"]])
    with mlflow_at(f"sqlite:///{story['project']}/data/06_models/mlflow.db"):
        old = load_churn_model(f"models:/{MODEL}/{story['first_champion']}")
    old_p = old.predict_probability(reference)
    new_auc, old_auc = roc_auc_score(y, new_p), roc_auc_score(y, old_p)
    print(  # noqa: T201 - the closing note quotes these figures (pytest -s)
        f"post-drift realised ROC AUC on {len(y)} rows: new champion {new_auc:.4f}, "
        f"old champion {old_auc:.4f}; loop {story['loop_seconds']:.1f} s, "
        f"whole story {story['total_seconds']:.1f} s"
    )
    assert new_auc > old_auc + 0.02


def test_rollback_restores_the_previous_champion_everywhere(story):
    rollback = story["rollback"]
    new = str(story["drift_loop"]["champion_after"])
    assert rollback["champion_before"] == new
    assert rollback["champion_after"] == story["first_champion"]
    assert _champion(story["project"]) == story["first_champion"]
    assert story["serving_after_rollback"] == story["first_champion"]
    assert story["rollback_answer_version"] == story["first_champion"]
