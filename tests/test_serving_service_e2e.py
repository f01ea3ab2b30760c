"""End to end: a real ``bentoml serve`` on a free loopback port, a packaged project, HTTP requests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shadowdrift.prediction_log import read_prediction_log
from shadowdrift.serving.feedback import read_ground_truth
from tests.conftest import PROJECT_ROOT
from tests.pipelines.test_packaging import first_test_rows, model_store, packaged_project, registry
from tests.test_serving_validation import GOOD, record

pytestmark = pytest.mark.slow

TOKEN = "e2e-reload-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    data_root: Path
    log_file: Path
    project: Path
    home: Path
    scored: dict[str, int] = field(default_factory=dict)  # request id -> records

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=30, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


@contextlib.contextmanager
def running_server(
    data_root: Path,
    *,
    config_path: Path | None = None,
    packaged: tuple[Path, Path] | None = None,
    timeout: float = 120.0,
    host: str | None = "127.0.0.1",
    extra_env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``bentoml serve`` of the packaged project on a free loopback port, until it is ready.

    ``config_path`` (``SHADOWDRIFT_PROJECT_PATH``) is the directory whose ``conf/`` the service
    reads; by default the packaged project's. ``packaged`` is another (project, BENTOML_HOME)
    to serve. ``host=None`` leaves out ``--host`` (the service's own default applies);
    ``extra_env`` adds environment variables.
    Stopped (SIGTERM) on exit if still running.
    """
    project, home = packaged or packaged_project()
    log_file = data_root / "serve.log"
    port = free_port()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
        },
        "BENTOML_HOME": str(home),
        "SHADOWDRIFT_PROJECT_PATH": str(config_path or project),
        "SHADOWDRIFT_DATA_ROOT": str(data_root),
        "SHADOWDRIFT_RELOAD_TOKEN": TOKEN,
        "BENTOML_DO_NOT_TRACK": "True",
        "DO_NOT_TRACK": "1",
        **(extra_env or {}),
    }
    env.pop("BENTOML_HOST", None)
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    host_args = ["--host", host] if host is not None else []
    with open(log_file, "wb") as out:
        process = subprocess.Popen(
            [bentoml, "serve", *host_args, "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(process, f"http://127.0.0.1:{port}", data_root, log_file, project, home)
    try:
        _wait_ready(running, timeout)
        yield running
    finally:
        running.stop()


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_with_serving(target: Path, serving: dict[str, Any]) -> Path:
    """A conf/ directory: the packaged project's base plus a local ``serving`` override.

    Parameters merge destructively per top-level key, so the override repeats the whole
    ``serving`` section with ``serving`` merged into it.
    """
    import shutil

    import yaml

    project, _ = packaged_project()
    shutil.copytree(project / "conf" / "base", target / "conf" / "base")
    base = yaml.safe_load((project / "conf/base/parameters_serving.yml").read_text())
    local = target / "conf" / "local"
    local.mkdir(parents=True)
    merged = {"serving": deep_merge(base["serving"], serving)}
    (local / "parameters_serving.yml").write_text(yaml.safe_dump(merged))
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serving-data")) as running:
        yield running


def _wait_ready(server: Server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"bentoml serve exited:\n{server.log_file.read_text()[-4000:]}")
        try:
            if server.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready in {timeout} s:\n{server.log_file.read_text()[-4000:]}")


def _test_records(server: Server, n: int) -> list[dict[str, Any]]:
    frame = first_test_rows(server.project, n)
    features = list(GOOD)
    records = []
    for row in frame[["customer_id", *features]].to_dict(orient="records"):
        records.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return records


def test_ready_with_the_registrys_models(server):
    info = server.get("/model_info").json()
    client = registry(server.project)
    for alias in ("champion", "challenger"):
        version = client.get_model_version_by_alias("shadowdrift-churn", alias)
        assert info[alias]["model_version"] == str(version.version)
        assert info[alias]["run_id"] == version.run_id
        assert info[alias]["alias"] == alias
    assert info["ready"] is True and info["loaded_at"]
    assert server.get("/healthz").status_code == 200


def test_valid_requests_are_answered_by_the_champion(server):
    from shadowdrift.serving.model_store import load_stored

    # 200 records: at least serving.batch_thread_min_records, so an HGB champion scores them on
    # a batch thread (the C kernel) and an MLP champion on the event loop
    records = _test_records(server, 200)
    batch = server.post("/predict", {"records": records}, headers={"X-Request-ID": "e2e-batch-1"})
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["request_id"] == "e2e-batch-1" == batch.headers["x-request-id"]
    server.scored["e2e-batch-1"] = 200
    info = server.get("/model_info").json()["champion"]
    if info["fast_path"] == "compiled-hgb":
        assert info["forest_kernel"] == "c", info["forest_kernel_missing"]
    assert info["releases_gil"] == (info["forest_kernel"] == "c")
    champion, _ = load_stored(model_store(server.home).get(info["bento_tag"]))
    frame = first_test_rows(server.project, 200)
    expected = champion.predict_probability(frame)
    got = np.array([p["probability"] for p in body["predictions"]])
    assert np.array_equal(got, expected)
    assert [p["label"] for p in body["predictions"]] == (expected >= champion.threshold).astype(
        int
    ).tolist()
    assert {p["model_version"] for p in body["predictions"]} == {info["model_version"]}
    for one in records[:5]:
        single = server.post("/predict", {"records": one})
        assert single.status_code == 200
        server.scored[single.json()["request_id"]] = 1


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"records": [record(age=200)]}, 422, "age"),
        ({"records": [record(region=None, contract_type=5)]}, 422, "contract_type"),
        ({"records": [record(churned=1)]}, 422, "churned"),
        ({"records": []}, 422, "must not be empty"),
        ({"rows": [record()]}, 400, "records"),
        ({"records": 7}, 422, "records"),
    ],
)
def test_invalid_requests_are_4xx_naming_the_field(server, body, status, needle):
    response = server.post("/predict", body)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_malformed_json_and_oversized_batches_are_4xx(server):
    bad_json = httpx.post(
        f"{server.url}/predict",
        content=b'{"records": [',
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 400
    too_many = server.post("/predict", {"records": [GOOD] * 5001})
    assert too_many.status_code == 413 and "max_records" in too_many.text


def test_feedback_is_accepted_and_checked(server):
    ok = server.post("/feedback", {"request_id": "e2e-batch-1", "record_index": 3, "label": 1})
    assert ok.status_code == 200 and ok.json() == {"accepted": 1}
    bad = server.post("/feedback", {"request_id": "e2e-batch-1", "label": "yes"})
    assert bad.status_code == 422 and "label" in bad.text


def test_reload_needs_the_token_and_keeps_serving(server):
    assert server.post("/reload", {}).status_code == 401
    assert server.post("/reload", {}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    before = server.get("/model_info").json()
    reloaded = server.post("/reload", {}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert reloaded.status_code == 200, reloaded.text
    after = reloaded.json()
    assert after["champion"]["bento_tag"] == before["champion"]["bento_tag"]
    assert after["loaded_at"] > before["loaded_at"]
    response = server.post("/predict", {"records": GOOD}, headers={"X-Request-ID": "after-reload"})
    assert response.status_code == 200
    server.scored["after-reload"] = 1


def test_metrics_are_exported(server):
    time.sleep(1.5)  # writer statistics are published every second
    text = server.get("/metrics").text
    for needle in (
        "shadowdrift_model_requests_total{model_version=",
        'shadowdrift_prediction_probability_bucket{le="0.5",role="champion"}',
        'shadowdrift_shadow_records_total{status="ok"}',
        "shadowdrift_agreement_total",
        'shadowdrift_rejected_requests_total{reason="validation"}',
        "shadowdrift_model_info{bento_tag=",
        "bentoml_service_request_total",
    ):
        assert needle in text, needle


def test_every_scored_request_is_in_the_log_after_shutdown(server):
    assert server.stop() == 0
    log = read_prediction_log(server.data_root / "data/07_model_output/prediction_log")
    counts = log.groupby("request_id").size().to_dict()
    assert counts == server.scored
    assert (log["challenger_status"] == "ok").all()
    assert log["challenger_probability"].notna().all()
    without_id = log["request_id"] == "after-reload"
    assert log.loc[~without_id, "customer_id"].notna().all()
    assert log.loc[without_id, "customer_id"].isna().all()
    labels = read_ground_truth(server.data_root / "data/07_model_output/ground_truth")
    assert labels[["request_id", "record_index", "label"]].astype(object).values.tolist() == [
        ["e2e-batch-1", 3, 1]
    ]
    errors = [line for line in server.log_file.read_text().splitlines() if "[ERROR]" in line]
    # BentoML logs the malformed-JSON 400s it answers itself; nothing else may be an error
    assert all("Exception on /predict" in line for line in errors), errors
