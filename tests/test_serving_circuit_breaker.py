"""The challenger's circuit breaker: unit behaviour, and in the shadow runner with real challengers."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from shadowdrift.serving.circuit_breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from shadowdrift.serving.shadow import FAILED, OK, SKIPPED, ShadowJob, ShadowRunner


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_circuit_breaker_opens_after_n_consecutive_failures_then_probes_half_open(caplog):
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(3, 10.0, clock=clock, on_change=lambda a, b: changes.append((a, b)))
    caplog.set_level(logging.INFO, "shadowdrift.serving.circuit_breaker")
    breaker.failure("boom")
    breaker.success()  # a success in between resets the count
    for _ in range(2):
        assert breaker.allow()
        breaker.failure("boom")
    assert breaker.state == CLOSED
    breaker.failure("boom")
    assert breaker.state == OPEN and not breaker.allow()
    assert breaker.snapshot()["cool_down_left_s"] == pytest.approx(10.0)
    clock.now += 10.0
    assert breaker.state == HALF_OPEN
    assert breaker.allow(), "one probe"
    assert not breaker.allow(), "only one probe at a time"
    breaker.failure("still broken")
    assert breaker.state == OPEN, "a failed probe opens it again"
    clock.now += 10.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == CLOSED and breaker.allow()
    assert changes == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    snapshot = breaker.snapshot()
    assert snapshot["transitions"] == {OPEN: 2, HALF_OPEN: 2, CLOSED: 1}
    assert snapshot["last_error"] == "still broken"
    assert "Circuit breaker for the challenger opened" in caplog.text


class Switchable:
    """A challenger scorer that fails until told otherwise, counting its calls."""

    threshold = 0.5

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    def predict_probability(self, numeric, categorical):
        self.calls += 1
        if self.broken:
            raise RuntimeError("challenger down")
        return np.full(numeric.shape[0], 0.25)

    def labels(self, probability):
        return (probability >= self.threshold).astype(np.int64)


def _job(scorer, index: int) -> ShadowJob:
    return ShadowJob(f"r{index}", scorer, "2", np.zeros((1, 2)), [["a"]])


def test_circuit_breaker_in_the_shadow_runner_skips_then_recovers():
    finished: list[str] = []
    scorer = Switchable()
    breaker = CircuitBreaker(2, 0.3)
    runner = ShadowRunner(
        lambda batch: finished.extend(result.status for _, result in batch),
        batch_wait_s=0.0,
        breaker=breaker,
    )

    def offer_and_wait(index: int) -> None:
        runner.offer(_job(scorer, index))
        deadline = time.monotonic() + 5
        while len(finished) <= index and time.monotonic() < deadline:
            time.sleep(0.005)

    try:
        for index in range(6):
            offer_and_wait(index)
        assert finished == [FAILED, FAILED, SKIPPED, SKIPPED, SKIPPED, SKIPPED]
        assert scorer.calls == 2, "not called while open"
        assert runner.counts[SKIPPED] == 4
        scorer.broken = False
        time.sleep(0.35)  # the cool-down
        offer_and_wait(6)
        offer_and_wait(7)
        assert finished[6:] == [OK, OK] and breaker.state == CLOSED
    finally:
        runner.stop(1.0)


def test_circuit_breaker_counts_slow_calls_of_an_in_process_challenger_as_failures():
    class Slow(Switchable):
        def predict_probability(self, numeric, categorical):
            time.sleep(0.05)
            return np.full(numeric.shape[0], 0.25)

    finished: list[str] = []
    breaker = CircuitBreaker(2, 60.0)
    runner = ShadowRunner(
        lambda batch: finished.extend(result.status for _, result in batch),
        batch_wait_s=0.0,
        breaker=breaker,
        call_timeout_s=0.01,
    )
    try:
        scorer = Slow()
        for index in range(3):
            runner.offer(_job(scorer, index))
            time.sleep(0.2)
        assert finished == [OK, OK, SKIPPED], "slow answers are kept, then the breaker opens"
        assert "took" in breaker.snapshot()["last_error"]
    finally:
        runner.stop(1.0)


def test_circuit_breaker_in_the_remote_shadow_skips_a_failing_service():
    import asyncio

    from shadowdrift.serving.remote_shadow import RemoteShadow

    class Failing:
        calls = 0

        async def score(self, **kwargs):
            Failing.calls += 1
            raise ConnectionError("challenger service down")

    finished: list[str] = []

    async def scenario() -> None:
        shadow = RemoteShadow(
            lambda batch: finished.extend(result.status for _, result in batch),
            Failing(),
            breaker=CircuitBreaker(2, 60.0),
        )
        for index in range(5):
            shadow.offer(_job(None, index))
            await asyncio.sleep(0.01)
        await shadow.drain(1.0)

    asyncio.run(scenario())
    assert finished == [FAILED, FAILED, SKIPPED, SKIPPED, SKIPPED]
    assert Failing.calls == 2
