"""The service under hostile traffic: a real ``bentoml serve`` on a free loopback port.

Fuzzing of every route (schemathesis on the OpenAPI document, and raw bodies with any content
type), the repros of docs/serving.md "Hostile traffic" one by one, overload (admission control),
a challenger that holds the GIL, one that fails (circuit breaker), and a SIGTERM while clients
keep sending on open connections. Bounded traffic, loopback only; each server is stopped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowdrift.prediction_log import read_prediction_log
from tests.pipelines.test_packaging import model_store, packaged_project
from tests.test_serving_service_e2e import AUTH, Server, config_with_serving, running_server
from tests.test_serving_validation import GOOD

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

ROUTES = ("/predict", "/feedback", "/reload")
LOG_DIR = "data/07_model_output/prediction_log"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """The default configuration, started without ``--host``."""
    with running_server(tmp_path_factory.mktemp("hostile"), host=None) as running:
        yield running


def _faulty_challenger(fault: str, seconds: float = 0.3) -> str:
    """A faulty challenger in the packaged model store (once per fault); its store name."""
    from shadowdrift.serving.fault_injection import store_faulty_challenger

    _, home = packaged_project()
    name = f"test-fault-{fault}"
    store = model_store(home)
    with contextlib.suppress(Exception):
        store.get(f"{name}:latest")
        return name
    store_faulty_challenger(
        "shadowdrift-churn-challenger:latest", fault, seconds=seconds, name=name, model_store=store
    )
    return name


def _challenger_ready(server: Server, timeout: float = 180.0) -> dict[str, Any]:
    """/model_info once the challenger's process has loaded its model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(f"{server.url}/model_info", timeout=30).json()
        if (info.get("challenger") or {}).get("fast_path") not in (None, "starting"):
            return info
        # the child is started with the models and reports in on the first shadow call
        httpx.post(f"{server.url}/predict", json={"records": GOOD}, timeout=30)
        time.sleep(0.5)
    raise AssertionError(f"the challenger's process was not ready in {timeout} s")


def _worker_pid(server: Server) -> int:
    return int(httpx.get(f"{server.url}/model_info", headers=AUTH, timeout=30).json()["worker_pid"])


def _raw(
    server: Server, request: bytes, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection; the status, headers and body of the answer."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return _read_answer(sock.makefile("rb"))


def _read_answer(stream: Any) -> tuple[int, dict[str, str], bytes]:
    status_line = stream.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", 0)))
    return status, headers, body


def _post(path: str, body: bytes, content_type: str | None, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    return f"{head}{extra}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body


# -- safe defaults ----------------------------------------------------------------------------


def test_without_host_flag_the_service_listens_on_loopback_only(server):
    pids = {server.process.pid, *(c.pid for c in psutil.Process(server.process.pid).children())}
    port = int(server.url.rsplit(":", 1)[1])
    listening = {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid in pids | {None}
    }
    assert listening == {"127.0.0.1"}
    assert f"listening on http://127.0.0.1:{port}" in server.log_file.read_text()


def test_model_info_without_the_token_shows_no_paths_or_pids(server):
    public = httpx.get(f"{server.url}/model_info", timeout=30)
    private = httpx.get(f"{server.url}/model_info", headers=AUTH, timeout=30)
    assert public.status_code == private.status_code == 200
    text = public.text
    assert "worker_pid" not in text and '"pid"' not in text
    assert str(server.data_root) not in text and str(server.home) not in text
    assert public.json()["champion"]["model_version"] == private.json()["champion"]["model_version"]
    assert str(server.data_root) in private.text and "worker_pid" in private.json()
    assert private.json()["challenger"]["process"]["pid"] > 0


# -- the repros of the hostile-traffic report, one by one ----------------------------------


@pytest.mark.parametrize("path", ROUTES)
def test_multipart_without_boundary_is_415_not_500(server, path):
    status, _, body = _raw(server, _post(path, b'{"records": {}}', "multipart/form-data"))
    assert status == 415, body
    assert b"application/json" in body


def test_a_chunked_body_past_the_limit_is_413_with_worker_memory_flat(server):
    """200 MB sent chunked (no Content-Length): refused once 20 MB (the limit) have come in."""
    pid = _worker_pid(server)
    worker = psutil.Process(pid)
    idle = worker.memory_info().rss
    peak = [idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], worker.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    port = int(server.url.rsplit(":", 1)[1])
    chunk = b"[" + b"1," * (512 * 1024) + b"1]"  # 1 MiB of JSON-ish text per chunk
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        with contextlib.suppress(OSError):  # the server closes once it has refused
            while sent < 200 * 2**20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        status, headers, body = _read_answer(sock.makefile("rb"))
    stop.set()
    sampler.join()
    growth = (peak[0] - idle) / 2**20
    logger.info(
        "chunked body: refused after %.0f MB sent; worker RSS +%.1f MB", sent / 2**20, growth
    )
    assert status == 413, body
    assert headers["connection"] == "close" and b"max_body_bytes" in body
    assert sent < 200 * 2**20, "the server read the whole body"
    assert growth < 50, f"worker RSS grew {growth:.0f} MB"


def test_a_declared_oversized_body_is_413_before_it_is_sent(server):
    status, headers, _ = _raw(
        server,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert status == 413 and headers["connection"] == "close"


def test_a_5mb_category_value_is_422_naming_the_field(server):
    record = {**GOOD, "contract_type": "m" * 5_000_000}
    response = httpx.post(f"{server.url}/predict", json={"records": [record]}, timeout=30)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == "contract_type" and "at most 256 characters" in problem["msg"]
    assert len(response.content) < 2000, "the value is not echoed back"


def test_feedback_labels_that_are_not_a_list_are_located_at_labels(server):
    response = httpx.post(f"{server.url}/feedback", json={"labels": "x"}, timeout=30)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["labels"]


# -- fuzzing -----------------------------------------------------------------------------------


def test_fuzz_every_route_of_the_openapi_document_finds_no_5xx(server, tmp_path):
    """schemathesis (pinned dev dependency) on /docs.json: examples, coverage and fuzzing
    phases, positive and negative data, every operation, no server error allowed."""
    report = tmp_path / "schemathesis.json"
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{server.url}/docs.json",
        "--checks",
        "not_a_server_error",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "40",
        "--seed",
        "20",
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--max-time",
        "75",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    assert run.returncode == 0, run.stdout[-6000:]
    summary = json.loads(report.read_text())
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    operations = [f"{m.upper()} {p}" for p, item in spec["paths"].items() for m in item]
    assert {"POST /predict", "POST /feedback", "POST /reload", "GET /model_info"} <= set(operations)
    assert summary["operations"]["tested"] == summary["operations"]["total"] == len(operations)
    assert summary["failures"] == [] and summary["errors"] == [], summary
    cases = summary["test_cases"]
    assert cases["with_failures"] == 0 and cases["generated"] >= 300, cases
    logger.info(
        "schemathesis: %d test cases over %d operations, %d with failures, %.0f s",
        cases["generated"],
        len(operations),
        cases["with_failures"],
        summary["running_time"],
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    derandomize=True,
)
@given(
    path=st.sampled_from(ROUTES),
    content_type=st.one_of(
        st.none(),
        st.sampled_from(
            [
                "application/json",
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "multipart/form-data; boundary=zz",
                "application/x-www-form-urlencoded",
                "text/plain",
                "application/octet-stream",
                "application/vnd.bentoml+pickle",
                "application/json; charset=utf-16",
                "*/*",
            ]
        ),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
    ),
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=12), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps({"records": value, "labels": value}).encode()),
    ),
)
def test_fuzz_any_bytes_with_any_content_type_are_answered_4xx_at_most(
    server, path, content_type, body
):
    status, _, answer = _raw(
        server, _post(path, body, content_type, extra="X-Request-ID: fuzz\r\n")
    )
    assert status < 500, (path, content_type, body[:200], answer[:500])


# -- overload ------------------------------------------------------------------------------------


def _load(
    port: int, body: bytes, concurrency: int, per_connection: int
) -> tuple[list[float], Counter]:
    """``concurrency`` keep-alive connections sending back to back (no heed to Retry-After).

    One asyncio loop drives them all: 64 client threads would spend their time waiting for
    this process's GIL, and that wait would count in the latencies.
    """
    request = _post("/predict", body, "application/json")
    latencies: list[float] = []
    statuses: Counter = Counter()
    retry_after: Counter = Counter()

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(per_connection):
                started = time.perf_counter()
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                headers = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                )
                await reader.readexactly(int(headers.get("content-length", 0)))
                elapsed = time.perf_counter() - started
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)
                elif status == 503:
                    retry_after[headers.get("retry-after")] += 1
        finally:
            writer.close()

    async def everyone() -> None:
        await asyncio.gather(*(client() for _ in range(concurrency)))

    asyncio.run(everyone())
    assert set(retry_after) <= {"1"}, retry_after
    return latencies, statuses


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_admission_at_concurrency_64_refuses_at_once_and_keeps_accepted_p99_near_concurrency_8(
    server,
):
    port = int(server.url.rsplit(":", 1)[1])
    body = json.dumps({"records": GOOD}).encode()
    _load(port, body, 8, 20)  # warm up
    low: list[float] = []
    high: list[float] = []
    everything: Counter = Counter()
    for _ in range(3):  # alternated, so that other load on the machine hits both alike
        latencies, statuses = _load(port, body, 8, 80)
        low += latencies
        everything += statuses
        assert set(statuses) == {200}, statuses
        latencies, statuses = _load(port, body, 64, 30)
        high += latencies
        everything += statuses
    assert set(everything) <= {200, 503}, everything
    assert everything[503] > 0, "64 clients against max_in_flight 8: some must be refused"
    ratio = _p99(high) / _p99(low)
    logger.info(
        f"admission: {dict(everything)}; p99 c=8 {1e3 * _p99(low):.1f} ms, c=64 {1e3 * _p99(high):.1f} ms"
    )
    assert ratio <= 2.0, f"accepted p99 at concurrency 64 is {ratio:.2f}x that at 8"


# -- a challenger that holds the GIL -----------------------------------------------------------


@pytest.fixture(scope="module")
def gil_server(tmp_path_factory) -> Iterator[Server]:
    name = _faulty_challenger("gil", seconds=0.3)
    config = config_with_serving(
        tmp_path_factory.mktemp("gil-config"), {"models": {"challenger": f"{name}:latest"}}
    )
    with running_server(tmp_path_factory.mktemp("gil-data"), config_path=config) as running:
        yield running


def _rate_and_p50(server: Server, body: bytes) -> tuple[float, float, Counter]:
    port = int(server.url.rsplit(":", 1)[1])
    started = time.perf_counter()
    latencies, statuses = _load(port, body, 8, 60)
    return len(latencies) / (time.perf_counter() - started), statistics.median(latencies), statuses


def test_gil_holding_challenger_does_not_slow_the_champion(server, gil_server):
    """The challenger holds the GIL 0.3 s per call, in its own process (``mode: process``)."""
    body = json.dumps({"records": GOOD}).encode()
    for running in (server, gil_server):
        _challenger_ready(running)
        _rate_and_p50(running, body)  # warm up
    healthy: list[tuple[float, float]] = []
    gil: list[tuple[float, float]] = []
    for _ in range(3):
        for running, into in ((server, healthy), (gil_server, gil)):
            rate, p50, statuses = _rate_and_p50(running, body)
            assert statuses == {200: 480}, statuses
            into.append((rate, p50))
    rate_ratio = statistics.median(r for r, _ in healthy) / statistics.median(r for r, _ in gil)
    p50_ratio = statistics.median(p for _, p in gil) / statistics.median(p for _, p in healthy)
    logger.info(
        f"GIL challenger: requests/s healthy/gil {rate_ratio:.2f}, p50 gil/healthy {p50_ratio:.2f}"
    )
    assert rate_ratio <= 1.2 and p50_ratio <= 1.2, (healthy, gil)
    info = httpx.get(f"{gil_server.url}/model_info", timeout=30).json()
    assert info["challenger"]["kind"] == "fault-gil"
    counts = info["shadow"]["counts"]
    assert counts["ok"] > 0, "the challenger still scores, in its own process"
    metrics = httpx.get(f"{gil_server.url}/metrics", timeout=30).text
    assert 'shadowdrift_shadow_records_total{status="ok"}' in metrics


# -- a challenger that fails: the circuit breaker ------------------------------------------------


def test_circuit_breaker_opens_on_a_failing_challenger_and_shows_it(tmp_path):
    name = _faulty_challenger("raise")
    config = config_with_serving(
        tmp_path / "config",
        {
            "models": {"challenger": f"{name}:latest"},
            "shadow": {"batch_wait_s": 0.0, "circuit_breaker": {"failures": 3, "cool_down_s": 2.0}},
        },
    )
    (tmp_path / "data").mkdir()
    with running_server(tmp_path / "data", config_path=config) as running:
        _challenger_ready(running)
        for index in range(40):
            response = httpx.post(f"{running.url}/predict", json={"records": GOOD}, timeout=30)
            assert response.status_code == 200
            if index == 19:
                time.sleep(2.2)  # the cool-down: the next call is a probe (which fails again)
            time.sleep(0.02)
        info = httpx.get(f"{running.url}/model_info", timeout=30).json()["shadow"]
        breaker = info["circuit_breaker"]
        assert breaker["state"] == "open" and breaker["transitions"]["open"] >= 2
        assert breaker["transitions"]["half_open"] >= 1
        assert "injected fault" in breaker["last_error"]
        metrics = httpx.get(f"{running.url}/metrics", timeout=30).text
        assert "shadowdrift_challenger_circuit_state{" in metrics and 'state="open"' in metrics
        assert 'shadowdrift_challenger_circuit_transitions_total{to="open"}' in metrics
        assert 'shadowdrift_shadow_records_total{status="skipped"}' in metrics
        assert running.stop() == 0
    log = read_prediction_log(tmp_path / "data" / LOG_DIR)
    statuses = log["challenger_status"].value_counts().to_dict()
    assert set(statuses) == {"failed", "skipped"}, statuses
    assert info["counts"]["skipped"] > 20, info["counts"]
    assert info["counts"]["failed"] >= 4, info["counts"]
    assert statuses["skipped"] == info["counts"]["skipped"]
    assert statuses["failed"] == info["counts"]["failed"]
    text = running.log_file.read_text()
    assert "Circuit breaker for the challenger opened" in text
    assert "half_open" in text


# -- SIGTERM with clients on open connections ---------------------------------------------------


def test_sigterm_answers_every_request_received_and_503_close_after(server):
    """Clients keep sending on keep-alive connections while the worker gets SIGTERM: every
    request gets an answer; after the signal, 503 with Connection: close; the 200s are logged."""
    port = int(server.url.rsplit(":", 1)[1])
    answered: Counter = Counter()
    unanswered: list[str] = []
    ok_ids: list[str] = []
    lock = threading.Lock()
    go = threading.Event()

    def client(number: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        stream = sock.makefile("rb")
        index = 0
        try:
            while True:
                request_id = f"stop-{number}-{index}"
                body = json.dumps({"records": GOOD}).encode()
                try:
                    sock.sendall(
                        _post(
                            "/predict", body, "application/json", f"X-Request-ID: {request_id}\r\n"
                        )
                    )
                except OSError:
                    return  # closed before this request was sent: nothing was lost
                try:
                    status, headers, _ = _read_answer(stream)
                except (ConnectionError, OSError) as exc:
                    with lock:
                        unanswered.append(f"{request_id}: {exc}")
                    return
                with lock:
                    answered[(status, headers.get("connection", "keep-alive"))] += 1
                    if status == 200:
                        ok_ids.append(request_id)
                if headers.get("connection") == "close":
                    return
                index += 1
                if index == 5:
                    go.set()
                time.sleep(0.005)
        finally:
            sock.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    go.wait(30)
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert server.process.wait(60) == 0
    logger.info(f"SIGTERM: answers {dict(answered)}, unanswered {len(unanswered)}")
    assert unanswered == []
    assert answered[(503, "close")] == 8, answered  # each client was told to go, once
    assert set(answered) <= {(200, "keep-alive"), (503, "close")}, answered
    log = read_prediction_log(server.data_root / LOG_DIR)
    logged = set(log["request_id"])
    assert set(ok_ids) <= logged, "an answered request is missing from the log"
    assert "SIGTERM: draining" in server.log_file.read_text()
