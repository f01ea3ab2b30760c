"""Validate a Dask DataFrame against the data schema, partition by partition, with pandera.

``validate_partitions`` is the Dask counterpart of ``schema.validate_frame``: every partition is
checked by the same pandera schema on the worker that holds it, and the failures are merged
into the *same* ``DataValidationError`` message the pandas path raises (column, rule, number of
offending rows, the first few rows with their id), so a user cannot tell which path ran.

What needs the whole table is done without bringing it to the client:

* Row numbers are global positions (0-based), as pandas shows them for a table read from
  parquet: each partition's local positions are shifted by the rows before it.
* Id uniqueness spans partitions, so it is not left to per-partition pandera: a distributed
  ``value_counts`` finds the duplicated ids and only their count and first rows come back.
* Only counts and at most ``max_examples`` failure rows per rule and partition travel.
* pandera orders the problems it finds (coercion first, then column by column); the merged
  problems are put in that order by re-validating the few example rows with the full schema.

Validation is eager (one pass over the table) so that a bad table stops the run before
anything is written; the coerced table is returned lazily (coercion runs again per partition
when the result is computed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.backends.pandas.error_formatters import consolidate_failure_cases
from pandera.errors import SchemaErrors

from shadowdrift.frames import (
    ROW_POSITION,
    compute_together,
    partition_lengths,
    partition_offsets,
    partition_tasks,
    with_row_positions,
)
from shadowdrift.schema import (
    ROOT_RULES,
    DataSchema,
    DataValidationError,
    build_pandera_schema,
    check_target_classes,
    failed_rule_line,
    missing_column_line,
    validation_message,
)

if TYPE_CHECKING:
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

MISSING_COLUMN = "column_in_dataframe"
UNIQUENESS = "field_uniqueness"
_EXAMPLE_COLUMNS = ["column", "check", "index", "failure_case", "id_value"]


@dataclass(frozen=True)
class ValidatedPartitions:
    """The coerced table (lazy) and the rows per partition counted while validating."""

    frame: dd.DataFrame
    lengths: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.lengths.sum())

    @property
    def offsets(self) -> np.ndarray:
        return partition_offsets(self.lengths)


@dataclass
class _Problems:
    """Failures of one partition (or merged): counts per (column, rule) and a few examples."""

    counts: dict[tuple[Any, Any], int] = field(default_factory=dict)
    missing_columns: list[Any] = field(default_factory=list)
    # One frame per pandera error, kept apart until the whole table's dtypes are resolved.
    heads: list[pd.DataFrame] = field(default_factory=list)
    examples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_EXAMPLE_COLUMNS))
    # Raw rows behind the examples (global positions as index), to ask pandera for its order.
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)


def _key(column: Any, check: Any) -> tuple[Any, Any]:
    """A hashable (column, rule) key; pandera leaves the column empty for frame-level checks."""
    return (None if _isna(column) else column, None if _isna(check) else str(check))


def _isna(value: Any) -> bool:
    """True for None/NaN/NA scalars; False for anything else (including lists)."""
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """numpy scalars print as ``np.int64(3)``; users want ``3`` (as ``schema._plain``)."""
    return value.item() if hasattr(value, "item") else value


def _error_frames(exc: SchemaErrors) -> list[pd.DataFrame]:
    """One failure-case frame per pandera error, each with its own ``failure_case`` dtype.

    ``exc.failure_cases`` concatenates them, which makes the dtype depend on what else failed
    in the partition (an int 200 becomes 200.0 next to a float failure); the whole-table
    message must resolve that over the whole table, so the frames are kept apart.
    """
    return [consolidate_failure_cases([error]) for error in exc.schema_errors]


def _partition_problems(
    part: pd.DataFrame,
    number: int,
    pandera_schema: pa.DataFrameSchema,
    offsets: list[int],
    id_col: str,
    max_examples: int,
) -> _Problems | None:
    """Validate one partition; its failures with global row positions, or None if it passes."""
    part = part.reset_index(drop=True)
    try:
        pandera_schema.validate(part, lazy=True)
    except SchemaErrors as exc:
        frames = _error_frames(exc)
    else:
        return None
    offset = offsets[number]
    problems = _Problems()
    heads = []
    for failures in frames:
        missing = failures["check"] == MISSING_COLUMN
        problems.missing_columns += list(failures.loc[missing, "failure_case"])
        for (column, check), group in failures[~missing].groupby(
            ["column", "check"], sort=False, dropna=False
        ):
            key = _key(column, check)
            problems.counts[key] = problems.counts.get(key, 0) + len(group)
            head = group.head(max_examples)
            local = [None if _isna(i) else int(i) for i in head["index"]]
            ids = [
                part.at[i, id_col] if i is not None and id_col in part.columns else None
                for i in local
            ]
            heads.append(
                pd.DataFrame(
                    {
                        "column": pd.Series([column] * len(head), dtype=object),
                        "check": pd.Series([check] * len(head), dtype=object),
                        # object: a missing position must not turn row 8 into row 8.0
                        "index": pd.Series(
                            [None if i is None else i + offset for i in local], dtype=object
                        ),
                        "failure_case": head["failure_case"].reset_index(drop=True),
                        "id_value": pd.Series(ids, dtype=object),
                    }
                )
            )
    problems.heads = heads
    positions = sorted({i - offset for head in heads for i in head["index"] if i is not None})
    problems.rows = part.iloc[positions].set_axis([p + offset for p in positions])
    return problems


def _merge(parts: list[_Problems | None]) -> _Problems:
    merged = _Problems()
    rows = []
    for part in parts:
        if part is None:
            continue
        for column in part.missing_columns:
            if column not in merged.missing_columns:
                merged.missing_columns.append(column)
        for key, n in part.counts.items():
            merged.counts[key] = merged.counts.get(key, 0) + n
        merged.heads += part.heads
        rows.append(part.rows)
    if rows:
        merged.rows = _concat(rows)
    return merged


def _resolve_examples(problems: _Problems) -> None:
    """Concatenate every error's examples once, as pandera concatenates the whole table's.

    pandas picks one ``failure_case`` dtype for all errors together (ints next to floats
    become floats, anything next to a string stays as it is), so this must happen once, with
    the names of missing columns (strings) taking part as they do in pandera's table.
    """
    heads = list(problems.heads)
    if problems.missing_columns:
        heads.append(
            pd.DataFrame(
                {
                    "column": None,
                    "check": MISSING_COLUMN,
                    "index": None,
                    "failure_case": pd.Series(problems.missing_columns, dtype=object),
                    "id_value": None,
                }
            )
        )
    if heads:
        examples = _concat(heads, ignore_index=True)
        problems.examples = examples[examples["check"] != MISSING_COLUMN]


def _uniqueness(
    frame: dd.DataFrame, id_col: str, offsets: np.ndarray, max_examples: int
) -> tuple[Any, Any]:
    """Lazy (number of rows whose id occurs more than once, first such rows by position)."""
    counts = frame[id_col].value_counts(dropna=False, split_out=max(frame.npartitions, 1))
    duplicated = counts[counts > 1]
    positioned = with_row_positions(frame, offsets)
    rows = positioned.merge(duplicated.reset_index()[[id_col]], on=id_col, how="inner")
    return duplicated.sum(), rows.nsmallest(max_examples, ROW_POSITION)


def _add_uniqueness(
    problems: _Problems, id_col: str, n_duplicated: int, first_rows: pd.DataFrame
) -> None:
    if not n_duplicated:
        return
    problems.counts[_key(id_col, UNIQUENESS)] = int(n_duplicated)
    first_rows = first_rows.sort_values(ROW_POSITION).set_index(ROW_POSITION)
    first_rows.index.name = None
    examples = pd.DataFrame(
        {
            "column": id_col,
            "check": UNIQUENESS,
            "index": pd.Series([int(i) for i in first_rows.index], dtype=object),
            "failure_case": first_rows[id_col].to_numpy(),
            "id_value": pd.Series(list(first_rows[id_col]), dtype=object),
        },
        columns=_EXAMPLE_COLUMNS,
    )
    problems.heads.append(examples)
    problems.rows = _concat([problems.rows, first_rows])


def _concat(frames: list[pd.DataFrame], **kwargs: Any) -> pd.DataFrame:
    """``pd.concat`` that skips empty frames (they would change dtypes, and pandas warns)."""
    kept = [f for f in frames if len(f)]
    if not kept:
        return frames[0] if frames else pd.DataFrame()
    return pd.concat(kept, **kwargs)


def _drop_cascading(keys: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """As ``schema._drop_cascading_failures``: an uncoercible column reports its coercion only."""
    uncoercible = {
        column
        for column, check in keys
        if str(check).startswith((*ROOT_RULES, "dtype(")) and column is not None
    }
    kept = [
        (column, check)
        for column, check in keys
        if column not in uncoercible or str(check).startswith(ROOT_RULES)
    ]
    return kept or keys


def _pandera_order(problems: _Problems, pandera_schema: pa.DataFrameSchema) -> list[tuple]:
    """The (column, rule) order pandera reports, from re-validating one example row per rule.

    One row per rule keeps the sample small: pandera sorts its failure cases with an unstable
    sort, which only keeps their order for up to 16 failing values.
    """
    if problems.rows.empty:
        return []
    positions = problems.examples.assign(
        _pos=pd.to_numeric(problems.examples["index"], errors="coerce")
    ).dropna(subset=["_pos"])
    firsts = positions.groupby(["column", "check"], sort=False, dropna=False)["_pos"].min()
    rows = problems.rows[~problems.rows.index.duplicated()]
    wanted = [int(p) for p in dict.fromkeys(firsts.to_numpy()) if int(p) in rows.index]
    sample = rows.loc[wanted]
    if any(check == UNIQUENESS for _, check in problems.counts):
        # The first duplicated row twice, so that the sample holds a duplicated id too.
        first = positions.loc[positions["check"] == UNIQUENESS, "_pos"].min()
        if int(first) in rows.index:
            sample = pd.concat([sample, rows.loc[[int(first)]]])
    try:
        pandera_schema.validate(sample.reset_index(drop=True), lazy=True)
    except SchemaErrors as exc:
        failures = exc.failure_cases
        return list(
            dict.fromkeys(
                _key(c, k) for c, k in zip(failures["column"], failures["check"], strict=True)
            )
        )
    return []


def _example_text(row: pd.Series, id_col: str, has_id: bool) -> str:
    index, value = row["index"], _plain(row["failure_case"])
    if not _isna(index) and has_id:
        return f"row {index} ({id_col}={_plain(row['id_value'])!r}): {value!r}"
    if not _isna(index):
        return f"row {index}: {value!r}"
    return repr(value)


def _message(
    dataset: str,
    problems: _Problems,
    order: list[tuple],
    id_col: str,
    has_id: bool,
    max_examples: int,
) -> str:
    """The text ``schema.validate_frame`` raises, built from merged counts and examples."""
    lines = [missing_column_line(column) for column in problems.missing_columns]
    keys = _drop_cascading(list(problems.counts))
    rank = {key: i for i, key in enumerate(order)}
    # Problems pandera did not report on the examples keep their merged order, after the rest.
    keys = sorted(keys, key=lambda k: (k not in rank, rank.get(k, 0)))
    examples = problems.examples.assign(
        _key=[
            _key(c, k)
            for c, k in zip(problems.examples["column"], problems.examples["check"], strict=True)
        ]
    )
    for key in keys:
        column, check = key
        group = examples[examples["_key"] == key]
        # Positions ascend within a partition and partitions are in order: a stable sort by
        # position gives pandera's whole-table order (rows without a position last).
        group = group.assign(_pos=pd.to_numeric(group["index"], errors="coerce"))
        group = group.sort_values("_pos", kind="stable", na_position="last")
        texts = [
            _example_text(row, id_col, has_id) for _, row in group.head(max_examples).iterrows()
        ]
        lines.append(failed_rule_line(column, check, problems.counts[key], texts))
    return validation_message(dataset, lines)


def _coerce(part: pd.DataFrame, pandera_schema: pa.DataFrameSchema) -> pd.DataFrame:
    # Already validated: this only coerces dtypes (and would still fail loudly if the data
    # changed underneath us between the two passes).
    return pandera_schema.validate(part, lazy=True)


def _failure_cases(problems: _Problems) -> pd.DataFrame:
    return problems.examples.rename(columns={"id_value": "id"})


def validate_partitions(
    frame: dd.DataFrame,
    schema: DataSchema,
    dataset: str,
    *,
    require_target: bool = True,
    allow_unseen_categories: bool = False,
    allow_nulls: bool = False,
    max_examples: int = 5,
) -> ValidatedPartitions:
    """Validate every partition; raise ``DataValidationError`` as ``validate_frame`` does.

    Returns the coerced table (lazy, same partitions) and the rows per partition.
    """
    full_schema = build_pandera_schema(
        schema,
        require_target=require_target,
        allow_unseen_categories=allow_unseen_categories,
        allow_nulls=allow_nulls,
    )
    # Uniqueness within a partition says nothing about the table; it is checked across them.
    partition_schema = full_schema.update_column(schema.id, unique=False)
    lengths = partition_lengths(frame)
    if lengths.sum() == 0:
        raise DataValidationError(f"{dataset} is empty: there are no rows to validate")
    if require_target and schema.positive_class is not None and schema.target in frame.columns:
        check_target_classes(frame[schema.target].drop_duplicates().compute(), schema, dataset)
    offsets = partition_offsets(lengths)
    has_id = schema.id in frame.columns
    tasks = partition_tasks(
        _partition_problems,
        frame,
        partition_schema,
        [int(o) for o in offsets],
        schema.id,
        max_examples,
    )
    if has_id:
        n_duplicated, first_duplicates = _uniqueness(frame, schema.id, offsets, max_examples)
        *parts, n_duplicated, first_duplicates = compute_together(
            *tasks, n_duplicated, first_duplicates
        )
    else:
        parts = list(dask.compute(*tasks))
    problems = _merge(parts)
    if has_id:
        _add_uniqueness(problems, schema.id, n_duplicated, first_duplicates)
    if problems.counts or problems.missing_columns:
        _resolve_examples(problems)
        order = _pandera_order(problems, full_schema)
        message = _message(dataset, problems, order, schema.id, has_id, max_examples)
        raise DataValidationError(message, _failure_cases(problems))
    logger.info(
        "%s: %d rows in %d partitions passed validation", dataset, lengths.sum(), len(lengths)
    )
    meta = _coerce(frame._meta, partition_schema)
    coerced = frame.map_partitions(_coerce, partition_schema, meta=meta)
    return ValidatedPartitions(coerced, lengths)
