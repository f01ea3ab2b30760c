"""The prediction log as a Dask DataFrame: read and written partition by partition.

Same files, same format, same checks as ``shadowdrift.prediction_log`` (docs/prediction_log.md):

* ``read_prediction_log_partitioned`` lists the part files in the client (names only), and
  every partition reads a group of ``files_per_partition`` files on a worker through
  ``prediction_log.concat_partitions``, so each file is checked and typed exactly as
  ``read_prediction_log`` does it. Rows are sorted by ``logged_at`` within a partition, not
  across partitions (no global sort); files are grouped in name order (date, then write time).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import pandas as pd
import pyarrow.parquet as pq

from shadowdrift.frames import map_partitions_to_list
from shadowdrift.prediction_log import (
    RECORD_INDEX,
    LogSchema,
    PredictionLogError,
    concat_partitions,
    list_part_files,
    schema_from_metadata,
    write_batch,
)

if TYPE_CHECKING:
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

DEFAULT_FILES_PER_PARTITION = 64


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


def _file_loader(file: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        # ParquetFile reads exactly this file: no hive column from the date=... directory.
        with pq.ParquetFile(file) as part:
            return part.read().to_pandas()

    return load


def _read_group(files: list[str], schema_json: str, start: Any, end: Any) -> pd.DataFrame:
    """One partition: a group of part files, checked and typed by ``concat_partitions``."""
    schema = LogSchema.from_json(schema_json)
    return concat_partitions({file: _file_loader(file) for file in files}, schema, start, end)


def read_prediction_log_partitioned(
    path: str | os.PathLike[str],
    start: Any = None,
    end: Any = None,
    *,
    schema: LogSchema | None = None,
    files_per_partition: int = DEFAULT_FILES_PER_PARTITION,
) -> dd.DataFrame:
    """The log under ``path`` as a Dask DataFrame, one partition per group of part files.

    ``start``/``end`` and ``schema`` as in ``read_prediction_log``; an empty log is one empty
    partition with the documented columns.
    """
    # Imported here: dask.dataframe takes over a second to import, and the inference node
    # imports this module on the pandas path too.
    import dask.dataframe as dd  # noqa: PLC0415

    if files_per_partition < 1:
        raise ValueError(f"files_per_partition must be >= 1, got {files_per_partition}")
    files = [str(f) for f in list_part_files(path, start, end)]
    if schema is None:
        schema = _schema_from_footer(Path(files[0])) if files else LogSchema((), ())
    meta = schema.empty_frame()
    if not files:
        return dd.from_pandas(meta, npartitions=1)
    groups = [files[i : i + files_per_partition] for i in range(0, len(files), files_per_partition)]
    parts = [
        dask.delayed(_read_group, pure=True)(group, schema.to_json(), start, end)
        for group in groups
    ]
    logger.debug("Prediction log %s: %d part files in %d partitions", path, len(files), len(parts))
    return dd.from_delayed(parts, meta=meta, verify_meta=True)


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
