"""Tests for chunking by period and by size (src/shadowdrift/drift_chunks.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shadowdrift.drift_chunks import (
    CHUNK_TABLE_COLUMNS,
    ChunkingError,
    assign_chunks,
    factorize_chunk_key,
    normalise_timestamps,
)
from shadowdrift.drift_params import ChunkingParams


def _times(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"))


def test_weekly_periods_run_monday_to_sunday():
    times = _times("2025-01-01 10:00", "2025-01-05 23:59", "2025-01-06 00:00", "2025-01-14")
    result = assign_chunks(times, ChunkingParams(period="W", min_rows=2))
    table = result.table
    assert list(table.columns) == list(CHUNK_TABLE_COLUMNS)
    assert table["chunk"].tolist() == [
        "2024-12-30/2025-01-05",
        "2025-01-06/2025-01-12",
        "2025-01-13/2025-01-19",
    ]
    assert table["start"].tolist() == list(
        pd.to_datetime(["2024-12-30", "2025-01-06", "2025-01-13"])
    )
    # end is the first instant of the next period: chunks are [start, end)
    assert table["end"].tolist() == list(pd.to_datetime(["2025-01-06", "2025-01-13", "2025-01-20"]))
    assert result.codes.tolist() == [0, 0, 1, 2]
    assert table["n_rows"].tolist() == [2, 1, 1]
    assert table["complete"].tolist() == [True, False, False]
    assert result.labels.tolist()[2] == "2025-01-06/2025-01-12"
    assert result.complete_chunks() == ["2024-12-30/2025-01-05"]


def test_rows_keep_their_positions_when_not_sorted():
    times = _times("2025-02-10", "2025-01-01", "2025-02-11", "2025-01-02")
    result = assign_chunks(times, ChunkingParams(period="M", min_rows=1))
    assert result.table["chunk"].tolist() == ["2025-01", "2025-02"]
    assert result.codes.tolist() == [1, 0, 1, 0]


def test_fixed_length_periods_are_aligned_to_the_epoch_and_do_not_overlap():
    # NannyML's chunk_period="7D" would make one chunk per day (pandas 7D periods start on
    # every day); ours are 7-day bins from 1970-01-01, a Thursday.
    days = pd.Series(pd.date_range("2025-01-01", periods=21, freq="D"))
    result = assign_chunks(days, ChunkingParams(period="7D", min_rows=1))
    table = result.table
    assert len(table) == 4
    assert (table["end"] - table["start"] == pd.Timedelta(days=7)).all()
    assert all(start.day_name() == "Thursday" for start in table["start"])
    assert (table["start"].iloc[1:].to_numpy() == table["end"].iloc[:-1].to_numpy()).all()
    assert table["chunk"].iloc[1] == "2025-01-02/2025-01-08"
    assert table["n_rows"].sum() == 21


def test_sub_daily_periods_are_labelled_with_their_start_time():
    times = _times("2025-01-01 01:00", "2025-01-01 13:00")
    table = assign_chunks(times, ChunkingParams(period="12h", min_rows=1)).table
    assert table["chunk"].tolist() == ["2025-01-01 00:00", "2025-01-01 12:00"]


def test_size_chunks_follow_event_time_with_a_short_last_chunk():
    rng = np.random.default_rng(0)
    times = pd.Series(pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.permutation(25), unit="h"))
    result = assign_chunks(times, ChunkingParams(by="size", size=10, min_rows=6))
    table = result.table
    assert table["chunk"].tolist() == ["[0:9]", "[10:19]", "[20:24]"]
    assert table["n_rows"].tolist() == [10, 10, 5]
    assert table["complete"].tolist() == [True, True, False]
    # each row's chunk is its rank in time // size
    rank = times.rank(method="first").astype(int).to_numpy() - 1
    assert result.codes.tolist() == (rank // 10).tolist()
    assert table["start"].iloc[0] == times.min() and table["end"].iloc[-1] == times.max()


def test_size_chunks_break_timestamp_ties_by_row_order():
    times = _times(*["2025-01-01"] * 5)
    result = assign_chunks(times, ChunkingParams(by="size", size=2, min_rows=1))
    assert result.codes.tolist() == [0, 0, 1, 1, 2]


def test_tz_aware_times_are_chunked_in_utc():
    naive = _times("2025-01-05 23:30", "2025-01-06 00:30")
    aware = naive.dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")
    params = ChunkingParams(period="W", min_rows=1)
    assert assign_chunks(aware, params).table.equals(assign_chunks(naive, params).table)
    assert normalise_timestamps(aware, "t").dtype == np.dtype("datetime64[ns]")


def test_strings_are_parsed_as_timestamps():
    table = assign_chunks(pd.Series(["2025-01-01", "2025-01-02"]), ChunkingParams(period="D")).table
    assert table["chunk"].tolist() == ["2025-01-01", "2025-01-02"]


def test_missing_or_bad_timestamps_fail_naming_the_column():
    with pytest.raises(ChunkingError, match="column 'event_time' has 1 missing"):
        assign_chunks(_times("2025-01-01", None), ChunkingParams(), column="event_time")
    with pytest.raises(ChunkingError, match="column 'ts' does not hold timestamps"):
        assign_chunks(pd.Series(["soon"]), ChunkingParams(), column="ts")
    with pytest.raises(ChunkingError, match="no rows to chunk"):
        assign_chunks(pd.Series([], dtype="datetime64[ns]"), ChunkingParams())


def test_a_categorical_chunk_key_factorizes_as_its_labels_do():
    labels = np.array(["2025-01-13", "2025-01-06", "2025-01-13", "2025-01-06", "2025-01-20"])
    # categories in another order than sorted, and one that no row uses
    key = pd.Categorical(labels, categories=["2025-01-20", "2025-01-13", "2025-01-06", "x"])
    for sort in (True, False):
        codes, uniques = factorize_chunk_key(labels.astype(object), len(labels), sort=sort)
        cat_codes, cat_uniques = factorize_chunk_key(key, len(labels), sort=sort)
        series_codes, series_uniques = factorize_chunk_key(pd.Series(key), len(labels), sort=sort)
        # the same label for every row, and each label once
        assert list(uniques[codes]) == list(cat_uniques[cat_codes]) == list(labels)
        assert list(series_uniques[series_codes]) == list(labels)
        assert sorted(cat_uniques) == sorted(uniques) == ["2025-01-06", "2025-01-13", "2025-01-20"]
        if sort:
            assert list(cat_uniques) == list(uniques)
            assert list(cat_codes) == list(codes)


def test_a_chunk_key_of_the_wrong_length_or_with_gaps_is_refused():
    with pytest.raises(ValueError, match=r"one label per row: got shape \(2,\) for 3 rows"):
        factorize_chunk_key(["a", "b"], 3, sort=True)
    with pytest.raises(ValueError, match="missing values"):
        factorize_chunk_key(pd.Categorical(["a", None, "a"]), 3, sort=False)
    with pytest.raises(ValueError, match="missing values"):
        factorize_chunk_key(np.array(["a", None], dtype=object), 2, sort=True)
