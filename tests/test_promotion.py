"""The promotion gate: promote, reject on margin / a secondary metric / latency, first run."""

from __future__ import annotations

import pytest

from shadowdrift.promotion import GateConfigError, GateParams, decide

GATE = GateParams(
    primary_metric="roc_auc",
    min_improvement=0.005,
    secondary_tolerance={"pr_auc": 0.01, "brier": 0.002},
    max_latency_ratio=1.5,
)
CHAMPION = {"roc_auc": 0.880, "pr_auc": 0.75, "brier": 0.120, "ms_per_1000_rows": 20.0}


def candidate(**changes):
    return {**CHAMPION, **changes}


def test_promotes_a_clearly_better_candidate():
    decision = decide("gbm", candidate(roc_auc=0.890, brier=0.119), "v1", CHAMPION, GATE)
    assert decision.promote
    assert all(check["passed"] for check in decision.checks)
    assert any("passes primary roc_auc" in reason for reason in decision.reasons)


def test_rejects_when_the_primary_gain_is_below_the_margin():
    decision = decide("gbm", candidate(roc_auc=0.883), "v1", CHAMPION, GATE)
    assert not decision.promote
    assert decision.reasons == [
        "fails primary roc_auc: 0.8830 vs champion 0.8800 (gain +0.0030, needs >= +0.0050)"
    ]


def test_rejects_when_a_secondary_metric_is_worse_than_the_tolerance():
    # brier is lower-is-better: 0.125 is 0.005 worse, tolerance 0.002
    decision = decide("gbm", candidate(roc_auc=0.895, brier=0.125), "v1", CHAMPION, GATE)
    assert not decision.promote
    assert len(decision.reasons) == 1 and "fails secondary brier" in decision.reasons[0]


def test_a_secondary_metric_within_tolerance_passes():
    decision = decide("gbm", candidate(roc_auc=0.895, pr_auc=0.745), "v1", CHAMPION, GATE)
    assert decision.promote


def test_rejects_a_candidate_that_is_too_slow():
    decision = decide("mlp", candidate(roc_auc=0.895, ms_per_1000_rows=31.0), "v1", CHAMPION, GATE)
    assert not decision.promote
    assert "fails latency" in decision.reasons[0] and "ratio 1.55" in decision.reasons[0]


def test_first_run_promotes_without_checks():
    decision = decide("gbm", candidate(), None, None, GATE)
    assert decision.promote and decision.checks == []
    assert decision.reasons == ["no current champion: the first candidate is promoted"]


def test_several_failures_are_all_reported():
    decision = decide("mlp", candidate(roc_auc=0.87, ms_per_1000_rows=100.0), "v1", CHAMPION, GATE)
    assert len(decision.reasons) == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"primary_metric": "accuracy"}, "unknown metric 'accuracy'"),
        ({"secondary_tolerance": {"roc_auc": 0.1}}, "cannot also be a secondary metric"),
        ({"max_latency_ratio": 0}, "max_latency_ratio must be positive"),
        ({"margin": 0.1}, "unknown key"),
    ],
)
def test_bad_gate_parameters_are_explained(params, message):
    with pytest.raises(GateConfigError, match=message):
        GateParams.from_params(params)
