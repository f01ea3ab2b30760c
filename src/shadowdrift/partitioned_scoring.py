"""Batch scoring of a Dask DataFrame, partition by partition, champion and challenger in shadow.

The Dask counterpart of the scoring in ``pipelines/inference/nodes.py``: each partition is
scored where it lives by the same model objects (loaded once from the registry in the client
and shipped to the workers once), with the same columns, so the prediction log gets the same
records. Differences, by nature of the partitioning:

* latency is measured per partition (the pandas path measures the whole batch);
* a challenger that fails is recorded as ``failed`` for the partitions it failed on;
* ``record_index`` (the row's position in the batch) is set here, from the partition sizes
  counted during validation, so that one request id can cover the whole batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pandas as pd

from shadowdrift.churn_model import LABEL, PROBABILITY
from shadowdrift.prediction_log import (
    CHALLENGER_LABEL,
    CHALLENGER_LATENCY_MS,
    CHALLENGER_MODEL_VERSION,
    CHALLENGER_PROBABILITY,
    CHALLENGER_STATUS,
    CHAMPION_LABEL,
    CHAMPION_LATENCY_MS,
    CHAMPION_MODEL_VERSION,
    CHAMPION_PROBABILITY,
    EVENT_TIME,
    RECORD_INDEX,
    utc_times,
)
from shadowdrift.schema import DataSchema

if TYPE_CHECKING:
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

_CHAMPION_DTYPES = {
    CHAMPION_PROBABILITY: np.dtype("float64"),
    CHAMPION_LABEL: np.dtype("int64"),
    CHAMPION_MODEL_VERSION: np.dtype("object"),
    CHAMPION_LATENCY_MS: np.dtype("float64"),
}
# Nullable label: a partition the challenger failed on has no challenger output.
_CHALLENGER_DTYPES = {
    CHALLENGER_PROBABILITY: np.dtype("float64"),
    CHALLENGER_LABEL: pd.Int64Dtype(),
    CHALLENGER_MODEL_VERSION: np.dtype("object"),
    CHALLENGER_LATENCY_MS: np.dtype("float64"),
}


@dataclass(frozen=True)
class ShadowModels:
    """The champion and (if it runs in shadow) the challenger, with their registry versions."""

    champion: Any
    champion_version: str
    challenger: Any | None = None
    challenger_version: str | None = None

    @property
    def shadow(self) -> bool:
        return self.challenger is not None


def log_columns(records: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """The id, the features and the record's own time as the log's UTC ``event_time``.

    The schema's timestamp column may have any name; the log always calls it ``event_time``,
    which is what drift chunks by and what the label delay counts from.
    """
    out = records[[schema.id, *schema.features]].copy()
    out.insert(1, EVENT_TIME, utc_times(records[schema.timestamp]).to_numpy())
    return out


def _meta(records_meta: pd.DataFrame, schema: DataSchema, shadow: bool) -> pd.DataFrame:
    """The empty frame every scored partition looks like."""
    out = log_columns(records_meta, schema)
    dtypes: dict[str, Any] = dict(_CHAMPION_DTYPES)
    if shadow:
        dtypes.update(_CHALLENGER_DTYPES)
    dtypes[CHALLENGER_STATUS] = np.dtype("object")
    dtypes[RECORD_INDEX] = np.dtype("int64")
    for name, dtype in dtypes.items():
        out[name] = pd.Series([], dtype=dtype)
    return out


def _score_partition(
    records: pd.DataFrame,
    models: ShadowModels,
    schema: DataSchema,
    offsets: list[int],
    dtypes: dict[str, Any],
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    if records.empty:
        return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})
    records = records.reset_index(drop=True)
    out = log_columns(records, schema)
    started = time.perf_counter()
    predictions = models.champion.predict(None, records)
    elapsed_ms = (time.perf_counter() - started) * 1000
    out[CHAMPION_PROBABILITY] = predictions[PROBABILITY].to_numpy()
    out[CHAMPION_LABEL] = predictions[LABEL].to_numpy()
    out[CHAMPION_MODEL_VERSION] = str(models.champion_version)
    out[CHAMPION_LATENCY_MS] = elapsed_ms / max(len(records), 1)
    if not models.shadow:
        out[CHALLENGER_STATUS] = "disabled"
    else:
        try:
            started = time.perf_counter()
            shadow = models.challenger.predict(None, records)
            shadow_ms = (time.perf_counter() - started) * 1000
            out[CHALLENGER_PROBABILITY] = shadow[PROBABILITY].to_numpy()
            out[CHALLENGER_LABEL] = shadow[LABEL].to_numpy()
            out[CHALLENGER_MODEL_VERSION] = str(models.challenger_version)
            out[CHALLENGER_LATENCY_MS] = shadow_ms / max(len(records), 1)
            out[CHALLENGER_STATUS] = "ok"
        except Exception:
            # the shadow never decides the outcome: its failure is logged and recorded, not raised
            logger.exception(
                "challenger version %s failed on a partition", models.challenger_version
            )
            for name in _CHALLENGER_DTYPES:
                out[name] = None
            out[CHALLENGER_STATUS] = "failed"
    start = offsets[partition_info["number"]] if partition_info is not None else 0
    out[RECORD_INDEX] = np.arange(start, start + len(out), dtype=np.int64)
    return out[list(dtypes)].astype(dtypes)


def score_partitions(
    records: dd.DataFrame, offsets: np.ndarray, schema: DataSchema, models: ShadowModels
) -> dd.DataFrame:
    """Score validated production records per partition (lazy); prediction-log columns.

    ``offsets`` are the global positions of each partition's first row (for ``record_index``).
    """
    meta = _meta(records._meta, schema, models.shadow)
    # One copy of the models in the graph, not one per partition.
    shipped = dask.delayed(models, pure=True)
    dtypes = meta.dtypes.to_dict()
    return records.map_partitions(
        _score_partition, shipped, schema, [int(o) for o in offsets], dtypes, meta=meta
    )
