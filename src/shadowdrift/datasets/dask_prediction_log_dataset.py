"""The prediction log as a Kedro dataset of Dask DataFrames (``kedro run --env dask``).

``load`` returns a lazy Dask DataFrame over the part files; ``save`` appends, writing each
partition where it lives with the log's atomic part-file protocol. Same directory and format
as ``PredictionLogDataset`` (the service, batch inference in either environment and drift all
share one log); see ``shadowdrift.partitioned_prediction_log``.
"""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import pandas as pd

from shadowdrift.datasets.prediction_log_dataset import PredictionLogDataset
from shadowdrift.frames import is_dask_frame
from shadowdrift.partitioned_prediction_log import (
    DEFAULT_FILES_PER_PARTITION,
    DEFAULT_PARTITION_BYTES,
    PartitionedLogBatch,
    read_prediction_log_partitioned,
    write_batch_partitioned,
)


class DaskPredictionLogDataset(PredictionLogDataset):
    """Directory of append-only parquet part files, loaded and saved as Dask DataFrames.

    Args:
        path: the log directory (reachable from every worker).
        id_column: the entity id column kept in the log (for joining labels).
        load_args: ``start`` / ``end`` (ISO timestamps, UTC) to read a time slice of
            ``logged_at``; ``files_per_partition`` (default 64) and ``partition_bytes``
            (default 64 MiB): a partition holds at most that many part files and bytes;
            ``categorical_dtype``: ``object`` (default, as the pandas path) or ``category``
            (faster drift statistics; categories per partition).
        save_args: ``max_records_per_file`` (default 100,000) per part file.
        metadata: free-form (kedro-viz layer).

    ``save`` takes a ``PartitionedLogBatch`` (what the inference node returns on Dask), a Dask
    DataFrame (features inferred from its columns, as ``PredictionLogDataset`` does) or a
    pandas DataFrame (written as ``PredictionLogDataset`` writes it).
    """

    def __init__(
        self,
        path: str,
        id_column: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__(path, id_column=id_column, load_args=load_args, metadata=metadata)
        self._save_args = dict(save_args or {})

    def load(self) -> dd.DataFrame:
        return read_prediction_log_partitioned(
            self._path,
            self._load_args.get("start"),
            self._load_args.get("end"),
            files_per_partition=int(
                self._load_args.get("files_per_partition", DEFAULT_FILES_PER_PARTITION)
            ),
            partition_bytes=int(self._load_args.get("partition_bytes", DEFAULT_PARTITION_BYTES)),
            categorical_dtype=str(self._load_args.get("categorical_dtype", "object")),
        )

    def save(self, data: PartitionedLogBatch | dd.DataFrame | pd.DataFrame) -> None:
        max_records = int(self._save_args.get("max_records_per_file", 100_000))
        if isinstance(data, PartitionedLogBatch):
            write_batch_partitioned(
                self._path, data.frame, data.schema, max_records_per_file=max_records
            )
        elif is_dask_frame(data):
            schema = self._schema_of(data._meta)
            write_batch_partitioned(self._path, data, schema, max_records_per_file=max_records)
        else:
            super().save(data)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "save_args": self._save_args}
