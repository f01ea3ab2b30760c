"""The example environment's raw files: NannyML's synthetic work-from-home data set, as CSV.

``conf/example_own_data`` is a complete "bring your own data" environment. Its data is a public
data set that ships with NannyML (nothing is downloaded): 50,000 labelled records from
2014-05 to 2017-08 (``events.csv``) and 50,000 later records from 2017-08 to 2021-01 with their
labels (``production.csv``), whose features drift in the second half. The target,
``work_home_actual``, says whether an employee worked from home; the features mix numbers,
strings and a boolean (``wfh_prev_workday``), and the timestamp column is called ``timestamp``.

    python -m shadowdrift.example_data                     # data/example_own_data/01_raw/
    python -m shadowdrift.example_data --every 4 --out DIR # every 4th record (small tests)

NannyML's own predictions (``y_pred_proba``, ``y_pred``) and its ``period`` column are left out:
the project trains its own models.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("data/example_own_data/01_raw")
COLUMNS = (
    "id",
    "timestamp",
    "distance_from_office",
    "salary_range",
    "gas_price_per_litre",
    "public_transportation_cost",
    "wfh_prev_workday",
    "workday",
    "tenure",
    "work_home_actual",
)


def example_frames(every: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled history, production records with their labels), every ``every``-th record."""
    from nannyml import load_synthetic_binary_classification_dataset  # noqa: PLC0415

    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    reference, analysis, targets = load_synthetic_binary_classification_dataset()
    production = analysis.merge(targets, on="id", how="left", validate="one_to_one")
    frames = []
    for whole in (reference, production):
        frame = whole.iloc[::every][list(COLUMNS)].reset_index(drop=True)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        frames.append(frame)
    return frames[0], frames[1]


def write_example_files(out: Path = DEFAULT_OUT, every: int = 1) -> tuple[Path, Path]:
    """Write ``events.csv`` and ``production.csv`` under ``out``; return their paths."""
    events, production = example_frames(every)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "events.csv", out / "production.csv")
    for frame, path in zip((events, production), paths, strict=True):
        frame.to_csv(path, index=False)
        logger.info("Wrote %d records to %s", len(frame), path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--every", type=int, default=1, help="keep every n-th record (default 1)")
    args = parser.parse_args(argv)
    write_example_files(args.out, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
