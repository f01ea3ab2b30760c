"""The drift computation end to end: reference + prediction log in, every table and a decision out.

Two steps, so that a reference fitted once serves many analysis windows (benchmarks, backfills):

* ``fit_reference(reference, schema, threshold, params)``: PSI bins and counts, the baseline's
  missing rates and realised performance (champion, challenger), NannyML monitors; the size of
  each baseline and a warning where it has fewer complete chunks than
  ``drift.baseline.min_chunks``.
* ``compute_drift(analysis, fitted)``: chunks, PSI per chunk, data quality, NannyML results,
  champion/challenger agreement and the retraining decision, as ``DriftResults``.

``run_drift`` does both. Inputs:

* ``reference``: the baseline (``drift_baseline``). Either one labelled frame serving as both
  baselines, or ``drift_baseline.select_baseline``'s frame, whose flag columns say which rows
  are the features baseline and which the performance baseline. The performance rows carry the
  target and the champion's and challenger's predictions (``champion_probability``,
  ``champion_label``, ``challenger_probability``, ``challenger_label``); a missing
  ``champion_label`` is derived from ``threshold``; the challenger columns are optional. The
  features baseline needs ``schema.timestamp`` and the features only.
* ``analysis``: prediction-log rows (``event_time``, features, champion and challenger outputs,
  ``challenger_status``) with the target joined where it has arrived (NaN elsewhere).
* ``threshold``: the champion's decision threshold (reported; labels the reference if needed).

``drift_report`` turns ``DriftResults`` into the JSON summary, figures and HTML report.

Plain Python; does not import Kedro.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from shadowdrift.data_quality import count_quality, quality_table
from shadowdrift.drift_agreement import (
    REQUIRED_COLUMNS as AGREEMENT_COLUMNS,
)
from shadowdrift.drift_agreement import (
    agreement_table,
    count_agreement,
)
from shadowdrift.drift_baseline import FOR_FEATURES, baseline_windows, split_baseline
from shadowdrift.drift_chunks import (
    CHUNK_TABLE_COLUMNS,
    ChunkAssignment,
    assign_chunks,
    log_incomplete,
    normalise_timestamps,
)
from shadowdrift.drift_decision import BaselineSize, DriftEvidence, decide
from shadowdrift.drift_params import DriftParams
from shadowdrift.nannyml_drift import (
    MODELS,
    MULTIVARIATE_COLUMNS,
    PERFORMANCE_COLUMNS,
    UNIVARIATE_COLUMNS,
    FittedNannyML,
    NannyMLResults,
    fit_nannyml,
    run_nannyml,
)
from shadowdrift.prediction_log import CHAMPION_LABEL, CHAMPION_PROBABILITY, EVENT_TIME
from shadowdrift.psi import BinCounts, ChunkCounts, PSIBinning, PSIThresholds, psi_by_chunk
from shadowdrift.schema import DataSchema

logger = logging.getLogger(__name__)

REFERENCE_CHUNK = "reference"


class DriftInputError(ValueError):
    """The reference or analysis frame cannot be monitored; the message names the column."""


@dataclass(frozen=True)
class PSIReference:
    """PSI bins learnt on one baseline, and that baseline's counts in them."""

    binning: PSIBinning
    counts: BinCounts


@dataclass
class FittedReference:
    """Everything learnt from the baselines; reusable for many analysis windows.

    ``psi`` holds the features' bins (learnt on the features baseline) and, when
    ``drift.psi.monitor_predictions`` is on, the champion score's bins (learnt on the
    performance baseline: in-sample scores would look like prediction drift).
    """

    schema: DataSchema
    params: DriftParams
    threshold: float
    psi: tuple[PSIReference, ...]
    reference_missing_rate: dict[str, float]
    reference_performance: dict[str, dict[str, float]]
    nannyml: FittedNannyML
    info: dict[str, Any]
    baseline_size: BaselineSize | None = None
    fit_seconds: float = 0.0


@dataclass
class DriftResults:
    """All per-chunk tables (chunk labels in a ``chunk`` column) and the decision."""

    schema: DataSchema
    params: DriftParams
    threshold: float
    chunks: pd.DataFrame
    psi: pd.DataFrame
    data_quality: pd.DataFrame
    agreement: pd.DataFrame
    nannyml: NannyMLResults
    decision: dict[str, Any]
    reference: dict[str, Any]
    analysis: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


# --- reference -----------------------------------------------------------------------------------


def _score_metrics(
    y_true: np.ndarray, probability: np.ndarray, label: np.ndarray
) -> dict[str, float]:
    """Realised metrics, as NannyML names them."""
    tn, fp, fn, tp = skm.confusion_matrix(y_true, label, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(skm.roc_auc_score(y_true, probability)),
        "average_precision": float(skm.average_precision_score(y_true, probability)),
        "f1": float(skm.f1_score(y_true, label, zero_division=0)),
        "precision": float(skm.precision_score(y_true, label, zero_division=0)),
        "recall": float(skm.recall_score(y_true, label, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "accuracy": float((tp + tn) / (tp + tn + fp + fn)),
    }


def reference_performance(reference: pd.DataFrame, target: str) -> dict[str, dict[str, float]]:
    """{model: {metric: value}} on the reference, for every model whose columns are present."""
    y = reference[target].to_numpy()
    if len(np.unique(y)) < 2:
        raise DriftInputError(
            f"reference: target column {target!r} holds a single class; performance needs both"
        )
    out = {}
    for model, (probability, label) in MODELS.items():
        if probability not in reference.columns or label not in reference.columns:
            continue
        scored = reference[probability].notna() & reference[label].notna()
        if scored.sum() == 0 or len(np.unique(y[scored])) < 2:
            continue
        out[model] = _score_metrics(
            y[scored].astype(np.int64),
            reference.loc[scored, probability].to_numpy(dtype=np.float64),
            reference.loc[scored, label].to_numpy(dtype=np.int64),
        )
    return out


def _with_champion_label(reference: pd.DataFrame, threshold: float) -> pd.DataFrame:
    if CHAMPION_PROBABILITY not in reference.columns:
        raise DriftInputError(
            f"reference lacks column {CHAMPION_PROBABILITY!r}: the drift pipeline needs the "
            "champion's predictions on the reference to calibrate CBPE"
        )
    derived = (reference[CHAMPION_PROBABILITY] >= threshold).astype(np.int64)
    if CHAMPION_LABEL not in reference.columns:
        logger.info("reference: %s derived from the threshold %.4g", CHAMPION_LABEL, threshold)
        return reference.assign(**{CHAMPION_LABEL: derived})
    disagree = float((reference[CHAMPION_LABEL].astype(np.int64) != derived).mean())
    if disagree > 0.01:
        logger.warning(
            "reference: %.1f%% of %s differ from %s >= %.4g; is the threshold the champion's?",
            100 * disagree,
            CHAMPION_LABEL,
            CHAMPION_PROBABILITY,
            threshold,
        )
    return reference


def _span(times: pd.Series) -> dict[str, Any]:
    return {"n_rows": len(times), "start": str(times.min()), "end": str(times.max())}


def _fit_psi(
    features: pd.DataFrame, performance: pd.DataFrame, schema: DataSchema, params: DriftParams
) -> tuple[PSIReference, ...]:
    kinds = dict.fromkeys(schema.numeric_features, "numeric")
    kinds.update(dict.fromkeys(schema.categorical_features, "categorical"))
    parts = [(features, kinds)]
    if params.psi.monitor_predictions:
        parts.append((performance, {CHAMPION_PROBABILITY: "numeric"}))
    out = []
    for frame, part_kinds in parts:
        binning = PSIBinning.fit(frame, part_kinds, n_bins=params.psi.n_bins)
        out.append(PSIReference(binning, binning.count(frame)))
    return tuple(out)


_SMALL_BASELINE_CONSEQUENCE = {
    "features": "the multivariate rule and the univariate rule (except chi2, which alerts on a "
    "p-value) do not trigger a retrain; their alerts are still reported",
    "performance": "CBPE's and realised performance's alerts in the report are not to be "
    "trusted (the performance rules compare with the baseline's realised value instead)",
}


def _describe_baseline(
    role: str,
    source: str,
    windows: list[str],
    frame: pd.DataFrame,
    chunks: pd.DataFrame | None,
    schema: DataSchema,
    params: DriftParams,
) -> dict[str, Any]:
    """Source, windows, span and chunks of one baseline; a warning (logged) if it is too small.

    ``chunks`` is NannyML's chunk table of the baseline, ``None`` where no monitor needed it.
    """
    times = normalise_timestamps(frame[schema.timestamp], schema.timestamp)
    if chunks is None:
        chunks = assign_chunks(times, params.chunking, column=schema.timestamp).table
    complete = int(chunks["complete"].sum())
    info: dict[str, Any] = {
        "source": source,
        "windows": windows,
        **_span(times),
        "chunks": len(chunks),
        "complete_chunks": complete,
    }
    minimum = params.baseline.min_chunks
    if complete < minimum:
        info["warning"] = (
            f"The {role} baseline ({source}) has {complete} complete chunk(s) of "
            f"{params.chunking.describe()}, fewer than drift.baseline.min_chunks={minimum}: "
            "NannyML's thresholds (mean +- 3 standard deviations of the baseline chunks) come "
            f"from too few chunks: {_SMALL_BASELINE_CONSEQUENCE[role]}. Use a longer baseline "
            f"(drift.baseline.{role}) or smaller chunks (drift.chunking)."
        )
        logger.warning(info["warning"])
    return info


def fit_reference(
    reference: pd.DataFrame,
    schema: DataSchema,
    threshold: float,
    params: DriftParams | Mapping[str, Any] | None = None,
    *,
    feature_reference: pd.DataFrame | None = None,
) -> FittedReference:
    """Learn everything the drift statistics need from the baselines.

    ``reference`` is the performance baseline (labelled, scored), or ``select_baseline``'s
    frame holding both baselines; ``feature_reference`` gives the features baseline
    separately (default: from ``reference``).
    """
    started = time.perf_counter()
    if not isinstance(params, DriftParams):
        params = DriftParams.from_params(params)
    if not 0.0 <= float(threshold) <= 1.0:
        raise DriftInputError(f"the champion's threshold must be in [0, 1], got {threshold!r}")
    selected = FOR_FEATURES in reference.columns
    windows = baseline_windows(reference)
    if feature_reference is None:
        feature_reference, reference = split_baseline(reference)
    same = feature_reference is reference
    if len(reference) == 0:
        raise DriftInputError("the reference (performance baseline) has no rows")
    if len(feature_reference) == 0:
        raise DriftInputError("the features baseline has no rows")
    missing = [c for c in [schema.timestamp, schema.target] if c not in reference]
    if missing:
        raise DriftInputError(f"reference lacks column(s) {', '.join(map(repr, missing))}")
    missing = [c for c in [schema.timestamp, *schema.features] if c not in feature_reference]
    if missing:
        raise DriftInputError(
            f"the features baseline lacks column(s) {', '.join(map(repr, missing))}"
        )
    if reference[schema.target].isna().any():
        raise DriftInputError(
            f"reference: target column {schema.target!r} has missing labels; the performance "
            "baseline must be fully labelled"
        )
    reference = _with_champion_label(reference, float(threshold))
    psi = _fit_psi(feature_reference, reference, schema, params)
    ref_quality = quality_table(
        count_quality(
            feature_reference, [REFERENCE_CHUNK] * len(feature_reference), schema, what="reference"
        ),
        schema,
    )
    performance = reference_performance(reference, schema.target)
    fitted_nannyml = fit_nannyml(
        reference,
        schema,
        params.nannyml,
        params.chunking,
        feature_reference=None if same else feature_reference,
    )
    baselines: dict[str, Any] = {"min_chunks": params.baseline.min_chunks}
    for role, frame in (("features", feature_reference), ("performance", reference)):
        source = getattr(params.baseline, role) if selected else "given"
        baselines[role] = _describe_baseline(
            role,
            source,
            windows[role],
            frame,
            fitted_nannyml.baseline_chunks.get(role),
            schema,
            params,
        )
    size = BaselineSize(
        features=baselines["features"]["complete_chunks"],
        performance=baselines["performance"]["complete_chunks"],
        min_chunks=params.baseline.min_chunks,
    )
    seconds = time.perf_counter() - started
    perf_times = normalise_timestamps(reference[schema.timestamp], schema.timestamp)
    return FittedReference(
        schema=schema,
        params=params,
        threshold=float(threshold),
        psi=psi,
        reference_missing_rate=dict(
            zip(ref_quality["feature"], ref_quality["missing_rate"].astype(float), strict=True)
        ),
        reference_performance=performance,
        nannyml=fitted_nannyml,
        info={
            **_span(perf_times),
            "target": schema.target,
            "target_rate": float(reference[schema.target].mean()),
            "performance": performance,
            "missing_rate": dict(
                zip(ref_quality["feature"], ref_quality["missing_rate"], strict=True)
            ),
            "chunks": baselines["performance"]["chunks"],
            "complete_chunks": baselines["performance"]["complete_chunks"],
            "baseline": baselines,
            "warnings": [
                baselines[r]["warning"]
                for r in ("features", "performance")
                if "warning" in baselines[r]
            ],
        },
        baseline_size=size,
        fit_seconds=seconds,
    )


# --- analysis ------------------------------------------------------------------------------------


def psi_table(
    fitted: FittedReference, counts: list[ChunkCounts], chunk_order: list[Any]
) -> pd.DataFrame:
    """PSI per chunk and feature from the analysis's counts in each of ``fitted.psi``'s bins.

    Rows are chunk-major in ``chunk_order`` (each chunk's features, then the champion's score),
    as one binning of all of them would give; shared by the pandas and Dask paths.
    """
    thresholds = PSIThresholds(fitted.params.psi.warn, fitted.params.psi.alert)
    tables = [
        psi_by_chunk(part.counts, chunk_counts, eps=fitted.params.psi.eps, thresholds=thresholds)
        for part, chunk_counts in zip(fitted.psi, counts, strict=True)
    ]
    table = pd.concat(tables, ignore_index=True)
    rank = pd.Index(chunk_order).get_indexer(table["chunk"])
    table = table.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
    table["alert"] = table["severity"] == "alert"
    table["threshold"] = fitted.params.psi.alert
    return table


def _psi_table(
    fitted: FittedReference, analysis: pd.DataFrame, assignment: ChunkAssignment
) -> pd.DataFrame:
    counts = [part.binning.count_by_chunk(analysis, assignment.codes) for part in fitted.psi]
    table = psi_table(fitted, counts, list(range(len(assignment.table))))
    labels = assignment.table["chunk"].to_numpy(dtype=object)
    table["chunk"] = labels[table["chunk"].to_numpy(dtype=np.int64)]
    return table


def _agreement(analysis: pd.DataFrame, assignment: ChunkAssignment) -> pd.DataFrame:
    missing = [c for c in AGREEMENT_COLUMNS if c not in analysis.columns]
    if missing:
        logger.warning("analysis lacks %s: no champion/challenger agreement", ", ".join(missing))
        return pd.DataFrame({"chunk": pd.Series(dtype=object)})
    counts = count_agreement(analysis, assignment.labels)
    return agreement_table(counts, assignment.table["chunk"].tolist())


def _empty_results(fitted: FittedReference) -> NannyMLResults:
    def empty(columns: tuple[str, ...]) -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})

    return NannyMLResults(
        empty(UNIVARIATE_COLUMNS),
        empty(MULTIVARIATE_COLUMNS),
        empty(PERFORMANCE_COLUMNS),
        empty(PERFORMANCE_COLUMNS),
    )


def _chunk_table(assignment: ChunkAssignment, analysis: pd.DataFrame, target: str) -> pd.DataFrame:
    table = assignment.table.copy()
    if target in analysis.columns:
        labelled = analysis[target].notna().to_numpy()
        table["n_labelled"] = np.bincount(assignment.codes[labelled], minlength=len(table)).astype(
            np.int64
        )
    else:
        table["n_labelled"] = 0
    return table


def decide_from_tables(
    fitted: FittedReference,
    chunks: pd.DataFrame,
    psi_table: pd.DataFrame,
    quality: pd.DataFrame,
    nml: NannyMLResults,
) -> dict[str, Any]:
    """The retraining decision from the per-chunk tables (shared by the pandas and Dask paths)."""
    evidence = DriftEvidence(
        chunks=chunks,
        psi=psi_table.loc[psi_table["feature"].isin(fitted.schema.features)],
        data_quality=quality,
        reference_missing_rate=fitted.reference_missing_rate,
        univariate=nml.univariate,
        multivariate=nml.multivariate,
        estimated_performance=nml.estimated_performance,
        realised_performance=nml.realised_performance,
        reference_performance=fitted.reference_performance,
        baseline=fitted.baseline_size,
        target=fitted.schema.target,
    )
    return decide(evidence, fitted.params.rules, fitted.params.psi.alert)


def compute_drift(
    analysis: pd.DataFrame, fitted: FittedReference, *, timestamp_column: str = EVENT_TIME
) -> DriftResults:
    """Every drift table and the decision for ``analysis`` against the fitted reference."""
    started = time.perf_counter()
    params, schema = fitted.params, fitted.schema
    seconds: dict[str, float] = {"fit_reference": fitted.fit_seconds}
    analysis = analysis.reset_index(drop=True)
    if len(analysis) == 0:
        logger.warning("The analysis window has no rows: decision insufficient_data")
        chunks = pd.DataFrame(
            {c: pd.Series(dtype=object) for c in (*CHUNK_TABLE_COLUMNS, "n_labelled")}
        )
        nml = _empty_results(fitted)
        empty = pd.DataFrame({"chunk": pd.Series(dtype=object)})
        evidence = DriftEvidence(
            chunks=chunks,
            reference_performance=fitted.reference_performance,
            baseline=fitted.baseline_size,
            target=schema.target,
        )
        decision = decide(evidence, params.rules, params.psi.alert)
        return DriftResults(
            schema, params, fitted.threshold, chunks, empty, empty, empty, nml, decision, fitted.info,
            {"n_rows": 0, "n_labelled": 0}, seconds,
        )  # fmt: skip
    missing = [
        c for c in [timestamp_column, *schema.features, CHAMPION_PROBABILITY] if c not in analysis
    ]
    if missing:
        raise DriftInputError(f"analysis lacks column(s) {', '.join(map(repr, missing))}")
    assignment = assign_chunks(analysis[timestamp_column], params.chunking, column=timestamp_column)
    log_incomplete(assignment, params.chunking, "analysis")
    chunks = _chunk_table(assignment, analysis, schema.target)
    order = chunks["chunk"].tolist()

    tick = time.perf_counter()
    psi_table = _psi_table(fitted, analysis, assignment)
    seconds["psi"] = time.perf_counter() - tick

    tick = time.perf_counter()
    quality = quality_table(count_quality(analysis, assignment.labels, schema), schema, order)
    agreement = _agreement(analysis, assignment)
    seconds["data_quality_and_agreement"] = time.perf_counter() - tick

    tick = time.perf_counter()
    nml = run_nannyml(fitted.nannyml, analysis, assignment, timestamp_column=timestamp_column)
    seconds["nannyml"] = time.perf_counter() - tick

    decision = decide_from_tables(fitted, chunks, psi_table, quality, nml)
    seconds["analysis_total"] = time.perf_counter() - started
    times = normalise_timestamps(analysis[timestamp_column], timestamp_column)
    info = {
        **_span(times),
        "n_labelled": int(chunks["n_labelled"].sum()),
        "chunks": len(chunks),
        "complete_chunks": int(chunks["complete"].sum()),
    }
    return DriftResults(
        schema, params, fitted.threshold, chunks, psi_table, quality, agreement, nml, decision,
        fitted.info, info, seconds,
    )  # fmt: skip


def reference_end(reference: pd.DataFrame, timestamp: str) -> pd.Timestamp:
    """The reference window's newest timestamp, in UTC (naive timestamps are taken to be UTC)."""
    if reference.empty:
        raise ValueError("the reference window is empty: run data_engineering (or retraining)")
    end = pd.Timestamp(reference[timestamp].max())
    return end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")


def records_after(analysis: Any, start: pd.Timestamp, timestamp_column: str = EVENT_TIME) -> Any:
    """Rows of ``analysis`` (pandas or Dask) whose event time is after ``start``."""
    return analysis[analysis[timestamp_column] > start]


def run_drift(
    reference: pd.DataFrame,
    analysis: pd.DataFrame,
    schema: DataSchema,
    threshold: float,
    params: DriftParams | Mapping[str, Any] | None = None,
    *,
    timestamp_column: str = EVENT_TIME,
) -> DriftResults:
    """``fit_reference`` then ``compute_drift``."""
    fitted = fit_reference(reference, schema, threshold, params)
    return compute_drift(analysis, fitted, timestamp_column=timestamp_column)
