"""Challengers that misbehave on purpose, for drills, tests and ``benchmarks/bench_service.py``.

``FaultyModel`` wraps a real ``ChurnModel`` and, on every scoring call, first raises, sleeps or
holds the GIL (a pure-Python busy loop) for ``seconds``, then (except ``raise``) scores with
the wrapped model. ``store_faulty_challenger`` writes one to a BentoML model store under its
own name, in the project's store format, so that a service configured with
``serving.models.challenger: <name>:latest`` serves it in shadow::

    from shadowdrift.serving.fault_injection import store_faulty_challenger

    store_faulty_challenger("shadowdrift-churn-challenger:latest", "gil", seconds=0.3)
    # serving.models.challenger: shadowdrift-churn-fault-gil:latest

What the service must do with each (docs/serving.md, "Shadow" and "Circuit breaker"): answer
every request on time from the champion, log the records as ``failed``, ``shed`` or ``skipped``,
and open the circuit breaker after repeated failures or timeouts.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

FAULTS = ("raise", "sleep", "gil")


class FaultyModel:
    """A ``ChurnModel`` look-alike whose scoring first raises, sleeps or holds the GIL."""

    def __init__(self, model: Any, fault: str, seconds: float = 0.3) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
        self.model = model
        self.fault = fault
        self.seconds = float(seconds)
        self.threshold = model.threshold
        self.numeric_features = list(model.numeric_features)
        self.categorical_features = list(model.categorical_features)
        self.name = f"{model.name}-{fault}"
        self.kind = f"fault-{fault}"
        self.info = {"wraps": getattr(model, "name", "?"), "fault": fault, "seconds": seconds}

    def predict_probability(self, records: Any) -> np.ndarray:
        if self.fault == "raise":
            raise RuntimeError(f"injected fault: {self.name} always raises")
        if self.fault == "sleep":
            time.sleep(self.seconds)
        else:
            hold_gil(self.seconds)
        return self.model.predict_probability(records)


def hold_gil(seconds: float) -> int:
    """Busy-loop in pure Python for ``seconds`` (the GIL is only released at switch intervals)."""
    deadline = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < deadline:
        for _ in range(1000):
            spins += 1
    return spins


def store_faulty_challenger(
    base_tag: str,
    fault: str,
    *,
    seconds: float = 0.3,
    name: str | None = None,
    model_store: Any = None,
) -> str:
    """Write ``FaultyModel(<base_tag's model>, fault, seconds)`` to the store; its tag.

    The stored model keeps the base model's labels and metadata (so it loads like any
    packaged model) under the name ``shadowdrift-churn-fault-<fault>`` unless told otherwise.
    """
    import bentoml  # noqa: PLC0415
    import cloudpickle  # noqa: PLC0415

    from shadowdrift.serving import model_store as store  # noqa: PLC0415

    kwargs = {"_model_store": model_store} if model_store is not None else {}
    base = bentoml.models.get(base_tag, **kwargs)
    model, _ = store.load_stored(base)
    faulty = FaultyModel(model, fault, seconds)
    metadata = {**dict(base.info.metadata), "kind": faulty.kind}
    labels = dict(base.info.labels)
    with bentoml.models.create(
        name or f"shadowdrift-churn-fault-{fault}",
        labels=labels,
        metadata=metadata,
        **kwargs,
    ) as created:
        with open(created.path_of(store.MODEL_FILE), "wb") as out:
            cloudpickle.dump(faulty, out)
    return str(created.tag)
