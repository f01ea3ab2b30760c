"""Nodes of the data-engineering pipeline: thin wrappers around ``schema`` and ``time_split``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from shadowdrift.schema import parse_schema, validate_frame
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
    validated = validate_frame(raw_events, data_schema, "raw_events")
    clean = validated[data_schema.columns].sort_values(data_schema.timestamp, kind="stable")
    logger.info("raw_events: %d rows passed validation", len(clean))
    return clean.reset_index(drop=True)


def split_events_by_time(
    intermediate_events: pd.DataFrame, schema: dict[str, Any], params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train < test < reference windows by time, and a summary of the split."""
    data_schema = parse_schema(schema)
    split_params = params.get("split", {})
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
