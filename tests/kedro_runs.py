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
