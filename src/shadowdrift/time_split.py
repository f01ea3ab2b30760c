"""Split a table by time into train, test and reference windows with no leakage.

Every train timestamp is strictly before every test timestamp, and every test timestamp strictly
before every reference timestamp: boundaries are timestamps, so rows sharing a timestamp always
land in the same window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

WINDOWS = ("train", "test", "reference")


class SplitConfigError(ValueError):
    """The split parameters are inconsistent, or a window would be too small."""


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    test: pd.DataFrame
    reference: pd.DataFrame
    train_end: pd.Timestamp
    test_end: pd.Timestamp

    def summary(self, timestamp: str, target: str | None = None) -> dict[str, Any]:
        """Row counts, time ranges and label rates per window (the split report)."""
        out: dict[str, Any] = {
            "train_end": str(self.train_end),
            "test_end": str(self.test_end),
            "windows": {},
        }
        for name in WINDOWS:
            frame = getattr(self, name)
            window: dict[str, Any] = {
                "rows": len(frame),
                "start": str(frame[timestamp].min()),
                "end": str(frame[timestamp].max()),
            }
            if target is not None and target in frame:
                window["label_rate"] = float(frame[target].mean())
            out["windows"][name] = window
        return out


def _boundary(times: np.ndarray, fraction: float) -> pd.Timestamp:
    """The timestamp at which a fraction of the (sorted) rows has passed."""
    index = min(round(fraction * len(times)), len(times) - 1)
    return pd.Timestamp(times[index])


def split_by_time(
    frame: pd.DataFrame,
    timestamp: str,
    *,
    train_fraction: float | None = 0.6,
    test_fraction: float | None = 0.2,
    train_end: str | None = None,
    test_end: str | None = None,
    min_rows: int = 1,
    config_key: str = "data_engineering",
) -> TimeSplit:
    """Cut ``frame`` into [.., train_end), [train_end, test_end), [test_end, ..)."""
    if frame.empty:
        raise SplitConfigError("cannot split an empty table")
    ordered = frame.sort_values(timestamp, kind="stable").reset_index(drop=True)
    times = ordered[timestamp].to_numpy()
    if (train_end is None) != (test_end is None):
        raise SplitConfigError(
            f"{config_key}.split: set both train_end and test_end, or neither (to use fractions)"
        )
    if train_end is not None:
        try:
            t1, t2 = pd.Timestamp(train_end), pd.Timestamp(test_end)
        except (ValueError, TypeError) as exc:
            raise SplitConfigError(
                f"{config_key}.split: train_end/test_end must be dates: {exc}"
            ) from exc
    else:
        if train_fraction is None or test_fraction is None:
            raise SplitConfigError(f"{config_key}.split: set train_fraction and test_fraction")
        if not (
            0 < train_fraction < 1 and 0 < test_fraction < 1 and train_fraction + test_fraction < 1
        ):
            raise SplitConfigError(
                f"{config_key}.split: need 0 < train_fraction, 0 < test_fraction and "
                f"train_fraction + test_fraction < 1; got {train_fraction} and {test_fraction}"
            )
        t1 = _boundary(times, train_fraction)
        t2 = _boundary(times, train_fraction + test_fraction)
    if not t1 < t2:
        raise SplitConfigError(
            f"{config_key}.split: the test window is empty (train_end {t1} is not before test_end {t2}); "
            "too many rows share one timestamp, or the boundaries are in the wrong order"
        )
    t1_np, t2_np = np.datetime64(t1.to_datetime64()), np.datetime64(t2.to_datetime64())
    lo = np.searchsorted(times, t1_np, side="left")
    hi = np.searchsorted(times, t2_np, side="left")
    split = TimeSplit(
        train=ordered.iloc[:lo].reset_index(drop=True),
        test=ordered.iloc[lo:hi].reset_index(drop=True),
        reference=ordered.iloc[hi:].reset_index(drop=True),
        train_end=t1,
        test_end=t2,
    )
    for name in WINDOWS:
        rows = len(getattr(split, name))
        if rows < min_rows:
            raise SplitConfigError(
                f"the {name} window has {rows} rows, fewer than {config_key}.min_rows_per_window "
                f"({min_rows}); boundaries: train_end={t1}, test_end={t2}"
            )
    return split
