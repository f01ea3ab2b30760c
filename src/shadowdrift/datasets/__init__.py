"""Kedro datasets of this project (``type: shadowdrift.datasets.<Name>`` in the catalog)."""

from .ground_truth_dataset import GroundTruthDataset
from .optional_dataset import OptionalDataset
from .prediction_log_dataset import PredictionLogDataset

__all__ = ["GroundTruthDataset", "OptionalDataset", "PredictionLogDataset"]
