"""The drift verdict as Prometheus text (shadowdrift.drift_metrics) and its push to a Pushgateway.

A real drift run pushed to a real Pushgateway and scraped by a real Prometheus, where the
``retrain`` alert fires: ``tests/test_monitoring_stack.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadowdrift.drift_metrics import DriftMetricsError, format_drift_metrics, push_drift_metrics
from shadowdrift.pipelines.drift.nodes import publish_drift_metrics


def _rows(values: list[float | None], chunks: list[str]) -> list[dict[str, Any]]:
    return [{"chunk": c, "value": v} for c, v in zip(chunks, values, strict=True)]


CHUNKS = ["2024-01-01", "2024-01-08", "2024-01-15"]


def summary(decision: str = "retrain") -> dict[str, Any]:
    reasons = (
        [
            {"rule": "psi", "feature": "tenure_months"},
            {"rule": "psi", "feature": 'odd "name"\\x'},
            {"rule": "estimated_performance", "model": "champion"},
        ]
        if decision == "retrain"
        else []
    )
    return {
        "generated_at": "2026-12-07T20:09:56+00:00",
        "decision": {
            "decision": decision,
            "reasons": reasons,
            "evaluated_rules": [
                {"rule": r} for r in ("psi", "estimated_performance", "multivariate")
            ],
        },
        # the newest chunk is incomplete: the figures come from 2024-01-08
        "chunks": [
            {"chunk": CHUNKS[0], "complete": True},
            {"chunk": CHUNKS[1], "complete": True},
            {"chunk": CHUNKS[2], "complete": False},
        ],
        "analysis": {"n_rows": 1234},
        "feature_drift": {
            "tenure_months": {"methods": {"psi": _rows([0.05, 0.4, 0.9], CHUNKS)}},
            'odd "name"\\x': {"methods": {"psi": _rows([0.3, None, 0.1], CHUNKS)}},
            "region": {"methods": {"psi": _rows([0.01, 0.02, 0.03], CHUNKS)}},
        },
        "features_alerting": ["tenure_months", 'odd "name"\\x'],
        "performance": {
            "reference": {"champion": {"roc_auc": 0.81}, "challenger": {"roc_auc": 0.8}},
            "estimated": {
                "champion": {"roc_auc": _rows([0.8, 0.7, 0.5], CHUNKS)},
                "challenger": {"roc_auc": _rows([0.79, 0.78, None], CHUNKS)},
            },
            "realised": {"champion": {"roc_auc": _rows([0.8, 0.75, None], CHUNKS)}},
        },
        "models_monitored": {"champion": {"version": "3"}, "challenger": {"version": "4"}},
    }


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_verdict_alerting_features_and_performance_per_model_are_gauges():
    got = samples(format_drift_metrics(summary()))
    assert got[("shadowdrift_drift_verdict", (("verdict", "retrain"),))] == 1
    assert got[("shadowdrift_drift_verdict", (("verdict", "no_retrain"),))] == 0
    assert got[("shadowdrift_drift_verdict", (("verdict", "insufficient_data"),))] == 0
    assert got[("shadowdrift_drift_reasons", (("rule", "psi"),))] == 2
    assert got[("shadowdrift_drift_reasons", (("rule", "estimated_performance"),))] == 1
    assert got[("shadowdrift_drift_reasons", (("rule", "multivariate"),))] == 0
    assert got[("shadowdrift_drift_alerting_features", ())] == 2
    assert got[("shadowdrift_drift_feature_alerting", (("feature", "region"),))] == 0
    assert got[("shadowdrift_drift_feature_alerting", (("feature", 'odd "name"\\x'),))] == 1
    # the newest complete chunk, not the incomplete one after it
    assert got[("shadowdrift_drift_feature_psi", (("feature", "tenure_months"),))] == 0.4
    # no value in the newest complete chunk: the one before it
    assert got[("shadowdrift_drift_feature_psi", (("feature", 'odd "name"\\x'),))] == 0.3
    champion = (("metric", "roc_auc"), ("model", "champion"), ("model_version", "3"))
    challenger = (("metric", "roc_auc"), ("model", "challenger"), ("model_version", "4"))
    assert got[("shadowdrift_drift_estimated_performance", champion)] == 0.7
    assert got[("shadowdrift_drift_estimated_performance", challenger)] == 0.78
    assert got[("shadowdrift_drift_realised_performance", champion)] == 0.75
    assert ("shadowdrift_drift_realised_performance", challenger) not in got
    assert got[("shadowdrift_drift_reference_performance", challenger)] == 0.8
    assert got[("shadowdrift_drift_analysed_records", ())] == 1234
    assert got[("shadowdrift_drift_complete_chunks", ())] == 2
    assert got[("shadowdrift_drift_last_run_timestamp_seconds", ())] == 1_796_674_196


def test_a_quiet_run_says_no_retrain_and_lists_the_rules_at_zero():
    got = samples(format_drift_metrics(summary("no_retrain")))
    assert got[("shadowdrift_drift_verdict", (("verdict", "no_retrain"),))] == 1
    assert got[("shadowdrift_drift_verdict", (("verdict", "retrain"),))] == 0
    assert got[("shadowdrift_drift_reasons", (("rule", "psi"),))] == 0


def test_the_text_passes_promtools_lint():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; make system-deps)")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=format_drift_metrics(summary()),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_something_that_is_not_a_drift_summary_is_refused_by_name():
    with pytest.raises(DriftMetricsError, match="reporting_drift_summary has no decision"):
        format_drift_metrics({"decision": {"decision": "maybe"}})


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []  # noqa: RUF012 - one test server at a time
    status = 200

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"pushed metrics are invalid" if type(self).status >= 300 else b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pushgateway():
    _Recorder.received, _Recorder.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_node_pushes_the_text_to_the_configured_job_and_replaces_the_group(pushgateway):
    text = format_drift_metrics(summary())
    publish_drift_metrics(text, {"pushgateway_url": pushgateway + "/", "job": "drift prod"})
    [(path, content_type, body)] = _Recorder.received
    assert path == "/metrics/job/drift%20prod"
    assert content_type.startswith("text/plain; version=0.0.4")
    assert body.decode() == text


def test_without_a_url_nothing_is_pushed(pushgateway, caplog):
    caplog.set_level("INFO")
    publish_drift_metrics("x 1\n", {"pushgateway_url": None})
    assert _Recorder.received == []
    assert "drift_metrics.pushgateway_url is null" in caplog.text


def test_a_refused_or_failed_push_names_the_url(pushgateway):
    _Recorder.status = 400
    with pytest.raises(DriftMetricsError, match=r"refused the drift metrics: HTTP 400 pushed"):
        push_drift_metrics("x 1\n", pushgateway, "shadowdrift_drift")
    unused = pushgateway.rsplit(":", 1)[0] + ":9"
    with pytest.raises(DriftMetricsError, match=r"drift_metrics.pushgateway_url"):
        push_drift_metrics("x 1\n", unused, "shadowdrift_drift", timeout_s=2)
