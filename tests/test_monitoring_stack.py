"""The monitoring stack end to end: every dashboard panel and recording rule returns data.

A real Prometheus (Debian package) with ``monitoring/prometheus.yml`` and its rules (rewritten
only for this test's ports and a 1 s scrape and evaluation interval), a real Pushgateway, and a
real ``bentoml serve`` with two workers and a canary, all on free loopback ports:

1. ``kedro replay`` sends a drifted production window (covariate shift) with its labels;
2. ``kedro run --pipelines drift`` judges the log and pushes its verdict to the Pushgateway;
3. every panel query of ``monitoring/grafana/dashboards/*.json`` and every recording rule goes
   through Prometheus' HTTP API and must return a finite value; the ``ShadowdriftDriftRetrain``
   alert fires from the run's output.

Every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.kedro_runs import kedro_command, run_kedro_cli
from tests.pipelines.test_packaging import packaged_project
from tests.test_serving_service_e2e import TOKEN, deep_merge, free_port, running_server

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

MONITORING = PROJECT_ROOT / "monitoring"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
SERVING = {"workers": 2, "canary": {"fraction": 0.3}}
# the small project's production window (1,200 records) in chunks the rules can judge
DRIFT = {
    "drift": {"chunking": {"by": "size", "size": 200, "min_rows": 150}},
    "drift_labels": {"delay_days": 0},
}
SCENARIO = {"simulation": {"n_events": 3000, "n_production": 1200, "scenario": "covariate_shift"}}


def _need(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.skip(f"{binary} is not installed (Debian package {package}; make system-deps)")
    return found


@contextlib.contextmanager
def _process(command: list[str], log_file: Path, ready_url: str) -> Iterator[subprocess.Popen]:
    with open(log_file, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{command[0]} exited:\n{log_file.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{command[0]} not ready:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _prometheus_config(target: Path, service: str, pushgateway: str) -> Path:
    """monitoring/prometheus.yml with this test's targets, 1 s intervals, no Alertmanager."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config.pop("alerting")
    config["rule_files"] = [str(MONITORING / path) for path in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"shadowdrift", "pushgateway"}
    jobs["shadowdrift"]["static_configs"] = [{"targets": [service]}]
    jobs["pushgateway"]["static_configs"] = [{"targets": [pushgateway]}]
    path = target / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result

    def finite(self, expr: str) -> list[dict[str, Any]]:
        """The series of ``expr`` with a finite value now (NaN, as from 0/0, is no data)."""
        return [r for r in self.query(expr) if math.isfinite(float(r["value"][1]))]

    def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.finite(expr):
                return found
            time.sleep(0.5)
        raise AssertionError(f"no data for {expr} in {timeout} s")

    def alerts(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/alerts", timeout=30).json()["data"]["alerts"]


def _newest(versioned: Path) -> Path:
    """The newest version of a versioned dataset file."""
    return sorted(versioned.glob(f"*/{versioned.name}"))[-1]


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target of every panel."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((path.name, panel["title"], target["expr"]))
    return found


def recording_rules() -> list[str]:
    return [
        rule["record"]
        for path in (MONITORING / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict[str, Any]]:
    prometheus_bin = _need("prometheus", "prometheus")
    pushgateway_bin = _need("prometheus-pushgateway", "prometheus-pushgateway")
    started = time.perf_counter()
    project, home = packaged_project()
    facts: dict[str, Any] = {"setup_seconds": time.perf_counter() - started}
    root = tmp_path_factory.mktemp("monitoring")
    # a copy of the trained project: its own prediction log, drift outputs and MLflow runs
    workspace = root / "project"
    shutil.copytree(project, workspace)
    serving = yaml.safe_load((workspace / "conf/base/parameters_serving.yml").read_text())
    (workspace / "conf/local/parameters_serving.yml").write_text(
        yaml.safe_dump({"serving": deep_merge(serving["serving"], SERVING)})
    )
    env = {"BENTOML_HOME": str(home), "SHADOWDRIFT_RELOAD_TOKEN": TOKEN}
    # the next production window drifts (the history and the models stay)
    run_kedro_cli(workspace, "--pipeline", "simulation", params=SCENARIO, env_vars=env)

    gateway_port, prometheus_port = free_port(), free_port()
    gateway = f"127.0.0.1:{gateway_port}"
    with (
        _process(
            [pushgateway_bin, f"--web.listen-address={gateway}"],
            root / "pushgateway.log",
            f"http://{gateway}/-/ready",
        ),
        running_server(workspace, config_path=workspace, packaged=(workspace, home)) as server,
    ):
        config = _prometheus_config(root, server.url.removeprefix("http://"), gateway)
        with _process(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ],
            root / "prometheus.log",
            f"http://127.0.0.1:{prometheus_port}/-/ready",
        ):
            prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}")
            prometheus.wait_for('up{job="shadowdrift"} == 1')
            t0 = time.perf_counter()
            report = root / "replay.json"
            kedro_command(
                workspace, "replay", "--url", server.url, "--batch-size", "50", "--rate", "2000",
                "--max-seconds", "60", "--feedback-delay", "0.2", "--report", str(report),
                env_vars=env,
            )  # fmt: skip
            facts["replay"] = json.loads(report.read_text())
            facts["replay_seconds"] = time.perf_counter() - t0
            time.sleep(2)  # the last labels reach the ground-truth log (flushed every second)
            t0 = time.perf_counter()
            run_kedro_cli(
                workspace,
                "--pipelines",
                "drift",
                params={**DRIFT, "drift_metrics": {"pushgateway_url": f"http://{gateway}"}},
                env_vars=env,
            )
            facts["drift_seconds"] = time.perf_counter() - t0
            prometheus.wait_for('shadowdrift_drift_verdict{job="shadowdrift_drift"}')
            time.sleep(3)  # every rule evaluated (1 s) on the scraped verdict
            facts["panels"] = {
                (name, title, expr): prometheus.finite(expr)
                for name, title, expr in panel_queries()
            }
            facts["records"] = {record: prometheus.finite(record) for record in recording_rules()}
            facts["alerts"] = prometheus.alerts()
            reports = workspace / "data/08_reporting"
            facts["verdict_file"] = _newest(reports / "drift_metrics.prom").read_text()
            facts["decision"] = json.loads(
                _newest(reports / "retraining_decision.json").read_text()
            )
    facts["total_seconds"] = time.perf_counter() - started
    logger.info(
        "monitoring stack: packaged project %.0f s, replay %.0f s (%s), drift %.0f s, "
        "total %.0f s",
        facts["setup_seconds"], facts["replay_seconds"], facts["replay"],
        facts["drift_seconds"], facts["total_seconds"],
    )  # fmt: skip
    yield facts


def test_every_dashboard_panel_returns_data(stack):
    assert len(stack["panels"]) >= 30
    empty = [
        f"{name}: {title}: {expr}"
        for (name, title, expr), found in stack["panels"].items()
        if not found
    ]
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_recording_rule_returns_data(stack):
    empty = [record for record, found in stack["records"].items() if not found]
    assert not empty, f"recording rules without data: {empty}"


def test_the_service_is_scraped_as_one_target_with_every_workers_gauges(stack):
    fractions = stack["panels"][
        (
            "shadow_and_canary.json",
            "Canary share answered now, per worker",
            "shadowdrift_canary_fraction",
        )
    ]
    assert len({r["metric"]["pid"] for r in fractions}) == 2, fractions
    mix = {
        r["metric"]["model_variant"]: float(r["value"][1])
        for r in stack["records"]["shadowdrift:answered_records:rate5m"]
    }
    assert mix["champion"] > 0 and mix["challenger"] > 0, mix


def test_the_retrain_alert_fires_from_the_drift_run(stack):
    assert stack["decision"]["decision"] == "retrain", stack["decision"]["summary"]
    assert 'shadowdrift_drift_verdict{verdict="retrain"} 1.0' in stack["verdict_file"]
    firing = [
        a
        for a in stack["alerts"]
        if a["labels"]["alertname"] == "ShadowdriftDriftRetrain" and a["state"] == "firing"
    ]
    assert firing and firing[0]["labels"]["job"] == "shadowdrift_drift", stack["alerts"]
    verdict = stack["records"]["shadowdrift:drift_verdict:code"]
    assert [float(r["value"][1]) for r in verdict] == [1.0]
