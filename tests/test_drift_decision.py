"""Tests for the retraining rules (src/shadowdrift/drift_decision.py), on hand-made tables."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from shadowdrift.drift_decision import (
    RULES,
    BaselineSize,
    DriftEvidence,
    concept_drift_caveat,
    decide,
)
from shadowdrift.drift_params import DriftParams, RuleParams

CHUNKS = [f"c{i}" for i in range(6)]
REFERENCE = {"champion": {"roc_auc": 0.90}, "challenger": {"roc_auc": 0.88}}


def _chunks(complete: Sequence[bool] = (True,) * 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "chunk": CHUNKS[: len(complete)],
            "chunk_index": range(len(complete)),
            "n_rows": [1000] * len(complete),
            "complete": list(complete),
        }
    )


def _psi(values: dict[str, Sequence[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"chunk": CHUNKS[i], "feature": feature, "psi": v}
            for feature, series in values.items()
            for i, v in enumerate(series)
        ]
    )


def _performance(
    values: Sequence[float], method: str, n_rows: Sequence[int] | None = None
) -> pd.DataFrame:
    n_rows = n_rows or [1000] * len(values)
    rows = [
        {"chunk": CHUNKS[i], "model": model, "metric": "roc_auc", "method": method,
         "value": v - (0.01 if model == "challenger" else 0.0), "n_rows": n, "alert": False,
         "lower_threshold": 0.85, "upper_threshold": 0.95}
        for model in ("champion", "challenger")
        for i, (v, n) in enumerate(zip(values, n_rows, strict=True))
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _quality(column: str, values: dict[str, Sequence[float]], **extra) -> pd.DataFrame:
    rows = []
    for feature, series in values.items():
        for i, v in enumerate(series):
            row = {"chunk": CHUNKS[i], "feature": feature, "missing_rate": 0.0,
                   "unseen_rate": np.nan, "out_of_range_rate": np.nan, "unseen_values": {}}  # fmt: skip
            row[column] = v
            row.update({k: (f(i) if callable(f) else f) for k, f in extra.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def _rules(**overrides) -> RuleParams:
    return DriftParams.from_params({"rules": overrides}).rules


def _decide(evidence: DriftEvidence, rules: RuleParams | None = None) -> dict:
    decision = decide(evidence, rules or RuleParams(), psi_alert=0.25)
    json.dumps(decision, allow_nan=False)  # JSON-serialisable, no NaN
    return decision


def _fired(decision: dict) -> list[str]:
    return [r["rule"] for r in decision["reasons"]]


# --- PSI and the consecutive-chunk logic ---------------------------------------------------------


def test_psi_rule_fires_and_names_feature_method_and_chunks():
    evidence = DriftEvidence(
        _chunks(), psi=_psi({"a": [0.01, 0.02, 0.3, 0.4, 0.35, 0.3], "b": [0.01] * 6})
    )
    decision = _decide(evidence)
    assert decision["decision"] == "retrain"
    (reason,) = decision["reasons"]
    assert (reason["rule"], reason["feature"], reason["method"]) == ("psi", "a", "psi")
    assert reason["chunks"] == ["c2", "c3", "c4", "c5"]
    assert reason["detected_at"] == "c2"
    assert reason["value"] == pytest.approx(0.4) and reason["threshold"] == 0.25
    assert "PSI of a" in reason["message"] and "c2 .. c5" in reason["message"]


def test_psi_below_the_alert_does_not_fire():
    evidence = DriftEvidence(_chunks(), psi=_psi({"a": [0.1, 0.2, 0.249, 0.2, 0.1, 0.0]}))
    decision = _decide(evidence)
    assert decision["decision"] == "no_retrain"
    assert decision["reasons"] == []
    psi_rule = next(r for r in decision["evaluated_rules"] if r["rule"] == "psi")
    assert psi_rule == {
        "rule": "psi",
        "enabled": True,
        "fired": False,
        "not_acted_on": 0,
        "parameters": {"enabled": True, "consecutive_chunks": 1, "alert": 0.25},
        "chunks_judged": 6,
        "subjects": 1,
        "note": "",
    }


def test_consecutive_chunks_must_be_adjacent():
    rules = _rules(psi={"consecutive_chunks": 2})
    alternating = DriftEvidence(_chunks(), psi=_psi({"a": [0.3, 0.0, 0.3, 0.0, 0.3, 0.0]}))
    assert _decide(alternating, rules)["decision"] == "no_retrain"
    two_in_a_row = DriftEvidence(_chunks(), psi=_psi({"a": [0.0, 0.3, 0.0, 0.3, 0.3, 0.0]}))
    decision = _decide(two_in_a_row, rules)
    assert decision["decision"] == "retrain"
    assert decision["reasons"][0]["chunks"] == ["c3", "c4"]
    assert decision["reasons"][0]["detected_at"] == "c4"


def test_incomplete_chunks_neither_alarm_nor_break_a_run():
    complete = (True, True, False, True, True, True)
    rules = _rules(psi={"consecutive_chunks": 2})
    # the only breach is in the incomplete chunk
    lonely = DriftEvidence(_chunks(complete), psi=_psi({"a": [0.0, 0.0, 9.0, 0.0, 0.0, 0.0]}))
    assert _decide(lonely, rules)["decision"] == "no_retrain"
    # c1 and c3 are adjacent once the incomplete c2 is skipped
    bridged = DriftEvidence(_chunks(complete), psi=_psi({"a": [0.0, 0.3, 0.0, 0.3, 0.0, 0.0]}))
    decision = _decide(bridged, rules)
    assert decision["reasons"][0]["chunks"] == ["c1", "c3"]
    assert decision["chunks"] == {
        "total": 6, "complete": 5, "incomplete": ["c2"], "min_complete_chunks": 2
    }  # fmt: skip


# --- performance ---------------------------------------------------------------------------------


def test_estimated_performance_drop_needs_two_consecutive_chunks_by_default():
    one = DriftEvidence(
        _chunks(),
        estimated_performance=_performance([0.9, 0.9, 0.84, 0.9, 0.9, 0.9], "cbpe"),
        reference_performance=REFERENCE,
    )
    assert _decide(one)["decision"] == "no_retrain"
    two = DriftEvidence(
        _chunks(),
        estimated_performance=_performance([0.9, 0.9, 0.84, 0.83, 0.9, 0.9], "cbpe"),
        reference_performance=REFERENCE,
    )
    decision = _decide(two)
    (reason,) = decision["reasons"]
    assert (reason["rule"], reason["metric"], reason["model"]) == (
        "estimated_performance", "roc_auc", "champion"
    )  # fmt: skip
    assert reason["method"] == "cbpe" and reason["feature"] is None
    assert reason["chunks"] == ["c2", "c3"]
    assert reason["threshold"] == pytest.approx(0.85)
    assert reason["value"] == pytest.approx(0.83)


def test_estimated_performance_floor():
    evidence = DriftEvidence(
        _chunks(),
        estimated_performance=_performance([0.88] * 6, "cbpe"),
        reference_performance=REFERENCE,
    )
    assert _decide(evidence)["decision"] == "no_retrain"
    decision = _decide(evidence, _rules(estimated_performance={"floor": 0.89}))
    assert _fired(decision) == ["estimated_performance"]
    assert decision["reasons"][0]["threshold"] == pytest.approx(0.89)


def test_realised_performance_is_judged_only_with_enough_labels():
    labels = [1000, 1000, 1000, 1000, 100, 0]
    drop_late = DriftEvidence(
        _chunks(),
        realised_performance=_performance([0.9, 0.9, 0.9, 0.9, 0.7, 0.7], "realised", labels),
        reference_performance=REFERENCE,
    )
    decision = _decide(drop_late)
    assert decision["decision"] == "no_retrain"
    realised = next(r for r in decision["evaluated_rules"] if r["rule"] == "realised_performance")
    assert realised["chunks_judged"] == 4
    assert "2 complete chunk(s) have fewer than 300 labelled rows" in realised["note"]
    assert any(
        "not judged yet on 2 of 6 complete chunk(s) (c4 .. c5)" in c for c in decision["caveats"]
    )

    drop = DriftEvidence(
        _chunks(),
        realised_performance=_performance([0.9, 0.9, 0.8, 0.9, 0.7, 0.7], "realised", labels),
        reference_performance=REFERENCE,
    )
    decision = _decide(drop)
    (reason,) = decision["reasons"]
    assert (reason["rule"], reason["method"], reason["chunks"]) == (
        "realised_performance",
        "realised",
        ["c2"],
    )
    assert "reference 0.9000" in reason["message"]


def test_performance_rules_without_a_reference_value_are_not_judged():
    evidence = DriftEvidence(
        _chunks(), estimated_performance=_performance([0.5] * 6, "cbpe"), reference_performance={}
    )
    decision = _decide(evidence)
    assert decision["decision"] == "no_retrain"
    note = next(r for r in decision["evaluated_rules"] if r["rule"] == "estimated_performance")[
        "note"
    ]
    assert note == "not judged: no reference value of the champion's roc_auc"


# --- NannyML alerts ------------------------------------------------------------------------------


def _alerts(flags: Sequence[bool], **columns) -> pd.DataFrame:
    return pd.DataFrame(
        {"chunk": CHUNKS[: len(flags)], "value": [2.0 + f for f in flags], "upper_threshold": 2.5,
         "alert": list(flags), **columns}
    )  # fmt: skip


def test_multivariate_rule_needs_consecutive_alerts():
    mv = {"metric": "reconstruction_error", "method": "pca_reconstruction"}
    sparse = DriftEvidence(
        _chunks(), multivariate=_alerts([False, True, False, True, False, True], **mv)
    )
    assert _decide(sparse)["decision"] == "no_retrain"
    run = DriftEvidence(
        _chunks(), multivariate=_alerts([False, False, True, True, False, False], **mv)
    )
    decision = _decide(run)
    (reason,) = decision["reasons"]
    assert (reason["rule"], reason["metric"], reason["method"]) == (
        "multivariate", "reconstruction_error", "pca_reconstruction"
    )  # fmt: skip
    assert reason["detected_at"] == "c3"


def test_univariate_rule_is_off_by_default():
    flags = [True] * 6
    uni = pd.concat(
        [
            _alerts(flags, feature="a", method="kolmogorov_smirnov"),
            _alerts(flags, feature="b", method="jensen_shannon"),
        ]
    )
    evidence = DriftEvidence(_chunks(), univariate=uni)
    assert _decide(evidence)["decision"] == "no_retrain"
    decision = _decide(evidence, _rules(univariate={"enabled": True}))
    assert [(r["feature"], r["method"]) for r in decision["reasons"]] == [
        ("a", "kolmogorov_smirnov")
    ]


def test_spread_based_alerts_on_a_small_baseline_are_reported_but_not_acted_on():
    mv = {"metric": "reconstruction_error", "method": "pca_reconstruction"}
    flags = [False, False, True, True, True, False]
    uni = pd.concat(
        [
            _alerts(flags, feature="a", method="kolmogorov_smirnov"),
            _alerts(flags, feature="b", method="chi2"),
        ]
    )
    rules = _rules(univariate={"enabled": True, "methods": ["kolmogorov_smirnov", "chi2"]})
    small = BaselineSize(features=3, performance=10, min_chunks=6)
    evidence = DriftEvidence(
        _chunks(), multivariate=_alerts(flags, **mv), univariate=uni, baseline=small
    )
    decision = _decide(evidence, rules)
    # chi2 alerts on a p-value, not on the baseline's spread: it still acts
    assert decision["decision"] == "retrain"
    assert [(r["rule"], r["method"]) for r in decision["reasons"]] == [("univariate", "chi2")]
    held = {(r["rule"], r["method"]) for r in decision["reasons_not_acted_on"]}
    assert held == {("multivariate", "pca_reconstruction"), ("univariate", "kolmogorov_smirnov")}
    assert all(
        "3 complete chunk(s), fewer than" in r["why"] for r in decision["reasons_not_acted_on"]
    )
    multivariate = next(r for r in decision["evaluated_rules"] if r["rule"] == "multivariate")
    assert (multivariate["fired"], multivariate["not_acted_on"]) == (False, 1)
    assert "drift.baseline.min_chunks=6" in multivariate["note"]
    assert any("features baseline has 3 complete" in c for c in decision["caveats"])
    # without chi2 nothing acts, and the summary says what was held back
    only_spread = DriftEvidence(_chunks(), multivariate=_alerts(flags, **mv), baseline=small)
    decision = _decide(only_spread)
    assert decision["decision"] == "no_retrain"
    assert "multivariate fired but was not acted on" in decision["summary"]
    # a big enough baseline: the same alerts act
    enough = DriftEvidence(
        _chunks(), multivariate=_alerts(flags, **mv), baseline=BaselineSize(6, 2, 6)
    )
    assert _fired(_decide(enough)) == ["multivariate"]


# --- data quality --------------------------------------------------------------------------------


def test_unseen_categories_rule_names_the_values():
    quality = _quality(
        "unseen_rate",
        {"pay": [0.0, 0.0, 0.0, 0.3, 0.3, 0.005]},
        unseen_values=lambda i: {"wallet": 300, "crypto": 5} if i in (3, 4) else {},
    )
    decision = _decide(DriftEvidence(_chunks(), data_quality=quality))
    (reason,) = decision["reasons"]
    assert (reason["rule"], reason["feature"], reason["chunks"]) == (
        "unseen_categories",
        "pay",
        ["c3", "c4"],
    )
    assert "unseen values: wallet, crypto" in reason["message"]


def test_missing_rule_compares_with_the_reference_rate():
    quality = _quality(
        "missing_rate",
        {"x": [0.20, 0.22, 0.24, 0.245, 0.20, 0.20], "y": [0.0, 0.0, 0.0, 0.06, 0.0, 0.0]},
    )
    evidence = DriftEvidence(
        _chunks(), data_quality=quality, reference_missing_rate={"x": 0.2, "y": 0.0}
    )
    decision = _decide(evidence)
    # x rises by at most 0.045 over its usual 20%: only y (0% -> 6%) fires
    assert [(r["rule"], r["feature"], r["chunks"]) for r in decision["reasons"]] == [
        ("missing_values", "y", ["c3"])
    ]
    assert decision["reasons"][0]["threshold"] == pytest.approx(0.05)


def test_out_of_range_rule():
    quality = _quality("out_of_range_rate", {"x": [0.0, 0.0, 0.02, 0.0, 0.0, 0.0]})
    decision = _decide(DriftEvidence(_chunks(), data_quality=quality))
    assert _fired(decision) == ["out_of_range"]
    assert (
        _decide(
            DriftEvidence(_chunks(), data_quality=quality), _rules(out_of_range={"enabled": False})
        )["decision"]
        == "no_retrain"
    )


def test_every_rule_fires_and_is_reported():
    evidence = DriftEvidence(
        _chunks(),
        psi=_psi({"a": [0.3] * 6}),
        data_quality=pd.concat(
            [
                _quality("unseen_rate", {"c": [0.5] * 6}, unseen_values={"new": 500}),
                _quality("missing_rate", {"m": [0.5] * 6}),
                _quality("out_of_range_rate", {"r": [0.5] * 6}),
            ]
        ),
        univariate=_alerts([True] * 6, feature="a", method="chi2"),
        multivariate=_alerts(
            [True] * 6, metric="reconstruction_error", method="pca_reconstruction"
        ),
        estimated_performance=_performance([0.5] * 6, "cbpe"),
        realised_performance=_performance([0.5] * 6, "realised"),
        reference_performance=REFERENCE,
    )
    decision = _decide(evidence, _rules(univariate={"enabled": True}))
    assert set(_fired(decision)) == set(RULES)
    assert all(r["fired"] for r in decision["evaluated_rules"])


# --- insufficient data ---------------------------------------------------------------------------


def test_no_analysis_rows_is_insufficient_data_not_an_error():
    decision = _decide(DriftEvidence(_chunks(())))
    assert decision["decision"] == "insufficient_data"
    assert decision["reasons"][0]["rule"] == "min_complete_chunks"
    assert decision["chunks"]["total"] == 0


def test_too_few_complete_chunks_is_insufficient_data_even_if_a_rule_would_fire():
    evidence = DriftEvidence(_chunks((True, False, False)), psi=_psi({"a": [0.9, 0.9, 0.9]}))
    decision = _decide(evidence)
    assert decision["decision"] == "insufficient_data"
    assert "1 complete chunk(s), at least 2 needed" in decision["summary"]
    assert "psi would have fired" in decision["summary"]
    assert next(r for r in decision["evaluated_rules"] if r["rule"] == "psi")["fired"]
    assert _decide(evidence, _rules(min_complete_chunks=1))["decision"] == "retrain"


def test_the_concept_drift_caveat_is_always_there_and_names_the_target():
    for evidence in (
        DriftEvidence(_chunks(()), target="work_home_actual"),
        DriftEvidence(_chunks(), psi=_psi({"a": [0.0] * 6}), target="work_home_actual"),
    ):
        caveats = _decide(evidence)["caveats"]
        assert concept_drift_caveat("work_home_actual") in caveats
        assert "work_home_actual" in caveats[0]
        assert "churn" not in " ".join(caveats).lower()
    assert "realised performance" in concept_drift_caveat("y").lower()
