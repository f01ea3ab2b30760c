"""docs/configuration.md and docs/pipelines/*.md are generated from the project: they must be current."""

from __future__ import annotations

from shadowdrift.reference_docs import render_all
from tests.conftest import PROJECT_ROOT


def test_generated_reference_pages_are_up_to_date():
    stale = [
        str(path.relative_to(PROJECT_ROOT))
        for path, text in render_all(PROJECT_ROOT).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"out of date: {stale}; run `.venv/bin/python -m shadowdrift.reference_docs`"


def test_every_parameter_is_documented():
    text = (PROJECT_ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    for key in (
        "simulation.scenario",
        "training.threshold.rule",
        "evaluation.gate.min_improvement",
        "drift.psi.alert",
    ):
        assert f"`{key}`" in text
