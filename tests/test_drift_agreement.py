"""Tests for champion/challenger agreement per chunk (src/shadowdrift/drift_agreement.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shadowdrift.drift_agreement import (
    AGREEMENT_COLUMNS,
    AgreementError,
    agreement_table,
    count_agreement,
    merge_agreement,
)


def _log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "champion_probability": [0.9, 0.2, 0.6, 0.1, 0.7, 0.4],
            "champion_label": [1, 0, 1, 0, 1, 0],
            "challenger_status": ["ok", "ok", "ok", "shed", "failed", "sampled_out"],
            "challenger_probability": [0.8, 0.3, 0.4, np.nan, np.nan, np.nan],
            "challenger_label": pd.array([1, 0, 0, None, None, None], dtype="Int64"),
        }
    )


def test_agreement_rates_and_status_counts_per_chunk():
    counts = count_agreement(_log(), ["a", "a", "a", "b", "b", "b"])
    table = agreement_table(counts, ["a", "b"])
    assert list(table.columns) == list(AGREEMENT_COLUMNS)
    a, b = table.iloc[0], table.iloc[1]
    assert (a["n_rows"], a["n_compared"], a["n_ok"]) == (3, 3, 3)
    assert a["agreement_rate"] == pytest.approx(2 / 3)
    assert a["mean_abs_probability_diff"] == pytest.approx((0.1 + 0.1 + 0.2) / 3)
    assert a["challenger_coverage"] == pytest.approx(1.0)
    assert (b["n_compared"], b["n_shed"], b["n_failed"], b["n_sampled_out"]) == (0, 1, 1, 1)
    assert np.isnan(b["agreement_rate"]) and np.isnan(b["mean_abs_probability_diff"])
    assert b["challenger_coverage"] == 0.0


def test_partition_sums_merge_to_the_whole():
    log = _log()
    key = np.array(["a", "b", "a", "b", "a", "b"])
    whole = count_agreement(log, key)
    merged = merge_agreement(
        [count_agreement(log.iloc[:4], key[:4]), count_agreement(log.iloc[4:], key[4:])]
    )
    pd.testing.assert_frame_equal(
        agreement_table(merged, ["a", "b"]), agreement_table(whole, ["a", "b"])
    )


def test_bad_logs_fail_clearly():
    with pytest.raises(AgreementError, match="'challenger_status'"):
        count_agreement(_log().drop(columns="challenger_status"), ["a"] * 6)
    bad = _log().assign(challenger_status=["ok", "ok", "ok", "busy", "ok", "ok"])
    with pytest.raises(AgreementError, match=r"unknown value\(s\) \['busy'\]"):
        count_agreement(bad, ["a"] * 6)
    with pytest.raises(AgreementError, match="no agreement counts"):
        agreement_table(count_agreement(_log(), ["a"] * 6), ["a", "zzz"])


def test_records_the_circuit_breaker_skipped_are_counted_not_hidden():
    log = _log()
    log.loc[5, "challenger_status"] = "skipped"
    table = agreement_table(count_agreement(log, ["a"] * 6), ["a"])
    row = table.iloc[0]
    assert (row["n_skipped"], row["n_sampled_out"], row["n_compared"]) == (1, 0, 3)
    assert row["challenger_coverage"] == pytest.approx(3 / 6)


def test_canary_records_are_counted_apart_from_the_shadow():
    log = pd.concat([_log(), _log().iloc[:3]], ignore_index=True)
    # the last three rows: the challenger answered them (the canary); the champion scored too
    log["model_variant"] = ["champion"] * 6 + ["challenger"] * 3
    log.loc[6, "challenger_label"] = 0  # now two canary records where the models disagree
    table = agreement_table(count_agreement(log, ["a"] * 9), ["a"])
    row = table.iloc[0]
    assert (row["n_rows"], row["n_canary"]) == (9, 3)
    # the shadow's figures are the champion-answered records' alone, as without the canary
    shadow = agreement_table(count_agreement(_log(), ["a"] * 6), ["a"]).iloc[0]
    for column in ("n_compared", "agreement_rate", "mean_abs_probability_diff", "n_ok", "n_shed"):
        assert row[column] == pytest.approx(shadow[column]), column
    assert row["challenger_coverage"] == pytest.approx(3 / 6)
    assert row["canary_agreement_rate"] == pytest.approx(1 / 3)
    assert row["canary_mean_abs_probability_diff"] == pytest.approx((0.1 + 0.1 + 0.2) / 3)
    # the Dask path reads the variant as a category: the same counts
    as_category = log.assign(model_variant=log["model_variant"].astype("category"))
    pd.testing.assert_frame_equal(
        count_agreement(as_category, ["a"] * 9), count_agreement(log, ["a"] * 9)
    )
    # a log without the column was answered by the champion throughout
    assert np.isnan(shadow["canary_agreement_rate"]) and shadow["n_canary"] == 0
