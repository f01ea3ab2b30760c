"""The prediction log as a Kedro dataset: ``load`` reads every part file, ``save`` appends.

Append, not overwrite: the log is shared by the service and batch inference, and nothing in it
is ever replaced (docs/prediction_log.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset

from shadowdrift.prediction_log import BASE_COLUMNS, LogSchema, read_prediction_log, write_batch


class PredictionLogDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Directory of append-only parquet part files written atomically.

    Args:
        path: the log directory.
        load_args: ``start`` / ``end`` (ISO timestamps, UTC) to read a time slice of ``logged_at``.
        metadata: free-form (kedro-viz layer).
    """

    def __init__(
        self,
        path: str,
        id_column: str | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self._path = Path(path)
        self._id_column = id_column
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        return read_prediction_log(
            self._path, self._load_args.get("start"), self._load_args.get("end")
        )

    def save(self, data: pd.DataFrame) -> None:
        write_batch(self._path, data, self._schema_of(data))

    def _schema_of(self, data: pd.DataFrame) -> LogSchema:
        """The frame's own log schema if it carries one, else: every non-log column is a feature."""
        if "prediction_log_schema" in data.attrs:
            return LogSchema.from_json(data.attrs["prediction_log_schema"])
        features = [c for c in data.columns if c not in BASE_COLUMNS and c != self._id_column]
        numeric = [c for c in features if pd.api.types.is_numeric_dtype(data[c])]
        categorical = [c for c in features if c not in numeric]
        return LogSchema(tuple(numeric), tuple(categorical), self._id_column)

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.rglob("part-*.parquet"))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}
