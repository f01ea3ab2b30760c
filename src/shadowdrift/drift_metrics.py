"""The drift run's verdict as Prometheus metrics: text exposition format, and a Pushgateway push.

``format_drift_metrics(summary)`` turns the drift summary (``drift_report.build_summary``, as
saved to ``reporting_drift_summary``) into the Prometheus text format (version 0.0.4), which
the Pushgateway and node_exporter's textfile collector read. Names (all gauges; the latest run):

==================================================  =============================================
``shadowdrift_drift_verdict{verdict}``                1 for the run's decision (retrain,
                                                      no_retrain, insufficient_data), 0 for the
                                                      others
``shadowdrift_drift_reasons{rule}``                   reasons given for the decision, by rule (0
                                                      for every other rule evaluated)
``shadowdrift_drift_alerting_features``               features whose PSI alerted in some complete
                                                      chunk
``shadowdrift_drift_feature_alerting{feature}``       1 for such a feature, 0 for the others
``shadowdrift_drift_feature_psi{feature}``            PSI in the newest complete chunk
``shadowdrift_drift_estimated_performance{model,      CBPE estimate in the newest complete chunk
model_version,metric}``
``shadowdrift_drift_realised_performance{...}``       realised metric in the newest chunk that has
                                                      one
``shadowdrift_drift_reference_performance{...}``      the metric on the performance baseline
``shadowdrift_drift_analysed_records``                logged records judged
``shadowdrift_drift_complete_chunks``                 complete analysis chunks
``shadowdrift_drift_last_run_timestamp_seconds``      when the summary was generated (Unix time)
==================================================  =============================================

``push_drift_metrics(text, url, job)`` replaces the job's group on a Pushgateway (HTTP PUT), so
a feature or model that is gone from the newest run is gone from Prometheus too.

Plain Python; does not import Kedro.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

VERDICTS = ("retrain", "no_retrain", "insufficient_data")
PREFIX = "shadowdrift_drift_"
_HELP = {
    "verdict": "The latest drift run's retraining decision: 1 for the decision given",
    "reasons": "Reasons the latest drift run gave for its decision, by rule",
    "alerting_features": "Features whose PSI alerted in a complete chunk of the latest drift run",
    "feature_alerting": "1 for a feature whose PSI alerted in a complete chunk of the latest run",
    "feature_psi": "PSI of a feature in the newest complete chunk of the latest drift run",
    "estimated_performance": "CBPE estimated performance in the newest complete chunk",
    "realised_performance": "Realised performance in the newest chunk with labels",
    "reference_performance": "Performance on the drift baseline (what drops are measured against)",
    "analysed_records": "Logged records the latest drift run judged",
    "complete_chunks": "Complete analysis chunks of the latest drift run",
    "last_run_timestamp_seconds": "When the latest drift run wrote its summary (Unix time)",
}


class DriftMetricsError(ValueError):
    """The summary cannot be published (not a drift summary, or the push failed)."""


def _label_value(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    """Samples grouped by metric, each family with its HELP and TYPE once."""

    def __init__(self) -> None:
        self._families: dict[str, list[str]] = {}

    def add(self, name: str, value: float, **labels: Any) -> None:
        rendered = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        sample = f"{PREFIX}{name}{{{rendered}}}" if rendered else f"{PREFIX}{name}"
        self._families.setdefault(name, []).append(f"{sample} {_number(value)}")

    def text(self) -> str:
        lines: list[str] = []
        for name, samples in self._families.items():
            lines += [f"# HELP {PREFIX}{name} {_HELP[name]}", f"# TYPE {PREFIX}{name} gauge"]
            lines += samples
        return "\n".join(lines) + "\n"


def _complete_chunks(summary: Mapping[str, Any]) -> list[str]:
    return [str(c["chunk"]) for c in summary.get("chunks", []) if c.get("complete")]


def _newest(rows: Iterable[Mapping[str, Any]], chunks: list[str] | None) -> float | None:
    """The value of the newest row (in ``chunks`` order when given) that has one."""
    candidates = [r for r in rows if r.get("value") is not None]
    if chunks is not None:
        order = {chunk: i for i, chunk in enumerate(chunks)}
        candidates = sorted(
            (r for r in candidates if str(r.get("chunk")) in order),
            key=lambda r: order[str(r["chunk"])],
        )
    return float(candidates[-1]["value"]) if candidates else None


def _timestamp(summary: Mapping[str, Any]) -> float:
    generated = summary.get("generated_at")
    if not generated:
        return dt.datetime.now(dt.UTC).timestamp()
    stamp = dt.datetime.fromisoformat(str(generated))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def format_drift_metrics(summary: Mapping[str, Any]) -> str:
    """The drift summary's verdict, alerting features and performance per model, as
    Prometheus text (see the module docstring for the names)."""
    decision = summary.get("decision")
    if not isinstance(decision, Mapping) or decision.get("decision") not in VERDICTS:
        raise DriftMetricsError(
            "reporting_drift_summary has no decision among "
            f"{', '.join(VERDICTS)} (got {decision!r}); is it a drift pipeline summary?"
        )
    out = _Exposition()
    for verdict in VERDICTS:
        out.add("verdict", 1.0 if decision["decision"] == verdict else 0.0, verdict=verdict)
    # every rule the run evaluated, at 0 unless it gave reasons: a panel shows all rules
    by_rule = {str(r["rule"]): 0 for r in decision.get("evaluated_rules", []) if r.get("rule")}
    for reason in decision.get("reasons", []):
        by_rule[str(reason.get("rule"))] = by_rule.get(str(reason.get("rule")), 0) + 1
    for rule, count in by_rule.items():
        out.add("reasons", count, rule=rule)

    complete = _complete_chunks(summary)
    alerting = set(summary.get("features_alerting", []))
    out.add("alerting_features", len(alerting))
    feature_drift = summary.get("feature_drift", {})
    for feature in sorted(set(feature_drift) | alerting):
        out.add("feature_alerting", 1.0 if feature in alerting else 0.0, feature=feature)
    for feature, entry in feature_drift.items():
        psi = _newest(entry.get("methods", {}).get("psi", []), complete)
        if psi is not None:
            out.add("feature_psi", psi, feature=feature)

    _performance(out, summary, complete)
    analysis = summary.get("analysis", {})
    out.add("analysed_records", float(analysis.get("n_rows") or 0))
    out.add("complete_chunks", len(complete))
    out.add("last_run_timestamp_seconds", _timestamp(summary))
    return out.text()


def _performance(out: _Exposition, summary: Mapping[str, Any], complete: list[str]) -> None:
    performance = summary.get("performance", {})
    monitored = summary.get("models_monitored") or {}

    def version(model: str) -> str:
        entry = monitored.get(model)
        return str(entry.get("version", "")) if isinstance(entry, Mapping) else ""

    for kind, chunks in (("estimated", complete), ("realised", None)):
        for model, metrics in performance.get(kind, {}).items():
            for metric, rows in metrics.items():
                value = _newest(rows, chunks)
                if value is not None:
                    out.add(
                        f"{kind}_performance",
                        value,
                        model=model,
                        model_version=version(model),
                        metric=metric,
                    )
    for model, metrics in performance.get("reference", {}).items():
        for metric, value in metrics.items():
            if value is not None:
                out.add(
                    "reference_performance",
                    float(value),
                    model=model,
                    model_version=version(model),
                    metric=metric,
                )


def push_drift_metrics(text: str, url: str, job: str, *, timeout_s: float = 10.0) -> None:
    """Replace the group ``job`` on the Pushgateway at ``url`` with ``text``."""
    target = f"{url.rstrip('/')}/metrics/job/{quote(job, safe='')}"
    try:
        response = httpx.put(
            target,
            content=text.encode(),
            headers={"Content-Type": "text/plain; version=0.0.4"},
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        raise DriftMetricsError(
            f"could not push the drift metrics to the Pushgateway at {target} "
            f"(drift_metrics.pushgateway_url): {exc}"
        ) from exc
    if response.status_code >= 300:
        raise DriftMetricsError(
            f"the Pushgateway at {target} refused the drift metrics: HTTP "
            f"{response.status_code} {response.text.strip()[:500]}"
        )
    logger.info("Pushed the drift metrics to %s", target)
