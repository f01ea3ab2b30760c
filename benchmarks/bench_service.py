"""Benchmark the BentoML service: latency, throughput, batch records/s, RSS, shadow on vs off.

Starts real ``bentoml serve`` processes from the project root on free loopback ports (one per
configuration, all up at the same time) and sends them bounded traffic from a minimal asyncio
HTTP/1.1 keep-alive client in this process. Configurations are measured in alternating rounds
so that background load on a shared machine hits them alike; the table reports the pooled
rounds. Each server reads a throwaway copy of conf/ (SHADOWDRIFT_PROJECT_PATH) with its own
overrides, writes its logs to a temporary directory, and is stopped at the end.

Needs champion and challenger in the BentoML model store: ``kedro run --pipelines packaging``
(or pass ``--bentoml-home`` of a store that has them).

    .venv/bin/python benchmarks/bench_service.py                   # shadow on vs off (process)
    .venv/bin/python benchmarks/bench_service.py --modes process thread service --rounds 6
    .venv/bin/python benchmarks/bench_service.py --fault-challengers raise sleep gil  # faulty shadows
    .venv/bin/python benchmarks/bench_service.py --overload        # concurrency 8 vs 64, admission
    .venv/bin/python benchmarks/bench_service.py --baseline DIR    # against another checkout
    .venv/bin/python benchmarks/bench_service.py --modes thread-2workers   # two worker processes
    .venv/bin/python benchmarks/bench_service.py --model-formats   # pickle vs bentoml.mlflow
    .venv/bin/python benchmarks/bench_service.py --batch-profile   # CPU per step of a batch
    .venv/bin/python benchmarks/bench_service.py --durability      # buffered vs acknowledged log
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

QUIET_ENV = {
    "BENTOML_DO_NOT_TRACK": "True",
    "DO_NOT_TRACK": "1",
    "KEDRO_DISABLE_TELEMETRY": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "NML_DISABLE_USAGE_LOGGING": "1",
}


# ------------------------------------------------------------------------------------------
# Records
# ------------------------------------------------------------------------------------------


def make_records(n: int, seed: int = 11) -> list[dict]:
    """Realistic request records from the project's simulator (features only)."""
    from shadowdrift.simulation import generate_features

    frame = generate_features(np.random.default_rng(seed), n)
    records = frame.to_dict(orient="records")
    clean = []
    for record in records:
        clean.append(
            {
                key: (value.item() if hasattr(value, "item") else value)
                for key, value in record.items()
            }
        )
    return clean


# ------------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------------


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    overrides: dict
    # another checkout of the project to serve (code and conf/base), e.g. an older commit
    source: Path | None = None
    port: int = 0
    process: subprocess.Popen | None = None
    workdir: Path | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, bentoml_home: str | None, root: Path) -> None:
        self.workdir = root / self.name
        project = self.source or PROJECT
        conf = self.workdir / "conf"
        shutil.copytree(project / "conf" / "base", conf / "base")
        (conf / "local").mkdir(parents=True)
        # Kedro replaces a whole top-level key from another environment (destructive merge),
        # so the override carries the full `serving` section.
        base = yaml.safe_load((project / "conf/base/parameters_serving.yml").read_text())
        (conf / "local" / "parameters_serving.yml").write_text(
            yaml.safe_dump({"serving": deep_merge(base["serving"], self.overrides)})
        )
        self.port = free_port()
        env = {
            **os.environ,
            **QUIET_ENV,
            "SHADOWDRIFT_PROJECT_PATH": str(self.workdir),
            "SHADOWDRIFT_DATA_ROOT": str(self.workdir),
        }
        if bentoml_home:
            env["BENTOML_HOME"] = bentoml_home
        if self.source is not None:
            # ahead of the editable install of this checkout
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(self.source / "src"), os.environ.get("PYTHONPATH")])
            )
        self.log = self.workdir / "serve.log"
        bentoml = Path(sys.executable).with_name("bentoml")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(bentoml), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: bentoml serve exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: not ready after {timeout} s; see {self.log}")

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time (user + system) used so far by the server's processes, and by their main
        threads (in a worker: the event loop, which reads, scores and answers each request)."""
        assert self.process is not None
        parent = psutil.Process(self.process.pid)
        total = main = 0.0
        for process in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
                for thread in process.threads():
                    if thread.id == process.pid:
                        main += thread.user_time + thread.system_time
        return total, main

    def rss_mb(self) -> tuple[float, float]:
        """(all processes of the server, the largest single process) resident memory in MB."""
        assert self.process is not None
        parent = psutil.Process(self.process.pid)
        processes = [parent, *parent.children(recursive=True)]
        sizes = []
        for process in processes:
            with contextlib.suppress(psutil.Error):
                sizes.append(process.memory_info().rss / 2**20)
        return sum(sizes), max(sizes)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# ------------------------------------------------------------------------------------------
# Client
# ------------------------------------------------------------------------------------------


def request_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def _connection(port: int, payloads: list[bytes], result: Result) -> None:
    """Send ``payloads`` one after the other on one keep-alive connection.

    A refusal (503, 429) is counted and the next request follows at once: a client that
    ignores Retry-After, the worst case for admission control. Latencies are of 200s only.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for payload in payloads:
            started = time.perf_counter()
            writer.write(payload)
            await writer.drain()
            status, _ = await _read_response(reader)
            elapsed = time.perf_counter() - started
            if status == 200:
                result.latencies.append(elapsed)
            elif status in (429, 503):
                result.refused.append(elapsed)
            else:
                result.errors.append(status)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # of answered (200) requests
    refused: list[float] = field(default_factory=list)  # latencies of 503 / 429 refusals
    errors: list[int] = field(default_factory=list)
    elapsed: float = 0.0
    requests: int = 0
    records: int = 0
    server_cpu_s: float = 0.0  # the server's processes, over the scenario's rounds
    main_thread_cpu_s: float = 0.0  # their main threads (the workers' event loops)

    def add(self, other: Result) -> None:
        self.latencies += other.latencies
        self.refused += other.refused
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.requests += other.requests
        self.records += other.records

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


def run_load(port: int, bodies: list[bytes], concurrency: int, records_per_request: int) -> Result:
    """Closed loop: ``concurrency`` connections, each sending its share of ``bodies`` in turn."""
    payloads = [request_bytes("/predict", body) for body in bodies]
    shares = [payloads[i::concurrency] for i in range(concurrency)]
    result = Result()

    async def main() -> None:
        started = time.perf_counter()
        await asyncio.gather(*(_connection(port, share, result) for share in shares))
        result.elapsed = time.perf_counter() - started

    asyncio.run(main())
    result.requests = len(result.latencies)  # answered
    result.records = len(result.latencies) * records_per_request
    return result


# ------------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    batch: int
    requests: int


SCENARIOS = (
    Scenario("single record, concurrency 1", 1, 1, 1500),
    Scenario("single record, concurrency 8", 8, 1, 3000),
    Scenario("batches of 1,000, concurrency 2", 2, 1000, 120),
)
# --fault-challengers: what a misbehaving challenger does to the champion's answers
FAULT_SCENARIOS = (
    Scenario("single record, concurrency 8", 8, 1, 3000),
    Scenario("batches of 1,000, concurrency 2", 2, 1000, 120),
)
# --overload: more clients than a worker admits (serving.admission.max_in_flight)
OVERLOAD_SCENARIOS = (
    Scenario("single record, concurrency 8", 8, 1, 4000),
    Scenario("single record, concurrency 64", 64, 1, 16000),
)


def bodies_for(records: list[dict], batch: int, n_requests: int) -> list[bytes]:
    bodies = []
    for index in range(n_requests):
        start = (index * batch) % (len(records) - batch + 1)
        chunk = records[start : start + batch]
        bodies.append(json.dumps({"records": chunk[0] if batch == 1 else chunk}).encode())
    return bodies


def measure(
    servers: list[Server], records: list[dict], rounds: int, scenarios: tuple[Scenario, ...]
) -> dict[str, dict[str, Result]]:
    results: dict[str, dict[str, Result]] = {s.name: {} for s in servers}
    for scenario in scenarios:
        per_round = max(1, scenario.requests // rounds)
        bodies = bodies_for(records, scenario.batch, per_round)
        warm = bodies[: max(2, len(bodies) // 10)]
        for server in servers:
            run_load(server.port, warm, scenario.concurrency, scenario.batch)
        time.sleep(1.5)  # the warm-up's log flush and shadow work
        cpu_before = {server.name: server.cpu_seconds() for server in servers}
        for index in range(rounds):
            # alternate the order so neither configuration always goes first
            order = servers if index % 2 == 0 else list(reversed(servers))
            for server in order:
                result = run_load(server.port, bodies, scenario.concurrency, scenario.batch)
                results[server.name].setdefault(scenario.name, Result()).add(result)
            time.sleep(0.5)  # let the shadow queues drain between rounds
        time.sleep(1.5)  # the last round's log flush
        for server in servers:
            total, main = server.cpu_seconds()
            result = results[server.name][scenario.name]
            result.server_cpu_s = total - cpu_before[server.name][0]
            result.main_thread_cpu_s = main - cpu_before[server.name][1]
    return results


def shadow_counts(server: Server) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/model_info", timeout=5) as response:
        info = json.loads(response.read())
    return {
        "counts": info["shadow"]["counts"],
        "circuit_breaker": info["shadow"].get("circuit_breaker", {}).get("state"),
        "refused": info.get("admission", {}).get("refused"),
        "paths": (info["champion"]["fast_path"], (info["challenger"] or {}).get("fast_path")),
    }


def report(
    servers: list[Server],
    results: dict[str, dict[str, Result]],
    rss: dict[str, tuple[float, float]],
    load_before: tuple[float, float, float],
    scenarios: tuple[Scenario, ...] = SCENARIOS,
) -> None:
    load = os.getloadavg()
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average (1, 5, 15 min) before the run "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        "\n| configuration | scenario | answered (200) | refused (503/429) | p50 ms | p95 ms | "
        "p99 ms | requests/s | records/s | server CPU ms per 1,000 records | errors |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for server in servers:
        for scenario in scenarios:
            r = results[server.name][scenario.name]
            print(
                f"| {server.name} | {scenario.name} | {r.requests} | {len(r.refused)} | "
                f"{r.pct(50):.2f} | {r.pct(95):.2f} | {r.pct(99):.2f} | "
                f"{r.requests / r.elapsed:,.0f} | {r.records / r.elapsed:,.0f} | "
                f"{1e6 * r.server_cpu_s / max(r.records, 1):.1f} | {len(r.errors)} |"
            )
    print(f"\nRSS: {', '.join(f'{name} {total:.0f} MB' for name, (total, _) in rss.items())}")
    singles = [scenario for scenario in scenarios if scenario.batch == 1]
    if SCENARIOS[-1] not in scenarios:
        _p50_ratios(servers, results, singles)
        return
    batches = SCENARIOS[-1]
    print(
        f"\n{batches.name}: | configuration | server CPU ms per 1,000 records | of which the "
        "main threads (event loops) | other threads (shadow, log flush, ...) |"
    )
    print("|---|---:|---:|---:|")
    for server in servers:
        r = results[server.name][batches.name]
        total, main = 1e6 * r.server_cpu_s / r.records, 1e6 * r.main_thread_cpu_s / r.records
        print(f"| {server.name} | {total:.1f} | {main:.1f} | {total - main:.1f} |")
    print("\n| configuration | RSS all processes (MB) | largest process (MB) |")
    print("|---|---:|---:|")
    for server in servers:
        total, largest = rss[server.name]
        print(f"| {server.name} | {total:.0f} | {largest:.0f} |")
    _p50_ratios(servers, results, singles)


def _p50_ratios(
    servers: list[Server], results: dict[str, dict[str, Result]], scenarios: list[Scenario]
) -> None:
    """Each shadow configuration's p50 against shadow off of the same code, and against the
    baseline's shadow design (``--baseline``)."""
    for server in servers:
        bases = ["before shadow-off" if server.name.startswith("before ") else "shadow-off"]
        if not server.name.startswith("before ") and "before shadow-thread" in results:
            bases.append("before shadow-thread")
        for base in bases:
            if server.name == base or base not in results:
                continue
            for scenario in scenarios:
                ours = results[server.name][scenario.name].pct(50)
                ratio = ours / results[base][scenario.name].pct(50)
                print(f"p50 ratio {server.name} / {base}, {scenario.name}: {ratio:.3f}")


CONFIGURATIONS = {
    "process": {"shadow": {"enabled": True, "mode": "process"}},
    "thread": {"shadow": {"enabled": True, "mode": "thread"}},
    "thread-2workers": {"shadow": {"enabled": True, "mode": "thread"}, "workers": 2},
    "service": {"shadow": {"enabled": True, "mode": "service"}},
    "off": {"shadow": {"enabled": False}},
    # every request scored on the event loop (no batch threads), for an A/B
    "thread-inline": {"shadow": {"enabled": True, "mode": "thread"}, "batch_thread_min_records": 0},
}
# --durability: serving.log.durability, everything else the shipped defaults
DURABILITY_MODES = ("buffered", "acknowledged")
# acknowledged targets (issue 21): p50 at most this much above buffered ...
DURABILITY_P50_BUDGET_MS = 1.0
# ... and at least this share of its records/s in batches of 1,000
DURABILITY_BATCH_SHARE = 0.70


FAULT_STORE_SCRIPT = r"""
import sys
from shadowdrift.serving.fault_injection import store_faulty_challenger
seconds = float(sys.argv[1])
for fault in sys.argv[2:]:
    print(store_faulty_challenger("shadowdrift-churn-challenger:latest", fault, seconds=seconds))
"""


def fault_store(source_home: str | None, root: Path, faults: list[str], seconds: float) -> str:
    """A copy of the model store with a faulty challenger per fault (fault_injection.py)."""
    source = Path(source_home or os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    home = root / "bentoml"
    shutil.copytree(source / "models", home / "models")
    subprocess.run(
        [sys.executable, "-c", FAULT_STORE_SCRIPT, str(seconds), *faults],
        env={**os.environ, **QUIET_ENV, "BENTOML_HOME": str(home)},
        check=True,
    )
    return str(home)


def configurations(args: argparse.Namespace) -> tuple[list[Server], tuple[Scenario, ...]]:
    """The servers to start and the scenarios to run, from the command line."""
    roles = {}
    if args.swap_models:
        # the store's challenger answers and its champion runs in shadow: which candidate the
        # gate promotes varies, and the service must meet its targets with either
        roles = {
            "models": {
                "champion": "shadowdrift-churn-challenger:latest",
                "challenger": "shadowdrift-churn-champion:latest",
            }
        }
    if args.fault_challengers:
        servers = []
        for mode in args.fault_modes:
            shadow = CONFIGURATIONS[mode]["shadow"]
            servers.append(Server(f"{mode}, healthy challenger", {"shadow": shadow}))
            for fault in args.fault_challengers:
                challenger = f"shadowdrift-churn-fault-{fault}:latest"
                servers.append(
                    Server(
                        f"{mode}, {fault} challenger",
                        {"shadow": shadow, "models": {"challenger": challenger}},
                    )
                )
        return servers, FAULT_SCENARIOS
    if args.durability:
        servers = [
            Server(mode, {"log": {"durability": mode}, **roles}) for mode in DURABILITY_MODES
        ]
        return servers, SCENARIOS
    if args.overload:
        servers = [
            Server(
                f"admission (max_in_flight {args.max_in_flight})",
                {"admission": {"max_in_flight": args.max_in_flight}},
            ),
            Server("no admission control", {"admission": {"max_in_flight": 1_000_000}}),
        ]
        return servers, OVERLOAD_SCENARIOS
    names = [*(f"shadow-{m}" for m in args.modes), "shadow-off"]
    servers = [
        Server(name, {**CONFIGURATIONS[name.removeprefix("shadow-")], **roles}) for name in names
    ]
    if args.baseline:
        # the other checkout's own shadow design (`thread`: it has no `process`) and shadow
        # off, measured in the same rounds
        baseline = Path(args.baseline).resolve()
        servers = [
            Server("before shadow-thread", {**CONFIGURATIONS["thread"], **roles}, baseline),
            Server("before shadow-off", {**CONFIGURATIONS["off"], **roles}, baseline),
            *servers,
        ]
    return servers, SCENARIOS


def run_service_benchmark(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    records = make_records(6000)
    root = Path(tempfile.mkdtemp(prefix="bench-service-"))
    servers, scenarios = configurations(args)
    if args.single_records:
        scenarios = tuple(scenario for scenario in scenarios if scenario.batch == 1)
    home = args.bentoml_home
    try:
        if args.fault_challengers:
            home = fault_store(home, root, args.fault_challengers, args.fault_seconds)
        for server in servers:
            server.start(home, root)
        for server in servers:
            server.wait_ready()
        results = measure(servers, records, args.rounds, scenarios)
        rss = {server.name: server.rss_mb() for server in servers}
        for server in servers:
            print(server.name, shadow_counts(server))
        report(servers, results, rss, load_before, scenarios)
        if args.durability:
            report_durability(servers, results, scenarios, root)
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("kept", root)


def write_ahead_stats(server: Server) -> dict:
    """The answering worker's write-ahead log counters (``/model_info``, ``durability``)."""
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/model_info", timeout=5) as response:
        return json.loads(response.read()).get("durability", {})


def report_durability(
    servers: list[Server],
    results: dict[str, dict[str, Result]],
    scenarios: tuple[Scenario, ...],
    root: Path,
) -> None:
    """Both durability modes side by side, the targets, and what an fsync costs here."""
    from bench_fsync import fsync_cost, print_table

    buffered, acknowledged = (results[mode] for mode in DURABILITY_MODES)
    print(
        "\n| scenario | buffered p50 / p99 ms | acknowledged p50 / p99 ms | p50 difference ms | "
        "buffered requests/s | acknowledged requests/s | acknowledged records/s share |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for scenario in scenarios:
        b, a = buffered[scenario.name], acknowledged[scenario.name]
        share = (a.records / a.elapsed) / (b.records / b.elapsed)
        print(
            f"| {scenario.name} | {b.pct(50):.2f} / {b.pct(99):.2f} | "
            f"{a.pct(50):.2f} / {a.pct(99):.2f} | {a.pct(50) - b.pct(50):+.2f} | "
            f"{b.requests / b.elapsed:,.0f} | {a.requests / a.elapsed:,.0f} | {share:.0%} |"
        )
    print()
    for scenario in scenarios:
        b, a = buffered[scenario.name], acknowledged[scenario.name]
        if scenario.batch == 1:
            difference = a.pct(50) - b.pct(50)
            met = difference <= DURABILITY_P50_BUDGET_MS
            print(
                f"target p50 at most {DURABILITY_P50_BUDGET_MS:g} ms above buffered, "
                f"{scenario.name}: {difference:+.2f} ms, {'met' if met else 'NOT MET'}"
            )
        else:
            share = (a.records / a.elapsed) / (b.records / b.elapsed)
            met = share >= DURABILITY_BATCH_SHARE
            print(
                f"target at least {DURABILITY_BATCH_SHARE:.0%} of buffered records/s, "
                f"{scenario.name}: {share:.0%}, {'met' if met else 'NOT MET'}"
            )
    acknowledged_server = next(s for s in servers if s.name == "acknowledged")
    print(f"\nwrite-ahead log of one acknowledged worker: {write_ahead_stats(acknowledged_server)}")
    print_table(root, fsync_cost(root))


# ------------------------------------------------------------------------------------------
# Model formats: cloudpickle in bentoml.models.create vs bentoml.mlflow.import_model
# ------------------------------------------------------------------------------------------

_FORMAT_SCRIPT = r"""
import json, os, sys, time
fmt, home, tag, records_path = sys.argv[1:5]
os.environ["BENTOML_HOME"] = home
started = time.perf_counter()
import bentoml
if fmt == "pickle":
    from shadowdrift.serving.model_store import load_stored
    model, _ = load_stored(bentoml.models.get(tag))
    pyfunc = None
else:
    pyfunc = bentoml.mlflow.load_model(tag)
    model = pyfunc.unwrap_python_model()
loaded = time.perf_counter() - started
import pandas as pd
import psutil
from shadowdrift.serving.fast_path import FastScorer
frame = pd.read_json(records_path, orient="records")
# the logged signature declares the integer features as double; pyfunc refuses int64 for them
frame = frame.astype({c: "float64" for c in frame.columns if frame[c].dtype.kind == "i"})
def median_ms(call, arg, n):
    call(arg)
    times = []
    for _ in range(n):
        t = time.perf_counter(); call(arg); times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1000
out = {"load_s": loaded, "rss_mb": psutil.Process().memory_info().rss / 2**20,
       "mlflow_imported": "mlflow" in sys.modules}
for rows in (1, 1000):
    part = frame.head(rows)
    out[f"direct_{rows}"] = median_ms(model.predict_probability, part, 200 if rows == 1 else 20)
    if pyfunc is not None:
        out[f"pyfunc_{rows}"] = median_ms(pyfunc.predict, part, 200 if rows == 1 else 20)
fast = FastScorer(model, model.numeric_features, model.categorical_features)
numeric = frame[model.numeric_features].to_numpy(dtype="float64")[:1]
categorical = [[frame[c].iloc[0]] for c in model.categorical_features]
out["fast_1"] = median_ms(lambda a: fast.predict_probability(*a), (numeric, categorical), 500)
out["fast_path"] = f"{fast.path} {fast.fallback_reason or ''}"
print(json.dumps(out))
"""


def run_model_formats(args: argparse.Namespace) -> None:
    """Import the champion both ways into a temporary store; time cold loads and predictions."""
    home = Path(tempfile.mkdtemp(prefix="bench-formats-"))
    os.environ["BENTOML_HOME"] = str(home)  # before BentoML reads it
    import bentoml
    import mlflow
    from mlflow import MlflowClient

    from shadowdrift.serving.config import load_serving_settings, mlflow_uris
    from shadowdrift.serving.model_store import import_alias

    settings = load_serving_settings(PROJECT)
    tracking, registry = mlflow_uris(PROJECT)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    client = MlflowClient(tracking_uri=tracking, registry_uri=registry)
    entry = import_alias(
        client,
        settings.registered_model_name,
        "champion",
        "fmt",
        tracking_uri=tracking,
        registry_uri=registry,
    )
    uri = f"models:/{settings.registered_model_name}@champion"
    mlflow_model = bentoml.mlflow.import_model("fmt-mlflow", uri)
    records_path = home / "records.json"
    records_path.write_text(json.dumps(make_records(1000)))
    runs: dict[str, list[dict]] = {"pickle": [], "mlflow": []}
    tags = {"pickle": entry["bento_tag"], "mlflow": str(mlflow_model.tag)}
    for _ in range(args.rounds):
        for fmt in ("pickle", "mlflow"):  # alternate: background load hits both alike
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _FORMAT_SCRIPT,
                    fmt,
                    str(home),
                    tags[fmt],
                    str(records_path),
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **QUIET_ENV, "OMP_NUM_THREADS": "1"},
            )
            runs[fmt].append(json.loads(out.stdout.strip().splitlines()[-1]))
    sizes = {
        fmt: sum(
            f.stat().st_size for f in Path(bentoml.models.get(tag).path).rglob("*") if f.is_file()
        )
        for fmt, tag in tags.items()
    }

    def med(fmt: str, key: str) -> float:
        values = [run[key] for run in runs[fmt] if key in run]
        return statistics.median(values) if values else float("nan")

    print(f"\nload average {os.getloadavg()[0]:.2f}; medians of {args.rounds} fresh processes each")
    print(
        "\n| format | store size (KB) | cold load incl. imports (s) | RSS after load (MB) | MLflow imported | "
        "pyfunc.predict 1 / 1,000 (ms) | ChurnModel.predict_probability 1 / 1,000 (ms) | fast path 1 (ms) |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for fmt, name in (
        ("pickle", "cloudpickle ChurnModel via bentoml.models.create"),
        ("mlflow", "bentoml.mlflow.import_model (pyfunc)"),
    ):
        pyfunc = (
            f"{med(fmt, 'pyfunc_1'):.2f} / {med(fmt, 'pyfunc_1000'):.1f}"
            if fmt == "mlflow"
            else "-"
        )
        print(
            f"| {name} | {sizes[fmt] / 1024:.0f} | {med(fmt, 'load_s'):.2f} | {med(fmt, 'rss_mb'):.0f} | "
            f"{runs[fmt][0]['mlflow_imported']} | {pyfunc} | "
            f"{med(fmt, 'direct_1'):.2f} / {med(fmt, 'direct_1000'):.1f} | {med(fmt, 'fast_1'):.3f} |"
        )
    shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Where the CPU of a 1,000-record batch goes (in-process, no HTTP)
# ------------------------------------------------------------------------------------------


def _median_cpu_ms(call, repeats: int, prepare=None) -> float:
    """Median CPU time (this process) of ``call(prepare())`` in ms; one warm-up call."""
    times = []
    for _ in range(repeats + 1):
        argument = prepare() if prepare is not None else None
        started = time.process_time()
        call(argument)
        times.append(time.process_time() - started)
    return statistics.median(times[1:]) * 1000


class _CollectingShadow:
    """Stands in for the shadow thread: keeps the jobs, so that their cost is measured apart."""

    remote = False

    def __init__(self) -> None:
        self.jobs: list = []

    def offer(self, job) -> str:
        self.jobs.append(job)
        return "queued"

    def stop(self, grace_s: float) -> None:
        self.jobs.clear()


def _profile_core(root: Path, swap_models: bool = False):
    """A ServingCore on the store's models, its shadow jobs collected, its writer unused."""
    import dataclasses

    from prometheus_client import CollectorRegistry

    from shadowdrift.prediction_log import LogSchema, PredictionLogWriter
    from shadowdrift.schema import parse_schema
    from shadowdrift.serving.bundle import load_bundle
    from shadowdrift.serving.config import load_serving_settings
    from shadowdrift.serving.core import ServingCore
    from shadowdrift.serving.metrics import ServingMetrics

    settings = load_serving_settings(PROJECT)
    sys.setswitchinterval(settings.gil_switch_interval_s)
    if swap_models:
        models = settings.models
        settings = dataclasses.replace(
            settings,
            models={"champion": models["challenger"], "challenger": models["champion"]},
        )
    settings = dataclasses.replace(
        settings,
        prediction_log=dataclasses.replace(settings.prediction_log, path=root / "log"),
        ground_truth=dataclasses.replace(settings.ground_truth, path=root / "labels"),
    )
    # no background flush: its CPU would count in the steps measured
    writer = PredictionLogWriter(
        root / "log",
        LogSchema.from_data_schema(parse_schema(settings.schema)),
        flush_interval_s=None,
    )
    core = ServingCore(
        settings,
        metrics=ServingMetrics(CollectorRegistry()),
        shadow_runner=_CollectingShadow(),
        log_writer=writer,
    )
    core.install(load_bundle(settings))
    import gc

    gc.collect()
    gc.freeze()  # as the service does after loading (service.py, _freeze_heap)
    return core


def _profile_request(core, body: bytes, repeats: int) -> list[tuple[str, float]]:
    import orjson
    from pydantic import BaseModel

    class PydanticBody(BaseModel):  # how BentoML parses a `records: Any` input
        records: object

    def parse(_=None):
        return orjson.loads(body)["records"]

    def pydantic_parse(_=None):
        return PydanticBody.model_validate_json(body).records

    validate = core.validator.validate
    validated = validate(parse())
    champion = core.bundle.champion.scorer
    challenger = core.bundle.challenger.scorer if core.bundle.challenger else None
    arrays = (validated.numeric, validated.categorical)
    rows = [
        ("JSON parse: BentoML's pydantic (before)", _median_cpu_ms(pydantic_parse, repeats)),
        ("JSON parse: orjson (`PredictInput`)", _median_cpu_ms(parse, repeats)),
        (
            "validation of pydantic-parsed records (before)",
            _median_cpu_ms(validate, repeats, pydantic_parse),
        ),
        ("validation of orjson-parsed records", _median_cpu_ms(validate, repeats, parse)),
        (
            f"champion ({champion.path}): predict_probability",
            _median_cpu_ms(lambda _: champion.predict_probability(*arrays), repeats),
        ),
        (
            "`ServingCore.predict` in all (validation, champion, answer, metrics, log columns)",
            _median_cpu_ms(core.predict, repeats, parse),
        ),
    ]
    if challenger is not None:
        rows.append(
            (
                f"shadow: challenger ({challenger.path}) predict_probability",
                _median_cpu_ms(lambda _: challenger.predict_probability(*arrays), repeats),
            )
        )
    return rows


def _profile_log(core, body: bytes, repeats: int, root: Path) -> list[tuple[str, float]]:
    """The log of ten finished requests, flushed ten at a time, as records and as columns.

    Works on older checkouts too (``PYTHONPATH=<checkout>/src``), whose service logged records
    only: the columns row is then left out.
    """
    import orjson

    from shadowdrift.prediction_log import PredictionLogWriter
    from shadowdrift.serving.shadow import OK, ShadowResult

    shadow = core.shadow_runner
    shadow.jobs.clear()
    for _ in range(10):
        core.predict(orjson.loads(body)["records"])
    logs = [job.payload[0] for job in shadow.jobs]
    probability, label = np.full(1000, 0.25), np.zeros(1000, dtype=np.int64)
    challenger = {
        "challenger_status": OK,
        "challenger_probability": probability,
        "challenger_label": label,
        "challenger_model_version": "2",
        "challenger_latency_ms": 5.0,
    }

    def as_records(_=None) -> list[list[dict]]:
        """What the service hands to ``append``: the request's dicts, completed."""
        out = []
        for log in logs:
            if isinstance(log, dict):  # columns: one dict per record
                columns = {**log, **challenger}
                lists = {
                    k: v.tolist() if isinstance(v, np.ndarray) else v
                    for k, v in columns.items()
                    if isinstance(v, list | np.ndarray)
                }
                constants = {k: v for k, v in columns.items() if k not in lists}
                out.append(
                    [{**constants, **{k: v[i] for k, v in lists.items()}} for i in range(1000)]
                )
                continue
            values = zip(probability.tolist(), label.tolist(), strict=True)
            out.append(
                [
                    {**record, **challenger, "challenger_probability": p, "challenger_label": y}
                    for record, (p, y) in zip(log, values, strict=True)
                ]
            )
        return out

    options = {"flush_interval_s": None, "flush_records": 100_000}
    by_records = PredictionLogWriter(root / "records", core.log_schema, **options)

    def log_records(batches: list[list[dict]]) -> None:
        for batch in batches:
            by_records.append(batch)
        by_records.flush()

    finish = [(shadow.jobs[0], ShadowResult(OK, probability, label, 5.0))]
    rows = [
        (
            "shadow: `finish_shadow` (challenger columns, metrics)",
            _median_cpu_ms(lambda _: core.finish_shadow(finish), repeats),
        ),
        (
            "prediction log as records: `append` + flush",
            _median_cpu_ms(log_records, repeats, as_records) / 10,
        ),
    ]
    by_records.close()
    if hasattr(PredictionLogWriter, "append_columns") and isinstance(logs[0], dict):
        by_columns = PredictionLogWriter(root / "columns", core.log_schema, **options)

        def log_columns(batches: list[dict]) -> None:
            for batch in batches:
                by_columns.append_columns(batch)
            by_columns.flush()

        rows.append(
            (
                "prediction log as columns: `append_columns` + flush",
                _median_cpu_ms(
                    log_columns, repeats, lambda: [{**log, **challenger} for log in logs]
                )
                / 10,
            )
        )
        by_columns.close()
    return rows


def run_batch_profile(args: argparse.Namespace) -> None:
    """CPU per 1,000-record batch, step by step, with the store's champion and challenger.

    In this process, one thread, ``OMP_NUM_THREADS=1``, the service's GIL switch interval;
    each figure is the median of ``--repeats`` runs. HTTP and BentoML's own handling are not
    in it (the service benchmark measures the whole).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    root = Path(tempfile.mkdtemp(prefix="bench-batch-profile-"))
    body = json.dumps({"records": make_records(1000)}).encode()
    load = os.getloadavg()
    try:
        core = _profile_core(root, args.swap_models)
        rows = _profile_request(core, body, args.repeats)
        rows += _profile_log(core, body, args.repeats, root)
        core.close(grace_s=0.1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    loads = f"{load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    print(f"\nCPU per 1,000-record batch, median of {args.repeats}; load average {loads}")
    print("\n| step | CPU ms per 1,000 records |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value:.2f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["process"],
        choices=["process", "thread", "service", "thread-2workers", "thread-inline"],
        help="shadow modes to compare with shadow off",
    )
    parser.add_argument(
        "--fault-challengers",
        nargs="+",
        choices=["raise", "sleep", "gil"],
        help="serve faulty challengers (fault_injection.py) beside a healthy one, instead",
    )
    parser.add_argument(
        "--fault-modes",
        nargs="+",
        default=["process"],
        choices=["process", "thread"],
        help="shadow modes to run the faulty challengers in",
    )
    parser.add_argument(
        "--fault-seconds", type=float, default=0.3, help="sleep / GIL time per challenger call"
    )
    parser.add_argument(
        "--single-records",
        action="store_true",
        help="only the single-record scenarios (more rounds in the same time)",
    )
    parser.add_argument(
        "--overload",
        action="store_true",
        help="concurrency 8 vs 64, with and without admission control, instead",
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=8, help="serving.admission.max_in_flight (--overload)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per scenario")
    parser.add_argument("--bentoml-home", default=None, help="model store to serve from")
    parser.add_argument("--keep", action="store_true", help="keep the servers' work directories")
    parser.add_argument(
        "--baseline",
        default=None,
        help="a checkout of an older commit (git archive REF | tar -x -C DIR): its code and "
        "conf/base are served too, as 'before ...' configurations in the same rounds",
    )
    parser.add_argument(
        "--swap-models",
        action="store_true",
        help="serve the store's challenger as champion and its champion in shadow",
    )
    parser.add_argument(
        "--durability",
        action="store_true",
        help="serving.log.durability buffered vs acknowledged (shipped defaults otherwise), "
        "with the disk's fsync cost, instead",
    )
    parser.add_argument("--model-formats", action="store_true", help="compare model store formats")
    parser.add_argument(
        "--batch-profile",
        action="store_true",
        help="CPU per step of a 1,000-record batch, in-process (no HTTP)",
    )
    parser.add_argument(
        "--repeats", type=int, default=30, help="repeats per step (--batch-profile)"
    )
    args = parser.parse_args(argv)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if args.model_formats:
        run_model_formats(args)
    elif args.batch_profile:
        run_batch_profile(args)
    else:
        run_service_benchmark(args)


if __name__ == "__main__":
    main()
