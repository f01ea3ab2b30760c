"""Every worker picks up newly packaged models by itself (``serving.reload.watch_interval_s``).

``POST /reload`` reaches one worker; with two workers, a new champion must still reach both,
without a restart and without a failed request. A copy of the packaged project (its own
registry and BentoML store) is served by two workers watching the store every second; the
champion alias moves to another version, `kedro run --pipelines packaging` imports it, and both
workers must answer with it shortly after while traffic keeps flowing.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mlflow import MlflowClient

from tests.kedro_runs import run_kedro_cli
from tests.pipelines.test_packaging import packaged_project
from tests.test_serving_service_e2e import AUTH, _test_records, running_server

pytestmark = pytest.mark.slow

MODEL = "shadowdrift-churn"


def _watching_copy(root: Path) -> tuple[Path, Path]:
    project, home = packaged_project()
    copy = root / "project"
    shutil.copytree(project, copy)
    shutil.copytree(home, root / "bentoml")
    serving = yaml.safe_load((copy / "conf/base/parameters_serving.yml").read_text())
    serving["serving"]["workers"] = 2
    serving["serving"]["reload"]["watch_interval_s"] = 1
    (copy / "conf/local").mkdir(exist_ok=True)
    (copy / "conf/local/parameters_serving.yml").write_text(yaml.safe_dump(serving))
    return copy, root / "bentoml"


def _versions_by_worker(url: str, rounds: int = 40) -> dict[int, str]:
    """worker pid -> champion version, asking on new connections (spread over the workers)."""
    seen: dict[int, str] = {}
    for _ in range(rounds):
        info = httpx.get(f"{url}/model_info", headers=AUTH, timeout=30).json()
        if info.get("ready"):
            seen[int(info["worker_pid"])] = str(info["champion"]["model_version"])
    return seen


def test_both_workers_switch_to_the_new_champion_without_a_failed_request(tmp_path):
    project, home = _watching_copy(tmp_path)
    client = MlflowClient(
        tracking_uri=f"sqlite:///{project}/data/06_models/mlflow.db",
        registry_uri=f"sqlite:///{project}/data/06_models/mlflow.db",
    )
    aliases = {k: str(v) for k, v in client.get_registered_model(MODEL).aliases.items()}
    old, new = aliases["champion"], aliases["challenger"]
    (tmp_path / "data").mkdir()
    with running_server(tmp_path / "data", config_path=project, packaged=(project, home)) as server:
        deadline = time.monotonic() + 60
        while len(before := _versions_by_worker(server.url)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(before.values()) == {old} and len(before) == 2, before

        record = _test_records(server, 1)[0]
        answers: list[tuple[int, Any]] = []
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                response = httpx.post(
                    f"{server.url}/predict", json={"records": [record]}, timeout=30
                )
                answers.append((response.status_code, response.json().get("model_version")))
                time.sleep(0.01)

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            client.set_registered_model_alias(MODEL, "champion", new)
            client.set_registered_model_alias(MODEL, "challenger", old)
            run_kedro_cli(project, "--pipeline", "packaging", env_vars={"BENTOML_HOME": str(home)})
            # each worker loads the models and starts the new challenger's process before it
            # switches (a torch challenger: several seconds of CPU per worker)
            deadline = time.monotonic() + 90
            after = _versions_by_worker(server.url)
            while set(after.values()) != {new} and time.monotonic() < deadline:
                time.sleep(0.5)
                after = _versions_by_worker(server.url)
        finally:
            stop.set()
            sender.join(timeout=30)
    assert set(after.values()) == {new} and len(after) == 2, after
    assert answers and {status for status, _ in answers} == {200}
    assert {version for _, version in answers} <= {old, new}
