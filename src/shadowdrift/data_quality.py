"""Data-quality counts per chunk: missing values, unseen categories, out-of-range numbers.

Checked against the project's ``DataSchema`` (not against the reference): a categorical value
the schema does not list is *unseen*, a numeric value below the schema's ``min`` or above its
``max`` is *out of range*. Missing values (NaN, None, NA) count as missing only.

Mergeable like ``shadowdrift.psi``: ``count_quality(frame, chunk_key, schema)`` turns any
partition into ``QualityCounts``, integer counts indexed by (chunk, feature, measure, value);
counts of disjoint partitions add up exactly with ``+`` (or ``merge_quality``) to the counts
of their union, so the counting can run per partition on Dask and only the small tables
travel. ``quality_table`` turns counts into rates, one row per (chunk, feature)::

    counts = count_quality(analysis, assignment.labels, schema)
    table = quality_table(counts, schema)

Measures: ``missing``, ``below_min``, ``above_max`` (numeric features with that bound) and
``unseen`` (categorical features; ``value`` holds the unseen category as text, so the report
can say *which* values arrived).

Plain pandas; does not import Kedro.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shadowdrift.drift_chunks import factorize_chunk_key
from shadowdrift.schema import DataSchema

logger = logging.getLogger(__name__)

MEASURES = ("missing", "below_min", "above_max", "unseen")
_INDEX = ("chunk", "feature", "measure", "value")

QUALITY_COLUMNS = (
    "chunk",
    "feature",
    "kind",
    "n_rows",
    "n_missing",
    "missing_rate",
    "n_below_min",
    "n_above_max",
    "n_out_of_range",
    "out_of_range_rate",
    "n_unseen",
    "unseen_rate",
    "unseen_values",
)


class DataQualityError(ValueError):
    """A column cannot be checked: missing from the frame, or not numeric where it must be."""


def _empty_counts() -> pd.Series:
    index = pd.MultiIndex.from_tuples([], names=list(_INDEX))
    return pd.Series([], index=index, dtype=np.int64, name="count")


@dataclass(frozen=True)
class QualityCounts:
    """Counts per (chunk, feature, measure, value) and rows per chunk; add partitions with ``+``.

    Only non-zero counts are stored. ``value`` is ``""`` except for ``unseen``.
    """

    counts: pd.Series
    n_rows: pd.Series

    def __add__(self, other: QualityCounts) -> QualityCounts:
        if not isinstance(other, QualityCounts):
            return NotImplemented
        counts = pd.concat([self.counts, other.counts]).groupby(level=list(_INDEX)).sum()
        n_rows = pd.concat([self.n_rows, other.n_rows]).groupby(level=0).sum()
        return QualityCounts(counts.astype(np.int64), n_rows.astype(np.int64))

    def __radd__(self, other: Any) -> QualityCounts:
        # Lets the builtin sum() start from 0.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    @property
    def chunks(self) -> list[Any]:
        return self.n_rows.index.tolist()


def merge_quality(parts: Iterable[QualityCounts]) -> QualityCounts:
    """Sum the counts of disjoint partitions: equal to counting their union in one go."""
    parts = list(parts)
    if not parts:
        raise DataQualityError("merge_quality needs at least one QualityCounts")
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _check_columns(frame: pd.DataFrame, schema: DataSchema, what: str) -> None:
    missing = [f for f in schema.features if f not in frame.columns]
    if missing:
        raise DataQualityError(
            f"{what} is missing feature column(s) {', '.join(map(repr, missing))} of the schema"
        )


def _as_float(frame: pd.DataFrame, name: str, what: str) -> np.ndarray:
    try:
        return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DataQualityError(
            f"{what}: numeric feature {name!r} (dtype {frame[name].dtype}) does not convert to "
            f"float: {exc}"
        ) from exc


def _per_chunk(codes: np.ndarray, mask: np.ndarray, n_chunks: int) -> np.ndarray:
    if n_chunks == 1:  # the usual case within one partition of a time-ordered log
        return np.array([np.count_nonzero(mask)], dtype=np.int64)
    return np.bincount(codes[mask], minlength=n_chunks)


def count_quality(
    frame: pd.DataFrame,
    chunk_key: np.ndarray | pd.Series | Sequence[Any],
    schema: DataSchema,
    *,
    what: str = "analysis",
) -> QualityCounts:
    """Count missing, out-of-range and unseen values per chunk; ``chunk_key`` labels each row.

    ``what`` names the frame in error messages.
    """
    _check_columns(frame, schema, what)
    try:
        codes, labels = factorize_chunk_key(chunk_key, len(frame), sort=False)
    except ValueError as exc:
        raise DataQualityError(f"{what}: {exc}") from exc
    n_chunks = len(labels)
    labels = np.asarray(labels, dtype=object)
    rows: list[tuple[Any, str, str, str, int]] = []

    def add(name: str, measure: str, per_chunk: np.ndarray, value: str = "") -> None:
        for i in np.flatnonzero(per_chunk):
            rows.append((labels[i], name, measure, value, int(per_chunk[i])))

    for feature in schema.numeric:
        values = _as_float(frame, feature.name, what)
        missing = np.isnan(values)
        add(feature.name, "missing", _per_chunk(codes, missing, n_chunks))
        # NaN compares False, so missing values never count as out of range.
        if feature.min is not None:
            add(feature.name, "below_min", _per_chunk(codes, values < feature.min, n_chunks))
        if feature.max is not None:
            add(feature.name, "above_max", _per_chunk(codes, values > feature.max, n_chunks))

    for feature in schema.categorical:
        column = frame[feature.name]
        # One hash pass: missing values get code -1, the few distinct values are checked.
        value_codes, uniques = pd.factorize(column)
        missing = value_codes < 0
        add(feature.name, "missing", _per_chunk(codes, missing, n_chunks))
        allowed = pd.Index(uniques).isin(feature.values)
        unseen = ~missing & ~np.append(allowed, True)[value_codes]
        if unseen.any():
            # Only the few unseen rows are grouped by value.
            values = column.to_numpy()[unseen].astype(str)
            value_codes, uniques = pd.factorize(values)
            matrix = np.zeros((len(uniques), n_chunks), dtype=np.int64)
            np.add.at(matrix, (value_codes, codes[unseen]), 1)
            for j, value in enumerate(uniques):
                add(feature.name, "unseen", matrix[j], str(value))

    counts = _empty_counts()
    if rows:
        index = pd.MultiIndex.from_tuples([r[:4] for r in rows], names=list(_INDEX))
        counts = pd.Series([r[4] for r in rows], index=index, dtype=np.int64, name="count")
    n_rows = pd.Series(
        np.bincount(codes, minlength=n_chunks).astype(np.int64),
        index=pd.Index(labels, name="chunk"),
        name="n_rows",
    )
    return QualityCounts(counts.sort_index(), n_rows)


def quality_table(
    counts: QualityCounts, schema: DataSchema, chunk_order: Sequence[Any] | None = None
) -> pd.DataFrame:
    """One row per (chunk, feature) with counts and rates (columns ``QUALITY_COLUMNS``).

    Columns that do not apply are NaN (no range for categoricals, no unseen for numerics).
    ``unseen_values`` is a ``{value: count}`` dict, most frequent first. Chunks come in
    ``chunk_order`` if given (e.g. the chunk table's order), else as counted.
    """
    chunks = list(chunk_order) if chunk_order is not None else counts.chunks
    unknown = [c for c in chunks if c not in counts.n_rows.index]
    if unknown:
        raise DataQualityError(f"chunks {unknown} have no data-quality counts")
    by_key = counts.counts.groupby(level=["chunk", "feature", "measure"]).sum().to_dict()
    unseen_values: dict[tuple[Any, str], dict[str, int]] = {}
    unseen = counts.counts[counts.counts.index.get_level_values("measure") == "unseen"]
    for (chunk, feature, _, value), n in unseen.items():
        unseen_values.setdefault((chunk, feature), {})[value] = int(n)
    records = []
    for chunk in chunks:
        n_rows = int(counts.n_rows[chunk])
        for feature in schema.numeric:
            name = feature.name
            n_missing = by_key.get((chunk, name, "missing"), 0)
            below = by_key.get((chunk, name, "below_min"), 0)
            above = by_key.get((chunk, name, "above_max"), 0)
            records.append(
                (chunk, name, "numeric", n_rows, n_missing, n_missing / n_rows, below, above,
                 below + above, (below + above) / n_rows, np.nan, np.nan, {})
            )  # fmt: skip
        for feature in schema.categorical:
            name = feature.name
            n_missing = by_key.get((chunk, name, "missing"), 0)
            n_unseen = by_key.get((chunk, name, "unseen"), 0)
            values = dict(
                sorted(unseen_values.get((chunk, name), {}).items(), key=lambda kv: -kv[1])
            )
            records.append(
                (chunk, name, "categorical", n_rows, n_missing, n_missing / n_rows, np.nan,
                 np.nan, np.nan, np.nan, n_unseen, n_unseen / n_rows, values)
            )  # fmt: skip
    return pd.DataFrame.from_records(records, columns=list(QUALITY_COLUMNS))
