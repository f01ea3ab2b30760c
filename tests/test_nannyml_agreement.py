"""The project's NannyML monitors equal a direct NannyML 0.13.1 run, chunk by chunk.

Our side goes through ``drift_monitor.run_drift`` with data as the prediction log holds it
(categories as strings, a missing category as ``None``, tz-aware UTC event times); NannyML's
side calls ``UnivariateDriftCalculator``, ``DataReconstructionDriftCalculator``, ``CBPE`` and
``PerformanceCalculator`` with ``chunk_size`` / ``chunk_period`` on NannyML's own frames
(``shadowdrift.nannyml_agreement``). Values, thresholds, sampling errors and alerts must be
equal, not close. Where the project deliberately differs (incomplete baseline chunks, tied
event times, fixed-length periods) the documented relation is tested exactly
(docs/drift_quality.md, "Agreement with NannyML").
"""

from __future__ import annotations

import nannyml as nml
import numpy as np
import pandas as pd
import pytest

from shadowdrift import nannyml_agreement as agreement
from shadowdrift.drift_chunks import assign_chunks
from shadowdrift.drift_params import ChunkingParams
from shadowdrift.nannyml_agreement import (
    Case,
    incomplete_size_chunk_dropped,
    side_by_side,
    synthetic_case,
    tables_equal,
    titanic_case,
)
from shadowdrift.prediction_log import EVENT_TIME

pytestmark = pytest.mark.slow

SYNTHETIC_SIZE = {"by": "size", "size": 1250, "min_rows": 500}
SYNTHETIC_QUARTERS = {"by": "period", "period": "Q", "min_rows": 200}
TITANIC_SIZE = {"by": "size", "size": 100, "min_rows": 50}
# Two CBPE / realised metrics keep the file fast; benchmarks/nannyml_agreement.py shows all four.
METRICS = ("roc_auc", "f1")


def run_ours(case: Case, chunking: dict):
    return agreement.run_ours(case, chunking, METRICS)


def run_nannyml_directly(case: Case, chunking: dict, **chunkers):
    return agreement.run_nannyml_directly(case, chunking, metrics=METRICS, **chunkers)


@pytest.fixture(scope="module")
def synthetic() -> Case:
    # Every fourth row: the whole time span and its drift in a quarter of the rows (12,500 of
    # 50,000 each), for a fast test.
    return synthetic_case(step=4)


@pytest.fixture(scope="module")
def titanic() -> Case:
    return titanic_case()


@pytest.fixture(scope="module")
def synthetic_quarters(synthetic):
    return run_nannyml_directly(synthetic, SYNTHETIC_QUARTERS)


def _assert_equal(ours, theirs) -> dict:
    summary = tables_equal(ours, theirs)
    for monitor, found in summary.items():
        assert found["rows"] > 0, monitor
        assert found["unmatched"] == 0, (monitor, found)
        assert found["alert_mismatches"] == 0, (monitor, found)
        differences = {k: v for k, v in found.items() if k.endswith("max_abs_diff") and v != 0.0}
        assert not differences, (monitor, differences)
    return summary


def test_nannyml_agreement_synthetic_size_chunks(synthetic):
    # NannyML's side has the bool feature as bool, ours as the log's "True"/"False" strings.
    assert synthetic.nml_reference["wfh_prev_workday"].dtype == bool
    assert set(synthetic.analysis["wfh_prev_workday"]) == {"True", "False"}
    ours = run_ours(synthetic, SYNTHETIC_SIZE)
    theirs = run_nannyml_directly(synthetic, SYNTHETIC_SIZE)
    summary = _assert_equal(ours.nannyml, theirs.results)
    assert ours.chunks["chunk"].tolist()[:2] == ["[0:1249]", "[1250:2499]"]
    assert len(ours.chunks) == 10
    # NannyML's raw result frames, read without the shared tidy readers
    raw = theirs.multivariate.result.filter(period="analysis").to_df()
    assert (
        ours.nannyml.multivariate["value"].tolist()
        == raw[("reconstruction_error", "value")].tolist()
    )
    raw = theirs.cbpe.result.filter(period="analysis").to_df()
    roc = ours.nannyml.estimated_performance.query("metric == 'roc_auc'")
    assert roc["value"].tolist() == raw[("roc_auc", "value")].tolist()
    assert roc["lower_threshold"].tolist() == raw[("roc_auc", "lower_threshold")].tolist()
    raw = theirs.univariate.result.filter(period="analysis").to_df()
    ks = ours.nannyml.univariate.query(
        "feature == 'distance_from_office' and method == 'kolmogorov_smirnov'"
    )
    column = raw[("distance_from_office", "kolmogorov_smirnov")]
    assert ks["value"].tolist() == column["value"].tolist()
    assert ks["alert"].tolist() == column["alert"].astype(bool).tolist()
    # the analysis drifts in its second half: both sides alert there, and the same way
    assert summary["multivariate"]["alerts_ours"] >= 4
    assert summary["estimated_performance"]["alerts_ours"] > 0
    assert summary["univariate"]["alerts_ours"] > 0


def test_nannyml_agreement_synthetic_quarterly_periods(synthetic, synthetic_quarters):
    ours = run_ours(synthetic, SYNTHETIC_QUARTERS)
    _assert_equal(ours.nannyml, synthetic_quarters.results)
    assert ours.chunks["chunk"].iloc[1] == "2017Q4"
    # the partial first and last quarters of the baseline are complete (>= min_rows 200) and
    # take part in the thresholds, as in NannyML
    table = ours.reference["baseline"]["features"]
    assert table["chunks"] == table["complete_chunks"] == 14


def test_nannyml_agreement_titanic_size_chunks_in_row_order(titanic):
    # mixed types and missing values; ours has a missing category as the log's None
    assert titanic.reference["Embarked"].map(lambda v: v is None).sum() == 2
    assert titanic.nml_reference["Embarked"].isna().sum() == 2
    assert titanic.nml_analysis["Fare"].isna().sum() == 1
    ours = run_ours(titanic, TITANIC_SIZE)
    theirs = run_nannyml_directly(titanic, TITANIC_SIZE)
    _assert_equal(ours.nannyml, theirs.results)
    # 891 baseline rows: 8 chunks of 100 and one of 91, which is complete (min_rows 50)
    assert ours.reference["baseline"]["features"]["complete_chunks"] == 9
    assert ours.chunks["chunk"].tolist() == [
        "[0:99]", "[100:199]", "[200:299]", "[300:399]", "[400:417]"
    ]  # fmt: skip


def test_nannyml_agreement_titanic_incomplete_baseline_chunk_is_left_out(titanic):
    # min_rows 95: the last baseline chunk (91 rows) is incomplete and, unlike NannyML's
    # default, does not widen the thresholds. Equal to NannyML fitted with
    # SizeBasedChunker(incomplete="drop") (analysis chunks kept as usual).
    chunking = {**TITANIC_SIZE, "min_rows": 95}
    ours = run_ours(titanic, chunking)
    theirs = run_nannyml_directly(
        titanic, chunking, **incomplete_size_chunk_dropped(titanic, chunking["size"])
    )
    _assert_equal(ours.nannyml, theirs.results)
    # and NannyML's default (the stub kept) gives other thresholds
    default = nml.DataReconstructionDriftCalculator(
        column_names=titanic.numeric + titanic.categorical, n_components=0.65, chunk_size=100
    ).fit(titanic.nml_reference)
    assert default.upper_threshold_value != ours.nannyml.multivariate["upper_threshold"].iloc[0]


def test_nannyml_agreement_period_thresholds_leave_out_incomplete_periods(
    synthetic, synthetic_quarters
):
    # min_rows 700: the partial quarters 2014Q2 (526 rows) and 2017Q3 (643) leave the
    # calibration. NannyML's PeriodBasedChunker has no such option; the documented relation:
    # our thresholds are NannyML's rule (mean +- 3 standard deviations) over NannyML's own
    # per-chunk baseline values of the complete periods.
    chunking = {**SYNTHETIC_QUARTERS, "min_rows": 700}
    ours = run_ours(synthetic, chunking)
    reference = synthetic_quarters.univariate.result.filter(period="reference").to_df()
    sizes = (
        reference[("chunk", "chunk", "end_index")]
        - reference[("chunk", "chunk", "start_index")]
        + 1
    ).to_numpy()
    complete = sizes >= chunking["min_rows"]
    assert complete.sum() == 12 and not complete[0] and not complete[-1]
    uni = ours.nannyml.univariate
    for feature in ("distance_from_office", "salary_range", "wfh_prev_workday"):
        values = reference[(feature, "jensen_shannon", "value")].to_numpy(float)[complete]
        expected = np.nanmean(values) + 3 * np.nanstd(values)
        got = uni.loc[(uni["feature"] == feature) & (uni["method"] == "jensen_shannon")]
        assert (got["upper_threshold"] == expected).all(), feature
    multi = synthetic_quarters.multivariate.result.filter(period="reference").to_df()
    values = multi[("reconstruction_error", "value")].to_numpy(float)[complete]
    expected = np.nanmean(values) + 3 * np.nanstd(values)
    assert (ours.nannyml.multivariate["upper_threshold"] == expected).all()
    # values themselves do not depend on the calibration: still NannyML's
    same = side_by_side(ours.nannyml, synthetic_quarters.results, "univariate")
    assert (same["value_ours"].fillna(-1) == same["value_nannyml"].fillna(-1)).all()


def test_nannyml_agreement_tied_event_times_follow_the_stable_time_order(titanic):
    # Seven passengers per timestamp, so size-chunk boundaries fall inside ties, and the
    # analysis rows arrive shuffled. Ours sorts by event time with a stable sort: equal to
    # NannyML's chunk_size on the rows in that order (NannyML's own sort, given a timestamp
    # column, is not stable: the order of tied rows is left to numpy's quicksort).
    def coarse(frame: pd.DataFrame, column: str, start: str, aware: bool) -> pd.DataFrame:
        times = pd.Timestamp(start) + pd.to_timedelta(np.arange(len(frame)) // 7, unit="min")
        times = pd.Series(times, index=frame.index)
        return frame.assign(**{column: times.dt.tz_localize("UTC") if aware else times})

    order = np.random.default_rng(3).permutation(len(titanic.analysis))
    ours_analysis = coarse(titanic.analysis, EVENT_TIME, "1912-04-10", True).iloc[order]
    nml_analysis = coarse(titanic.nml_analysis, "t", "1912-04-10", False).iloc[order]
    stable = nml_analysis.sort_values("t", kind="stable")
    case = Case(
        **{
            **titanic.__dict__,
            "reference": coarse(titanic.reference, EVENT_TIME, "1912-04-01", False),
            "analysis": ours_analysis.reset_index(drop=True),
            "nml_analysis": stable.drop(columns="t").reset_index(drop=True),
        }
    )
    ours = run_ours(case, TITANIC_SIZE)
    theirs = run_nannyml_directly(case, TITANIC_SIZE)
    _assert_equal(ours.nannyml, theirs.results)


def test_nannyml_agreement_fixed_length_periods_are_the_projects_own():
    # NannyML's chunk_period "7D" groups by pandas Period("7D"), which starts on every day: a
    # fortnight gives 14 chunks. The project's 7D chunks are 7 days long, aligned to the epoch.
    times = pd.Series(pd.date_range("2025-01-02", periods=14 * 24, freq="h"))
    frame = pd.DataFrame({"t": times, "x": np.arange(len(times), dtype=float)})
    nannyml_chunks = nml.chunk.PeriodBasedChunker(timestamp_column_name="t", offset="7D").split(
        frame
    )
    ours = assign_chunks(times, ChunkingParams(by="period", period="7D", min_rows=1))
    assert len(nannyml_chunks) == 14
    assert [len(c) for c in nannyml_chunks] == [24] * 14
    # 2025-01-02 is a Thursday, as was 1970-01-01
    assert ours.table["chunk"].tolist() == ["2025-01-02/2025-01-08", "2025-01-09/2025-01-15"]
    assert ours.table["n_rows"].tolist() == [168, 168]
