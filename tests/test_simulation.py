"""The simulator: determinism, realism, calibrated truth and each drift scenario's effect."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from shadowdrift import simulation as sim

START, DAYS, DELAY = "2024-01-01", 365, 30


def history(n: int = 20000, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    return sim.simulate_history(n, seed, START, DAYS, DELAY)


def production(spec: sim.ScenarioSpec, n: int = 20000, seed: int = 3):
    events, _ = history(seed=seed)
    return sim.simulate_production(
        n, seed, "2025-01-01", 90, DELAY, spec, sim.feature_std(events), id_offset=len(events)
    )


@pytest.fixture(scope="module")
def events_and_truth():
    return history()


def test_same_seed_same_data_and_different_seed_different_data():
    a, ta = history(2000, seed=11)
    b, tb = history(2000, seed=11)
    c, _ = history(2000, seed=12)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ta, tb)
    assert not a.equals(c)


def test_history_has_the_documented_shape(events_and_truth):
    events, truth = events_and_truth
    assert list(events.columns) == [
        sim.ID_COLUMN,
        sim.TIMESTAMP_COLUMN,
        *sim.FEATURES,
        sim.TARGET_COLUMN,
    ]
    assert 15 <= len(sim.FEATURES) <= 20
    assert events[sim.ID_COLUMN].is_unique
    assert events[sim.TIMESTAMP_COLUMN].is_monotonic_increasing
    span = events[sim.TIMESTAMP_COLUMN].max() - events[sim.TIMESTAMP_COLUMN].min()
    assert span > pd.Timedelta(days=300), "timestamps should spread over months"
    assert not events[list(sim.FEATURES)].isna().any().any()
    assert (truth[sim.ID_COLUMN].to_numpy() == events[sim.ID_COLUMN].to_numpy()).all()
    assert (truth[sim.LABEL_AVAILABLE_COLUMN] > events[sim.TIMESTAMP_COLUMN]).all()


def test_label_rate_is_realistic(events_and_truth):
    events, _ = events_and_truth
    assert 0.20 <= events[sim.TARGET_COLUMN].mean() <= 0.30


def test_total_charges_are_consistent_with_tenure_and_monthly_charges(events_and_truth):
    events, _ = events_and_truth
    monthly, tenure, total = (
        events[c] for c in ("monthly_charges", "tenure_months", "total_charges")
    )
    # the bill accumulates over the tenure (plus the current, partial month), with price changes
    assert (total >= 0.9 * monthly * tenure - 0.01).all()
    assert (total <= 1.05 * monthly * (tenure + 1) + 0.01).all()
    assert np.corrcoef(total, monthly * tenure)[0, 1] > 0.98


def test_true_probabilities_are_calibrated(events_and_truth):
    events, truth = events_and_truth
    p = truth[sim.TRUE_PROBABILITY_COLUMN].to_numpy()
    y = events[sim.TARGET_COLUMN].to_numpy()
    bins = np.quantile(p, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 9)
    for b in range(10):
        in_bin = which == b
        observed, expected = y[in_bin].mean(), p[in_bin].mean()
        # binomial standard error with a generous margin
        se = np.sqrt(expected * (1 - expected) / in_bin.sum())
        assert abs(observed - expected) < 4 * se + 0.01, (
            f"bin {b}: {observed:.3f} vs {expected:.3f}"
        )


def test_the_label_model_is_nonlinear_enough_that_boosting_beats_a_linear_model(events_and_truth):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    events, truth = events_and_truth
    x, y = events[list(sim.FEATURES)], events[sim.TARGET_COLUMN]
    train, test = slice(0, 14000), slice(14000, None)
    encode = OneHotEncoder(handle_unknown="ignore")
    linear = make_pipeline(
        ColumnTransformer(
            [
                ("n", StandardScaler(), list(sim.NUMERIC_FEATURES)),
                ("c", encode, list(sim.CATEGORICAL_FEATURES)),
            ]
        ),
        LogisticRegression(max_iter=2000),
    ).fit(x[train], y[train])
    boosted = make_pipeline(
        ColumnTransformer(
            [
                ("n", "passthrough", list(sim.NUMERIC_FEATURES)),
                ("c", encode, list(sim.CATEGORICAL_FEATURES)),
            ]
        ),
        HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0),
    ).fit(x[train], y[train])
    auc_linear = roc_auc_score(y[test], linear.predict_proba(x[test])[:, 1])
    auc_boosted = roc_auc_score(y[test], boosted.predict_proba(x[test])[:, 1])
    auc_oracle = roc_auc_score(y[test], truth[sim.TRUE_PROBABILITY_COLUMN][test])
    assert auc_boosted > auc_linear + 0.01
    assert auc_oracle >= auc_boosted - 0.005


def _after_onset(records: pd.DataFrame, manifest: sim.DriftManifest) -> np.ndarray:
    return (records[sim.TIMESTAMP_COLUMN] >= pd.Timestamp(manifest.onset_time)).to_numpy()


def test_none_scenario_has_no_drift():
    records, _, manifest = production(sim.ScenarioSpec("none"))
    late = _after_onset(records, manifest)
    assert manifest.n_rows_affected == 0 and manifest.drifted_features == []
    for col in ("monthly_charges", "satisfaction_score", "tenure_months"):
        early_mean, late_mean = records.loc[~late, col].mean(), records.loc[late, col].mean()
        assert abs(late_mean - early_mean) < 0.05 * records[col].std()
    assert set(records["payment_method"]) == set(sim.PAYMENT_METHODS)
    assert not records[list(sim.FEATURES)].isna().any().any()


@pytest.mark.parametrize("magnitude", [0.5, 1.0])
def test_covariate_shift_moves_the_feature_by_the_configured_std(magnitude):
    events, _ = history()
    std = events["monthly_charges"].std()
    spec = sim.ScenarioSpec(
        "covariate_shift", onset=0.5, magnitude=magnitude, feature="monthly_charges"
    )
    records, _, manifest = production(spec)
    late = _after_onset(records, manifest)
    shift = (
        records.loc[late, "monthly_charges"].mean() - records.loc[~late, "monthly_charges"].mean()
    )
    assert shift == pytest.approx(magnitude * std, rel=0.1)
    assert manifest.drifted_features == ["monthly_charges"]
    assert manifest.derived_features_affected == ["total_charges"]
    assert manifest.n_rows_affected == late.sum()
    assert 0.45 < late.mean() < 0.55, "onset 0.5 is halfway through the window"


def test_gradual_shift_ramps_up_over_time():
    spec = sim.ScenarioSpec("gradual", onset=0.25, magnitude=1.0, feature="monthly_charges")
    records, _, manifest = production(spec)
    late = records.loc[_after_onset(records, manifest)]
    quarters = np.array_split(late["monthly_charges"].to_numpy(), 3)
    means = [q.mean() for q in quarters]
    assert means[0] < means[1] < means[2]


def test_new_category_appears_only_after_the_onset_in_the_configured_share():
    spec = sim.ScenarioSpec(
        "new_category",
        onset=0.5,
        magnitude=0.3,
        feature="payment_method",
        new_category_value="digital_wallet",
    )
    records, _, manifest = production(spec)
    late = _after_onset(records, manifest)
    is_new = records["payment_method"] == "digital_wallet"
    assert not is_new[~late].any()
    assert is_new[late].mean() == pytest.approx(0.3, abs=0.03)
    assert manifest.n_rows_affected == is_new.sum()


def test_concept_drift_changes_labels_not_features():
    none, none_truth, _ = production(sim.ScenarioSpec("none"))
    drifted, drifted_truth, manifest = production(
        sim.ScenarioSpec("concept_drift", onset=0.5, magnitude=1.0)
    )
    pd.testing.assert_frame_equal(none[list(sim.FEATURES)], drifted[list(sim.FEATURES)])
    late = _after_onset(drifted, manifest)
    p_none = none_truth[sim.TRUE_PROBABILITY_COLUMN].to_numpy()
    p_drift = drifted_truth[sim.TRUE_PROBABILITY_COLUMN].to_numpy()
    assert np.allclose(p_none[~late], p_drift[~late])
    # The relation changed enough that the old truth ranks post-onset customers much worse.
    from sklearn.metrics import roc_auc_score

    y_late = drifted[sim.TARGET_COLUMN].to_numpy()[late]
    assert roc_auc_score(y_late, p_none[late]) < roc_auc_score(y_late, p_drift[late]) - 0.05
    assert manifest.concept_changed and manifest.drifted_features == []


def test_missing_values_hide_a_share_of_the_feature_after_the_onset():
    spec = sim.ScenarioSpec(
        "missing_values", onset=0.5, magnitude=0.3, feature="satisfaction_score"
    )
    records, _, manifest = production(spec)
    late = _after_onset(records, manifest)
    missing = records["satisfaction_score"].isna()
    assert not missing[~late].any()
    assert missing[late].mean() == pytest.approx(0.3, abs=0.03)
    assert manifest.n_rows_affected == missing.sum()


def test_production_ids_continue_after_the_history():
    records, _, _ = production(sim.ScenarioSpec("none"), n=500)
    assert records[sim.ID_COLUMN].min() == 20000
    assert records[sim.ID_COLUMN].is_unique


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scenario": "earthquake"}, "unknown scenario 'earthquake'"),
        ({"onset": 1.5}, "simulation.onset"),
        ({"n_events": "many"}, "simulation.n_events must be an integer"),
        ({"history_start": "not a date"}, "simulation.history_start"),
        (
            {
                "scenario": "covariate_shift",
                "scenarios": {"covariate_shift": {"feature": "region", "magnitude": 1}},
            },
            "must be a numeric feature",
        ),
        (
            {
                "scenario": "new_category",
                "scenarios": {"new_category": {"feature": "payment_method", "magnitude": 2}},
            },
            "fraction of rows",
        ),
        ({"bogus": 1}, "unknown parameter(s) bogus"),
    ],
)
def test_bad_simulation_parameters_name_the_parameter(base_params, change, message):
    params = {**base_params["simulation"], **change}
    with pytest.raises(
        sim.SimulationConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        sim.parse_simulation_params(params)


def test_a_million_rows_in_under_ten_seconds():
    started = time.perf_counter()
    events, _ = sim.simulate_history(1_000_000, 1, START, DAYS, DELAY)
    elapsed = time.perf_counter() - started
    assert len(events) == 1_000_000
    assert elapsed < 10, f"took {elapsed:.1f} s"
