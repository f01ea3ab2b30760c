"""Time the simulator and the data-engineering pipeline at scale.

    .venv/bin/python benchmarks/bench_foundation.py --rows 1000000

Runs in a throwaway copy of the project: `kedro run --pipelines simulation` with the requested
number of history rows, then `kedro run --pipelines data_engineering`, each in its own process,
reporting wall time (Kedro start-up included) and the peak resident memory of that process.
Also times the simulator alone, in this process.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import copy_project  # noqa: E402


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_kedro(project: Path, pipeline: str, params: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `kedro run` in a fresh process."""
    kedro = Path(sys.executable).with_name("kedro")
    script = (
        "import resource, subprocess, sys, time;"
        "t = time.perf_counter();"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w = time.perf_counter() - t;"
        "print(r.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "sys.stderr.write(r.stderr[-3000:] if r.returncode else '')"
    )
    cmd = [
        sys.executable,
        "-c",
        script,
        str(kedro),
        "run",
        "--pipelines",
        pipeline,
        "--params",
        params,
    ]
    out = subprocess.run(cmd, cwd=project, capture_output=True, text=True, check=True)
    code, wall, rss_kb = out.stdout.split()
    if code != "0":
        raise SystemExit(f"kedro run --pipelines {pipeline} failed:\n{out.stderr}")
    return float(wall), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    from shadowdrift.simulation import simulate_history

    started = time.perf_counter()
    simulate_history(args.rows, 1, "2024-01-01", 365, 30)
    simulator_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp) / "project")
        params = f"simulation.n_events={args.rows},simulation.n_production={max(args.rows // 5, 1)}"
        sim_wall, sim_rss = run_kedro(project, "simulation", params)
        de_wall, de_rss = run_kedro(project, "data_engineering", params)
        probe_wall, _ = run_kedro(
            project, "data_engineering", "data_engineering.min_rows_per_window=1"
        )

    print(f"machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"rows: {args.rows:,} history rows ({max(args.rows // 5, 1):,} production rows)\n")
    print("| step | wall time (s) | peak RSS (MB) | target |")
    print("|---|---:|---:|---|")
    print(
        f"| simulator alone (history rows, in-process) | {simulator_seconds:.2f} | - | <= 10 s for 1M rows |"
    )
    print(f"| `kedro run --pipelines simulation` (process) | {sim_wall:.2f} | {sim_rss:.0f} | - |")
    print(
        f"| `kedro run --pipelines data_engineering` (process) | {de_wall:.2f} | {de_rss:.0f} | <= 30 s, < 2 GB for 1M rows |"
    )
    print(f"| the same again (warm file cache) | {probe_wall:.2f} | - | - |")


if __name__ == "__main__":
    main()
