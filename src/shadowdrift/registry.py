"""The MLflow model registry: register candidates, read and move the ``champion``/``challenger`` aliases.

Each alias move also records the version it replaced in the ``previous_<alias>`` alias and in a
version tag, so a rollback can put the previous champion back from the registry alone.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from shadowdrift.churn_model import load_churn_model

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            description="shadowdrift model: the champion answers, the challenger runs in shadow.",
        )


def register_version(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, Any]
) -> ModelVersion:
    """Register ``model_uri`` as a new version of ``name`` with descriptive tags."""
    ensure_registered_model(client, name)
    version = client.create_model_version(
        name=name,
        source=model_uri,
        run_id=run_id,
        tags={k: str(v) for k, v in tags.items()},
    )
    logger.info("Registered %s version %s from %s", name, version.version, model_uri)
    return version


def version_for_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``name@alias``, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def move_alias(client: MlflowClient, name: str, alias: str, version: str) -> str | None:
    """Point ``alias`` at ``version``; remember the version it pointed at before. Returns that."""
    found = version_for_alias(client, name, alias)
    # the SQL store gives versions as int, the REST store as str: compare as text
    previous = str(found.version) if found is not None else None
    if previous == str(version):
        return previous
    if previous is not None:
        client.set_registered_model_alias(name, f"previous_{alias}", previous)
    client.set_registered_model_alias(name, alias, str(version))
    client.set_model_version_tag(
        name, str(version), f"{alias}_since_previous", previous if previous else "none"
    )
    logger.info("%s@%s: version %s -> %s", name, alias, previous or "none", version)
    return previous


def describe_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version for the registered model (empty if it does not exist)."""
    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException:
        return {}


def load_alias(client: MlflowClient, name: str, alias: str) -> tuple[Any, str | None]:
    """(ChurnModel, version) behind ``name@alias``, or (None, None) if the alias is not set."""
    version = version_for_alias(client, name, alias)
    if version is None:
        return None, None
    return load_churn_model(f"models:/{name}@{alias}"), str(version.version)
