"""The monitoring-and-retraining loop, and rollback (``kedro loop``, ``kedro rollback``).

The loop runs Kedro pipelines as a scheduler would, each in its own ``kedro run`` process (so
each is one MLflow run): ``drift``; then, only if the decision is ``retrain``, ``retraining``
(rolled training set -> training -> evaluation with the promotion gate and the registry aliases
-> packaging); then, given a service URL, ``POST /reload`` so that the running service answers
with the new champion. Rollback points ``champion`` back at ``previous_champion`` (the registry
keeps the history), packages, and reloads the same way. Every loop run leaves a JSON record in
``data/08_reporting/loop_runs/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow import MlflowClient

from shadowdrift import registry
from shadowdrift.replay import check_loopback

logger = logging.getLogger(__name__)

TOKEN_ENV = "SHADOWDRIFT_RELOAD_TOKEN"
# under the workspace's data root (shadowdrift.workspace): data/08_reporting/loop_runs for the demo
LOOP_RUNS = Path("08_reporting/loop_runs")
PREVIOUS_CHAMPION = f"previous_{registry.CHAMPION}"


class LoopError(RuntimeError):
    """A step of the loop (or a rollback) failed; the message names the step."""


@dataclass(frozen=True)
class LoopOptions:
    """Where the project is, which Kedro environment, and which service to reload (if any)."""

    project_path: Path = field(default_factory=Path.cwd)
    env: str | None = None
    params: Sequence[str] = ()  # extra `--params` for every kedro run, "key=value"
    service_url: str | None = None
    reload_token: str | None = None  # default: $SHADOWDRIFT_RELOAD_TOKEN
    allow_remote: bool = False
    with_inference: bool = False  # batch-score raw_production first (no service writes the log)
    reload_timeout_s: float = 120.0

    def token(self) -> str | None:
        return self.reload_token or os.environ.get(TOKEN_ENV) or None


@dataclass
class StepRecord:
    name: str
    command: list[str]
    seconds: float


def kedro_run(options: LoopOptions, pipelines: str, *, name: str | None = None) -> StepRecord:
    """``kedro run --pipelines PIPELINES`` in its own process; output goes to this terminal."""
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", pipelines]
    if options.env:
        command += ["--env", options.env]
    if options.params:
        command += ["--params", ",".join(options.params)]
    logger.info("Step %s: %s", name or pipelines, " ".join(command[1:]))
    start = time.perf_counter()
    result = subprocess.run(command, cwd=options.project_path, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise LoopError(
            f"step {name or pipelines!r} failed (`kedro run --pipelines {pipelines}` exited with "
            f"{result.returncode} after {seconds:.0f} s; its log is above). Nothing after it ran."
        )
    return StepRecord(name or pipelines, command[1:], seconds)


@contextlib.contextmanager
def project_context(options: LoopOptions) -> Iterator[Any]:
    """A loaded KedroContext (catalog, parameters, MLflow set up by kedro-mlflow); no run."""

    bootstrap_project(options.project_path)
    with KedroSession.create(project_path=options.project_path, env=options.env) as session:
        yield session.load_context()


def load_latest(options: LoopOptions, dataset: str) -> Any:
    """The newest version of a catalog dataset (a decision, a report)."""
    with project_context(options) as context:
        return context.catalog.load(dataset)


def latest_decision(project_path: Path, env: str | None = None) -> dict[str, Any]:
    """The newest retraining decision of the drift pipeline (for schedulers that branch on it)."""
    return load_latest(
        LoopOptions(project_path=project_path, env=env), "reporting_retraining_decision"
    )


def reload_service(options: LoopOptions, expected_champion: str | None) -> dict[str, Any]:
    """``POST /reload`` with the token, and check the champion the service now answers with."""
    assert options.service_url is not None
    check_loopback(options.service_url, options.allow_remote)
    token = options.token()
    if not token:
        raise LoopError(
            f"reloading {options.service_url} needs its token: set {TOKEN_ENV} (the service's "
            "serving.reload.token_env) or pass --reload-token"
        )
    try:
        response = httpx.post(
            f"{options.service_url}/reload",
            json={"source": "store"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=options.reload_timeout_s,
        )
    except httpx.HTTPError as exc:
        raise LoopError(f"could not reach {options.service_url}/reload: {exc}") from exc
    if response.status_code != 200:
        raise LoopError(
            f"{options.service_url}/reload answered {response.status_code}: {response.text[:500]}"
        )
    info = response.json()
    serving = str((info.get("champion") or {}).get("model_version"))
    if expected_champion is not None and serving != str(expected_champion):
        raise LoopError(
            f"after /reload the service answers with champion version {serving}, expected "
            f"{expected_champion}: was packaging skipped, or does the service read another "
            "BentoML store (BENTOML_HOME)?"
        )
    logger.info(
        "The service at %s now answers with champion version %s", options.service_url, serving
    )
    return {"champion": serving, "challenger": (info.get("challenger") or {}).get("model_version")}


def _champion_version(options: LoopOptions) -> str | None:
    with project_context(options) as context:
        name = context.params["model_registry"]["name"]
        version = registry.version_for_alias(MlflowClient(), name, registry.CHAMPION)
        return str(version.version) if version is not None else None


def _record(options: LoopOptions, outcome: dict[str, Any]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    with project_context(options) as context:
        root = Path(context.config_loader.workspace["data_root"])
    path = options.project_path / root / LOOP_RUNS / f"{outcome['command']}_{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome, indent=2, default=str))
    return path


def run_loop(options: LoopOptions) -> dict[str, Any]:
    """drift -> decision -> (retraining -> gate -> aliases -> packaging -> reload) or stop."""
    started = time.perf_counter()
    outcome: dict[str, Any] = {
        "command": "loop",
        "started_at": datetime.now(UTC).isoformat(),
        "env": options.env,
        "steps": [],
        "champion_before": _champion_version(options),
    }

    def step(pipelines: str, name: str) -> None:
        outcome["steps"].append(vars(kedro_run(options, pipelines, name=name)))

    try:
        if options.with_inference:
            step("inference", "inference")
        step("drift", "drift")
        decision = latest_decision(options.project_path, options.env)
        outcome["decision"] = {k: decision.get(k) for k in ("decision", "summary")}
        outcome["reasons"] = [r.get("message", r) for r in decision.get("reasons", [])]
        if decision.get("decision") != "retrain":
            logger.info(
                "No retraining: the drift decision is %s. %s",
                str(decision.get("decision")).upper(),
                decision.get("summary", ""),
            )
            outcome["result"] = "no_retraining"
            return outcome
        logger.info("Retraining: %s", " | ".join(map(str, outcome["reasons"])))
        step("retraining", "retraining")
        gate = load_latest(options, "reporting_promotion_decision")
        outcome["gate"] = {
            "promote": gate["promote"],
            "candidate": gate["candidate"]["name"],
            "candidate_version": gate["candidate"]["version"],
            "reasons": gate["reasons"],
        }
        outcome["champion_after"] = _champion_version(options)
        outcome["result"] = "promoted" if gate["promote"] else "gate_kept_champion"
        logger.info(
            "Promotion gate: %s. Champion version %s -> %s",
            "promoted" if gate["promote"] else "kept the champion",
            outcome["champion_before"],
            outcome["champion_after"],
        )
        if options.service_url:
            outcome["service"] = reload_service(options, outcome["champion_after"])
        return outcome
    finally:
        outcome["seconds"] = round(time.perf_counter() - started, 1)
        outcome["record"] = str(_record(options, outcome))


def rollback(options: LoopOptions, to_version: str | None = None) -> dict[str, Any]:
    """Point ``champion`` back at ``previous_champion`` (or ``to_version``), package, reload."""
    started = time.perf_counter()
    with project_context(options) as context:
        name = context.params["model_registry"]["name"]
        client = MlflowClient()
        current = registry.version_for_alias(client, name, registry.CHAMPION)
        if to_version is None:
            previous = registry.version_for_alias(client, name, PREVIOUS_CHAMPION)
            if previous is None:
                raise LoopError(
                    f"{name} has no {PREVIOUS_CHAMPION} alias: no champion was ever replaced, "
                    "so there is nothing to roll back to (or pass --to-version)"
                )
            to_version = str(previous.version)
        else:
            try:
                client.get_model_version(name, str(to_version))
            except Exception as exc:
                raise LoopError(f"{name} has no version {to_version}: {exc}") from exc
        before = str(current.version) if current is not None else None
        if before == str(to_version):
            raise LoopError(f"version {to_version} is already the champion of {name}")
        registry.move_alias(client, name, registry.CHAMPION, str(to_version))
        client.set_model_version_tag(name, str(to_version), "rolled_back_from", before or "none")
    outcome: dict[str, Any] = {
        "command": "rollback",
        "started_at": datetime.now(UTC).isoformat(),
        "registered_model_name": name,
        "champion_before": before,
        "champion_after": str(to_version),
        "steps": [vars(kedro_run(options, "packaging", name="packaging"))],
    }
    logger.info("Rollback: %s@champion %s -> %s", name, outcome["champion_before"], to_version)
    if options.service_url:
        outcome["service"] = reload_service(options, str(to_version))
    outcome["seconds"] = round(time.perf_counter() - started, 1)
    outcome["record"] = str(_record(options, outcome))
    return outcome
