"""Nodes of the retraining pipeline: thin wrappers around ``shadowdrift.retraining_set``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from shadowdrift.frames import is_dask_frame
from shadowdrift.retraining_set import (
    RetrainingParams,
    check_decision,
    labelled_production,
    roll_window,
    split_window,
)
from shadowdrift.schema import parse_schema

logger = logging.getLogger(__name__)


def build_retraining_events(
    intermediate_events: pd.DataFrame,
    model_output_drift_analysis: pd.DataFrame,
    reporting_retraining_decision: dict[str, Any],
    schema: dict[str, Any],
    retraining: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """History plus labelled production records in the rolling window; refuses unless drift said retrain."""
    params = RetrainingParams.from_params(retraining)
    check_decision(reporting_retraining_decision, params)
    if is_dask_frame(intermediate_events) or is_dask_frame(model_output_drift_analysis):
        raise NotImplementedError(
            "the retraining pipeline runs on pandas tables: run it in an environment whose "
            "intermediate_events and model_output_drift_analysis are pandas (docs/closing_the_loop.md)"
        )
    s = parse_schema(schema)
    production = labelled_production(model_output_drift_analysis, s, like=intermediate_events)
    events, summary = roll_window(intermediate_events, production, s, params)
    summary["decision"] = {
        k: reporting_retraining_decision.get(k) for k in ("decision", "summary", "reasons")
    }
    return events, summary


def split_retraining_events(
    intermediate_retraining_events: pd.DataFrame,
    schema: dict[str, Any],
    retraining: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train < test < reference by time; test and reference are the newest days."""
    params = RetrainingParams.from_params(retraining)
    split, summary = split_window(intermediate_retraining_events, parse_schema(schema), params)
    for name, window in summary["windows"].items():
        logger.info(
            "%s window: %d rows from %s to %s (%.0f%% production)",
            name,
            window["rows"],
            window["start"],
            window["end"],
            100 * (window["production_share"] or 0.0),
        )
    return split.train, split.test, split.reference, summary
