"""Helpers for code that takes a pandas *or* a Dask DataFrame.

Nodes keep their pandas code path untouched and branch once on ``is_dask_frame``; the Dask path
uses these helpers to run a function per partition and bring back only small results (counts,
failure examples, statistics), never a whole table.

Only ``dask`` itself is imported here (cheap); ``dask.dataframe`` (over a second to import) is
not, so the pandas path does not pay for it.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import dask.dataframe as dd

# Global row position of a record in its dataset (0-based), carried while a Dask table is
# reordered so that ties sort exactly as the pandas path's stable sort leaves them.
ROW_POSITION = "__shadowdrift_row"


def is_dask_frame(obj: Any) -> bool:
    """Whether ``obj`` is a Dask DataFrame or Series (without importing Dask if nobody has)."""
    module = sys.modules.get("dask.dataframe")
    if module is None:
        return False
    return isinstance(obj, module.DataFrame | module.Series)


def partition_tasks(
    func: Callable[..., Any], frame: dd.DataFrame, *args: Any, **kwargs: Any
) -> list[Any]:
    """Lazy ``func(partition, partition_number, *args, **kwargs)``, one per partition.

    Compute them together with other lazy results (``dask.compute``) so the table is read once.
    Large arguments (fitted models, bins) are shipped once, not once per partition.
    """
    shared_args = [dask.delayed(arg, pure=True) for arg in args]
    shared_kwargs = {key: dask.delayed(value, pure=True) for key, value in kwargs.items()}
    return [
        dask.delayed(func, pure=True)(part, number, *shared_args, **shared_kwargs)
        for number, part in enumerate(frame.to_delayed())
    ]


def map_partitions_to_list(
    func: Callable[..., Any], frame: dd.DataFrame, *args: Any, **kwargs: Any
) -> list[Any]:
    """``func(partition, partition_number, *args, **kwargs)`` for every partition, computed.

    Each call runs where its partition lives (a worker, with a distributed client); only the
    return values travel back, so ``func`` must return something small.
    """
    return list(dask.compute(*partition_tasks(func, frame, *args, **kwargs)))


def partition_lengths(frame: dd.DataFrame) -> np.ndarray:
    """Rows per partition (int64), in partition order."""
    lengths = map_partitions_to_list(_length, frame)
    return np.asarray(lengths, dtype=np.int64)


def _length(part: pd.DataFrame, _number: int) -> int:
    return len(part)


def partition_offsets(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Global position of the first row of every partition."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def with_row_positions(frame: dd.DataFrame, offsets: np.ndarray) -> dd.DataFrame:
    """``frame`` with a ``ROW_POSITION`` column: each row's position in the whole table."""
    meta = frame._meta.assign(**{ROW_POSITION: np.array([], dtype=np.int64)})
    return frame.map_partitions(_add_positions, list(map(int, offsets)), meta=meta)


def _add_positions(
    part: pd.DataFrame, offsets: list[int], partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    # Dask passes no partition_info only when it probes the function on sample data.
    start = offsets[partition_info["number"]] if partition_info is not None else 0
    return part.assign(**{ROW_POSITION: np.arange(start, start + len(part), dtype=np.int64)})


def compute_together(*collections: Any) -> tuple[Any, ...]:
    """``dask.compute`` of delayed per-partition tasks and DataFrame results in one pass.

    Dask warns that mixing the two materialises the expressions; that is the point here (the
    table is read once for both), so the warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Computing mixed collections")
        return dask.compute(*collections)
