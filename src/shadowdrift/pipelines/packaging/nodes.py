"""Nodes of the packaging pipeline: registry aliases -> BentoML model store."""

from __future__ import annotations

import logging
import os
from typing import Any

from mlflow import MlflowClient

logger = logging.getLogger(__name__)


class PackagingError(RuntimeError):
    """A required registry alias is missing; the message says how to create it."""


def _bentoml_home() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer  # noqa: PLC0415

    return str(BentoMLContainer.bentoml_home.get())


def _differences(
    registry_aliases: dict[str, Any], entries: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Aliases whose registry version is not the one the last gate decision left them at."""
    decided = {k: str(v) for k, v in (registry_aliases.get("aliases") or {}).items()}
    differences = {}
    for alias, entry in entries.items():
        now = entry.get("registry_version")
        if alias in decided and now is not None and now != decided[alias]:
            differences[alias] = {"gate_decision": decided[alias], "registry": now}
            logger.warning(
                "%s is version %s in the registry, the last gate decision left it at %s",
                alias,
                now,
                decided[alias],
            )
    return differences


def import_registered_models(
    models_registry_aliases: dict[str, Any],
    packaging: dict[str, Any],
    model_registry: dict[str, Any],
) -> dict[str, Any]:
    """Import each alias of ``packaging.aliases`` into the BentoML store; report what was done.

    kedro-mlflow points MLflow at the project's tracking and registry URIs (conf/base/mlflow.yml)
    before nodes run, so ``MlflowClient()`` reads the project's registry. The aliases are read
    from the registry itself (a rollback done there is honoured); a difference from the last
    gate decision is reported and logged.
    """
    # BentoML is imported here, not at module level: Kedro imports every pipeline's nodes for
    # every `kedro run`, and the other pipelines should not pay a second for BentoML.
    from shadowdrift.serving.config import bento_model_name  # noqa: PLC0415
    from shadowdrift.serving.model_store import (  # noqa: PLC0415
        STATUS_MISSING,
        import_alias,
        summarise,
    )

    name = model_registry["name"]
    aliases = list(packaging.get("aliases", ["champion", "challenger"]))
    required = set(packaging.get("required_aliases", ["champion"]))
    unknown = sorted(required - set(aliases))
    if unknown:
        raise PackagingError(f"packaging.required_aliases {unknown} are not in packaging.aliases")
    client = MlflowClient()
    entries = {
        alias: import_alias(
            client,
            name,
            alias,
            bento_model_name(name),
            skip_unchanged=bool(packaging.get("skip_unchanged", True)),
        )
        for alias in aliases
    }
    missing = sorted(a for a in required if entries[a]["status"] == STATUS_MISSING)
    if missing:
        raise PackagingError(
            f"the registry has no {name}@{'/'.join(missing)}: run "
            "`kedro run --pipelines training,evaluation` first"
        )
    report = summarise(entries, name)
    report["bentoml_home"] = os.environ.get("BENTOML_HOME") or _bentoml_home()
    report["differs_from_gate_decision"] = _differences(models_registry_aliases, entries)
    for alias, entry in entries.items():
        logger.info("%s: %s %s", alias, entry["status"], entry.get("bento_tag", ""))
    return report
