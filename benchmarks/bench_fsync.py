"""What one fsync costs on this disk: the floor under the acknowledged durability mode.

The acknowledged mode (``serving.log.durability: acknowledged``) answers a request once its
records are appended to a write-ahead segment and ``fdatasync``-ed; concurrent requests share
one commit, so a commit's cost is paid once per group, not per request. This script appends
entries of a few sizes to a file in ``--dir`` (default: a temporary directory under the
project's ``data/``, the file system the logs live on) and times ``write`` + ``fdatasync``,
as the write-ahead log's committer does.

    .venv/bin/python benchmarks/bench_fsync.py
    .venv/bin/python benchmarks/bench_fsync.py --dir /mnt/logs --appends 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SIZES = (256, 4096, 65536)  # one record; a burst of single-record requests; a 150-record batch


def fsync_cost(directory: Path, appends: int = 500, sizes: tuple[int, ...] = SIZES) -> list[dict]:
    """Per entry size: median, p99 and mean ms of ``write`` + ``fdatasync`` of an append."""
    rows = []
    with tempfile.TemporaryDirectory(dir=directory, prefix=".fsync-bench-") as scratch:
        for size in sizes:
            path = Path(scratch) / f"append-{size}.bin"
            payload = os.urandom(size)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                for _ in range(10):  # allocate the file's first blocks, warm the path
                    os.write(fd, payload)
                    os.fdatasync(fd)
                times = []
                for _ in range(appends):
                    started = time.perf_counter()
                    os.write(fd, payload)
                    os.fdatasync(fd)
                    times.append(time.perf_counter() - started)
            finally:
                os.close(fd)
            times.sort()
            rows.append(
                {
                    "bytes": size,
                    "p50_ms": 1000 * statistics.median(times),
                    "p99_ms": 1000 * times[min(len(times) - 1, int(0.99 * len(times)))],
                    "mean_ms": 1000 * statistics.fmean(times),
                    "per_s": len(times) / sum(times),
                }
            )
    return rows


def file_system_of(directory: Path) -> str:
    """The mount (device, type) holding ``directory``, from /proc/mounts."""
    best, found = "", "unknown"
    target = str(directory.resolve())
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        device, mount, kind, *_ = line.split()
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(
            best
        ):
            best, found = mount, f"{device} on {mount} ({kind})"
    return found


def print_table(directory: Path, rows: list[dict]) -> None:
    print(f"\nfsync cost in {directory}: {file_system_of(directory)}")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "\n| append size | write + fdatasync p50 ms | p99 ms | mean ms | commits/s (one writer) |"
    )
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['bytes']:,} B | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
            f"{row['mean_ms']:.3f} | {row['per_s']:,.0f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=PROJECT / "data", help="where to write")
    parser.add_argument("--appends", type=int, default=500, help="timed appends per size")
    args = parser.parse_args(argv)
    print_table(args.dir, fsync_cost(args.dir, args.appends))


if __name__ == "__main__":
    main()
