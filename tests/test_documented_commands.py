"""What the README and docs tell a user to type works: every ``kedro run`` is run, every YAML
block parses and passes the project's own checks, every link points inside the project."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shadowdrift.drift_params import DriftParams
from shadowdrift.example_data import write_example_files
from shadowdrift.schema import parse_schema
from tests.conftest import PROJECT_ROOT, copy_project, load_yaml
from tests.kedro_runs import run_kedro_cli_in_process

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]
EXAMPLE_ENV = "example_own_data"
# Syntax shown in prose, not a command to type: the placeholder stands for any pipeline.
TEMPLATES = {"kedro run --pipelines NAME"}
# The order in which the demo's pipelines can run one after another in a fresh project.
STAGES = (
    "__default__",
    "lifecycle",
    "simulation",
    "data_engineering",
    "training",
    "evaluation",
    "inference",
    "packaging",
    "drift",
    "retraining",
)
# Small demo data: the blocks of conf/base with fewer rows and iterations (conf/local replaces
# a whole top-level block, so each is copied whole).
SMALL = {
    "parameters_simulation.yml": {"simulation": {"n_events": 2000, "n_production": 800}},
    "parameters_training.yml": {
        "training": {
            "models": {"gbm": {"params": {"max_iter": 20}}, "mlp": {"params": {"max_epochs": 2}}}
        }
    },
    "parameters_evaluation.yml": {"evaluation": {"latency_repeats": 1, "segment_min_rows": 20}},
    "parameters_drift.yml": {"drift": {"chunking": {"by": "size", "size": 200, "min_rows": 50}}},
}
EXAMPLE_EVERY = 20  # 2,500 + 2,500 records of the example data set
# Documented refusals: the command stops, on purpose, with this message.
REFUSALS = {
    # the guide: "kedro run --env <env> alone would start with the simulator ... it stops"
    ("--env", EXAMPLE_ENV): r"simulation\.enabled: false",
    # retraining runs only when the last drift decision says retrain (or it is forced)
    ("--pipelines", "retraining"): r"RetrainingNotCalledFor|decision",
}


def _strip(line: str) -> str:
    line = line.split("  #", maxsplit=1)[0].strip().removeprefix("$ ")
    # leading VARIABLE=value assignments are the shell's, not kedro's
    while re.match(r"^[A-Z_]+=\S+\s", line):
        line = line.split(None, 1)[1]
    return line


def documented_commands() -> dict[str, list[str]]:
    """Every ``kedro run ...`` in a code block or an inline code span, with where it is."""
    found: dict[str, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        name = str(doc.relative_to(PROJECT_ROOT))
        blocks = re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
        lines = [line for kind, block in blocks if kind != "mermaid" for line in block.splitlines()]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        lines += re.findall(r"`(kedro run[^`]*)`", prose)
        for line in lines:
            command = _strip(line)
            if command.startswith("kedro run"):
                found.setdefault(command, []).append(name)
    return found


def _options(command: str) -> dict:
    """The command's options as Kedro's own ``run`` command parses them."""
    from kedro.framework.cli.project import run

    args = shlex.split(command.replace("<env>", EXAMPLE_ENV))[2:]
    with run.make_context("run", args) as context:
        return dict(context.params)


def _pipelines(options: dict) -> list[str]:
    names = options.get("pipelines") or options.get("pipeline")
    if not names:
        return ["__default__"]
    return [n.strip() for n in (names if isinstance(names, str) else ",".join(names)).split(",")]


def _stage(command: str) -> tuple[int, int]:
    options = _options(command)
    env_rank = {None: 0, EXAMPLE_ENV: 1}.get(options.get("env"), 2)
    return env_rank, min(STAGES.index(p) for p in _pipelines(options))


def test_every_documented_command_is_a_command_kedro_accepts():
    commands = documented_commands()
    templates = {c for c in commands if re.search(r"\b[A-Z]{3,}\b", c)}
    assert templates == TEMPLATES, f"placeholders in commands: {templates - TEMPLATES}"
    for command, where in commands.items():
        if command in TEMPLATES:
            continue
        options = _options(command)
        unknown = [p for p in _pipelines(options) if p not in STAGES]
        assert not unknown, f"{command!r} ({where}) names unknown pipeline(s) {unknown}"


def _small_demo(project: Path) -> None:
    """Small demo data in the environments over the demo's data: local and dask."""
    for env in ("local", "dask"):
        for file, change in SMALL.items():
            params = load_yaml(PROJECT_ROOT / "conf" / "base" / file)
            _deep_update(params, change)
            (project / "conf" / env / file).write_text(yaml.safe_dump(params, sort_keys=False))


def _small_example(project: Path) -> None:
    """The example environment on a twentieth of its data, with chunks to match."""
    write_example_files(project / "data" / EXAMPLE_ENV / "01_raw", every=EXAMPLE_EVERY)
    path = project / "conf" / EXAMPLE_ENV / "parameters.yml"
    params = load_yaml(path)
    params["drift"]["chunking"]["min_rows"] = 20
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def _deep_update(target: dict, change: dict) -> None:
    for key, value in change.items():
        if isinstance(value, dict):
            _deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value


def normalised(command: str) -> tuple[str, ...]:
    """The arguments after ``kedro run``, ``<env>`` filled in; ``--pipeline X`` and
    ``--pipelines X`` are one run to Kedro, so they are one here."""
    args = shlex.split(command.replace("<env>", EXAMPLE_ENV))[2:]
    return tuple("--pipelines" if arg == "--pipeline" else arg for arg in args)


@pytest.mark.slow
def test_every_documented_kedro_run_runs(tmp_path, monkeypatch):
    """In one fresh project, in an order in which each finds what it reads (the default run
    first, the retraining last), on small data, through Kedro's own command line."""
    project = copy_project(tmp_path / "project")
    _small_demo(project)
    _small_example(project)
    monkeypatch.chdir(project)
    commands = sorted((c for c in documented_commands() if c not in TEMPLATES), key=_stage)
    runs: dict[tuple[str, ...], str] = {}
    for command in commands:
        runs.setdefault(normalised(command), command)
    outcomes = {}
    for args, command in runs.items():
        try:
            run_kedro_cli_in_process(project, "run", *args)
            outcomes[args] = "ran"
        except AssertionError as exc:
            refusal = REFUSALS.get(args)
            assert refusal and re.search(refusal, str(exc.__cause__ or exc)), (
                f"{command!r} failed: {exc}"
            )
            outcomes[args] = "refused as documented"
    assert outcomes[()] == "ran"
    assert outcomes[("--env", EXAMPLE_ENV, "--pipelines", "lifecycle")] == "ran"
    assert any((project / "data" / EXAMPLE_ENV / "08_reporting").glob("drift_report.html/*"))


# --- YAML blocks ---------------------------------------------------------------------------


def yaml_blocks(doc: Path) -> Iterator[dict]:
    """Every document of every YAML block (Kubernetes manifests hold several)."""
    text = doc.read_text(encoding="utf-8")
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        yield from yaml.safe_load_all(block)


def test_the_own_data_guide_shows_the_example_environments_files():
    """The guide's catalog and parameters blocks are conf/example_own_data, which CI runs."""
    blocks = list(yaml_blocks(PROJECT_ROOT / "docs/bring_your_own_data.md"))
    env = PROJECT_ROOT / "conf" / EXAMPLE_ENV
    assert load_yaml(env / "catalog.yml") in blocks
    assert load_yaml(env / "parameters.yml") in blocks


def _check_block(block: dict) -> None:
    """A block of parameters passes the checks a run applies to it."""
    if "schema" in block:
        parse_schema(block["schema"])
    if "drift" in block:
        DriftParams.from_params(block["drift"])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_yaml_blocks_parse_and_pass_the_projects_checks(doc):
    for block in yaml_blocks(doc):
        assert isinstance(block, dict)
        _check_block(block)


# --- links ---------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_links_point_at_files_inside_the_project(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(PROJECT_ROOT), f"{doc.name} links outside: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"
