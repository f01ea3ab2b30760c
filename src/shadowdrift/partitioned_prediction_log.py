"""The prediction log as a Dask DataFrame: read and written partition by partition.

Same files, same format, same checks as ``shadowdrift.prediction_log`` (docs/prediction_log.md):

* ``read_prediction_log_partitioned`` lists the part files in the client (names only), and
  every partition reads a group of ``files_per_partition`` files on a worker, each file read
  and checked exactly as ``read_prediction_log`` does it (all columns, every rule of the
  format), as Arrow tables. Rows are sorted by ``logged_at, request_id, record_index`` within a
  partition, not across partitions (no global sort); files are grouped in name order (date,
  then write time). Column projection is pushed into the read: ``log[["event_time", ...]]`` (or
  ``columns=``) still checks whole files but converts only those columns to pandas, which is
  most of the cost of a read (text columns such as ``request_id`` above all).
* ``write_batch_partitioned`` writes each partition with ``prediction_log.write_batch`` where
  the partition lives: every part file is written under a temporary name, fsynced and renamed
  into place, as the service and the pandas path write them. One ``request_id`` covers the
  whole batch; ``record_index`` is the row's position in the batch when the frame carries it
  (``partitioned_scoring`` adds it), else each partition gets its own request id so that
  (request_id, record_index) stays unique.

A partition that breaks the format fails on its worker before its files are written, but the
partitions written before it stay (as with a crash in the middle of a large pandas batch: the
files are whole, and share the batch's request id).

The log must be on a file system every worker can reach (a local disk for a LocalCluster; a
shared volume for a real cluster): the writer uses fsync and atomic rename, not object storage.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shadowdrift.frames import map_partitions_to_list
from shadowdrift.prediction_log import (
    LOGGED_AT,
    RECORD_INDEX,
    REQUEST_ID,
    LogSchema,
    PredictionLogError,
    list_part_files,
    schema_from_metadata,
    write_batch,
)

# The per-file steps of read_prediction_log, so that a partition is read and checked exactly as
# the pandas path reads each file (they are private there: this module is its Dask twin).
from shadowdrift.prediction_log import _conform_table as conform_table
from shadowdrift.prediction_log import _filter_time as filter_time
from shadowdrift.prediction_log import _read_part_table as read_part_table
from shadowdrift.prediction_log import _to_pandas as log_frame

if TYPE_CHECKING:
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

DEFAULT_FILES_PER_PARTITION = 64
# A partition also closes at this many bytes of part files: 64 files written by the inference
# pipeline (100,000 rows each) would be 6.4M rows, several GB on one worker. 64 MiB of a
# 20-feature log is about 390,000 rows; the drift statistics on 400,000-row partitions peaked
# at about 0.93 GB per worker, imported code included (docs/benchmarks.md, "Scale-out").
DEFAULT_PARTITION_BYTES = 64 * 2**20


@dataclass(frozen=True)
class PartitionedLogBatch:
    """Scored records as a Dask DataFrame and the log schema to write them with.

    A pandas batch carries its schema in ``DataFrame.attrs``; Dask DataFrames have no attrs,
    so the inference node hands both to the dataset in this wrapper.
    """

    frame: dd.DataFrame
    schema: LogSchema


def _schema_from_footer(file: Path) -> LogSchema:
    """The log schema recorded in a part file's metadata (reads the footer only)."""
    try:
        metadata = pq.read_schema(file).metadata or {}
    except (OSError, ValueError) as exc:
        raise PredictionLogError(f"part file {file} is not a readable Parquet file: {exc}") from exc
    return schema_from_metadata(file, metadata)


# The order read_prediction_log returns rows in.
_SORT_KEYS = [(LOGGED_AT, "ascending"), (REQUEST_ID, "ascending"), (RECORD_INDEX, "ascending")]


def _in_log_order(table: pa.Table) -> pa.Table:
    """``table`` sorted by ``logged_at, request_id, record_index`` (stable).

    Part files are written in that order (a writer stamps ``logged_at`` per request, a batch
    shares one), so rows usually are already in order: then the sort, which copies every
    column, is skipped. The check is two comparisons of neighbouring rows per key.
    """
    if table.num_rows < 2:
        return table
    later = out_of_order = None
    for name, _ in _SORT_KEYS:
        column = table.column(name)
        head, tail = column.slice(0, table.num_rows - 1), column.slice(1)
        less, greater = pc.less(tail, head), pc.greater(tail, head)
        if later is None:
            out_of_order, later = less, greater
        else:
            # a row is out of order if all earlier keys tie and this one goes down
            out_of_order = pc.or_(out_of_order, pc.and_(pc.invert(later), less))
            later = pc.or_(later, greater)
    if not pc.any(out_of_order).as_py():
        return table
    return table.sort_by(_SORT_KEYS)


CATEGORICAL_DTYPES = ("object", "category")


def _to_pandas(
    table: pa.Table, schema: LogSchema, categorical_dtype: str = "object"
) -> pd.DataFrame:
    """As ``read_prediction_log`` converts (whichever of the log's columns ``table`` holds);
    categorical features as pandas ``category`` if ``categorical_dtype`` says so."""
    dtypes = dict(schema.pandas_dtypes)
    if categorical_dtype == "category":
        for name in schema.categorical_features:
            dtypes[name] = "category"
            if name in table.column_names and not pa.types.is_dictionary(
                table.schema.field(name).type
            ):
                index = table.column_names.index(name)
                table = table.set_column(index, name, pc.dictionary_encode(table.column(index)))
    return log_frame(table, schema, dtypes)


def _read_schema(schema: LogSchema, dictionary: list[str]) -> pa.Schema:
    """The log's Arrow schema as files read with ``read_dictionary=dictionary`` have it."""
    fields = [
        field.with_type(pa.dictionary(pa.int32(), field.type))
        if field.name in dictionary
        else field
        for field in schema.arrow_schema
    ]
    return pa.schema(fields, metadata=schema.arrow_schema.metadata)


def _checked_together(
    raw: list[pa.Table], schema: LogSchema, files: list[str], dictionary: list[str]
) -> pa.Table | None:
    """The files as one table, checked in one pass, if they all have the log's exact types.

    The usual case (every file written by this project's writers); checking each small file on
    its own costs about 2 ms more per file (measured on 1,000-row files). None if a file needs a cast or the
    group breaks a rule: the caller then checks file by file and names the file.
    """
    expected = _read_schema(schema, dictionary)
    if not all(part.schema.equals(expected, check_metadata=False) for part in raw):
        return None
    table = pa.concat_tables(raw)
    try:
        return conform_table(table, schema, origin=f"part files {files[0]} ... {files[-1]}")
    except PredictionLogError:
        return None


def _read_group(
    files: list[str],
    schema_json: str,
    start: Any,
    end: Any,
    categorical_dtype: str = "object",
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """One partition: a group of part files, each read and checked as ``read_prediction_log``
    does it, in log order; only ``columns`` (all if None) are converted to pandas."""
    schema = LogSchema.from_json(schema_json)
    # Categorical features decoded straight into Arrow dictionaries (then pandas categories):
    # no Python string per row, and no hashing of them when they are counted.
    dictionary = list(schema.categorical_features) if categorical_dtype == "category" else []
    raw = [read_part_table(Path(file), dictionary or None) for file in files]
    table = _checked_together(raw, schema, files, dictionary)
    if table is None:
        # a file needs a cast, or breaks a rule: file by file, so that the error names it
        table = pa.concat_tables(
            [
                conform_table(part, schema, origin=f"part file {file}")
                for part, file in zip(raw, files, strict=True)
            ]
        )
    table = _in_log_order(filter_time(table, start, end))
    if columns is not None:
        table = table.select(list(columns))
    return _to_pandas(table, schema, categorical_dtype)


def _groups(files: list[str], max_files: int, max_bytes: int) -> list[list[str]]:
    """Consecutive files, at most ``max_files`` and (unless one file alone) ``max_bytes``."""
    groups: list[list[str]] = [[]]
    size = 0
    for file in files:
        nbytes = os.stat(file).st_size
        if groups[-1] and (len(groups[-1]) >= max_files or size + nbytes > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append(file)
        size += nbytes
    return groups


def read_prediction_log_partitioned(
    path: str | os.PathLike[str],
    start: Any = None,
    end: Any = None,
    *,
    schema: LogSchema | None = None,
    files_per_partition: int = DEFAULT_FILES_PER_PARTITION,
    partition_bytes: int = DEFAULT_PARTITION_BYTES,
    columns: list[str] | None = None,
    categorical_dtype: str = "object",
) -> dd.DataFrame:
    """The log under ``path`` as a Dask DataFrame, one partition per group of part files.

    A group holds consecutive files (name order) up to ``files_per_partition`` files or
    ``partition_bytes`` bytes on disk, whichever comes first (a larger file is a group of its
    own). ``start``/``end`` and ``schema`` as in ``read_prediction_log``; ``columns`` selects
    columns (selecting them on the result does the same); an empty log is one empty
    partition with the documented columns. ``categorical_dtype="category"`` gives the
    categorical features pandas' ``category`` dtype (categories per partition, unknown to the
    meta) instead of ``object``: the same values, about 0.3 s less CPU per million rows for
    the drift statistics (docs/benchmarks.md, "Scale-out").
    """
    # Imported here: dask.dataframe takes over a second to import, and the inference node
    # imports this module on the pandas path too.
    import dask.dataframe as dd  # noqa: PLC0415
    from dask.dataframe.utils import clear_known_categories  # noqa: PLC0415

    if files_per_partition < 1:
        raise ValueError(f"files_per_partition must be >= 1, got {files_per_partition}")
    if partition_bytes < 1:
        raise ValueError(f"partition_bytes must be >= 1, got {partition_bytes}")
    if categorical_dtype not in CATEGORICAL_DTYPES:
        raise ValueError(
            f"categorical_dtype must be one of {CATEGORICAL_DTYPES}, got {categorical_dtype!r}"
        )
    files = [str(f) for f in list_part_files(path, start, end)]
    if schema is None:
        schema = _schema_from_footer(Path(files[0])) if files else LogSchema((), ())
    meta = _to_pandas(schema.arrow_schema.empty_table(), schema, categorical_dtype)
    if categorical_dtype == "category":
        meta = clear_known_categories(meta)
    unknown = [c for c in columns or () if c not in meta.columns]
    if unknown:
        raise PredictionLogError(f"columns {unknown} are not in the prediction log's schema")
    if not files:
        frame = dd.from_pandas(meta, npartitions=1)
        return frame if columns is None else frame[list(columns)]
    groups = _groups(files, files_per_partition, partition_bytes)
    logger.debug("Prediction log %s: %d part files in %d partitions", path, len(files), len(groups))
    # from_map with a `columns=` argument: Dask pushes column selections into the read
    frame = dd.from_map(
        _read_group,
        groups,
        args=[schema.to_json(), start, end, categorical_dtype],
        meta=meta,
        label="read-prediction-log",
        enforce_metadata=True,
    )
    return frame if columns is None else frame[list(columns)]


def _write_partition(
    part: pd.DataFrame,
    number: int,
    path: str,
    schema_json: str,
    request_id: str,
    max_records_per_file: int,
) -> tuple[int, int]:
    """Write one partition with ``write_batch``; (records, files) written."""
    schema = LogSchema.from_json(schema_json)
    if RECORD_INDEX not in part.columns:
        request_id = f"{request_id}-p{number:05d}"
    written = write_batch(
        path, part, schema, request_id=request_id, max_records_per_file=max_records_per_file
    )
    return len(part) if written else 0, len(written)


def write_batch_partitioned(
    path: str | os.PathLike[str],
    frame: dd.DataFrame,
    schema: LogSchema,
    *,
    request_id: str | None = None,
    max_records_per_file: int = 100_000,
) -> tuple[int, int]:
    """Log a Dask DataFrame of batch scores, each partition on its worker; (records, files)."""
    request_id = request_id or f"batch-{uuid.uuid4().hex}"
    results = map_partitions_to_list(
        _write_partition, frame, str(path), schema.to_json(), request_id, max_records_per_file
    )
    records = sum(r for r, _ in results)
    files = sum(f for _, f in results)
    logger.info(
        "Logged %d batch records from %d partitions to %d part files in %s (request_id %s)",
        records,
        frame.npartitions,
        files,
        path,
        request_id,
    )
    return records, files
