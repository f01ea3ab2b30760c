"""What a worker refuses before a request reaches the service: an ASGI middleware, plain Python.

``RequestGuard`` sits in front of the BentoML routes (``service.py`` adds it) and answers at
once, without reading the body, whenever the request cannot be served well:

========  ========================================================================================
status    when
========  ========================================================================================
503       the worker is draining after SIGTERM (also ``Connection: close``, so a client on a
          keep-alive connection goes elsewhere); or ``admission.max_in_flight`` POST requests are
          already being handled in this worker (``Retry-After``) instead of queueing behind them
429       the optional per-client token bucket is empty (``Retry-After``: when a token is back)
413       the body is larger than ``max_body_bytes``: by ``Content-Length`` before anything is
          read, and while it streams in (chunked or not) as soon as the count passes the limit,
          so no more than the limit is ever held (``Connection: close``: the rest is not read)
415       a POST to a JSON route with another ``Content-Type`` (BentoML would parse a multipart
          or form body itself and answer a malformed one with a 500)
========  ========================================================================================

Every refusal is counted in ``GuardState`` (and, once the service has set
``GuardState.on_refused``, in ``shadowdrift_refused_requests_total{reason}``). The middleware
is per worker: limits hold per worker process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
# a client id from a header is cut to this many characters (bounded memory per bucket)
_MAX_CLIENT_KEY = 128

OVERLOADED = "overloaded"
RATE_LIMITED = "rate_limited"
TOO_LARGE = "too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
SHUTTING_DOWN = "shutting_down"
REFUSAL_REASONS = (OVERLOADED, RATE_LIMITED, TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, SHUTTING_DOWN)


class _BodyTooLarge(BaseException):
    """Raised inside the app's ``receive`` when the body passes the limit.

    A ``BaseException`` so that BentoML's and Starlette's ``except Exception`` handlers let it
    through to the guard (they would log it and answer 500) instead of turning it into an error.
    """


class TokenBuckets:
    """One token bucket per client, at most ``max_clients`` of them (least recent forgotten)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Take a token for ``client``: 0.0 if it had one, else the seconds until it will."""
        now = self._clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


@dataclass
class GuardState:
    """A worker's admission state and refusal counts (shown in ``/model_info``)."""

    max_in_flight: int
    retry_after_s: int = 1
    in_flight: int = 0
    draining: bool = False
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSAL_REASONS, 0))
    # set by the service once its metrics exist: called with the reason of every refusal
    on_refused: Callable[[str], None] | None = None

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self.on_refused is not None:
            try:
                self.on_refused(reason)
            except Exception:
                logger.debug("counting a refusal failed", exc_info=True)

    def snapshot(self) -> dict[str, Any]:
        return {
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "draining": self.draining,
            "refused": dict(self.refused),
        }


def _media_type(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return None


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name == wanted:
            return value
    return None


async def answer(
    send: Any, status: int, body: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete JSON response (raw ASGI: no Starlette objects on the refusal path)."""
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_MEDIA_TYPE.encode()),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


class RequestGuard:
    """The ASGI middleware; see the module docstring for what it refuses and why."""

    def __init__(
        self,
        app: Any,
        *,
        state: GuardState,
        max_body_bytes: int,
        json_routes: tuple[str, ...] = ("/predict", "/feedback", "/reload"),
        rate_limit: TokenBuckets | None = None,
        client_header: str | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = max_body_bytes
        self.json_routes = frozenset(json_routes)
        self.rate_limit = rate_limit
        self.client_header = client_header.lower().encode("latin-1") if client_header else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, reason, body, headers = refusal
            self.state.refuse(reason)
            await answer(send, status, body, headers)
            return
        if not self._admitted(scope):
            await self._forward(scope, receive, send)
            return
        self.state.in_flight += 1
        try:
            await self._forward(scope, receive, send)
        finally:
            self.state.in_flight -= 1

    def _admitted(self, scope: Any) -> bool:
        """Whether the request counts as in flight (a POST to a JSON route)."""
        return scope.get("path") in self.json_routes and scope.get("method") == "POST"

    def _refusal(  # noqa: PLR0911  (one return per reason to refuse)
        self, scope: Any
    ) -> tuple[int, str, dict[str, Any], list[tuple[bytes, bytes]]] | None:
        """(status, reason, body, headers) if the request is refused before the app, else None."""
        state = self.state
        retry_after = (b"retry-after", str(state.retry_after_s).encode())
        if state.draining:
            body = {"error": "the service is shutting down; send the request to another instance"}
            return 503, SHUTTING_DOWN, body, [retry_after, (b"connection", b"close")]
        headers = scope.get("headers", ())
        length = _header(headers, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return self._too_large(f"{int(length)} bytes")
        if not self._admitted(scope):
            return None
        media_type = _media_type(headers)
        if media_type not in (None, "", JSON_MEDIA_TYPE):
            body = {
                "error": f"Content-Type must be {JSON_MEDIA_TYPE}, got {media_type[:100]!r}",
                "detail": [{"loc": ["header", "content-type"], "msg": f"use {JSON_MEDIA_TYPE}"}],
            }
            return 415, UNSUPPORTED_MEDIA_TYPE, body, []
        if self.rate_limit is not None:
            wait = self.rate_limit.take(self._client(scope, headers))
            if wait > 0:
                body = {"error": "too many requests from this client (serving.rate_limit)"}
                return 429, RATE_LIMITED, body, [(b"retry-after", str(math.ceil(wait)).encode())]
        if state.in_flight >= state.max_in_flight:
            body = {
                "error": f"overloaded: {state.in_flight} requests in flight in this worker "
                "(serving.admission.max_in_flight); retry later"
            }
            return 503, OVERLOADED, body, [retry_after]
        return None

    def _client(self, scope: Any, headers: Iterable[tuple[bytes, bytes]]) -> str:
        if self.client_header is not None:
            value = _header(headers, self.client_header)
            if value:
                return "h:" + value[:_MAX_CLIENT_KEY].decode("latin-1")
        client = scope.get("client")
        return "p:" + (str(client[0]) if client else "unknown")

    async def _forward(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the app with a ``receive`` that counts body bytes and stops at the limit."""
        limit = self.max_body_bytes
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Any:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to the interrupted body; the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            pass
        except BaseExceptionGroup as group:  # a task group around the read re-raises it so
            if not exceeded or group.subgroup(_BodyTooLarge) is None:
                raise
        if exceeded and not started:
            status, reason, body, headers = self._too_large(f"more than {limit} bytes")
            self.state.refuse(reason)
            await answer(send, status, body, headers)

    def _too_large(self, size: str) -> tuple[int, str, dict[str, Any], list[tuple[bytes, bytes]]]:
        body = {
            "error": f"request body of {size} exceeds the limit of {self.max_body_bytes} "
            "bytes (serving.request.max_body_bytes); split the batch",
        }
        return 413, TOO_LARGE, body, [(b"connection", b"close")]


class SigtermDrain:
    """On SIGTERM: drain for ``drain_s`` (``GuardState.draining``), then the server's own handler.

    Installed in the worker once the server (uvicorn) has set its handler, which it keeps and
    calls when the drain is over: uvicorn then closes idle connections, waits for the requests
    in flight and runs the shutdown hooks (the logs are flushed there). A second SIGTERM
    during the drain stops at once. SIGINT (Ctrl+C) is left alone.
    """

    def __init__(
        self, state: GuardState, drain_s: float, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.state = state
        self.drain_s = drain_s
        self._loop = loop or asyncio.get_running_loop()
        self._previous: Any = None
        self._pending = False

    def install(self) -> bool:
        """Take over SIGTERM (main thread only); False if that is not possible here."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return True

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._pending or self.drain_s <= 0:
            self._pass_on(signum, frame)
            return
        self._pending = True
        self.state.draining = True
        logger.info(
            "SIGTERM: draining for %.1f s (new requests get 503 with Connection: close), "
            "then stopping",
            self.drain_s,
        )
        self._loop.call_soon_threadsafe(
            self._loop.call_later, self.drain_s, self._pass_on, signum, frame
        )

    def _pass_on(self, signum: int, frame: Any) -> None:
        self.state.draining = True
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
            return
        # no Python handler to pass on to: restore the default and signal ourselves again
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        signal.raise_signal(signum)
