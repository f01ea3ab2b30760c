"""The request guard in front of the service (serving/http_guard.py), driven as a plain ASGI app."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from shadowdrift.serving.http_guard import GuardState, RequestGuard, SigtermDrain, TokenBuckets


class Call:
    """One request through an ASGI app: the messages it sent back, and how much body it read."""

    def __init__(
        self,
        path: str = "/predict",
        *,
        method: str = "POST",
        chunks: tuple[bytes, ...] = (b"{}",),
        headers: dict[str, str] | None = None,
        client: tuple[str, int] = ("127.0.0.1", 5555),
    ) -> None:
        self.scope = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": client,
        }
        self.chunks = list(chunks)
        self.read = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.read < len(self.chunks):
            self.read += 1
            return {
                "type": "http.request",
                "body": self.chunks[self.read - 1],
                "more_body": self.read < len(self.chunks),
            }
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, app: Any) -> Call:
        await app(self.scope, self.receive, self.send)
        return self

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    def json(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def echo_body(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body as Starlette does and, like BentoML, turns any error into a 500."""
    try:
        body = await Request(scope, receive).body()
        response = JSONResponse({"bytes": len(body)})
    except Exception:
        response = JSONResponse({"error": "unexpected"}, status_code=500)
    await response(scope, receive, send)


def guard(app: Any = echo_body, **kwargs: Any) -> RequestGuard:
    options = {"state": GuardState(max_in_flight=4), "max_body_bytes": 10, **kwargs}
    return RequestGuard(app, **options)


def run(call: Call, app: Any) -> Call:
    return asyncio.run(call.run(app))


def test_a_body_declared_too_large_is_413_before_anything_is_read():
    call = run(Call(chunks=(b"x" * 11,), headers={"content-length": "11"}), guard())
    assert call.status == 413 and call.read == 0
    assert call.headers["connection"] == "close"
    assert "max_body_bytes" in call.json()["error"]


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit():
    """No Content-Length (Transfer-Encoding: chunked): counted while it streams in."""
    chunks = tuple(b"xxxx" for _ in range(50))  # 200 bytes against a limit of 10
    state = GuardState(max_in_flight=4)
    call = run(Call(chunks=chunks, headers={"transfer-encoding": "chunked"}), guard(state=state))
    assert call.status == 413, call.sent  # not the 500 the app would have answered
    assert call.read == 3, "the chunk that passed the limit is the last one read"
    assert call.headers["connection"] == "close"
    assert len(call.sent) == 2
    assert state.refused["too_large"] == 1 and state.in_flight == 0


def test_a_body_within_the_limit_reaches_the_app_whole():
    call = run(Call(chunks=(b"12345", b"67890")), guard())
    assert call.status == 200 and call.json() == {"bytes": 10}


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
    ],
)
def test_other_content_types_than_json_are_415_on_the_json_routes(content_type):
    call = run(Call(headers={"content-type": content_type}), guard())
    assert call.status == 415
    assert call.json()["detail"][0]["loc"] == ["header", "content-type"]


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "Application/JSON; charset=utf-8"]
)
def test_json_or_no_content_type_passes(content_type):
    headers = {"content-type": content_type} if content_type else {}
    assert run(Call(headers=headers), guard()).status == 200


def test_other_routes_and_methods_are_not_checked_for_content_type():
    assert (
        run(Call("/metrics", method="GET", headers={"content-type": "text/x"}), guard()).status
        == 200
    )


def test_admission_refuses_beyond_max_in_flight_at_once_with_503_and_retry_after():
    release = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/predict":
            await release.wait()
        await JSONResponse({"ok": True})(scope, receive, send)

    state = GuardState(max_in_flight=2, retry_after_s=3)
    app = guard(slow, state=state)

    async def scenario() -> tuple[list[Call], Call, Call]:
        held = [asyncio.create_task(Call().run(app)) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert state.in_flight == 2
        refused = await asyncio.wait_for(Call().run(app), timeout=1.0)  # not queued
        probe = await asyncio.wait_for(Call("/readyz", method="GET").run(app), timeout=1.0)
        release.set()
        return list(await asyncio.gather(*held)), refused, probe

    held, refused, probe = asyncio.run(scenario())
    assert [c.status for c in held] == [200, 200]
    assert refused.status == 503 and refused.headers["retry-after"] == "3"
    assert "max_in_flight" in refused.json()["error"]
    assert "connection" not in refused.headers  # the client may retry on the same connection
    assert probe.status == 200, "probes and metrics are never refused"
    assert state.in_flight == 0 and state.refused["overloaded"] == 1


def test_admission_token_bucket_per_client_answers_429_with_retry_after():
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=0.5, burst=2, max_clients=2, clock=lambda: now[0])
    app = guard(rate_limit=buckets, client_header="X-Client-ID")

    def status(client: str | None, peer: str = "10.0.0.1") -> Call:
        headers = {"x-client-id": client} if client else {}
        return run(Call(headers=headers, client=(peer, 1)), app)

    assert [status("a").status for _ in range(2)] == [200, 200]
    limited = status("a")
    assert limited.status == 429 and limited.headers["retry-after"] == "2"
    assert status("b").status == 200, "each client has its own bucket"
    assert status(None).status == 200, "no header: keyed on the peer address"
    assert len(buckets) == 2, "at most max_clients buckets are kept"
    now[0] = 2.0
    assert status("a").status == 200, "a token is back after 1 / rate seconds"


def test_admission_rate_limit_is_off_unless_configured():
    app = guard()
    assert all(run(Call(), app).status == 200 for _ in range(20))


def test_a_draining_worker_answers_503_with_connection_close():
    state = GuardState(max_in_flight=4, draining=True)
    for path, method in (("/predict", "POST"), ("/readyz", "GET")):
        call = run(Call(path, method=method), guard(state=state))
        assert call.status == 503
        assert call.headers["connection"] == "close" and call.headers["retry-after"] == "1"
    assert state.refused["shutting_down"] == 2


def test_sigterm_drains_first_then_passes_the_signal_on():
    received: list[int] = []
    state = GuardState(max_in_flight=4)
    saved = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))

    async def scenario() -> None:
        drain = SigtermDrain(state, drain_s=0.2)
        assert drain.install()
        assert signal.getsignal(signal.SIGTERM) == drain._on_sigterm
        drain._on_sigterm(signal.SIGTERM, None)
        await asyncio.sleep(0.05)
        assert state.draining and received == [], "draining, not stopped yet"
        await asyncio.sleep(0.3)
        assert received == [signal.SIGTERM], "the server's own handler runs after the drain"
        drain._on_sigterm(signal.SIGTERM, None)  # a second SIGTERM: at once
        assert received == [signal.SIGTERM, signal.SIGTERM]

    try:
        asyncio.run(scenario())
    finally:
        signal.signal(signal.SIGTERM, saved)
