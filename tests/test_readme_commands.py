"""The README's commands beyond `kedro run` (run by tests/test_documented_commands.py): make
targets exist, the request examples are valid, the project's own commands parse."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT


def readme_commands() -> list[str]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for raw in block.splitlines():
            line = raw.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _pipeline_names(command: list[str]) -> list[str]:
    for flag in ("--pipeline", "--pipelines"):
        if flag in command:
            return command[command.index(flag) + 1].split(",")
    return ["__default__"]


def test_readme_has_the_two_setup_commands():
    commands = readme_commands()
    assert "make demo" in commands and "make test" in commands


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("make ")])
def test_make_targets_in_the_readme_exist(command):
    result = subprocess.run(
        ["make", "-n", *shlex.split(command)[1:]],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _readme_text() -> str:
    return (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_request_examples_are_valid_requests():
    """The curl body and the Python record in the README pass the service's validation."""
    import json

    from shadowdrift.schema import parse_schema
    from shadowdrift.serving.config import RequestPolicy
    from shadowdrift.serving.request_validation import RequestValidator
    from tests.conftest import base_parameters

    text = _readme_text()
    curl_body = json.loads(re.search(r"curl .*? -d '(\{.*?\})'", text).group(1))
    python_block = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    namespace: dict = {}
    exec(python_block.split("answer =")[0].replace("import httpx", ""), namespace)
    validator = RequestValidator(parse_schema(base_parameters()["schema"]), RequestPolicy())
    for records in (curl_body["records"], [namespace["record"]]):
        assert len(validator.validate(records)) == 1


@pytest.mark.parametrize(
    "command",
    [
        c
        for c in readme_commands()
        if c.split()[:2] in (["kedro", "replay"], ["kedro", "loop"], ["kedro", "rollback"])
    ],
)
def test_project_commands_in_the_readme_parse(command):
    """``kedro replay|loop|rollback`` exist and accept the README's options (parsed, not run)."""
    from shadowdrift.cli import cli

    args = shlex.split(command)
    sub = cli.commands[args[1]]
    with sub.make_context(args[1], args[2:]) as context:
        assert context.params
