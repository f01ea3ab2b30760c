"""Run pipelines through a real KedroSession in a project copy (see conftest.project_path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project


def run_pipeline(
    project_path: Path,
    pipeline_name: str | None = None,
    *,
    pipeline_names: list[str] | None = None,
    runtime_params: dict[str, Any] | None = None,
    env: str | None = None,
) -> dict[str, Any]:
    bootstrap_project(project_path)
    with KedroSession.create(
        project_path=project_path, runtime_params=runtime_params, env=env
    ) as session:
        return session.run(pipeline_name=pipeline_name, pipeline_names=pipeline_names)


def load_dataset(project_path: Path, name: str, env: str | None = None) -> Any:
    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        return session.load_context().catalog.load(name)


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _subprocess_environment(env_vars: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without MLflow URIs an in-process call may have exported."""
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    }
    return {**env, **(env_vars or {})}


def run_kedro_cli(
    project_path: Path,
    *args: str,
    params: dict[str, Any] | None = None,
    env_vars: dict[str, str] | None = None,
    timeout: int = 600,
):
    """``kedro run ARGS`` in its own process, as a user runs it (MLflow runs are per process)."""
    if params:
        args = (*args, "--params", params_argument(params))
    return kedro_command(project_path, "run", *args, env_vars=env_vars, timeout=timeout)


def params_argument(params: dict[str, Any]) -> str:
    """Nested parameters as the value of ``--params``: ``a.b=1,c=x``."""
    return ",".join(f"{k}={v}" for k, v in _flatten(params).items())


def kedro_command(
    project_path: Path, *args: str, env_vars: dict[str, str] | None = None, timeout: int = 600
):
    """``kedro ARGS`` (run, or a project command) in the project, as a user runs it."""
    import subprocess
    import sys

    command = [str(Path(sys.executable).with_name("kedro")), *args]
    result = subprocess.run(
        command,
        cwd=project_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_subprocess_environment(env_vars),
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command[1:])} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
        )
    return result


def run_kedro_cli_in_process(project_path: Path, *args: str) -> None:
    """``kedro ARGS`` through Kedro's own command line, in this process (no interpreter start).

    The working directory must be ``project_path`` (as for a user); raises AssertionError with
    the exception when the command fails.
    """
    from kedro.framework.cli.cli import KedroCLI

    from tests.conftest import forget_mlflow_state

    try:
        KedroCLI(project_path=project_path).main(args=list(args), standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise AssertionError(f"kedro {' '.join(args)} exited with {exc.code}") from exc
    except Exception as exc:
        raise AssertionError(f"kedro {' '.join(args)} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        forget_mlflow_state()
