"""The canary in-process: routing by id, answers and log by variant, fallbacks, the watcher.

End to end (a real ``bentoml serve`` with a slow and a failing challenger, two workers):
``tests/test_serving_canary_e2e.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from shadowdrift.prediction_log import COLUMNS_MIN_RECORDS, PredictionLogWriter, read_prediction_log
from shadowdrift.serving.bundle import bundle_from_models
from shadowdrift.serving.canary import Canary, share
from shadowdrift.serving.canary_watch import (
    CanaryFigures,
    CanaryWatcher,
    CanaryWindow,
    breaches,
    read_rollback,
)
from shadowdrift.serving.config import (
    CanaryRollbackSettings,
    CanarySettings,
    DurabilitySettings,
    ServingConfigError,
    parse_serving_settings,
)
from shadowdrift.serving.core import ServingCore
from shadowdrift.serving.feedback import GroundTruthWriter
from shadowdrift.serving.metrics import ServingMetrics
from tests.conftest import base_parameters
from tests.test_serving_core import Broken, _log_schema, frame_records, metric, settings_for
from tests.test_serving_fast_path import awkward_records, project_schema, tiny_models

# tiny models are trained once per session (a few seconds)
pytestmark = pytest.mark.slow


class SlowChallenger(Broken):
    """Answers like a real model, ``seconds`` late."""

    name = "slow"

    def __init__(self, model: Any, seconds: float) -> None:
        self.model, self.seconds = model, seconds

    def predict_probability(self, frame: Any) -> np.ndarray:
        time.sleep(self.seconds)
        return self.model.predict_probability(frame)


def canary_settings(tmp_path: Path, fraction: float = 0.5, **rollback: Any) -> CanarySettings:
    return CanarySettings(
        fraction=fraction,
        timeout_s=rollback.pop("timeout_s", 1.0),
        state_file=tmp_path / "canary_rollback.json",
        rollback=dataclasses.replace(CanaryRollbackSettings(), **rollback),
    )


class CanaryHarness:
    """A ServingCore with a canary, tiny models, logs flushed when closed, no watcher thread."""

    def __init__(
        self, tmp_path: Path, challenger: Any = "mlp", durability: str = "buffered", **canary: Any
    ) -> None:
        settings = settings_for(tmp_path)
        self.settings = dataclasses.replace(
            settings,
            canary=canary_settings(tmp_path, **canary),
            log_durability=DurabilitySettings(mode=durability),
        )
        self.registry = CollectorRegistry()
        self.core = ServingCore(
            self.settings,
            metrics=ServingMetrics(self.registry),
            log_writer=PredictionLogWriter(
                self.settings.prediction_log.path, _log_schema(), flush_interval_s=None
            ),
            ground_truth_writer=GroundTruthWriter(
                self.settings.ground_truth.path, flush_interval_s=None
            ),
            canary_watcher=False,
        )
        models = tiny_models()
        self.champion = models["gbm"]
        self.challenger = models["mlp"] if challenger == "mlp" else challenger
        self.core.install(
            bundle_from_models(self.champion, self.challenger, project_schema(), self.settings)
        )

    def close(self) -> pd.DataFrame:
        self.core.close(grace_s=5.0)
        return read_prediction_log(self.settings.prediction_log.path)


@pytest.fixture
def harness(tmp_path):
    made: list[CanaryHarness] = []

    def make(**kwargs: Any) -> CanaryHarness:
        made.append(CanaryHarness(tmp_path / f"h{len(made)}", **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.core.close(grace_s=1.0)


def customers(n: int, start: int = 0) -> list[dict[str, Any]]:
    records = frame_records(awkward_records(n))
    for i, one in enumerate(records):
        one["customer_id"] = f"cust-{start + i}"
    return records


# -- routing -------------------------------------------------------------------------------


def test_the_share_of_an_id_is_fixed_and_spread_evenly():
    # the same number on every machine and in every process (BLAKE2b, not Python's hash)
    assert share("cust-1") == pytest.approx(0.3457, abs=1e-4)
    shares = np.array([share(f"cust-{i}") for i in range(20_000)])
    assert ((shares >= 0) & (shares < 1)).all()
    for fraction in (0.05, 0.2, 0.5):
        assert (shares < fraction).mean() == pytest.approx(fraction, abs=0.01)


def loaded(canary: Canary) -> Canary:
    """``canary`` with a challenger loaded (a stand-in: routing needs only its name)."""
    canary.challenger_loaded(SimpleNamespace(version="2", provenance={"bento_tag": "c:v2"}))
    return canary


def test_a_customer_always_gets_the_same_model_and_a_larger_canary_keeps_its_customers(tmp_path):
    ids = [f"cust-{i}" for i in range(2000)] + [None] * 10
    small = loaded(Canary(canary_settings(tmp_path, fraction=0.1), start_watcher=False))
    large = loaded(Canary(canary_settings(tmp_path, fraction=0.3), start_watcher=False))
    first = small.route(ids, "request-a", len(ids))
    again = small.route(list(reversed(ids)), "request-b", len(ids))
    assert first is not None and again is not None
    # the same customers, whatever the request and the order; the id-less ones by request
    by_id = dict(zip(ids[:2000], first[:2000], strict=True))
    assert [by_id[c] for c in reversed(ids[:2000])] == again[10:].tolist()
    assert first[:2000].mean() == pytest.approx(0.1, abs=0.02)
    assert len(set(first[2000:].tolist())) == 1
    wider = large.route(ids, "request-a", len(ids))
    assert wider is not None
    assert (wider[:2000] | ~first[:2000]).all(), "every customer of the 10% canary stays in it"
    assert wider[:2000].mean() == pytest.approx(0.3, abs=0.03)


# -- answers and the log -------------------------------------------------------------------


def test_canary_records_are_answered_and_logged_as_the_challengers(harness):
    h = harness(fraction=0.5)
    records = customers(40)
    frame = pd.DataFrame(records)
    reply = h.core.predict([dict(r) for r in records], "mixed")
    assert reply.status == 200
    predictions = reply.json()["predictions"]
    canary = np.array([share(f"cust-{i}") < 0.5 for i in range(40)])
    assert 5 < canary.sum() < 35
    variants = np.array([p["model_variant"] for p in predictions])
    assert (variants == np.where(canary, "challenger", "champion")).all()
    versions = {p["model_variant"]: p["model_version"] for p in predictions}
    assert versions == {"champion": "1", "challenger": "2"}
    got = np.array([p["probability"] for p in predictions])
    np.testing.assert_allclose(
        got[canary], h.challenger.predict_probability(frame[canary]), rtol=1e-6
    )
    np.testing.assert_array_equal(
        got[~canary], h.champion.predict_probability(frame[~canary].reset_index(drop=True))
    )

    log = h.close().sort_values("record_index", ignore_index=True)
    assert (log["model_variant"].to_numpy() == variants).all()
    # canary rows: the challenger's answer, and what the champion would have said
    canary_rows = log[canary]
    np.testing.assert_allclose(canary_rows["challenger_probability"], got[canary])
    assert (canary_rows["challenger_status"] == "ok").all()
    np.testing.assert_array_equal(
        canary_rows["champion_probability"],
        h.champion.predict_probability(frame[canary].reset_index(drop=True)),
    )
    # the champion's rows still have the challenger in shadow
    assert (log.loc[~canary, "challenger_status"] == "ok").all()
    assert metric(h.registry, "shadowdrift_answered_records_total", model_variant="challenger") == (
        canary.sum()
    )
    assert metric(h.registry, "shadowdrift_answered_records_total", model_variant="champion") == (
        (~canary).sum()
    )
    assert metric(h.registry, "shadowdrift_canary_records_total", outcome="ok") == canary.sum()
    agreement = sum(
        metric(h.registry, "shadowdrift_canary_agreement_total", agree=a) for a in ("true", "false")
    )
    assert agreement == canary.sum()
    assert metric(h.registry, "shadowdrift_request_latency_seconds_count", route="canary") == 1


def test_a_batch_logged_as_columns_is_split_by_variant_like_single_records(harness):
    h = harness(fraction=0.3)
    records = customers(max(COLUMNS_MIN_RECORDS, 80))
    batch = h.core.predict([dict(r) for r in records], "batch").json()["predictions"]
    for i, one in enumerate(records):
        h.core.predict([dict(one)], f"one-{i:03d}")
    log = h.close()
    as_batch = log[log["request_id"] == "batch"].sort_values("record_index", ignore_index=True)
    singly = log[log["request_id"] != "batch"].sort_values("request_id", ignore_index=True)
    assert as_batch["model_variant"].tolist() == [p["model_variant"] for p in batch]
    assert as_batch["model_variant"].tolist() == singly["model_variant"].tolist()
    assert as_batch["customer_id"].tolist() == singly["customer_id"].tolist()
    assert as_batch["record_index"].tolist() == list(range(len(records)))
    assert (as_batch["challenger_status"] == "ok").all()


def test_acknowledged_canary_answers_wait_for_the_disk_and_log_what_buffered_logs(harness):
    """Both parts of a request (canary and champion records) are written ahead."""
    logs = []
    for durability in ("buffered", "acknowledged"):
        h = harness(fraction=0.5, durability=durability)
        records = customers(max(COLUMNS_MIN_RECORDS, 80))
        replies = [h.core.predict([dict(r) for r in records], "batch")]
        replies += [h.core.predict([dict(one)], f"one-{i:03d}") for i, one in enumerate(records)]
        assert [reply.status for reply in replies] == [200] * len(replies)
        for reply in replies:
            if durability == "acknowledged":
                assert reply.durable is not None and reply.durable.result(timeout=10) is None
            else:
                assert reply.durable is None
        logs.append(h.close())
    timing = ["logged_at", "event_time", "champion_latency_ms", "challenger_latency_ms"]
    buffered, acknowledged = (
        log.drop(columns=timing).sort_values(["request_id", "record_index"], ignore_index=True)
        for log in logs
    )
    assert set(buffered["model_variant"]) == {"champion", "challenger"}
    pd.testing.assert_frame_equal(acknowledged, buffered)


def test_without_a_canary_every_answer_is_the_champions(harness):
    h = harness(fraction=0.0)
    predictions = h.core.predict(customers(30)).json()["predictions"]
    assert {p["model_variant"] for p in predictions} == {"champion"}
    assert (h.close()["model_variant"] == "champion").all()
    assert h.core.canary.watcher is None


def test_a_failing_challenger_leaves_the_champions_answer_and_counts_errors(harness):
    h = harness(challenger=Broken(), fraction=1.0)
    champion_only = harness(challenger=None, fraction=0.0)
    for i in range(3):
        records = customers(5, start=10 * i)
        reply = h.core.predict([dict(r) for r in records], f"r{i}")
        baseline = champion_only.core.predict([dict(r) for r in records], f"r{i}")
        assert reply.status == 200
        assert reply.json() == baseline.json()
    log = h.close()
    assert (log["model_variant"] == "champion").all()
    assert (log["challenger_status"] == "failed").all()
    assert metric(h.registry, "shadowdrift_canary_records_total", outcome="failed") == 15
    assert h.core.canary.window.figures().error_rate == 1.0


def test_a_challenger_slower_than_the_timeout_is_answered_by_the_champion_in_time(harness):
    models = tiny_models()
    h = harness(challenger=SlowChallenger(models["mlp"], 0.5), fraction=1.0, timeout_s=0.1)
    started = time.perf_counter()
    reply = h.core.predict(customers(3))
    waited = time.perf_counter() - started
    assert reply.status == 200 and waited < 0.4
    assert {p["model_variant"] for p in reply.json()["predictions"]} == {"champion"}
    assert metric(h.registry, "shadowdrift_canary_records_total", outcome="timeout") == 3


def test_the_async_call_waits_off_the_event_loop_within_the_timeout(harness):
    models = tiny_models()
    h = harness(challenger=SlowChallenger(models["mlp"], 0.3), fraction=1.0, timeout_s=1.0)

    async def two_requests() -> tuple[Any, float]:
        scored = h.core.score(customers(2))
        assert scored.canary is not None
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        answer = await h.core.canary.call_async(scored.canary)
        task.cancel()
        return h.core.answer(scored, answer), ticks

    reply, ticks = asyncio.run(two_requests())
    assert ticks >= 10, "the event loop kept running while the challenger scored"
    assert {p["model_variant"] for p in reply.json()["predictions"]} == {"challenger"}


def test_an_open_circuit_breaker_skips_the_canary_call(harness):
    h = harness(fraction=1.0)
    for _ in range(h.core.breaker.failures):
        h.core.breaker.failure("test")
    reply = h.core.predict(customers(4))
    assert {p["model_variant"] for p in reply.json()["predictions"]} == {"champion"}
    assert metric(h.registry, "shadowdrift_canary_records_total", outcome="skipped") == 4
    assert (h.close()["challenger_status"] == "skipped").all()


# -- the watcher ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_figures_and_breaches_over_the_window():
    clock = Clock()
    window = CanaryWindow(10.0, clock)
    slo = CanaryRollbackSettings(min_records=10, max_p95_latency_s=0.2, max_error_rate=0.01)
    for i in range(20):
        window.add(0.05 if i < 18 else 0.5, 1, 0, 1, 0)
    figures = window.figures()
    assert figures.records == 20 and figures.p95_latency_s == 0.5
    assert [b.reason for b in breaches(figures, slo)] == ["latency"]
    clock.now += 11  # the window moves on: nothing left to judge
    assert window.figures() == CanaryFigures(10.0, 0, 0, None, None, 0, None)
    window.add(0.01, 5, 1, 5, 3)
    assert breaches(window.figures(), slo) == [], "5 records are fewer than min_records"
    window.add(0.01, 5, 0, 5, 4)
    assert [b.reason for b in breaches(window.figures(), slo)] == ["errors", "disagreement"]


def test_a_breach_sustained_for_the_window_rolls_back_every_worker(tmp_path):
    settings = canary_settings(tmp_path, fraction=0.5, window_s=30, for_s=5, min_records=5)
    registry = CollectorRegistry()
    clock = Clock()
    workers = [
        Canary(settings, metrics=ServingMetrics(r), start_watcher=False, clock=clock)
        for r in (registry, CollectorRegistry())
    ]
    challenger = bundle_from_models(
        tiny_models()["gbm"], tiny_models()["mlp"], project_schema(), settings_for(tmp_path)
    ).challenger
    for canary in workers:
        canary.challenger_loaded(challenger)
    first, second = workers
    watcher = CanaryWatcher(first, settings.rollback, clock=clock)
    for _ in range(10):
        first.window.add(0.4, 1, 0, 1, 0)
    assert [b.reason for b in watcher.check()] == ["latency"]
    clock.now += 4
    watcher.check()
    assert first.fraction == 0.5, "not yet sustained for for_s"
    clock.now += 1.5
    watcher.check()
    assert first.fraction == 0.0 and first.rollback is not None
    assert first.rollback.reason == "latency" and "p95 latency 400 ms > 200 ms" in (
        first.rollback.message
    )
    assert metric(registry, "shadowdrift_canary_rollbacks_total", reason="latency") == 1
    assert metric(registry, "shadowdrift_canary_fraction") == 0
    assert metric(registry, "shadowdrift_canary_rolled_back") == 1
    written = read_rollback(settings.state_file)
    assert written is not None and written.challenger == first.rollback.challenger
    assert json.loads(settings.state_file.read_text())["reason"] == "latency"

    # the other worker follows the file at its next check
    assert second.fraction == 0.5
    CanaryWatcher(second, settings.rollback, clock=clock).check()
    assert second.fraction == 0.0 and second.rollback is not None
    assert second.route(["cust-1"], "r", 1) is None

    # a restart with the same challenger keeps the canary at 0 ...
    restarted = Canary(settings, start_watcher=False)
    restarted.challenger_loaded(challenger)
    assert restarted.fraction == 0.0
    # ... another challenger starts a new canary ...
    other = dataclasses.replace(challenger, version="3", provenance={"bento_tag": "new:v3"})
    restarted.challenger_loaded(other)
    assert restarted.fraction == 0.5
    # ... and deleting the file resumes this one everywhere
    settings.state_file.unlink()
    second.follow_state_file()
    assert second.fraction == 0.5 and second.rollback is None


def test_a_breach_that_ends_before_for_s_does_not_roll_back(tmp_path):
    clock = Clock()
    settings = canary_settings(tmp_path, fraction=0.5, window_s=5, for_s=5, min_records=5)
    canary = loaded(Canary(settings, start_watcher=False, clock=clock))
    watcher = CanaryWatcher(canary, settings.rollback, clock=clock)
    for _ in range(5):
        canary.window.add(0.5, 1, 0, 1, 0)
    watcher.check()
    clock.now += 6  # the slow requests left the window; new ones are fast
    for _ in range(5):
        canary.window.add(0.01, 1, 0, 1, 0)
    assert watcher.check() == []
    clock.now += 6
    watcher.check()
    assert canary.fraction == 0.5 and not settings.state_file.exists()


def test_the_watcher_thread_rolls_back_within_the_window(tmp_path):
    models = tiny_models()
    h = CanaryHarness(
        tmp_path,
        challenger=SlowChallenger(models["mlp"], 0.25),
        fraction=1.0,
        window_s=10,
        for_s=0.5,
        check_interval_s=0.1,
        min_records=3,
    )
    h.core.canary.watcher = CanaryWatcher(h.core.canary, h.settings.canary.rollback)
    h.core.canary.watcher.start()
    try:
        variants = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = h.core.predict(customers(1, start=len(variants)))
            assert reply.status == 200
            variants.append(reply.json()["predictions"][0]["model_variant"])
            if h.core.canary.fraction == 0:
                break
        assert h.core.canary.fraction == 0, "no rollback"
        assert h.core.predict(customers(1)).json()["predictions"][0]["model_variant"] == "champion"
        info = h.core.model_info()["canary"]
        assert info["rolled_back"]["reason"] == "latency" and info["fraction"] == 0
        assert info["configured_fraction"] == 1.0
    finally:
        h.close()
    assert variants.count("challenger") >= 3


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serving", "needle"),
    [
        ({"canary": {"fraction": 1.5}}, "serving.canary.fraction must be a number in [0, 1]"),
        ({"canary": {"fracton": 0.1}}, "serving.canary has unknown key(s) ['fracton']"),
        ({"canary": {"timeout_s": 0}}, "serving.canary.timeout_s must be a positive number"),
        (
            {"canary": {"rollback": {"max_error_rate": 2}}},
            "serving.canary.rollback.max_error_rate must be a number in [0, 1]",
        ),
        ({"canary": {"rollback": {"for": 3}}}, "serving.canary.rollback has unknown key(s)"),
        (
            {"canary": {"fraction": 0.1}, "models": {"challenger": False}},
            "serving.models.challenger is false",
        ),
        (
            {"canary": {"fraction": 0.1}, "shadow": {"mode": "service"}},
            "serving.shadow.mode is service",
        ),
    ],
)
def test_canary_configuration_errors_name_the_key(tmp_path, serving, needle):
    params = base_parameters()
    params["serving"] = {
        **params["serving"],
        **{k: {**params["serving"].get(k, {}), **v} for k, v in serving.items()},
    }
    with pytest.raises(ServingConfigError, match=re.escape(needle)):
        parse_serving_settings(params, tmp_path)
