"""Nodes of the data-engineering pipeline: thin wrappers around ``schema`` and ``time_split``.

Both nodes also take Dask DataFrames (``kedro run --env dask``, docs/scale_out.md): the table
then stays partitioned (``partitioned_validation``, ``partitioned_split``) and only the
reference window, which drift monitoring keeps in memory anyway, comes back as pandas.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from shadowdrift.frames import ROW_POSITION, is_dask_frame, with_row_positions
from shadowdrift.partitioned_split import split_partitions_by_time
from shadowdrift.partitioned_validation import validate_partitions
from shadowdrift.schema import DataSchema, parse_schema, validate_frame
from shadowdrift.time_split import split_by_time

logger = logging.getLogger(__name__)


def validate_and_clean_events(raw_events: pd.DataFrame, schema: dict[str, Any]) -> pd.DataFrame:
    """Validate raw_events against the schema; return typed, time-ordered schema columns."""
    data_schema = parse_schema(schema)
    extra = [c for c in raw_events.columns if c not in data_schema.columns]
    if extra:
        logger.warning(
            "raw_events has %d column(s) not in the schema, left out of the model input: %s",
            len(extra),
            ", ".join(map(str, extra)),
        )
    if is_dask_frame(raw_events):
        return _validate_and_clean_partitions(raw_events, data_schema)
    validated = validate_frame(raw_events, data_schema, "raw_events")
    clean = validated[data_schema.columns].sort_values(data_schema.timestamp, kind="stable")
    logger.info("raw_events: %d rows passed validation", len(clean))
    return clean.reset_index(drop=True)


def _validate_and_clean_partitions(raw_events: Any, data_schema: DataSchema) -> Any:
    """The Dask path: validated per partition, then sorted by time on the workers.

    Ties in time keep the raw table's row order (a stable sort in the pandas path), so both
    paths write the same rows in the same order.
    """
    validated = validate_partitions(raw_events, data_schema, "raw_events")
    positioned = with_row_positions(validated.frame[data_schema.columns], validated.offsets)
    clean = positioned.sort_values([data_schema.timestamp, ROW_POSITION]).drop(
        columns=[ROW_POSITION]
    )
    logger.info("raw_events: %d rows passed validation", validated.n_rows)
    return clean


def split_events_by_time(
    intermediate_events: pd.DataFrame, schema: dict[str, Any], params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train < test < reference windows by time, and a summary of the split.

    With a Dask table, train and test stay lazy Dask frames and the reference is pandas.
    """
    data_schema = parse_schema(schema)
    split_params = params.get("split", {})
    if is_dask_frame(intermediate_events):
        return _split_partitions(intermediate_events, data_schema, params)
    split = split_by_time(
        intermediate_events,
        data_schema.timestamp,
        train_fraction=split_params.get("train_fraction"),
        test_fraction=split_params.get("test_fraction"),
        train_end=split_params.get("train_end"),
        test_end=split_params.get("test_end"),
        min_rows=int(params.get("min_rows_per_window", 1)),
    )
    summary = split.summary(data_schema.timestamp, data_schema.target)
    for name, window in summary["windows"].items():
        logger.info(
            "%s window: %d rows from %s to %s", name, window["rows"], window["start"], window["end"]
        )
    return split.train, split.test, split.reference, summary


def _split_partitions(
    intermediate_events: Any, data_schema: DataSchema, params: dict[str, Any]
) -> tuple[Any, Any, pd.DataFrame, dict[str, Any]]:
    split = split_partitions_by_time(
        intermediate_events,
        data_schema.timestamp,
        data_schema.target,
        params.get("split", {}),
        min_rows=int(params.get("min_rows_per_window", 1)),
    )
    for name, window in split.summary["windows"].items():
        logger.info(
            "%s window: %d rows from %s to %s", name, window["rows"], window["start"], window["end"]
        )
    return split.train, split.test, split.reference, split.summary
