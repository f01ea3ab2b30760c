"""Labels from POST /feedback joined to prediction-log rows by request id and record index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shadowdrift.ground_truth import feedback_labels


def _log(rows: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["request_id", "record_index"])


def _labels(rows: list[tuple[str, int | None, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["request_id", "record_index", "label", "received_at"])
    frame["record_index"] = frame["record_index"].astype("Int64")
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    return frame


def test_labels_join_by_request_and_record_and_missing_ones_stay_nan():
    log = _log([("a", 0), ("a", 1), ("b", 0)])
    labels = _labels([("a", 1, 1, "2026-01-01"), ("b", 0, 0, "2026-01-01")])
    assert feedback_labels(log, labels).tolist()[1:] == [1.0, 0.0]
    assert np.isnan(feedback_labels(log, labels).iloc[0])


def test_a_label_without_record_index_covers_the_whole_request():
    log = _log([("a", 0), ("a", 1), ("a", 2)])
    labels = _labels([("a", None, 1, "2026-01-01")])
    assert feedback_labels(log, labels).tolist() == [1.0, 1.0, 1.0]


def test_the_label_received_last_wins():
    log = _log([("a", 0), ("a", 1)])
    labels = _labels(
        [
            ("a", 0, 1, "2026-01-01"),
            ("a", None, 0, "2026-01-02"),  # a later correction for the whole request
            ("a", 1, 1, "2026-01-03"),  # and a still later one for record 1
        ]
    )
    assert feedback_labels(log, labels).tolist() == [0.0, 1.0]


def test_as_of_ignores_labels_received_later():
    log = _log([("a", 0)])
    labels = _labels([("a", 0, 1, "2026-01-05")])
    assert np.isnan(feedback_labels(log, labels, pd.Timestamp("2026-01-01", tz="UTC")).iloc[0])


def test_a_table_without_the_label_columns_is_named_in_the_error():
    with pytest.raises(ValueError, match="label"):
        feedback_labels(_log([("a", 0)]), pd.DataFrame({"request_id": ["a"]}))


def test_the_catalog_dataset_reads_no_directory_as_no_labels(tmp_path):
    from shadowdrift.datasets import GroundTruthDataset

    labels = GroundTruthDataset(str(tmp_path / "not_yet")).load()
    assert labels.empty and {"request_id", "record_index", "label"} <= set(labels.columns)
    log = _log([("a", 0)])
    assert np.isnan(feedback_labels(log, labels).iloc[0])


def test_feedback_joins_the_same_on_pandas_and_on_dask(base_params):
    import dask.dataframe as dd

    from shadowdrift.pipelines.drift.nodes import attach_ground_truth

    n = 40
    log = pd.DataFrame(
        {
            "request_id": [f"r{i // 4}" for i in range(n)],
            "record_index": [i % 4 for i in range(n)],
            "logged_at": pd.date_range("2025-03-01", periods=n, freq="min", tz="UTC"),
            "event_time": pd.date_range("2025-01-01", periods=n, freq="D", tz="UTC"),
            "customer_id": [str(1000 + i) for i in range(n)],
        }
    )
    production = pd.DataFrame({"customer_id": np.arange(1000, 1000 + n), "churned": [1] * n})
    labels = _labels(
        [("r0", None, 0, "2025-03-02"), ("r1", 2, 0, "2025-03-02"), ("r9", 3, 0, "2025-03-02")]
    )
    params = {"delay_days": 30, "as_of": None}
    schema = base_params["schema"]
    expected = attach_ground_truth(log, production, labels, schema, params)
    on_dask = attach_ground_truth(
        dd.from_pandas(log, npartitions=3),
        dd.from_pandas(production, npartitions=2),
        labels,
        schema,
        params,
    ).compute()
    key = ["request_id", "record_index"]
    merged = expected[[*key, "churned"]].merge(
        on_dask[[*key, "churned"]], on=key, suffixes=("", "_dask")
    )
    assert len(merged) == n
    assert merged["churned"].equals(merged["churned_dask"])
    # feedback wins; raw_production's label only where 30 days have passed; none elsewhere
    by_key = expected.set_index(key)["churned"]
    assert by_key[("r0", 1)] == 0 and by_key[("r1", 2)] == 0 and by_key[("r9", 3)] == 0
    assert by_key[("r1", 0)] == 1 and np.isnan(by_key[("r8", 0)])


def test_feedback_labels_follow_the_schemas_positive_class():
    from shadowdrift.serving.feedback import parse_labels
    from shadowdrift.serving.request_validation import RequestRejected

    items = [{"request_id": "r", "label": "yes"}, {"request_id": "r", "label": "no"}]
    labels = parse_labels({"labels": items}, 10, positive_class="yes")
    assert [label.label for label in labels] == [1, 0]
    # a number for a yes/no target is refused, not read as "not yes"
    with pytest.raises(RequestRejected) as caught:
        parse_labels({"request_id": "r", "label": 1}, 10, positive_class="yes")
    assert "'yes' for the positive class" in caught.value.problems[0].message
    assert parse_labels({"request_id": "r", "label": True}, 10)[0].label == 1


def test_ground_truth_files_that_call_the_label_churned_are_still_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shadowdrift.serving.feedback import read_ground_truth

    day = tmp_path / "date=2026-01-01"
    day.mkdir()
    earlier = pa.table(
        {
            "request_id": ["r1"],
            "record_index": pa.array([0], pa.int64()),
            "churned": pa.array([1], pa.int64()),
            "received_at": pa.array(
                [pd.Timestamp("2026-01-01", tz="UTC")], pa.timestamp("us", "UTC")
            ),
            "source": ["service"],
        }
    )
    pq.write_table(earlier, day / "part-0.parquet")
    labels = read_ground_truth(tmp_path)
    assert labels["label"].tolist() == [1]
