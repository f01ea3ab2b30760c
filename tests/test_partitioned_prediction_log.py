"""The prediction log read as a Dask DataFrame: same rows and checks as the pandas reader."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shadowdrift import partitioned_prediction_log as ppl
from shadowdrift.prediction_log import (
    LogSchema,
    PredictionLogError,
    list_part_files,
    read_prediction_log,
    write_batch,
)

SCHEMA = LogSchema(("x", "y"), ("colour",), "customer_id")


def batch(n: int, seed: int, request_id: str | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probability = rng.random(n)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + 1000 * seed,
            "event_time": pd.Timestamp("2026-01-05", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "x": rng.normal(size=n),
            "y": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "colour": rng.choice(["red", "blue", None], n),
            "champion_probability": probability,
            "champion_label": (probability >= 0.5).astype(int),
            "champion_model_version": "3",
            **({"request_id": [f"{request_id}-{i:03d}" for i in range(n)]} if request_id else {}),
        }
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    root = tmp_path / "log"
    for seed in range(5):
        write_batch(root, batch(40, seed), SCHEMA, max_records_per_file=15)
    # one batch whose request ids run against file order: a partition must sort it
    write_batch(root, batch(30, 9, request_id="r")[::-1], SCHEMA, max_records_per_file=30)
    return root


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="sync", **{"dataframe.convert-string": False}):
        yield


def partitions(frame) -> list[pd.DataFrame]:
    return list(dask.compute(*frame.to_delayed()))


def test_partitions_hold_what_read_prediction_log_reads(log_dir: Path) -> None:
    log = ppl.read_prediction_log_partitioned(log_dir, files_per_partition=4)
    files = list_part_files(log_dir)
    parts = partitions(log)
    assert len(parts) == log.npartitions == -(-len(files) // 4)
    expected = read_prediction_log(log_dir)
    keys = ["logged_at", "request_id", "record_index"]
    for number, part in enumerate(parts):
        group = files[number * 4 : number * 4 + 4]
        assert len(part) == sum(pq.ParquetFile(f).metadata.num_rows for f in group)
        # in the log's order (the last batch was written against it), the documented dtypes
        assert part[keys].equals(part[keys].sort_values(keys, ignore_index=True))
        assert part.dtypes.equals(expected.dtypes)
    whole = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(whole, expected)


def test_partitions_close_at_a_number_of_files_or_of_bytes(log_dir: Path) -> None:
    files = [str(f) for f in list_part_files(log_dir)]
    sizes = [Path(f).stat().st_size for f in files]
    by_count = ppl._groups(files, 4, 10**9)
    assert [len(g) for g in by_count] == [4] * (len(files) // 4) + (
        [len(files) % 4] if len(files) % 4 else []
    )
    # room for two files of the first group, not three; a file larger than the cap stands alone
    two = sizes[0] + sizes[1]
    by_bytes = ppl._groups(files, 64, two)
    assert by_bytes[0] == files[:2]
    assert [f for group in by_bytes for f in group] == files
    assert all(len(g) == 1 or sum(Path(f).stat().st_size for f in g) <= two for g in by_bytes)
    assert all(len(g) == 1 for g in ppl._groups(files, 64, 1))
    log = ppl.read_prediction_log_partitioned(log_dir, partition_bytes=two)
    assert log.npartitions == len(by_bytes)
    assert len(log.compute()) == len(read_prediction_log(log_dir))


def test_selected_columns_are_pushed_into_the_read(log_dir: Path, monkeypatch) -> None:
    seen: list[list[str] | None] = []
    read_group = ppl._read_group

    def spy(files, schema_json, start, end, categorical_dtype="object", columns=None):
        seen.append(columns)
        return read_group(files, schema_json, start, end, categorical_dtype, columns=columns)

    monkeypatch.setattr(ppl, "_read_group", spy)
    log = ppl.read_prediction_log_partitioned(log_dir, files_per_partition=4)
    parts = partitions(log[["event_time", "x", "colour"]])
    assert seen and all(columns == ["event_time", "x", "colour"] for columns in seen)
    assert list(parts[0].columns) == ["event_time", "x", "colour"]
    whole = read_prediction_log(log_dir)
    assert sum(len(p) for p in parts) == len(whole)
    assert parts[0]["event_time"].dtype == whole["event_time"].dtype
    direct = ppl.read_prediction_log_partitioned(log_dir, columns=["x"]).compute()
    assert list(direct.columns) == ["x"] and len(direct) == len(whole)
    with pytest.raises(PredictionLogError, match="not in the prediction log"):
        ppl.read_prediction_log_partitioned(log_dir, columns=["nope"])


def test_categorical_features_as_category_hold_the_same_values(log_dir: Path) -> None:
    whole = read_prediction_log(log_dir)
    log = ppl.read_prediction_log_partitioned(
        log_dir, files_per_partition=4, categorical_dtype="category"
    )
    assert isinstance(log.dtypes["colour"], pd.CategoricalDtype)
    parts = partitions(log)
    assert all(isinstance(p["colour"].dtype, pd.CategoricalDtype) for p in parts)
    frame = pd.concat(parts, ignore_index=True)
    frame["colour"] = frame["colour"].astype(object)
    pd.testing.assert_frame_equal(frame, whole)
    # a projection keeps the dtype; other columns keep the documented ones
    part = partitions(log[["colour", "x"]])[0]
    assert isinstance(part["colour"].dtype, pd.CategoricalDtype)
    assert part["x"].dtype == whole["x"].dtype
    with pytest.raises(ValueError, match="categorical_dtype must be one of"):
        ppl.read_prediction_log_partitioned(log_dir, categorical_dtype="string")


def test_a_file_that_breaks_a_rule_is_named_when_read_as_category(log_dir: Path) -> None:
    bad = list_part_files(log_dir)[3]

    def unknown_status(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("challenger_status")
        values = pa.array(["lost"] * table.num_rows, pa.string())
        return table.set_column(index, table.schema.field(index), values)

    _rewrite(bad, unknown_status)
    log = ppl.read_prediction_log_partitioned(log_dir, categorical_dtype="category")
    with pytest.raises(PredictionLogError, match=rf"part file {bad}: challenger_status not in"):
        log.compute()


def _rewrite(file: Path, change) -> None:
    table = pq.read_table(file)
    pq.write_table(change(table), file)


def test_a_file_that_breaks_a_rule_is_named(log_dir: Path) -> None:
    files = list_part_files(log_dir)
    bad = files[5]

    def too_high(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("champion_probability")
        values = pa.array([1.5] * table.num_rows, pa.float64())
        return table.set_column(index, table.schema.field(index), values)

    _rewrite(bad, too_high)
    log = ppl.read_prediction_log_partitioned(log_dir, files_per_partition=4)
    with pytest.raises(PredictionLogError, match=rf"part file {bad}: champion_probability"):
        log.compute()


def test_a_file_with_castable_types_is_read_like_the_pandas_reader(log_dir: Path) -> None:
    file = list_part_files(log_dir)[2]

    def as_float32(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("x")
        field = table.schema.field(index).with_type(pa.float32())
        return table.set_column(index, field, table.column(index).cast(pa.float32()))

    _rewrite(file, as_float32)
    got = ppl.read_prediction_log_partitioned(log_dir, files_per_partition=4).compute()
    expected = read_prediction_log(log_dir)
    keys = ["request_id", "record_index"]
    pd.testing.assert_frame_equal(
        got.sort_values(keys, ignore_index=True), expected.sort_values(keys, ignore_index=True)
    )


@pytest.mark.parametrize(
    ("logged_at", "request_id", "record_index", "in_order"),
    [
        ([1, 1, 2, 2], ["a", "b", "a", "a"], [0, 0, 0, 1], True),
        ([1, 1, 2, 2], ["b", "a", "a", "a"], [0, 0, 1, 0], False),
        ([2, 1], ["a", "a"], [0, 0], False),
        ([1, 1, 1], ["a", "a", "a"], [0, 2, 1], False),
        ([1], ["a"], [0], True),
    ],
)
def test_rows_are_put_in_log_order_only_when_needed(logged_at, request_id, record_index, in_order):
    table = pa.table(
        {
            "logged_at": pa.array(logged_at, pa.int64()),
            "request_id": request_id,
            "record_index": pa.array(record_index, pa.int64()),
        }
    )
    ordered = ppl._in_log_order(table)
    expected = table.sort_by([("logged_at", "ascending"), ("request_id", "ascending"),
                              ("record_index", "ascending")])  # fmt: skip
    assert ordered.equals(expected)
    assert (ordered is table) == in_order
