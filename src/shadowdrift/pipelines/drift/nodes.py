"""Nodes of the drift pipeline: thin wrappers around ``shadowdrift.drift_monitor`` and friends.

The prediction log and ``raw_production`` may be Dask DataFrames (``kedro run --env dask``,
docs/scale_out.md): the analysis then stays partitioned (``shadowdrift.partitioned_drift``)
while the baseline (``shadowdrift.drift_baseline``; the train and test windows are computed
from Dask when it uses them) and everything fitted on it stay in memory.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from mlflow import MlflowClient

from shadowdrift import registry
from shadowdrift.churn_model import LABEL, PROBABILITY
from shadowdrift.drift_baseline import FOR_PERFORMANCE, select_baseline, windows_needed
from shadowdrift.drift_metrics import format_drift_metrics, push_drift_metrics
from shadowdrift.drift_monitor import fit_reference, records_after, reference_end, run_drift
from shadowdrift.drift_params import DriftParams
from shadowdrift.drift_report import build_figures, build_summary, render_html, to_jsonable
from shadowdrift.frames import is_dask_frame
from shadowdrift.ground_truth import feedback_labels
from shadowdrift.partitioned_drift import (
    attach_ground_truth_partitioned,
    compute_drift_partitioned,
)
from shadowdrift.schema import parse_schema
from shadowdrift.value_types import label_numbers

logger = logging.getLogger(__name__)

FIGURES = ("psi_heatmap", "performance", "agreement", "data_quality")


def select_drift_baseline(
    model_input_train: Any,
    model_input_test: Any,
    model_input_reference: pd.DataFrame,
    raw_reference: pd.DataFrame | None,
    schema: dict[str, Any],
    drift: dict[str, Any],
) -> pd.DataFrame:
    """The rows of the features and performance baselines (``drift.baseline``), flagged by role.

    ``raw_reference`` is ``None`` when its file does not exist (``OptionalDataset``). Train and
    test may be Dask frames (``--env dask``): only the windows the baseline uses are computed.
    """
    params = DriftParams.from_params(drift).baseline
    given = {
        "train": model_input_train,
        "test": model_input_test,
        "reference": model_input_reference,
        "raw_reference": raw_reference,
    }
    windows = {}
    for name in windows_needed(params):
        frame = given[name]
        windows[name] = frame.compute() if is_dask_frame(frame) else frame
    rows, _ = select_baseline(windows, parse_schema(schema), params)
    return rows


def score_reference_window(
    model_input_drift_baseline: pd.DataFrame,
    models_registry_aliases: dict[str, Any],
    model_registry: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The performance baseline scored by today's champion and challenger (CBPE calibrates on
    it); rows of the features baseline only are left unscored (their scores may be in-sample)."""
    client = MlflowClient()
    name = model_registry["name"]
    baseline = model_input_drift_baseline
    scored = baseline.copy()
    rows = (
        baseline[FOR_PERFORMANCE].astype(bool).to_numpy()
        if FOR_PERFORMANCE in baseline.columns
        else np.ones(len(baseline), dtype=bool)
    )
    monitored: dict[str, Any] = {"registered_model_name": name}
    for role in (registry.CHAMPION, registry.CHALLENGER):
        model, version = registry.load_alias(client, name, role)
        if model is None:
            if role == registry.CHAMPION:
                raise RuntimeError(
                    f"no model has the alias {name}@{role}: run `kedro run --pipelines training,evaluation` first"
                )
            continue
        predictions = model.predict(None, baseline.loc[rows])
        probability = np.full(len(baseline), np.nan)
        probability[rows] = predictions[PROBABILITY].to_numpy(dtype=np.float64)
        label = pd.array(np.zeros(len(baseline), dtype=np.int64), dtype="Int64")
        label[~rows] = pd.NA
        label[rows] = predictions[LABEL].to_numpy(dtype=np.int64)
        scored[f"{role}_probability"] = probability
        scored[f"{role}_label"] = label
        monitored[role] = {
            "version": version,
            "threshold": model.threshold,
            "candidate": model.name,
        }
    return scored, monitored


def attach_ground_truth(
    model_output_prediction_log: pd.DataFrame,
    raw_production: pd.DataFrame,
    model_output_ground_truth: pd.DataFrame,
    schema: dict[str, Any],
    drift_labels: dict[str, Any],
) -> pd.DataFrame:
    """Prediction-log rows with the target joined where it has arrived (NaN elsewhere).

    A record scored more than once (batch inference re-run) counts once, with its latest score.
    Labels come from two places: ``POST /feedback`` (the ground-truth log, joined by request id
    and record index; arrived when received), and ``raw_production``'s target column, joined by
    id, which counts as arrived when its record's event time is at least ``delay_days`` before
    ``as_of`` (default: the newest event time in the log). Feedback wins where both exist.
    """
    s = parse_schema(schema)
    log = model_output_prediction_log
    feedback = model_output_ground_truth
    as_of = pd.Timestamp(drift_labels["as_of"], tz="UTC") if drift_labels.get("as_of") else None
    if is_dask_frame(log):
        return attach_ground_truth_partitioned(log, raw_production, feedback, s, drift_labels)
    if log.empty:
        logger.warning("The prediction log is empty: drift will report insufficient data")
        return log.assign(**{s.target: pd.Series(dtype=float)})
    if s.id in log.columns:
        before = len(log)
        log = log.sort_values("logged_at", kind="stable").drop_duplicates(s.id, keep="last")
        if len(log) < before:
            logger.info("%d re-scored records counted once (latest score kept)", before - len(log))
    # Ties in event time are ordered by id, so that size chunks do not depend on the order in
    # which records were scored or logged.
    order = ["event_time", s.id] if s.id in log.columns else ["event_time"]
    log = log.sort_values(order, kind="stable").reset_index(drop=True)
    posted = feedback_labels(log, feedback, as_of)
    if s.target in raw_production.columns and s.id in log.columns:
        truth = raw_production[[s.id, s.target]].copy()
        truth[s.id] = truth[s.id].astype(str)
        truth[s.target] = label_numbers(truth[s.target], s.positive_class)
        labels = log[s.id].astype(str).map(truth.set_index(s.id)[s.target])
        cutoff = (as_of if as_of is not None else log["event_time"].max()) - pd.Timedelta(
            days=float(drift_labels.get("delay_days", 0))
        )
        from_production = labels.where(log["event_time"] <= cutoff).astype(float)
    else:
        logger.info("raw_production has no %s column: labels come from feedback only", s.target)
        from_production = pd.Series(float("nan"), index=log.index)
    log[s.target] = posted.fillna(from_production)
    logger.info(
        "Ground truth arrived for %d of %d logged records (%d from POST /feedback, "
        "%d from raw_production as of %s with a %s-day delay)",
        int(log[s.target].notna().sum()),
        len(log),
        int(posted.notna().sum()),
        int((posted.isna() & from_production.notna()).sum()),
        as_of if as_of is not None else "the newest event time",
        drift_labels.get("delay_days", 0),
    )
    return log


def monitor_drift(
    model_output_reference_predictions: pd.DataFrame,
    model_output_drift_analysis: pd.DataFrame,
    models_monitored: dict[str, Any],
    model_input_reference: pd.DataFrame,
    schema: dict[str, Any],
    drift: dict[str, Any],
) -> tuple[
    dict[str, Any], dict[str, Any], str, dict[str, Any], go.Figure, go.Figure, go.Figure, go.Figure
]:
    """PSI, NannyML, data quality, agreement, the decision, the report and MLflow metrics.

    ``model_output_reference_predictions`` is the scored baseline; ``model_input_reference``
    (the newest window of the labelled history) says where the analysis starts.
    """
    s = parse_schema(schema)
    model_output_drift_analysis = _analysis_window(
        model_output_drift_analysis, model_input_reference, s.timestamp, drift
    )
    if is_dask_frame(model_output_drift_analysis):
        fitted = fit_reference(
            model_output_reference_predictions,
            s,
            models_monitored[registry.CHAMPION]["threshold"],
            drift,
        )
        results = compute_drift_partitioned(model_output_drift_analysis, fitted)
    else:
        results = run_drift(
            model_output_reference_predictions,
            model_output_drift_analysis,
            s,
            models_monitored[registry.CHAMPION]["threshold"],
            drift,
        )
    summary = build_summary(results)
    summary["models_monitored"] = models_monitored
    figures = build_figures(results)
    html = render_html(summary, figures)
    decision = to_jsonable(summary["decision"])
    decision["models_monitored"] = models_monitored
    logger.info(
        "Retraining decision: %s. %s",
        decision["decision"].upper(),
        " ".join(map(str, decision.get("reasons", []))),
    )
    metrics = _mlflow_metrics(results)
    return (to_jsonable(summary), decision, html, metrics, *(figures[name] for name in FIGURES))


def _analysis_window(
    analysis: Any, reference: pd.DataFrame, timestamp: str, drift: dict[str, Any]
) -> Any:
    """The logged records drift judges: by default only those newer than the labelled history
    (whose newest window is ``reference``), whatever the baseline."""
    if DriftParams.from_params(drift).analysis_start == "all":
        return analysis
    start = reference_end(reference, timestamp)
    if is_dask_frame(analysis):
        logger.info("Analysing logged records with event time after %s (the reference end)", start)
        return records_after(analysis, start)
    kept = records_after(analysis, start)
    if len(kept) < len(analysis):
        logger.info(
            "%d of %d logged records are not newer than the labelled history (ends %s) and are "
            "not judged (drift.analysis_start: after_reference)",
            len(analysis) - len(kept),
            len(analysis),
            start,
        )
    return kept.reset_index(drop=True)


def _mlflow_metrics(results: Any) -> dict[str, Any]:
    """Per chunk (as the MLflow step): PSI per feature and the champion's performance."""
    metrics: dict[str, list[dict[str, Any]]] = {}
    chunk_order = (
        {chunk: i for i, chunk in enumerate(results.chunks["chunk"])} if len(results.chunks) else {}
    )
    for row in results.psi.itertuples():
        metrics.setdefault(f"psi.{row.feature}", []).append(
            {"value": float(row.psi), "step": chunk_order.get(row.chunk, 0)}
        )
    return metrics


def drift_metrics_text(reporting_drift_summary: dict[str, Any]) -> str:
    """The run's verdict, alerting features and performance per model as Prometheus text."""
    return format_drift_metrics(reporting_drift_summary)


def publish_drift_metrics(
    reporting_drift_metrics_prometheus: str, drift_metrics: dict[str, Any]
) -> None:
    """Push the metrics to ``drift_metrics.pushgateway_url`` (null: the file is all)."""
    url = drift_metrics.get("pushgateway_url")
    if not url:
        logger.info("Drift metrics written; not pushed (drift_metrics.pushgateway_url is null)")
        return
    push_drift_metrics(
        reporting_drift_metrics_prometheus,
        str(url),
        str(drift_metrics.get("job", "shadowdrift_drift")),
        timeout_s=float(drift_metrics.get("timeout_s", 10.0)),
    )
