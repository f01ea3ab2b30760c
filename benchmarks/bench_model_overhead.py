"""What does kedro-mlflow's pipeline_ml_factory cost per prediction?

    .venv/bin/python benchmarks/bench_model_overhead.py

Fits the champion (HistGradientBoosting behind the shared preprocessing) on simulated data,
then saves and reloads it three ways and times predict on 1 record and on 1,000, side by side:

1. the bare scikit-learn Pipeline (``predict_proba``), the floor;
2. our ``ChurnModel`` pyfunc (what training logs), loaded with ``mlflow.pyfunc.load_model``;
3. a ``KedroPipelineModel`` (what ``pipeline_ml_factory`` logs): the same model behind a
   one-node Kedro inference pipeline, loaded with ``mlflow.pyfunc.load_model``, with Kedro
   logging at WARNING and at INFO (its default in a project).
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from kedro.io import DataCatalog, MemoryDataset  # noqa: E402
from kedro.pipeline import Pipeline, node  # noqa: E402
from kedro_datasets.pickle import PickleDataset  # noqa: E402
from kedro_mlflow.mlflow import KedroPipelineModel  # noqa: E402

from shadowdrift import simulation as sim  # noqa: E402
from shadowdrift.churn_model import ChurnModel  # noqa: E402
from shadowdrift.training import build_model  # noqa: E402


def predict_proba(model, records: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"churn_probability": model.predict_proba(records)[:, 1]})


def timed(fn, data, repeats: int) -> float:
    fn(data)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(data)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    events, _ = sim.simulate_history(30000, 1, "2024-01-01", 365, 30)
    numeric, categorical = list(sim.NUMERIC_FEATURES), list(sim.CATEGORICAL_FEATURES)
    pipeline = build_model(
        "hist_gradient_boosting",
        {"max_iter": 300, "learning_rate": 0.05, "random_state": 0},
        numeric,
        categorical,
    )
    pipeline.fit(events[numeric + categorical], events[sim.TARGET_COLUMN])
    one = events[numeric + categorical].iloc[[0]]
    thousand = events[numeric + categorical].iloc[:1000]

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        churn = ChurnModel(pipeline, 0.4, numeric, categorical, "gbm", "hist_gradient_boosting")
        mlflow.pyfunc.save_model(tmp_path / "churn_model", python_model=churn)
        churn_loaded = mlflow.pyfunc.load_model(str(tmp_path / "churn_model"))

        model_file = tmp_path / "model.pkl"
        PickleDataset(filepath=str(model_file)).save(pipeline)
        inference = Pipeline(
            [node(predict_proba, inputs=["model", "records"], outputs="predictions")]
        )
        catalog = DataCatalog(
            {
                "model": PickleDataset(filepath=str(model_file)),
                "records": MemoryDataset(),
                "predictions": MemoryDataset(),
            }
        )
        kedro_model = KedroPipelineModel(pipeline=inference, catalog=catalog, input_name="records")
        mlflow.pyfunc.save_model(
            tmp_path / "kedro_model", python_model=kedro_model, artifacts={"model": str(model_file)}
        )
        kedro_loaded = mlflow.pyfunc.load_model(str(tmp_path / "kedro_model"))

        rows = []
        for label, fn in [
            ("scikit-learn Pipeline.predict_proba (floor)", pipeline.predict_proba),
            ("ChurnModel pyfunc (logged by training)", churn_loaded.predict),
        ]:
            rows.append((label, timed(fn, one, 300), timed(fn, thousand, 30)))
        for level in (logging.WARNING, logging.INFO):
            logging.getLogger("kedro").setLevel(level)
            label = f"KedroPipelineModel (pipeline_ml_factory), kedro logging {logging.getLevelName(level)}"
            rows.append(
                (
                    label,
                    timed(kedro_loaded.predict, one, 300),
                    timed(kedro_loaded.predict, thousand, 30),
                )
            )

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    floor_one, floor_k = rows[0][1], rows[0][2]
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; median of 300 (1 row) / 30 (1,000 rows) calls\n"
    )
    print(
        "| model as loaded | 1 record (ms) | 1,000 records (ms) | 1 record vs floor | 1,000 vs floor |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, ms_one, ms_k in rows:
        print(
            f"| {label} | {ms_one:.2f} | {ms_k:.1f} | {ms_one / floor_one:.2f}x | {ms_k / floor_k:.2f}x |"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
