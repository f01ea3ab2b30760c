"""The drift baseline (src/shadowdrift/drift_baseline.py, ``drift.baseline``): which rows, checks,
what fit_reference makes of them, and the warning on a baseline with too few chunks."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from shadowdrift import simulation as sim
from shadowdrift.datasets import OptionalDataset
from shadowdrift.drift_baseline import (
    FOR_FEATURES,
    FOR_PERFORMANCE,
    WINDOW,
    BaselineError,
    select_baseline,
    split_baseline,
    windows_needed,
)
from shadowdrift.drift_monitor import compute_drift, fit_reference
from shadowdrift.drift_params import BaselineParams, DriftConfigError, DriftParams
from shadowdrift.drift_report import build_figures, build_summary, render_html
from shadowdrift.schema import DataValidationError
from tests import test_drift_support as support

PARAMS_KEYS = ("features", "performance")


@pytest.fixture(scope="module")
def windows() -> dict[str, pd.DataFrame]:
    """The simulator's 50,000-row history split 60/20/20 by time, as data_engineering does."""
    history = support.history()
    n = len(history)
    return {
        "train": history.iloc[: int(0.6 * n)].reset_index(drop=True),
        "test": history.iloc[int(0.6 * n) : int(0.8 * n)].reset_index(drop=True),
        "reference": history.iloc[int(0.8 * n) :].reset_index(drop=True),
    }


def _select(windows, **params):
    return select_baseline(windows, support.schema(), BaselineParams(**params))


def _scored(rows: pd.DataFrame) -> pd.DataFrame:
    medians = rows[list(sim.NUMERIC_FEATURES)].median()
    return support.score(rows, medians, np.random.default_rng(5))


def test_by_default_features_span_all_history_and_performance_the_out_of_sample_windows(windows):
    rows, info = _select(windows)
    assert len(rows) == sum(len(w) for w in windows.values())  # every row once
    by_window = rows.groupby(WINDOW)[[FOR_FEATURES, FOR_PERFORMANCE]].all()
    assert by_window.loc["train"].tolist() == [True, False]
    assert by_window.loc["test"].tolist() == [True, True]
    assert by_window.loc["reference"].tolist() == [True, True]
    assert not rows.loc[rows[WINDOW] == "train", FOR_PERFORMANCE].any()
    assert info["features"]["source"] == "all_history"
    assert info["features"]["windows"] == ["train", "test", "reference"]
    assert info["performance"]["windows"] == ["test", "reference"]
    assert info["performance"]["n_rows"] == len(windows["test"]) + len(windows["reference"])
    assert info["history_end"] == str(windows["reference"]["event_time"].max())
    features, performance = split_baseline(rows)
    assert len(features) == len(rows) and WINDOW not in features.columns
    assert len(performance) == info["performance"]["n_rows"]


def test_the_reference_window_alone_is_the_old_baseline(windows):
    rows, _ = _select(windows, features="reference", performance="reference")
    assert len(rows) == len(windows["reference"])
    assert rows[FOR_FEATURES].all() and rows[FOR_PERFORMANCE].all()
    assert windows_needed(BaselineParams(features="reference", performance="reference")) == (
        "reference",
    )


def test_a_date_range_is_half_open_and_may_span_training_for_the_features(windows):
    start, end = "2024-03-01", "2024-06-01"
    rows, info = _select(windows, features="date_range", start=start, end=end)
    features = rows.loc[rows[FOR_FEATURES]]
    times = features["event_time"]
    assert times.min() >= pd.Timestamp(start) and times.max() < pd.Timestamp(end)
    history = pd.concat(windows.values())["event_time"]
    assert len(features) == int(((history >= start) & (history < end)).sum())
    assert info["features"]["range_start"] == "2024-03-01T00:00:00"
    assert set(features[WINDOW]) == {"train"}


def test_a_performance_range_that_reaches_into_training_is_refused(windows):
    train_end = windows["train"]["event_time"].max()
    with pytest.raises(BaselineError, match=r"drift\.baseline\.start .*reaches into the training"):
        _select(windows, performance="date_range", start="2024-06-01")
    with pytest.raises(BaselineError, match=r"drift\.baseline\.start \(null\)"):
        _select(windows, performance="date_range", end="2024-12-01")
    after = (train_end + pd.Timedelta(seconds=1)).isoformat()
    rows, _ = _select(windows, performance="date_range", start=after)
    performance = rows.loc[rows[FOR_PERFORMANCE]]
    assert set(performance[WINDOW]) == {"test", "reference"}
    assert performance["event_time"].min() > train_end


def test_an_empty_range_names_the_key(windows):
    with pytest.raises(BaselineError, match=r"drift\.baseline\.features \(date_range\) selects no"):
        _select(windows, features="date_range", start="2030-01-01")


def test_raw_reference_is_optional_until_chosen(windows):
    # absent and not chosen: not even read
    rows, _ = select_baseline(
        {**windows, "raw_reference": None}, support.schema(), BaselineParams()
    )
    assert "raw_reference" not in set(rows[WINDOW])
    with pytest.raises(BaselineError, match=r"drift\.baseline\.features is raw_reference.*"):
        select_baseline(
            {**windows, "raw_reference": None},
            support.schema(),
            BaselineParams(features="raw_reference"),
        )


def test_raw_reference_is_validated_and_serves_as_a_baseline(windows):
    other, _ = sim.simulate_history(3000, 11, "2024-01-01", 365, 30)
    other["customer_id"] = other["customer_id"] + 10_000_000  # other customers
    rows, info = select_baseline(
        {**windows, "raw_reference": other},
        support.schema(),
        BaselineParams(features="raw_reference", performance="raw_reference"),
    )
    assert set(rows[WINDOW]) == {"raw_reference"} and len(rows) == len(other)
    assert info["performance"]["source"] == "raw_reference"
    # for the features only, labels are not needed
    unlabelled = other.drop(columns="churned")
    rows, _ = select_baseline(
        {**windows, "raw_reference": unlabelled},
        support.schema(),
        BaselineParams(features="raw_reference"),
    )
    assert rows.loc[rows[WINDOW] == "raw_reference", "churned"].isna().all()
    bad = other.assign(contract_type="weekly")
    with pytest.raises(DataValidationError, match="raw_reference"):
        select_baseline(
            {**windows, "raw_reference": bad},
            support.schema(),
            BaselineParams(features="raw_reference"),
        )


def test_raw_reference_with_training_rows_is_refused_for_performance(windows):
    leaked = pd.concat([windows["reference"].head(500), windows["train"].tail(3)])
    with pytest.raises(BaselineError, match=r"3 row\(s\) of the training window"):
        select_baseline(
            {**windows, "raw_reference": leaked},
            support.schema(),
            BaselineParams(performance="raw_reference"),
        )
    # the same rows are fine as a features baseline
    select_baseline(
        {**windows, "raw_reference": leaked},
        support.schema(),
        BaselineParams(features="raw_reference"),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"performance": "all_history"}, r"performance cannot be all_history"),
        ({"features": "date_range"}, r"features is date_range: set drift\.baseline\.start"),
        ({"start": "2024-01-01"}, r"start/end are set but neither"),
        (
            {"features": "date_range", "start": "2024-02-01", "end": "2024-01-01"},
            r"start .* must be before",
        ),
        ({"features": "date_range", "start": "soon"}, r"drift\.baseline\.start: 'soon'"),
        ({"min_chunks": 0}, r"drift\.baseline\.min_chunks must be an integer of at least 1"),
        ({"features": "history"}, r"drift\.baseline\.features must be one of"),
    ],
)
def test_bad_baseline_parameters_name_the_key(raw, message):
    with pytest.raises(DriftConfigError, match=message):
        DriftParams.from_params({"baseline": raw})


def test_dates_in_parameters_are_normalised_to_utc():
    params = BaselineParams(features="date_range", start="2024-01-01T02:00:00+02:00")
    assert params.start == "2024-01-01T00:00:00"


@pytest.mark.slow
def test_fit_reference_fits_each_statistic_on_its_baseline(windows):
    rows, _ = _select(windows)
    scored = _scored(rows)
    # the pipeline scores the performance rows only: the rest carries no score
    scored.loc[~scored[FOR_PERFORMANCE], ["champion_probability", "challenger_probability"]] = (
        np.nan
    )
    fitted = fit_reference(scored, support.schema(), support.THRESHOLD, DriftParams())
    n_features, n_performance = len(rows), int(rows[FOR_PERFORMANCE].sum())
    assert [part.counts.n_rows for part in fitted.psi] == [n_features, n_performance]
    assert fitted.psi[1].binning.features == ("champion_probability",)
    info = fitted.info["baseline"]
    assert info["features"]["windows"] == ["train", "test", "reference"]
    assert info["performance"]["windows"] == ["test", "reference"]
    assert info["features"]["source"] == "all_history"
    assert info["features"]["n_rows"] == n_features
    assert info["performance"]["n_rows"] == n_performance
    assert info["features"]["complete_chunks"] >= 50  # a year of weeks
    assert fitted.info["warnings"] == []
    assert fitted.nannyml.baseline_chunks["features"]["n_rows"].sum() == n_features
    assert fitted.nannyml.baseline_chunks["performance"]["n_rows"].sum() == n_performance
    assert fitted.baseline_size.features == info["features"]["complete_chunks"]
    data = support.scenario("none", n_production=12000)
    results = compute_drift(data.analysis, fitted)
    assert results.decision["decision"] == "no_retrain", results.decision["reasons"]
    assert set(results.psi["feature"]) == {*support.schema().features, "champion_probability"}


@pytest.mark.slow
def test_a_baseline_below_min_chunks_warns_in_the_log_and_atop_the_report(caplog):
    data = support.scenario("new_category", n_production=8000)
    reference = data.reference.iloc[-3000:]  # three weeks: two complete chunks
    with caplog.at_level(logging.WARNING, logger="shadowdrift.drift_monitor"):
        fitted = fit_reference(reference, support.schema(), support.THRESHOLD, DriftParams())
    assert any("fewer than drift.baseline.min_chunks=6" in r.message for r in caplog.records)
    assert len(fitted.info["warnings"]) == 2  # the same frame is both baselines
    results = compute_drift(data.analysis, fitted)
    summary = build_summary(results)
    assert list(summary)[:6] == [
        "format",
        "version",
        "title",
        "generated_at",
        "warnings",
        "baseline",
    ]
    assert "min_chunks=6" in summary["warnings"][0]
    decision = results.decision
    held = [r for r in decision["reasons_not_acted_on"] if r["rule"] == "multivariate"]
    assert held and "min_chunks" in held[0]["why"]
    assert not any(r["rule"] == "multivariate" for r in decision["reasons"])
    # rules with their own thresholds still act: the new category is found
    assert decision["decision"] == "retrain"
    assert any(r["rule"] == "unseen_categories" for r in decision["reasons"])
    html = render_html(summary, build_figures(results))
    assert html.index("Baseline warning") < html.index("Decision:")
    assert "Alerts not acted on" in html


def test_optional_dataset_loads_absent_until_the_file_exists(tmp_path):
    path = tmp_path / "reference.parquet"
    dataset = OptionalDataset(dataset={"type": "pandas.ParquetDataset", "filepath": str(path)})
    assert dataset.load() is None
    assert not dataset.exists()
    frame = pd.DataFrame({"a": [1, 2]})
    frame.to_parquet(path)
    assert dataset.exists()
    pd.testing.assert_frame_equal(dataset.load(), frame)
    with pytest.raises(Exception, match="needs `dataset:`"):
        OptionalDataset(dataset="pandas.ParquetDataset")
