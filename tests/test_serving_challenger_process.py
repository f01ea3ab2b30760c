"""The challenger in a child process (serving/challenger_process.py), with tiny models."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from shadowdrift.serving.challenger_process import ChallengerProcess, ChallengerUnavailable
from shadowdrift.serving.fast_path import FastScorer
from shadowdrift.serving.fault_injection import FaultyModel, hold_gil
from tests.test_serving_fast_path import awkward_records, project_schema, tiny_models

pytestmark = pytest.mark.slow  # each child imports scikit-learn and MLflow (a few seconds)


def _arrays(n: int):
    schema = project_schema()
    frame = awkward_records(n)
    numeric = frame[schema.numeric_features].to_numpy(dtype=np.float64)
    categorical = [
        [None if isinstance(v, float) else v for v in frame[name]]
        for name in schema.categorical_features
    ]
    return numeric, categorical


def _process(model, **kwargs) -> ChallengerProcess:
    schema = project_schema()
    return ChallengerProcess(
        model, schema.numeric_features, schema.categorical_features, nice=5, **kwargs
    )


def test_the_child_scores_exactly_like_the_worker_and_restarts_after_a_timeout():
    gbm = tiny_models()["gbm"]
    schema = project_schema()
    numeric, categorical = _arrays(40)
    expected = FastScorer(
        gbm, schema.numeric_features, schema.categorical_features
    ).predict_probability(numeric, categorical)
    sleepy = FaultyModel(gbm, "sleep", seconds=0.0)
    child = _process(sleepy, call_timeout_s=1.0, scorer_options={"enabled": False})
    try:
        got = child.predict_probability(numeric, categorical)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        first_pid = child.pid
        assert first_pid is not None and os.getpriority(os.PRIO_PROCESS, first_pid) >= 5
        assert child.path == "pipeline" and child.model.kind == "fault-sleep"
        assert child.labels(got).tolist() == (got >= gbm.threshold).astype(int).tolist()
        sleepy.seconds = 5.0  # the child has its own copy: this changes nothing there
        np.testing.assert_allclose(child.predict_probability(numeric, categorical), expected)
    finally:
        child.close()
    assert child.pid is None
    with pytest.raises(ChallengerUnavailable):
        child.predict_probability(numeric, categorical)


def test_a_hung_challenger_is_stopped_at_the_timeout_and_replaced():
    gbm = tiny_models()["gbm"]
    numeric, categorical = _arrays(3)
    child = _process(FaultyModel(gbm, "sleep", seconds=3.0), call_timeout_s=0.5)
    try:
        child._connection()  # wait until loaded, so that the timeout covers the call only
        first = child.pid
        started = time.perf_counter()
        with pytest.raises(TimeoutError, match="call_timeout_s"):
            child.predict_probability(numeric, categorical)
        assert time.perf_counter() - started < 2.5
        assert child.pid is None and "took longer" in child.last_exit
        child.call_timeout_s = 10.0
        assert child.predict_probability(numeric, categorical).shape == (3,)
        assert child.pid not in (None, first) and child.starts == 2
    finally:
        child.close()


def test_a_gil_holding_challenger_in_its_process_leaves_this_process_responsive():
    """While the child burns CPU in pure Python, this process's threads run on undelayed."""
    gbm = tiny_models()["gbm"]
    numeric, categorical = _arrays(3)
    child = _process(FaultyModel(gbm, "gil", seconds=1.0), call_timeout_s=10.0)
    try:
        child._connection()
        ticks: list[float] = []
        done = threading.Event()

        def tick() -> None:
            while not done.is_set():
                started = time.perf_counter()
                hold_gil(0.002)
                ticks.append(time.perf_counter() - started)

        ticker = threading.Thread(target=tick)
        ticker.start()
        child.predict_probability(numeric, categorical)
        done.set()
        ticker.join()
        assert len(ticks) > 100
        assert float(np.median(ticks)) < 0.01, "the main process waited for the GIL"
    finally:
        child.close()
