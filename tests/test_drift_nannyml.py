"""Tests for the NannyML wrappers (src/shadowdrift/nannyml_drift.py): chunks line up, tidy tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shadowdrift.drift_chunks import assign_chunks
from shadowdrift.drift_params import ChunkingParams, DriftParams, NannyMLParams
from shadowdrift.nannyml_drift import (
    MULTIVARIATE_COLUMNS,
    PERFORMANCE_COLUMNS,
    UNIVARIATE_COLUMNS,
    AssignedChunker,
    NannyMLDriftError,
    fit_nannyml,
    run_nannyml,
)
from tests.test_drift_support import production_start, reference, scenario, schema

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weekly():
    params = DriftParams()
    fitted = fit_nannyml(reference(), schema(), params.nannyml, params.chunking)
    data = scenario(
        "covariate_shift", labels_as_of=pd.Timestamp(production_start()) + pd.Timedelta(days=60)
    )
    assignment = assign_chunks(data.analysis["event_time"], params.chunking)
    return fitted, data, assignment, run_nannyml(fitted, data.analysis, assignment)


def test_every_table_is_tidy_and_keyed_by_our_chunks(weekly):
    _, _, assignment, results = weekly
    ours = assignment.table["chunk"].tolist()
    assert list(results.univariate.columns) == list(UNIVARIATE_COLUMNS)
    assert list(results.multivariate.columns) == list(MULTIVARIATE_COLUMNS)
    assert list(results.estimated_performance.columns) == list(PERFORMANCE_COLUMNS)
    assert results.multivariate["chunk"].tolist() == ours
    n_methods = len(schema().numeric) * 2 + len(schema().categorical) * 2
    assert len(results.univariate) == n_methods * len(ours)
    for _, group in results.univariate.groupby(["feature", "method"]):
        assert group["chunk"].tolist() == ours
    for (model, metric), group in results.estimated_performance.groupby(["model", "metric"]):
        assert group["chunk"].tolist() == ours, (model, metric)
    assert set(results.estimated_performance["model"]) == {"champion", "challenger"}
    assert set(results.estimated_performance["metric"]) == {"roc_auc", "f1", "precision", "recall"}
    assert results.univariate["alert"].dtype == bool
    combined = results.to_frame()
    assert set(combined["kind"]) == {
        "univariate",
        "multivariate",
        "estimated_performance",
        "realised_performance",
    }


def test_chunk_row_counts_match_ours(weekly):
    _, data, assignment, results = weekly
    table = assignment.table.set_index("chunk")
    champion = results.estimated_performance.query("model == 'champion' and metric == 'roc_auc'")
    assert champion.set_index("chunk")["n_rows"].equals(table["n_rows"].rename("n_rows"))
    ok = data.analysis["challenger_status"].eq("ok").to_numpy()
    expected = pd.Series(assignment.labels[ok]).value_counts()
    challenger = results.estimated_performance.query(
        "model == 'challenger' and metric == 'roc_auc'"
    )
    assert (
        challenger.set_index("chunk")["n_rows"] == expected.reindex(challenger["chunk"]).to_numpy()
    ).all()


def test_with_a_canary_each_model_is_judged_on_the_records_it_stands_for(weekly):
    fitted, data, assignment, _ = weekly
    analysis = data.analysis.copy()
    scored = analysis["challenger_status"].eq("ok").to_numpy()
    canary = scored & (np.arange(len(analysis)) % 4 == 0)  # a quarter of the scored records
    analysis["model_variant"] = np.where(canary, "challenger", "champion")
    results = run_nannyml(fitted, analysis, assignment)
    estimated = results.estimated_performance.query("metric == 'roc_auc'")
    assert list(dict.fromkeys(estimated["model"])) == ["champion", "challenger", "canary"]

    def rows(model: str) -> pd.Series:
        return estimated.loc[estimated["model"] == model].set_index("chunk")["n_rows"]

    def expected(mask: np.ndarray) -> pd.Series:
        return pd.Series(assignment.labels[mask]).value_counts()

    for model, mask in (
        ("champion", ~canary),  # the records the champion answered, not the canary's
        ("challenger", scored & ~canary),  # in shadow, on the same records
        ("canary", canary),  # the challenger on the records it answered
    ):
        got = rows(model)
        assert (got == expected(mask).reindex(got.index).to_numpy()).all(), model
    realised = results.realised_performance
    assert set(realised["model"]) == {"champion", "challenger", "canary"}
    assert realised.loc[realised["model"] == "canary", "n_rows"].sum() < (
        realised.loc[realised["model"] == "champion", "n_rows"].sum()
    )


def test_realised_performance_only_where_labels_arrived(weekly):
    _, data, assignment, results = weekly
    realised = results.realised_performance.query("model == 'champion' and metric == 'roc_auc'")
    labelled = pd.Series(
        assignment.labels[data.analysis["churned"].notna().to_numpy()]
    ).value_counts()
    assert realised["chunk"].tolist() == [
        c for c in assignment.table["chunk"] if c in labelled.index
    ]
    assert (
        realised.set_index("chunk")["n_rows"] == labelled.reindex(realised["chunk"]).to_numpy()
    ).all()
    assert realised["value"].between(0.8, 1.0).all()


def test_the_shifted_feature_alerts_after_the_onset_only(weekly):
    _, data, _, results = weekly
    ks = results.univariate.query("feature == 'monthly_charges' and method == 'kolmogorov_smirnov'")
    onset = pd.Timestamp(data.manifest.onset_time)
    before = ks["chunk"].str.slice(11).map(pd.Timestamp) < onset  # chunk end date < onset
    assert not ks.loc[before, "alert"].any()
    assert ks.loc[~before, "alert"].all()


def test_reference_thresholds_leave_out_incomplete_chunks(weekly):
    fitted, *_ = weekly
    chunker = fitted.chunker
    ref = reference()
    # fitting mode drops the two stub weeks at the ends of the reference window
    with chunker.fitting():
        fitting_chunks = chunker.split(ref[["event_time", "age"]])
    all_chunks = chunker.split(ref[["event_time", "age"]])
    table = fitted.baseline_chunks["features"]
    assert len(all_chunks) == len(table)
    assert [c.key for c in fitting_chunks] == table.loc[table["complete"], "chunk"].tolist()
    assert [len(c) for c in all_chunks] == table["n_rows"].tolist()


def test_size_chunks_line_up_too():
    chunking = ChunkingParams(by="size", size=500, min_rows=400)
    params = NannyMLParams(
        continuous_methods=("kolmogorov_smirnov",), categorical_methods=("chi2",), multivariate=True
    )
    ref = reference().iloc[-3000:]
    fitted = fit_nannyml(ref, schema(), params, chunking)
    analysis = scenario("none", n_production=2200).analysis
    results = run_nannyml(fitted, analysis)
    expected = ["[0:499]", "[500:999]", "[1000:1499]", "[1500:1999]", "[2000:2199]"]
    assert results.multivariate["chunk"].tolist() == expected
    challenger = results.estimated_performance.query(
        "model == 'challenger' and metric == 'roc_auc'"
    )
    # the challenger scored ~80% of each chunk's rows, and keeps the chunk they belong to
    assert challenger["chunk"].tolist() == expected
    assert (challenger["n_rows"] < [500, 500, 500, 500, 200]).all()
    assert isinstance(fitted.chunker, AssignedChunker)


def test_bad_references_fail_clearly():
    params = DriftParams()
    ref = reference()
    with pytest.raises(NannyMLDriftError, match="missing label"):
        fit_nannyml(
            ref.assign(churned=ref["churned"].astype(float).where(ref.index > 5)),
            schema(),
            params.nannyml,
            params.chunking,
        )
    with pytest.raises(NannyMLDriftError, match=r"features baseline.*min_rows=5000"):
        fit_nannyml(ref, schema(), params.nannyml, ChunkingParams(min_rows=5000))
    with pytest.raises(NannyMLDriftError, match="'champion_probability'"):
        fit_nannyml(
            ref.drop(columns="champion_probability"), schema(), params.nannyml, params.chunking
        )
    with pytest.raises(NannyMLDriftError, match="outside"):
        bad = ref.assign(
            champion_probability=np.where(ref.index == 0, 1.5, ref["champion_probability"])
        )
        fit_nannyml(bad, schema(), params.nannyml, params.chunking)
