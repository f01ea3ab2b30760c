"""A circuit breaker for the challenger: stop calling it while it keeps failing.

States: ``closed`` (every batch goes to the challenger), ``open`` (after ``failures``
consecutive failed or timed-out calls: nothing is sent for ``cool_down_s``, the records are
logged as ``skipped``), ``half_open`` (the cool-down is over: the next call is a probe; success
closes the breaker, failure opens it again for another cool-down). One probe at a time.

Transitions are logged (warning when it opens) and reported to ``on_change`` (the service's
metrics); ``snapshot`` is what ``/model_info`` shows. Thread-safe: the shadow thread records
outcomes while request handlers read the state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


class CircuitBreaker:
    """Counts consecutive failures of calls to one dependency and decides whether to call it."""

    def __init__(
        self,
        failures: int = 5,
        cool_down_s: float = 30.0,
        *,
        name: str = "challenger",
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if failures < 1 or cool_down_s <= 0:
            raise ValueError("failures must be >= 1 and cool_down_s > 0")
        self.failures = failures
        self.cool_down_s = cool_down_s
        self.name = name
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CLOSED
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.last_error: str | None = None
        self.transitions = {OPEN: 0, HALF_OPEN: 0, CLOSED: 0}

    @property
    def state(self) -> str:
        with self._lock:
            self._cool_down_over()
            return self._state

    def allow(self) -> bool:
        """Whether to make a call now (in half-open state: the one probe)."""
        with self._lock:
            self._cool_down_over()
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._probing = False
            if self._state != CLOSED:
                self._move(CLOSED, "a call succeeded")

    def failure(self, reason: str) -> None:
        with self._lock:
            self._consecutive += 1
            self._probing = False
            self.last_error = reason[:500]
            if self._state == HALF_OPEN or (
                self._state == CLOSED and self._consecutive >= self.failures
            ):
                self._opened_at = self._clock()
                self._move(OPEN, f"{self._consecutive} consecutive failures; last: {reason}")

    def reset(self, why: str) -> None:
        """Start afresh (a new challenger was loaded): closed, no failures counted."""
        with self._lock:
            self._consecutive = 0
            self._probing = False
            if self._state != CLOSED:
                self._move(CLOSED, why)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._cool_down_over()
            remaining = None
            if self._state == OPEN and self._opened_at is not None:
                remaining = max(0.0, self._opened_at + self.cool_down_s - self._clock())
            return {
                "state": self._state,
                "consecutive_failures": self._consecutive,
                "failures_to_open": self.failures,
                "cool_down_s": self.cool_down_s,
                "cool_down_left_s": remaining,
                "last_error": self.last_error,
                "transitions": dict(self.transitions),
            }

    # -- under the lock --------------------------------------------------------------------

    def _cool_down_over(self) -> None:
        if (
            self._state == OPEN
            and self._opened_at is not None
            and self._clock() - self._opened_at >= self.cool_down_s
        ):
            self._move(HALF_OPEN, f"cool-down of {self.cool_down_s:g} s over; probing")

    def _move(self, state: str, why: str) -> None:
        previous, self._state = self._state, state
        self.transitions[state] += 1
        if state == OPEN:
            logger.warning(
                "Circuit breaker for the %s opened (%s): skipped for %g s",
                self.name,
                why,
                self.cool_down_s,
            )
        else:
            logger.info("Circuit breaker for the %s %s (%s)", self.name, state, why)
        if self._on_change is not None:
            try:
                self._on_change(previous, state)
            except Exception:
                logger.debug("circuit breaker callback failed", exc_info=True)
