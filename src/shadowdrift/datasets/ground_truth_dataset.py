"""The ground-truth log (labels from ``POST /feedback``) as a read-only Kedro dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from shadowdrift.serving.feedback import SCHEMA, read_ground_truth


class GroundTruthDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Every label under ``path``, the latest per ``(request_id, record_index)``.

    A directory that does not exist yet (no label posted) loads as an empty table, so drift
    monitoring runs before any feedback arrives. Labels are written by the service, or dropped
    in as part files of the documented format (docs/serving.md); this dataset never writes.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        if not self._path.exists():
            empty = SCHEMA.empty_table().to_pandas()
            return empty.astype({"record_index": "Int64"})
        return read_ground_truth(self._path, latest_only=True)

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError(
            f"the ground-truth log at {self._path} is written by the service (POST /feedback) "
            "or by dropping part files in it (docs/serving.md); a pipeline never overwrites it"
        )

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
