# ruff: noqa: PLC0415
# (imports inside functions on purpose: BentoML's arbiter imports this module only to read the
# service's configuration; models, pandas, torch and Prometheus belong in the worker)
"""The BentoML service: ``bentoml serve`` from the project root (see bentofile.yaml, docs/serving.md).

Routes: ``POST /predict``, ``POST /feedback``, ``POST /reload`` (BentoML APIs), ``GET
/model_info`` (a mounted Starlette route), and BentoML's own ``/healthz``, ``/livez``,
``/readyz`` (false until the models are loaded) and ``/metrics``. ``RequestGuard``
(``http_guard.py``) stands in front of all of them: body size, content type, admission, rate
limit and the drain after SIGTERM.

This module is imported by BentoML's arbiter process too (to read the worker count); it keeps
its module-level imports light and creates everything heavy (models, log writers, the shadow
thread, Prometheus metrics) in the worker, inside ``ChurnService.__init__``: a prediction-log
writer does not survive a fork, and Prometheus must see BentoML's multiprocess directory.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import sys
import threading
import typing as t

import bentoml
from pydantic import WithJsonSchema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import shadowdrift  # noqa: F401  (telemetry switches)
from shadowdrift.serving.config import REQUEST_BUCKETS, ServingSettings, load_serving_settings
from shadowdrift.serving.http_guard import GuardState, RequestGuard, SigtermDrain, TokenBuckets

if t.TYPE_CHECKING:
    from shadowdrift.serving.core import Reply, ServingCore

SETTINGS: ServingSettings = load_serving_settings()


def _telemetry_off() -> None:
    """BentoML's CLI caches its do-not-track switch before the service is imported; refresh it."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    try:
        from bentoml._internal.utils.analytics import usage_stats

        usage_stats.do_not_track.cache_clear()
    except (ImportError, AttributeError):  # pragma: no cover - other BentoML versions
        pass


_telemetry_off()

logger = logging.getLogger("shadowdrift.serving")

TELEMETRY_ENVS = [
    {"name": "BENTOML_DO_NOT_TRACK", "value": "True"},
    {"name": "DO_NOT_TRACK", "value": "1"},
    {"name": "KEDRO_DISABLE_TELEMETRY", "value": "true"},
    {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
    {"name": "NML_DISABLE_USAGE_LOGGING", "value": "1"},
]
# glibc gives threads that allocate their own malloc arenas, which keep freed memory apart;
# the worker's threads (shadow, log flush, loader) need no more than two. A small saving (about
# 8 MB after the benchmark), but the budget is tight. An explicit setting in the environment wins.
WORKER_ENVS = [*TELEMETRY_ENVS, {"name": "MALLOC_ARENA_MAX", "value": "2"}]
JSON = "application/json"

# Parsed as plain JSON (pydantic checks nothing here, which is about three times faster for a
# batch of 1,000 than validating list[dict]); ServingCore checks every record against the
# schema and answers 422 naming the field. The JSON schema is for the OpenAPI page only.
RecordsInput = t.Annotated[
    t.Any,
    WithJsonSchema(
        {
            "description": "One record (an object of feature values) or a list of them",
            "anyOf": [
                {"type": "object", "additionalProperties": True},
                {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            ],
        }
    ),
]


class PredictInput(bentoml.IODescriptor):
    """``POST /predict``'s body, parsed with orjson instead of BentoML's pydantic parse.

    For a 1,000-record batch pydantic's JSON parse of ``Any`` costs 2-3 ms of the event loop's
    time against orjson's 0.9 ms (docs/serving.md, "Benchmarks"). A body that is not a JSON
    object with ``records`` goes through BentoML's own parse, so malformed requests get
    BentoML's usual 400s.
    """

    records: RecordsInput

    @classmethod
    async def from_http_request(cls, request: Request, serde: t.Any) -> t.Any:
        import orjson

        content_type = request.headers.get("content-type", "application/json")
        if content_type.split(";")[0].strip() == JSON:
            try:
                data = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                data = None
            if type(data) is dict and "records" in data:
                return cls.model_construct(records=data["records"])
        return await super().from_http_request(request, serde)


def _response(reply: Reply, ctx: bentoml.Context | None = None) -> Response:
    if ctx is not None:
        # BentoML copies the context's status onto a returned Response when the API takes ctx
        ctx.response.status_code = reply.status
    return Response(
        reply.body_bytes(), status_code=reply.status, media_type=JSON, headers=reply.headers
    )


async def model_info_route(request: Request) -> Response:
    """``GET /model_info``: versions, aliases, run ids, load time, shadow and log state.

    File paths and process ids only with ``Authorization: Bearer <reload token>``.
    """
    service = bentoml.get_current_service()
    core = getattr(service, "core", None)
    if core is None:
        return JSONResponse({"ready": False, "error": "service is starting"}, status_code=503)
    private = _token_matches(request.headers.get("authorization", ""))
    info = core.model_info(private=private)
    info["admission"] = GUARD_STATE.snapshot()
    return Response(_dumps(info), status_code=200, media_type=JSON)


def _token_matches(authorization: str) -> bool:
    expected = SETTINGS.reload_token_value()
    scheme, _, token = authorization.partition(" ")
    return (
        expected is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


def _dumps(body: t.Any) -> bytes:
    import orjson

    return orjson.dumps(body, default=str)


MODEL_INFO_OPENAPI = {
    "get": {
        "tags": ["Service APIs"],
        "summary": "What is loaded, shadow, log and admission state",
        "description": "File paths and process ids only with Authorization: Bearer <reload token>.",
        "operationId": "shadowdrift__model_info",
        "parameters": [
            {
                "name": "Authorization",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": {
                "description": "Models loaded",
                "content": {JSON: {"schema": {"type": "object"}}},
            },
            "503": {
                "description": "Still starting",
                "content": {JSON: {"schema": {"type": "object"}}},
            },
        },
    }
}

# This worker's admission state: the guard middleware (below) and /model_info share it.
GUARD_STATE = GuardState(SETTINGS.admission.max_in_flight, SETTINGS.admission.retry_after_s)

extra_routes = Starlette(routes=[Route("/model_info", model_info_route, methods=["GET"])])

SHADOW_SERVICE = SETTINGS.shadow.enabled and SETTINGS.shadow.mode == "service"


@bentoml.service(
    name="shadowdrift_challenger",
    workers=1,
    threads=1,
    traffic={"timeout": SETTINGS.timeout_s},
    # BentoML's client to a dependency reopens its session every `max_requests` calls, failing
    # the calls in flight at that moment; a shadow sends one call per request.
    runner_connection={"max_requests": 1_000_000_000},
    envs=TELEMETRY_ENVS,
)
class ChallengerService:
    """``serving.shadow.mode: service``: the challenger in its own process (bentoml.depends)."""

    def __init__(self) -> None:
        from shadowdrift.schema import parse_schema
        from shadowdrift.serving import model_store
        from shadowdrift.serving.bundle import make_scorer

        os.environ.setdefault("OMP_NUM_THREADS", str(SETTINGS.model_threads))
        reference = SETTINGS.models.get("challenger") or ""
        model, stored = model_store.load_stored(model_store.resolve(reference, alias="challenger"))
        self.version = stored.registry_version
        self.scorer = make_scorer(model, parse_schema(SETTINGS.schema), SETTINGS)
        logger.info("Challenger service: %s (fast path %s)", stored.bento_tag, self.scorer.path)

    @bentoml.api
    async def score(self, numeric: t.Any, categorical: t.Any) -> dict[str, t.Any]:
        import numpy as np

        probability = self.scorer.predict_probability(
            np.asarray(numeric, dtype=np.float64), categorical
        )
        return {
            "probability": probability,
            "label": self.scorer.labels(probability),
            "model_version": self.version,
        }


@bentoml.service(
    name="shadowdrift",
    workers=SETTINGS.workers,
    threads=SETTINGS.threads,
    traffic={"timeout": SETTINGS.timeout_s},
    # the default of `bentoml serve` without --host (BentoML's own default is 0.0.0.0)
    http={"host": SETTINGS.host},
    # BentoML's access log writes a line per request; the prediction log already records
    # every scored request, and /metrics counts all of them (serving.access_log to turn it on)
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML's request-duration histogram with a bucket at the 200 ms latency SLO
    # (monitoring/rules): its default buckets would leave p95 to interpolate over 100-250 ms
    metrics={
        "enabled": True,
        "namespace": "bentoml_service",
        "duration": {"buckets": [b for b in REQUEST_BUCKETS if b >= 0.005]},
    },
    envs=WORKER_ENVS,
    labels={"project": "shadowdrift"},
)
@bentoml.asgi_app(extra_routes, path="/")
class ChurnService:
    """The champion answers; the challenger scores the same records in shadow."""

    if SHADOW_SERVICE:
        challenger_service = bentoml.depends(ChallengerService)

    def __init__(self) -> None:
        # OpenMP (scikit-learn) and torch read these when they are first loaded, which is
        # below; one thread per worker keeps single-record latency flat on a shared machine.
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(variable, str(SETTINGS.model_threads))
        from shadowdrift.serving.core import ServingCore
        from shadowdrift.serving.metrics import ServingMetrics

        # BentoML configures logging with the root at WARNING; the service's own operational
        # lines (models loaded, circuit breaker, drain) follow BentoML's level (--quiet, --debug)
        logging.getLogger("shadowdrift").setLevel(logging.getLogger("bentoml").getEffectiveLevel())
        self._limit_threads()
        # The request thread shares the GIL with the shadow and log-flush threads. Python's
        # default 5 ms switch interval lets them hold it for whole bursts while an answer
        # waits; 0.5 ms cut the shadow's cost on 1,000-record batches from +11 ms to +2 ms
        # (docs/serving.md).
        sys.setswitchinterval(SETTINGS.gil_switch_interval_s)
        self.metrics = ServingMetrics()
        GUARD_STATE.on_refused = self.metrics.refused_request
        # created in the worker's event loop, in the main thread, after uvicorn set its handler
        if not SigtermDrain(GUARD_STATE, SETTINGS.shutdown_drain_s).install():
            logger.warning("SIGTERM drain not installed (not the main thread)")
        self.core: ServingCore = ServingCore(
            SETTINGS, metrics=self.metrics, start_shadow=not SHADOW_SERVICE
        )
        if SHADOW_SERVICE:
            from shadowdrift.serving.remote_shadow import RemoteShadow

            shadow = SETTINGS.shadow
            self.core.shadow_runner = RemoteShadow(
                self.core.finish_shadow,
                _ChallengerClient(self),
                queue_records=shadow.queue_records,
                max_in_flight=shadow.service_max_in_flight,
                timeout_s=min(shadow.max_delay_s, shadow.call_timeout_s),
                sample_rate=shadow.sample_rate,
                breaker=self.core.breaker,
            )
        from concurrent.futures import ThreadPoolExecutor

        # Batches for a champion whose scoring holds no GIL (the C forest kernel) are scored
        # off the event loop, which parses the next request meanwhile (docs/serving.md)
        self._batch_pool = ThreadPoolExecutor(
            max_workers=SETTINGS.batch_threads, thread_name_prefix="batch-scoring"
        )
        # /reload and the store watch both load and swap; one at a time
        self._reload_lock = threading.Lock()
        # Load in the background: the worker starts answering /healthz at once and /readyz
        # turns true when the models are in (a cold load takes a few seconds).
        self._watch_stop = threading.Event()
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    @staticmethod
    def _limit_threads() -> None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=SETTINGS.model_threads)

    def _load(self) -> None:
        from shadowdrift.serving.bundle import load_bundle, stored_tags

        seen = stored_tags(SETTINGS)
        try:
            bundle = load_bundle(SETTINGS, load_challenger=not SHADOW_SERVICE)
        except Exception as exc:
            self.core.failed_to_load(exc)
            return
        self._limit_torch()
        self.core.install(bundle)
        _freeze_heap()
        if SETTINGS.reload_watch_interval_s > 0:
            threading.Thread(
                target=self._watch_store, args=(seen,), name="model-store-watch", daemon=True
            ).start()

    def _reload_now(self, source: str) -> None:
        """Load the configured models while the old ones answer, then swap (one at a time)."""
        from shadowdrift.serving.bundle import load_bundle

        with self._reload_lock:
            try:
                bundle = load_bundle(
                    SETTINGS,
                    source=source,
                    use_bento_aliases=False,
                    load_challenger=not SHADOW_SERVICE,
                )
            except Exception:
                self.metrics.reloads.labels("failed").inc()
                raise
            self._limit_torch()
            self.core.install(bundle)
            _freeze_heap()
            self.metrics.reloads.labels("ok").inc()

    def _watch_store(self, seen: dict[str, str | None]) -> None:
        """Reload when the configured tags resolve to other models than when last looked.

        Compared with what the store said, not with what is loaded, so a model that cannot be
        loaded is tried once per change rather than on every tick.
        """
        from shadowdrift.serving.bundle import stored_tags

        interval = SETTINGS.reload_watch_interval_s
        logger.info("Watching the model store every %g s for new models", interval)
        while not self._watch_stop.wait(interval):
            try:
                now = stored_tags(SETTINGS)
            except Exception:
                logger.exception("Could not read the model store; still serving")
                continue
            if now == seen:
                continue
            logger.info("The model store moved (%s -> %s): reloading", seen, now)
            seen = now
            try:
                self._reload_now("store")
            except Exception:
                logger.exception("Reload after a store change failed; still serving the old models")

    @staticmethod
    def _limit_torch() -> None:
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(SETTINGS.model_threads)

    async def __is_ready__(self) -> bool:
        return self.core.ready

    @bentoml.api(route="/predict", input_spec=PredictInput)
    async def predict(self, records: RecordsInput, ctx: bentoml.Context) -> dict[str, t.Any]:
        """The positive class's probability and the label per record, from the champion.

        Body: ``{"records": [{feature: value, ...}, ...]}`` or ``{"records": {...}}``; optional
        header ``X-Request-ID``. See docs/serving.md for the rules and the answer's format.
        """
        request_id = ctx.request.headers.get("x-request-id")
        threshold = SETTINGS.batch_thread_min_records
        bundle = self.core.bundle
        if (
            threshold
            and isinstance(records, list)
            and len(records) >= threshold
            and bundle is not None
            and bundle.champion.scorer.releases_gil
        ):
            # the batch thread also waits for the canary's records, if the batch has any
            reply = await asyncio.get_running_loop().run_in_executor(
                self._batch_pool, self.core.predict, records, request_id
            )
            reply = await self._acknowledged(reply)
            return _response(reply, ctx)  # type: ignore[return-value]
        from shadowdrift.serving.core import Reply

        scored = self.core.score(records, request_id)
        if isinstance(scored, Reply):
            return _response(scored, ctx)  # type: ignore[return-value]
        # the challenger answers the canary's records off the event loop, within its timeout
        canary = None if scored.canary is None else await self.core.canary.call_async(scored.canary)
        reply = await self._acknowledged(self.core.answer(scored, canary))
        return _response(reply, ctx)  # type: ignore[return-value]

    @bentoml.api(route="/feedback")
    async def feedback(
        self,
        request_id: t.Any = None,
        label: t.Any = None,
        record_index: t.Any = None,
        labels: t.Any = None,
    ) -> dict[str, t.Any]:
        """Ground truth for an answered request: ``{"request_id", "label"[, "record_index"]}``.

        Or several at once: ``{"labels": [{...}, ...]}``. Appended to the ground-truth log.
        """
        if labels is not None:
            payload: t.Any = {"labels": labels}
        else:
            payload = {
                key: value
                for key, value in (
                    ("request_id", request_id),
                    ("label", label),
                    ("record_index", record_index),
                )
                if value is not None
            }
        reply = await self._acknowledged(self.core.feedback(payload))
        return _response(reply)  # type: ignore[return-value]

    async def _acknowledged(self, reply: Reply) -> Reply:
        """``serving.log.durability: acknowledged``: the answer once its records are fsynced
        (the write-ahead log's committer resolves the future; the event loop does not block),
        a 503 if they cannot be."""
        if reply.durable is None:
            return reply
        try:
            await asyncio.wrap_future(reply.durable)
        except Exception as exc:
            return _withheld(reply, exc, self.metrics)
        return reply

    @bentoml.api(route="/reload")
    async def reload(self, ctx: bentoml.Context, source: str = "store") -> dict[str, t.Any]:
        """Reload champion and challenger (``source``: store, or registry to re-import first).

        Needs ``Authorization: Bearer <token>``; in-flight requests finish on the old models.
        """
        from shadowdrift.serving.config import RELOAD_SOURCES
        from shadowdrift.serving.core import Reply

        denied = _check_token(ctx.request.headers.get("authorization", ""))
        if denied is not None:
            return _response(denied, ctx)  # type: ignore[return-value]
        if source not in RELOAD_SOURCES:
            shown = repr(source)[:80]
            return _response(  # type: ignore[return-value]
                Reply(
                    422,
                    {
                        "error": f"source must be one of {list(RELOAD_SOURCES)}, got {shown}",
                        "detail": [{"loc": ["source"], "msg": "unknown reload source"}],
                    },
                ),
                ctx,
            )
        try:
            # a worker thread: requests keep being answered (from the old bundle) meanwhile
            await asyncio.to_thread(self._reload_now, source)
        except Exception as exc:
            logger.exception("Reload from %s failed; still serving the previous models", source)
            return _response(  # type: ignore[return-value]
                Reply(500, {"error": f"reload failed, previous models still serve: {exc}"}),
                ctx,
            )
        return _response(Reply(200, _model_info_json(self.core)), ctx)  # type: ignore[return-value]

    @bentoml.on_shutdown
    async def shutdown(self) -> None:
        """Let the shadow finish (or shed) its queue, then flush and close both logs."""
        self._watch_stop.set()
        drain = getattr(self.core.shadow_runner, "drain", None)
        if drain is not None:
            await drain(SETTINGS.shadow.shutdown_grace_s)
        await asyncio.to_thread(self._batch_pool.shutdown, True)
        await asyncio.to_thread(self.core.close)


def _withheld(reply: Reply, exc: BaseException, metrics: t.Any) -> Reply:
    """The 503 that replaces an answer whose records could not be made durable."""
    from shadowdrift.serving.core import REQUEST_ID_HEADER, Reply

    logger.error("Answer withheld: its records could not be made durable (%s)", exc)
    metrics.rejected.labels("not_durable").inc()
    headers = {k: v for k, v in reply.headers.items() if k == REQUEST_ID_HEADER}
    return Reply(
        503,
        {
            "error": "the records could not be written to the log durably, so the answer is "
            f"withheld (serving.log.durability: acknowledged); retry: {exc}"
        },
        {**headers, "Retry-After": "1"},
    )


def _check_token(authorization: str) -> Reply | None:
    from shadowdrift.serving.core import Reply

    expected = SETTINGS.reload_token_value()
    if expected is None:
        return Reply(
            403,
            {
                "error": "reload is disabled: set the environment variable "
                f"{SETTINGS.reload_token_env} (or serving.reload.token) and restart"
            },
        )
    if not _token_matches(authorization):
        return Reply(
            401,
            {"error": "missing or wrong token: send Authorization: Bearer <token>"},
            {"WWW-Authenticate": "Bearer"},
        )
    return None


class _ChallengerClient:
    """Resolves the dependency's async client when first used (after BentoML connected it)."""

    def __init__(self, service: t.Any) -> None:
        self._service = service

    async def score(self, **kwargs: t.Any) -> t.Any:
        return await self._service.challenger_service.to_async.score(**kwargs)


def _freeze_heap() -> None:
    """Move everything alive now (modules, models) out of the garbage collector's way.

    A 1,000-record request allocates tens of thousands of objects; each collection of the
    oldest generation would otherwise walk every object of scikit-learn, torch and pandas too.
    Unfreezing first lets a reload's replaced models be collected.
    """
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _model_info_json(core: ServingCore) -> t.Any:
    import orjson

    return orjson.loads(_dumps(core.model_info()))


class _GuardedService(type(ChurnService)):  # type: ignore[misc]
    """BentoML's service object, with ``RequestGuard`` in front of its whole ASGI app.

    In front of BentoML's own middlewares too (``add_asgi_middleware`` puts a middleware
    behind them): BentoML's timeout middleware runs each request in a task of its own, so only
    from out here does the in-flight count see the requests queued in the worker, and a
    refusal costs no tracing span, metrics update or task. ``__slots__ = ()`` keeps the layout
    of BentoML's (slotted) class, so the object can change its class in place.
    """

    __slots__ = ()

    @property
    def openapi_spec(self) -> t.Any:
        """BentoML's OpenAPI document with ``GET /model_info`` (a mounted route) added."""
        from bentoml._internal.service.openapi.specification import PathItem
        from bentoml._internal.utils.cattr import bentoml_cattr

        spec = super().openapi_spec
        spec.paths["/model_info"] = bentoml_cattr.structure(MODEL_INFO_OPENAPI, PathItem)
        return spec

    def to_asgi(self, is_main: bool = True) -> t.Any:
        rate_limit = SETTINGS.rate_limit
        return RequestGuard(
            super().to_asgi(is_main),
            state=GUARD_STATE,
            max_body_bytes=SETTINGS.request.max_body_bytes,
            rate_limit=(
                TokenBuckets(rate_limit.requests_per_s, rate_limit.burst, rate_limit.max_clients)
                if rate_limit.enabled
                else None
            ),
            client_header=rate_limit.header,
        )


ChurnService.__class__ = _GuardedService
