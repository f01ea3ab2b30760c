"""The retraining decision: rules from ``drift.rules`` applied to the per-chunk evidence.

``decide(evidence, rules, psi_alert)`` returns a JSON-serialisable dict::

    {
      "decision": "retrain" | "no_retrain" | "insufficient_data",
      "summary": "one line for people",
      "reasons": [{"rule", "feature", "metric", "model", "method", "chunks", "detected_at",
                   "value", "threshold", "message"}, ...],   # one per rule x subject that fired
      "reasons_not_acted_on": [{..., "why"}, ...],           # fired, but on a too small baseline
      "evaluated_rules": [{"rule", "enabled", "fired", "not_acted_on", "parameters",
                           "chunks_judged", "subjects", "note"}, ...],  # every rule
      "caveats": ["..."],                                    # what the rules cannot see
      "chunks": {"total", "complete", "incomplete": [...], "min_complete_chunks"},
    }

Rules (each with ``enabled`` and ``consecutive_chunks``; thresholds in ``drift_params``):

* ``psi``: a feature's PSI >= ``drift.psi.alert``.
* ``estimated_performance``: the champion's CBPE estimate of ``metric`` more than ``max_drop``
  below the reference's realised value, or below ``floor``.
* ``realised_performance``: the champion's realised ``metric`` more than ``max_drop`` below the
  reference's, judged only on chunks with at least ``min_labelled_rows`` labelled rows.
* ``multivariate``: NannyML's reconstruction-error alert.
* ``univariate`` (off by default): NannyML's alert of one of ``methods`` on one feature.
* ``unseen_categories`` / ``out_of_range``: a feature's share of such rows above ``max_share``.
* ``missing_values``: a feature's missing share above its reference share by more than
  ``max_increase``.

A rule fires for a subject (feature, or model metric) when it is breached in
``consecutive_chunks`` adjacent chunks among those it can judge: complete chunks only (and, for
realised performance, enough labels); skipped chunks neither break nor extend a run.
``detected_at`` is the chunk in which the first qualifying run reached that length.

Fewer complete chunks than ``min_complete_chunks`` (including no analysis rows at all) gives
``insufficient_data``: not an error and not an alarm; rules that would have fired are still
listed in ``evaluated_rules``.

Rules whose threshold is the spread of the baseline (NannyML's mean +- 3 standard deviations
of the features baseline's chunks: ``multivariate``, and ``univariate`` with any method but
``chi2``, which alerts on a p-value) do not trigger a retrain when the features baseline has
fewer complete chunks than ``drift.baseline.min_chunks`` (``DriftEvidence.baseline``): with two
or three chunks the standard deviation is itself a guess, thresholds come out tight and
undrifted features alert. Such findings are listed in ``reasons_not_acted_on`` with the reason.

Known limitation, always in ``caveats``: concept drift (the relation between the features and
the target changes, the features do not) is invisible to feature drift and to CBPE, which
assumes that relation holds; only realised performance sees it, once labels arrive. The
caveats name the target from the schema (``DriftEvidence.target``).

Plain pandas; does not import Kedro or NannyML.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shadowdrift.drift_params import RuleParams

logger = logging.getLogger(__name__)

DECISIONS = ("retrain", "no_retrain", "insufficient_data")
_CONCEPT_DRIFT = (
    "Concept drift (the relation between the features and the target {target} changes while the "
    "features do not) is invisible to feature drift (PSI, NannyML univariate and multivariate) and to "
    "CBPE, which assumes the relation still holds. Only realised performance sees it, once "
    "labels arrive."
)
# Rules whose alert threshold is the spread of the features baseline's chunks; chi2 alerts on
# a p-value and does not depend on it.
SPREAD_RULES = ("multivariate", "univariate")
_P_VALUE_METHODS = ("chi2",)


def concept_drift_caveat(target: str) -> str:
    """The concept-drift caveat, naming the target column."""
    return _CONCEPT_DRIFT.format(target=target)


_CHECK_COLUMNS = ("chunk", "subject", "method", "value", "threshold", "breach", "judged")


def _empty_frame(columns: tuple[str, ...] = ()) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


@dataclass(frozen=True)
class DriftEvidence:
    """Per-chunk tables the rules read; any of them may be empty.

    * ``chunks``: the analysis chunk table (``drift_chunks.CHUNK_TABLE_COLUMNS``).
    * ``psi``: chunk, feature, psi (features only, not the model score).
    * ``data_quality``: ``data_quality.quality_table`` of the analysis.
    * ``reference_missing_rate``: {feature: missing share in the reference}.
    * ``univariate`` / ``multivariate`` / ``estimated_performance`` / ``realised_performance``:
      the tables of ``nannyml_drift.NannyMLResults``.
    * ``reference_performance``: {model: {metric: realised value on the reference}}.
    * ``baseline``: the baselines' complete chunks (``None``: not known, nothing held back).
    * ``target``: the target column's name, for the caveats.
    """

    chunks: pd.DataFrame
    psi: pd.DataFrame = field(default_factory=_empty_frame)
    data_quality: pd.DataFrame = field(default_factory=_empty_frame)
    reference_missing_rate: Mapping[str, float] = field(default_factory=dict)
    univariate: pd.DataFrame = field(default_factory=_empty_frame)
    multivariate: pd.DataFrame = field(default_factory=_empty_frame)
    estimated_performance: pd.DataFrame = field(default_factory=_empty_frame)
    realised_performance: pd.DataFrame = field(default_factory=_empty_frame)
    reference_performance: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    baseline: BaselineSize | None = None
    target: str = "the target"


@dataclass(frozen=True)
class BaselineSize:
    """Complete chunks in the features and performance baselines, and the required minimum."""

    features: int
    performance: int
    min_chunks: int

    @property
    def features_too_small(self) -> bool:
        return self.features < self.min_chunks


@dataclass
class _RuleOutcome:
    rule: str
    enabled: bool
    parameters: dict[str, Any]
    findings: list[dict[str, Any]] = field(default_factory=list)
    held_back: list[dict[str, Any]] = field(default_factory=list)
    chunks_judged: int = 0
    judged: list[str] = field(default_factory=list)
    subjects: int = 0
    note: str = ""


# --- helpers -------------------------------------------------------------------------------------


def _json_number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _runs(flags: list[bool], length: int) -> list[tuple[int, int]]:
    """(start, end) positions (end exclusive) of runs of True at least ``length`` long."""
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= length:
                runs.append((start, i))
            start = None
    return runs


def _find(checks: pd.DataFrame, chunk_order: list[str], consecutive: int) -> list[dict[str, Any]]:
    """Subjects breached in ``consecutive`` adjacent judged chunks (``_CHECK_COLUMNS`` input)."""
    findings = []
    judged = checks.loc[checks["judged"].astype(bool)].copy()
    position = {c: i for i, c in enumerate(chunk_order)}
    judged["position"] = judged["chunk"].map(position)
    judged = judged.dropna(subset=["position"]).sort_values("position", kind="stable")
    for (subject, method), group in judged.groupby(["subject", "method"], sort=False):
        flags = group["breach"].astype(bool).tolist()
        runs = _runs(flags, consecutive)
        if not runs:
            continue
        rows = np.concatenate([np.arange(a, b) for a, b in runs])
        hit = group.iloc[rows]
        findings.append(
            {
                "subject": subject,
                "method": method,
                "chunks": hit["chunk"].tolist(),
                "detected_at": group["chunk"].iloc[runs[0][0] + consecutive - 1],
                "values": hit["value"].astype(float).tolist(),
                "thresholds": hit["threshold"].astype(float).tolist(),
            }
        )
    return findings


def _checks(
    frame: pd.DataFrame, subject: str, method: str | None, value: str, threshold: Any, breach: Any
) -> pd.DataFrame:
    """Normalise a rule's per-chunk table to ``_CHECK_COLUMNS`` (judged filled in later)."""
    return pd.DataFrame(
        {
            "chunk": frame["chunk"].to_numpy(dtype=object),
            "subject": frame[subject].to_numpy(dtype=object),
            "method": frame[method].to_numpy(dtype=object) if method in frame else method or "",
            "value": pd.to_numeric(frame[value], errors="coerce").to_numpy(dtype=np.float64),
            "threshold": np.broadcast_to(np.asarray(threshold, dtype=np.float64), len(frame)),
            "breach": np.asarray(breach, dtype=bool),
            "judged": True,
        }
    )


def _chunk_range(chunks: list[str]) -> str:
    if len(chunks) == 1:
        return chunks[0]
    return f"{chunks[0]} .. {chunks[-1]}"


# --- the rules -----------------------------------------------------------------------------------


class _NotJudged(Exception):
    """A rule has nothing to judge (its table is empty, no reference value); says why."""


def _psi_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    if ev.psi.empty:
        raise _NotJudged("no PSI table")
    frame = ev.psi.assign(method="psi")
    return _checks(frame, "feature", "method", "psi", psi_alert, frame["psi"] >= psi_alert)


def _champion_metric(
    table: pd.DataFrame, ev: DriftEvidence, metric: str, what: str
) -> tuple[pd.DataFrame, float]:
    reference = ev.reference_performance.get("champion", {}).get(metric)
    if reference is None or math.isnan(float(reference)):
        raise _NotJudged(f"no reference value of the champion's {metric}")
    if table.empty:
        raise _NotJudged(f"no {what} values")
    frame = table.loc[(table["model"] == "champion") & (table["metric"] == metric)]
    if frame.empty:
        raise _NotJudged(f"no {what} values of the champion's {metric}")
    return frame, float(reference)


def _estimated_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    rule = rules.estimated_performance
    frame, reference = _champion_metric(ev.estimated_performance, ev, rule.metric, "CBPE")
    limit = reference - rule.max_drop
    if rule.floor is not None:
        limit = max(limit, rule.floor)
    values = pd.to_numeric(frame["value"], errors="coerce")
    return _checks(frame, "metric", "method", "value", limit, values < limit)


def _realised_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    rule = rules.realised_performance
    frame, reference = _champion_metric(
        ev.realised_performance, ev, rule.metric, "realised (labelled)"
    )
    limit = reference - rule.max_drop
    values = pd.to_numeric(frame["value"], errors="coerce")
    checks = _checks(frame, "metric", "method", "value", limit, values < limit)
    checks["judged"] = frame["n_rows"].to_numpy(dtype=np.int64) >= rule.min_labelled_rows
    return checks


def _nannyml_alert_rule(frame: pd.DataFrame, subject: str, what: str) -> pd.DataFrame:
    if frame.empty:
        raise _NotJudged(f"{what} drift was not computed")
    return _checks(frame, subject, "method", "value", frame["upper_threshold"], frame["alert"])


def _multivariate_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    return _nannyml_alert_rule(ev.multivariate, "metric", "multivariate")


def _univariate_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    frame = ev.univariate
    if not frame.empty:
        frame = frame.loc[frame["method"].isin(rules.univariate.methods)]
    return _nannyml_alert_rule(frame, "feature", "univariate")


def _quality(ev: DriftEvidence, column: str) -> pd.DataFrame:
    if ev.data_quality.empty:
        raise _NotJudged("no data-quality table")
    return ev.data_quality.dropna(subset=[column]).assign(method=column)


def _unseen_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    frame, limit = _quality(ev, "unseen_rate"), rules.unseen_categories.max_share
    return _checks(frame, "feature", "method", "unseen_rate", limit, frame["unseen_rate"] > limit)


def _out_of_range_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    frame, limit = _quality(ev, "out_of_range_rate"), rules.out_of_range.max_share
    breach = frame["out_of_range_rate"] > limit
    return _checks(frame, "feature", "method", "out_of_range_rate", limit, breach)


def _missing_rule(ev: DriftEvidence, rules: RuleParams, psi_alert: float) -> pd.DataFrame:
    frame = _quality(ev, "missing_rate")
    base = frame["feature"].map(lambda f: ev.reference_missing_rate.get(f, 0.0)).astype(float)
    limit = base + rules.missing_values.max_increase
    return _checks(frame, "feature", "method", "missing_rate", limit, frame["missing_rate"] > limit)


_RULE_CHECKS = {
    "psi": _psi_rule,
    "estimated_performance": _estimated_rule,
    "realised_performance": _realised_rule,
    "multivariate": _multivariate_rule,
    "univariate": _univariate_rule,
    "unseen_categories": _unseen_rule,
    "missing_values": _missing_rule,
    "out_of_range": _out_of_range_rule,
}
RULES = tuple(_RULE_CHECKS)


def _evaluate(
    name: str, ev: DriftEvidence, rules: RuleParams, psi_alert: float, complete: list[str]
) -> _RuleOutcome:
    rule = getattr(rules, name)
    parameters = _plain(asdict(rule))
    if name == "psi":
        parameters["alert"] = psi_alert
    outcome = _RuleOutcome(name, rule.enabled, parameters)
    if not rule.enabled:
        outcome.note = "disabled"
        return outcome
    try:
        checks = _RULE_CHECKS[name](ev, rules, psi_alert)
    except _NotJudged as why:
        outcome.note = f"not judged: {why}"
        return outcome
    checks.loc[~checks["chunk"].isin(complete), "judged"] = False
    judged = checks.loc[checks["judged"].astype(bool)]
    judged_chunks = set(judged["chunk"])
    outcome.judged = [c for c in complete if c in judged_chunks]
    outcome.chunks_judged = len(outcome.judged)
    outcome.subjects = int(judged[["subject", "method"]].drop_duplicates().shape[0])
    outcome.findings = _find(checks, complete, rule.consecutive_chunks)
    if name in SPREAD_RULES and ev.baseline is not None and ev.baseline.features_too_small:
        held = [f for f in outcome.findings if f["method"] not in _P_VALUE_METHODS]
        outcome.findings = [f for f in outcome.findings if f["method"] in _P_VALUE_METHODS]
        outcome.held_back = held
        if held:
            outcome.note = _held_back_note(ev.baseline)
    if name == "realised_performance":
        waiting = [c for c in complete if c not in judged_chunks]
        if waiting:
            outcome.note = (
                f"{len(waiting)} complete chunk(s) have fewer than {rule.min_labelled_rows} "
                f"labelled rows and are not judged yet: {_chunk_range(waiting)}"
            )
    return outcome


def _held_back_note(baseline: BaselineSize) -> str:
    return (
        f"fired but not acted on: the features baseline has {baseline.features} complete "
        f"chunk(s), fewer than drift.baseline.min_chunks={baseline.min_chunks}, too few for "
        "NannyML's thresholds (mean +- 3 standard deviations of the baseline chunks)"
    )


# --- reasons -------------------------------------------------------------------------------------

_PERFORMANCE_RULES = {"estimated_performance", "realised_performance"}
_WHAT = {
    "psi": "PSI of {subject} >= {threshold:.3g}",
    "estimated_performance": "estimated (CBPE) {subject} of the champion below {threshold:.3f}",
    "realised_performance": "realised {subject} of the champion below {threshold:.3f}",
    "multivariate": "PCA reconstruction error above NannyML's threshold {threshold:.3f}",
    "univariate": "NannyML {method} alert on {subject}",
    "unseen_categories": "share of unseen categories in {subject} above {threshold:.3g}",
    "missing_values": "missing share of {subject} above {threshold:.3g}",
    "out_of_range": "share of {subject} outside the schema's range above {threshold:.3g}",
}


def _reason(outcome: _RuleOutcome, finding: dict[str, Any], ev: DriftEvidence) -> dict[str, Any]:
    name = outcome.rule
    subject, chunks = finding["subject"], finding["chunks"]
    values = finding["values"]
    higher_is_worse = name not in _PERFORMANCE_RULES
    worst = max(values) if higher_is_worse else min(values)
    threshold = finding["thresholds"][values.index(worst)]
    what = _WHAT[name].format(subject=subject, threshold=threshold, method=finding["method"])
    n = outcome.parameters["consecutive_chunks"]
    message = (
        f"{what} in {len(chunks)} complete chunk(s) ({_chunk_range(chunks)}; rule: "
        f"{n} consecutive), first at {finding['detected_at']}; "
        f"{'max' if higher_is_worse else 'min'} {worst:.4g}"
    )
    if name == "unseen_categories":
        seen: dict[str, int] = {}
        rows = ev.data_quality.loc[
            (ev.data_quality["feature"] == subject) & ev.data_quality["chunk"].isin(chunks)
        ]
        for values_by_count in rows["unseen_values"]:
            for value, count in (values_by_count or {}).items():
                seen[value] = seen.get(value, 0) + int(count)
        message += f"; unseen values: {', '.join(sorted(seen, key=lambda v: -seen[v])[:5])}"
    if name in _PERFORMANCE_RULES:
        reference = ev.reference_performance["champion"][subject]
        message += f" (reference {reference:.4f})"
    is_feature = name not in _PERFORMANCE_RULES and name != "multivariate"
    return {
        "rule": name,
        "feature": subject if is_feature else None,
        "metric": subject if not is_feature else ("psi" if name == "psi" else finding["method"]),
        "model": "champion" if name in _PERFORMANCE_RULES else None,
        "method": finding["method"],
        "chunks": chunks,
        "detected_at": finding["detected_at"],
        "value": _json_number(worst),
        "threshold": _json_number(threshold),
        "message": message,
    }


def _insufficient_reason(summary: str, complete: list[str]) -> dict[str, Any]:
    return {
        "rule": "min_complete_chunks",
        "feature": None,
        "metric": None,
        "model": None,
        "method": None,
        "chunks": complete,
        "detected_at": None,
        "value": len(complete),
        "threshold": None,
        "message": summary,
    }


def _plain(value: Any) -> Any:
    """Parameters as JSON values (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def decide(evidence: DriftEvidence, rules: RuleParams, psi_alert: float) -> dict[str, Any]:
    """Apply every rule; see the module docstring for the output."""
    chunks = evidence.chunks
    complete = chunks.loc[chunks["complete"].astype(bool), "chunk"].tolist() if len(chunks) else []
    incomplete = (
        chunks.loc[~chunks["complete"].astype(bool), "chunk"].tolist() if len(chunks) else []
    )
    outcomes = [_evaluate(name, evidence, rules, psi_alert, complete) for name in RULES]
    reasons = [_reason(o, f, evidence) for o in outcomes for f in o.findings]
    held_back = [{**_reason(o, f, evidence), "why": o.note} for o in outcomes for f in o.held_back]
    fired = [o.rule for o in outcomes if o.findings]

    caveats = [concept_drift_caveat(evidence.target)]
    if evidence.baseline is not None and evidence.baseline.features_too_small:
        caveats.append(
            f"The features baseline has {evidence.baseline.features} complete chunk(s), fewer "
            f"than drift.baseline.min_chunks={evidence.baseline.min_chunks}: NannyML's "
            "multivariate and univariate thresholds come from too few chunks, so their alerts "
            "are reported but do not trigger a retrain. Use a longer baseline (drift.baseline) "
            "or smaller chunks."
        )
    realised = next(o for o in outcomes if o.rule == "realised_performance")
    waiting = [c for c in complete if c not in realised.judged]
    if realised.enabled and waiting:
        caveats.append(
            f"Realised performance is not judged yet on {len(waiting)} of {len(complete)} "
            f"complete chunk(s) ({_chunk_range(waiting)}): fewer than "
            f"{rules.realised_performance.min_labelled_rows} labelled rows. A concept drift "
            "there would not be visible yet."
        )

    if len(chunks) == 0:
        decision, summary = "insufficient_data", "no analysis rows: nothing to judge"
        reasons = [_insufficient_reason(summary, complete)]
    elif len(complete) < rules.min_complete_chunks:
        decision = "insufficient_data"
        summary = (
            f"{len(complete)} complete chunk(s), at least {rules.min_complete_chunks} needed "
            "to decide"
        )
        if fired:
            summary += f"; rule(s) {', '.join(fired)} would have fired, see evaluated_rules"
        reasons = [_insufficient_reason(summary, complete)]
    elif reasons:
        decision = "retrain"
        summary = f"{len(reasons)} reason(s) from rule(s) {', '.join(dict.fromkeys(fired))}"
    else:
        decision = "no_retrain"
        summary = f"no rule fired on {len(complete)} complete chunk(s)"
        if held_back:
            summary += (
                f"; {', '.join(dict.fromkeys(r['rule'] for r in held_back))} fired but was not "
                "acted on (features baseline below drift.baseline.min_chunks)"
            )
    logger.info("Drift decision: %s (%s)", decision, summary)
    return {
        "decision": decision,
        "summary": summary,
        "reasons": reasons,
        "reasons_not_acted_on": held_back,
        "evaluated_rules": [
            {
                "rule": o.rule,
                "enabled": o.enabled,
                "fired": bool(o.findings),
                "not_acted_on": len(o.held_back),
                "parameters": o.parameters,
                "chunks_judged": o.chunks_judged,
                "subjects": o.subjects,
                "note": o.note,
            }
            for o in outcomes
        ],
        "caveats": caveats,
        "chunks": {
            "total": len(chunks),
            "complete": len(complete),
            "incomplete": incomplete,
            "min_complete_chunks": rules.min_complete_chunks,
        },
    }
