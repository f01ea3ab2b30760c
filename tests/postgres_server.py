"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, unix socket only."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_bin_dir() -> Path | None:
    """Debian's postgresql installs its server binaries under /usr/lib/postgresql/<major>/bin."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    return candidates[-1].parent if candidates else None


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb refuses to run as root; Debian's package creates the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_postgres(database: str = "mlflow") -> Iterator[str]:
    """Start a server listening on a unix socket only; yield a SQLAlchemy URI; stop and delete it."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql")
    root = Path(tempfile.mkdtemp(prefix="shadowdrift-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(socket_dir, "postgres", "postgres")

    def run(*command: str) -> None:
        subprocess.run(_as_postgres_user(list(command)), check=True, capture_output=True, text=True)

    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "shadowdrift",
            "--no-sync",
        )
        options = f"-k {socket_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(root / "server.log"),
            "start",
        )
        try:
            run(str(bin_dir / "createdb"), "-h", str(socket_dir), "-U", "shadowdrift", database)
            yield f"postgresql+psycopg2://shadowdrift@/{database}?host={socket_dir}"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
