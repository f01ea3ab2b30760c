"""kedro-viz: `kedro viz build` writes a static site that draws the pipeline graph in a browser,
and `kedro viz run` serves the same graph on 127.0.0.1 only.

The browser is Debian's headless chromium (`apt-get install -y chromium`). Without it the browser
test is skipped, except in CI (env var CI set), where a missing browser fails.
The screenshot is kept in the test's tmp_path and copied to the project copy's
data/08_reporting/kedro_viz_screenshot.png.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT, load_yaml
from tests.small_project import small_trained_project

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1600",  # tall enough for the whole graph to be legible
)
VIRTUAL_TIME_BUDGET_MS = 15000
# Served beside the site: stores kedro-viz's UI state in the browser profile before the real
# visit, so the onboarding tour does not cover the graph and the light theme is used.
SEED_PATH = "/__seed_local_storage.html"
SEED_PAGE = b"""<!doctype html><html><body><script>
localStorage.setItem("KedroViz", JSON.stringify({showFeatureHints: false, theme: "light"}));
document.body.textContent = "seeded";
</script></body></html>"""
NODES_TO_SEE = ("simulate_customer_history", "train_gbm")
NO_NETWORK_PROXY = "http://127.0.0.1:9"  # connection refused at once: nothing leaves the machine


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(
            f"CI is set but {CHROMIUM} is missing: the test set-up must run "
            "`apt-get install -y chromium` (see the Makefile)"
        )
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); CI installs it")


def _kedro() -> str:
    return str(Path(sys.executable).with_name("kedro"))


def _offline_env() -> dict[str, str]:
    """The environment with proxies that refuse: kedro-viz's PyPI version check fails at once."""
    return {
        **os.environ,
        "HTTPS_PROXY": NO_NETWORK_PROXY,
        "HTTP_PROXY": NO_NETWORK_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
    }


@pytest.fixture(scope="module")
def viz_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared small trained project (data for previews) with a `kedro viz build`."""
    path = small_trained_project(tmp_path_factory)
    command = [_kedro(), "viz", "build", "--include-previews"]
    result = subprocess.run(
        command,
        cwd=path,
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    build = path / "build"
    # `kedro viz build` exits 0 even when it fails: judge by what it wrote.
    assert result.returncode == 0 and (build / "api" / "main").is_file(), (
        f"kedro viz build wrote no site:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return path


@pytest.fixture(scope="module")
def site(viz_project: Path) -> dict[str, Any]:
    return json.loads((viz_project / "build" / "api" / "main").read_text(encoding="utf-8"))


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the build folder, plus the localStorage seed page."""

    def do_GET(self) -> None:
        if self.path == SEED_PATH:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(SEED_PAGE)))
            self.end_headers()
            self.wfile.write(SEED_PAGE)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def served_site(viz_project: Path) -> Iterator[str]:
    """The static site on http://127.0.0.1:<free port>/ (file:// cannot load its API files)."""
    handler = functools.partial(_SiteHandler, directory=str(viz_project / "build"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"chromium failed:\n{result.stderr[-3000:]}"
    return result


def _task_nodes_drawn(dom: str) -> set[str]:
    """Names of task nodes drawn in the flowchart (SVG groups, not the sidebar list)."""
    groups = re.findall(r"<g [^>]*class=\"pipeline-node pipeline-node--task[^\"]*\"[^>]*>", dom)
    return {m for g in groups for m in re.findall(r'data-node-fullname="([^"]+)"', g)}


def test_static_site_draws_the_pipeline_graph_in_headless_chromium(
    viz_project: Path, site: dict[str, Any], served_site: str, tmp_path: Path
) -> None:
    _require_chromium()
    profile = tmp_path / "chromium-profile"
    seeded = _chromium(profile, "--dump-dom", served_site + SEED_PATH)
    assert "seeded" in seeded.stdout

    dom = _chromium(
        profile, f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", "--dump-dom", served_site + "/"
    ).stdout
    drawn = _task_nodes_drawn(dom)
    assert set(NODES_TO_SEE) <= drawn, f"graph nodes drawn: {sorted(drawn)}"
    expected = {n["name"] for n in site["nodes"] if n["type"] == "task"}
    assert drawn == expected, f"missing {expected - drawn}, unexpected {drawn - expected}"

    screenshot = tmp_path / "kedro_viz.png"
    _chromium(
        profile,
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        f"--screenshot={screenshot}",
        served_site + "/",
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    kept = viz_project / "data" / "08_reporting" / "kedro_viz_screenshot.png"
    shutil.copy2(screenshot, kept)
    _assert_graph_area_is_drawn(screenshot)


def _assert_graph_area_is_drawn(png: Path) -> None:
    """The flowchart (right of the sidebars) holds many non-background pixels: nodes and edges."""
    from PIL import Image

    with Image.open(png) as image:
        width, height = image.size
        graph = image.convert("L").crop((width // 2, 0, width, height))
        histogram = graph.histogram()
    background = max(range(256), key=histogram.__getitem__)
    drawn = sum(count for value, count in enumerate(histogram) if abs(value - background) > 40)
    assert drawn > 2000, f"{png}: only {drawn} pixels differ from the background; empty graph?"


def test_every_node_is_named_and_tagged_and_every_dataset_has_a_layer(
    site: dict[str, Any],
) -> None:
    tasks = {n["name"]: n for n in site["nodes"] if n["type"] == "task"}
    assert set(NODES_TO_SEE) <= set(tasks), sorted(tasks)
    for name, node in tasks.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]+", name), name
        assert node["tags"], f"node {name} has no tag in kedro-viz"
    no_layer = sorted(n["name"] for n in site["nodes"] if n["type"] == "data" and not n["layer"])
    assert not no_layer, f"datasets without a kedro-viz layer (catalog metadata): {no_layer}"


def _table_entries() -> dict[str, tuple[re.Pattern[str], int]]:
    """Catalog entries of pandas datasets (patterns too): name -> (matcher, preview nrows)."""
    entries = {}
    for path in sorted((PROJECT_ROOT / "conf/base").glob("catalog*.yml")):
        for name, entry in (load_yaml(path) or {}).items():
            if not str(entry.get("type", "")).startswith("pandas."):
                continue
            nrows = entry.get("metadata", {}).get("kedro-viz", {}).get("preview_args", {})
            nrows = nrows.get("nrows")
            assert isinstance(nrows, int) and nrows > 0, (
                f"{name} ({path.name}): table datasets need metadata.kedro-viz.preview_args.nrows"
            )
            matcher = re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(name)))
            entries[name] = (matcher, nrows)
    return entries


def test_table_previews_are_row_limited(viz_project: Path, site: dict[str, Any]) -> None:
    entries = _table_entries()
    checked = []
    for node in site["nodes"]:
        name = node["name"]
        if node["type"] != "data":
            continue
        # An explicit entry wins over a pattern (Kedro's own rule).
        limits = (
            [entries[name][1]]
            if name in entries
            else [nrows for matcher, nrows in entries.values() if matcher.fullmatch(name)]
        )
        if not limits:
            continue
        details = json.loads((viz_project / "build/api/nodes" / node["id"]).read_text())
        if details.get("preview") is None:
            continue  # nothing written under that name in this project copy
        assert details["preview_type"] == "TablePreview", name
        assert 0 < len(details["preview"]["data"]) <= limits[0], name
        checked.append(name)
    assert {"raw_events", "model_input_test", "model_output_test_predictions"} <= set(checked)


def test_the_default_pipeline_is_drawn_with_layers(site: dict[str, Any]) -> None:
    assert site["layers"], "kedro-viz found no layer order (cycle among layers)"


def _free_port() -> int:
    """A free loopback port below 49152: kedro-viz refuses ports in the ephemeral range."""
    for port in random.Random().sample(range(20000, 49000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 49000")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_kedro_viz_run_serves_the_graph_on_loopback(viz_project: Path, tmp_path: Path) -> None:
    port = _free_port()
    command = [_kedro(), "viz", "run", "--host", "127.0.0.1", "--port", str(port), "--no-browser"]
    log = tmp_path / "kedro_viz_run.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            cwd=viz_project,
            env=_offline_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with everything it spawned
        )
    try:
        deadline = time.monotonic() + 120
        main = None
        while main is None and time.monotonic() < deadline and process.poll() is None:
            try:
                main = _get_json(f"http://127.0.0.1:{port}/api/main")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        if main is None:
            _stop(process)
            pytest.fail(f"kedro viz run did not serve /api/main:\n{log.read_text()[-3000:]}")
        names = {n["name"] for n in main["nodes"] if n["type"] == "task"}
        assert set(NODES_TO_SEE) <= names
        listening = _listening_addresses(port)
        assert listening <= {"127.0.0.1"}, f"kedro viz run listens on {listening}"
    finally:
        _stop(process)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (empty if ``ss`` is missing)."""
    if shutil.which("ss") is None:
        return set()
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines() if line}


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and the process group it started (its server runs in a child process)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue
