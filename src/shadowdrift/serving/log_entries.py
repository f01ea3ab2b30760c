"""A request's prediction-log entries while the service completes them.

Small requests are logged as their own record dicts, batches as the columns of one block
(``PredictionLogWriter.append_columns``); either way the champion's columns are set by the
request handler and the challenger's when its answer (canary) or its shadow job ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shadowdrift.prediction_log import (
    CHALLENGER_LABEL,
    CHALLENGER_LATENCY_MS,
    CHALLENGER_MODEL_VERSION,
    CHALLENGER_PROBABILITY,
    CHALLENGER_STATUS,
    MODEL_VARIANT,
)
from shadowdrift.serving.shadow import OK

LogEntries = list[dict[str, Any]] | dict[str, Any]


def fill_challenger(
    log: LogEntries,
    status: str,
    probability: np.ndarray | None = None,
    label: np.ndarray | None = None,
    version: str | None = None,
    latency_ms: float | None = None,
) -> None:
    """Set the challenger's log columns; the outputs only when it scored (``ok``)."""
    if isinstance(log, dict):
        log[CHALLENGER_STATUS] = status
        if status == OK:
            log[CHALLENGER_PROBABILITY] = probability
            log[CHALLENGER_LABEL] = label
            log[CHALLENGER_MODEL_VERSION] = version
        if latency_ms is not None:
            log[CHALLENGER_LATENCY_MS] = latency_ms
        return
    if status == OK:
        assert probability is not None and label is not None
        probabilities, labels = probability.tolist(), label.tolist()
        for index, record in enumerate(log):
            record[CHALLENGER_STATUS] = OK
            record[CHALLENGER_PROBABILITY] = probabilities[index]
            record[CHALLENGER_LABEL] = labels[index]
            record[CHALLENGER_MODEL_VERSION] = version
            record[CHALLENGER_LATENCY_MS] = latency_ms
        return
    for record in log:
        record[CHALLENGER_STATUS] = status
        if latency_ms is not None:
            record[CHALLENGER_LATENCY_MS] = latency_ms


def set_column(log: LogEntries, name: str, value: Any) -> None:
    """Give column ``name`` the same ``value`` in every record of ``log``."""
    if isinstance(log, dict):
        log[name] = value
        return
    for record in log:
        record[name] = value


def set_variant(log: LogEntries, variant: str) -> None:
    """Say which model answered every record of ``log`` (``model_variant``)."""
    set_column(log, MODEL_VARIANT, variant)


def split_entries(log: LogEntries, mask: np.ndarray) -> tuple[LogEntries, LogEntries]:
    """``log``'s records where ``mask`` is true, and the others (a block's constants in both)."""
    if isinstance(log, list):
        chosen = mask.tolist()
        return (
            [record for record, c in zip(log, chosen, strict=True) if c],
            [record for record, c in zip(log, chosen, strict=True) if not c],
        )
    selected: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    chosen = mask.tolist()
    for name, values in log.items():
        if isinstance(values, np.ndarray):
            selected[name], rest[name] = values[mask], values[~mask]
        elif isinstance(values, list):
            selected[name] = [v for v, c in zip(values, chosen, strict=True) if c]
            rest[name] = [v for v, c in zip(values, chosen, strict=True) if not c]
        else:
            selected[name] = rest[name] = values
    return selected, rest
