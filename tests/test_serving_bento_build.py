"""``bentoml build`` offline from a copy of the project, then ``bentoml serve`` of the Bento.

The packaged test project (``tests/pipelines/test_packaging.py``, built once per session) gives
the models; everything BentoML writes goes to a temporary ``BENTOML_HOME``, never ``~/bentoml``.
The build uses the older Bento layout (``BENTOML_ENABLE_FEATURES=no_image``, as ``make bento``),
which needs neither ``uv`` nor a package index.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shadowdrift.prediction_log import read_prediction_log
from tests.conftest import PROJECT_ROOT
from tests.pipelines.test_packaging import packaged_project, packaging_report
from tests.test_serving_validation import record

pytestmark = pytest.mark.slow

BENTOML = str(Path(sys.executable).with_name("bentoml"))
# what bentofile.yaml includes, plus the file itself and the lock file it installs
BUILD_FILES = ("bentofile.yaml", "service.py", "requirements.lock", ".telemetry")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_context(target: Path) -> Path:
    """The files ``bentoml build`` reads, copied from the project (no data, no conf/local)."""
    target.mkdir(parents=True)
    for name in BUILD_FILES:
        shutil.copy2(PROJECT_ROOT / name, target / name)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", target / "conf" / "base")
    shutil.copytree(
        PROJECT_ROOT / "src" / "shadowdrift",
        target / "src" / "shadowdrift",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return target


def quiet_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SHADOWDRIFT_PROJECT_PATH")
    }
    return {
        **env,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "DO_NOT_TRACK": "1",
        "PIP_NO_INDEX": "1",  # offline: nothing may be downloaded
        **extra,
    }


def users_bentos() -> list[str]:
    """The Bentos in the user's own store (``~/bentoml``), which this test must not touch."""
    bentos = Path.home() / "bentoml" / "bentos"
    return sorted(str(p.relative_to(bentos)) for p in bentos.rglob("*")) if bentos.is_dir() else []


def test_bentoml_build_offline_and_serve_the_bento(tmp_path):
    project, packaged_home = packaged_project()
    report = packaging_report(project)["models"]["champion"]
    users_bentos_before = users_bentos()

    # a store of our own: the session's packaged models, and the Bento built below
    home = tmp_path / "bentoml"
    shutil.copytree(packaged_home / "models", home / "models")
    context = build_context(tmp_path / "build")
    built = subprocess.run(
        [BENTOML, "build", "--output", "tag"],
        check=False,
        cwd=context,
        env=quiet_env(home, BENTOML_ENABLE_FEATURES="no_image"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert list((home / "bentos" / "shadowdrift").glob("*/bento.yaml")), built.stdout

    data_root = tmp_path / "data-root"
    data_root.mkdir()
    log_file = tmp_path / "serve.log"
    port = free_port()
    with open(log_file, "wb") as out:
        process = subprocess.Popen(
            [BENTOML, "serve", "shadowdrift:latest", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,  # not the project: the Bento brings its own code and conf/base
            env=quiet_env(home, SHADOWDRIFT_DATA_ROOT=str(data_root)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"bentoml serve exited:\n{log_file.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready:\n{log_file.read_text()[-4000:]}"
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

        good = httpx.post(
            f"{url}/predict",
            json={"records": [record(customer_id=7)]},
            headers={"X-Request-ID": "bento-1"},
            timeout=30,
        )
        assert good.status_code == 200, good.text
        body = good.json()
        assert body["request_id"] == "bento-1"
        assert body["model_version"] == report["registry_version"]
        (prediction,) = body["predictions"]
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["model_version"] == report["registry_version"]
        assert prediction["label"] in (0, 1)
        # the Bento serves the champion it pinned at build time, the one packaging imported
        info = httpx.get(f"{url}/model_info", timeout=30).json()
        assert info["champion"]["bento_tag"] == report["bento_tag"]

        bad = httpx.post(f"{url}/predict", json={"records": [record(age=500)]}, timeout=30)
        assert bad.status_code == 422
        assert [d["field"] for d in bad.json()["detail"]] == ["age"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    assert process.returncode == 0, log_file.read_text()[-4000:]
    # the log went to SHADOWDRIFT_DATA_ROOT, not into the Bento's directory
    log = read_prediction_log(data_root / "data" / "07_model_output" / "prediction_log")
    assert log["request_id"].tolist() == ["bento-1"]
    assert log["customer_id"].tolist() == ["7"]
    assert users_bentos() == users_bentos_before
