"""kill -9 of every service process mid-traffic, then a restart, then the logs are counted.

A real ``bentoml serve`` (2 workers, the challenger in its child process) on a free
loopback port gets bounded traffic from 8 keep-alive connections: single records, batches
(logged as column blocks) and ``/feedback`` labels, each with its own request id. After a
while every process of the service (the arbiter, the workers, the challengers' processes) is
killed with SIGKILL at once, the service is started again on the same data (without the
shadow, which recovery does not involve) and stopped cleanly, and the prediction and
ground-truth logs are read back.

* ``serving.log.durability: acknowledged``: every record and label answered 200 is in its log
  exactly once (the restart replays the dead workers' write-ahead segments).
* ``buffered`` (the default): nothing is duplicated, and every record that is missing was
  answered within the documented window before the kill (flush interval plus the shadow's
  delay, docs/operations.md).

The counts are logged (``-o log_cli=true``) and quoted in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from shadowdrift.prediction_log import read_prediction_log
from shadowdrift.serving.feedback import read_ground_truth
from tests.test_serving_service_e2e import (
    Server,
    _test_records,
    config_with_serving,
    running_server,
)

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

LOG_DIR = "data/07_model_output/prediction_log"
LABEL_DIR = "data/07_model_output/ground_truth"
CONNECTIONS = 8
KILL_AFTER_ANSWERS = 1_200  # requests answered 200 before the kill (a few seconds of traffic)
MAX_REQUESTS = 6_000  # per run, whatever happens
BATCH = 40  # records per batch request (>= 32: logged as a column block)
FLUSH_INTERVAL_S = 1.0
# buffered mode: a record reaches the writer once the shadow finished it, which takes at most
# max_delay_s of waiting (then it is shed) plus one call of at most call_timeout_s, and is
# written by the next flush. The buffered test bounds the shadow's part (a challenger process
# at normal priority, short limits) so that the window is a few seconds on a busy machine too.
BUFFERED_SHADOW = {"max_delay_s": 0.5, "call_timeout_s": 1.0, "process_nice": 0}
BUFFERED_WINDOW_S = (
    FLUSH_INTERVAL_S + BUFFERED_SHADOW["max_delay_s"] + BUFFERED_SHADOW["call_timeout_s"] + 0.5
)


@dataclass
class Traffic:
    """What the clients were answered: request id -> (records or labels, when answered)."""

    predicted: dict[str, tuple[int, float]] = field(default_factory=dict)
    labelled: dict[str, tuple[int, float]] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    cut_off: int = 0  # requests whose connection died before an answer
    refusals: list[str] = field(default_factory=list)  # the first answers other than 200
    killed_at: float = 0.0
    killed: dict[str, int] = field(default_factory=dict)  # processes killed, by kind
    recovered: dict[str, int] = field(default_factory=dict)  # replayed at the restart


def _request(path: str, body: dict[str, Any], request_id: str) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: {request_id}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    body = await reader.readexactly(length)
    return int(lines[0].split()[1]), body


def _next_request(
    connection: int, index: int, records: list[dict[str, Any]]
) -> tuple[str, str, dict[str, Any], int]:
    """(path, request id, body, records or labels) of a connection's next request: mostly
    single records, every 5th a batch, every 7th a /feedback with two labels."""
    request_id = f"c{connection}-{index}"
    if index % 7 == 3:
        labels = [
            {"request_id": f"fb-{request_id}", "record_index": 0, "label": 1},
            {"request_id": f"fb-{request_id}", "record_index": 1, "label": 0},
        ]
        return "/feedback", request_id, {"labels": labels}, len(labels)
    if index % 5 == 1:
        start = (connection * 31 + index) % (len(records) - BATCH)
        return "/predict", request_id, {"records": records[start : start + BATCH]}, BATCH
    return "/predict", request_id, {"records": records[(connection + index) % len(records)]}, 1


async def _client(
    port: int, connection: int, records: list[dict[str, Any]], traffic: Traffic, stop: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index in range(MAX_REQUESTS // CONNECTIONS):
            if stop.is_set():
                return
            path, request_id, body, size = _next_request(connection, index, records)
            try:
                writer.write(_request(path, body, request_id))
                await writer.drain()
                status, answer = await _answer(reader)
            except (OSError, asyncio.IncompleteReadError):
                traffic.cut_off += 1
                return
            traffic.statuses[status] += 1
            if status != 200 and len(traffic.refusals) < 5:
                traffic.refusals.append(f"{status} {path}: {answer[:300]!r}")
            if status == 200:
                answered = traffic.labelled if path == "/feedback" else traffic.predicted
                answered[f"fb-{request_id}" if path == "/feedback" else request_id] = (
                    size,
                    time.monotonic(),
                )
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _service_processes(server: Server) -> list[psutil.Process]:
    root = psutil.Process(server.process.pid)
    return [root, *root.children(recursive=True)]


def _kill_everything(processes: list[psutil.Process]) -> None:
    """SIGKILL to the arbiter first (it would restart workers), then to all the others."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            os.kill(process.pid, signal.SIGKILL)


async def _traffic_then_kill(server: Server, records: list[dict[str, Any]]) -> Traffic:
    traffic = Traffic()
    stop = asyncio.Event()
    port = int(server.url.rsplit(":", 1)[1])
    clients = [
        asyncio.create_task(_client(port, n, records, traffic, stop)) for n in range(CONNECTIONS)
    ]
    while traffic.statuses[200] < KILL_AFTER_ANSWERS:
        if all(client.done() for client in clients):
            raise AssertionError(f"the clients stopped early: {traffic.statuses}")
        await asyncio.sleep(0.01)
    processes = _service_processes(server)
    kinds = Counter(_kind(process) for process in processes)
    traffic.killed_at = time.monotonic()
    _kill_everything(processes)
    await asyncio.gather(*clients)
    stop.set()
    traffic.killed = dict(kinds)
    return traffic


_RECOVERED = re.compile(r"Recovered (\d+) (records|labels) of")


def _recovered(service_log: str) -> dict[str, int]:
    """Records and labels the restarted service replayed from write-ahead logs."""
    found: Counter = Counter()
    for count, what in _RECOVERED.findall(service_log):
        found[what] += int(count)
    return dict(found)


def _kind(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        if "challenger_process" in " ".join(process.cmdline()):
            return "challenger"
    return "service"


def _wait_every_worker_ready(server: Server, workers: int, timeout: float = 180.0) -> None:
    """Until every worker's challenger process runs and every worker answers 200.

    ``/readyz`` is answered by whichever worker the kernel picks; a worker still loading its
    challenger answers ``/predict`` with 503, so 30 answers 200 in a row (from workers picked
    at random) are taken as all of them being ready.
    """
    import httpx

    deadline = time.monotonic() + timeout
    body = {"records": _test_records(server, 1)[0]}
    in_a_row = 0
    while time.monotonic() < deadline:
        challengers = [
            p for p in _service_processes(server) if "challenger_process" in " ".join(p.cmdline())
        ]
        ok = httpx.post(f"{server.url}/predict", json=body, timeout=30).status_code == 200
        in_a_row = in_a_row + 1 if ok and len(challengers) >= workers else 0
        if in_a_row >= 30:
            return
        if not ok:
            time.sleep(0.2)
    raise AssertionError("the workers and their challenger processes did not all get ready")


@dataclass(frozen=True)
class Counts:
    """Answered 200 vs found in the log, for one log."""

    answered: int
    found: int
    lost: int
    duplicated: int
    lost_oldest_age_s: float  # how long before the kill the earliest lost one was answered


def _count(
    answered: dict[str, tuple[int, float]], logged: Counter, killed_at: float, duplicated: int
) -> Counts:
    """How many of the answered records (or labels) the log holds, per request id."""
    lost_ages = []
    lost = found = 0
    for request_id, (size, when) in answered.items():
        have = logged.get(request_id, 0)
        found += min(have, size)
        if have < size:
            lost += size - have
            lost_ages.append(killed_at - when)
    return Counts(
        answered=sum(size for size, _ in answered.values()),
        found=found,
        lost=lost,
        duplicated=duplicated,
        lost_oldest_age_s=max(lost_ages, default=0.0),
    )


def _duplicates(frame: Any, keys: list[str]) -> int:
    return int(frame.duplicated(keys).sum()) if len(frame) else 0


def _crash_and_recover(
    tmp_path: Path, durability: str, workers: int, shadow: dict[str, Any] | None = None
) -> tuple[Traffic, Counts, Counts, Any]:
    serving = {
        "workers": workers,
        "log": {"durability": durability},
        "prediction_log": {"flush_interval_s": FLUSH_INTERVAL_S},
        "ground_truth": {"flush_interval_s": FLUSH_INTERVAL_S},
        "shutdown": {"drain_s": 0.2},
        "shadow": shadow or {},
    }
    config = config_with_serving(tmp_path / "config", serving)
    # The restart only has to replay and stop: without the shadow it is ready without waiting
    # for the challenger's process to load (recovery runs before any model is loaded).
    restart_config = config_with_serving(
        tmp_path / "config-restart", {**serving, "shadow": {"enabled": False}}
    )
    data = tmp_path / "data"
    data.mkdir()
    phases = {"started": time.monotonic()}
    with running_server(data, config_path=config) as server:
        phases["ready"] = time.monotonic()
        _wait_every_worker_ready(server, workers)
        records = _test_records(server, 400)
        phases["traffic"] = time.monotonic()
        traffic = asyncio.run(_traffic_then_kill(server, records))
        server.process.wait(30)
        phases["killed"] = time.monotonic()
    server.log_file.rename(data / "serve-killed.log")  # the restart writes serve.log anew
    with running_server(data, config_path=restart_config) as restarted:
        phases["restarted"] = time.monotonic()
        assert restarted.stop() == 0
        traffic.recovered = _recovered(restarted.log_file.read_text())
        phases["stopped"] = time.monotonic()
    steps = list(phases.items())
    logger.info(
        "phases (s): %s",
        ", ".join(f"{b}: {tb - ta:.1f}" for (_, ta), (b, tb) in itertools.pairwise(steps)),
    )
    log = read_prediction_log(data / LOG_DIR)
    labels = read_ground_truth(data / LABEL_DIR)
    predictions = _count(
        traffic.predicted,
        Counter(log["request_id"]),
        traffic.killed_at,
        _duplicates(log, ["request_id", "record_index"]),
    )
    feedback = _count(
        traffic.labelled,
        Counter(labels["request_id"]),
        traffic.killed_at,
        _duplicates(labels, ["request_id", "record_index"]),
    )
    logger.info(
        "%s, %d worker(s): killed %s; answers %s, %d cut off (other than 200: %s); records %s; "
        "labels %s; recovered %s; statuses %s",
        durability,
        workers,
        traffic.killed,
        dict(traffic.statuses),
        traffic.cut_off,
        traffic.refusals,
        predictions,
        feedback,
        traffic.recovered,
        log["challenger_status"].value_counts().to_dict(),
    )
    assert not list((data / LOG_DIR / "_wal").glob("*/*.wal")), "segments left after recovery"
    return traffic, predictions, feedback, log


def test_acknowledged_kill_9_of_every_process_loses_no_answered_record(tmp_path):
    workers = 2
    traffic, predictions, feedback, log = _crash_and_recover(tmp_path, "acknowledged", workers)
    assert traffic.statuses[200] >= KILL_AFTER_ANSWERS
    assert traffic.killed.get("challenger") == workers, traffic.killed
    assert predictions.lost == 0 and predictions.duplicated == 0, predictions
    assert feedback.lost == 0 and feedback.duplicated == 0, feedback
    assert predictions.found == predictions.answered > 0
    # what the workers had not flushed came back from their write-ahead logs
    assert traffic.recovered.get("records", 0) > 0, traffic.recovered
    # the requests answered in the last moments came back from the write-ahead log
    assert set(log["challenger_status"]) <= {"ok", "interrupted", "shed", "failed"}


def test_buffered_kill_9_loses_at_most_the_flush_window_and_duplicates_nothing(tmp_path):
    traffic, predictions, feedback, _ = _crash_and_recover(
        tmp_path, "buffered", workers=2, shadow=BUFFERED_SHADOW
    )
    assert traffic.statuses[200] >= KILL_AFTER_ANSWERS
    assert predictions.duplicated == 0 and feedback.duplicated == 0
    assert predictions.lost_oldest_age_s <= BUFFERED_WINDOW_S, predictions
    assert feedback.lost_oldest_age_s <= BUFFERED_WINDOW_S, feedback
