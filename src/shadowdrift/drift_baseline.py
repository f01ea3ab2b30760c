"""The drift baseline: which labelled rows production is compared with (``drift.baseline``).

Drift monitoring compares production with two baselines (``drift_params.BaselineParams``):

* the **features** baseline, for everything that looks at the features only: PSI of the
  features, NannyML univariate and multivariate drift, the reference missing shares. It does
  not depend on the model, so it may span the whole labelled history;
* the **performance** baseline, for everything that uses the models' scores: CBPE (calibrated
  on it), realised performance and the reference value the performance rules compare with, PSI
  of the champion's score. It must hold scores the models never trained on: a model's scores on
  its own training rows are over-confident, and CBPE calibrated on them over-estimates.

Sources (``drift.baseline.features`` / ``performance``), from the data-engineering windows
train < test < reference and the optional ``raw_reference`` dataset:

============== ======================================= ==========================================
source         rows                                    allowed for
============== ======================================= ==========================================
out_of_sample  test + reference windows                features, performance
reference      the reference window only               features, performance
all_history    train + test + reference                features only
date_range     history rows with start <= time < end   features; performance if after training
raw_reference  the ``raw_reference`` dataset           features, performance (no overlap with
                                                       the training rows)
============== ======================================= ==========================================

``select_baseline`` returns one frame holding every row of either baseline once, with the
window it came from (``baseline_window``) and two flags (``baseline_features``,
``baseline_performance``), plus a description of both baselines for the report. The
``drift`` pipeline scores the performance rows with the champion and challenger and
``drift_monitor.fit_reference`` fits each statistic on its baseline.

Plain pandas; does not import Kedro or NannyML.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from shadowdrift.drift_chunks import normalise_timestamps
from shadowdrift.drift_params import BaselineParams
from shadowdrift.schema import DataSchema, validate_frame

logger = logging.getLogger(__name__)

HISTORY_WINDOWS = ("train", "test", "reference")
RAW_REFERENCE = "raw_reference"
WINDOW = "baseline_window"
FOR_FEATURES = "baseline_features"
FOR_PERFORMANCE = "baseline_performance"
ROLES = {"features": FOR_FEATURES, "performance": FOR_PERFORMANCE}
SOURCE_WINDOWS = {
    "out_of_sample": ("test", "reference"),
    "reference": ("reference",),
    "all_history": HISTORY_WINDOWS,
    "date_range": HISTORY_WINDOWS,
    "raw_reference": (RAW_REFERENCE,),
}


class BaselineError(ValueError):
    """The baseline cannot be built as configured; the message names the key or dataset."""


def windows_needed(params: BaselineParams) -> tuple[str, ...]:
    """The windows ``select_baseline`` reads for ``params`` (the reference window always: the
    labelled history ends with it; train for the leakage checks of a performance baseline)."""
    needed = {"reference", *SOURCE_WINDOWS[params.features], *SOURCE_WINDOWS[params.performance]}
    if params.performance in ("date_range", RAW_REFERENCE):
        needed.add("train")
    return tuple(w for w in (*HISTORY_WINDOWS, RAW_REFERENCE) if w in needed)


def _times(frame: pd.DataFrame, schema: DataSchema) -> pd.Series:
    return normalise_timestamps(frame[schema.timestamp].reset_index(drop=True), schema.timestamp)


def _raw_reference(
    raw: pd.DataFrame | None, schema: DataSchema, params: BaselineParams
) -> pd.DataFrame:
    roles = [r for r in ROLES if getattr(params, r) == RAW_REFERENCE]
    keys = " and ".join(f"drift.baseline.{r}" for r in roles)
    if raw is None:
        raise BaselineError(
            f"{keys} is raw_reference, but the raw_reference dataset does not exist: add your "
            "labelled baseline file where the catalog entry raw_reference points, or choose "
            "another baseline source"
        )
    labelled = "performance" in roles
    validated = validate_frame(raw, schema, RAW_REFERENCE, require_target=labelled)
    columns = [c for c in schema.columns if c in validated.columns]
    frame = validated[columns].sort_values(schema.timestamp, kind="stable")
    return frame.reset_index(drop=True)


def _in_range(times: pd.Series, params: BaselineParams) -> np.ndarray:
    keep = np.ones(len(times), dtype=bool)
    if params.start_time is not None:
        keep &= (times >= params.start_time).to_numpy()
    if params.end_time is not None:
        keep &= (times < params.end_time).to_numpy()
    return keep


def _role_mask(
    window: str, frame: pd.DataFrame, source: str, schema: DataSchema, params: BaselineParams
) -> np.ndarray:
    if window not in SOURCE_WINDOWS[source]:
        return np.zeros(len(frame), dtype=bool)
    if source == "date_range":
        return _in_range(_times(frame, schema), params)
    return np.ones(len(frame), dtype=bool)


def _check_range_after_training(
    train: pd.DataFrame, schema: DataSchema, params: BaselineParams
) -> None:
    """Refuse a performance baseline that reaches into the training window."""
    if params.performance == "date_range":
        train_end = _times(train, schema).max() if len(train) else None
        if train_end is not None and (params.start_time is None or params.start_time <= train_end):
            start = "null" if params.start is None else params.start
            raise BaselineError(
                f"drift.baseline.start ({start}) reaches into the training window, which ends "
                f"at {train_end}: drift.baseline.performance is date_range, and estimated and "
                "realised performance need scores the models never trained on. Set "
                f"drift.baseline.start after {train_end}, or performance: out_of_sample"
            )


def _check_raw_reference_unseen(raw: pd.DataFrame, train: pd.DataFrame, schema: DataSchema) -> None:
    """The performance rows of raw_reference must not be training rows (same id and time)."""
    keys = [schema.id, schema.timestamp]
    if not len(train) or not len(raw):
        return
    seen = pd.MultiIndex.from_arrays(
        [train[schema.id].astype(str).to_numpy(), _times(train, schema).to_numpy()]
    )
    rows = pd.MultiIndex.from_arrays(
        [raw[schema.id].astype(str).to_numpy(), _times(raw, schema).to_numpy()]
    )
    overlap = rows.isin(seen)
    if overlap.any():
        examples = ", ".join(f"{schema.id}={i!r} at {t}" for i, t in list(rows[overlap])[:3])
        raise BaselineError(
            f"raw_reference holds {int(overlap.sum())} row(s) of the training window (same "
            f"{' and '.join(keys)}; e.g. {examples}): drift.baseline.performance is "
            "raw_reference, and estimated and realised performance need scores the models "
            "never trained on. Remove those rows, or use performance: out_of_sample"
        )


def _span(frame: pd.DataFrame, schema: DataSchema) -> dict[str, Any]:
    if not len(frame):
        return {"n_rows": 0, "start": None, "end": None}
    times = _times(frame, schema)
    return {"n_rows": len(frame), "start": str(times.min()), "end": str(times.max())}


def _windows(
    windows: Mapping[str, pd.DataFrame | None], schema: DataSchema, params: BaselineParams
) -> dict[str, pd.DataFrame]:
    """The windows the baseline reads, in the schema's columns (raw_reference validated)."""
    frames: dict[str, pd.DataFrame] = {}
    for window in windows_needed(params):
        if window == RAW_REFERENCE:
            frames[window] = _raw_reference(windows.get(window), schema, params)
        elif windows.get(window) is None:
            raise BaselineError(f"the {window} window is missing: run data_engineering first")
        else:
            frame = windows[window]
            frames[window] = frame[[c for c in schema.columns if c in frame.columns]]
    return frames


def select_baseline(
    windows: Mapping[str, pd.DataFrame | None], schema: DataSchema, params: BaselineParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of both baselines, once each, flagged by role; and their description.

    ``windows`` maps ``train``, ``test``, ``reference`` and ``raw_reference`` to pandas frames
    (``None`` for a raw_reference that does not exist); only ``windows_needed(params)`` are read.
    """
    frames = _windows(windows, schema, params)
    if params.performance == "date_range":
        _check_range_after_training(frames["train"], schema, params)
    if params.performance == RAW_REFERENCE:
        _check_raw_reference_unseen(frames[RAW_REFERENCE], frames["train"], schema)

    parts = []
    for window, frame in frames.items():
        masks = {
            flag: _role_mask(window, frame, getattr(params, role), schema, params)
            for role, flag in ROLES.items()
        }
        keep = masks[FOR_FEATURES] | masks[FOR_PERFORMANCE]
        if keep.any():
            part = frame.loc[keep].reset_index(drop=True)
            parts.append(
                part.assign(
                    **{WINDOW: window}, **{flag: mask[keep] for flag, mask in masks.items()}
                )
            )
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    description: dict[str, Any] = {"min_chunks": params.min_chunks}
    for role, flag in ROLES.items():
        source = getattr(params, role)
        chosen = rows.loc[rows[flag]] if len(rows) else rows
        if not len(chosen):
            where = (
                f" between {params.start or 'the start'} and {params.end or 'the end'}"
                if source == "date_range"
                else ""
            )
            raise BaselineError(
                f"drift.baseline.{role} ({source}) selects no rows{where}: choose another "
                "source or range"
            )
        description[role] = {
            "source": source,
            "windows": list(dict.fromkeys(chosen[WINDOW])),
            **_span(chosen, schema),
        }
        if source == "date_range":
            description[role].update(range_start=params.start, range_end=params.end)
    history = [frames[w] for w in HISTORY_WINDOWS if w in frames]
    description["history_end"] = str(max(_times(f, schema).max() for f in history if len(f)))
    if "train" in frames and len(frames["train"]):
        description["train_end"] = str(_times(frames["train"], schema).max())
    for role in ROLES:
        info = description[role]
        logger.info(
            "Drift %s baseline: %s (%s), %d rows from %s to %s",
            role,
            info["source"],
            ", ".join(info["windows"]),
            info["n_rows"],
            info["start"],
            info["end"],
        )
    return rows, description


def baseline_windows(frame: pd.DataFrame) -> dict[str, list[str]]:
    """{role: the windows its rows came from, in order} of ``select_baseline``'s frame."""
    if FOR_FEATURES not in frame.columns:
        return {role: [] for role in ROLES}
    return {
        role: list(dict.fromkeys(frame.loc[frame[flag].astype(bool), WINDOW]))
        for role, flag in ROLES.items()
    }


def split_baseline(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features baseline, performance baseline) from ``select_baseline``'s frame.

    A frame without the flag columns (a plain reference window) serves as both.
    """
    if FOR_FEATURES not in frame.columns:
        return frame, frame
    helpers = [WINDOW, FOR_FEATURES, FOR_PERFORMANCE]
    features = frame.loc[frame[FOR_FEATURES].astype(bool)].drop(columns=helpers)
    performance = frame.loc[frame[FOR_PERFORMANCE].astype(bool)].drop(columns=helpers)
    return features.reset_index(drop=True), performance.reset_index(drop=True)
