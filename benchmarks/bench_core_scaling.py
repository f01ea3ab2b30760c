"""How well this machine runs two busy processes at once: the ceiling for a 1-to-2-worker
speed-up, for three kinds of work.

    .venv/bin/python benchmarks/bench_core_scaling.py [--seconds 3]

Each workload runs a fixed number of iterations in one process, then the same number in each
of two processes at once, then in one again; the speed-up is ``2 x (faster one-process time) /
(two-process time)``: 2.00x when both cores do their share as fast as one core alone.

* ``compute``: binning, sorting and a Python loop on a 2.4 MB array (in cache, no allocation).
* ``memory``: adding two 64 MiB float arrays into a third, allocated once (memory bandwidth).
* ``fresh_pages``: allocating a new 64 MiB array (glibc maps it fresh: above its mmap
  threshold), filling it and freeing it (page faults and the kernel zeroing pages).

docs/benchmarks.md ("Scale-out") reads the Dask speed-ups against these ceilings.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import numpy as np

ARRAY_BYTES = 64 * 2**20


def compute(iterations: int, start: Barrier) -> float:
    values = np.random.default_rng(0).random(300_000)
    edges = np.linspace(0, 1, 10)
    start.wait()
    tick = time.perf_counter()
    for _ in range(iterations):
        np.searchsorted(edges, values)
        np.sort(values[:50_000])
        sum(i * i for i in range(20_000))
    return time.perf_counter() - tick


def memory(iterations: int, start: Barrier) -> float:
    left, right = np.ones(ARRAY_BYTES // 8), np.ones(ARRAY_BYTES // 8)
    out = np.zeros_like(left)
    start.wait()
    tick = time.perf_counter()
    for _ in range(iterations):
        np.add(left, right, out=out)
    return time.perf_counter() - tick


def fresh_pages(iterations: int, start: Barrier) -> float:
    start.wait()
    tick = time.perf_counter()
    for _ in range(iterations):
        array = np.empty(ARRAY_BYTES // 8)
        array.fill(1.0)
        del array
    return time.perf_counter() - tick


Workload = Callable[[int, Barrier], float]
WORKLOADS: dict[str, Workload] = {
    "compute": compute,
    "memory": memory,
    "fresh_pages": fresh_pages,
}


def _worker(function: Workload, iterations: int, start: Barrier, results: Queue) -> None:
    results.put(function(iterations, start))


def _timed(function: Workload, iterations: int, processes: int) -> float:
    """Seconds until the last of ``processes`` finished its iterations (set-up not timed: all
    start their loops together)."""
    start, results = multiprocessing.Barrier(processes), multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_worker, args=(function, iterations, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    elapsed = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"{function.__name__} failed in a worker (exit {worker.exitcode})")
    return max(elapsed)


def _iterations_for(function: Workload, seconds: float) -> int:
    """Iterations that take about ``seconds`` in one process (from a short trial run)."""
    trial = 5
    elapsed = _timed(function, trial, 1)
    return max(trial, round(trial * seconds / elapsed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per run of one process")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} CPUs")
    print("| workload | iterations | 1 process (s) | 2 processes (s) | speed-up ceiling |")
    print("|---|---:|---:|---:|---:|")
    for name, function in WORKLOADS.items():
        iterations = _iterations_for(function, args.seconds)
        one = _timed(function, iterations, 1)
        two = _timed(function, iterations, 2)
        one = min(one, _timed(function, iterations, 1))
        print(f"| {name} | {iterations} | {one:.2f} | {two:.2f} | {2 * one / two:.2f}x |")


if __name__ == "__main__":
    main()
