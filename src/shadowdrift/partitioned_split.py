"""Split a Dask DataFrame by time into train, test and reference windows, as ``time_split`` does.

The boundaries are the same timestamps ``time_split.split_by_time`` picks: the timestamp at
which a fraction of the rows has passed, an exact order statistic (Dask's ``quantile`` is
approximate and could cut one row off). It is computed without sorting the table in the
client: per-partition row counts and timestamp ranges find the partition that holds the
k-th timestamp, and only that partition's timestamps are sorted, on its worker. This needs
partitions that do not overlap in time, which ``validate_and_clean_events`` guarantees (it
writes the table sorted); other tables are sorted first.

The windows are then lazy filters (``[.., train_end)``, ``[train_end, test_end)``,
``[test_end, ..)``). Train and test stay partitioned; the reference window, the baseline
drift monitoring fits on, is small and returned as pandas. Window sizes and the summary
(rows, time range, label rate) come from one pass of per-partition sums.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shadowdrift.frames import compute_together, map_partitions_to_list, partition_tasks
from shadowdrift.time_split import WINDOWS, SplitConfigError

if TYPE_CHECKING:
    import dask.dataframe as dd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionedSplit:
    """Train and test as lazy Dask frames, the reference in memory, and the split summary."""

    train: dd.DataFrame
    test: dd.DataFrame
    reference: pd.DataFrame
    train_end: pd.Timestamp
    test_end: pd.Timestamp
    summary: dict[str, Any]


@dataclass(frozen=True)
class _Span:
    rows: int
    start: Any
    end: Any


def _span(part: pd.DataFrame, _number: int, timestamp: str) -> _Span:
    times = part[timestamp]
    if len(times) == 0:
        return _Span(0, None, None)
    return _Span(len(times), times.min(), times.max())


def _non_overlapping(spans: list[_Span]) -> bool:
    """Whether concatenating the partitions, each sorted, gives the table sorted by time."""
    filled = [s for s in spans if s.rows]
    return all(a.end <= b.start for a, b in itertools.pairwise(filled))


def _kth_time(part: pd.DataFrame, _number: int, timestamp: str, k: int) -> Any:
    return np.sort(part[timestamp].to_numpy(), kind="stable")[k]


def _order_statistic(
    frame: dd.DataFrame, timestamp: str, spans: list[_Span], index: int
) -> pd.Timestamp:
    """The ``index``-th smallest timestamp (0-based) of non-overlapping partitions."""
    before = 0
    for number, span in enumerate(spans):
        if index < before + span.rows:
            partition = frame.partitions[number]
            (value,) = map_partitions_to_list(_kth_time, partition, timestamp, index - before)
            return pd.Timestamp(value)
        before += span.rows
    raise IndexError(f"row {index} is beyond the {before} rows of the table")


def _boundary_index(fraction: float, n_rows: int) -> int:
    # Exactly ``time_split._boundary``'s rounding, so both paths cut at the same row.
    return min(round(fraction * n_rows), n_rows - 1)


def _boundaries(
    frame: dd.DataFrame,
    timestamp: str,
    spans: list[_Span],
    n_rows: int,
    split: dict[str, Any],
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """train_end and test_end, with ``split_by_time``'s checks and messages."""
    train_end, test_end = split.get("train_end"), split.get("test_end")
    train_fraction, test_fraction = split.get("train_fraction"), split.get("test_fraction")
    if (train_end is None) != (test_end is None):
        raise SplitConfigError(
            "data_engineering.split: set both train_end and test_end, or neither (to use fractions)"
        )
    if train_end is not None:
        try:
            return pd.Timestamp(train_end), pd.Timestamp(test_end)
        except (ValueError, TypeError) as exc:
            raise SplitConfigError(
                f"data_engineering.split: train_end/test_end must be dates: {exc}"
            ) from exc
    if train_fraction is None or test_fraction is None:
        raise SplitConfigError("data_engineering.split: set train_fraction and test_fraction")
    if not (
        0 < train_fraction < 1 and 0 < test_fraction < 1 and train_fraction + test_fraction < 1
    ):
        raise SplitConfigError(
            "data_engineering.split: need 0 < train_fraction, 0 < test_fraction and "
            f"train_fraction + test_fraction < 1; got {train_fraction} and {test_fraction}"
        )
    t1 = _order_statistic(frame, timestamp, spans, _boundary_index(train_fraction, n_rows))
    t2 = _order_statistic(
        frame, timestamp, spans, _boundary_index(train_fraction + test_fraction, n_rows)
    )
    return t1, t2


def _window_sums(
    part: pd.DataFrame, _number: int, timestamp: str, target: str | None, bounds: tuple
) -> dict[str, dict[str, Any]]:
    """Rows, first and last timestamp and label sum of every window in one partition."""
    t1, t2 = bounds
    times = part[timestamp]
    masks = {
        "train": times < t1,
        "test": (times >= t1) & (times < t2),
        "reference": times >= t2,
    }
    out = {}
    for name, mask in masks.items():
        selected = times[mask]
        out[name] = {
            "rows": len(selected),
            "start": selected.min() if len(selected) else None,
            "end": selected.max() if len(selected) else None,
            "label_sum": (
                int(part.loc[mask, target].sum()) if target is not None and target in part else None
            ),
        }
    return out


def _merge_sums(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for name in WINDOWS:
        rows = [p[name] for p in parts]
        starts = [r["start"] for r in rows if r["start"] is not None]
        ends = [r["end"] for r in rows if r["end"] is not None]
        sums = [r["label_sum"] for r in rows if r["label_sum"] is not None]
        merged[name] = {
            "rows": sum(r["rows"] for r in rows),
            "start": min(starts) if starts else pd.NaT,
            "end": max(ends) if ends else pd.NaT,
            "label_sum": sum(sums) if len(sums) == len(rows) else None,
        }
    return merged


def _summary(t1: pd.Timestamp, t2: pd.Timestamp, sums: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``TimeSplit.summary`` from per-window sums (the label rate is sum / rows, as mean is)."""
    out: dict[str, Any] = {"train_end": str(t1), "test_end": str(t2), "windows": {}}
    for name in WINDOWS:
        window = sums[name]
        entry: dict[str, Any] = {
            "rows": window["rows"],
            "start": str(pd.Timestamp(window["start"])),
            "end": str(pd.Timestamp(window["end"])),
        }
        if window["label_sum"] is not None:
            entry["label_rate"] = (
                window["label_sum"] / window["rows"] if window["rows"] else float("nan")
            )
        out["windows"][name] = entry
    return out


def split_partitions_by_time(
    frame: dd.DataFrame,
    timestamp: str,
    target: str | None,
    split: dict[str, Any],
    *,
    min_rows: int = 1,
) -> PartitionedSplit:
    """Cut ``frame`` into [.., train_end), [train_end, test_end), [test_end, ..).

    ``split`` holds ``train_fraction``/``test_fraction`` or ``train_end``/``test_end`` as in
    ``data_engineering.split``; errors are ``split_by_time``'s.
    """
    spans = map_partitions_to_list(_span, frame, timestamp)
    n_rows = sum(s.rows for s in spans)
    if n_rows == 0:
        raise SplitConfigError("cannot split an empty table")
    if not _non_overlapping(spans):
        # Not written by validate_and_clean_events: sort (a shuffle, on the workers) first.
        logger.info(
            "Partitions overlap in %s: sorting the table by time before the split", timestamp
        )
        frame = frame.sort_values(timestamp)
        spans = map_partitions_to_list(_span, frame, timestamp)
    t1, t2 = _boundaries(frame, timestamp, spans, n_rows, split)
    if not t1 < t2:
        raise SplitConfigError(
            f"data_engineering.split: the test window is empty (train_end {t1} is not before test_end {t2}); "
            "too many rows share one timestamp, or the boundaries are in the wrong order"
        )
    times = frame[timestamp]
    train = frame[times < t1]
    test = frame[(times >= t1) & (times < t2)]
    reference = frame[times >= t2]
    tasks = partition_tasks(_window_sums, frame, timestamp, target, (t1, t2))
    *parts, reference_frame = compute_together(*tasks, reference)
    sums = _merge_sums(parts)
    for name in WINDOWS:
        rows = sums[name]["rows"]
        if rows < min_rows:
            raise SplitConfigError(
                f"the {name} window has {rows} rows, fewer than data_engineering.min_rows_per_window "
                f"({min_rows}); boundaries: train_end={t1}, test_end={t2}"
            )
    return PartitionedSplit(
        train=train,
        test=test,
        reference=reference_frame.reset_index(drop=True),
        train_end=t1,
        test_end=t2,
        summary=_summary(t1, t2, sums),
    )
