"""The canary: a share of the records answered by the challenger, chosen by the record's id.

With ``serving.canary.fraction`` above 0, the challenger answers that share of the records and
the champion the rest. Which records: those whose id (the schema's ``id``, e.g.
``customer_id``) hashes below the fraction (BLAKE2b of the id's text, as a number in [0, 1)),
so a customer always gets the same model, in every worker and after a restart, and raising the
fraction keeps the customers already in the canary. A record without an id goes by its
request's id (all records of that request together).

The champion scores every record first (as without a canary): it is the canary's fallback and
what the canary's answers are compared with. The challenger then scores the canary records,
through a small thread pool of its own with ``serving.canary.timeout_s``: ``call_async`` awaits
it from the event loop (other requests are answered meanwhile), ``call`` waits for it in a
batch thread. A call that fails, takes too long or finds the circuit breaker open (the breaker
the shadow uses) leaves the champion's answer for those records: the client always gets an
answer. The shadow runs for the records the champion answered; canary records are logged with
the challenger's output as the answer (``model_variant = challenger``).

``record`` feeds the metrics and the ``CanaryWindow`` that the ``CanaryWatcher``
(``canary_watch.py``) judges; ``roll_back`` sets the share to 0 and writes the shared state file
that the other workers follow.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shadowdrift.serving.canary_watch import (
    Breach,
    CanaryWatcher,
    CanaryWindow,
    Rollback,
    read_rollback,
    utc_now,
    write_rollback,
)
from shadowdrift.serving.config import CanarySettings

logger = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"
TIMEOUT = "timeout"
SKIPPED = "skipped"
OUTCOMES = (OK, FAILED, TIMEOUT, SKIPPED)
CANARY_ROUTE = "canary"
CHAMPION_ROUTE = "champion"
ROUTES = (CHAMPION_ROUTE, CANARY_ROUTE)
_HASH_SPAN = float(2**64)


def share(key: str) -> float:
    """Where ``key`` falls in [0, 1): the same on every machine and in every process."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPAN


@dataclass(frozen=True)
class CanaryCall:
    """A request's canary records, for the challenger: ``mask`` marks them among its records."""

    scorer: Any
    model_version: str
    mask: np.ndarray
    numeric: np.ndarray
    categorical: list[list[str | None]]

    def __len__(self) -> int:
        return self.numeric.shape[0]


@dataclass(frozen=True)
class CanaryAnswer:
    """How the challenger's call ended; probabilities and labels only when ``outcome`` is ok."""

    outcome: str
    latency_ms: float
    probability: np.ndarray | None = None
    label: np.ndarray | None = None
    reason: str | None = None


def _score(call: CanaryCall) -> tuple[np.ndarray, np.ndarray]:
    probability = np.asarray(
        call.scorer.predict_probability(call.numeric, call.categorical), dtype=np.float64
    )
    if probability.shape != (len(call),):
        raise ValueError(f"challenger returned shape {probability.shape} for {len(call)} records")
    return probability, np.asarray(call.scorer.labels(probability))


def challenger_key(challenger: Any) -> str | None:
    """What names a loaded challenger in the rollback file: its BentoML tag, else its version."""
    if challenger is None:
        return None
    return str(challenger.provenance.get("bento_tag") or challenger.version)


class Canary:
    """One worker's canary: routing, the challenger's calls, the rollback state, its watcher."""

    def __init__(
        self,
        settings: CanarySettings,
        *,
        breaker: Any = None,
        metrics: Any = None,
        start_watcher: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.window = CanaryWindow(settings.rollback.window_s, clock)
        self._breaker = breaker
        self._metrics = metrics
        self._fraction = 0.0  # until a challenger is loaded
        self._challenger: str | None = None
        self._challenger_version: str | None = None
        self.rollback: Rollback | None = None
        self._file_seen: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.watcher: CanaryWatcher | None = None
        if settings.fraction > 0:
            self.watcher = CanaryWatcher(self, settings.rollback, clock=clock)
            if start_watcher:
                self.watcher.start()
        self._publish()

    # -- state -----------------------------------------------------------------------------

    @property
    def fraction(self) -> float:
        """The share of records the challenger answers now (0 after a rollback)."""
        return self._fraction

    @property
    def routing(self) -> bool:
        return self._fraction > 0

    def challenger_loaded(self, challenger: Any) -> None:
        """A bundle was installed: start the canary for its challenger (unless rolled back)."""
        with self._lock:
            self._challenger = challenger_key(challenger)
            self._challenger_version = None if challenger is None else challenger.version
        self.window.clear()
        self._file_seen = self._file_stamp()
        self._apply(read_rollback(self.settings.state_file))

    def follow_state_file(self) -> None:
        """Apply a rollback another worker wrote (or its removal) since the last look."""
        stamp = self._file_stamp()
        if stamp != self._file_seen:
            self._file_seen = stamp
            self._apply(read_rollback(self.settings.state_file))

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            stat = os.stat(self.settings.state_file)
        except OSError:
            return None
        return (stat.st_mtime, stat.st_ino)

    def _apply(self, rollback: Rollback | None) -> None:
        with self._lock:
            configured = self.settings.fraction if self._challenger is not None else 0.0
            applies = rollback is not None and rollback.challenger == self._challenger
            before = self._fraction
            self.rollback = rollback if applies else None
            self._fraction = 0.0 if applies else configured
            after = self._fraction
        if applies and before > 0:
            assert rollback is not None
            logger.error(
                "Canary rolled back by worker %d at %s (%s): the champion answers every record",
                rollback.worker_pid,
                rollback.at,
                rollback.message,
            )
        elif after > 0 and before == 0:
            logger.info(
                "Canary on: the challenger %s answers %g of the records",
                self._challenger,
                after,
            )
        self._publish()

    def roll_back(self, found: list[Breach], breach_since: str, figures: dict[str, Any]) -> bool:
        """Set the share to 0 here and, through the state file, in every worker."""
        with self._lock:
            if self._fraction == 0 or self._challenger is None:
                return False
            rollback = Rollback(
                challenger=self._challenger,
                challenger_version=str(self._challenger_version),
                at=utc_now(),
                breach_since=breach_since,
                reason=found[0].reason,
                message="; ".join(b.message for b in found),
                figures=figures,
                worker_pid=os.getpid(),
            )
            self._fraction = 0.0
            self.rollback = rollback
        logger.error(
            "Canary rolled back (breach since %s): %s. The champion answers every record; "
            "delete %s or load another challenger to start a canary again",
            breach_since,
            rollback.message,
            self.settings.state_file,
        )
        if self._metrics is not None:
            self._metrics.canary_rollbacks.labels(rollback.reason).inc()
        self._publish()
        try:
            write_rollback(self.settings.state_file, rollback)
            self._file_seen = self._file_stamp()
        except OSError:
            logger.exception(
                "Could not write the canary rollback to %s: the other workers roll back only "
                "when their own watchers see the breach",
                self.settings.state_file,
            )
        return True

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.canary_state(self._fraction, rolled_back=self.rollback is not None)

    # -- routing and calls -----------------------------------------------------------------

    def route(self, ids: list[Any] | None, request_id: str, n_records: int) -> np.ndarray | None:
        """Which of a request's records the challenger answers; None if none of them."""
        fraction = self._fraction
        if fraction <= 0:
            return None
        by_request = share(request_id) < fraction
        if ids is None:
            return np.ones(n_records, dtype=bool) if by_request else None
        mask = np.fromiter(
            (by_request if entity is None else share(str(entity)) < fraction for entity in ids),
            dtype=bool,
            count=n_records,
        )
        return mask if mask.any() else None

    def prepare(self, bundle: Any, validated: Any, request_id: str) -> CanaryCall | None:
        """The request's canary records, or None (no canary, no challenger, none routed)."""
        challenger = bundle.challenger
        if challenger is None or not self.routing:
            return None
        mask = self.route(validated.ids, request_id, len(validated))
        if mask is None:
            return None
        if mask.all():
            numeric, categorical = validated.numeric, validated.categorical
        else:
            positions = np.flatnonzero(mask).tolist()
            numeric = validated.numeric[mask]
            categorical = [[column[i] for i in positions] for column in validated.categorical]
        return CanaryCall(challenger.scorer, challenger.version, mask, numeric, categorical)

    def call(self, call: CanaryCall) -> CanaryAnswer:
        """Score ``call`` with the challenger, waiting at most ``timeout_s`` (a batch thread)."""
        started = time.perf_counter()
        future = self._submit(call)
        if future is None:
            return self._skipped()
        try:
            probability, label = future.result(timeout=self.settings.timeout_s)
        except Exception as exc:
            future.cancel()
            return self._failed(exc, started)
        return self._ok(probability, label, started)

    async def call_async(self, call: CanaryCall) -> CanaryAnswer:
        """``call`` for the event loop: other requests are answered while this one waits."""
        started = time.perf_counter()
        future = self._submit(call)
        if future is None:
            return self._skipped()
        try:
            probability, label = await asyncio.wait_for(
                asyncio.wrap_future(future), self.settings.timeout_s
            )
        except Exception as exc:
            return self._failed(exc, started)
        return self._ok(probability, label, started)

    def _submit(self, call: CanaryCall) -> Future | None:
        if self._breaker is not None and not self._breaker.allow():
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="canary-call")
        return self._pool.submit(_score, call)

    def _ok(self, probability: np.ndarray, label: np.ndarray, started: float) -> CanaryAnswer:
        if self._breaker is not None:
            self._breaker.success()
        return CanaryAnswer(OK, (time.perf_counter() - started) * 1000.0, probability, label)

    def _failed(self, exc: BaseException, started: float) -> CanaryAnswer:
        latency_ms = (time.perf_counter() - started) * 1000.0
        if isinstance(exc, TimeoutError):
            outcome, reason = TIMEOUT, f"no answer in {self.settings.timeout_s:g} s"
        else:
            outcome, reason = FAILED, f"{type(exc).__name__}: {exc}"
        if self._breaker is not None:
            self._breaker.failure(f"canary call: {reason}")
        if self.counts[FAILED] + self.counts[TIMEOUT] < 3:
            logger.warning("Canary call %s (%s): the champion answers", outcome, reason)
        return CanaryAnswer(outcome, latency_ms, reason=reason)

    @staticmethod
    def _skipped() -> CanaryAnswer:
        return CanaryAnswer(SKIPPED, 0.0, reason="circuit open")

    # -- bookkeeping -----------------------------------------------------------------------

    def record(
        self, call: CanaryCall, answer: CanaryAnswer, champion_labels: np.ndarray, seconds: float
    ) -> None:
        """Count a canary request (``seconds`` in the service) for the metrics and the watcher."""
        n_records = len(call)
        compared = disagree = 0
        if answer.outcome == OK:
            assert answer.label is not None
            compared = n_records
            disagree = int(np.count_nonzero(champion_labels[call.mask] != answer.label))
        errors = 0 if answer.outcome == OK else n_records
        self.window.add(seconds, n_records, errors, compared, disagree)
        self.counts[answer.outcome] += n_records
        if self._metrics is not None:
            self._metrics.canary(answer.outcome, n_records, compared - disagree, disagree)

    def snapshot(self) -> dict[str, Any]:
        """What ``/model_info`` shows under ``canary``."""
        rollback = self.rollback
        return {
            "configured_fraction": self.settings.fraction,
            "fraction": self._fraction,
            "challenger": self._challenger,
            "timeout_s": self.settings.timeout_s,
            "rolled_back": asdict(rollback) if rollback is not None else None,
            "state_file": str(self.settings.state_file),
            "rollback_rule": asdict(self.settings.rollback),
            "breach_since": self.watcher.breach_since if self.watcher else None,
            "window": asdict(self.window.figures()),
            "counts": dict(self.counts),
        }

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
