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
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from shadowdrift.prediction_log import (
    CHALLENGER_LABEL,
    CHALLENGER_LATENCY_MS,
    CHALLENGER_MODEL_VERSION,
    CHALLENGER_PROBABILITY,
    CHALLENGER_STATUS,
    CHAMPION_LABEL,
    CHAMPION_LATENCY_MS,
    CHAMPION_MODEL_VERSION,
    CHAMPION_PROBABILITY,
    COLUMNS_MIN_RECORDS,
    EVENT_TIME,
    RECORD_INDEX,
    REQUEST_ID,
    LogSchema,
    PredictionLogWriter,
)
from shadowdrift.prediction_wal import AcknowledgedLogs, open_durable_logs
from shadowdrift.schema import DataSchema, parse_schema
from shadowdrift.serving import model_store as store
from shadowdrift.serving.challenger_process import ChallengerProcess
from shadowdrift.serving.circuit_breaker import CircuitBreaker
from shadowdrift.serving.config import ServingSettings, mlflow_uris
from shadowdrift.serving.fast_path import DEFAULT_SMALL_BATCH, FastScorer
from shadowdrift.serving.feedback import GroundTruthWriter, parse_labels
from shadowdrift.serving.metrics import ServingMetrics
from shadowdrift.serving.request_validation import (
    Problem,
    RequestRejected,
    RequestValidator,
    ValidatedRecords,
    json_type,
)
from shadowdrift.serving.shadow import FAILED, OK, ShadowJob, ShadowResult, ShadowRunner

logger = logging.getLogger(__name__)

# path-like text in /model_info without the token (file paths inside error messages too)
_PATH_TEXT = re.compile(r"file://[^\s'\",;)]+|(?<![\w:.])/[^\s'\",;)]+")
_PRIVATE_KEYS = frozenset({"path", "worker_pid", "pid"})

CHAMPION = "champion"
CHALLENGER = "challenger"
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
class LoadedModel:
    """A model ready to score, with where it came from."""

    role: str
    scorer: FastScorer
    version: str
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "model_version": self.version,
            **dict(self.provenance),
            "candidate": self.scorer.model.name,
            "kind": self.scorer.model.kind,
            "threshold": self.scorer.threshold,
            "fast_path": self.scorer.path,
            "fast_path_fallback_reason": self.scorer.fallback_reason,
            "forest_kernel": self.scorer.kernel,
            "forest_kernel_missing": self.scorer.kernel_missing,
            # whether scoring releases the GIL, i.e. large batches go to a batch thread
            "releases_gil": self.scorer.releases_gil,
            **(
                {"process": self.scorer.describe_process()}
                if isinstance(self.scorer, ChallengerProcess)
                else {}
            ),
        }

    def metric_labels(self) -> tuple[str, ...]:
        return (
            self.role,
            self.version,
            str(self.provenance.get("run_id", "")),
            str(self.scorer.model.name),
            str(self.provenance.get("bento_tag", "")),
        )


@dataclass(frozen=True)
class ModelBundle:
    """The champion and (optionally) the challenger that answer together."""

    champion: LoadedModel
    challenger: LoadedModel | None
    loaded_at: str
    source: str
    challenger_error: str | None = None


# A request's prediction-log entries: its record dicts (small requests) or, for batches, the
# columns of the block (``PredictionLogWriter.append_columns``), filled in two steps: the
# champion's columns by the handler, the challenger's when the shadow job ends.
LogEntries = list[dict[str, Any]] | dict[str, Any]


def _fill_challenger(
    log: LogEntries,
    status: str,
    probability: np.ndarray | None = None,
    label: np.ndarray | None = None,
    version: str | None = None,
    latency_ms: float | None = None,
) -> None:
    """Set the challenger's log columns; the outputs only when it scored (``ok``)."""
    if isinstance(log, dict):
        log[CHALLENGER_STATUS] = status
        if status == OK:
            log[CHALLENGER_PROBABILITY] = probability
            log[CHALLENGER_LABEL] = label
            log[CHALLENGER_MODEL_VERSION] = version
        if latency_ms is not None:
            log[CHALLENGER_LATENCY_MS] = latency_ms
        return
    if status == OK:
        assert probability is not None and label is not None
        probabilities, labels = probability.tolist(), label.tolist()
        for index, record in enumerate(log):
            record[CHALLENGER_STATUS] = OK
            record[CHALLENGER_PROBABILITY] = probabilities[index]
            record[CHALLENGER_LABEL] = labels[index]
            record[CHALLENGER_MODEL_VERSION] = version
            record[CHALLENGER_LATENCY_MS] = latency_ms
        return
    for record in log:
        record[CHALLENGER_STATUS] = status
        if latency_ms is not None:
            record[CHALLENGER_LATENCY_MS] = latency_ms


def make_scorer(model: Any, schema: DataSchema, settings: ServingSettings) -> FastScorer:
    return FastScorer(
        model,
        schema.numeric_features,
        schema.categorical_features,
        enabled=settings.single_record_fast_path,
        small_batch=DEFAULT_SMALL_BATCH,
        n_threads=settings.model_threads,
    )


def bundle_from_models(
    champion: Any,
    challenger: Any | None,
    schema: DataSchema,
    settings: ServingSettings,
    *,
    versions: tuple[str, str] = ("1", "2"),
    source: str = "memory",
) -> ModelBundle:
    """A bundle of in-memory ``ChurnModel`` objects (tests, benchmarks)."""
    return ModelBundle(
        champion=LoadedModel(CHAMPION, make_scorer(champion, schema, settings), versions[0]),
        challenger=(
            None
            if challenger is None
            else LoadedModel(CHALLENGER, make_scorer(challenger, schema, settings), versions[1])
        ),
        loaded_at=datetime.now(UTC).isoformat(),
        source=source,
    )


def stored_tags(settings: ServingSettings, model_store: Any = None) -> dict[str, str | None]:
    """role -> the BentoML tag its configured reference (``:latest``) resolves to right now."""
    tags: dict[str, str | None] = {}
    for role in (CHAMPION, CHALLENGER):
        reference = settings.models.get(role)
        if reference is None:
            continue
        try:
            tags[role] = str(store.resolve(reference, model_store).tag)
        except store.ModelStoreError:
            tags[role] = None
    return tags


def loaded_tags(bundle: ModelBundle) -> dict[str, str | None]:
    """role -> the BentoML tag of the model the bundle serves."""
    tags: dict[str, str | None] = {CHAMPION: bundle.champion.provenance.get("bento_tag")}
    tags[CHALLENGER] = bundle.challenger.provenance.get("bento_tag") if bundle.challenger else None
    return tags


def load_bundle(
    settings: ServingSettings,
    *,
    source: str = "store",
    use_bento_aliases: bool = True,
    load_challenger: bool = True,
    model_store: Any = None,
) -> ModelBundle:
    """Load the configured models from the BentoML store (``source="registry"``: import first).

    ``use_bento_aliases``: prefer the versions a built Bento pinned under the aliases
    ``champion``/``challenger`` (bentofile.yaml ``models:``); a reload passes False so that the
    configured tags (``:latest``) are resolved again.
    """
    schema = parse_schema(settings.schema)
    if source == "registry":
        import_from_registry(settings, model_store=model_store)
    loaded: dict[str, LoadedModel] = {}
    challenger_error = None
    for role in (CHAMPION, CHALLENGER):
        reference = settings.models.get(role)
        if reference is None or (role == CHALLENGER and not load_challenger):
            continue
        try:
            bento_model = store.resolve(
                reference, model_store, alias=role if use_bento_aliases else None
            )
            model, stored = store.load_stored(bento_model)
        except Exception as exc:
            if role == CHAMPION:
                raise
            challenger_error = f"{type(exc).__name__}: {exc}"
            logger.warning("No challenger (%s): serving without shadow", challenger_error)
            continue
        loaded[role] = LoadedModel(
            role, make_scorer(model, schema, settings), stored.registry_version, stored.to_json()
        )
        scorer = loaded[role].scorer
        logger.info(
            "Loaded %s %s (registry version %s, %s, fast path %s%s)",
            role,
            stored.bento_tag,
            stored.registry_version,
            model.name,
            scorer.path,
            f", forest kernel {scorer.kernel}" if scorer.kernel else "",
        )
        if scorer.kernel_missing and scorer.kernel != "c":
            logger.warning("%s: trees walked in numpy (%s)", role, scorer.kernel_missing)
    return ModelBundle(
        champion=loaded[CHAMPION],
        challenger=loaded.get(CHALLENGER),
        loaded_at=datetime.now(UTC).isoformat(),
        source=source,
        challenger_error=challenger_error,
    )


def import_from_registry(
    settings: ServingSettings, *, model_store: Any = None
) -> list[dict[str, Any]]:
    """Import champion and challenger from the MLflow registry configured in conf/*/mlflow.yml."""
    # MLflow (about 1.5 s and 50 MB) only in a worker that is asked to reload from the registry
    from mlflow import MlflowClient  # noqa: PLC0415

    tracking_uri, registry_uri = mlflow_uris(settings.project_path)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    return [
        store.import_alias(
            client,
            settings.registered_model_name,
            role,
            settings.bento_model_prefix,
            model_store=model_store,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
        )
        for role in (CHAMPION, CHALLENGER)
        if settings.models.get(role) is not None
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
            self.metrics.loaded(CHAMPION, bundle.champion.metric_labels())
            self.metrics.loaded(
                CHALLENGER, bundle.challenger.metric_labels() if bundle.challenger else None
            )

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
        """Score ``payload`` (one record object or a list of them) with the champion."""
        bundle = self._bundle
        if bundle is None:
            return self._not_ready()
        try:
            rid = self._request_id(request_id)
            validated = self.validator.validate(self._records(payload))
        except RequestRejected as exc:
            return self._reject(exc, request_id)
        champion = bundle.champion
        started = time.perf_counter()
        probability = champion.scorer.predict_probability(validated.numeric, validated.categorical)
        seconds = time.perf_counter() - started
        labels = champion.scorer.labels(probability)
        probabilities, label_list = probability.tolist(), labels.tolist()
        if len(validated) >= COLUMNS_MIN_RECORDS:
            log: LogEntries = self._log_columns(
                validated, rid, champion.version, probability, labels, seconds
            )
        else:
            log = self._log_records(
                validated, rid, champion.version, probabilities, label_list, seconds
            )
        durable = self.acknowledged.write_ahead(log) if self.acknowledged else None
        self._shadow(bundle, rid, validated, log, probability, labels)
        if self.metrics is not None:
            self.metrics.scored(CHAMPION, champion.version, probability, seconds)
            if validated.unseen or validated.missing:
                self.metrics.inputs(validated.unseen, validated.missing)
        version = champion.version
        body = {
            "request_id": rid,
            "model_version": version,
            "predictions": [
                {
                    "request_id": rid,
                    "record_index": index,
                    "probability": p,
                    "label": label,
                    "model_version": version,
                }
                for index, (p, label) in enumerate(zip(probabilities, label_list, strict=True))
            ],
        }
        return Reply(200, orjson.dumps(body), {REQUEST_ID_HEADER: rid}, durable)

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
        validated: ValidatedRecords,
        log: LogEntries,
        probability: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        challenger = bundle.challenger
        runner = self.shadow_runner
        remote = getattr(runner, "remote", False)
        if runner is None or (challenger is None and not remote):
            _fill_challenger(log, DISABLED)
            self._append([log])
            if self.metrics is not None:
                self.metrics.shadow(DISABLED, len(validated))
            return
        job = ShadowJob(
            rid,
            challenger.scorer if challenger is not None else None,
            challenger.version if challenger is not None else "",
            validated.numeric,
            validated.categorical,
            payload=(log, probability, labels),
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
                _fill_challenger(
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
                _fill_challenger(log, result.status, latency_ms=latency)
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
