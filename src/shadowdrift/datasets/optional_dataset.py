"""A dataset that may not exist: it loads as ``None`` until its file is there."""

from __future__ import annotations

import logging
from typing import Any

from kedro.io import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)


class OptionalDataset(AbstractDataset[Any, Any]):
    """Wraps any Kedro dataset; loads ``None`` when the wrapped dataset does not exist.

    For inputs a user may or may not provide, such as ``raw_reference`` (a labelled drift
    baseline the models never trained on): the entry is always in the catalog, so the node
    input is always declared, and the node decides what absence means. ``dataset`` is the
    wrapped dataset's configuration, as in any catalog entry::

        raw_reference:
          type: shadowdrift.datasets.OptionalDataset
          dataset:
            type: pandas.ParquetDataset
            filepath: data/01_raw/reference.parquet

    Saving writes through to the wrapped dataset.
    """

    def __init__(self, dataset: dict[str, Any], metadata: dict[str, Any] | None = None):
        if not isinstance(dataset, dict) or "type" not in dataset:
            raise DatasetError(
                "OptionalDataset needs `dataset:` with the wrapped dataset's configuration "
                f"(at least its `type`), got {dataset!r}"
            )
        self._config = dict(dataset)
        self._dataset = AbstractDataset.from_config("optional", dict(dataset))
        self.metadata = metadata

    def load(self) -> Any:
        if not self._dataset.exists():
            logger.info("%s does not exist: loaded as absent (None)", self._where())
            return None
        return self._dataset.load()

    def save(self, data: Any) -> None:
        self._dataset.save(data)

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _where(self) -> str:
        return str(self._config.get("filepath") or self._config.get("path") or self._config)

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._config}
