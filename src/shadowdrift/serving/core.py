"""What the service's routes do, as plain Python (the BentoML service only adapts HTTP).

``ServingCore`` holds the models (one ``ModelBundle`` reference, swapped atomically by a
reload), the request validator, the prediction-log and ground-truth writers, the shadow runner
and the metrics. Its methods take parsed JSON and return a ``Reply`` (status, body, headers);
they never raise for a client mistake.

A request is answered from the bundle it started with: a reload swaps the reference, and
requests in flight (and their queued shadow jobs) finish with the models they began with.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import random
import re
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from shadowdrift.prediction_log import (
    CHALLENGER_VARIANT,
    CHAMPION_LABEL,
    CHAMPION_LATENCY_MS,
    CHAMPION_MODEL_VERSION,
    CHAMPION_PROBABILITY,
    CHAMPION_VARIANT,
    COLUMNS_MIN_RECORDS,
    EVENT_TIME,
    RECORD_INDEX,
    REQUEST_ID,
    LogSchema,
    PredictionLogWriter,
)
from shadowdrift.prediction_wal import AcknowledgedLogs, all_durable, open_durable_logs
from shadowdrift.schema import parse_schema
from shadowdrift.serving.bundle import CHALLENGER, CHAMPION, ModelBundle
from shadowdrift.serving.canary import (
    CANARY_ROUTE,
    CHAMPION_ROUTE,
    Canary,
    CanaryAnswer,
    CanaryCall,
)
from shadowdrift.serving.canary import OK as CANARY_OK
from shadowdrift.serving.canary import SKIPPED as CANARY_SKIPPED
from shadowdrift.serving.challenger_process import ChallengerProcess
from shadowdrift.serving.circuit_breaker import CircuitBreaker
from shadowdrift.serving.config import ServingSettings
from shadowdrift.serving.fast_path import DEFAULT_SMALL_BATCH
from shadowdrift.serving.feedback import GroundTruthWriter, parse_labels
from shadowdrift.serving.log_entries import LogEntries, fill_challenger, set_variant, split_entries
from shadowdrift.serving.metrics import ServingMetrics
from shadowdrift.serving.request_validation import (
    Problem,
    RequestRejected,
    RequestValidator,
    ValidatedRecords,
    json_type,
)
from shadowdrift.serving.shadow import FAILED, OK, SKIPPED, ShadowJob, ShadowResult, ShadowRunner

logger = logging.getLogger(__name__)

# path-like text in /model_info without the token (file paths inside error messages too)
_PATH_TEXT = re.compile(r"file://[^\s'\",;)]+|(?<![\w:.])/[^\s'\",;)]+")
_PRIVATE_KEYS = frozenset({"path", "worker_pid", "pid"})

DISABLED = "disabled"
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body (dict, or bytes already encoded) and headers.

    ``durable`` (acknowledged durability): resolves once the request's records are on disk;
    the answer must not be sent before (``ServingCore.acknowledged``).
    """

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    durable: Future | None = None

    def body_bytes(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)

    def json(self) -> Any:
        return orjson.loads(self.body) if isinstance(self.body, bytes) else self.body


@dataclass(frozen=True)
class Scored:
    """A request the champion has scored; its canary records (if any) wait for the challenger."""

    bundle: ModelBundle
    rid: str
    validated: ValidatedRecords
    probability: np.ndarray
    labels: np.ndarray
    seconds: float  # the champion's scoring time
    started: float  # perf_counter when the request reached the core
    canary: CanaryCall | None


def _predictions(
    rid: str, scored: Scored, canary: CanaryAnswer | None, answered: np.ndarray | None
) -> list[dict[str, Any]]:
    """The answer's records: the challenger's output where it answered, else the champion's."""
    champion_version = scored.bundle.champion.version
    probability, labels = scored.probability, scored.labels
    if answered is None or not answered.any():
        versions: Any = itertools.repeat(champion_version)
        variants: Any = itertools.repeat(CHAMPION_VARIANT)
    else:
        assert canary is not None and canary.probability is not None and scored.canary is not None
        probability, labels = probability.copy(), labels.copy()
        probability[answered], labels[answered] = canary.probability, canary.label
        chosen = answered.tolist()
        challenger_version = scored.canary.model_version
        versions = [challenger_version if c else champion_version for c in chosen]
        variants = [CHALLENGER_VARIANT if c else CHAMPION_VARIANT for c in chosen]
    return [
        {
            "request_id": rid,
            "record_index": index,
            "probability": p,
            "label": label,
            "model_version": version,
            "model_variant": variant,
        }
        for index, (p, label, version, variant) in enumerate(
            # versions and variants may be endless repeats
            zip(probability.tolist(), labels.tolist(), versions, variants, strict=False)
        )
    ]


class ServingCore:
    """Validation, scoring, shadow, logging and metrics behind the service's routes."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        metrics: ServingMetrics | None = None,
        log_writer: PredictionLogWriter | None = None,
        ground_truth_writer: GroundTruthWriter | None = None,
        shadow_runner: Any = None,
        start_shadow: bool = True,
        canary_watcher: bool = True,
    ) -> None:
        self.settings = settings
        self.schema = parse_schema(settings.schema)
        self.validator = RequestValidator(self.schema, settings.request)
        self.log_schema = LogSchema.from_data_schema(self.schema)
        self.metrics = metrics
        self.writer = log_writer or PredictionLogWriter(
            settings.prediction_log.path,
            self.log_schema,
            flush_interval_s=settings.prediction_log.flush_interval_s,
        )
        self.ground_truth = ground_truth_writer or GroundTruthWriter(
            settings.ground_truth.path, flush_interval_s=settings.ground_truth.flush_interval_s
        )
        # replays what crashed workers acknowledged; acknowledged mode: the write-ahead logs
        self.acknowledged: AcknowledgedLogs | None = open_durable_logs(
            self.writer, self.ground_truth, settings.log_durability
        )
        if self.acknowledged is not None:
            self.writer = self.acknowledged.predictions  # type: ignore[assignment]
        shadow = settings.shadow
        self.breaker = CircuitBreaker(
            shadow.circuit_breaker.failures,
            shadow.circuit_breaker.cool_down_s,
            on_change=self._breaker_changed,
        )
        in_worker = shadow.mode in ("thread", "process")
        if shadow_runner is None and start_shadow and shadow.enabled and in_worker:
            shadow_runner = ShadowRunner(
                self.finish_shadow,
                queue_records=shadow.queue_records,
                max_batch_records=shadow.max_batch_records,
                max_delay_s=shadow.max_delay_s,
                batch_wait_s=shadow.batch_wait_s,
                sample_rate=shadow.sample_rate,
                on_queue_change=self._queue_gauge,
                breaker=self.breaker,
                call_timeout_s=shadow.call_timeout_s,
            )
        self.shadow_runner = shadow_runner
        self.canary = Canary(
            settings.canary, breaker=self.breaker, metrics=metrics, start_watcher=canary_watcher
        )
        self._bundle: ModelBundle | None = None
        self.load_error: str | None = None
        # seeded from os.urandom here, in the worker process (not inherited through a fork)
        self._random_bits = random.Random().getrandbits
        self._timestamp_key = self.schema.timestamp
        self._id_key = self.log_schema.id_column
        self._numeric_features = tuple(self.schema.numeric_features)
        self._categorical_features = tuple(self.schema.categorical_features)
        self._stats_stop = threading.Event()
        self._stats_thread: threading.Thread | None = None
        if metrics is not None:
            metrics.input_features(self.schema.categorical_features, self.schema.features)
            self._stats_thread = threading.Thread(
                target=self._publish_stats, name="serving-stats", daemon=True
            )
            self._stats_thread.start()

    # -- models ----------------------------------------------------------------------------

    @property
    def bundle(self) -> ModelBundle | None:
        return self._bundle

    @property
    def ready(self) -> bool:
        return self._bundle is not None

    def install(self, bundle: ModelBundle) -> None:
        """Serve from ``bundle`` from now on (one reference assignment: atomic for readers).

        In ``shadow.mode: process`` the challenger is handed to a child process first; the
        replaced bundle's child is closed once no queued shadow job needs it.
        """
        bundle = self._challenger_in_process(bundle)
        previous, self._bundle = self._bundle, bundle
        self.load_error = None
        if previous is not None and previous.challenger is not None:
            replaced = previous.challenger.scorer
            if bundle.challenger is None or bundle.challenger.scorer is not replaced:
                if self.shadow_runner is not None and hasattr(self.shadow_runner, "retire"):
                    self.shadow_runner.retire(replaced)
                self.breaker.reset("a new challenger was loaded")
        self._breaker_changed(None, self.breaker.state)
        if self.metrics is not None:
            # the scoring series at 0 before the first call: a burst shorter than a scrape
            # interval would otherwise appear at its final count and show no rate at all
            self.metrics.scoring_series(CHAMPION, bundle.champion.version)
            if bundle.challenger is not None:
                self.metrics.scoring_series(CHALLENGER, bundle.challenger.version)
            self.metrics.loaded(CHAMPION, bundle.champion.metric_labels())
            self.metrics.loaded(
                CHALLENGER, bundle.challenger.metric_labels() if bundle.challenger else None
            )
        self.canary.challenger_loaded(bundle.challenger)

    def _challenger_in_process(self, bundle: ModelBundle) -> ModelBundle:
        shadow = self.settings.shadow
        challenger = bundle.challenger
        if (
            shadow.mode != "process"
            or not shadow.enabled
            or challenger is None
            or isinstance(challenger.scorer, ChallengerProcess)
        ):
            return bundle
        fast = challenger.scorer
        process = ChallengerProcess(
            fast.model,
            fast.schema_numeric,
            fast.schema_categorical,
            scorer_options={
                "enabled": self.settings.single_record_fast_path,
                "small_batch": DEFAULT_SMALL_BATCH,
                "n_threads": self.settings.model_threads,
            },
            call_timeout_s=shadow.call_timeout_s,
            start_timeout_s=shadow.process_start_timeout_s,
            nice=shadow.process_nice,
        )
        process.wait_ready()  # in the loading thread: the old bundle (if any) serves meanwhile
        return dataclasses.replace(
            bundle, challenger=dataclasses.replace(challenger, scorer=process)
        )

    def _breaker_changed(self, previous: str | None, state: str) -> None:
        if self.metrics is not None:
            self.metrics.breaker_state(state, changed=previous is not None)

    def failed_to_load(self, error: BaseException) -> None:
        self.load_error = f"{type(error).__name__}: {error}"
        logger.error("Models could not be loaded: %s", self.load_error)

    # -- POST /predict ---------------------------------------------------------------------

    def predict(self, payload: Any, request_id: str | None = None) -> Reply:
        """Score ``payload`` (one record object or a list of them): the champion answers, the
        challenger answers the canary's share of the records (waiting here for it)."""
        scored = self.score(payload, request_id)
        if isinstance(scored, Reply):
            return scored
        canary = None if scored.canary is None else self.canary.call(scored.canary)
        return self.answer(scored, canary)

    def score(self, payload: Any, request_id: str | None = None) -> Reply | Scored:
        """Validate and score with the champion; a ``Reply`` if the request is refused.

        The service awaits the canary's records (``Scored.canary``) between ``score`` and
        ``answer`` without blocking its event loop; ``predict`` does all three.
        """
        started = time.perf_counter()
        bundle = self._bundle
        if bundle is None:
            return self._not_ready()
        try:
            rid = self._request_id(request_id)
            validated = self.validator.validate(self._records(payload))
        except RequestRejected as exc:
            return self._reject(exc, request_id)
        scorer = bundle.champion.scorer
        tick = time.perf_counter()
        probability = scorer.predict_probability(validated.numeric, validated.categorical)
        seconds = time.perf_counter() - tick
        labels = scorer.labels(probability)
        canary = self.canary.prepare(bundle, validated, rid)
        return Scored(bundle, rid, validated, probability, labels, seconds, started, canary)

    def answer(self, scored: Scored, canary: CanaryAnswer | None = None) -> Reply:
        """Log the request, start its shadow and build the answer (``canary``: the challenger's
        call for the request's canary records, if it has any)."""
        bundle, rid, validated = scored.bundle, scored.rid, scored.validated
        champion = bundle.champion
        probability, labels = scored.probability, scored.labels
        if len(validated) >= COLUMNS_MIN_RECORDS:
            log: LogEntries = self._log_columns(
                validated, rid, champion.version, probability, labels, scored.seconds
            )
        else:
            log = self._log_records(
                validated, rid, champion.version, probability.tolist(), labels.tolist(),
                scored.seconds,
            )  # fmt: skip
        answered: np.ndarray | None = None  # canary records the challenger answered
        durable: Future | None = None
        if scored.canary is None or canary is None:
            durable = self._write_ahead(log)
            self._shadow(bundle, rid, validated.numeric, validated.categorical, log, scored)
        else:
            answered, durable = self._canary_answer(scored, canary, log)
        seconds = time.perf_counter() - scored.started
        if self.metrics is not None:
            self.metrics.scored(CHAMPION, champion.version, probability, scored.seconds)
            if validated.unseen or validated.missing:
                self.metrics.inputs(validated.unseen, validated.missing)
            by_challenger = 0 if answered is None else int(answered.sum())
            self.metrics.answered_by(CHAMPION_VARIANT, len(validated) - by_challenger)
            if by_challenger:
                self.metrics.answered_by(CHALLENGER_VARIANT, by_challenger)
            route = CHAMPION_ROUTE if scored.canary is None else CANARY_ROUTE
            self.metrics.request_seconds(route, seconds)
        if scored.canary is not None and canary is not None:
            self.canary.record(scored.canary, canary, labels, seconds)
        body = {
            "request_id": rid,
            "model_version": champion.version,
            "predictions": _predictions(rid, scored, canary, answered),
        }
        return Reply(200, orjson.dumps(body), {REQUEST_ID_HEADER: rid}, durable)

    def _write_ahead(self, log: LogEntries) -> Future | None:
        """Acknowledged durability: queue ``log`` for the write-ahead log (the answer waits
        for the returned future); buffered: nothing to wait for."""
        return None if self.acknowledged is None else self.acknowledged.write_ahead(log)

    def _canary_answer(
        self, scored: Scored, canary: CanaryAnswer, log: LogEntries
    ) -> tuple[np.ndarray, Future | None]:
        """Log the canary records with the challenger's answer (or the champion's, if its call
        failed) and shadow the others; the mask of records the challenger answered and what
        the answer waits for (acknowledged durability: both parts written ahead, each as it
        is answered)."""
        call = scored.canary
        assert call is not None
        canary_log, champion_log = split_entries(log, call.mask)
        if canary.outcome == CANARY_OK:
            fill_challenger(
                canary_log, OK, canary.probability, canary.label, call.model_version,
                canary.latency_ms,
            )  # fmt: skip
            set_variant(canary_log, CHALLENGER_VARIANT)
            if self.metrics is not None:
                assert canary.probability is not None
                self.metrics.scored(
                    CHALLENGER, call.model_version, canary.probability, canary.latency_ms / 1000
                )
        elif canary.outcome == CANARY_SKIPPED:
            fill_challenger(canary_log, SKIPPED)
        else:
            fill_challenger(canary_log, FAILED, latency_ms=canary.latency_ms)
        durable = [self._write_ahead(canary_log)]
        self._append([canary_log])
        rest = ~call.mask
        if rest.any():
            durable.append(self._write_ahead(champion_log))
            positions = np.flatnonzero(rest).tolist()
            categorical = [
                [column[i] for i in positions] for column in scored.validated.categorical
            ]
            shadowed = dataclasses.replace(
                scored, probability=scored.probability[rest], labels=scored.labels[rest]
            )
            numeric = scored.validated.numeric[rest]
            self._shadow(scored.bundle, scored.rid, numeric, categorical, champion_log, shadowed)
        answered = call.mask if canary.outcome == CANARY_OK else np.zeros_like(call.mask)
        return answered, all_durable(durable)

    def _records(self, payload: Any) -> list[Any]:
        if isinstance(payload, list):
            return payload
        if isinstance(payload, dict):
            return [payload]
        raise RequestRejected(
            422,
            "records must be a record object or a list of them",
            [Problem(None, None, f"expected an object or an array, got {json_type(payload)}")],
        )

    def _request_id(self, header: str | None) -> str:
        if header is None or header == "":
            # a random version-4 UUID without the os.urandom system call of uuid.uuid4()
            return uuid.UUID(int=self._random_bits(128), version=4).hex
        if not REQUEST_ID_PATTERN.fullmatch(header):
            raise RequestRejected(
                400,
                f"header {REQUEST_ID_HEADER} must be 1-128 characters of letters, digits, "
                "'.', '_', ':' or '-'",
            )
        return header

    def _log_columns(
        self,
        validated: ValidatedRecords,
        rid: str,
        version: str,
        probability: np.ndarray,
        labels: np.ndarray,
        seconds: float,
    ) -> dict[str, Any]:
        """A batch's log columns, from the validated arrays (the writer converts them in bulk)."""
        columns: dict[str, Any] = {
            REQUEST_ID: rid,
            RECORD_INDEX: np.arange(len(validated), dtype=np.int64),
            CHAMPION_PROBABILITY: probability,
            CHAMPION_LABEL: labels,
            CHAMPION_MODEL_VERSION: version,
            CHAMPION_LATENCY_MS: seconds * 1000.0,
        }
        # features as sent: NaN (missing) becomes null, unseen categories stay as they came
        numeric = validated.numeric
        for j, name in enumerate(self._numeric_features):
            columns[name] = numeric[:, j]
        columns.update(zip(self._categorical_features, validated.categorical, strict=True))
        if validated.ids is not None and self._id_key is not None:
            columns[self._id_key] = validated.ids
        if validated.times is not None:
            columns[EVENT_TIME] = validated.times
        return columns

    def _log_records(
        self,
        validated: ValidatedRecords,
        rid: str,
        version: str,
        probabilities: list[float],
        labels: list[int],
        seconds: float,
    ) -> list[dict[str, Any]]:
        """The request's own record dicts, completed with the champion's log columns."""
        latency_ms = seconds * 1000.0
        move_time = self._timestamp_key != EVENT_TIME
        records = validated.records
        for index, record in enumerate(records):
            if move_time:
                record[EVENT_TIME] = record.pop(self._timestamp_key, None)
            record[REQUEST_ID] = rid
            record[RECORD_INDEX] = index
            record[CHAMPION_PROBABILITY] = probabilities[index]
            record[CHAMPION_LABEL] = labels[index]
            record[CHAMPION_MODEL_VERSION] = version
            record[CHAMPION_LATENCY_MS] = latency_ms
        return records

    def _shadow(
        self,
        bundle: ModelBundle,
        rid: str,
        numeric: np.ndarray,
        categorical: list[list[str | None]],
        log: LogEntries,
        scored: Scored,
    ) -> None:
        """Offer the champion-answered records to the challenger in shadow (or log them)."""
        challenger = bundle.challenger
        runner = self.shadow_runner
        remote = getattr(runner, "remote", False)
        if runner is None or (challenger is None and not remote):
            fill_challenger(log, DISABLED)
            self._append([log])
            if self.metrics is not None:
                self.metrics.shadow(DISABLED, numeric.shape[0])
            return
        job = ShadowJob(
            rid,
            challenger.scorer if challenger is not None else None,
            challenger.version if challenger is not None else "",
            numeric,
            categorical,
            payload=(log, scored.probability, scored.labels),
        )
        runner.offer(job)

    def finish_shadow(self, finished: list[tuple[ShadowJob, ShadowResult]]) -> None:
        """Fill the challenger columns of finished jobs' log entries; hand them to the log."""
        logs: list[LogEntries] = []
        compared: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        by_status: dict[str, int] = {}
        for job, result in finished:
            log, champion_probability, champion_labels = job.payload
            if result.status == OK:
                assert result.probability is not None and result.label is not None
                fill_challenger(
                    log,
                    OK,
                    result.probability,
                    result.label,
                    job.model_version,
                    result.latency_ms,
                )
                compared.append(
                    (champion_probability, champion_labels, result.probability, result.label)
                )
            else:
                latency = result.latency_ms if result.status == FAILED else None
                fill_challenger(log, result.status, latency_ms=latency)
            by_status[result.status] = by_status.get(result.status, 0) + len(job)
            logs.append(log)
        if self.metrics is not None:
            self._shadow_metrics(finished, compared, by_status)
        self._append(logs)

    def _shadow_metrics(
        self,
        finished: list[tuple[ShadowJob, ShadowResult]],
        compared: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
        by_status: dict[str, int],
    ) -> None:
        assert self.metrics is not None
        for status, count in by_status.items():
            self.metrics.shadow(status, count)
        if not compared:
            return
        champion_p = np.concatenate([c[0] for c in compared])
        champion_l = np.concatenate([c[1] for c in compared])
        challenger_p = np.concatenate([c[2] for c in compared])
        challenger_l = np.concatenate([c[3] for c in compared])
        # one scoring call scored all ok jobs: count it once, at its latency
        ok_jobs = [(job, result) for job, result in finished if result.status == OK]
        job, result = ok_jobs[0]
        self.metrics.scored(
            CHALLENGER, job.model_version, challenger_p, (result.latency_ms or 0.0) / 1000
        )
        self.metrics.compared(champion_l, challenger_l, np.abs(champion_p - challenger_p))

    def _append(self, logs: list[LogEntries]) -> None:
        """Hand log entries to the writer: record lists together, column blocks one by one."""
        records: list[dict[str, Any]] = []
        for log in logs:
            if isinstance(log, list):
                records.extend(log)
                continue
            try:
                self.writer.append_columns(log)
            except Exception:
                logger.exception(
                    "Could not queue %d records for the prediction log", len(log[RECORD_INDEX])
                )
        if records:
            try:
                self.writer.append(records)
            except Exception:
                # The answer is already computed; a closed or broken writer must not turn it
                # into a 500. The writer's own counters and logs report lost records.
                logger.exception("Could not queue %d records for the prediction log", len(records))

    # -- POST /feedback --------------------------------------------------------------------

    def feedback(self, payload: Any) -> Reply:
        try:
            labels = parse_labels(
                payload, self.settings.feedback_max_items, self.schema.positive_class
            )
        except RequestRejected as exc:
            return self._reject(exc, None, reason="feedback_validation")
        durable = None
        if self.acknowledged is None:
            self.ground_truth.append(labels)
        else:
            durable = self.acknowledged.labels(labels)
        if self.metrics is not None:
            self.metrics.feedback.inc(len(labels))
        return Reply(200, {"accepted": len(labels)}, durable=durable)

    # -- GET /model_info -------------------------------------------------------------------

    def model_info(self, *, private: bool = True) -> dict[str, Any]:
        """What is loaded and how the shadow and the log fare; ``private=False`` leaves out
        file paths and process ids (``/model_info`` without the token)."""
        info = self._model_info()
        return info if private else _without_paths(info)

    def _model_info(self) -> dict[str, Any]:
        bundle = self._bundle
        shadow = self.settings.shadow
        runner = self.shadow_runner
        return {
            "ready": bundle is not None,
            "load_error": self.load_error,
            "loaded_at": bundle.loaded_at if bundle else None,
            "source": bundle.source if bundle else None,
            "champion": bundle.champion.describe() if bundle else None,
            "challenger": self._describe_challenger(bundle),
            "challenger_error": bundle.challenger_error if bundle else None,
            "shadow": {
                "enabled": shadow.enabled and runner is not None,
                "mode": shadow.mode,
                "sample_rate": shadow.sample_rate,
                "queue_records": shadow.queue_records,
                "queued_records": getattr(runner, "queued_records", None),
                "counts": dict(getattr(runner, "counts", {})),
                "circuit_breaker": self.breaker.snapshot(),
            },
            "canary": self.canary.snapshot(),
            "prediction_log": {
                "path": str(self.settings.prediction_log.path),
                **vars(self.writer.stats()),
            },
            "ground_truth": {"path": str(self.settings.ground_truth.path)},
            "durability": (
                self.acknowledged.describe() if self.acknowledged else {"mode": "buffered"}
            ),
            "worker_pid": os.getpid(),
        }

    def _describe_challenger(self, bundle: ModelBundle | None) -> dict[str, Any] | None:
        if bundle is not None and bundle.challenger is not None:
            return bundle.challenger.describe()
        if getattr(self.shadow_runner, "remote", False):
            return {
                "role": CHALLENGER,
                "remote": True,
                "model_version": getattr(self.shadow_runner, "last_model_version", None),
            }
        return None

    # -- helpers ---------------------------------------------------------------------------

    def _not_ready(self) -> Reply:
        message = "models are not loaded yet; see GET /model_info and /readyz"
        if self.load_error:
            message = f"models could not be loaded: {self.load_error}"
        if self.metrics is not None:
            self.metrics.rejected.labels("not_ready").inc()
        return Reply(503, {"error": message})

    def _reject(
        self, exc: RequestRejected, request_id: str | None, reason: str | None = None
    ) -> Reply:
        if self.metrics is not None:
            kind = reason or {400: "bad_request", 413: "too_large", 422: "validation"}.get(
                exc.status, str(exc.status)
            )
            self.metrics.rejected.labels(kind).inc()
        body = exc.to_json()
        headers = {}
        if request_id and REQUEST_ID_PATTERN.fullmatch(request_id):
            headers[REQUEST_ID_HEADER] = request_id
        return Reply(exc.status, body, headers)

    def _queue_gauge(self, queued: int) -> None:
        if self.metrics is not None:
            self.metrics.shadow_queue.set(queued)

    def _publish_stats(self) -> None:
        while not self._stats_stop.wait(1.0):
            try:
                assert self.metrics is not None
                self.metrics.writer_stats(self.writer.stats())
            except Exception:
                logger.debug("publishing writer stats failed", exc_info=True)

    def close(self, grace_s: float | None = None) -> None:
        """Finish the shadow queue (or shed it), then flush and close both logs."""
        grace = self.settings.shadow.shutdown_grace_s if grace_s is None else grace_s
        self.canary.close()
        if self.shadow_runner is not None:
            self.shadow_runner.stop(grace)
        bundle = self._bundle
        if bundle is not None and isinstance(
            getattr(bundle.challenger, "scorer", None), ChallengerProcess
        ):
            bundle.challenger.scorer.close()  # type: ignore[union-attr]
        self._stats_stop.set()
        self.writer.close()
        self.ground_truth.close()
        if self.acknowledged is not None:
            self.acknowledged.close()  # after the writers' final flushes
        if self.metrics is not None:
            self.metrics.writer_stats(self.writer.stats())


def _without_paths(value: Any) -> Any:
    """``value`` without private keys (paths, pids) and with path-like text blanked."""
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if k not in _PRIVATE_KEYS}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    if isinstance(value, str):
        return _PATH_TEXT.sub("<path>", value)
    return value
