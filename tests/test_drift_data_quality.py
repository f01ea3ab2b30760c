"""Tests for per-chunk data-quality counts (src/shadowdrift/data_quality.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shadowdrift.data_quality import (
    QUALITY_COLUMNS,
    DataQualityError,
    count_quality,
    merge_quality,
    quality_table,
)
from shadowdrift.drift_chunks import assign_chunks
from shadowdrift.drift_params import ChunkingParams
from shadowdrift.schema import parse_schema

SCHEMA = parse_schema(
    {
        "id": "id",
        "timestamp": "t",
        "target": "y",
        "numeric": {"x": {"min": 0, "max": 10}, "z": {}},
        "categorical": {"c": {"values": ["a", "b"]}},
    }
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, np.nan, -1.0, 11.0, 5.0, np.nan],
            "z": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
            "c": ["a", None, "new", "b", "new", "other"],
        }
    )


def _row(table: pd.DataFrame, chunk: str, feature: str) -> pd.Series:
    return table.set_index(["chunk", "feature"]).loc[(chunk, feature)]


def test_counts_and_rates_per_chunk_and_feature():
    key = ["w1", "w1", "w1", "w2", "w2", "w2"]
    table = quality_table(count_quality(_frame(), key, SCHEMA), SCHEMA, ["w1", "w2"])
    assert list(table.columns) == list(QUALITY_COLUMNS)
    assert len(table) == 2 * 3

    x1 = _row(table, "w1", "x")
    assert (x1["n_rows"], x1["n_missing"], x1["n_below_min"], x1["n_above_max"]) == (3, 1, 1, 0)
    assert x1["missing_rate"] == pytest.approx(1 / 3)
    assert x1["out_of_range_rate"] == pytest.approx(1 / 3)
    assert np.isnan(x1["unseen_rate"])
    x2 = _row(table, "w2", "x")
    assert (x2["n_missing"], x2["n_below_min"], x2["n_above_max"]) == (1, 0, 1)

    # no bounds in the schema: nothing is out of range
    assert _row(table, "w1", "z")["n_out_of_range"] == 0
    assert _row(table, "w1", "z")["n_missing"] == 1

    c1, c2 = _row(table, "w1", "c"), _row(table, "w2", "c")
    assert (c1["n_missing"], c1["n_unseen"], c1["unseen_values"]) == (1, 1, {"new": 1})
    assert (c2["n_missing"], c2["n_unseen"]) == (0, 2)
    assert c2["unseen_values"] == {"new": 1, "other": 1}
    assert c2["unseen_rate"] == pytest.approx(2 / 3)
    assert np.isnan(c2["out_of_range_rate"])


def test_counts_of_partitions_add_up_to_the_counts_of_the_whole():
    rng = np.random.default_rng(3)
    n = 5000
    frame = pd.DataFrame(
        {
            "t": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 60 * 86400, n), "s"),
            "x": np.where(rng.random(n) < 0.05, np.nan, rng.normal(5, 4, n)),
            "z": rng.normal(size=n),
            "c": rng.choice(
                np.array(["a", "b", "new", None], dtype=object), n, p=[0.5, 0.4, 0.05, 0.05]
            ),
        }
    )
    params = ChunkingParams(period="W", min_rows=1)
    whole = count_quality(frame, assign_chunks(frame["t"], params).labels, SCHEMA)
    # Period chunks depend on each row's timestamp only, so partitions are chunked on their own.
    shuffled = frame.sample(frac=1.0, random_state=1)
    parts = [
        count_quality(part, assign_chunks(part["t"], params).labels, SCHEMA)
        for part in (shuffled.iloc[i::4] for i in range(4))
    ]
    merged = merge_quality(parts)
    assert merged.n_rows.sort_index().equals(whole.n_rows.sort_index())
    assert merged.counts.sort_index().equals(whole.counts.sort_index())
    assert sum(parts).counts.sort_index().equals(whole.counts.sort_index())
    order = sorted(whole.chunks)
    pd.testing.assert_frame_equal(
        quality_table(merged, SCHEMA, order), quality_table(whole, SCHEMA, order)
    )


def test_integer_and_nullable_columns_are_read_as_numbers():
    frame = pd.DataFrame(
        {
            "x": pd.array([1, None, 12], dtype="Int64"),
            "z": np.array([1, 2, 3], dtype=np.int64),
            "c": pd.Categorical(["a", "b", "zz"]),
        }
    )
    table = quality_table(count_quality(frame, ["k"] * 3, SCHEMA), SCHEMA)
    assert _row(table, "k", "x")[["n_missing", "n_above_max"]].tolist() == [1, 1]
    assert _row(table, "k", "c")["unseen_values"] == {"zz": 1}


def test_bad_input_fails_naming_the_column():
    with pytest.raises(DataQualityError, match=r"missing feature column.*'z'"):
        count_quality(_frame().drop(columns="z"), ["k"] * 6, SCHEMA)
    frame = _frame().assign(x=["1", "2", "x", "4", "5", "6"])
    with pytest.raises(DataQualityError, match="numeric feature 'x'"):
        count_quality(frame, ["k"] * 6, SCHEMA)
    with pytest.raises(DataQualityError, match="one label per row"):
        count_quality(_frame(), ["k"], SCHEMA)
    with pytest.raises(DataQualityError, match="at least one"):
        merge_quality([])
