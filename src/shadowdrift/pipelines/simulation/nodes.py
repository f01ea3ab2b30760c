"""Nodes of the simulation pipeline: thin wrappers around ``shadowdrift.simulation``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from shadowdrift import simulation


def simulate_events(params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled customer history and each row's true churn probability."""
    p = simulation.parse_simulation_params(params)
    return simulation.simulate_history(
        p.n_events, p.seed, p.history_start, p.history_days, p.label_delay_days
    )


def simulate_production(
    raw_events: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Production records after the history, drifted per the chosen scenario, and its manifest."""
    p = simulation.parse_simulation_params(params)
    records, truth, manifest = simulation.simulate_production(
        n=p.n_production,
        seed=p.seed,
        start=p.production_start,
        days=p.production_days,
        label_delay_days=p.label_delay_days,
        spec=p.scenario,
        reference_std=simulation.feature_std(raw_events),
        id_offset=int(raw_events[simulation.ID_COLUMN].max()) + 1,
    )
    return records, truth, manifest.to_dict()
