"""Tests for the mergeable PSI (src/shadowdrift/psi.py): hand-computed values and properties."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest

from shadowdrift.psi import (
    DEFAULT_EPS,
    BinCounts,
    NumericBins,
    PSIBinning,
    PSIError,
    PSIThresholds,
    classify_psi,
    merge_counts,
    psi,
    psi_by_chunk,
    psi_from_counts,
)
from shadowdrift.simulation import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    ScenarioSpec,
    feature_std,
    simulate_history,
    simulate_production,
)


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "score": rng.beta(2.0, 5.0, n),
            "k": rng.choice([1, 2, 3], size=n, p=[0.5, 0.3, 0.2]),
            "c": rng.choice(np.array(["a", "b", "c"], dtype=object), size=n, p=[0.6, 0.3, 0.1]),
        }
    )


def _binning(reference: pd.DataFrame) -> PSIBinning:
    return PSIBinning.fit(reference, numeric=["x", "score", "k"], categorical=["c"])


def _assert_counts_equal(left: BinCounts, right: BinCounts) -> None:
    assert left.n_rows == right.n_rows
    assert list(left.counts) == list(right.counts)
    for name in left.counts:
        assert left.counts[name].dtype == np.int64
        np.testing.assert_array_equal(left.counts[name], right.counts[name])


# --- hand-computed values ------------------------------------------------------------------------


@pytest.fixture
def hand_binning() -> PSIBinning:
    return PSIBinning.from_dict(
        {
            "format": "shadowdrift.psi_binning",
            "version": 1,
            "n_bins": 3,
            "features": [
                {"name": "x", "kind": "numeric", "edges": [0.0, 1.0]},
                {"name": "c", "kind": "categorical", "categories": ["a", "b"]},
            ],
        }
    )


def test_psi_matches_hand_computed_value(hand_binning):
    # x bins: [-inf, 0), [0, 1), [1, +inf), missing. c bins: a, b, unseen, missing.
    reference = pd.DataFrame(
        {
            "x": [-1.0, -0.5, 0.2, 0.5, 0.7, 1.0, 3.0, 5.0],
            "c": ["a", "a", "b", "b", "b", None, "a", "b"],
        }
    )
    analysis = pd.DataFrame(
        {
            "x": [-2.0, 0.0, 0.9, 2.0, np.nan, np.nan],
            "c": ["a", "z", "z", "b", "a", "a"],
        }
    )
    ref_counts = hand_binning.count(reference)
    ana_counts = hand_binning.count(analysis)
    np.testing.assert_array_equal(ref_counts.counts["x"], [2, 3, 3, 0])
    np.testing.assert_array_equal(ana_counts.counts["x"], [1, 2, 1, 2])
    np.testing.assert_array_equal(ref_counts.counts["c"], [3, 4, 0, 1])
    np.testing.assert_array_equal(ana_counts.counts["c"], [3, 1, 2, 0])

    eps = 1e-4
    # x: p = reference shares, q = analysis shares; the empty missing bin is clipped to eps.
    p = [2 / 8, 3 / 8, 3 / 8, eps]
    q = [1 / 6, 2 / 6, 1 / 6, 2 / 6]
    expected_x = (
        (p[0] - q[0]) * math.log(p[0] / q[0])
        + (p[1] - q[1]) * math.log(p[1] / q[1])
        + (p[2] - q[2]) * math.log(p[2] / q[2])
        + (p[3] - q[3]) * math.log(p[3] / q[3])
    )
    p = [3 / 8, 4 / 8, eps, 1 / 8]
    q = [3 / 6, 1 / 6, 2 / 6, eps]
    expected_c = (
        (p[0] - q[0]) * math.log(p[0] / q[0])
        + (p[1] - q[1]) * math.log(p[1] / q[1])
        + (p[2] - q[2]) * math.log(p[2] / q[2])
        + (p[3] - q[3]) * math.log(p[3] / q[3])
    )
    result = psi(ref_counts, ana_counts, eps=eps)
    assert result["x"] == pytest.approx(expected_x, rel=1e-12)
    assert result["c"] == pytest.approx(expected_c, rel=1e-12)


def test_psi_from_counts_of_a_textbook_pair():
    # Two bins, 50/50 against 25/75: 0.25 * ln 2 + 0.25 * ln 2 ... written out.
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.5 - 0.75) * math.log(0.5 / 0.75)
    assert psi_from_counts(np.array([50, 50]), np.array([1, 3])) == pytest.approx(expected)


# --- properties --------------------------------------------------------------------------------


def test_psi_is_zero_for_identical_samples():
    frame = _frame(5_000, seed=1)
    binning = _binning(frame)
    shuffled = frame.sample(frac=1.0, random_state=3)
    result = psi(binning.count(frame), binning.count(shuffled))
    assert result == dict.fromkeys(binning.features, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_psi_is_non_negative_and_symmetric(seed):
    reference = _frame(2_000, seed=seed)
    analysis = _frame(500, seed=seed + 100, shift=0.3 * seed)
    binning = _binning(reference)
    forward = psi(binning.count(reference), binning.count(analysis))
    backward = psi(binning.count(analysis), binning.count(reference))
    assert all(v >= 0.0 for v in forward.values())
    assert forward == backward  # exact, not approximate


def test_merged_partition_counts_equal_the_whole():
    frame = _frame(3_001, seed=4)
    frame.loc[frame.index[::97], "x"] = np.nan
    binning = _binning(frame.iloc[:1000])
    parts = [frame.iloc[:1], frame.iloc[1:2000], frame.iloc[2000:]]
    counts = [binning.count(part) for part in parts]
    whole = binning.count(frame)
    _assert_counts_equal(merge_counts(counts), whole)
    _assert_counts_equal(counts[0] + counts[1] + counts[2], whole)
    _assert_counts_equal(sum(counts), whole)


def test_count_by_chunk_equals_counting_each_chunk():
    frame = _frame(4_000, seed=5)
    binning = _binning(frame)
    key = pd.Series(np.random.default_rng(0).choice(["w1", "w2", "w3", "w4"], len(frame)))
    chunks = binning.count_by_chunk(frame, key)
    assert list(chunks.chunks) == ["w1", "w2", "w3", "w4"]
    for label in chunks.chunks:
        _assert_counts_equal(chunks.chunk(label), binning.count(frame[(key == label).to_numpy()]))
    _assert_counts_equal(chunks.total(), binning.count(frame))


def test_psi_by_chunk_matches_psi_per_chunk():
    reference = _frame(5_000, seed=6)
    analysis = _frame(3_000, seed=7, shift=0.4)
    binning = _binning(reference)
    ref_counts = binning.count(reference)
    key = np.arange(len(analysis)) // 1_000
    table = psi_by_chunk(ref_counts, binning.count_by_chunk(analysis, key))
    assert list(table.columns) == ["chunk", "feature", "psi", "severity", "n_rows", "n_missing"]
    assert len(table) == 3 * len(binning.features)
    for label in range(3):
        expected = psi(ref_counts, binning.count(analysis[key == label]))
        rows = table[table["chunk"] == label].set_index("feature")
        assert rows["psi"].to_dict() == pytest.approx(expected, rel=1e-12)
        assert (rows["n_rows"] == 1_000).all()
    x_rows = table[table["feature"] == "x"]
    assert (x_rows["severity"] != "ok").all()


def test_chunk_counts_from_partitions_merge_by_label():
    frame = _frame(3_000, seed=8)
    binning = _binning(frame)
    key = np.repeat(np.array(["a", "b", "c"]), 1_000)
    # The partition boundary cuts chunk "b" in two; the second partition has no chunk "a".
    first = binning.count_by_chunk(frame.iloc[:1_500], key[:1_500])
    second = binning.count_by_chunk(frame.iloc[1_500:], key[1_500:])
    merged = first + second
    whole = binning.count_by_chunk(frame, key)
    assert list(merged.chunks) == list(whole.chunks)
    np.testing.assert_array_equal(merged.n_rows, whole.n_rows)
    for name in binning.features:
        np.testing.assert_array_equal(merged.counts[name], whole.counts[name])


# --- bins --------------------------------------------------------------------------------------


def test_unseen_category_lands_in_unseen_bin_and_raises_psi():
    reference = _frame(2_000, seed=9)
    binning = _binning(reference)
    spec = binning.specs["c"]
    assert spec.categories == ("a", "b", "c")
    ref_counts = binning.count(reference)
    baseline = psi(ref_counts, binning.count(reference.iloc[:1_000]))["c"]
    analysis = reference.iloc[:1_000].copy()
    analysis.loc[analysis.index[:100], "c"] = "digital_wallet"
    counts = binning.count(analysis)
    assert counts.counts["c"][spec.unseen_bin] == 100
    assert psi(ref_counts, counts)["c"] > baseline + 0.1


def test_missing_values_land_in_missing_bin():
    reference = _frame(2_000, seed=10)
    binning = _binning(reference)
    analysis = reference.iloc[:500].copy()
    analysis["x"] = analysis["x"].where(np.arange(500) >= 50)  # 50 NaN
    analysis["c"] = analysis["c"].where(np.arange(500) >= 20)  # 20 NaN
    analysis.loc[analysis.index[20:30], "c"] = None
    analysis["k"] = analysis["k"].astype("Int64")
    analysis.loc[analysis.index[:5], "k"] = pd.NA
    counts = binning.count(analysis)
    assert counts.counts["x"][-1] == 50
    assert counts.counts["c"][-1] == 30
    assert counts.counts["k"][-1] == 5
    assert binning.count(reference).counts["x"][-1] == 0
    result = psi(binning.count(reference), counts)
    assert result["x"] > 0.1  # 10% missing against none


def test_values_outside_reference_range_land_in_end_bins():
    reference = pd.DataFrame({"x": np.linspace(0.0, 1.0, 1_001)})
    binning = PSIBinning.fit(reference, {"x": "numeric"}, n_bins=4)
    spec = binning.specs["x"]
    assert spec.edges == (0.25, 0.5, 0.75)
    indices = binning.bin_indices(pd.DataFrame({"x": [-np.inf, -5.0, 0.0, 0.25, 1.0, 7.0, np.inf]}))
    np.testing.assert_array_equal(indices["x"], [0, 0, 0, 1, 3, 3, 3])
    assert binning.labels("x") == [
        "[-inf, 0.25)",
        "[0.25, 0.5)",
        "[0.5, 0.75)",
        "[0.75, +inf)",
        "<missing>",
    ]


@pytest.mark.parametrize("n_edges", [1, 9, 64, 65, 200])
def test_numeric_bins_by_comparison_equal_binary_search(n_edges):
    rng = np.random.default_rng(n_edges)
    edges = np.unique(rng.normal(size=n_edges * 2))[:n_edges]
    spec = NumericBins("x", tuple(edges))
    values = np.concatenate(
        [rng.normal(size=5_000), edges, [-np.inf, np.inf, np.nan, edges[0] - 1e-12]]
    )
    expected = np.searchsorted(np.append(edges, np.nan), values, side="right")
    np.testing.assert_array_equal(spec.bin_index(pd.Series(values)), expected)
    assert spec.bin_index(pd.Series(values)).max() <= spec.n_bins - 1


def test_tied_discrete_features_get_one_bin_per_value():
    rng = np.random.default_rng(11)
    reference = pd.DataFrame(
        {
            "k": rng.choice([1, 2, 3], size=5_000, p=[0.5, 0.3, 0.2]),
            "flag": (rng.random(5_000) < 0.05).astype(np.int64),
            "constant": np.full(5_000, 7),
        }
    )
    binning = PSIBinning.fit(reference, numeric=["k", "flag", "constant"])
    assert binning.specs["k"].edges == (2.0, 3.0)
    assert binning.specs["flag"].edges == (1.0,)
    assert binning.specs["constant"].edges == ()
    counts = binning.count(reference)
    np.testing.assert_array_equal(counts.counts["k"][:3], np.bincount(reference["k"])[1:])
    assert counts.counts["flag"][1] == reference["flag"].sum()
    # Many more ones than the 5% of the reference: clearly drifted.
    analysis = reference.assign(flag=(rng.random(5_000) < 0.5).astype(np.int64))
    assert psi(counts, binning.count(analysis))["flag"] > 0.25


def test_many_ties_give_fewer_quantile_bins():
    rng = np.random.default_rng(12)
    # 60% zeros and a continuous tail: the six zero quantiles collapse into one bin.
    values = rng.permutation(np.r_[np.zeros(6_000), rng.exponential(1.0, 4_000)])
    binning = PSIBinning.fit(pd.DataFrame({"v": values}), numeric=["v"], n_bins=10)
    edges = binning.specs["v"].edges
    assert len(edges) == 4
    counts = binning.count(pd.DataFrame({"v": values})).counts["v"]
    assert counts[0] == (values == 0).sum()


def test_constant_feature_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="shadowdrift.psi"):
        PSIBinning.fit(pd.DataFrame({"z": np.zeros(10)}), numeric=["z"])
    assert "'z'" in caplog.text


def test_half_std_shift_on_simulated_data_stands_out():
    history, _ = simulate_history(20_000, 5, "2024-01-01", 365, 30)
    std = feature_std(history)
    binning = PSIBinning.fit(history, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES)
    ref_counts = binning.count(history)
    results = {}
    for spec in (
        ScenarioSpec("none"),
        ScenarioSpec("covariate_shift", onset=0.0, magnitude=0.5, feature="monthly_charges"),
    ):
        production, _, _ = simulate_production(
            20_000, 5, "2025-01-01", 90, 30, spec, std, id_offset=10**6
        )
        results[spec.name] = psi(ref_counts, binning.count(production))
    assert max(results["none"].values()) < 0.01
    assert results["covariate_shift"]["monthly_charges"] > 0.25
    assert results["covariate_shift"]["monthly_charges"] > 20 * results["none"]["monthly_charges"]


def test_categorical_dtype_and_object_give_same_bins():
    reference = _frame(1_000, seed=13)
    binning = _binning(reference)
    analysis = _frame(1_000, seed=14)
    analysis.loc[analysis.index[:7], "c"] = "new"
    analysis.loc[analysis.index[7:10], "c"] = None
    as_category = analysis.assign(c=analysis["c"].astype("category"))
    np.testing.assert_array_equal(
        binning.bin_indices(analysis)["c"], binning.bin_indices(as_category)["c"]
    )


def test_to_dict_round_trip_gives_identical_counts():
    reference = _frame(2_000, seed=15)
    binning = _binning(reference)
    restored = PSIBinning.from_dict(json.loads(json.dumps(binning.to_dict())))
    assert restored == binning
    analysis = _frame(700, seed=16, shift=0.2)
    _assert_counts_equal(restored.count(analysis), binning.count(analysis))
    counts = binning.count(analysis)
    _assert_counts_equal(BinCounts.from_dict(json.loads(json.dumps(counts.to_dict()))), counts)


# --- severity ----------------------------------------------------------------------------------


def test_classify_psi_defaults_and_parameters():
    assert classify_psi(0.0) == "ok"
    assert classify_psi(0.0999) == "ok"
    assert classify_psi(0.1) == "warn"
    assert classify_psi(0.2499) == "warn"
    assert classify_psi(0.25) == "alert"
    strict = PSIThresholds.from_params({"warn": 0.05, "alert": 0.1})
    assert classify_psi(0.07, strict) == "warn"
    assert strict.classify_array(np.array([0.01, 0.05, 0.5])).tolist() == ["ok", "warn", "alert"]
    assert PSIThresholds.from_params(None) == PSIThresholds()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"warn": 0.3, "alert": 0.2}, "warn <= alert"),
        ({"warn": -0.1}, "warn <= alert"),
        ({"alert": "high"}, "alert must be a finite number"),
        ({"critical": 1.0}, "unknown key"),
    ],
)
def test_bad_thresholds_are_rejected(params, match):
    with pytest.raises(PSIError, match=match):
        PSIThresholds.from_params(params)


def test_classify_rejects_nan():
    with pytest.raises(PSIError, match="cannot classify"):
        classify_psi(float("nan"))


# --- errors ------------------------------------------------------------------------------------


def test_missing_feature_is_named():
    binning = _binning(_frame(100, seed=17))
    with pytest.raises(ValueError, match="'score'"):
        binning.count(_frame(10, seed=18).drop(columns="score"))
    with pytest.raises(ValueError, match="'age'"):
        PSIBinning.fit(_frame(10, seed=18), numeric=["x", "age"])


def test_empty_reference_is_rejected():
    with pytest.raises(PSIError, match="reference has no rows"):
        _binning(_frame(0, seed=19))


def test_unknown_feature_kind_is_rejected():
    with pytest.raises(PSIError, match="unknown feature kind 'ordinal'"):
        PSIBinning.fit(_frame(10, seed=20), {"x": "ordinal"})
    data = _binning(_frame(10, seed=20)).to_dict()
    data["features"][0]["kind"] = "text"
    with pytest.raises(PSIError, match="unknown feature kind 'text'"):
        PSIBinning.from_dict(data)


def test_other_bad_inputs_are_rejected():
    frame = _frame(50, seed=21)
    binning = _binning(frame)
    with pytest.raises(PSIError, match="n_bins"):
        PSIBinning.fit(frame, numeric=["x"], n_bins=1)
    with pytest.raises(PSIError, match="both numeric and categorical"):
        PSIBinning.fit(frame, numeric=["x"], categorical=["x"])
    with pytest.raises(PSIError, match="does not convert to float"):
        PSIBinning.fit(frame, numeric=["c"])
    with pytest.raises(PSIError, match="one label per row"):
        binning.count_by_chunk(frame, np.zeros(3))
    with pytest.raises(PSIError, match="missing values"):
        binning.count_by_chunk(frame, np.where(np.arange(50) < 5, np.nan, 1.0))
    other = PSIBinning.fit(frame, numeric=["x"], n_bins=4)
    with pytest.raises(PSIError, match="different features"):
        binning.count(frame) + other.count(frame)
    with pytest.raises(PSIError, match="no rows"):
        psi(binning.count(frame), binning.count(frame.iloc[:0]))
    with pytest.raises(PSIError, match="eps"):
        psi(binning.count(frame), binning.count(frame), eps=0.0)
    assert DEFAULT_EPS == 1e-4
