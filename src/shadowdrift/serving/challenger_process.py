"""The challenger in a child process of the worker (``serving.shadow.mode: process``).

Why a process: the shadow thread shares the worker's GIL with the event loop that answers
requests. A challenger that holds the GIL (pure-Python scoring, a slow custom model) then slows
every answer: measured with a challenger holding it for 0.3 s per call, single-record p50 went
from 11-15 ms to 115 ms at concurrency 8 (docs/serving.md, "Shadow"). In a child process it has
its own interpreter and runs at a lower CPU priority (``process_nice``), so under contention the
champion comes first; a crash or a hang of the challenger ends the child, not the worker.

``ChallengerProcess`` stands in for the challenger's ``FastScorer`` in ``ShadowRunner``: the
same ``predict_probability`` / ``labels``, one call at a time from the shadow thread. A call
sends the validated arrays through a socket pair (pickled: about 0.1 ms per 1,000 records)
and waits, without the GIL, for the probabilities. A call that takes longer than
``call_timeout_s`` stops the child (SIGKILL) and raises ``TimeoutError``; the next call starts
a new one. The child exits when the worker closes its end or dies.

The child: ``python -m shadowdrift.serving.challenger_process FD``. It unpickles the model
(cloudpickle, sent by the worker: no access to the model store needed), builds the same
``FastScorer`` as the worker would, answers ``ready`` with the scorer's description, then
scores until the socket closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class ChallengerUnavailable(RuntimeError):
    """The child could not be started, or died; the message says why."""


@dataclass(frozen=True)
class ModelName:
    """What ``/model_info`` shows of a model that lives in another process."""

    name: str
    kind: str


class ChallengerProcess:
    """A challenger scored in a child process; ``predict_probability`` like ``FastScorer``."""

    def __init__(
        self,
        model: Any,
        schema_numeric: list[str],
        schema_categorical: list[str],
        *,
        scorer_options: dict[str, Any] | None = None,
        call_timeout_s: float = 5.0,
        start_timeout_s: float = 120.0,
        nice: int = 10,
    ) -> None:
        import cloudpickle  # noqa: PLC0415  (only where a challenger process is started)

        self.model = ModelName(str(model.name), str(model.kind))
        self.threshold = float(model.threshold)
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self._load_message = pickle.dumps(
            (
                "load",
                cloudpickle.dumps(model),
                list(schema_numeric),
                list(schema_categorical),
                dict(scorer_options or {}),
                nice,
            ),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        # as the worker's own scorer would say, until the child has described its own
        self.path = "starting"
        self.fallback_reason: str | None = None
        self.kernel: str | None = None
        self.kernel_missing: str | None = None
        self.releases_gil = False
        self.starts = 0
        self.last_exit: str | None = None
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._closed = False
        self._start()

    # -- the FastScorer interface ----------------------------------------------------------

    def predict_probability(
        self, numeric: np.ndarray, categorical: list[list[str | None]]
    ) -> np.ndarray:
        """P(churn) per record from the child; ``TimeoutError`` after ``call_timeout_s``."""
        with self._lock:
            conn = self._connection()
            try:
                conn.send(("score", numeric, categorical))
                answered = conn.poll(self.call_timeout_s)
                if answered:
                    kind, value = conn.recv()
            except (EOFError, OSError) as exc:
                self._stop(f"the connection broke: {type(exc).__name__}")
                raise ChallengerUnavailable(f"challenger process died: {self.last_exit}") from exc
            if not answered:
                self._stop(f"a call took longer than {self.call_timeout_s:g} s")
                raise TimeoutError(
                    f"challenger call took longer than {self.call_timeout_s:g} s "
                    "(serving.shadow.call_timeout_s); its process was stopped"
                )
        if kind == "ok":
            return value
        raise RuntimeError(value)

    def labels(self, probability: np.ndarray) -> np.ndarray:
        return (probability >= self.threshold).astype(np.int64)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def describe_process(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "starts": self.starts,
            "last_exit": self.last_exit,
            "call_timeout_s": self.call_timeout_s,
        }

    def wait_ready(self) -> bool:
        """Wait until the child has loaded the model (``start_timeout_s`` at most); whether it has.

        Called before the challenger is put into service, so that no shadow job waits for the
        load (and is shed for waiting too long); a failure is logged, and the next call retries.
        """
        with self._lock:
            try:
                self._connection()
            except ChallengerUnavailable as exc:
                logger.error("Challenger process not ready: %s", exc)
                return False
        return True

    def close(self) -> None:
        """Stop the child (it exits when its socket closes; killed if it does not)."""
        with self._lock:
            self._closed = True
            self._stop(None, grace_s=2.0)

    def _start(self) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        # the package's location, also when the worker found it through sys.path (a Bento)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(child.fileno())],
                pass_fds=(child.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        self._conn.send_bytes(self._load_message)
        self._ready = False
        self.starts += 1

    def _connection(self) -> Connection:
        """The connection to a ready child, starting one if there is none (under the lock)."""
        if self._closed:
            raise ChallengerUnavailable("the challenger process was closed")
        if self._process is None or self._process.poll() is not None:
            if self._process is not None:
                self._stop(f"exited with code {self._process.returncode}")
            self._start()
        assert self._conn is not None
        if not self._ready:
            if not self._conn.poll(self.start_timeout_s):
                self._stop("did not load the model in time")
                raise ChallengerUnavailable(
                    f"challenger process did not load the model in {self.start_timeout_s:g} s"
                )
            try:
                kind, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._stop("died while loading")
                raise ChallengerUnavailable("challenger process died while loading") from exc
            if kind != "ready":
                self._stop("could not load the model")
                raise ChallengerUnavailable(f"challenger process could not load the model: {value}")
            for key, item in value.items():
                setattr(self, key, item)
            self._ready = True
            logger.info("Challenger process %s ready (fast path %s)", self._process.pid, self.path)
        return self._conn

    def _stop(self, why: str | None, grace_s: float = 0.0) -> None:
        """Close the socket and end the child (under the lock); ``why`` is logged."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready = None, None, False
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if process is None:
            return
        if grace_s > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_s)
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5.0)
        if why is not None:
            self.last_exit = f"{why} (pid {process.pid}, exit code {process.returncode})"
            logger.warning("Challenger process stopped: %s", self.last_exit)


# -- the child ---------------------------------------------------------------------------


def _die_with_parent(interval_s: float = 1.0) -> None:
    """Exit when the worker that started this process is gone, even in the middle of a call.

    A thread polling the parent's pid rather than Linux's ``PR_SET_PDEATHSIG``, which fires
    when the *thread* that started the child ends (the worker's model-loading thread).
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _describe(scorer: Any) -> dict[str, Any]:
    return {
        "path": scorer.path,
        "fallback_reason": scorer.fallback_reason,
        "kernel": scorer.kernel,
        "kernel_missing": scorer.kernel_missing,
        "releases_gil": scorer.releases_gil,
    }


def serve(conn: Connection) -> None:
    """Load the model sent first, then score each request until the socket closes."""
    import cloudpickle  # noqa: PLC0415

    from shadowdrift.serving.fast_path import FastScorer  # noqa: PLC0415

    _, payload, numeric_names, categorical_names, options, nice = pickle.loads(conn.recv_bytes())
    try:
        model = cloudpickle.loads(payload)
        scorer = FastScorer(model, numeric_names, categorical_names, **options)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    del payload
    # loaded at the worker's priority (start-up is not slowed down); scored at a lower one
    with contextlib.suppress(OSError):
        os.nice(nice)
    conn.send(("ready", _describe(scorer)))
    while True:
        try:
            _, numeric, categorical = conn.recv()
        except (EOFError, OSError):
            return
        started = time.perf_counter()
        try:
            probability = np.asarray(
                scorer.predict_probability(numeric, categorical), dtype=np.float64
            )
            reply: tuple[str, Any] = ("ok", probability)
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        logger.debug(
            "scored %d records in %.1f ms", len(numeric), 1e3 * (time.perf_counter() - started)
        )
        try:
            conn.send(reply)
        except OSError:
            return


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    # The worker stops the child by closing the socket once its shadow queue has drained (and
    # the parent watch ends it if the worker dies). SIGINT (Ctrl+C on the terminal's process
    # group) and the SIGTERM BentoML's arbiter sends to a stopping worker's children would end
    # it before that, failing the shadow calls of requests the worker is still finishing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    serve(Connection(int(args[0])))


if __name__ == "__main__":
    main()
