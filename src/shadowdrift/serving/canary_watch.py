"""The canary's watcher: roll the canary back when it breaks an SLO for long enough.

Every worker runs one ``CanaryWatcher`` thread while a canary is configured. Each check (every
``serving.canary.rollback.check_interval_s``) it computes the canary's figures over the last
``window_s`` seconds of this worker's canary requests (``CanaryWindow``):

* **latency**: the 95th percentile of the canary requests' time in the service (validation,
  champion, challenger), against ``max_p95_latency_s``;
* **errors**: the share of canary records the challenger did not answer (it raised, it was
  slower than ``serving.canary.timeout_s``, or its circuit breaker was open; the champion
  answered them instead), against ``max_error_rate``;
* **disagreement**: the share of canary records the challenger answered with another label
  than the champion's, against ``max_disagreement``.

A window with fewer than ``min_records`` canary records is not judged. When a check finds a
breach, and every check since the first breach found one for ``for_s`` seconds, the watcher
rolls the canary back: the share goes to 0 in this worker at once, and the rollback is written
to ``serving.canary.state_file``, which every other worker's watcher reads at its next check.
The file names the challenger: a worker restarted with the same challenger keeps its canary at
0; a different challenger (a reload) starts a new canary; deleting the file resumes it.

Why in the service and not a separate ``kedro canary-watch`` process reading Prometheus: the
watcher sees every canary call the moment it ends (no scrape interval), needs nothing else to
be running for a rollback to happen, and goes wherever ``bentoml serve`` goes; the shared file
is how its decision reaches the other workers, since an HTTP call reaches only one of them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shadowdrift.serving.config import CanaryRollbackSettings

logger = logging.getLogger(__name__)

LATENCY = "latency"
ERRORS = "errors"
DISAGREEMENT = "disagreement"
ROLLBACK_REASONS = (ERRORS, LATENCY, DISAGREEMENT)


@dataclass(frozen=True)
class CanaryFigures:
    """The canary over one window of one worker."""

    window_s: float
    requests: int
    records: int
    p95_latency_s: float | None
    error_rate: float | None
    compared: int
    disagreement: float | None


@dataclass(frozen=True)
class Breach:
    """One SLO the canary broke: which, and the message that explains it."""

    reason: str
    message: str


class CanaryWindow:
    """The canary requests of the last ``window_s`` seconds (thread-safe).

    One entry per canary request: its time, latency, records, records the challenger did not
    answer, records compared with the champion and how many of those disagreed.
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._entries: deque[tuple[float, float, int, int, int, int]] = deque()
        self._lock = threading.Lock()

    def add(
        self, latency_s: float, records: int, errors: int, compared: int, disagree: int
    ) -> None:
        with self._lock:
            self._entries.append((self._clock(), latency_s, records, errors, compared, disagree))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def figures(self) -> CanaryFigures:
        now = self._clock()
        with self._lock:
            while self._entries and self._entries[0][0] < now - self.window_s:
                self._entries.popleft()
            entries = list(self._entries)
        if not entries:
            return CanaryFigures(self.window_s, 0, 0, None, None, 0, None)
        table = np.asarray(entries, dtype=np.float64)
        records, errors, compared, disagree = (int(v) for v in table[:, 2:].sum(axis=0))
        return CanaryFigures(
            window_s=self.window_s,
            requests=len(entries),
            records=records,
            # "higher": a percentile that is one of the observed latencies, never below them
            p95_latency_s=float(np.percentile(table[:, 1], 95, method="higher")),
            error_rate=errors / records if records else None,
            compared=compared,
            disagreement=disagree / compared if compared else None,
        )


def breaches(figures: CanaryFigures, slo: CanaryRollbackSettings) -> list[Breach]:
    """The SLOs ``figures`` break (errors, latency, disagreement); none below ``min_records``."""
    if figures.records < slo.min_records:
        return []
    found = []
    window = f"over the last {figures.window_s:g} s ({figures.records} canary records)"
    if figures.error_rate is not None and figures.error_rate > slo.max_error_rate:
        found.append(
            Breach(
                ERRORS,
                f"error rate {figures.error_rate:.1%} > {slo.max_error_rate:.1%} {window}",
            )
        )
    if figures.p95_latency_s is not None and figures.p95_latency_s > slo.max_p95_latency_s:
        found.append(
            Breach(
                LATENCY,
                f"p95 latency {figures.p95_latency_s * 1000:.0f} ms > "
                f"{slo.max_p95_latency_s * 1000:.0f} ms {window}",
            )
        )
    if (
        figures.disagreement is not None
        and figures.compared >= slo.min_records
        and figures.disagreement > slo.max_disagreement
    ):
        found.append(
            Breach(
                DISAGREEMENT,
                f"disagreement {figures.disagreement:.1%} > {slo.max_disagreement:.1%} on "
                f"{figures.compared} compared records {window}",
            )
        )
    return found


@dataclass(frozen=True)
class Rollback:
    """A rollback: of which challenger, when, why; what ``state_file`` holds."""

    challenger: str
    challenger_version: str
    at: str
    breach_since: str
    reason: str
    message: str
    figures: dict[str, Any]
    worker_pid: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Rollback:
        data = json.loads(text)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def read_rollback(path: Path) -> Rollback | None:
    """The rollback in ``path``; None if there is none (or it cannot be read: logged)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        logger.exception("Could not read the canary rollback file %s", path)
        return None
    try:
        return Rollback.from_json(text)
    except (ValueError, KeyError, TypeError):
        logger.error("The canary rollback file %s is not a rollback; ignoring it", path)
        return None


def write_rollback(path: Path, rollback: Rollback) -> None:
    """Write ``rollback`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as out:
        out.write(rollback.to_json())
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class CanaryWatcher:
    """Checks the canary's figures every ``check_interval_s`` and rolls it back (see above).

    ``canary`` is the worker's ``Canary``; ``check`` is one step (tests call it directly).
    """

    def __init__(
        self,
        canary: Any,
        slo: CanaryRollbackSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.canary = canary
        self.slo = slo
        self._clock = clock
        self._breach_since: float | None = None
        self._breach_since_utc: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def breach_since(self) -> str | None:
        return self._breach_since_utc

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="canary-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        logger.info(
            "Watching the canary every %g s: rollback after %g s of p95 > %g s, errors > %g or "
            "disagreement > %g over %g s windows",
            self.slo.check_interval_s,
            self.slo.for_s,
            self.slo.max_p95_latency_s,
            self.slo.max_error_rate,
            self.slo.max_disagreement,
            self.slo.window_s,
        )
        while not self._stop.wait(self.slo.check_interval_s):
            try:
                self.check()
            except Exception:
                logger.exception(
                    "The canary check failed; checking again in %g s", self.slo.check_interval_s
                )

    def check(self) -> list[Breach]:
        """Follow the shared file, then judge this worker's window; the breaches found."""
        self.canary.follow_state_file()
        if not self.canary.routing or not self.slo.enabled:
            self._breach_since = self._breach_since_utc = None
            return []
        figures = self.canary.window.figures()
        found = breaches(figures, self.slo)
        if not found:
            if self._breach_since is not None:
                logger.info("The canary is back within its SLOs")
            self._breach_since = self._breach_since_utc = None
            return []
        now = self._clock()
        if self._breach_since is None:
            self._breach_since, self._breach_since_utc = now, utc_now()
            logger.warning(
                "The canary breaks its SLO (%s); rolling back if it lasts %g s",
                "; ".join(b.message for b in found),
                self.slo.for_s,
            )
        if now - self._breach_since >= self.slo.for_s:
            self.canary.roll_back(found, self._breach_since_utc or utc_now(), asdict(figures))
            self._breach_since = self._breach_since_utc = None
        return found
