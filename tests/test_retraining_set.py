"""The rolled training set: history plus labelled production, the newest days held out."""

from __future__ import annotations

import pandas as pd
import pytest

from shadowdrift import simulation as sim
from shadowdrift.retraining_set import (
    RetrainingConfigError,
    RetrainingNotCalledFor,
    RetrainingParams,
    check_decision,
    labelled_production,
    roll_window,
    split_window,
)
from shadowdrift.schema import DataValidationError, parse_schema


@pytest.fixture(scope="module")
def schema(base_params):
    return parse_schema(base_params["schema"])


@pytest.fixture(scope="module")
def history():
    events, _ = sim.simulate_history(3000, seed=1, start="2024-01-01", days=100, label_delay_days=0)
    return events


def _analysis(schema, n=1200, start="2024-04-10", days=60, labelled_share=0.75):
    """Prediction-log rows as the drift pipeline leaves them: features, UTC event time, target."""
    events, _ = sim.simulate_history(n, seed=2, start=start, days=days, label_delay_days=0)
    log = events.rename(columns={schema.timestamp: "event_time"})
    log["event_time"] = log["event_time"].dt.tz_localize("UTC")
    log[schema.id] = log[schema.id].astype(str)
    log["request_id"] = "r"
    log["record_index"] = range(n)
    log["champion_probability"] = 0.5
    unlabelled = log.index >= int(n * labelled_share)
    log[schema.target] = log[schema.target].astype(float).where(~unlabelled)
    return log


def test_only_labelled_records_join_on_the_historys_time_line(schema, history):
    production = labelled_production(_analysis(schema), schema, like=history)
    assert len(production) == 900
    assert list(production.columns) == list(schema.columns)
    assert production[schema.timestamp].dt.tz is None  # the history's convention
    assert production[schema.target].isin([0, 1]).all()


def test_unseen_categories_and_missing_values_are_kept_but_broken_records_are_named(
    schema, history
):
    analysis = _analysis(schema)
    analysis.loc[0, "payment_method"] = "digital_wallet"
    analysis.loc[1, "satisfaction_score"] = float("nan")
    production = labelled_production(analysis, schema, like=history)
    assert "digital_wallet" in set(production["payment_method"])
    assert production["satisfaction_score"].isna().sum() == 1
    analysis.loc[2, "tenure_months"] = 999
    with pytest.raises(DataValidationError, match="tenure_months"):
        labelled_production(analysis, schema, like=history)


def test_the_window_rolls_forward_and_takes_in_production(schema, history):
    production = labelled_production(_analysis(schema), schema, like=history)
    params = RetrainingParams.from_params(
        {"window_days": 60, "test_days": 10, "reference_days": 10}
    )
    events, summary = roll_window(history, production, schema, params)
    end = production[schema.timestamp].max()
    assert events[schema.timestamp].min() > end - pd.Timedelta(days=60)
    assert summary["rows_by_source"]["production"] == 900
    assert 0 < summary["rows_by_source"]["history"] < len(history)
    split, split_summary = split_window(events, schema, params)
    assert split.reference[schema.timestamp].min() >= end - pd.Timedelta(days=10)
    assert split.test[schema.timestamp].min() >= end - pd.Timedelta(days=20)
    assert split.train[schema.timestamp].max() < split.test[schema.timestamp].min()
    assert split_summary["windows"]["reference"]["production_share"] == 1.0
    assert 0 < split_summary["windows"]["train"]["production_share"] < 1


def test_production_can_be_left_out(schema, history):
    production = labelled_production(_analysis(schema), schema, like=history)
    params = RetrainingParams.from_params({"include_production": False, "window_days": None})
    events, summary = roll_window(history, production, schema, params)
    assert len(events) == len(history) and summary["rows_by_source"] == {"history": 3000}


def test_a_window_too_thin_stops_with_the_parameter_named(schema, history):
    params = RetrainingParams.from_params({"min_rows_per_window": 5000, "window_days": None})
    events, _ = roll_window(history, history.iloc[:0], schema, params)
    with pytest.raises(ValueError, match=r"retraining\.min_rows_per_window"):
        split_window(events, schema, params)


def test_retraining_runs_only_when_drift_asked_for_it():
    check_decision({"decision": "retrain"}, RetrainingParams())
    with pytest.raises(RetrainingNotCalledFor, match="require_decision=false"):
        check_decision({"decision": "no_retrain", "summary": "quiet"}, RetrainingParams())
    check_decision({"decision": "no_retrain"}, RetrainingParams(require_decision=False))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"windw_days": 3}, "unknown key"),
        ({"window_days": -1}, "window_days must be a positive"),
        ({"test_days": "ten"}, "test_days must be a positive"),
        ({"window_days": 20, "test_days": 10, "reference_days": 10}, "must exceed"),
        ({"min_rows_per_window": 0}, "min_rows_per_window"),
        ({"include_production": "yes"}, "include_production must be true or false"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(RetrainingConfigError, match=message):
        RetrainingParams.from_params(params)
