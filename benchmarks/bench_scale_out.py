"""Scale-out benchmark: drift statistics and batch scoring of a large prediction log on Dask.

Usage::

    .venv/bin/python benchmarks/bench_scale_out.py [--rows 20000000] [--data-dir DIR] [--clean]

1. **Data.** A prediction log of ``--rows`` rows x 20 features (18 numeric, 2 categorical) in
   the project's log format (``prediction_log.write_batch``: lz4 Parquet part files of
   ``--rows-per-file`` rows under ``date=YYYY-MM-DD/``), event times over four weeks with a
   drift that grows with time, a champion and a challenger score, distinct request and customer
   ids. Generated in chunks of ``--chunk-rows`` (peak RSS about 0.55 GB while writing, 0.99 GB
   with the fitting below), into ``--data-dir`` (default: a folder in the system temp directory;
   never in git). A complete data set from an earlier run with the same size and seed is reused.
   Beside it: a 100,000-row labelled reference window fitted once with
   ``drift_monitor.fit_reference`` (PSI bins, NannyML monitors), and a champion fitted with
   ``training.fit_candidate`` and the ``gbm`` spec of ``conf/base/parameters_training.yml`` on
   50,000 simulated rows, wrapped in ``ChurnModel`` as training logs it.
2. **Drift statistics**: PSI of the 20 features and the champion's score per weekly chunk and
   the data-quality counts (missing, out of range, unseen); reading the parquet included. What
   the drift pipeline runs for these statistics:

   * Dask: ``read_prediction_log_partitioned`` (the dataset's loader and its grouping:
     ``--files-per-partition`` files or ``--partition-mib`` MiB of part files per partition)
     with the 22 columns the statistics use selected (pushed into the read, which still checks
     every column), then per partition ``partitioned_drift._partition_counts``
     (``count_by_chunk``, ``count_quality``), summed in the client into the chunk, PSI and
     data-quality tables, as ``compute_drift_partitioned`` does;
   * pandas: ``read_prediction_log``, then ``compute_drift``'s steps (``assign_chunks``, PSI,
     ``count_quality``).

   NannyML, the agreement table and the ground-truth join are not part of these statistics.
3. **Batch scoring**: the champion on every row, per partition with ``map_partitions``
   (``partitioned_scoring.score_partitions``), the records read with ``dd.read_parquet`` as the
   ``dask.ParquetDataset`` of ``raw_production`` does; pandas: ``pd.read_parquet`` and one
   ``ChurnModel.predict`` call, as the inference node's pandas path. Only a per-partition
   summary travels back (the log write is not timed).

Each measurement runs in a fresh process: Dask on a ``LocalCluster`` started by the project's
hook code (``dask_hooks.start_client``, ``conf/dask/dask.yml`` with ``local.n_workers`` set to 1
or 2; starting it and importing the project's modules on the workers is reported apart, not
timed), pandas in-process on the first ``--pandas-rows`` rows (it holds the whole log in memory).
Reported: wall time from listing the files to the finished tables,
the peak RSS of every worker process (``ru_maxrss``) and of the client process (which holds the
scheduler), and the CPU seconds the workers used. ``--repeats`` runs every engine that many
times, alternating, and reports the fastest. The answers of runs over the same rows are compared
(PSI and data-quality tables must be identical; scoring: same rows and labels). Exit status 1 if
a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

PROJECT = Path(__file__).resolve().parents[1]
N_NUMERIC = 18
CONTRACTS = ("month_to_month", "one_year", "two_year", "trial")
PLANS = tuple(f"plan_{i:02d}" for i in range(30))
START = pd.Timestamp("2026-01-05", tz="UTC")  # a Monday: four whole weekly chunks
DAYS = 28
REFERENCE_ROWS = 100_000
TRAIN_ROWS = 50_000
THRESHOLD = 0.5

TARGETS = {
    "drift_2_workers_s": 12.0,
    "drift_speedup": 1.8,
    "worker_peak_mb": 1024.0,
    "inference_speedup": 1.8,
}


# --- the data ------------------------------------------------------------------------------------


def schema_config() -> dict[str, Any]:
    """The benchmark's data schema; ranges and values leave a few rows out of range / unseen."""
    numeric: dict[str, Any] = {}
    for i in range(6):
        numeric[f"num_{i:02d}"] = {"min": 10.0 * i - 4.0 * (1 + i), "max": 10.0 * i + 4.0 * (1 + i)}
    for i in range(6, 9):
        numeric[f"num_{i:02d}"] = {"min": 0.0, "max": 25.0}
    for i in range(9, 12):
        numeric[f"num_{i:02d}"] = {"min": 0.0, "max": 100.0}
    for i in range(12, 15):
        numeric[f"num_{i:02d}"] = {"dtype": "int", "min": 0, "max": 10}
    for i in range(15, 17):
        numeric[f"num_{i:02d}"] = {"dtype": "int", "min": 0, "max": 11}
    numeric["num_17"] = {"min": 0.0, "max": 1.0}
    for name in ("num_01", "num_06"):
        numeric[name]["nullable"] = True
    return {
        "id": "customer_id",
        "timestamp": "event_time",
        "target": "churned",
        "numeric": numeric,
        # "trial" and plan_29 are not in the schema: they show up as unseen values
        "categorical": {
            "contract": {"values": list(CONTRACTS[:3])},
            "plan": {"values": list(PLANS[:29])},
        },
    }


def make_features(rng: np.random.Generator, shift: np.ndarray) -> pd.DataFrame:
    """20 features for ``len(shift)`` rows; ``shift`` in [0, 1] moves the distributions."""
    n = len(shift)
    cols: dict[str, Any] = {}
    for i in range(6):
        cols[f"num_{i:02d}"] = rng.normal(10.0 * i + 0.4 * shift * (i % 3) * (1 + i), 1.0 + i, n)
    for i in range(6, 9):
        cols[f"num_{i:02d}"] = rng.lognormal(1.0 + 0.1 * shift * (i - 6), 0.6, n)
    for i in range(9, 12):
        cols[f"num_{i:02d}"] = rng.uniform(0.0, 100.0 + 5.0 * shift * (i - 9), n)
    for i in range(12, 15):
        cols[f"num_{i:02d}"] = rng.poisson(0.7 + (i - 12) * (1.0 + 0.1 * shift), n).astype(float)
    for i in range(15, 17):
        cols[f"num_{i:02d}"] = rng.binomial(5 + 3 * (i - 15), 0.4 + 0.03 * shift).astype(float)
    cols["num_17"] = rng.beta(2.0 + 0.3 * shift, 5.0, n)
    for name in ("num_01", "num_06"):
        cols[name][rng.random(n) < 0.002 + 0.01 * shift] = np.nan
    contract_p = np.array([0.5, 0.25, 0.245, 0.005])
    cols["contract"] = np.asarray(CONTRACTS, dtype=object)[rng.choice(4, n, p=contract_p)]
    weights = np.linspace(1.0, 3.0, len(PLANS)) ** 2.0
    cols["plan"] = np.asarray(PLANS, dtype=object)[
        rng.choice(len(PLANS), n, p=weights / weights.sum())
    ]
    return pd.DataFrame(cols)


def churn_probability(features: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """The simulated truth: a logistic function of a few features."""
    logit = (
        -1.2
        + 0.35 * (features["num_00"].to_numpy() - 0.0)
        - 0.04 * (features["num_03"].to_numpy() - 30.0)
        + 0.25 * np.nan_to_num(features["num_06"].to_numpy() - 3.2)
        - 0.012 * (features["num_09"].to_numpy() - 50.0)
        + 0.3 * features["num_13"].to_numpy()
        + 0.8 * (features["contract"].to_numpy() == "month_to_month")
        + rng.normal(0.0, 0.3, len(features))
    )
    return 1.0 / (1.0 + np.exp(-logit))


def labelled_rows(n: int, seed: int, start: pd.Timestamp) -> pd.DataFrame:
    """Undrifted rows with a target, the champion's and the challenger's scores (the reference)."""
    rng = np.random.default_rng(seed)
    frame = make_features(rng, np.zeros(n))
    p = churn_probability(frame, rng)
    frame.insert(0, "customer_id", np.arange(n).astype(str))
    frame.insert(1, "event_time", start + pd.to_timedelta(rng.uniform(0, 28, n), unit="D"))
    frame["churned"] = (rng.random(n) < p).astype(np.int64)
    frame["champion_probability"] = np.clip(p + rng.normal(0, 0.05, n), 0.0, 1.0)
    frame["champion_label"] = (frame["champion_probability"] >= THRESHOLD).astype(np.int64)
    frame["challenger_probability"] = np.clip(p + rng.normal(0, 0.06, n), 0.0, 1.0)
    frame["challenger_label"] = (frame["challenger_probability"] >= THRESHOLD).astype(np.int64)
    return frame


def log_chunk(start_row: int, n: int, total: int, seed: int) -> pd.DataFrame:
    """Rows ``start_row .. start_row + n`` of the log (seeded per chunk: reproducible)."""
    rng = np.random.default_rng([seed, start_row])
    # event times in row order, so the drift grows with time and chunks span whole files
    position = (start_row + np.arange(n) + rng.random(n)) / total
    frame = make_features(rng, np.clip((position - 0.5) * 2.0, 0.0, 1.0))
    p = churn_probability(frame, rng)
    ids = np.arange(start_row, start_row + n)
    frame.insert(0, "customer_id", ids)
    frame.insert(
        1, "event_time", START + pd.to_timedelta(position * DAYS * 86_400, unit="s").round("us")
    )
    frame.insert(0, "request_id", [f"req-{i:010d}" for i in ids])
    frame.insert(1, "record_index", np.zeros(n, dtype=np.int64))
    champion = np.clip(p + rng.normal(0, 0.05, n), 0.0, 1.0)
    challenger = np.clip(p + rng.normal(0, 0.06, n), 0.0, 1.0)
    frame["champion_probability"] = champion
    frame["champion_label"] = (champion >= THRESHOLD).astype(np.int64)
    frame["champion_model_version"] = "7"
    frame["champion_latency_ms"] = rng.gamma(2.0, 0.4, n)
    frame["challenger_status"] = "ok"
    frame["challenger_probability"] = challenger
    frame["challenger_label"] = (challenger >= THRESHOLD).astype(np.int64)
    frame["challenger_model_version"] = "8"
    frame["challenger_latency_ms"] = rng.gamma(2.0, 0.6, n)
    return frame


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def generate(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Write the log in chunks, the reference, the fitted reference and the champion."""
    import cloudpickle

    from shadowdrift.churn_model import ChurnModel
    from shadowdrift.drift_monitor import fit_reference
    from shadowdrift.prediction_log import PARQUET_COMPRESSION, LogSchema, write_batch
    from shadowdrift.schema import parse_schema
    from shadowdrift.training import fit_candidate, split_validation

    manifest_file = root / "manifest.json"
    # The codec is part of the key: data written by an older log format is regenerated.
    wanted = {
        "rows": args.rows,
        "rows_per_file": args.rows_per_file,
        "seed": args.seed,
        "codec": PARQUET_COMPRESSION,
    }
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
        if {k: manifest.get(k) for k in wanted} == wanted:
            print(f"Reusing the data in {root}")
            return manifest
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    schema = parse_schema(schema_config())
    log_schema = LogSchema.from_data_schema(schema)
    log_dir = root / "prediction_log"

    started = time.perf_counter()
    for first in range(0, args.rows, args.chunk_rows):
        n = min(args.chunk_rows, args.rows - first)
        chunk = log_chunk(first, n, args.rows, args.seed)
        write_batch(log_dir, chunk, log_schema, max_records_per_file=args.rows_per_file)
        del chunk
        done = first + n
        if done % (args.chunk_rows * 10) == 0 or done == args.rows:
            print(f"  {done:,} rows written ({time.perf_counter() - started:.0f} s)", flush=True)
    generate_seconds = time.perf_counter() - started

    params = yaml.safe_load((PROJECT / "conf/base/parameters_drift.yml").read_text())["drift"]
    reference = labelled_rows(REFERENCE_ROWS, args.seed + 1, START - pd.Timedelta(days=28))
    tick = time.perf_counter()
    fitted = fit_reference(reference, schema, THRESHOLD, params)
    fit_seconds = time.perf_counter() - tick
    (root / "fitted_reference.pkl").write_bytes(cloudpickle.dumps(fitted))

    training = yaml.safe_load((PROJECT / "conf/base/parameters_training.yml").read_text())
    training = training["training"]
    rows = labelled_rows(TRAIN_ROWS, args.seed + 2, START - pd.Timedelta(days=56))
    fit_rows, validation = split_validation(rows, "event_time", training["validation_fraction"])
    numeric, categorical = schema.numeric_features, schema.categorical_features
    candidate = fit_candidate(
        "gbm", training["models"]["gbm"], fit_rows, validation, numeric, categorical,
        "churned", training["threshold"],
    )  # fmt: skip
    model = ChurnModel(
        candidate.pipeline, candidate.threshold, numeric, categorical, "gbm", candidate.kind
    )
    (root / "champion.pkl").write_bytes(cloudpickle.dumps(model))
    files = sorted(log_dir.rglob("part-*.parquet"))
    manifest = {
        **wanted,
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "generate_seconds": round(generate_seconds, 1),
        "generator_peak_rss_mb": round(peak_rss_mb(), 0),
        "fit_reference_seconds": round(fit_seconds, 2),
        "champion_trees": int(candidate.pipeline[-1].n_iter_),
        "champion_fit_seconds": round(candidate.fit_seconds, 2),
    }
    manifest_file.write_text(json.dumps(manifest, indent=2))
    return manifest


# --- one measurement (in its own process) --------------------------------------------------------


def _load(root: Path, name: str) -> Any:
    import cloudpickle

    return cloudpickle.loads((root / name).read_bytes())


def _worker_peak_rss_mb() -> float:
    return peak_rss_mb()


_PRE_SPAWN = "distributed.nanny.pre-spawn-environ."
# what conf/dask/dask.yml sets on the workers, reported with each Dask measurement
_ALLOCATOR_VARIABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "ARROW_DEFAULT_MEMORY_POOL",
    "JE_ARROW_MALLOC_CONF",
)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _event_loop_cpu_seconds() -> float:
    """CPU seconds of this process's main thread: in a Dask worker its event loop (task
    bookkeeping, heartbeats, monitors), not the tasks, which run in other threads. Linux only."""
    fields = Path(f"/proc/self/task/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are the 14th and 15th fields of stat(5); fields[0] is the 3rd
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_usage() -> dict[str, float]:
    """A worker's CPU so far: all of it, the kernel's share and minor page faults (what a
    second worker on the same machine inflates, docs/benchmarks.md, "Scale-out"), and its event
    loop's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "kernel_cpu_s": usage.ru_stime,
        "minor_faults": usage.ru_minflt,
        "event_loop_cpu_s": _event_loop_cpu_seconds(),
    }


# What a worker imports to run the tasks (NannyML alone takes about 3 s): done once when the
# cluster starts, as on a long-lived cluster, and reported with the start-up time.
WARM_UP_MODULES = {
    "drift": ("shadowdrift.partitioned_drift", "shadowdrift.partitioned_prediction_log"),
    "inference": ("shadowdrift.partitioned_scoring", "shadowdrift.churn_model", "sklearn.ensemble"),
}


def _import_modules(names: tuple[str, ...]) -> None:
    import importlib

    for name in names:
        importlib.import_module(name)


def _drift_tables_dask(root: Path, fitted: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shadowdrift import partitioned_drift as pdrift
    from shadowdrift.data_quality import merge_quality, quality_table
    from shadowdrift.frames import compute_together, partition_tasks
    from shadowdrift.partitioned_prediction_log import read_prediction_log_partitioned

    params, schema = fitted.params, fitted.schema
    log = read_prediction_log_partitioned(
        root / "prediction_log",
        files_per_partition=args.files_per_partition,
        partition_bytes=args.partition_mib * 2**20,
        categorical_dtype=args.categorical_dtype,
    )
    if not args.no_projection:
        # only the columns the statistics read are converted (the read still checks them all)
        log = log[["event_time", *schema.features, "champion_probability"]]
    chunking = pdrift._Chunking(
        timestamp="event_time", target=schema.target, by=params.chunking.by,
        size=params.chunking.size, agreement=False, params=params.chunking,
    )  # fmt: skip
    counted = [
        c
        for c in compute_together(*partition_tasks(pdrift._partition_counts, log, fitted, chunking))
        if c is not None
    ]
    chunks = pdrift._chunk_table(counted, params.chunking.min_rows)
    order = chunks["chunk"].tolist()
    psi_counts = sum((c.psi for c in counted[1:]), counted[0].psi)
    return {
        "partitions": log.npartitions,
        "chunks": chunks,
        "psi": pdrift._psi_table(fitted, psi_counts, order),
        "quality": quality_table(merge_quality(c.quality for c in counted), schema, order),
    }


def _drift_tables_pandas(log_dir: Path, fitted: Any) -> dict[str, Any]:
    from shadowdrift import drift_monitor as dm
    from shadowdrift.data_quality import count_quality, quality_table
    from shadowdrift.drift_chunks import assign_chunks
    from shadowdrift.prediction_log import read_prediction_log

    params, schema = fitted.params, fitted.schema
    log = read_prediction_log(log_dir)
    assignment = assign_chunks(log["event_time"], params.chunking, column="event_time")
    chunks = dm._chunk_table(assignment, log, schema.target)
    order = chunks["chunk"].tolist()
    return {
        "partitions": 1,
        "chunks": chunks,
        "psi": dm._psi_table(fitted, log, assignment),
        "quality": quality_table(count_quality(log, assignment.labels, schema), schema, order),
    }


def _scored_summary(part: pd.DataFrame, _number: int) -> tuple[int, float, int]:
    return len(part), float(part["champion_probability"].sum()), int(part["champion_label"].sum())


def _inference_dask(root: Path, model: Any, schema: Any) -> dict[str, Any]:
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    from shadowdrift.frames import map_partitions_to_list, partition_offsets
    from shadowdrift.partitioned_scoring import ShadowModels, score_partitions

    files = [str(f) for f in sorted((root / "prediction_log").rglob("part-*.parquet"))]
    columns = [schema.id, schema.timestamp, *schema.features]
    records = dd.read_parquet(files, columns=columns)
    lengths = [pq.ParquetFile(f).metadata.num_rows for f in files]
    if records.npartitions != len(files):
        raise RuntimeError(f"{records.npartitions} partitions for {len(files)} files")
    scored = score_partitions(records, partition_offsets(lengths), schema, ShadowModels(model, "1"))
    parts = map_partitions_to_list(_scored_summary, scored)
    return {
        "partitions": records.npartitions,
        "rows": sum(p[0] for p in parts),
        "probability_sum": sum(p[1] for p in parts),
        "positives": sum(p[2] for p in parts),
    }


def _inference_pandas(log_dir: Path, model: Any, schema: Any) -> dict[str, Any]:
    from shadowdrift.churn_model import LABEL, PROBABILITY

    columns = [schema.id, schema.timestamp, *schema.features]
    records = pd.read_parquet(log_dir, columns=columns)
    predictions = model.predict(None, records)
    return {
        "partitions": 1,
        "rows": len(predictions),
        "probability_sum": float(predictions[PROBABILITY].sum()),
        "positives": int(predictions[LABEL].sum()),
    }


def _start_cluster(
    args: argparse.Namespace, stack: contextlib.ExitStack, result: dict[str, Any]
) -> Any:
    """A LocalCluster as DaskClientHooks starts one: the run's dask config first, then the
    cluster (conf/dask/dask.yml, ``local.n_workers`` replaced); workers warmed up."""
    import dask

    from shadowdrift.dask_hooks import DaskSettings, start_client

    config = yaml.safe_load((PROJECT / "conf/dask/dask.yml").read_text())["dask"]
    config["local"]["n_workers"] = args.workers
    if args.dask_allocator_default:
        # the workers as Dask starts them (its MALLOC_TRIM_THRESHOLD_=65536, pyarrow's
        # mimalloc), for an A/B against the project's settings (conf/dask/dask.yml)
        config["config"] = {
            key: value for key, value in config["config"].items() if not key.startswith(_PRE_SPAWN)
        }
    settings = DaskSettings.from_config(config)
    stack.enter_context(dask.config.set(settings.config))
    tick = time.perf_counter()
    client, cluster = start_client(settings)
    stack.callback(cluster.close)
    stack.callback(client.close)
    client.wait_for_workers(args.workers)
    client.run(_import_modules, WARM_UP_MODULES[args.measure])
    result["cluster_start_s"] = time.perf_counter() - tick
    result["worker_allocators"] = client.run(_allocator_environment)
    return client


def _allocator_environment() -> dict[str, str | None]:
    return {name: os.getenv(name) for name in _ALLOCATOR_VARIABLES}


def _inputs(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The fitted reference, or the champion and the schema (loaded before the clock starts)."""
    from shadowdrift.schema import parse_schema

    if args.measure == "drift":
        return {"fitted": _load(root, "fitted_reference.pkl")}
    return {"model": _load(root, "champion.pkl"), "schema": parse_schema(schema_config())}


def _run_step(args: argparse.Namespace, root: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    if args.measure == "drift":
        fitted = inputs["fitted"]
        if args.engine == "dask":
            return _drift_tables_dask(root, fitted, args)
        return _drift_tables_pandas(root / args.log_subdir, fitted)
    model, schema = inputs["model"], inputs["schema"]
    if args.engine == "dask":
        return _inference_dask(root, model, schema)
    return _inference_pandas(root / args.log_subdir, model, schema)


def _save_answers(args: argparse.Namespace, root: Path, out: dict, result: dict) -> None:
    out_dir = root / "answers"
    out_dir.mkdir(exist_ok=True)
    stem = f"{args.engine}{args.workers}"
    out["psi"][["chunk", "feature", "psi", "n_rows", "n_missing"]].to_parquet(
        out_dir / f"psi-{stem}.parquet"
    )
    out["quality"].drop(columns=["unseen_values"]).to_parquet(out_dir / f"quality-{stem}.parquet")
    result["rows"] = int(out["chunks"]["n_rows"].sum())
    result["chunks"] = len(out["chunks"])
    result["psi_alerts"] = int((out["psi"]["severity"] == "alert").sum())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement; prints its result as a JSON line.

    The timed part starts after the inputs (fitted reference, model) are loaded and, for Dask,
    after the cluster is up, and ends when the tables (or scoring sums) are in the client.
    """
    root = Path(args.data_dir)
    result: dict[str, Any] = {
        "what": args.measure,
        "engine": args.engine,
        "workers": args.workers,
        "load_1min": os.getloadavg()[0],
    }
    inputs = _inputs(args, root)
    with contextlib.ExitStack() as stack:
        client = _start_cluster(args, stack, result) if args.engine == "dask" else None
        if client is not None:
            usage_before = client.run(_worker_usage)
        tick, client_cpu = time.perf_counter(), _cpu_seconds()
        out = _run_step(args, root, inputs)
        result["wall_s"] = time.perf_counter() - tick
        result["client_cpu_s"] = _cpu_seconds() - client_cpu
        if client is not None:
            result["worker_peak_mb"] = sorted(client.run(_worker_peak_rss_mb).values())
            usage_after = client.run(_worker_usage)
            used = {
                key: [usage_after[w][key] - usage_before[w][key] for w in sorted(usage_after)]
                for key in usage_after[next(iter(usage_after))]
            }
            result["worker_cpu_s"] = sorted(used.pop("cpu_s"))
            # in worker-address order, so that the lists pair up worker by worker
            result.update({f"worker_{key}": values for key, values in used.items()})
    result["client_peak_mb"] = peak_rss_mb()
    result["partitions"] = out.pop("partitions")
    if args.measure == "drift":
        _save_answers(args, root, out, result)
    else:
        result.update(out)
    print("RESULT " + json.dumps(result), flush=True)
    return result


# --- the orchestrator ----------------------------------------------------------------------------


def run_one(
    args: argparse.Namespace, what: str, engine: str, workers: int, log_subdir: str
) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--measure", what, "--engine", engine,
        "--workers", str(workers), "--data-dir", str(args.data_dir),
        "--files-per-partition", str(args.files_per_partition), "--log-subdir", log_subdir,
        "--partition-mib", str(args.partition_mib),
        "--categorical-dtype", args.categorical_dtype,
        *(["--no-projection"] if args.no_projection else []),
        *(["--dask-allocator-default"] if args.dask_allocator_default else []),
    ]  # fmt: skip
    label = f"{what} {engine}" + (f" x{workers}" if engine == "dask" else "")
    print(f"Measuring {label} ...", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=PROJECT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{label} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    workers_mb = result.get("worker_peak_mb")
    cpu = result.get("worker_cpu_s") or [result["client_cpu_s"]]
    print(
        f"  {result['rows']:,} rows in {result['wall_s']:.2f} s (cluster start and imports "
        f"{result.get('cluster_start_s', 0):.1f} s), CPU s {fmt_mb(cpu)}, workers "
        f"{fmt_mb(workers_mb)} MB, client {result['client_peak_mb']:.0f} MB",
        flush=True,
    )
    if "worker_kernel_cpu_s" in result:
        kernel = " / ".join(f"{seconds:.1f}" for seconds in result["worker_kernel_cpu_s"])
        faults = " / ".join(f"{count:,}" for count in result["worker_minor_faults"])
        print(f"  worker kernel CPU s {kernel}, minor page faults {faults}", flush=True)
        loops = " / ".join(f"{seconds:.2f}" for seconds in result["worker_event_loop_cpu_s"])
        print(
            f"  CPU s outside the tasks: worker event loops {loops}, client and scheduler "
            f"{result['client_cpu_s']:.2f}",
            flush=True,
        )
    return result


def head_of_log(root: Path, rows: int) -> str:
    """A log directory with the first part files holding ``rows`` rows (hard links)."""
    import pyarrow.parquet as pq

    files = sorted((root / "prediction_log").rglob("part-*.parquet"))
    head = root / f"prediction_log_head_{rows}"
    if head.exists():
        return head.name
    tmp = root / f".{head.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    total = 0
    for file in files:
        if total >= rows:
            break
        target = tmp / file.relative_to(root / "prediction_log")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(file, target)
        total += pq.ParquetFile(file).metadata.num_rows
    tmp.rename(head)
    return head.name


def compare_answers(root: Path, stems: list[str]) -> list[str]:
    notes = []
    base = stems[0]
    for kind in ("psi", "quality"):
        first = pd.read_parquet(root / "answers" / f"{kind}-{base}.parquet")
        for other in stems[1:]:
            frame = pd.read_parquet(root / "answers" / f"{kind}-{other}.parquet")
            key = ["chunk", "feature"]
            a = first.sort_values(key).reset_index(drop=True)
            b = frame.sort_values(key).reset_index(drop=True)
            pd.testing.assert_frame_equal(a, b, check_exact=True, check_dtype=False)
        notes.append(f"{kind} tables identical across {', '.join(stems)}")
    return notes


def uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], check=False, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "uptime unavailable"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_mb(values: Any) -> str:
    if not values:
        return "-"
    return " / ".join(f"{v:.0f}" for v in values)


def best_runs(results: list[dict]) -> list[dict]:
    """The fastest run of every (step, engine, workers), in first-seen order."""
    best: dict[tuple, dict] = {}
    for r in results:
        key = (r["what"], r["engine"], r["workers"])
        if key not in best or r["wall_s"] < best[key]["wall_s"]:
            best[key] = r
    return list(best.values())


def report(results: list[dict]) -> list[str]:
    by = {(r["what"], r["engine"], r["workers"]): r for r in results}
    lines = [
        "| step | engine | rows | partitions | wall time (s) | rows/s | speed-up vs 1 worker "
        "| CPU s per 1M rows | peak RSS per worker (MB) | peak RSS client (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for what in ("drift", "inference"):
        one = by.get((what, "dask", 1))
        for key in (("dask", 1), ("dask", 2), ("pandas", 0)):
            r = by.get((what, *key))
            if r is None:
                continue
            engine = f"Dask, {key[1]} worker(s)" if key[0] == "dask" else "pandas, one process"
            speedup = f"{one['wall_s'] / r['wall_s']:.2f}x" if one and key[0] == "dask" else "-"
            step = "drift statistics" if what == "drift" else "batch scoring (champion)"
            cpu = sum(r.get("worker_cpu_s") or [r["client_cpu_s"]]) / r["rows"] * 1e6
            lines.append(
                f"| {step} | {engine} | {r['rows']:,} | {r['partitions']} | {r['wall_s']:.2f} | "
                f"{r['rows'] / r['wall_s']:,.0f} | {speedup} | {cpu:.2f} | "
                f"{fmt_mb(r.get('worker_peak_mb'))} | {r['client_peak_mb']:.0f} |"
            )
    return lines


def check_targets(results: list[dict]) -> list[tuple[str, float, float, bool]]:
    by = {(r["what"], r["engine"], r["workers"]): r for r in results}
    checks = []
    d1, d2 = by.get(("drift", "dask", 1)), by.get(("drift", "dask", 2))
    i1, i2 = by.get(("inference", "dask", 1)), by.get(("inference", "dask", 2))
    if d2:
        t = TARGETS["drift_2_workers_s"]
        checks.append(("drift, 2 workers, s (<=)", d2["wall_s"], t, d2["wall_s"] <= t))
    if d1 and d2:
        s = d1["wall_s"] / d2["wall_s"]
        t = TARGETS["drift_speedup"]
        checks.append(("drift speed-up 1->2 workers (>=)", s, t, s >= t))
    if i1 and i2:
        s = i1["wall_s"] / i2["wall_s"]
        t = TARGETS["inference_speedup"]
        checks.append(("scoring speed-up 1->2 workers (>=)", s, t, s >= t))
    peaks = [p for r in results if r["engine"] == "dask" for p in r.get("worker_peak_mb", [])]
    if peaks:
        t = TARGETS["worker_peak_mb"]
        checks.append(("peak RSS per worker, MB (<=)", max(peaks), t, max(peaks) <= t))
    return checks


def _catalog_load_args() -> dict[str, Any]:
    """The load_args of the prediction log in the dask environment's catalog."""
    catalog = yaml.safe_load((PROJECT / "conf/dask/catalog.yml").read_text())
    return dict(catalog["model_output_prediction_log"].get("load_args") or {})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--rows-per-file", type=int, default=100_000, help="log part-file size")
    parser.add_argument("--chunk-rows", type=int, default=500_000, help="generator chunk")
    parser.add_argument("--files-per-partition", type=int, default=64, help="as the dataset")
    parser.add_argument("--partition-mib", type=int, default=64, help="as the dataset")
    parser.add_argument(
        "--categorical-dtype",
        choices=["object", "category"],
        default=_catalog_load_args().get("categorical_dtype", "object"),
        help="Dask drift: pandas dtype of the categorical features (default: as the dask "
        "environment's catalog entry model_output_prediction_log)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--steps", default="drift,inference")
    parser.add_argument("--engines", default="dask1,dask2,pandas")
    parser.add_argument(
        "--no-projection",
        action="store_true",
        help="Dask drift: convert every log column to pandas, not only those the statistics use",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per step and engine (the fastest is shown)"
    )
    parser.add_argument("--generate-only", action="store_true", help="write the data, stop")
    parser.add_argument(
        "--dask-allocator-default",
        action="store_true",
        help="workers get Dask's and pyarrow's default allocators, without conf/dask/dask.yml's "
        "pre-spawn-environ settings (an A/B)",
    )
    parser.add_argument("--clean", action="store_true", help="delete the data at the end")
    parser.add_argument("--measure", choices=["drift", "inference"], help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=["dask", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--log-subdir", default="prediction_log", help=argparse.SUPPRESS)
    parser.add_argument(
        "--pandas-rows",
        type=int,
        default=2_000_000,
        help="the pandas path reads the first part files holding this many rows (0: all); "
        "it holds the whole log in memory, about 1.5 GB per million rows",
    )
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = Path(tempfile.gettempdir()) / f"shadowdrift-scale-out-{args.rows}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        measure(args)
        return 0
    print(f"Load before: {uptime()}")
    manifest = generate(args, Path(args.data_dir))
    print(json.dumps(manifest))
    if args.generate_only:
        return 0
    results = []
    engines = [
        (e[:4], int(e[4:])) if e.startswith("dask") else (e, 0) for e in args.engines.split(",")
    ]
    subset = 0 < args.pandas_rows < args.rows
    pandas_dir = head_of_log(Path(args.data_dir), args.pandas_rows) if subset else "prediction_log"
    for what in args.steps.split(","):
        for _ in range(args.repeats):  # engines alternate, so that load changes hit them all
            for engine, workers in engines:
                subdir = pandas_dir if engine == "pandas" else "prediction_log"
                results.append(run_one(args, what, engine, workers, subdir))
    load_after = uptime()
    runs = results
    results = best_runs(results)
    same_rows = [r for r in results if r["rows"] == args.rows]
    stems = [f"{r['engine']}{r['workers']}" for r in same_rows if r["what"] == "drift"]
    notes = compare_answers(Path(args.data_dir), stems) if len(stems) > 1 else []
    inference = [r for r in same_rows if r["what"] == "inference"]
    if len(inference) > 1:
        sums = [r["probability_sum"] for r in inference]
        rows = {r["rows"] for r in inference}
        positives = {r["positives"] for r in inference}
        assert len(rows) == 1 and len(positives) == 1, (rows, positives)
        notes.append(
            f"scoring: same rows and labels on every engine; probability sums differ by at most "
            f"{max(sums) - min(sums):.2e} (summation order)"
        )
    print()
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"pandas {pd.__version__}, numpy {np.__version__}"
    )
    print(
        f"Data: {args.rows:,} log rows x 20 features in {manifest['files']} part files "
        f"({manifest['bytes'] / 1e9:.2f} GB), {args.files_per_partition} files or {args.partition_mib} MiB per Dask partition, categorical features as {args.categorical_dtype} "
        f"for drift; generated in {manifest['generate_seconds']} s, generator peak RSS "
        f"{manifest['generator_peak_rss_mb']:.0f} MB; champion: {manifest['champion_trees']} trees"
    )
    print(f"Load after: {load_after}")
    print()
    print("\n".join(report(results)))
    print()
    print("\n".join(notes))
    if args.repeats > 1:
        print("All runs (wall s, 1-minute load average when the run started):")
        for key in {(r["what"], r["engine"], r["workers"]) for r in runs}:
            mine = [r for r in runs if (r["what"], r["engine"], r["workers"]) == key]
            walls = ", ".join(f"{r['wall_s']:.2f} (load {r['load_1min']:.2f})" for r in mine)
            print(f"  {key[0]} {key[1]} x{key[2]}: {walls}")
    checks = check_targets(results)
    for name, value, target, ok in checks:
        print(f"Target {name} {target}: {value:.2f} -> {'PASS' if ok else 'FAIL'}")
    if args.clean:
        shutil.rmtree(args.data_dir, ignore_errors=True)
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
