"""Prometheus metrics of the service, served by BentoML at ``/metrics``.

Create ``ServingMetrics`` inside the worker process: BentoML sets ``PROMETHEUS_MULTIPROC_DIR``
when the worker starts, and ``prometheus_client`` must see it before the first metric exists
so that every worker's values reach ``/metrics``. Tests pass their own ``CollectorRegistry``.

Names (all prefixed ``shadowdrift_``; BentoML adds its own ``bentoml_service_*`` request counts
and latencies per endpoint):

==========================================  =====================================================
``model_requests_total{role,model_version}``  scoring calls per model (role: champion, challenger)
``model_records_total{role,model_version}``   records scored per model
``model_latency_seconds{role}``               inference time per call (histogram)
``prediction_probability{role}``              the positive class's probabilities (histogram, 20 buckets)
``rejected_requests_total{reason}``           4xx: validation, too_large, bad_request_id, ...
``shadow_records_total{status}``              ok, shed, failed, sampled_out, disabled
``shadow_queue_records``                      records waiting for the challenger (gauge)
``agreement_total{agree}``                    champion/challenger labels equal ("true") or not
``probability_abs_difference``                abs(champion - challenger) probability (histogram)
``unseen_category_total{feature}``            accepted values outside the schema's categories
``missing_value_total{feature}``              accepted nulls
``prediction_log_records{state}``             appended, flushed, buffered, dropped, rejected
``prediction_log_flush_errors``               failed flushes of the prediction log
``model_info{role,model_version,run_id,...}`` 1 for the loaded models (0 after a reload)
``feedback_records_total``                    ground-truth labels accepted by /feedback
``reloads_total{outcome}``                    POST /reload: ok, failed
``refused_requests_total{reason}``            refused before the service: overloaded (503),
                                              rate_limited (429), too_large (413),
                                              unsupported_media_type (415), shutting_down (503)
``challenger_circuit_state{state}``           1 for the breaker's state (closed, open, half_open)
``challenger_circuit_transitions_total{to}``  breaker transitions by new state
``answered_records_total{model_variant}``     records answered by the champion or, on the
                                              canary, by the challenger
``request_latency_seconds{route}``            a /predict request's time in the service
                                              (histogram); route canary: it had canary records
``canary_records_total{outcome}``             canary records: ok (the challenger answered),
                                              failed, timeout, skipped (the champion answered)
``canary_agreement_total{agree}``             canary records: challenger's label = champion's
``canary_fraction``                           the share the canary answers now (per worker)
``canary_rolled_back``                        1 while a rollback holds the canary at 0
``canary_rollbacks_total{reason}``            rollbacks decided by this service's watchers:
                                              errors, latency, disagreement
``prediction_log_stalled_seconds``            how long records have waited for the prediction
                                              log without it writing any (0: none waits)
==========================================  =====================================================

Counters are created with their label values at 0, so that a rate over them reads 0 (not
nothing) before the first event; the per-feature input counters once the service knows the
schema (``input_features``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from shadowdrift.serving.config import REQUEST_BUCKETS

PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
CIRCUIT_STATES = ("closed", "open", "half_open")
DIFFERENCE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def observe_many(histogram: Any, values: np.ndarray) -> None:
    """Observe every value of ``values`` in one pass (one file write per bucket, not per value).

    prometheus_client has no bulk observe; a batch of 1,000 probabilities observed one by one
    costs about 2 ms. This adds the bucket counts directly, which is what ``observe`` does per
    value; it falls back to ``observe`` if the internals are not as expected.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1:
        value = float(values[0])
        if not math.isnan(value):
            histogram.observe(value)
        return
    values = values[~np.isnan(values)]
    if values.size == 0:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values.tolist():
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose upper bound is >= the value.
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(index, minlength=len(bounds))
    for position, count in enumerate(counts.tolist()):
        if count:
            buckets[position].inc(count)
    total.inc(float(values.sum()))


class ServingMetrics:
    """The service's Prometheus metrics (see the module docstring for the names)."""

    def __init__(self, registry: Any = None, namespace: str = "shadowdrift") -> None:
        # imported here, in the worker, once BentoML has set PROMETHEUS_MULTIPROC_DIR
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram  # noqa: PLC0415

        registry = REGISTRY if registry is None else registry
        common = {"namespace": namespace, "registry": registry}
        self.model_requests = Counter(
            "model_requests_total", "Scoring calls per model", ["role", "model_version"], **common
        )
        self.model_records = Counter(
            "model_records_total", "Records scored per model", ["role", "model_version"], **common
        )
        self.model_latency = Histogram(
            "model_latency_seconds",
            "Inference time per scoring call",
            ["role"],
            buckets=LATENCY_BUCKETS,
            **common,
        )
        self.probability = Histogram(
            "prediction_probability",
            "Predicted probabilities of the positive class",
            ["role"],
            buckets=PROBABILITY_BUCKETS,
            **common,
        )
        self.rejected = Counter(
            "rejected_requests_total", "Requests refused with a 4xx", ["reason"], **common
        )
        self.shadow_records = Counter(
            "shadow_records_total", "Records by challenger status", ["status"], **common
        )
        self.shadow_queue = Gauge(
            "shadow_queue_records",
            "Records waiting for the challenger",
            multiprocess_mode="livesum",
            **common,
        )
        self.agreement = Counter(
            "agreement_total", "Champion/challenger label agreement", ["agree"], **common
        )
        self.difference = Histogram(
            "probability_abs_difference",
            "Absolute difference of champion and challenger probabilities",
            buckets=DIFFERENCE_BUCKETS,
            **common,
        )
        self.unseen = Counter(
            "unseen_category_total", "Accepted unseen categories", ["feature"], **common
        )
        self.missing = Counter(
            "missing_value_total", "Accepted missing values", ["feature"], **common
        )
        self.log_records = Gauge(
            "prediction_log_records",
            "Prediction-log writer counters",
            ["state"],
            multiprocess_mode="livesum",
            **common,
        )
        self.log_flush_errors = Gauge(
            "prediction_log_flush_errors",
            "Failed flushes of the prediction log",
            multiprocess_mode="livesum",
            **common,
        )
        self.model_info = Gauge(
            "model_info",
            "Loaded models (1) and models replaced by a reload (0)",
            ["role", "model_version", "run_id", "candidate", "bento_tag"],
            multiprocess_mode="max",
            **common,
        )
        self.feedback = Counter("feedback_records_total", "Ground-truth labels accepted", **common)
        self.reloads = Counter("reloads_total", "Model reloads", ["outcome"], **common)
        self.refused = Counter(
            "refused_requests_total",
            "Requests refused before the service (admission, rate limit, size, type, shutdown)",
            ["reason"],
            **common,
        )
        self.circuit_state = Gauge(
            "challenger_circuit_state",
            "The challenger's circuit breaker: 1 for its current state (per worker)",
            ["state"],
            multiprocess_mode="liveall",
            **common,
        )
        self.circuit_transitions = Counter(
            "challenger_circuit_transitions_total",
            "Circuit breaker transitions, by the state entered",
            ["to"],
            **common,
        )
        self._operations_metrics(common)
        self._initialise()
        self._info_labels: dict[str, tuple[str, ...]] = {}
        self._children: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}

    def _operations_metrics(self, common: dict[str, Any]) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415

        self.answered = Counter(
            "answered_records_total",
            "Records answered, by the model that answered",
            ["model_variant"],
            **common,
        )
        self.request_latency = Histogram(
            "request_latency_seconds",
            "Time of a /predict request in the service (route canary: it had canary records)",
            ["route"],
            buckets=REQUEST_BUCKETS,
            **common,
        )
        self.canary_records = Counter(
            "canary_records_total", "Canary records by outcome", ["outcome"], **common
        )
        self.canary_agreement = Counter(
            "canary_agreement_total",
            "Canary records: the challenger's label equals the champion's",
            ["agree"],
            **common,
        )
        self.canary_fraction = Gauge(
            "canary_fraction",
            "Share of records the canary answers now (per worker)",
            multiprocess_mode="liveall",
            **common,
        )
        self.canary_rolled_back = Gauge(
            "canary_rolled_back",
            "1 while a rollback holds the canary's share at 0 (per worker)",
            multiprocess_mode="liveall",
            **common,
        )
        self.canary_rollbacks = Counter(
            "canary_rollbacks_total", "Canary rollbacks, by the SLO broken", ["reason"], **common
        )
        self.log_stalled = Gauge(
            "prediction_log_stalled_seconds",
            "How long records have waited for the prediction log without it writing any",
            multiprocess_mode="livemax",
            **common,
        )
        # (records written, dropped or rejected; since when that number has not moved)
        self._log_progress: tuple[int, float] = (0, time.monotonic())

    def _initialise(self) -> None:
        """Every label value a dashboard or rule expects, at 0."""
        from shadowdrift.serving.canary import OUTCOMES, ROUTES  # noqa: PLC0415
        from shadowdrift.serving.canary_watch import ROLLBACK_REASONS  # noqa: PLC0415
        from shadowdrift.serving.http_guard import REFUSAL_REASONS  # noqa: PLC0415

        for variant in ("champion", "challenger"):
            self.answered.labels(variant)
        for route in ROUTES:
            self.request_latency.labels(route)
        for outcome in OUTCOMES:
            self.canary_records.labels(outcome)
        for reason in ROLLBACK_REASONS:
            self.canary_rollbacks.labels(reason)
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason)
        for reason in ("validation", "too_large", "bad_request", "not_ready"):
            self.rejected.labels(reason)
        for status in ("ok", "shed", "failed", "sampled_out", "disabled", "skipped"):
            self.shadow_records.labels(status)
        for agree in ("true", "false"):
            self.agreement.labels(agree)
            self.canary_agreement.labels(agree)
        for outcome in ("ok", "failed"):
            self.reloads.labels(outcome)
        for state in CIRCUIT_STATES:
            self.circuit_transitions.labels(state)
        self.log_stalled.set(0)

    def _scoring_children(self, role: str, version: str) -> tuple[Any, Any, Any, Any]:
        # labels() hashes and locks on every call; a request path pays for it once per model
        key = (role, version)
        children = self._children.get(key)
        if children is None:
            children = (
                self.model_requests.labels(role, version),
                self.model_records.labels(role, version),
                self.model_latency.labels(role),
                self.probability.labels(role),
            )
            self._children[key] = children
        return children

    def scoring_series(self, role: str, version: str) -> None:
        """Create ``role``'s scoring counters and histograms for ``version``, at 0."""
        self._scoring_children(role, version)

    def scored(self, role: str, version: str, probabilities: np.ndarray, seconds: float) -> None:
        requests, records, latency, probability = self._scoring_children(role, version)
        requests.inc()
        records.inc(len(probabilities))
        latency.observe(seconds)
        observe_many(probability, probabilities)

    def compared(
        self, champion_labels: np.ndarray, challenger_labels: np.ndarray, differences: np.ndarray
    ) -> None:
        agree = int(np.count_nonzero(champion_labels == challenger_labels))
        disagree = len(champion_labels) - agree
        if agree:
            self.agreement.labels("true").inc(agree)
        if disagree:
            self.agreement.labels("false").inc(disagree)
        observe_many(self.difference, differences)

    def answered_by(self, variant: str, n_records: int) -> None:
        self.answered.labels(variant).inc(n_records)

    def request_seconds(self, route: str, seconds: float) -> None:
        self.request_latency.labels(route).observe(seconds)

    def canary(self, outcome: str, n_records: int, agree: int, disagree: int) -> None:
        self.canary_records.labels(outcome).inc(n_records)
        if agree:
            self.canary_agreement.labels("true").inc(agree)
        if disagree:
            self.canary_agreement.labels("false").inc(disagree)

    def canary_state(self, fraction: float, *, rolled_back: bool) -> None:
        self.canary_fraction.set(fraction)
        self.canary_rolled_back.set(1 if rolled_back else 0)

    def shadow(self, status: str, n_records: int) -> None:
        if n_records:
            self.shadow_records.labels(status).inc(n_records)

    def input_features(self, categorical: list[str], features: list[str]) -> None:
        """Per-feature input counters at 0, so that a rate over them reads 0 before the first
        unseen category or missing value (and a dashboard shows every feature)."""
        for feature in categorical:
            self.unseen.labels(feature)
        for feature in features:
            self.missing.labels(feature)

    def inputs(self, unseen: dict[str, int], missing: dict[str, int]) -> None:
        for feature, count in unseen.items():
            self.unseen.labels(feature).inc(count)
        for feature, count in missing.items():
            self.missing.labels(feature).inc(count)

    def writer_stats(self, stats: Any) -> None:
        for state in ("appended", "flushed", "buffered", "dropped", "rejected"):
            self.log_records.labels(state).set(getattr(stats, f"records_{state}"))
        self.log_flush_errors.set(stats.flush_errors)
        done = stats.records_flushed + stats.records_dropped + stats.records_rejected
        now = time.monotonic()
        if done != self._log_progress[0] or done >= stats.records_appended:
            self._log_progress = (done, now)
        self.log_stalled.set(now - self._log_progress[1])

    def refused_request(self, reason: str) -> None:
        self.refused.labels(reason).inc()

    def breaker_state(self, state: str, *, changed: bool = True) -> None:
        for name in CIRCUIT_STATES:
            self.circuit_state.labels(name).set(1 if name == state else 0)
        if changed:
            self.circuit_transitions.labels(state).inc()

    def loaded(self, role: str, labels: tuple[str, ...] | None) -> None:
        """Mark the model now serving ``role`` (``labels`` None: no model in that role)."""
        previous = self._info_labels.pop(role, None)
        if previous is not None and previous != labels:
            self.model_info.labels(*previous).set(0)
        if labels is not None:
            self.model_info.labels(*labels).set(1)
            self._info_labels[role] = labels
