"""Run a parametrised notebook headless (papermill) and export it to self-contained HTML.

The drift report in one command, from the project root::

    python -m shadowdrift.notebook_report --env base --chunk-period W

writes ``data/08_reporting/notebook_reports/03_drift_report_<UTC time>.ipynb`` (the executed
notebook) and ``....html`` next to it. Names carry the start time and never replace an existing
file. ``--help`` lists the options; ``-p NAME VALUE`` passes any other notebook parameter (the
value is read as YAML: ``-p n_bins 20``, ``-p log_start 2025-01-01``).

The HTML needs no network: plotly figures are inlined with plotly.js (once per page) and the
template leaves out the CDN scripts nbconvert adds by default (require.js, MathJax, Mermaid).

The notebook runs in a kernel of *this* Python (``sys.executable``), registered for the run in a
temporary Jupyter data directory, so nothing depends on kernels installed on the machine.

A script rather than a Kedro node: the notebook opens its own Kedro session (``%reload_kedro``)
in a separate kernel process, reads whatever the catalog holds, and writes timestamped files that
are not catalog datasets. As a node it would run a session inside a session, declare no real
inputs (so lineage would be wrong), and tie every pipeline run to a Jupyter kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import papermill
import plotly.io as pio
import yaml
from jinja2 import DictLoader
from kedro.utils import find_kedro_project
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from shadowdrift.workspace import workspace_of

logger = logging.getLogger(__name__)

DEFAULT_NOTEBOOK = Path("notebooks/03_drift_report.ipynb")
# under the workspace's data root (shadowdrift.workspace): data/08_reporting/... for the demo
DEFAULT_OUTPUT_DIR = Path("08_reporting/notebook_reports")
KERNEL_NAME = "shadowdrift-python"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
HIDE_OUTPUT_TAG = "report-hide-output"

# nbconvert's "lab" template without the scripts it loads from CDNs.
OFFLINE_TEMPLATE_NAME = "shadowdrift_offline.html.j2"
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


class NotebookReportError(RuntimeError):
    """The notebook could not be run or exported; the message says which and where."""


@dataclass(frozen=True)
class ReportPaths:
    """Where one run wrote its executed notebook and its HTML export."""

    notebook: Path
    html: Path | None


# --- kernel -------------------------------------------------------------------------------------


@contextlib.contextmanager
def python_kernel(python: str | None = None) -> Iterator[str]:
    """A Jupyter kernel for ``python`` (default: this interpreter), usable while the block runs.

    The kernelspec lives in a temporary directory put first on ``JUPYTER_PATH``, so a kernel of
    the same name elsewhere (``~/.local/share/jupyter``) cannot shadow it. Yields its name.
    """
    python = python or sys.executable
    previous = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="shadowdrift-kernel-") as data_dir:
        spec_dir = Path(data_dir) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python ({python})",
            "language": "python",
            "metadata": {"debugger": False},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [data_dir, previous]))
        try:
            yield KERNEL_NAME
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = previous


# --- output names -------------------------------------------------------------------------------


def reserve_output(output_dir: Path, stem: str, now: datetime | None = None) -> Path:
    """A new, empty ``<stem>_<UTC time>.ipynb`` in ``output_dir``; never an existing name.

    The file is created exclusively, so two runs started in the same second get different
    names (``..._2.ipynb``); the HTML export takes the same name with ``.html``.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"_{attempt}"
        path = output_dir / f"{stem}_{stamp}{suffix}.ipynb"
        if path.with_suffix(".html").exists():
            continue
        try:
            with path.open("x", encoding="utf-8"):
                return path
        except FileExistsError:
            continue
    raise NotebookReportError(f"no free output name for {stem}_{stamp} in {output_dir}")


# --- HTML export --------------------------------------------------------------------------------


def inline_plotly_outputs(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy where every plotly figure is HTML with plotly.js inlined (in the first one only).

    nbconvert ignores plotly's mime type, and plotly's own notebook HTML needs require.js from
    a CDN; this keeps the figures interactive in a page that works offline.
    """
    notebook = copy.deepcopy(notebook)
    include_plotlyjs: bool | str = True
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME not in data:
                continue
            figure = data[PLOTLY_MIME]
            html = pio.to_html(
                figure, include_plotlyjs=include_plotlyjs, full_html=False, validate=False
            )
            output["data"] = {"text/html": html}
            include_plotlyjs = False
    return notebook


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\]8;[^\x1b]*\x1b\\")
# "ValueError: message", with the lines rich wrapped it onto, up to a blank line.
_EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*(?:\n[^\n\S]*\S.*)*)", re.M
)


def _failed(cell: nbformat.NotebookNode) -> bool:
    """Papermill marks the failing cell; Kedro's rich tracebacks leave no "error" output."""
    outputs = cell.get("outputs", [])
    return cell.get("metadata", {}).get("papermill", {}).get("status") == "failed" or any(
        o.get("output_type") == "error" for o in outputs
    )


def failed_cell_error(notebook: nbformat.NotebookNode) -> str | None:
    """The exception (``ValueError: ...``, on one line) of the cell that failed, if one did.

    In a kernel where Kedro's IPython extension is loaded, tracebacks are printed by rich as
    display data, not as an "error" output, so the line is read from the text.
    """
    for cell in notebook.cells:
        if not _failed(cell):
            continue
        texts = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                texts.append(f"{output.get('ename')}: {output.get('evalue')}")
            texts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
        found = _EXCEPTION_LINE.findall(_ANSI.sub("", "\n".join(texts)))
        return " ".join(found[-1].split()) if found else None
    return None


def hide_tagged_outputs(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without the outputs of cells tagged ``report-hide-output`` that ran without error.

    The set-up cell's Kedro and MLflow logs stay in the executed notebook (provenance) but not
    in the report, unless that cell failed.
    """
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        tagged = HIDE_OUTPUT_TAG in cell.get("metadata", {}).get("tags", [])
        if tagged and not _failed(cell):
            cell["outputs"] = []
    return notebook


def export_html(notebook_path: Path, html_path: Path, *, hide_code: bool = False) -> Path:
    """Export an executed notebook to one HTML file that loads nothing from the network."""
    notebook = inline_plotly_outputs(
        hide_tagged_outputs(nbformat.read(notebook_path, as_version=4))
    )
    exporter = HTMLExporter(
        template_name="lab",
        template_file=OFFLINE_TEMPLATE_NAME,
        extra_loaders=[DictLoader({OFFLINE_TEMPLATE_NAME: OFFLINE_TEMPLATE})],
        exclude_input=hide_code,
        exclude_input_prompt=hide_code,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(
        notebook, resources={"metadata": {"name": notebook_path.stem}}
    )
    html_path.write_text(body, encoding="utf-8")
    return html_path


# --- running ------------------------------------------------------------------------------------


def run_report(
    project_path: Path,
    parameters: Mapping[str, Any],
    *,
    notebook: Path | None = None,
    output_dir: Path | None = None,
    html: bool = True,
    hide_code: bool = False,
    cell_timeout: int | None = 600,
    now: datetime | None = None,
) -> ReportPaths:
    """Execute ``notebook`` with ``parameters`` (plus ``project_path``) and export it to HTML.

    Relative ``notebook`` and ``output_dir`` are taken from ``project_path``. The executed
    notebook is written even when a cell fails, and exported too, so the error can be read in
    the HTML; ``NotebookReportError`` is raised afterwards naming both files.
    """
    project_path = project_path.resolve()
    source = _under(project_path, notebook or DEFAULT_NOTEBOOK)
    if not source.is_file():
        raise NotebookReportError(f"notebook {source} does not exist")
    if output_dir is None:
        data_root = workspace_of(project_path, parameters.get("env"))["data_root"]
        output_dir = Path(data_root) / DEFAULT_OUTPUT_DIR
    executed = reserve_output(_under(project_path, output_dir), source.stem, now)
    html_path = executed.with_suffix(".html") if html else None
    run_parameters = {**parameters, "project_path": str(project_path)}
    logger.info("Running %s with %s -> %s", source, run_parameters, executed)
    failure: PapermillExecutionError | None = None
    with python_kernel() as kernel_name:
        try:
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters=run_parameters,
                kernel_name=kernel_name,
                cwd=str(source.parent),
                execution_timeout=cell_timeout,
                progress_bar=False,
                log_output=False,
            )
        except PapermillExecutionError as exc:
            failure = exc
        except (CellTimeoutError, DeadKernelError) as exc:
            raise NotebookReportError(
                f"{source.name}: {type(exc).__name__}: {exc}; partial output in {executed}"
            ) from exc
    if html_path is not None:
        export_html(executed, html_path, hide_code=hide_code)
        logger.info("Wrote %s", html_path)
    if failure is not None:
        reason = failed_cell_error(nbformat.read(executed, as_version=4)) or (
            f"{failure.ename}: {failure.evalue}"
        )
        raise NotebookReportError(
            f"{source.name} failed in cell [{failure.exec_count}]: {reason}\nsee {executed}"
            + (f" and {html_path}" if html_path else "")
        ) from failure
    logger.info("Wrote %s", executed)
    return ReportPaths(executed, html_path)


def _under(root: Path, path: Path) -> Path:
    return path if path.is_absolute() else root / path


# --- command line -------------------------------------------------------------------------------


def _yaml_value(text: str) -> Any:
    """A parameter value as YAML reads it (numbers, booleans, null, lists), else the string.

    Dates stay strings (``2025-01-01``): papermill can only inject plain Python literals.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | list | dict | None) else text


def _find_project(start: Path) -> Path:
    root = find_kedro_project(start)
    if root is None:
        raise NotebookReportError(
            f"{start} is not inside a Kedro project (no pyproject.toml with [tool.kedro]); "
            "run from the project or pass --project-path"
        )
    return Path(root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shadowdrift.notebook_report",
        description="Execute the drift report notebook with papermill and export it to HTML.",
    )
    parser.add_argument(
        "--project-path",
        type=Path,
        help="Kedro project root (default: found from the working directory)",
    )
    parser.add_argument("--env", help="Kedro environment (default: base + local)")
    parser.add_argument(
        "--chunk-period",
        help="pandas period of event time per chunk: D, W, M, 7D, ... (notebook default W)",
    )
    parser.add_argument("--chunk-size", type=int, help="rows per chunk instead of periods")
    parser.add_argument("--min-chunk-rows", type=int, help="chunks with fewer rows are not judged")
    parser.add_argument("--log-start", help="prediction log: logged_at >= this (ISO, UTC)")
    parser.add_argument("--log-end", help="prediction log: logged_at < this (ISO, UTC)")
    parser.add_argument(
        "--batch-runs",
        choices=("latest", "all"),
        help="batch runs of the log to keep (notebook default latest)",
    )
    parser.add_argument(
        "--reference-version", help="Kedro version of model_input_reference (default latest)"
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="any other notebook parameter; VALUE is read as YAML",
    )
    parser.add_argument(
        "--notebook", type=Path, help=f"notebook to run (default {DEFAULT_NOTEBOOK})"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help=f"where to write (default <data root>/{DEFAULT_OUTPUT_DIR}; data/ for the demo)",
    )
    parser.add_argument("--no-html", action="store_true", help="write the executed notebook only")
    parser.add_argument("--hide-code", action="store_true", help="leave code cells out of the HTML")
    parser.add_argument(
        "--cell-timeout", type=int, default=600, help="seconds per cell (default 600)"
    )
    return parser


OPTION_PARAMETERS = (
    "env",
    "chunk_period",
    "chunk_size",
    "min_chunk_rows",
    "log_start",
    "log_end",
    "batch_runs",
    "reference_version",
)


def parameters_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Notebook parameters from the options that were given (others keep the notebook's)."""
    parameters = {
        name: getattr(args, name) for name in OPTION_PARAMETERS if getattr(args, name) is not None
    }
    parameters.update({name: _yaml_value(value) for name, value in args.parameter})
    return parameters


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        project = args.project_path or _find_project(Path.cwd())
        paths = run_report(
            project,
            parameters_from_args(args),
            notebook=args.notebook,
            output_dir=args.output_dir,
            html=not args.no_html,
            hide_code=args.hide_code,
            cell_timeout=args.cell_timeout,
        )
    except NotebookReportError as exc:
        logger.error("%s", exc)
        return 1
    logger.info("Executed notebook: %s", paths.notebook)
    if paths.html is not None:
        logger.info("HTML report: %s", paths.html)
    return 0


if __name__ == "__main__":
    sys.exit(main())
