"""Two service workers: every request is logged exactly once, each log file by one process.

A real ``bentoml serve`` with ``serving.workers: 2`` (set in a ``conf/local`` override, as a user
would) on a free loopback port; bounded concurrent traffic; a graceful stop; then the log is read
back through ``read_prediction_log`` and the part files are checked one by one.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyarrow.parquet as pq
import pytest

from shadowdrift.prediction_log import list_part_files, read_prediction_log
from tests.test_serving_service_e2e import (
    AUTH,
    Server,
    _test_records,
    config_with_serving,
    running_server,
)

pytestmark = pytest.mark.slow

WORKERS = 2
REQUESTS = 320
CONCURRENCY = 8
LOG_DIR = "data/07_model_output/prediction_log"
# part-<time>-<host>-<pid>-<token>-<seq>.parquet (prediction_log.part_file_name)
PART_NAME = re.compile(
    r"^part-(?P<time>\d{8}T\d{6}\.\d{3}Z)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-"
    r"(?P<token>[A-Za-z0-9]+)-(?P<seq>\d{6})\.parquet$"
)


def _ready_worker_pids(server: Server, workers: int, timeout: float = 120.0) -> set[int]:
    """Worker pids seen ready on /model_info. Every call opens a new connection, which the
    kernel hands to whichever worker accepts first, so in time every worker gets asked."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers and time.monotonic() < deadline:
        info = httpx.get(f"{server.url}/model_info", headers=AUTH, timeout=30)
        if info.status_code == 200 and info.json().get("ready"):
            seen.add(int(info.json()["worker_pid"]))
        else:
            time.sleep(0.05)
    return seen


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Iterator[Server]:
    config = config_with_serving(
        tmp_path_factory.mktemp("multi-worker-config"), {"workers": WORKERS}
    )
    with running_server(tmp_path_factory.mktemp("multi-worker-data"), config_path=config) as server:
        yield server


def test_two_workers_log_every_request_once_one_writer_per_file(two_workers):
    server = two_workers
    pids = _ready_worker_pids(server, WORKERS)
    assert len(pids) == WORKERS, f"only workers {pids} answered; serving.workers not honoured?"

    template = _test_records(server, 1)[0]
    sent = {f"mw-{i:04d}": {**template, "customer_id": 900_000 + i} for i in range(REQUESTS)}

    def post(item: tuple[str, dict]) -> int:
        request_id, record = item
        # a new connection per request: the kernel spreads accepts over the workers
        response = httpx.post(
            f"{server.url}/predict",
            json={"records": [record]},
            headers={"X-Request-ID": request_id},
            timeout=30,
        )
        assert response.json().get("request_id") == request_id, response.text
        return response.status_code

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        statuses = Counter(pool.map(post, sent.items()))
    assert statuses == {200: REQUESTS}

    assert server.stop() == 0  # SIGTERM: each worker flushes and closes its writer

    root = server.data_root / LOG_DIR
    log = read_prediction_log(root)
    counts = log["request_id"].value_counts()
    assert set(counts.index) == set(sent) and (counts == 1).all(), counts[counts != 1]
    assert sorted(log["customer_id"].astype(int)) == sorted(r["customer_id"] for r in sent.values())

    # One writer per process: a part file's name carries its writer (host, pid, token) and the
    # writer's own sequence number; names cannot collide across processes.
    files = list_part_files(root)
    writers: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    served_by: dict[str, set[int]] = defaultdict(set)
    for file in files:
        match = PART_NAME.match(file.name)
        assert match, f"unexpected part file name {file.name}"
        writer = (match["host"], match["pid"], match["token"])
        writers[writer].append(int(match["seq"]))
        for request_id in pq.read_table(file, columns=["request_id"])["request_id"].to_pylist():
            served_by[request_id].add(int(match["pid"]))
    assert len({f.name for f in files}) == len(files)
    writer_pids = [int(pid) for _, pid, _ in writers]
    assert sorted(writer_pids) == sorted(pids), "one prediction-log writer per worker process"
    for writer, seqs in writers.items():
        # each writer numbered its own files 0, 1, 2, ... with nobody else's in between
        assert sorted(seqs) == list(range(len(seqs))), (writer, seqs)
    assert all(len(p) == 1 for p in served_by.values())
    per_worker = Counter(next(iter(p)) for p in served_by.values())
    assert set(per_worker) == pids, f"requests per worker: {dict(per_worker)}"
