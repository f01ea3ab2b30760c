"""Kedro datasets of this project (``type: shadowdrift.datasets.<Name>`` in the catalog)."""

from .prediction_log_dataset import PredictionLogDataset

__all__ = ["PredictionLogDataset"]
