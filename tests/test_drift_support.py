"""Drift test data from the simulator (helpers only; no tests here).

The "models" are stand-ins that need no training: the champion scores every record with the
true churn probability *of the history* (``churn_logit`` without concept change, missing values
imputed with reference medians), the challenger with a slightly tempered, noisy version of it.
Under concept drift the true relation moves away from the history's, so the stand-in's realised
performance drops exactly as a trained model's would.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shadowdrift import simulation as sim
from shadowdrift.schema import DataSchema, parse_schema
from tests.conftest import base_parameters

THRESHOLD = 0.3
HISTORY_ROWS = 50_000
REFERENCE_ROWS = 10_000
HISTORY_START = "2024-01-01"
HISTORY_DAYS = 365
PRODUCTION_DAYS = 90
LABEL_DELAY_DAYS = 30
SCENARIO_SETTINGS: dict[str, dict[str, Any]] = {
    "none": {},
    "covariate_shift": {"feature": "monthly_charges", "magnitude": 0.5},
    "gradual": {"feature": "monthly_charges", "magnitude": 1.0},
    "new_category": {
        "feature": "payment_method",
        "magnitude": 0.3,
        "new_category_value": "digital_wallet",
    },
    "concept_drift": {"magnitude": 1.0},
    "missing_values": {"feature": "satisfaction_score", "magnitude": 0.3},
}


@functools.cache
def schema() -> DataSchema:
    return parse_schema(base_parameters()["schema"])


@functools.cache
def history(seed: int = 7) -> pd.DataFrame:
    events, _ = sim.simulate_history(
        HISTORY_ROWS, seed, HISTORY_START, HISTORY_DAYS, LABEL_DELAY_DAYS
    )
    return events


def production_start() -> str:
    return str(pd.Timestamp(HISTORY_START) + pd.Timedelta(days=HISTORY_DAYS))


def score(frame: pd.DataFrame, medians: pd.Series, rng: np.random.Generator) -> pd.DataFrame:
    """Add champion and challenger predictions (stand-in models, see the module docstring)."""
    filled = frame.copy()
    numeric = list(sim.NUMERIC_FEATURES)
    filled[numeric] = filled[numeric].fillna(medians)
    logit = sim.churn_logit(filled)
    champion = 1.0 / (1.0 + np.exp(-logit))
    challenger = 1.0 / (1.0 + np.exp(-(0.9 * logit + rng.normal(0.0, 0.3, len(frame)))))
    return frame.assign(
        champion_probability=champion,
        champion_label=(champion >= THRESHOLD).astype(np.int64),
        challenger_probability=challenger,
        challenger_label=(challenger >= THRESHOLD).astype(np.int64),
    )


@functools.cache
def reference(seed: int = 7) -> pd.DataFrame:
    events = history(seed)
    ref = events.iloc[-REFERENCE_ROWS:].reset_index(drop=True)
    medians = ref[list(sim.NUMERIC_FEATURES)].median()
    return score(ref, medians, np.random.default_rng([seed, 10]))


@dataclass(frozen=True)
class Scenario:
    reference: pd.DataFrame
    analysis: pd.DataFrame
    manifest: sim.DriftManifest


def as_prediction_log(records: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Challenger statuses like the service's (80% ok) and the log's dtypes."""
    status = rng.choice(
        np.array(["ok", "shed", "failed", "sampled_out"], dtype=object),
        size=len(records),
        p=[0.8, 0.1, 0.05, 0.05],
    )
    out = records.assign(challenger_status=status)
    out["challenger_label"] = out["challenger_label"].astype("Int64")
    not_ok = status != "ok"
    out.loc[not_ok, "challenger_probability"] = np.nan
    out.loc[not_ok, "challenger_label"] = pd.NA
    out["event_time"] = out["event_time"].dt.tz_localize("UTC")
    return out


def scenario(
    name: str,
    *,
    seed: int = 7,
    n_production: int = 20_000,
    labels_as_of: str | pd.Timestamp | None = None,
    **overrides: Any,
) -> Scenario:
    """Reference and a prediction-log-like analysis frame under one simulator scenario.

    ``labels_as_of``: labels whose ``label_available_at`` is at or before this time are joined
    (NaN otherwise); None joins no label.
    """
    settings = {**SCENARIO_SETTINGS[name], **overrides}
    spec = sim.ScenarioSpec(
        name=name,
        onset=settings.pop("onset", 0.5),
        magnitude=settings.pop("magnitude", 0.0),
        feature=settings.pop("feature", None),
        new_category_value=settings.pop("new_category_value", None),
    )
    events = history(seed)
    records, truth, manifest = sim.simulate_production(
        n_production,
        seed,
        production_start(),
        PRODUCTION_DAYS,
        LABEL_DELAY_DAYS,
        spec,
        sim.feature_std(events),
        id_offset=len(events),
    )
    ref = reference(seed)
    medians = ref[list(sim.NUMERIC_FEATURES)].median()
    analysis = score(records, medians, np.random.default_rng([seed, 11]))
    analysis["churned"] = analysis["churned"].astype(float)
    if labels_as_of is None:
        analysis["churned"] = np.nan
    else:
        late = truth["label_available_at"].to_numpy() > np.datetime64(pd.Timestamp(labels_as_of))
        analysis.loc[late, "churned"] = np.nan
    analysis = as_prediction_log(analysis, np.random.default_rng([seed, 12]))
    return Scenario(ref, analysis, manifest)
