"""The training set of a retraining: the window rolls forward and takes in labelled production data.

History (``intermediate_events``) and the logged production records whose ground truth has
arrived (the drift pipeline's ``model_output_drift_analysis``) are put on one time line; the
newest ``window_days`` up to the newest labelled record are kept and cut by time into train,
test (the promotion gate's holdout) and reference (the next drift baseline), the last two being
the newest ``test_days`` and ``reference_days``. Plain pandas; no Kedro import.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from shadowdrift.schema import DataSchema, validate_frame
from shadowdrift.time_split import TimeSplit, split_by_time

logger = logging.getLogger(__name__)

LOG_EVENT_TIME = "event_time"
SOURCE = "source"
RETRAINING = "retraining"


class RetrainingConfigError(ValueError):
    """``retraining`` parameters are wrong (the message names the key)."""


class RetrainingNotCalledFor(RuntimeError):
    """The latest drift decision does not ask for retraining."""


@dataclass(frozen=True)
class RetrainingParams:
    """The ``retraining`` block of ``conf/base/parameters_retraining.yml``."""

    require_decision: bool = True
    include_production: bool = True
    window_days: float | None = 180.0
    test_days: float = 14.0
    reference_days: float = 14.0
    min_rows_per_window: int = 100

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> RetrainingParams:
        raw = dict(params or {})
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise RetrainingConfigError(
                f"{RETRAINING}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        for key in ("require_decision", "include_production"):
            if key in raw and not isinstance(raw[key], bool):
                raise RetrainingConfigError(
                    f"{RETRAINING}.{key} must be true or false, got {raw[key]!r}"
                )
        for key in ("window_days", "test_days", "reference_days"):
            if key not in raw or (key == "window_days" and raw[key] is None):
                continue
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise RetrainingConfigError(
                    f"{RETRAINING}.{key} must be a positive number of days, got {value!r}"
                )
            raw[key] = float(value)
        rows = raw.get("min_rows_per_window", cls.min_rows_per_window)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise RetrainingConfigError(
                f"{RETRAINING}.min_rows_per_window must be a whole number >= 1, got {rows!r}"
            )
        out = cls(**raw)
        if out.window_days is not None and out.window_days <= out.test_days + out.reference_days:
            raise RetrainingConfigError(
                f"{RETRAINING}.window_days ({out.window_days:g}) must exceed test_days + "
                f"reference_days ({out.test_days + out.reference_days:g}): the train window "
                "would be empty"
            )
        return out


def check_decision(decision: Mapping[str, Any], params: RetrainingParams) -> None:
    """Raise unless the drift decision says ``retrain`` (or ``require_decision`` is off)."""
    verdict = decision.get("decision")
    if verdict == "retrain":
        return
    if not params.require_decision:
        logger.warning(
            "The drift decision is %r; retraining anyway (require_decision: false)", verdict
        )
        return
    raise RetrainingNotCalledFor(
        f"the latest drift decision is {verdict!r}, not 'retrain': {decision.get('summary', '')} "
        "Retrain anyway with: kedro run --pipelines retraining --params "
        f"{RETRAINING}.require_decision=false"
    )


def labelled_production(
    analysis: pd.DataFrame, schema: DataSchema, *, like: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Logged production records whose ground truth has arrived, as history rows (schema columns).

    Records go through the schema's validation with the production allowances (unseen
    categories and missing values are kept: the model must learn to live with them). With
    ``like``, timestamps take its time-zone convention so that both tables share one time line.
    """
    if schema.target not in analysis.columns:
        return pd.DataFrame(columns=list(schema.columns))
    labelled = analysis[analysis[schema.target].notna()]
    rows = pd.DataFrame(
        {
            schema.id: labelled[schema.id].to_numpy()
            if schema.id in labelled.columns
            else labelled["request_id"].astype(str) + "/" + labelled["record_index"].astype(str),
            schema.timestamp: labelled[LOG_EVENT_TIME].to_numpy(),
            **{name: labelled[name].to_numpy() for name in schema.features},
            schema.target: labelled[schema.target].astype(int).to_numpy(),
        }
    )
    if like is not None and schema.timestamp in like.columns:
        times = pd.to_datetime(rows[schema.timestamp], utc=True)
        history_tz = getattr(like[schema.timestamp].dtype, "tz", None)
        rows[schema.timestamp] = (
            times.dt.tz_convert(history_tz) if history_tz else times.dt.tz_convert(None)
        )
        if schema.id in like.columns:
            rows[schema.id] = rows[schema.id].astype(like[schema.id].dtype, errors="ignore")
    if rows.empty:
        return rows
    return validate_frame(
        rows,
        schema,
        "labelled production records (prediction log with ground truth)",
        allow_unseen_categories=True,
        allow_nulls=True,
    )[list(schema.columns)]


def roll_window(
    history: pd.DataFrame, production: pd.DataFrame, schema: DataSchema, params: RetrainingParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """History and labelled production on one time line, cut to the newest ``window_days``."""
    parts = [history.assign(**{SOURCE: "history"})]
    if params.include_production and len(production):
        parts.append(production.assign(**{SOURCE: "production"}))
    events = pd.concat(parts, ignore_index=True).sort_values(schema.timestamp, kind="stable")
    if events.empty:
        raise RetrainingConfigError("no labelled records to retrain on (history and log are empty)")
    end = events[schema.timestamp].max()
    start = None
    if params.window_days is not None:
        start = end - pd.Timedelta(days=params.window_days)
        events = events[events[schema.timestamp] > start]
    summary = {
        "window_start": str(start) if start is not None else None,
        "window_end": str(end),
        "rows": len(events),
        "rows_by_source": {k: int(v) for k, v in events[SOURCE].value_counts().items()},
        "production_labelled_rows": len(production),
        "production_included": params.include_production,
    }
    logger.info(
        "Retraining window %s .. %s: %d rows (%s)",
        summary["window_start"] or "start",
        end,
        len(events),
        ", ".join(f"{k} {v}" for k, v in summary["rows_by_source"].items()),
    )
    return events.reset_index(drop=True), summary


def split_window(
    events: pd.DataFrame, schema: DataSchema, params: RetrainingParams
) -> tuple[TimeSplit, dict[str, Any]]:
    """Train < test < reference, the last two the newest ``test_days`` and ``reference_days``."""
    end = events[schema.timestamp].max()
    test_end = end - pd.Timedelta(days=params.reference_days)
    train_end = test_end - pd.Timedelta(days=params.test_days)
    split = split_by_time(
        events.drop(columns=[SOURCE]),
        schema.timestamp,
        train_end=str(train_end),
        test_end=str(test_end),
        min_rows=params.min_rows_per_window,
        config_key=RETRAINING,
    )
    summary = split.summary(schema.timestamp, schema.target)
    ordered = events.sort_values(schema.timestamp, kind="stable")[SOURCE].reset_index(drop=True)
    lo, hi = len(split.train), len(split.train) + len(split.test)
    by_window = {
        "train": ordered.iloc[:lo],
        "test": ordered.iloc[lo:hi],
        "reference": ordered.iloc[hi:],
    }
    for name, sources in by_window.items():
        summary["windows"][name]["production_share"] = (
            float((sources == "production").mean()) if len(sources) else None
        )
    return split, summary
