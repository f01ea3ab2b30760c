"""Thresholds, the validation slice and model construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from shadowdrift.training import (
    TrainingConfigError,
    build_model,
    choose_threshold,
    split_validation,
)


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.3 * y + rng.random(2000) * 0.7, 0, 1)
    return y, p


def test_max_f1_threshold_is_the_best_on_the_data(scores):
    y, p = scores
    chosen = choose_threshold(y, p, "max_f1")
    best = max(f1_score(y, p >= t) for t in np.unique(p))
    assert f1_score(y, p >= chosen) == pytest.approx(best)


@pytest.mark.parametrize("ratio", [1.0, 5.0])
def test_cost_ratio_threshold_minimises_the_cost(scores, ratio):
    y, p = scores

    def cost(t):
        predicted = p >= t
        return ratio * np.sum((y == 1) & ~predicted) + np.sum((y == 0) & predicted)

    chosen = choose_threshold(y, p, "cost_ratio", ratio)
    assert cost(chosen) == min(cost(t) for t in np.unique(p))


def test_a_higher_cost_of_missing_churners_lowers_the_threshold(scores):
    y, p = scores
    assert choose_threshold(y, p, "cost_ratio", 10.0) < choose_threshold(y, p, "cost_ratio", 1.0)


def test_threshold_errors_are_explained(scores):
    y, p = scores
    with pytest.raises(TrainingConfigError, match="rule must be one of"):
        choose_threshold(y, p, "youden")
    with pytest.raises(TrainingConfigError, match="only one class"):
        choose_threshold(np.zeros(10), p[:10], "max_f1")


def test_validation_slice_is_the_most_recent_rows():
    frame = pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=100, freq="D")[::-1], "x": range(100)}
    )
    fit, validation = split_validation(frame, "t", 0.2)
    assert len(fit) == 80 and len(validation) == 20
    assert fit["t"].max() < validation["t"].min()


def test_unknown_model_kind_is_explained():
    with pytest.raises(TrainingConfigError, match="unknown model kind 'xgboost'"):
        build_model("xgboost", {}, ["a"], ["b"])
