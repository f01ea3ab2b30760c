"""The challenger in a separate BentoML service (``serving.shadow.mode: service``).

The alternative to ``shadow.ShadowRunner`` that docs/serving.md measures: the champion's worker
sends each request's records to ``ChallengerService`` (``bentoml.depends``, its own process)
from a background task on the event loop and never awaits it on the answer's path. No GIL is
shared with the challenger, but every request pays for serialising the records and for an
HTTP round trip over a Unix socket, in the worker's event loop.

Same guarantees as the thread runner (the circuit breaker too): bounded (at most ``max_in_flight`` calls and
``queue_records`` records outstanding; beyond that a job is shed at once), errors and timeouts
end as ``failed``, every job reaches ``finish`` exactly once, also at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import numpy as np

from shadowdrift.serving.circuit_breaker import CircuitBreaker
from shadowdrift.serving.shadow import (
    FAILED,
    OK,
    QUEUED,
    SAMPLED_OUT,
    SHED,
    SKIPPED,
    FinishCallback,
    ShadowJob,
    ShadowResult,
)

logger = logging.getLogger(__name__)


class RemoteShadow:
    """Sends jobs to a remote challenger with bounded concurrency; call ``offer`` on the loop."""

    remote = True

    def __init__(
        self,
        finish: FinishCallback,
        client: Any,
        *,
        queue_records: int = 10_000,
        max_in_flight: int = 64,
        timeout_s: float = 10.0,
        sample_rate: float = 1.0,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._finish = finish
        self._client = client
        self.breaker = breaker
        self.queue_records = queue_records
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.sample_rate = sample_rate
        self._random = (rng or random.Random()).random
        self._tasks: set[asyncio.Task[None]] = set()
        self._records = 0
        self._accepting = True
        self.counts = {OK: 0, SHED: 0, FAILED: 0, SAMPLED_OUT: 0, SKIPPED: 0}
        self.last_model_version: str | None = None
        self._errors_logged = 0

    @property
    def queued_records(self) -> int:
        return self._records

    def offer(self, job: ShadowJob) -> str:
        if self.sample_rate < 1.0 and self._random() >= self.sample_rate:
            self._complete(job, ShadowResult(SAMPLED_OUT))
            return SAMPLED_OUT
        if (
            not self._accepting
            or len(self._tasks) >= self.max_in_flight
            or self._records + len(job) > self.queue_records
        ):
            self._complete(job, ShadowResult(SHED, reason="too many calls in flight"))
            return SHED
        if self.breaker is not None and not self.breaker.allow():
            self._complete(job, ShadowResult(SKIPPED, reason="circuit open"))
            return SKIPPED
        self._records += len(job)
        task = asyncio.get_running_loop().create_task(self._call(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return QUEUED

    async def _call(self, job: ShadowJob) -> None:
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(
                self._client.score(numeric=job.numeric, categorical=job.categorical),
                self.timeout_s,
            )
            latency_ms = (time.perf_counter() - started) * 1000.0
            probability = np.asarray(answer["probability"], dtype=np.float64)
            labels = np.asarray(answer["label"], dtype=np.int64)
            if probability.shape != (len(job),):
                raise ValueError(f"challenger returned {probability.shape} for {len(job)} records")
            job.model_version = str(answer["model_version"])
            self.last_model_version = job.model_version
            result = ShadowResult(OK, probability, labels, latency_ms)
            if self.breaker is not None:
                self.breaker.success()
        except asyncio.CancelledError:
            result = ShadowResult(SHED, reason="shutdown")
        except Exception as exc:
            latency_ms = (time.perf_counter() - started) * 1000.0
            self._errors_logged += 1
            if self._errors_logged <= 3 or self._errors_logged % 100 == 0:
                logger.error(
                    "Challenger service call failed (%d so far): %s", self._errors_logged, exc
                )
            result = ShadowResult(FAILED, latency_ms=latency_ms, reason=str(exc))
            if self.breaker is not None:
                self.breaker.failure(f"{type(exc).__name__}: {exc}")
        finally:
            self._records -= len(job)
        self._complete(job, result)

    def _complete(self, job: ShadowJob, result: ShadowResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + len(job)
        try:
            self._finish([(job, result)])
        except Exception:
            logger.exception("Finishing shadow job %s failed", job.request_id)

    async def drain(self, grace_s: float) -> None:
        """Stop accepting; wait up to ``grace_s`` for calls in flight, cancel the rest."""
        self._accepting = False
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def stop(self, grace_s: float = 0.0) -> None:
        """Synchronous part of shutdown (``drain`` did the waiting): refuse new jobs."""
        self._accepting = False
