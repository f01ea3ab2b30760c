"""Batch scoring with the registry's champion and, in shadow, its challenger.

``raw_production`` may be a Dask DataFrame (``kedro run --env dask``, docs/scale_out.md): it is
then validated and scored partition by partition and written to the log the same way.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from shadowdrift import registry
from shadowdrift.churn_model import LABEL, PROBABILITY
from shadowdrift.frames import is_dask_frame
from shadowdrift.partitioned_prediction_log import PartitionedLogBatch
from shadowdrift.partitioned_scoring import ShadowModels, log_columns, score_partitions
from shadowdrift.partitioned_validation import validate_partitions
from shadowdrift.prediction_log import LogSchema
from shadowdrift.schema import DataSchema, parse_schema, validate_frame

logger = logging.getLogger(__name__)

# Production records may lack the target, and drift monitoring must see new categories and
# missing values, so they are scored, not refused; types, ranges and ids are still checked.
PRODUCTION_CHECKS = {"require_target": False, "allow_unseen_categories": True, "allow_nulls": True}


def score_production(
    raw_production: pd.DataFrame,
    models_registry_aliases: dict[str, Any],
    schema: dict[str, Any],
    inference: dict[str, Any],
    model_registry: dict[str, Any],
) -> pd.DataFrame:
    """Champion and challenger scores for each production record, in the prediction-log format.

    The models come from the registry aliases as they are now; the aliases evaluation left are
    an input so that a full run scores only after evaluation has moved the aliases.
    With a Dask ``raw_production`` the result is a lazy ``PartitionedLogBatch``.
    """
    s = parse_schema(schema)
    if is_dask_frame(raw_production):
        return _score_partitions(
            raw_production, models_registry_aliases, s, inference, model_registry
        )
    records = validate_frame(
        raw_production.drop(columns=[s.target], errors="ignore"),
        s,
        "raw_production",
        **PRODUCTION_CHECKS,
    )
    models = _load_models(models_registry_aliases, inference, model_registry)
    out = log_columns(records, s)
    started = time.perf_counter()
    predictions = models.champion.predict(None, records)
    elapsed_ms = (time.perf_counter() - started) * 1000
    out["champion_probability"] = predictions[PROBABILITY].to_numpy()
    out["champion_label"] = predictions[LABEL].to_numpy()
    out["champion_model_version"] = models.champion_version
    out["champion_latency_ms"] = elapsed_ms / max(len(records), 1)
    if not models.shadow:
        out["challenger_status"] = "disabled"
    else:
        try:
            started = time.perf_counter()
            shadow = models.challenger.predict(None, records)
            shadow_ms = (time.perf_counter() - started) * 1000
            out["challenger_probability"] = shadow[PROBABILITY].to_numpy()
            out["challenger_label"] = shadow[LABEL].to_numpy()
            out["challenger_model_version"] = models.challenger_version
            out["challenger_latency_ms"] = shadow_ms / max(len(records), 1)
            out["challenger_status"] = "ok"
        except Exception:
            # the shadow never decides the outcome: its failure is logged and recorded, not raised
            logger.exception("challenger version %s failed on the batch", models.challenger_version)
            out["challenger_status"] = "failed"
    agreement = (
        float(np.mean(out["champion_label"] == out["challenger_label"]))
        if "challenger_label" in out
        else float("nan")
    )
    logger.info(
        "Scored %d production records with champion v%s (challenger %s); label agreement %.3f",
        len(out),
        models.champion_version,
        f"v{models.challenger_version}" if models.shadow else "none",
        agreement,
    )
    out.attrs["prediction_log_schema"] = LogSchema.from_data_schema(s).to_json()
    return out.reset_index(drop=True)


def _score_partitions(
    raw_production: Any,
    models_registry_aliases: dict[str, Any],
    s: DataSchema,
    inference: dict[str, Any],
    model_registry: dict[str, Any],
) -> PartitionedLogBatch:
    """The Dask path: the same validation and models, applied per partition, lazily."""
    validated = validate_partitions(
        raw_production.drop(columns=[s.target], errors="ignore"),
        s,
        "raw_production",
        **PRODUCTION_CHECKS,
    )
    models = _load_models(models_registry_aliases, inference, model_registry)
    scored = score_partitions(validated.frame, validated.offsets, s, models)
    logger.info(
        "Scoring %d production records in %d partitions with champion v%s (challenger %s); "
        "they are scored and logged when the prediction log is saved",
        validated.n_rows,
        len(validated.lengths),
        models.champion_version,
        f"v{models.challenger_version}" if models.shadow else "none",
    )
    return PartitionedLogBatch(scored, LogSchema.from_data_schema(s))


def _load_models(
    models_registry_aliases: dict[str, Any],
    inference: dict[str, Any],
    model_registry: dict[str, Any],
) -> ShadowModels:
    """Champion and challenger from the registry, with the pandas path's checks and warnings."""
    client = MlflowClient()
    name = model_registry["name"]
    champion, champion_version = registry.load_alias(client, name, registry.CHAMPION)
    if champion is None:
        raise RuntimeError(
            f"no model has the alias {name}@{registry.CHAMPION} in the MLflow registry: "
            "run `kedro run --pipelines training,evaluation` first"
        )
    decided = (models_registry_aliases or {}).get("aliases", {}).get(registry.CHAMPION)
    if decided is not None and str(decided) != str(champion_version):
        logger.warning(
            "%s@champion is version %s, not %s as the last promotion decision left it (rolled back?)",
            name,
            champion_version,
            decided,
        )
    challenger, challenger_version = registry.load_alias(client, name, registry.CHALLENGER)
    if challenger is None or not inference.get("shadow", True):
        return ShadowModels(champion, str(champion_version))
    return ShadowModels(champion, str(champion_version), challenger, str(challenger_version))
