"""A second "bring your own data" environment for tests: NannyML's Titanic data, in parquet.

Real data of mixed types: integer-coded categories (``Pclass``), strings (``Sex``), a nullable
string (``Embarked``), a nullable float (``Age``, and ``Fare`` once in production), and a string
target (``survived``: "yes"/"no") that names its positive class. The passengers have no time of
their own; they get a boarding day in row order, about 20 passengers a day, so that event times
tie and size chunks depend on how ties are ordered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ENV = "titanic"
PASSENGERS_PER_DAY = 20
SCHEMA = {
    "id": "PassengerId",
    "timestamp": "boarded_on",
    "target": "survived",
    "positive_class": "yes",
    "numeric": {
        "Age": {"dtype": "float", "min": 0, "max": 120, "nullable": True},
        "SibSp": {"dtype": "int", "min": 0, "max": 20},
        "Parch": {"dtype": "int", "min": 0, "max": 20},
        "Fare": {"dtype": "float", "min": 0, "max": 1000, "nullable": True},
    },
    "categorical": {
        "Pclass": {"values": [1, 2, 3]},
        "Sex": {"values": ["male", "female"]},
        "Embarked": {"values": ["S", "C", "Q"], "nullable": True},
    },
}
PARAMETERS = {
    "schema": SCHEMA,
    "simulation": {"enabled": False},
    "drift": {"chunking": {"by": "size", "size": 100, "min_rows": 50}},
    "drift_labels": {"delay_days": 0, "as_of": None},
}


def titanic_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled passengers, later passengers with their labels), in the schema's columns."""
    from nannyml import load_titanic_dataset

    reference, analysis, targets = load_titanic_dataset()
    production = analysis.merge(targets, on="PassengerId", how="left", validate="one_to_one")
    frames = []
    start = pd.Timestamp("1912-01-01")
    offset = 0
    for whole in (reference, production):
        frame = whole[["PassengerId", *SCHEMA["numeric"], *SCHEMA["categorical"], "Survived"]]
        frame = frame.copy()
        days = (offset + np.arange(len(frame))) // PASSENGERS_PER_DAY
        frame.insert(1, "boarded_on", start + pd.to_timedelta(days, unit="D"))
        frame["survived"] = np.where(frame.pop("Survived") == 1, "yes", "no")
        frames.append(frame)
        offset += len(frame)
    return frames[0], frames[1]


def write_titanic_environment(project: Path, *, shuffle_production: bool = False) -> Path:
    """``conf/titanic`` and its raw parquet files under ``data/titanic/01_raw``."""
    conf = project / "conf" / ENV
    conf.mkdir(parents=True, exist_ok=True)
    raw = project / "data" / ENV / "01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    events, production = titanic_frames()
    if shuffle_production:
        production = production.sample(frac=1.0, random_state=7)
    events.to_parquet(raw / "events.parquet", index=False)
    production.to_parquet(raw / "production.parquet", index=False)
    catalog = {
        name: {"type": "pandas.ParquetDataset", "filepath": f"${{globals:data_root}}/01_raw/{file}"}
        for name, file in (
            ("raw_events", "events.parquet"),
            ("raw_production", "production.parquet"),
            ("raw_events_truth", "events.parquet"),
        )
    }
    (conf / "catalog.yml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    (conf / "parameters.yml").write_text(yaml.safe_dump(PARAMETERS, sort_keys=False))
    return raw
