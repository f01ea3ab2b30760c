"""Nodes of the evaluation pipeline: metrics and plots, then the gate and the registry aliases."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import pandas as pd
import plotly.graph_objects as go
from mlflow import MlflowClient

from shadowdrift import evaluation as ev
from shadowdrift import registry
from shadowdrift.churn_model import LABEL, PROBABILITY, ChurnModel, load_churn_model
from shadowdrift.promotion import GateParams, decide
from shadowdrift.schema import parse_schema

logger = logging.getLogger(__name__)

TRUE_PROBABILITY = "true_churn_probability"


def score_test_window(
    model_input_test: pd.DataFrame,
    raw_events_truth: pd.DataFrame,
    schema: dict[str, Any],
    *models: ChurnModel,
) -> pd.DataFrame:
    """Each candidate's probability and label per test row, beside the true probability if known."""
    s = parse_schema(schema)
    scored = model_input_test[[s.id, s.timestamp, s.target]].copy()
    truth = (
        raw_events_truth.set_index(s.id)[TRUE_PROBABILITY]
        if TRUE_PROBABILITY in raw_events_truth
        else None
    )
    scored[TRUE_PROBABILITY] = scored[s.id].map(truth) if truth is not None else float("nan")
    for model in models:
        predictions = model.predict(None, model_input_test)
        scored[f"{model.name}_probability"] = predictions[PROBABILITY].to_numpy()
        scored[f"{model.name}_label"] = predictions[LABEL].to_numpy()
    return scored


def _metrics_and_latency(
    model: ChurnModel, y: Any, probability: Any, test: pd.DataFrame, params: dict[str, Any]
) -> dict[str, Any]:
    """Test metrics at the model's threshold, and its time to predict 1,000 rows."""
    metrics = ev.classification_metrics(y, probability, model.threshold)
    metrics["ms_per_1000_rows"] = ev.ms_per_1000_rows(
        lambda batch: model.predict(None, batch), test, int(params.get("latency_repeats", 5))
    )
    return metrics


def _model_report(
    model: ChurnModel, scored: pd.DataFrame, test: pd.DataFrame, target: str, params: dict[str, Any]
) -> dict[str, Any]:
    probability = scored[f"{model.name}_probability"].to_numpy()
    metrics = _metrics_and_latency(model, scored[target].to_numpy(), probability, test, params)
    frame = test.assign(_probability=probability)
    return {
        "kind": model.kind,
        "metrics": metrics,
        "calibration": ev.calibration(
            scored[target].to_numpy(), probability, int(params["calibration_bins"])
        ),
        "segments": ev.segment_metrics(
            frame,
            target,
            "_probability",
            model.threshold,
            model.categorical_features,
            int(params["segment_min_rows"]),
        ),
    }


def evaluate_candidates(
    model_output_test_predictions: pd.DataFrame,
    model_input_test: pd.DataFrame,
    evaluation: dict[str, Any],
    schema: dict[str, Any],
    *models: ChurnModel,
) -> tuple[dict[str, Any], dict[str, Any], go.Figure, go.Figure, go.Figure]:
    """Metrics per model and segment, the oracle, and the comparison plots."""
    s = parse_schema(schema)
    scored = model_output_test_predictions
    y = scored[s.target].to_numpy()
    report: dict[str, Any] = {"test_rows": len(scored), "models": {}}
    for model in models:
        report["models"][model.name] = _model_report(
            model, scored, model_input_test, s.target, evaluation
        )
    known = scored[TRUE_PROBABILITY].notna()
    oracle = None
    if known.all() and len(scored):
        oracle = ev.classification_metrics(y, scored[TRUE_PROBABILITY].to_numpy(), 0.5)["roc_auc"]
    report["oracle_roc_auc"] = oracle
    for name, model_report in report["models"].items():
        auc = model_report["metrics"]["roc_auc"]
        model_report["gap_to_oracle_roc_auc"] = (
            (oracle - auc) if oracle is not None and auc is not None else None
        )
        logger.info(
            "%s: ROC AUC %.4f, PR AUC %.4f, Brier %.4f, F1 %.3f at %.3f; oracle ROC AUC %s",
            name,
            auc,
            model_report["metrics"]["pr_auc"],
            model_report["metrics"]["brier"],
            model_report["metrics"]["f1"],
            model_report["metrics"]["threshold"],
            f"{oracle:.4f}" if oracle is not None else "unknown",
        )
    flat = {
        f"{name}_{metric}": {"value": float(value), "step": 0}
        for name, model_report in report["models"].items()
        for metric, value in model_report["metrics"].items()
        if isinstance(value, int | float) and value is not None
    }
    if oracle is not None:
        flat["oracle_roc_auc"] = {"value": oracle, "step": 0}
    scores = {name: scored[f"{name}_probability"].to_numpy() for name in report["models"]}
    if oracle is not None:
        scores["oracle (true probability)"] = scored[TRUE_PROBABILITY].to_numpy()
    segments = [
        {"model": name, **segment}
        for name, r in report["models"].items()
        for segment in r["segments"]
    ]
    return (
        report,
        flat,
        ev.roc_figure(y, scores),
        ev.calibration_figure(
            {name: r["calibration"] for name, r in report["models"].items()}, s.target
        ),
        ev.segment_figure(segments),
    )


def _gate_metrics(
    model: ChurnModel, test: pd.DataFrame, target: str, params: dict[str, Any]
) -> dict[str, Any]:
    return _metrics_and_latency(
        model, test[target].to_numpy(), model.predict_probability(test), test, params
    )


def _champion_metrics(
    client: MlflowClient, name: str, test: pd.DataFrame, target: str, params: dict[str, Any]
) -> tuple[Any, dict[str, Any] | None]:
    version = registry.version_for_alias(client, name, registry.CHAMPION)
    if version is None:
        return None, None
    model = load_churn_model(f"models:/{name}@{registry.CHAMPION}")
    missing = [f for f in model.features if f not in test.columns]
    if missing:
        # The schema changed since that champion was trained: it cannot score today's records,
        # so there is nothing to compare against and the gate treats it as absent.
        logger.warning(
            "%s@champion (version %s) needs feature(s) the data no longer has (%s): "
            "it cannot be compared and will be replaced",
            name,
            version.version,
            ", ".join(missing),
        )
        return version, None
    return version, _gate_metrics(model, test, target, params)


def promote_candidates(
    models_training_summary: dict[str, Any],
    model_input_test: pd.DataFrame,
    evaluation: dict[str, Any],
    schema: dict[str, Any],
    model_registry: dict[str, Any],
    *models: ChurnModel,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register the candidates, gate the best, move the aliases; return the decision and the aliases.

    The gate scores the candidates itself (the same metrics as ``evaluate_candidates``) rather
    than reading the report, so the registry state stays upstream of every report in the
    lineage (kedro-viz can then order the layers).
    """
    s = parse_schema(schema)
    gate = GateParams.from_params(evaluation["gate"])
    name = model_registry["name"]
    client = MlflowClient()
    metrics = {
        model.name: _gate_metrics(model, model_input_test, s.target, evaluation) for model in models
    }
    ranked = sorted(
        metrics,
        key=lambda n: metrics[n][gate.primary_metric],
        reverse=ev.HIGHER_IS_BETTER[gate.primary_metric],
    )
    candidate = ranked[0]
    champion_version, champion_metrics = _champion_metrics(
        client, name, model_input_test, s.target, evaluation
    )
    decision = decide(
        candidate,
        metrics[candidate],
        f"version {champion_version.version}" if champion_version else None,
        champion_metrics,
        gate,
    )
    if champion_version is not None and champion_metrics is None:
        decision.reasons = [
            f"the current champion (version {champion_version.version}) uses features the schema "
            "no longer has: it cannot be compared, the candidate is promoted"
        ]
    versions = {}
    for model_name in ranked:
        entry = models_training_summary["models"][model_name]
        tags = {
            "candidate": model_name,
            "kind": entry["kind"],
            "threshold": entry["threshold"],
            **{
                f"test_{k}": v for k, v in metrics[model_name].items() if isinstance(v, int | float)
            },
        }
        versions[model_name] = registry.register_version(
            client, name, entry["model_uri"], models_training_summary["run_id"], tags
        ).version
    if decision.promote:
        registry.move_alias(client, name, registry.CHAMPION, versions[candidate])
        runner_up = ranked[1] if len(ranked) > 1 else candidate
        registry.move_alias(client, name, registry.CHALLENGER, versions[runner_up])
    else:
        registry.move_alias(client, name, registry.CHALLENGER, versions[candidate])
    outcome = {
        "registered_model_name": name,
        "promote": decision.promote,
        "candidate": {
            "name": candidate,
            "version": versions[candidate],
            "metrics": metrics[candidate],
        },
        "champion_before": (
            {"version": champion_version.version, "metrics": champion_metrics}
            if champion_version
            else None
        ),
        "aliases_after": registry.describe_aliases(client, name),
        "registered_versions": versions,
        "reasons": decision.reasons,
        "checks": decision.checks,
    }
    logger.info(
        "Promotion gate: %s %s (version %s). %s",
        "PROMOTE" if decision.promote else "KEEP CHAMPION, shadow",
        candidate,
        versions[candidate],
        " ".join(decision.reasons),
    )
    if mlflow.active_run() is not None:
        mlflow.log_dict(outcome, "promotion_decision.json")
        mlflow.set_tag("promotion", "promoted" if decision.promote else "rejected")
    return outcome, {"registered_model_name": name, "aliases": outcome["aliases_after"]}
