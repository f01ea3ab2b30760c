"""Registry models in the BentoML model store: import them (packaging) and load them (serving).

Each registry alias gets its own store name, ``<prefix>-<alias>`` (``shadowdrift-churn-champion``,
``shadowdrift-churn-challenger``), whose versions are ``v<registry version>-<UTC time>``, so
``<name>:latest`` is always the model most recently imported for that alias, including after a
rollback to an older registry version. Labels carry the provenance: ``registered_model``,
``registry_version``, ``alias``, ``run_id``, ``candidate``.

Format: the ``ChurnModel`` (fitted scikit-learn Pipeline + threshold) pickled with cloudpickle in
``churn_model.pkl``, not ``bentoml.mlflow.import_model``: the service then loads it without
importing MLflow (about 1.5 s and 50 MB less per worker) and calls the model directly instead
of through MLflow's pyfunc wrapper and its schema enforcement (measured in docs/serving.md).
The ``shadowdrift`` package must be importable where the model is loaded (the classes live
there), which holds for ``bentoml serve`` here and for a Bento that includes ``src/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import bentoml
import cloudpickle
from bentoml.exceptions import BentoMLException, NotFound

logger = logging.getLogger(__name__)

MODEL_FILE = "churn_model.pkl"
FORMAT = "shadowdrift.churn_model/cloudpickle"
STATUS_IMPORTED = "imported"
STATUS_UNCHANGED = "unchanged"
STATUS_MISSING = "missing"
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class ModelStoreError(RuntimeError):
    """A model is not in the store, or not one this project wrote; the message says which."""


def store_name(prefix: str, alias: str) -> str:
    """The BentoML model name for a registry alias, e.g. ``shadowdrift-churn-champion``."""
    return f"{prefix}-{alias}".lower()


@dataclass(frozen=True)
class StoredModel:
    """What the store knows about an imported model (from its labels and metadata)."""

    bento_tag: str
    registered_model_name: str
    registry_version: str
    alias: str
    run_id: str
    candidate: str
    kind: str
    threshold: float
    source: str
    imported_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_bento_model(cls, bento_model: Any) -> StoredModel:
        labels = dict(bento_model.info.labels)
        metadata = dict(bento_model.info.metadata)
        if metadata.get("format") != FORMAT:
            raise ModelStoreError(
                f"BentoML model {bento_model.tag} was not written by `kedro run --pipelines "
                f"packaging` (format {metadata.get('format')!r})"
            )
        return cls(
            bento_tag=str(bento_model.tag),
            registered_model_name=labels.get("registered_model", ""),
            registry_version=labels.get("registry_version", ""),
            alias=labels.get("alias", ""),
            run_id=labels.get("run_id", ""),
            candidate=labels.get("candidate", ""),
            kind=str(metadata.get("kind", "")),
            threshold=float(metadata.get("threshold", "nan")),
            source=str(metadata.get("source", "")),
            imported_at=str(metadata.get("imported_at", "")),
        )


def _version_tag(registry_version: str, now: datetime) -> str:
    # BentoML versions: lowercase alphanumerics, '-', '_', '.', at most 63 characters.
    return f"v{registry_version}-{now.strftime('%Y%m%dt%H%M%S%f')}"


def latest_stored(name: str, model_store: Any = None) -> Any | None:
    """The newest BentoML model called ``name``, or None."""
    kwargs = {"_model_store": model_store} if model_store is not None else {}
    try:
        return bentoml.models.get(f"{name}:latest", **kwargs)
    except NotFound:
        return None


@contextlib.contextmanager
def mlflow_pointed_at(tracking_uri: str | None, registry_uri: str | None) -> Iterator[None]:
    """Point MLflow's process-wide URIs (which ``models:/`` loading uses) at a registry, then restore.

    Without URIs this changes nothing (under ``kedro run`` kedro-mlflow has set them already).
    """
    if tracking_uri is None:
        yield
        return
    import mlflow  # noqa: PLC0415  (only packaging and registry reloads load from MLflow)

    saved_env = {key: os.environ.get(key) for key in _MLFLOW_ENV}
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        for key, value in saved_env.items():  # set_*_uri export these to subprocesses
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def import_alias(
    client: Any,
    registered_model_name: str,
    alias: str,
    prefix: str,
    *,
    skip_unchanged: bool = True,
    model_store: Any = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> dict[str, Any]:
    """Copy ``registered_model_name@alias`` from the MLflow registry into the BentoML store.

    ``client`` reads the registry; pass the same ``tracking_uri``/``registry_uri`` so the model
    is loaded from it too (else MLflow's process-wide URIs are used, as under ``kedro run``).
    Returns a report entry: ``status`` is ``imported``, ``unchanged`` (the store's latest model
    for this alias already holds that registry version) or ``missing`` (no such alias).
    """
    # both import MLflow, which the serving workers do not need otherwise
    from shadowdrift import registry  # noqa: PLC0415
    from shadowdrift.churn_model import load_churn_model  # noqa: PLC0415

    version = registry.version_for_alias(client, registered_model_name, alias)
    name = store_name(prefix, alias)
    if version is None:
        logger.warning("Registry has no %s@%s: nothing to import", registered_model_name, alias)
        return {"alias": alias, "status": STATUS_MISSING, "bento_model": name}
    previous = latest_stored(name, model_store)
    if (
        skip_unchanged
        and previous is not None
        and previous.info.labels.get("registry_version") == str(version.version)
        and previous.info.labels.get("run_id") == str(version.run_id)
        and previous.info.labels.get("registered_model") == registered_model_name
    ):
        logger.info(
            "%s already holds %s version %s", previous.tag, registered_model_name, version.version
        )
        return {
            "alias": alias,
            "status": STATUS_UNCHANGED,
            **StoredModel.from_bento_model(previous).to_json(),
        }
    uri = f"models:/{registered_model_name}/{version.version}"
    with mlflow_pointed_at(tracking_uri, registry_uri):
        model = load_churn_model(uri)
    now = datetime.now(UTC)
    labels = {
        "registered_model": registered_model_name,
        "registry_version": str(version.version),
        "alias": alias,
        "run_id": str(version.run_id or ""),
        "candidate": str(model.name),
        "project": "shadowdrift",
    }
    metadata = {
        "format": FORMAT,
        "kind": model.kind,
        "threshold": float(model.threshold),
        "numeric_features": list(model.numeric_features),
        "categorical_features": list(model.categorical_features),
        "source": uri,
        "registry_source": str(version.source),
        "imported_at": now.isoformat(),
        "registry_tags": {k: str(v) for k, v in (version.tags or {}).items()},
    }
    kwargs = {"_model_store": model_store} if model_store is not None else {}
    tag = f"{name}:{_version_tag(str(version.version), now)}"
    with bentoml.models.create(tag, labels=labels, metadata=metadata, **kwargs) as bento_model:
        with open(bento_model.path_of(MODEL_FILE), "wb") as handle:
            cloudpickle.dump(model, handle)
    logger.info(
        "Imported %s version %s (alias %s, run %s) as BentoML model %s",
        registered_model_name,
        version.version,
        alias,
        version.run_id,
        bento_model.tag,
    )
    return {
        "alias": alias,
        "status": STATUS_IMPORTED,
        **StoredModel.from_bento_model(bento_model).to_json(),
    }


def resolve(reference: str, model_store: Any = None, *, alias: str | None = None) -> Any:
    """The BentoML model for a bentofile alias (pinned in a built Bento) or else a tag."""
    kwargs = {"_model_store": model_store} if model_store is not None else {}
    if alias is not None:
        # bentofile.yaml `models: [{tag: ..., alias: champion}]`: BentoML maps the alias to the
        # tag pinned at build time; with no such alias this looks up a model named "champion".
        # The pin only fixes the *version* of the configured model: configuration that names
        # another model (conf/local, a benchmark swapping the roles) wins.
        try:
            model = bentoml.models.get(alias, **kwargs)
            wanted = bentoml.Tag.from_taglike(reference).name
            if model.info.metadata.get("format") == FORMAT and model.tag.name == wanted:
                return model
        except (NotFound, BentoMLException, ValueError):
            pass
    try:
        return bentoml.models.get(reference, **kwargs)
    except NotFound as exc:
        raise ModelStoreError(
            f"BentoML model {reference!r} is not in the model store: run "
            "`kedro run --pipelines packaging` (with the same BENTOML_HOME) first"
        ) from exc


def load_stored(bento_model: Any) -> tuple[Any, StoredModel]:
    """The ``ChurnModel`` in a BentoML model written by ``import_alias``, with its provenance."""
    info = StoredModel.from_bento_model(bento_model)
    with open(bento_model.path_of(MODEL_FILE), "rb") as handle:
        # cloudpickle writes standard pickles; the classes are imported from shadowdrift.
        model = pickle.load(handle)
    return model, info


def summarise(
    entries: Mapping[str, Mapping[str, Any]], registered_model_name: str
) -> dict[str, Any]:
    """The packaging report: what each alias now points at in the store."""
    return {
        "registered_model_name": registered_model_name,
        "created_at": datetime.now(UTC).isoformat(),
        "models": {alias: dict(entry) for alias, entry in entries.items()},
    }
