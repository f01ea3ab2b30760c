"""monitoring/: the Prometheus configuration and rules are valid, and every rule has a unit test.

promtool (Debian package ``prometheus``; ``make system-deps`` installs it) checks the
configuration and the rule files and runs ``monitoring/tests/alerts_test.yml``. The real
Prometheus, service and Pushgateway together: ``tests/test_monitoring_stack.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "monitoring"
RULE_FILES = [MONITORING / "rules" / "recording.yml", MONITORING / "rules" / "alerts.yml"]
RULE_TESTS = MONITORING / "tests" / "alerts_test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed (Debian package prometheus: `make system-deps` installs "
            "it as root, or `apt-get install prometheus`)"
        )
    return found


def _promtool(*args: str | Path) -> str:
    result = subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_the_prometheus_configuration_is_valid_and_loads_both_rule_files():
    output = _promtool("check", "config", MONITORING / "prometheus.yml")
    assert "2 rule files found" in output


def test_the_rule_files_are_valid():
    _promtool("check", "rules", *RULE_FILES)


def test_the_rule_unit_tests_pass():
    assert "SUCCESS" in _promtool("test", "rules", RULE_TESTS)


def test_a_broken_rule_test_fails(tmp_path):
    """The unit tests can fail: the same file with one expected value changed does."""
    text = RULE_TESTS.read_text().replace("value: 0.48750000000000004", "value: 0.3", 1)
    assert text != RULE_TESTS.read_text()
    broken = tmp_path / "tests" / "alerts_test.yml"
    broken.parent.mkdir()
    broken.write_text(text)
    shutil.copytree(MONITORING / "rules", tmp_path / "rules")
    result = subprocess.run(
        [promtool(), "test", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "shadowdrift:request_latency_seconds:p95_5m" in (
        result.stdout + result.stderr
    )


def test_every_rule_has_a_unit_test_and_every_alert_is_documented():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    alerts_tested = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    exprs_tested = " ".join(
        case["expr"] for test in tests for case in test.get("promql_expr_test", [])
    )
    operations = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    rules = _rules()
    alerts = [r["alert"] for r in rules if "alert" in r]
    records = [r["record"] for r in rules if "record" in r]
    assert len(alerts) == len(set(alerts)) and len(records) == len(set(records))
    assert set(alerts) == alerts_tested, "alerts without a firing unit test"
    untested = [r for r in records if not re.search(rf"{re.escape(r)}\b", exprs_tested)]
    assert not untested, f"recording rules without a unit test: {untested}"
    undocumented = [a for a in alerts if f"`{a}`" not in operations]
    assert not undocumented, f"alerts not in docs/operations.md: {undocumented}"
    for rule in rules:
        if "alert" in rule:
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]


def test_the_issue_s_alerts_are_all_there():
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    assert {
        "ShadowdriftLatencySLO",
        "ShadowdriftErrorRate",
        "ShadowdriftAdmissionRefusals",
        "ShadowdriftShadowShed",
        "ShadowdriftChallengerCircuitOpen",
        "ShadowdriftChampionChallengerDisagreement",
        "ShadowdriftCanaryRolledBack",
        "ShadowdriftPredictionLogStale",
        "ShadowdriftDriftRetrain",
    } <= alerts


def test_the_latency_and_error_thresholds_match_the_canary_slo():
    """The alerts and the canary's automatic rollback judge by the same SLO."""
    serving = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_serving.yml").read_text())
    slo = serving["serving"]["canary"]["rollback"]
    by_name = {r["alert"]: r["expr"] for r in _rules() if "alert" in r}
    assert by_name["ShadowdriftLatencySLO"].endswith(f"> {slo['max_p95_latency_s']}")
    assert by_name["ShadowdriftErrorRate"].endswith(f"> {slo['max_error_rate']}")
    assert by_name["ShadowdriftChampionChallengerDisagreement"].endswith(
        f"> {slo['max_disagreement']}"
    )
