"""End to end on simulator scenarios: decision, reasons and the report (drift_monitor, drift_report).

One reference fit serves every scenario (same history and seed); each scenario is 20,000
production rows over 90 days with the drift from the middle (onset 0.5), weekly chunks.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from shadowdrift.drift_decision import concept_drift_caveat
from shadowdrift.drift_monitor import DriftResults, compute_drift, fit_reference
from shadowdrift.drift_params import DriftParams
from shadowdrift.drift_report import build_figures, build_summary, render_html, write_html_report
from tests.test_drift_support import (
    LABEL_DELAY_DAYS,
    PRODUCTION_DAYS,
    THRESHOLD,
    production_start,
    reference,
    scenario,
    schema,
)

pytestmark = pytest.mark.slow

PRODUCTION_END = pd.Timestamp(production_start()) + pd.Timedelta(days=PRODUCTION_DAYS)
ALL_LABELS = PRODUCTION_END + pd.Timedelta(days=LABEL_DELAY_DAYS)
ONSET_CHUNK = "2025-02-10/2025-02-16"  # the onset (2025-02-14) falls in this week
FIRST_FULL_CHUNK = "2025-02-17/2025-02-23"


@pytest.fixture(scope="module")
def fitted():
    return fit_reference(reference(), schema(), THRESHOLD, DriftParams())


@pytest.fixture(scope="module")
def run(fitted):
    cache: dict[tuple, DriftResults] = {}

    def _run(name: str, labels_as_of=PRODUCTION_END, **kwargs) -> DriftResults:
        key = (name, labels_as_of, tuple(sorted(kwargs.items())))
        if key not in cache:
            data = scenario(name, labels_as_of=labels_as_of, **kwargs)
            cache[key] = compute_drift(data.analysis, fitted)
        return cache[key]

    return _run


def _reasons(results: DriftResults, rule: str | None = None) -> list[dict]:
    return [r for r in results.decision["reasons"] if rule is None or r["rule"] == rule]


def test_no_drift_no_retraining(run):
    results = run("none")
    assert results.decision["decision"] == "no_retrain", results.decision["reasons"]
    assert len(results.chunks) == 13 and results.chunks["complete"].all()
    assert (results.psi["psi"] < 0.1).all()


def test_a_half_std_covariate_shift_is_caught_by_psi_on_monthly_charges(run):
    results = run("covariate_shift")
    assert results.decision["decision"] == "retrain"
    psi_reasons = _reasons(results, "psi")
    assert [r["feature"] for r in psi_reasons] == ["monthly_charges"]
    assert psi_reasons[0]["detected_at"] == FIRST_FULL_CHUNK
    assert "monthly_charges" in psi_reasons[0]["message"]
    psi = results.psi.query("feature == 'monthly_charges'").set_index("chunk")["psi"]
    assert (psi.loc[:"2025-02-03/2025-02-09"] < 0.05).all()  # no false alarm before the onset


def test_a_new_category_is_reported_with_its_value(run):
    results = run("new_category")
    assert results.decision["decision"] == "retrain"
    (unseen,) = _reasons(results, "unseen_categories")
    assert unseen["feature"] == "payment_method" and "digital_wallet" in unseen["message"]
    quality = results.data_quality.query("feature == 'payment_method'").set_index("chunk")
    assert quality.loc[ONSET_CHUNK, "n_unseen"] > 0
    assert set(quality.loc[FIRST_FULL_CHUNK, "unseen_values"]) == {"digital_wallet"}
    assert quality.loc[FIRST_FULL_CHUNK, "unseen_rate"] == pytest.approx(0.3, abs=0.04)
    assert quality.loc["2025-01-06/2025-01-12", "n_unseen"] == 0


def test_missing_values_are_reported(run):
    results = run("missing_values")
    quality = results.data_quality.query("feature == 'satisfaction_score'").set_index("chunk")
    assert quality.loc[FIRST_FULL_CHUNK, "missing_rate"] == pytest.approx(0.3, abs=0.04)
    assert quality.loc["2025-01-06/2025-01-12", "missing_rate"] == 0.0
    assert [r["feature"] for r in _reasons(results, "missing_values")] == ["satisfaction_score"]
    assert results.decision["decision"] == "retrain"


def test_concept_drift_is_caught_by_realised_performance_once_labels_arrive(run, fitted):
    results = run("concept_drift", labels_as_of=ALL_LABELS)
    reference_auc = fitted.reference_performance["champion"]["roc_auc"]
    realised = results.nannyml.realised_performance.query(
        "model == 'champion' and metric == 'roc_auc'"
    ).set_index("chunk")["value"]
    assert realised.loc[:"2025-02-03/2025-02-09"].min() > reference_auc - 0.03
    assert realised.loc[FIRST_FULL_CHUNK:].max() < reference_auc - 0.05
    assert results.decision["decision"] == "retrain"
    (reason,) = _reasons(results)  # feature drift sees nothing: only realised performance fires
    assert (reason["rule"], reason["metric"], reason["method"]) == (
        "realised_performance", "roc_auc", "realised"
    )  # fmt: skip
    assert concept_drift_caveat("churned") in results.decision["caveats"]


def test_concept_drift_without_labels_is_invisible_and_the_report_says_why(run):
    results = run("concept_drift", labels_as_of=None)
    assert results.decision["decision"] == "no_retrain"
    assert concept_drift_caveat("churned") in results.decision["caveats"]
    assert any("not judged yet" in c for c in results.decision["caveats"])


def test_no_analysis_rows_is_insufficient_data(fitted):
    empty = scenario("none", n_production=100).analysis.iloc[:0]
    results = compute_drift(empty, fitted)
    assert results.decision["decision"] == "insufficient_data"
    json.dumps(build_summary(results), allow_nan=False)


def test_one_week_of_data_is_insufficient(fitted):
    analysis = scenario("none", n_production=20_000).analysis
    first_week = analysis.loc[analysis["event_time"] < pd.Timestamp("2025-01-06", tz="UTC")]
    results = compute_drift(first_week, fitted)
    assert results.decision["decision"] == "insufficient_data"
    assert results.decision["chunks"]["complete"] == 1


def test_summary_is_json_and_the_html_report_is_self_contained(run, tmp_path):
    results = run("new_category")
    summary = build_summary(results)
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["decision"]["decision"] == "retrain"
    drift = summary["feature_drift"]["payment_method"]
    assert drift["kind"] == "categorical"
    assert {"psi", "chi2", "jensen_shannon"} <= set(drift["methods"])
    row = drift["methods"]["psi"][-1]
    assert set(row) >= {"chunk", "value", "threshold", "alert"} and row["alert"] is True
    assert summary["prediction_drift"]["champion_probability"]["kind"] == "prediction"
    assert set(summary["performance"]["estimated"]) == {"champion", "challenger"}
    assert summary["agreement"][0]["agreement_rate"] > 0.5
    assert summary["data_quality"]["payment_method"][-1]["unseen_values"] == {
        "digital_wallet": summary["data_quality"]["payment_method"][-1]["n_unseen"]
    }

    figures = build_figures(results)
    assert set(figures) == {
        "psi_heatmap",
        "psi_lines",
        "multivariate",
        "performance",
        "agreement",
        "data_quality",
    }
    path = write_html_report(tmp_path / "report.html", summary, figures)
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", html, re.IGNORECASE)
    assert html.count("<script") >= len(figures)
    assert "Plotly.newPlot" in html and "plotly.js" in html.lower()  # the library is inlined
    assert "Decision: retrain" in html
    assert "digital_wallet" in html
    assert concept_drift_caveat("churned").split(" (")[0] in html
    assert render_html(summary, figures).count("<!DOCTYPE html>") == 1


def test_a_batch_log_without_challenger_or_labels(fitted):
    analysis = scenario("none").analysis.drop(columns="churned")
    analysis["challenger_status"] = "disabled"
    analysis["challenger_probability"] = float("nan")
    analysis["challenger_label"] = pd.array([None] * len(analysis), dtype="Int64")
    results = compute_drift(analysis, fitted)
    assert results.decision["decision"] == "no_retrain"
    assert set(results.nannyml.estimated_performance["model"]) == {"champion"}
    assert results.nannyml.realised_performance.empty
    assert (results.agreement["n_disabled"] == results.agreement["n_rows"]).all()
    assert results.agreement["agreement_rate"].isna().all()
    assert (results.chunks["n_labelled"] == 0).all()
    summary = build_summary(results)
    json.dumps(summary, allow_nan=False)
    assert "Decision: no_retrain" in render_html(summary, build_figures(results))


def test_a_canary_is_reported_apart_and_the_decision_judges_the_champions_records(fitted):
    analysis = scenario("none", labels_as_of=ALL_LABELS).analysis
    scored = analysis["challenger_status"].eq("ok").to_numpy()
    canary = scored & (analysis["customer_id"].astype(str).str[-1].isin(["0", "1"])).to_numpy()
    analysis = analysis.assign(model_variant=np.where(canary, "challenger", "champion"))
    results = compute_drift(analysis, fitted)
    assert results.decision["decision"] == "no_retrain"
    assert int(results.agreement["n_canary"].sum()) == int(canary.sum()) > 0
    realised = results.nannyml.realised_performance.query("metric == 'roc_auc'")
    labelled = analysis[analysis["churned"].notna().to_numpy()]
    in_canary = labelled["model_variant"].eq("challenger")
    rows = realised.groupby("model")["n_rows"].sum()
    assert rows["canary"] == in_canary.sum()
    assert rows["champion"] == (~in_canary).sum()

    summary = build_summary(results)
    json.dumps(summary, allow_nan=False)
    assert summary["answered_by"] == {
        "champion": len(analysis) - int(canary.sum()),
        "challenger": int(canary.sum()),
    }
    assert set(summary["performance"]["realised"]) == {"champion", "challenger", "canary"}
    figures = build_figures(results)
    assert "canary (records)" in {trace.name for trace in figures["agreement"].data}
    assert f"the challenger answered {int(canary.sum())} of the" in render_html(summary, figures)
