"""The Dask environment gives the pandas path's answers (docs/scale_out.md).

The slow test runs data_engineering -> inference -> drift on the same small data (raw tables
split into three parquet files) in the default environment and in ``--env dask`` on a 2-worker
LocalCluster, and compares: the split, the reference window, every prediction (per id), the
whole drift summary (PSI to 1e-9) and the retraining decision; then the validation error on
bad data. The faster tests compare the partitioned modules with their pandas counterparts on
Dask's synchronous scheduler.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import distributed
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import MissingConfigException
from kedro.pipeline import Pipeline, node

from shadowdrift import settings
from shadowdrift import simulation as sim
from shadowdrift.dask_hooks import DaskClientHooks, DaskConfigError, DaskSettings
from shadowdrift.drift_monitor import compute_drift, fit_reference
from shadowdrift.partitioned_drift import compute_drift_partitioned
from shadowdrift.partitioned_validation import validate_partitions
from shadowdrift.prediction_log import read_prediction_log
from shadowdrift.schema import DataValidationError, parse_schema, validate_frame
from tests import test_drift_support as support
from tests.conftest import PROJECT_ROOT, base_parameters, copy_project
from tests.kedro_runs import load_dataset, run_kedro_cli, run_pipeline

PARAMS = {
    "simulation": {"n_events": 3000, "n_production": 1200, "scenario": "covariate_shift"},
    "training": {
        "models": {"gbm": {"params": {"max_iter": 40}}, "mlp": {"params": {"max_epochs": 3}}}
    },
    "evaluation": {"latency_repeats": 1, "segment_min_rows": 50},
    # size chunks: the Dask path must reproduce the global time order
    "drift": {"chunking": {"by": "size", "size": 200, "min_rows": 150}},
}
DATA_PIPELINES = "data_engineering,inference,drift"
PREDICTION_COLUMNS = [
    "customer_id",
    "champion_probability",
    "champion_label",
    "champion_model_version",
    "challenger_status",
    "challenger_probability",
    "challenger_label",
    "challenger_model_version",
]
# Differ by nature between two runs: when, how fast, and which batch.
VOLATILE_LOG_COLUMNS = (
    "request_id",
    "logged_at",
    "champion_latency_ms",
    "challenger_latency_ms",
)


@pytest.fixture(autouse=True)
def _synchronous_dask():
    # Tests without a cluster compute in this thread; strings stay objects as in conf/dask.
    with dask.config.set({"scheduler": "sync", "dataframe.convert-string": False}):
        yield


def _schema():
    return parse_schema(base_parameters()["schema"])


def _partitioned(frame: pd.DataFrame, parts: int = 3) -> dd.DataFrame:
    return dd.from_pandas(frame, npartitions=parts, sort=False)


def split_into_files(path: Path, parts: int = 3) -> None:
    """Replace a parquet file by a directory of ``parts`` files: same rows, same order."""
    frame = pd.read_parquet(path)
    path.unlink()
    path.mkdir()
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    for i in range(parts):
        frame.iloc[bounds[i] : bounds[i + 1]].to_parquet(path / f"part.{i}.parquet", index=False)


# --- configuration and hook --------------------------------------------------------------------


def test_settings_register_the_dask_hook_and_config_pattern():
    assert any(isinstance(h, DaskClientHooks) for h in settings.HOOKS), (
        "add DaskClientHooks() to HOOKS in src/shadowdrift/settings.py (docs/scale_out.md)"
    )
    patterns = settings.CONFIG_LOADER_ARGS.get("config_patterns", {})
    assert patterns.get("dask") == ["dask*", "dask*/**"], (
        'add "config_patterns": {"dask": ["dask*", "dask*/**"]} to CONFIG_LOADER_ARGS'
    )


def test_the_dask_environment_config_parses_to_a_local_two_worker_cluster():
    config = yaml.safe_load((PROJECT_ROOT / "conf/dask/dask.yml").read_text())
    settings = DaskSettings.from_config(config["dask"])
    assert settings.address is None and settings.cluster_class is None
    assert (settings.local.n_workers, settings.local.threads_per_worker) == (2, 1)
    assert settings.config == {
        "dataframe.convert-string": False,
        "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 67108864,
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 268435456,
        "distributed.nanny.pre-spawn-environ.ARROW_DEFAULT_MEMORY_POOL": "jemalloc",
        "distributed.nanny.pre-spawn-environ.JE_ARROW_MALLOC_CONF": (
            "dirty_decay_ms:10000,muzzy_decay_ms:10000"
        ),
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "200ms",
        "distributed.admin.system-monitor.interval": "2s",
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"workers": 2}, "dask: unknown key(s) 'workers'"),
        ({"local": {"n_workers": 0}}, "dask.local.n_workers must be an integer of at least 1"),
        ({"address": "tcp://s:8786", "cluster_class": "x.Y"}, "not both"),
        ({"local": {"dashboard": True, "dashboard_address": "0.0.0.0:8787"}}, "127.0.0.1"),
    ],
)
def test_a_malformed_dask_config_names_the_key(config, message):
    with pytest.raises(DaskConfigError, match=re.escape(message)):
        DaskSettings.from_config(config)


class _Context:
    """Just enough of a KedroContext for ``after_context_created``."""

    env = "test"

    def __init__(self, config: dict[str, Any] | None):
        self._config = config

    @property
    def config_loader(self) -> dict[str, Any]:
        if self._config is None:
            raise MissingConfigException("no dask.yml")
        # the "dask" pattern loads dask.yml, whose top-level key is "dask"
        return {"dask": {"dask": self._config}}


def _tagged_pipeline(tag: str) -> Pipeline:
    return Pipeline([node(lambda x: x, "a", "b", name=f"{tag}_node", tags=[tag])])


def test_the_hook_is_idle_without_dask_config():
    hooks = DaskClientHooks()
    hooks.after_context_created(_Context(None))
    hooks.before_pipeline_run({"env": "test"}, _tagged_pipeline("training"))
    assert hooks._client is None


_ALLOCATOR_VARIABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "ARROW_DEFAULT_MEMORY_POOL",
    "JE_ARROW_MALLOC_CONF",
)


@pytest.mark.slow
def test_the_hooks_local_workers_get_the_configured_allocators(monkeypatch):
    """conf/dask/dask.yml replaces Dask's MALLOC_TRIM_THRESHOLD_=65536 with glibc thresholds
    that keep freed memory and gives Arrow jemalloc with a 10 s decay on the LocalCluster's
    workers (docs/scale_out.md); the hook applies the config before it starts the cluster."""
    for name in _ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = yaml.safe_load((PROJECT_ROOT / "conf/dask/dask.yml").read_text())["dask"]
    config["local"]["n_workers"] = 1
    hooks = DaskClientHooks()
    hooks.after_context_created(_Context(config))
    hooks.before_pipeline_run({"env": "dask"}, _tagged_pipeline("drift"))
    try:
        (seen,) = hooks._client.run(_allocator_environment).values()
        assert seen == {
            "MALLOC_MMAP_THRESHOLD_": "67108864",
            "MALLOC_TRIM_THRESHOLD_": "268435456",
            "ARROW_DEFAULT_MEMORY_POOL": "jemalloc",
            "JE_ARROW_MALLOC_CONF": "dirty_decay_ms:10000,muzzy_decay_ms:10000",
        }
        pools = hooks._client.run(_arrow_memory_pool)
        assert list(pools.values()) == ["jemalloc"]
        # the housekeeping settings reach the worker processes too
        (housekeeping,) = hooks._client.run(_housekeeping_config).values()
        assert housekeeping == (False, "200ms", "2s")
    finally:
        hooks.after_pipeline_run()
    # the nanny sets its pre-spawn variables in this process too; do not leak them
    for name in _ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _allocator_environment() -> dict[str, str | None]:
    return {name: os.getenv(name) for name in _ALLOCATOR_VARIABLES}


def _housekeeping_config() -> tuple[Any, ...]:
    return tuple(
        dask.config.get(key)
        for key in (
            "distributed.worker.profile.enabled",
            "distributed.admin.tick.interval",
            "distributed.admin.system-monitor.interval",
        )
    )


def _arrow_memory_pool() -> str:
    import pyarrow as pa

    return pa.default_memory_pool().backend_name


def test_the_hook_refuses_pandas_only_pipelines_before_starting_a_cluster():
    hooks = DaskClientHooks()
    hooks.after_context_created(_Context({"local": {"n_workers": 1}}))
    with pytest.raises(DaskConfigError, match=r"`kedro run --pipelines training`"):
        hooks.before_pipeline_run({"env": "dask"}, _tagged_pipeline("training"))
    assert hooks._client is None


# --- partitioned modules against their pandas counterparts --------------------------------------


def _bad_tables(events: pd.DataFrame) -> dict[str, pd.DataFrame]:
    one = events.copy()
    one.loc[10, "monthly_charges"] = -50.0
    spread = events.copy()  # problems in every partition, ids duplicated across partitions
    spread.loc[[10, 1500, 2900], "monthly_charges"] = -50.0
    spread.loc[[5, 2000], "age"] = 200
    spread.loc[2700, "contract_type"] = "weird"
    spread.loc[3, "customer_id"] = spread.loc[2500, "customer_id"]
    spread.loc[[8, 1200], "tenure_months"] = np.nan
    uncoercible = events.copy()
    uncoercible["satisfaction_score"] = uncoercible["satisfaction_score"].astype(object)
    uncoercible.loc[2099, "satisfaction_score"] = "x"
    uncoercible.loc[20, "satisfaction_score"] = 9.0
    missing = events.drop(columns=["age"])
    missing.loc[[1, 2, 1600], "monthly_charges"] = -1.0
    return {"one": one, "spread": spread, "uncoercible": uncoercible, "missing": missing}


@pytest.mark.parametrize("case", ["one", "spread", "uncoercible", "missing"])
def test_partitioned_validation_raises_the_pandas_message(case):
    events, _ = sim.simulate_history(3000, 3, "2024-01-01", 365, 30)
    bad = _bad_tables(events)[case]
    with pytest.raises(DataValidationError) as expected:
        validate_frame(bad, _schema(), "raw_events")
    with pytest.raises(DataValidationError) as got:
        validate_partitions(_partitioned(bad), _schema(), "raw_events")
    assert str(got.value) == str(expected.value)


def test_partitioned_validation_coerces_as_pandas_does():
    events, _ = sim.simulate_history(900, 3, "2024-01-01", 365, 30)
    validated = validate_partitions(_partitioned(events), _schema(), "raw_events")
    assert validated.lengths.tolist() == [300, 300, 300]
    expected = validate_frame(events, _schema(), "raw_events")
    pd.testing.assert_frame_equal(validated.frame.compute().reset_index(drop=True), expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("chunking", "features_baseline_rows", "canary"),
    [
        ({"by": "period", "period": "W", "min_rows": 200}, None, False),
        ({"by": "size", "size": 700, "min_rows": 400}, None, False),
        # a features baseline of its own (drift.baseline.features): 30,000 history rows
        ({"by": "period", "period": "W", "min_rows": 200}, 30_000, False),
        # a canary answered a fifth of the records the challenger scored: both paths keep the
        # variants apart in agreement and performance (size chunks: the global order too)
        ({"by": "size", "size": 700, "min_rows": 400}, None, True),
    ],
)
def test_partitioned_drift_equals_the_single_process_run(chunking, features_baseline_rows, canary):
    scenario = support.scenario("covariate_shift", n_production=4000, labels_as_of="2025-03-01")
    analysis = scenario.analysis.sort_values("event_time", kind="stable").reset_index(drop=True)
    analysis["record_index"] = np.arange(len(analysis))
    if canary:
        scored = analysis["challenger_status"].eq("ok").to_numpy()
        chosen = scored & (np.random.default_rng(5).random(len(analysis)) < 0.2)
        analysis["model_variant"] = np.where(chosen, "challenger", "champion")
    features_baseline = (
        None if features_baseline_rows is None else support.history().iloc[-features_baseline_rows:]
    )
    fitted = fit_reference(
        scenario.reference,
        support.schema(),
        support.THRESHOLD,
        {"chunking": chunking},
        feature_reference=features_baseline,
    )
    expected = compute_drift(analysis, fitted)
    shuffled = analysis.sample(frac=1.0, random_state=1)  # partitions in no particular order
    got = compute_drift_partitioned(
        _partitioned(shuffled, 4), fitted, tie_breakers=["record_index"]
    )
    pd.testing.assert_frame_equal(got.chunks, expected.chunks)
    pd.testing.assert_frame_equal(got.psi, expected.psi)  # integer counts: exact
    pd.testing.assert_frame_equal(got.data_quality, expected.data_quality)
    pd.testing.assert_frame_equal(got.agreement, expected.agreement, rtol=1e-12)
    for table in ("univariate", "multivariate", "estimated_performance", "realised_performance"):
        pd.testing.assert_frame_equal(
            getattr(got.nannyml, table), getattr(expected.nannyml, table), rtol=1e-12
        )
    assert got.decision == expected.decision
    assert got.analysis == expected.analysis
    judged = set(expected.nannyml.realised_performance["model"])
    assert ("canary" in judged) == canary
    assert (expected.agreement["n_canary"].sum() > 0) == canary


# --- end to end: kedro run in both environments ------------------------------------------------


def _diff(a: Any, b: Any, path: str = "", tolerance: float = 1e-9) -> list[str]:
    """Differences between two JSON documents; floats equal within ``tolerance``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: missing on one side" for k in set(a) ^ set(b)]
        for key in set(a) & set(b):
            if key not in ("generated_at", "timings_seconds"):
                out += _diff(a[key], b[key], f"{path}/{key}", tolerance)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{path}[{i}]", tolerance)]  # fmt: skip
    if isinstance(a, float) and isinstance(b, float):
        same = math.isclose(a, b, rel_tol=0, abs_tol=tolerance) or (math.isnan(a) and math.isnan(b))
        return [] if same else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def _outputs(project: Path, env: str | None) -> dict[str, Any]:
    return {
        name: load_dataset(project, name, env=env)
        for name in (
            "reporting_split_summary",
            "model_input_reference",
            "reporting_drift_summary",
            "reporting_retraining_decision",
        )
    } | {"log": read_prediction_log(project / "data/07_model_output/prediction_log")}


@contextlib.contextmanager
def _inside(project: Path, mp: pytest.MonkeyPatch) -> Iterator[None]:
    """Kedro sessions in this process and ``kedro run`` subprocesses use the copy's MLflow.

    An in-process session sets MLflow's tracking URI, and MLflow exports it as
    MLFLOW_TRACKING_URI to every later subprocess: pin it to the copy, and reset it after.
    """
    mp.chdir(project)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/data/06_models/mlflow.db")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory) -> Iterator[dict[str, Any]]:
    project = copy_project(tmp_path_factory.mktemp("dask") / "project")
    with pytest.MonkeyPatch.context() as mp, _inside(project, mp):
        run_kedro_cli(project, "--pipelines", "simulation", params=PARAMS)
        for name in ("events", "production"):
            split_into_files(project / f"data/01_raw/{name}.parquet")
        # training and evaluation read the pandas path's split
        run_kedro_cli(
            project, "--pipelines", f"training,evaluation,{DATA_PIPELINES}", params=PARAMS
        )
        default = _outputs(project, None)
        log = project / "data/07_model_output/prediction_log"
        shutil.move(log, project.parent / "pandas_log")
        result = run_kedro_cli(
            project,
            "--env",
            "dask",
            "--pipelines",
            DATA_PIPELINES,
            params=PARAMS,
            env_vars={"COLUMNS": "400"},  # one log record per line
        )
        yield {"pandas": default, "dask": _outputs(project, "dask"), "output": result}


@pytest.mark.slow
def test_the_dask_run_used_a_two_worker_local_cluster_and_partitions(both_paths):
    output = both_paths["output"].stdout + both_paths["output"].stderr
    assert "Dask: running on a LocalCluster of 2 worker(s)" in output
    assert "raw_events: 3000 rows in 3 partitions passed validation" in output
    assert "Dask: client closed" in output


@pytest.mark.slow
def test_both_paths_split_the_same_windows(both_paths):
    pandas_path, dask_path = both_paths["pandas"], both_paths["dask"]
    assert dask_path["reporting_split_summary"] == pandas_path["reporting_split_summary"]
    pd.testing.assert_frame_equal(
        dask_path["model_input_reference"], pandas_path["model_input_reference"]
    )


@pytest.mark.slow
def test_both_paths_log_identical_predictions_per_id(both_paths):
    logs = {}
    for path in ("pandas", "dask"):
        log = both_paths[path]["log"]
        assert log["customer_id"].is_unique and len(log) == PARAMS["simulation"]["n_production"]
        assert log["request_id"].nunique() == 1, "one batch, one request id"
        assert sorted(log["record_index"]) == list(range(len(log)))
        logs[path] = log.drop(columns=list(VOLATILE_LOG_COLUMNS)).sort_values("customer_id")
    assert (logs["dask"]["challenger_status"] == "ok").all()
    pd.testing.assert_frame_equal(
        logs["dask"][PREDICTION_COLUMNS].reset_index(drop=True),
        logs["pandas"][PREDICTION_COLUMNS].reset_index(drop=True),
        check_exact=True,
    )
    # and every other logged column (features, event times, record positions)
    pd.testing.assert_frame_equal(
        logs["dask"].reset_index(drop=True), logs["pandas"].reset_index(drop=True)
    )


@pytest.mark.slow
def test_both_paths_compute_the_same_drift_and_decision(both_paths):
    pandas_path, dask_path = both_paths["pandas"], both_paths["dask"]
    psi = {
        path: {
            (feature, row["chunk"]): row["value"]
            for feature, entry in both_paths[path]["reporting_drift_summary"][
                "feature_drift"
            ].items()
            for row in entry["methods"].get("psi", [])
        }
        for path in ("pandas", "dask")
    }
    assert psi["dask"].keys() == psi["pandas"].keys() and len(psi["pandas"]) > 100
    for key, value in psi["pandas"].items():
        assert psi["dask"][key] == pytest.approx(value, abs=1e-9), key
    # everything else in the summary too: chunks, NannyML, data quality, agreement
    assert _diff(dask_path["reporting_drift_summary"], pandas_path["reporting_drift_summary"]) == []
    decision = dask_path["reporting_retraining_decision"]
    assert decision == pandas_path["reporting_retraining_decision"]
    assert decision["decision"] == "retrain"


@pytest.mark.slow
def test_both_paths_stop_bad_data_with_the_same_message(tmp_path):
    project = copy_project(tmp_path / "project")
    events, _ = sim.simulate_history(3000, 3, "2024-01-01", 365, 30)
    bad = _bad_tables(events)["spread"]
    raw = project / "data/01_raw/events.parquet"
    bad.to_parquet(raw, index=False)
    split_into_files(raw)
    messages = {}
    with pytest.MonkeyPatch.context() as mp, _inside(project, mp):
        for env in (None, "dask"):
            with pytest.raises(DataValidationError) as info:
                run_pipeline(project, "data_engineering", env=env)
            messages[env] = str(info.value)
        with pytest.raises(ValueError, match="No clients found"):
            distributed.default_client()  # the hook closed the run's client on the error
    assert messages["dask"] == messages[None]
    assert (
        "column 'monthly_charges' failed rule 'greater_than_or_equal_to(0)' in 3 rows"
        in (messages["dask"])
    )
    assert not (project / "data/02_intermediate/events_partitioned").exists(), (
        "nothing written on failure"
    )
