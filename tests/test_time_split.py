"""Time split: boundaries, no leakage, and clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from shadowdrift.time_split import SplitConfigError, split_by_time


def frame(n: int = 1000) -> pd.DataFrame:
    times = pd.date_range("2024-01-01", periods=n, freq="h")
    # shuffled on purpose: the split must not rely on input order
    return pd.DataFrame({"t": times, "x": range(n)}).sample(frac=1.0, random_state=0)


def test_fractions_give_the_expected_sizes_and_no_leakage():
    split = split_by_time(frame(), "t", train_fraction=0.6, test_fraction=0.2)
    assert (len(split.train), len(split.test), len(split.reference)) == (600, 200, 200)
    assert split.train["t"].max() < split.test["t"].min()
    assert split.test["t"].max() < split.reference["t"].min()
    assert split.train["t"].max() < split.train_end <= split.test["t"].min()
    assert split.test["t"].max() < split.test_end <= split.reference["t"].min()
    assert sorted(pd.concat([split.train, split.test, split.reference])["x"]) == list(range(1000))


def test_rows_sharing_a_timestamp_never_straddle_a_boundary():
    data = pd.DataFrame(
        {"t": pd.to_datetime(["2024-01-01"] * 50 + ["2024-01-02"] * 50 + ["2024-01-03"] * 50)}
    )
    split = split_by_time(data, "t", train_fraction=0.4, test_fraction=0.3)
    assert set(split.train["t"]).isdisjoint(split.test["t"])
    assert set(split.test["t"]).isdisjoint(split.reference["t"])


def test_explicit_dates_win_over_fractions():
    split = split_by_time(frame(), "t", train_end="2024-01-10", test_end="2024-01-20")
    assert split.train["t"].max() < pd.Timestamp("2024-01-10") <= split.test["t"].min()
    assert split.test["t"].max() < pd.Timestamp("2024-01-20") <= split.reference["t"].min()


def test_summary_reports_each_window():
    data = frame()
    data["y"] = data["x"] % 2
    summary = split_by_time(data, "t").summary("t", "y")
    assert summary["windows"]["train"]["rows"] == 600
    assert summary["windows"]["test"]["label_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_fraction": 0.8, "test_fraction": 0.3}, "train_fraction \\+ test_fraction < 1"),
        ({"train_end": "2024-01-10"}, "set both train_end and test_end"),
        ({"train_end": "2024-01-20", "test_end": "2024-01-10"}, "test window is empty"),
        ({"train_end": "soon", "test_end": "later"}, "must be dates"),
        ({"min_rows": 300}, "the test window has 200 rows, fewer than"),
    ],
)
def test_bad_split_parameters_are_explained(kwargs, message):
    with pytest.raises(SplitConfigError, match=message):
        split_by_time(frame(), "t", **kwargs)


def test_empty_table_is_refused():
    with pytest.raises(SplitConfigError, match="empty"):
        split_by_time(frame().iloc[0:0], "t")
