"""Metrics, segments, calibration, latency and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shadowdrift import evaluation as ev


def test_metrics_on_a_hand_checked_example():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = ev.classification_metrics(y, p, threshold=0.5)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_single_class_segment_has_no_auc_but_other_metrics():
    m = ev.classification_metrics(np.zeros(5), np.full(5, 0.2), 0.5)
    assert m["roc_auc"] is None and m["brier"] == pytest.approx(0.04)


def test_segments_reveal_a_regression_hidden_in_one_segment():
    rng = np.random.default_rng(1)
    n = 4000
    segment = np.where(rng.random(n) < 0.5, "a", "b")
    y = rng.integers(0, 2, n)
    good = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1)
    noise = rng.random(n)
    p = np.where(segment == "a", good, noise)
    frame = pd.DataFrame({"seg": segment, "y": y, "p": p})
    rows = {r["segment"]: r for r in ev.segment_metrics(frame, "y", "p", 0.5, ["seg"], min_rows=10)}
    assert rows["a"]["roc_auc"] > 0.95 and rows["b"]["roc_auc"] < 0.6


def test_small_segments_are_left_out():
    frame = pd.DataFrame({"seg": ["a"] * 20 + ["b"] * 3, "y": [0, 1] * 10 + [0, 1, 0], "p": 0.5})
    assert [
        r["segment"] for r in ev.segment_metrics(frame, "y", "p", 0.5, ["seg"], min_rows=5)
    ] == ["a"]


def test_latency_is_measured_on_1000_rows():
    seen = []
    ms = ev.ms_per_1000_rows(
        lambda batch: seen.append(len(batch)), pd.DataFrame({"x": range(10)}), repeats=3
    )
    assert seen == [1000] * 4 and ms >= 0


def test_figures_have_one_trace_per_model():
    y = np.array([0, 1] * 50)
    scores = {"gbm": np.linspace(0, 1, 100), "mlp": np.linspace(1, 0, 100)}
    assert len(ev.roc_figure(y, scores).data) == 3  # two models and the chance line
    curve = ev.calibration(y, scores["gbm"], bins=5)
    assert len(ev.calibration_figure({"gbm": curve}, "churned").data) == 2
