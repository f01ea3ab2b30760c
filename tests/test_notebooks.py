"""Every notebook runs headless with papermill on a small trained project, without error.

The project copy is built once per session with the pipelines the notebooks read (simulation,
data_engineering, training, evaluation, inference on small data; tests/small_project.py). The notebooks run in a kernel
of this interpreter (``shadowdrift.notebook_report.python_kernel``), so the test needs nothing but
the project's virtualenv. The drift report runs through its documented command,
``python -m shadowdrift.notebook_report``, which also exports the HTML.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

from shadowdrift.notebook_report import PLOTLY_MIME, failed_cell_error, python_kernel
from tests.conftest import PROJECT_ROOT, base_parameters
from tests.pipelines.test_training_and_evaluation import SMALL
from tests.small_project import small_trained_project

pytestmark = pytest.mark.slow

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
DRIFT_REPORT = "03_drift_report.ipynb"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
# What each notebook's `summary` cell must report (notebooks not listed only have to run).
EXPECTED_SUMMARY_KEYS = {
    "01_data_exploration.ipynb": {"datasets", "label_rate", "scenario", "windows"},
    "02_champion_vs_challenger.ipynb": {"aliases", "oracle_roc_auc", "roc_auc", "agreement"},
    DRIFT_REPORT: {"chunks", "records", "max_psi", "min_agreement_rate"},
}


@pytest.fixture(scope="module")
def small_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with the notebooks and everything they read, built on small data."""
    return small_trained_project(tmp_path_factory)


def _summary(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    """The application/json output of the cell tagged `summary`."""
    for cell in notebook.cells:
        if "summary" in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                if "application/json" in output.get("data", {}):
                    return dict(output["data"]["application/json"])
    raise AssertionError("no application/json output in a cell tagged 'summary'")


def _plotly_figures(notebook: nbformat.NotebookNode) -> int:
    return sum(
        PLOTLY_MIME in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def _check_executed(notebook: nbformat.NotebookNode, name: str) -> dict[str, Any]:
    assert failed_cell_error(notebook) is None, f"{name} raised {failed_cell_error(notebook)}"
    statuses = {c.metadata.get("papermill", {}).get("status") for c in notebook.cells}
    assert statuses <= {"completed"}, f"{name}: cells not completed: {statuses}"
    assert _plotly_figures(notebook) >= 1, f"{name} drew no plotly figure"
    summary = _summary(notebook)
    missing = EXPECTED_SUMMARY_KEYS.get(name, set()) - set(summary)
    assert not missing, f"{name}: summary lacks {sorted(missing)}: {summary}"
    return summary


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n != DRIFT_REPORT])
def test_notebook_runs_with_papermill(small_project: Path, tmp_path: Path, name: str) -> None:
    output = tmp_path / name
    with python_kernel() as kernel:
        papermill.execute_notebook(
            str(small_project / "notebooks" / name),
            str(output),
            parameters={"project_path": str(small_project)},
            kernel_name=kernel,
            cwd=str(small_project / "notebooks"),
            progress_bar=False,
            execution_timeout=300,
        )
    summary = _check_executed(nbformat.read(output, as_version=4), name)
    if name == "01_data_exploration.ipynb":
        rows = summary["datasets"]
        assert rows["raw_events"]["rows"] == SMALL["simulation"]["n_events"]
        assert rows["raw_production"]["rows"] == SMALL["simulation"]["n_production"]
        windows = ("model_input_train", "model_input_test", "model_input_reference")
        assert sum(rows[w]["rows"] for w in windows) == SMALL["simulation"]["n_events"]
    if name == "02_champion_vs_challenger.ipynb":
        assert set(summary["aliases"]) == {"champion", "challenger"}
        assert summary["tracking_uri"] == f"sqlite:///{small_project}/data/06_models/mlflow.db", (
            "the notebook must use kedro-mlflow's tracking URI of the project it was given"
        )
        assert 0.5 < summary["agreement"]["agreement_rate"] <= 1


def test_drift_report_command_writes_timestamped_notebook_and_offline_html(
    small_project: Path,
) -> None:
    report_dir = small_project / "data/08_reporting/notebook_reports"
    command = [sys.executable, "-m", "shadowdrift.notebook_report", "--env", "base"]
    command += ["--chunk-period", "W", "--min-chunk-rows", "50"]
    result = subprocess.run(
        command, cwd=small_project, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-5000:]}"
    executed = sorted(report_dir.glob("03_drift_report_*.ipynb"))
    assert len(executed) == 1, sorted(report_dir.iterdir())
    assert re.fullmatch(r"03_drift_report_\d{8}T\d{6}Z\.ipynb", executed[0].name)
    html = executed[0].with_suffix(".html")
    assert html.is_file(), f"no HTML export next to {executed[0]}"

    notebook = nbformat.read(executed[0], as_version=4)
    summary = _check_executed(notebook, DRIFT_REPORT)
    assert summary["source"] == "computed in notebook"
    assert summary["chunking"] == {"period": "W"}
    # Only the latest batch run of the log: one record per production row.
    assert summary["records"] == SMALL["simulation"]["n_production"]
    split = json.loads(
        next((small_project / "data/08_reporting").glob("split_summary.json/*/*")).read_text()
    )
    assert summary["reference_rows"] == split["windows"]["reference"]["rows"]
    assert summary["chunks"] >= 10  # 90 production days in weeks
    schema = base_parameters()["schema"]
    assert set(summary["max_psi"]) == set(schema["numeric"]) | set(schema["categorical"])

    page = html.read_text(encoding="utf-8")
    assert not re.findall(r"<script[^>]+src=[\"']https?://", page), "HTML loads scripts from a CDN"
    assert page.count("plotly.js v") == 1, "plotly.js is not inlined exactly once"
    assert page.count('class="plotly-graph-div"') == _plotly_figures(notebook), "figures lost"
    assert json.dumps("PSI per feature and chunk")[1:-1] in page
