"""The challenger in shadow: same records, never on the answer's path, sheds load when behind.

``ShadowRunner`` owns one daemon thread and a bounded queue counted in *records*. The request
handler calls ``offer`` after it has the champion's answer; ``offer`` only takes a lock and
appends, so the answer never waits for the challenger. The thread takes whatever is queued (up
to ``max_batch_records``), scores it in one call per challenger model, and hands each job to
``finish`` (which fills the challenger columns of the prediction log).

Guarantees:

* the challenger never changes an answer (it runs after it, on a copy of nothing: it only adds
  columns to the log records);
* its exceptions are caught in the thread: the job finishes as ``failed``;
* its slowness only lengthens the queue; when ``queue_records`` would be exceeded the new job
  is ``shed`` at once (bounded memory), and a job that waited longer than ``max_delay_s`` is
  shed instead of scored (the log is not held up indefinitely);
* ``sample_rate`` < 1 sends a share of requests only (``sampled_out`` otherwise);
* every offered job reaches ``finish`` exactly once, also on ``stop`` (``shed`` if the grace
  period runs out), so every record is logged;
* with a ``CircuitBreaker``: after its number of consecutive failed or timed-out calls (a call
  longer than ``call_timeout_s``) the challenger is not called for its cool-down and the jobs
  end as ``skipped``; then one call probes it.

The scorer is the challenger's ``FastScorer`` (``mode: thread``: it shares the worker's GIL) or
a ``ChallengerProcess`` (``mode: process``, the default: the same calls, answered by a child
process). docs/serving.md measures both and the separate BentoML service.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shadowdrift.serving.circuit_breaker import CircuitBreaker

logger = logging.getLogger(__name__)

OK = "ok"
SHED = "shed"
FAILED = "failed"
SAMPLED_OUT = "sampled_out"
SKIPPED = "skipped"
QUEUED = "queued"


@dataclass
class ShadowJob:
    """One request's records for the challenger."""

    request_id: str
    scorer: Any
    model_version: str
    numeric: np.ndarray
    categorical: list[list[str | None]]  # one list per categorical feature
    payload: Any = None
    enqueued_at: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return self.numeric.shape[0]


@dataclass(frozen=True)
class ShadowResult:
    """How a job ended; probabilities and labels only when ``status`` is ``ok``."""

    status: str
    probability: np.ndarray | None = None
    label: np.ndarray | None = None
    latency_ms: float | None = None
    reason: str | None = None


# Called with every job that ended, in batches (one list per scoring call), never concurrently.
FinishCallback = Callable[[list[tuple[ShadowJob, ShadowResult]]], None]


class ShadowRunner:
    """Runs jobs through their challenger on a background thread with a bounded queue."""

    def __init__(
        self,
        finish: FinishCallback,
        *,
        queue_records: int = 10_000,
        max_batch_records: int = 2_000,
        max_delay_s: float = 10.0,
        batch_wait_s: float = 0.05,
        sample_rate: float = 1.0,
        rng: random.Random | None = None,
        on_queue_change: Callable[[int], None] | None = None,
        breaker: CircuitBreaker | None = None,
        call_timeout_s: float | None = None,
    ) -> None:
        self._finish = finish
        self.breaker = breaker
        self.call_timeout_s = call_timeout_s
        self.queue_records = queue_records
        self.max_batch_records = max_batch_records
        self.max_delay_s = max_delay_s
        self.batch_wait_s = batch_wait_s
        self.sample_rate = sample_rate
        self._random = (rng or random.Random()).random
        self._on_queue_change = on_queue_change
        self._queue: deque[ShadowJob] = deque()
        self._queued = 0
        self._busy = False
        self._condition = threading.Condition()
        self._accepting = True
        self._stopping = False
        self.counts = {OK: 0, SHED: 0, FAILED: 0, SAMPLED_OUT: 0, SKIPPED: 0}
        self._errors_logged = 0
        self._counts_lock = threading.Lock()
        # scorers of replaced models, closed once no queued job needs them
        self._retired: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="shadow-challenger", daemon=True)
        self._thread.start()

    @property
    def queued_records(self) -> int:
        return self._queued

    def offer(self, job: ShadowJob) -> str:
        """Queue ``job`` or finish it at once (shed / sampled out). Never blocks on the challenger."""
        if self.sample_rate < 1.0 and self._random() >= self.sample_rate:
            self._complete([(job, ShadowResult(SAMPLED_OUT))])
            return SAMPLED_OUT
        n_records = len(job)
        with self._condition:
            accepted = self._accepting and self._queued + n_records <= self.queue_records
            if accepted:
                was_empty = not self._queue
                self._queue.append(job)
                self._queued += n_records
                # Wake the thread only to start a batch or to cut one short: a wake-up per
                # request would take the GIL from the answers while the batch gathers.
                if was_empty or self._queued >= self.max_batch_records:
                    self._condition.notify()
        if not accepted:
            reason = "stopping" if not self._accepting else "queue full"
            self._complete([(job, ShadowResult(SHED, reason=reason))])
            return SHED
        self._queue_changed()
        return QUEUED

    def retire(self, scorer: Any) -> None:
        """Close ``scorer`` (if it has ``close``) once no queued job uses it any more."""
        if hasattr(scorer, "close"):
            with self._condition:
                self._retired.append(scorer)
                self._condition.notify()

    def _close_retired(self) -> None:
        with self._condition:
            in_use = {id(job.scorer) for job in self._queue}
            done = [s for s in self._retired if id(s) not in in_use]
            self._retired = [s for s in self._retired if id(s) in in_use]
        for scorer in done:
            try:
                scorer.close()
            except Exception:
                logger.exception("Closing a replaced challenger failed")

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting; let the queue drain for ``grace_s``; shed what is left; join."""
        with self._condition:
            self._accepting = False
            self._condition.notify_all()
        deadline = time.monotonic() + grace_s
        with self._condition:
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._condition.wait(timeout=max(0.0, deadline - time.monotonic()))
            left = list(self._queue)
            self._queue.clear()
            self._queued = 0
            self._stopping = True
            self._condition.notify_all()
        if left:
            self._complete([(job, ShadowResult(SHED, reason="shutdown")) for job in left])
        self._thread.join(timeout=max(1.0, grace_s))
        self._close_retired()
        if self._thread.is_alive():
            logger.warning(
                "Shadow thread still busy after %.1f s; its last job may be lost", grace_s
            )
        self._queue_changed()

    # -- the thread ------------------------------------------------------------------------

    def _take(self) -> list[ShadowJob] | None:
        if self._retired:
            self._close_retired()
        with self._condition:
            while not self._queue and not self._stopping:
                self._condition.wait()
                if self._retired and not self._queue:
                    break
            if self._stopping and not self._queue:
                return None
            if not self._queue:
                return []
            # Gather for a moment: one challenger call for many requests costs about as much as
            # for one, and every call competes with the answers for the GIL.
            deadline = self._queue[0].enqueued_at + self.batch_wait_s
            while (
                self._accepting
                and self._queued < self.max_batch_records
                and (remaining := deadline - time.monotonic()) > 0
            ):
                self._condition.wait(timeout=remaining)
            jobs = [self._queue.popleft()]
            taken = len(jobs[0])
            while self._queue and taken + len(self._queue[0]) <= self.max_batch_records:
                job = self._queue.popleft()
                taken += len(job)
                jobs.append(job)
            self._queued -= taken
            self._busy = True
        self._queue_changed()
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if not jobs:
                continue
            try:
                self._process(jobs)
            except Exception:  # never let the thread die: every job must be finished
                logger.exception("Shadow runner failed on a batch of %d jobs", len(jobs))
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _process(self, jobs: list[ShadowJob]) -> None:
        now = time.monotonic()
        fresh = []
        stale = []
        for job in jobs:
            if now - job.enqueued_at > self.max_delay_s:
                stale.append((job, ShadowResult(SHED, reason="waited too long")))
            else:
                fresh.append(job)
        if stale:
            self._complete(stale)
        groups: dict[int, list[ShadowJob]] = {}
        for job in fresh:
            groups.setdefault(id(job.scorer), []).append(job)
        for group in groups.values():
            self._score(group)

    def _score(self, jobs: list[ShadowJob]) -> None:
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            self._complete([(job, ShadowResult(SKIPPED, reason="circuit open")) for job in jobs])
            return
        scorer = jobs[0].scorer
        numeric = jobs[0].numeric if len(jobs) == 1 else np.vstack([j.numeric for j in jobs])
        categorical = (
            jobs[0].categorical
            if len(jobs) == 1
            else [
                [value for job in jobs for value in job.categorical[m]]
                for m in range(len(jobs[0].categorical))
            ]
        )
        started = time.perf_counter()
        try:
            probability = np.asarray(
                scorer.predict_probability(numeric, categorical), dtype=np.float64
            )
            if probability.shape != (numeric.shape[0],):
                raise ValueError(
                    f"challenger returned shape {probability.shape} for {numeric.shape[0]} records"
                )
            labels = scorer.labels(probability)
        except Exception as exc:
            latency_ms = (time.perf_counter() - started) * 1000.0
            self._log_error(exc)
            if breaker is not None:
                breaker.failure(f"{type(exc).__name__}: {exc}")
            self._complete(
                [
                    (job, ShadowResult(FAILED, latency_ms=latency_ms, reason=str(exc)))
                    for job in jobs
                ]
            )
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        if breaker is not None:
            if self.call_timeout_s is not None and latency_ms > 1000.0 * self.call_timeout_s:
                # the answer is good and is logged; its slowness still counts against the
                # challenger (a thread cannot be stopped mid-call)
                breaker.failure(f"a call took {latency_ms / 1000:.1f} s (call_timeout_s)")
            else:
                breaker.success()
        finished = []
        start = 0
        for job in jobs:
            stop = start + len(job)
            finished.append(
                (job, ShadowResult(OK, probability[start:stop], labels[start:stop], latency_ms))
            )
            start = stop
        self._complete(finished)

    def _complete(self, finished: list[tuple[ShadowJob, ShadowResult]]) -> None:
        # offer() (request threads) and the runner thread both finish jobs
        with self._counts_lock:
            for job, result in finished:
                self.counts[result.status] = self.counts.get(result.status, 0) + len(job)
        try:
            self._finish(finished)
        except Exception:
            logger.exception(
                "Finishing %d shadow jobs failed (first request %s)",
                len(finished),
                finished[0][0].request_id,
            )

    def _log_error(self, exc: Exception) -> None:
        # The first failures with their traceback, then one line per hundred: a broken
        # challenger must not flood the log.
        self._errors_logged += 1
        if self._errors_logged <= 3:
            logger.error("Challenger failed: %s", exc, exc_info=exc)
        elif self._errors_logged % 100 == 0:
            logger.error("Challenger failed %d times; latest: %s", self._errors_logged, exc)

    def _queue_changed(self) -> None:
        if self._on_queue_change is not None:
            try:
                self._on_queue_change(self._queued)
            except Exception:
                logger.debug("queue gauge update failed", exc_info=True)
