"""shadowdrift.notebook_report without a kernel: names, options, HTML post-processing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import plotly.graph_objects as go
from nbformat.v4 import new_code_cell, new_notebook, new_output

from shadowdrift.notebook_report import (
    HIDE_OUTPUT_TAG,
    KERNEL_NAME,
    PLOTLY_MIME,
    build_parser,
    export_html,
    failed_cell_error,
    hide_tagged_outputs,
    inline_plotly_outputs,
    parameters_from_args,
    python_kernel,
    reserve_output,
)

NOW = datetime(2025, 3, 1, 12, 30, 5, tzinfo=UTC)


def test_output_names_carry_the_time_and_never_repeat(tmp_path: Path) -> None:
    first = reserve_output(tmp_path, "03_drift_report", NOW)
    second = reserve_output(tmp_path, "03_drift_report", NOW)
    assert first.name == "03_drift_report_20250301T123005Z.ipynb"
    assert second.name == "03_drift_report_20250301T123005Z_2.ipynb"
    # an HTML left by an earlier run also blocks the name
    second.unlink()
    second.with_suffix(".html").write_text("old report")
    assert reserve_output(tmp_path, "03_drift_report", NOW).name.endswith("_3.ipynb")
    assert second.with_suffix(".html").read_text() == "old report"


def test_options_become_notebook_parameters_and_only_given_ones() -> None:
    options = "--env base --chunk-period W -p n_bins 20 -p log_end null -p log_start 2025-01-01"
    args = build_parser().parse_args([*options.split(), "-p", "use_drift_pipeline_outputs", "true"])
    assert parameters_from_args(args) == {
        "env": "base",
        "chunk_period": "W",
        "n_bins": 20,
        "log_end": None,
        "log_start": "2025-01-01",  # a string, not a date: papermill injects literals only
        "use_drift_pipeline_outputs": True,
    }
    assert parameters_from_args(build_parser().parse_args([])) == {}


def test_the_kernel_is_this_interpreter_and_the_environment_is_restored() -> None:
    before = os.environ.get("JUPYTER_PATH")
    with python_kernel("/opt/some/python") as name:
        assert name == KERNEL_NAME
        data_dir = Path(os.environ["JUPYTER_PATH"].split(os.pathsep)[0])
        spec = json.loads((data_dir / "kernels" / name / "kernel.json").read_text())
        assert spec["argv"][:3] == ["/opt/some/python", "-m", "ipykernel_launcher"]
    assert os.environ.get("JUPYTER_PATH") == before
    assert not data_dir.exists()


def _notebook_with_figures() -> nbformat.NotebookNode:
    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4])).to_plotly_json()
    figure = json.loads(json.dumps(figure, default=list))
    setup = new_code_cell("%reload_kedro", metadata={"tags": [HIDE_OUTPUT_TAG]})
    setup.outputs = [new_output("stream", name="stderr", text="INFO lots of Kedro logs")]
    plots = new_code_cell("fig.show(); fig.show()")
    plots.outputs = [
        new_output("display_data", data={PLOTLY_MIME: figure, "text/plain": "fig"})
        for _ in range(2)
    ]
    return new_notebook(cells=[setup, plots])


def test_plotly_figures_become_html_with_plotly_js_inlined_once() -> None:
    notebook = _notebook_with_figures()
    inlined = inline_plotly_outputs(notebook)
    first, second = (o["data"] for o in inlined.cells[1].outputs)
    assert set(first) == set(second) == {"text/html"}
    assert "plotly.js v" in first["text/html"] and "plotly.js v" not in second["text/html"]
    assert PLOTLY_MIME in notebook.cells[1].outputs[0]["data"], "the input is left alone"


def test_tagged_outputs_are_hidden_unless_the_cell_failed() -> None:
    notebook = _notebook_with_figures()
    assert hide_tagged_outputs(notebook).cells[0].outputs == []
    notebook.cells[0].outputs.append(
        new_output("error", ename="DatasetError", evalue="boom", traceback=[])
    )
    assert len(hide_tagged_outputs(notebook).cells[0].outputs) == 2


def test_html_export_loads_nothing_from_the_network(tmp_path: Path) -> None:
    source = tmp_path / "executed.ipynb"
    nbformat.write(_notebook_with_figures(), source)
    page = export_html(source, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script src=" not in page.replace('<script src="data:', "")
    assert "cdnjs" not in page and "cdn.plot.ly" not in page.split("plotly.js v")[0]
    assert page.count('class="plotly-graph-div"') == 2
    assert "lots of Kedro logs" not in page


def test_the_error_of_a_failed_cell_is_read_from_rich_tracebacks() -> None:
    # With Kedro's IPython extension loaded, rich prints tracebacks as display data, wrapped.
    cell = new_code_cell("raise ValueError(...)", metadata={"papermill": {"status": "failed"}})
    traceback = (
        "\x1b[31m│\x1b[0m ❱ 26 │   raise ValueError(\n"
        "\x1b[1;31mValueError: \x1b[0mNo prediction-log records in the slice (1200 records in the\n"
        "whole log): run `kedro run --pipelines inference`\n"
    )
    cell.outputs = [new_output("display_data", data={"text/plain": traceback})]
    notebook = new_notebook(cells=[new_code_cell("ok"), cell])
    assert failed_cell_error(notebook) == (
        "ValueError: No prediction-log records in the slice (1200 records in the whole log): "
        "run `kedro run --pipelines inference`"
    )
    assert failed_cell_error(new_notebook(cells=[new_code_cell("ok")])) is None
