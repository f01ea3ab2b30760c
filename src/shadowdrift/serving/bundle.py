"""The models a worker serves: loading them from the BentoML store, and what they are.

``ModelBundle`` is the champion and (optionally) the challenger that answer together, each a
``LoadedModel`` (a ``FastScorer`` plus where the model came from). ``load_bundle`` reads the
configured tags from the model store (after importing them from the MLflow registry when asked);
``ServingCore`` serves from one bundle and swaps it atomically on a reload.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shadowdrift.schema import DataSchema, parse_schema
from shadowdrift.serving import model_store as store
from shadowdrift.serving.challenger_process import ChallengerProcess
from shadowdrift.serving.config import ServingSettings, mlflow_uris
from shadowdrift.serving.fast_path import DEFAULT_SMALL_BATCH, FastScorer

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score, with where it came from."""

    role: str
    scorer: FastScorer
    version: str
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "model_version": self.version,
            **dict(self.provenance),
            "candidate": self.scorer.model.name,
            "kind": self.scorer.model.kind,
            "threshold": self.scorer.threshold,
            "fast_path": self.scorer.path,
            "fast_path_fallback_reason": self.scorer.fallback_reason,
            "forest_kernel": self.scorer.kernel,
            "forest_kernel_missing": self.scorer.kernel_missing,
            # whether scoring releases the GIL, i.e. large batches go to a batch thread
            "releases_gil": self.scorer.releases_gil,
            **(
                {"process": self.scorer.describe_process()}
                if isinstance(self.scorer, ChallengerProcess)
                else {}
            ),
        }

    def metric_labels(self) -> tuple[str, ...]:
        return (
            self.role,
            self.version,
            str(self.provenance.get("run_id", "")),
            str(self.scorer.model.name),
            str(self.provenance.get("bento_tag", "")),
        )


@dataclass(frozen=True)
class ModelBundle:
    """The champion and (optionally) the challenger that answer together."""

    champion: LoadedModel
    challenger: LoadedModel | None
    loaded_at: str
    source: str
    challenger_error: str | None = None


def make_scorer(model: Any, schema: DataSchema, settings: ServingSettings) -> FastScorer:
    return FastScorer(
        model,
        schema.numeric_features,
        schema.categorical_features,
        enabled=settings.single_record_fast_path,
        small_batch=DEFAULT_SMALL_BATCH,
        n_threads=settings.model_threads,
    )


def bundle_from_models(
    champion: Any,
    challenger: Any | None,
    schema: DataSchema,
    settings: ServingSettings,
    *,
    versions: tuple[str, str] = ("1", "2"),
    source: str = "memory",
) -> ModelBundle:
    """A bundle of in-memory ``ChurnModel`` objects (tests, benchmarks)."""
    return ModelBundle(
        champion=LoadedModel(CHAMPION, make_scorer(champion, schema, settings), versions[0]),
        challenger=(
            None
            if challenger is None
            else LoadedModel(CHALLENGER, make_scorer(challenger, schema, settings), versions[1])
        ),
        loaded_at=datetime.now(UTC).isoformat(),
        source=source,
    )


def stored_tags(settings: ServingSettings, model_store: Any = None) -> dict[str, str | None]:
    """role -> the BentoML tag its configured reference (``:latest``) resolves to right now."""
    tags: dict[str, str | None] = {}
    for role in (CHAMPION, CHALLENGER):
        reference = settings.models.get(role)
        if reference is None:
            continue
        try:
            tags[role] = str(store.resolve(reference, model_store).tag)
        except store.ModelStoreError:
            tags[role] = None
    return tags


def loaded_tags(bundle: ModelBundle) -> dict[str, str | None]:
    """role -> the BentoML tag of the model the bundle serves."""
    tags: dict[str, str | None] = {CHAMPION: bundle.champion.provenance.get("bento_tag")}
    tags[CHALLENGER] = bundle.challenger.provenance.get("bento_tag") if bundle.challenger else None
    return tags


def load_bundle(
    settings: ServingSettings,
    *,
    source: str = "store",
    use_bento_aliases: bool = True,
    load_challenger: bool = True,
    model_store: Any = None,
) -> ModelBundle:
    """Load the configured models from the BentoML store (``source="registry"``: import first).

    ``use_bento_aliases``: prefer the versions a built Bento pinned under the aliases
    ``champion``/``challenger`` (bentofile.yaml ``models:``); a reload passes False so that the
    configured tags (``:latest``) are resolved again.
    """
    schema = parse_schema(settings.schema)
    if source == "registry":
        import_from_registry(settings, model_store=model_store)
    loaded: dict[str, LoadedModel] = {}
    challenger_error = None
    for role in (CHAMPION, CHALLENGER):
        reference = settings.models.get(role)
        if reference is None or (role == CHALLENGER and not load_challenger):
            continue
        try:
            bento_model = store.resolve(
                reference, model_store, alias=role if use_bento_aliases else None
            )
            model, stored = store.load_stored(bento_model)
        except Exception as exc:
            if role == CHAMPION:
                raise
            challenger_error = f"{type(exc).__name__}: {exc}"
            logger.warning("No challenger (%s): serving without shadow", challenger_error)
            continue
        loaded[role] = LoadedModel(
            role, make_scorer(model, schema, settings), stored.registry_version, stored.to_json()
        )
        scorer = loaded[role].scorer
        logger.info(
            "Loaded %s %s (registry version %s, %s, fast path %s%s)",
            role,
            stored.bento_tag,
            stored.registry_version,
            model.name,
            scorer.path,
            f", forest kernel {scorer.kernel}" if scorer.kernel else "",
        )
        if scorer.kernel_missing and scorer.kernel != "c":
            logger.warning("%s: trees walked in numpy (%s)", role, scorer.kernel_missing)
    return ModelBundle(
        champion=loaded[CHAMPION],
        challenger=loaded.get(CHALLENGER),
        loaded_at=datetime.now(UTC).isoformat(),
        source=source,
        challenger_error=challenger_error,
    )


def import_from_registry(
    settings: ServingSettings, *, model_store: Any = None
) -> list[dict[str, Any]]:
    """Import champion and challenger from the MLflow registry configured in conf/*/mlflow.yml."""
    # MLflow (about 1.5 s and 50 MB) only in a worker that is asked to reload from the registry
    from mlflow import MlflowClient  # noqa: PLC0415

    tracking_uri, registry_uri = mlflow_uris(settings.project_path)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    return [
        store.import_alias(
            client,
            settings.registered_model_name,
            role,
            settings.bento_model_prefix,
            model_store=model_store,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
        )
        for role in (CHAMPION, CHALLENGER)
        if settings.models.get(role) is not None
    ]
