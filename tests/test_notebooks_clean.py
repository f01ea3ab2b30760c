"""Committed notebooks carry no outputs, no execution counts and no papermill residue.

Outputs belong to executed copies (data/08_reporting/notebook_reports/), never to the source:
they bloat diffs, leak data and go stale.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.conftest import PROJECT_ROOT

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
STRIP_COMMAND = ".venv/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb"


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(NOTEBOOK_DIR)) for p in paths]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks under {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_no_outputs_and_no_execution_counts(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        f"cell {index} ({len(cell.get('outputs', []))} outputs, "
        f"execution_count={cell.get('execution_count')})"
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.relative_to(PROJECT_ROOT)} is committed with outputs: {', '.join(dirty)}.\n"
        f"Strip them from the project root with:\n    {STRIP_COMMAND}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_a_source_not_an_executed_copy(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    injected = [
        index
        for index, cell in enumerate(notebook.cells)
        if "injected-parameters" in cell.get("metadata", {}).get("tags", [])
        or "papermill" in cell.get("metadata", {})
    ]
    assert not injected and "papermill" not in notebook.metadata, (
        f"{path.relative_to(PROJECT_ROOT)} is a papermill output (injected parameters or "
        f"papermill metadata in cells {injected}); restore the source notebook from git"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_takes_the_project_path_as_a_papermill_parameter(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    tagged = [
        cell for cell in notebook.cells if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', need one"
    assert 'project_path = ".."' in tagged[0].source, (
        f"{path.name}: the parameters cell must default project_path to '..' (notebooks/ is "
        "one level below the project root)"
    )
