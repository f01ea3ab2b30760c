"""The promotion gate: does a candidate replace the current champion?

A candidate is promoted when it beats the champion on the primary metric by at least a margin,
is no worse than a tolerance on each secondary metric, and is not slower than a ratio per
1,000 rows. With no champion yet (the first run), the candidate is promoted.

Pure Python: the decision and its reasons are plain data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shadowdrift.evaluation import HIGHER_IS_BETTER


class GateConfigError(ValueError):
    """The gate parameters are inconsistent; the message names the parameter."""


@dataclass(frozen=True)
class GateParams:
    primary_metric: str = "roc_auc"
    min_improvement: float = 0.002
    secondary_tolerance: dict[str, float] = field(default_factory=dict)
    max_latency_ratio: float = 1.5

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> GateParams:
        known = {"primary_metric", "min_improvement", "secondary_tolerance", "max_latency_ratio"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise GateConfigError(
                f"evaluation.gate: unknown key(s) {unknown}; allowed: {sorted(known)}"
            )
        gate = cls(**params)
        for metric in [gate.primary_metric, *gate.secondary_tolerance]:
            if metric not in HIGHER_IS_BETTER:
                raise GateConfigError(
                    f"evaluation.gate: unknown metric {metric!r}; choose from {sorted(HIGHER_IS_BETTER)}"
                )
        if gate.primary_metric in gate.secondary_tolerance:
            raise GateConfigError(
                "evaluation.gate: the primary metric cannot also be a secondary metric"
            )
        if not gate.max_latency_ratio > 0:
            raise GateConfigError("evaluation.gate.max_latency_ratio must be positive")
        return gate


@dataclass
class GateDecision:
    promote: bool
    candidate: str
    champion: str | None
    reasons: list[str]
    checks: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gain(metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is (positive = better), whatever the metric's direction."""
    return candidate - champion if HIGHER_IS_BETTER[metric] else champion - candidate


def decide(
    candidate_name: str,
    candidate: dict[str, Any],
    champion_name: str | None,
    champion: dict[str, Any] | None,
    gate: GateParams,
) -> GateDecision:
    """Apply the gate. ``candidate``/``champion`` hold metrics and ``ms_per_1000_rows``."""
    if champion is None:
        return GateDecision(
            True, candidate_name, None, ["no current champion: the first candidate is promoted"], []
        )
    checks = []
    primary = gate.primary_metric
    gain = _gain(primary, candidate[primary], champion[primary])
    checks.append(
        {
            "check": "primary",
            "metric": primary,
            "candidate": candidate[primary],
            "champion": champion[primary],
            "required_gain": gate.min_improvement,
            "gain": gain,
            "passed": gain >= gate.min_improvement,
        }
    )
    for metric, tolerance in gate.secondary_tolerance.items():
        gain = _gain(metric, candidate[metric], champion[metric])
        checks.append(
            {
                "check": "secondary",
                "metric": metric,
                "candidate": candidate[metric],
                "champion": champion[metric],
                "tolerance": tolerance,
                "gain": gain,
                "passed": gain >= -tolerance,
            }
        )
    ratio = candidate["ms_per_1000_rows"] / max(champion["ms_per_1000_rows"], 1e-9)
    checks.append(
        {
            "check": "latency",
            "metric": "ms_per_1000_rows",
            "candidate": candidate["ms_per_1000_rows"],
            "champion": champion["ms_per_1000_rows"],
            "max_ratio": gate.max_latency_ratio,
            "ratio": ratio,
            "passed": ratio <= gate.max_latency_ratio,
        }
    )
    failed = [c for c in checks if not c["passed"]]
    reasons = [_explain(c) for c in (failed or checks)]
    return GateDecision(not failed, candidate_name, champion_name, reasons, checks)


def _explain(check: dict[str, Any]) -> str:
    verdict = "passes" if check["passed"] else "fails"
    if check["check"] == "primary":
        return (
            f"{verdict} primary {check['metric']}: {check['candidate']:.4f} vs champion "
            f"{check['champion']:.4f} (gain {check['gain']:+.4f}, needs >= {check['required_gain']:+.4f})"
        )
    if check["check"] == "secondary":
        return (
            f"{verdict} secondary {check['metric']}: {check['candidate']:.4f} vs champion "
            f"{check['champion']:.4f} (gain {check['gain']:+.4f}, tolerance {check['tolerance']:.4f})"
        )
    return (
        f"{verdict} latency: {check['candidate']:.1f} ms vs champion {check['champion']:.1f} ms per 1,000 rows "
        f"(ratio {check['ratio']:.2f}, max {check['max_ratio']:.2f})"
    )
