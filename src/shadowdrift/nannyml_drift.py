"""NannyML 0.13.1 drift and performance monitors, on our chunks, as tidy tables.

Four monitors, fitted once (``fit_nannyml``) and run on any analysis frame (``run_nannyml``):

* univariate drift per feature (``UnivariateDriftCalculator``; methods from
  ``drift.nannyml.continuous_methods`` / ``categorical_methods``),
* multivariate drift: PCA data-reconstruction error (``DataReconstructionDriftCalculator``),
* estimated performance without labels (``CBPE``) for the champion and, beside it, the
  challenger (on the records the challenger scored),
* realised performance (``PerformanceCalculator``) on the records whose label has arrived.

Performance is judged per model on the records it stands for (``model_variant``, the canary,
docs/serving.md): ``champion`` on the records the champion answered, ``challenger`` on those
the challenger scored in shadow (the champion answered them), and ``canary`` on those the
challenger answered as the canary (with the challenger's calibration). A log without canary
records has no ``canary`` rows, and ``champion`` and ``challenger`` cover it all.

The first two are fitted on the features baseline, the last two on the performance baseline
(labelled rows with out-of-sample scores; ``drift_baseline``). The domain classifier is left
out: it trains a model per chunk and takes minutes.

Chunks: NannyML's own ``chunk_period`` does not match ours (``"7D"`` gives one chunk per *day*:
pandas periods with a multiplied frequency start on every day), and its chunk keys cannot be
joined to a filtered subset. So every monitor gets an ``AssignedChunker``: it reads the chunk
that ``drift_chunks.assign_chunks`` gave each row from two helper columns, or, where NannyML
hands it only a feature and the timestamps (univariate threshold fitting), recomputes the same
assignment from the timestamps. Keys are our chunk labels, so every table joins on ``chunk``;
for size chunks and calendar periods they are NannyML's own keys (``[0:4999]``, ``2025Q1``).

Thresholds are NannyML's own: for every method and metric, mean +- 3 standard deviations of
its values on the *baseline chunks* (``chi2`` instead alerts at p < 0.05). Incomplete baseline
chunks (fewer than ``min_rows``) are left out of that calibration: a two-day stub of a week
would widen every threshold. A baseline therefore needs at least two complete chunks.

With the same baseline rows and chunks the results equal a direct NannyML run
(``tests/test_nannyml_agreement.py``, docs/drift_quality.md "Agreement with NannyML"): features
reach NannyML typed by the schema (numeric float64, categorical ``object``, missing as NaN),
rows of a chunk in time order, as NannyML's chunkers give them.

Tidy output (``NannyMLResults``), one row per (chunk, feature or metric, method[, model]):
``value``, ``lower_threshold``, ``upper_threshold``, ``alert`` (and ``sampling_error``,
``n_rows`` where NannyML has them).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from nannyml import (
    CBPE,
    DataReconstructionDriftCalculator,
    PerformanceCalculator,
    UnivariateDriftCalculator,
)
from nannyml.chunk import Chunk, Chunker

from shadowdrift.drift_chunks import ChunkAssignment, assign_chunks, normalise_timestamps
from shadowdrift.drift_params import ChunkingParams, NannyMLParams
from shadowdrift.prediction_log import (
    CHALLENGER_LABEL,
    CHALLENGER_PROBABILITY,
    CHALLENGER_STATUS,
    CHALLENGER_VARIANT,
    CHAMPION_LABEL,
    CHAMPION_PROBABILITY,
    CHAMPION_VARIANT,
    MODEL_VARIANT,
    answered_by_challenger,
)
from shadowdrift.schema import DataSchema

logger = logging.getLogger(__name__)

CHUNK_LABEL = "__shadowdrift_chunk"
CHUNK_INDEX = "__shadowdrift_chunk_index"
MODELS = {
    "champion": (CHAMPION_PROBABILITY, CHAMPION_LABEL),
    "challenger": (CHALLENGER_PROBABILITY, CHALLENGER_LABEL),
}
# The models performance is judged for: (the fitted model whose outputs they are, who answered
# the records: ``model_variant``). ``canary`` is the challenger on the records it answered.
JUDGED = {
    "champion": ("champion", CHAMPION_VARIANT),
    "challenger": ("challenger", CHAMPION_VARIANT),
    "canary": ("challenger", CHALLENGER_VARIANT),
}
UNIVARIATE_COLUMNS = (
    "chunk",
    "feature",
    "method",
    "value",
    "lower_threshold",
    "upper_threshold",
    "alert",
)
MULTIVARIATE_COLUMNS = (
    "chunk",
    "metric",
    "method",
    "value",
    "sampling_error",
    "lower_threshold",
    "upper_threshold",
    "alert",
)
PERFORMANCE_COLUMNS = (
    "chunk",
    "model",
    "metric",
    "method",
    "value",
    "sampling_error",
    "lower_threshold",
    "upper_threshold",
    "alert",
    "n_rows",
)
_MIN_REFERENCE_CHUNKS = 2


class NannyMLDriftError(ValueError):
    """The reference or analysis frame cannot be monitored; the message names the column."""


# --- chunking ------------------------------------------------------------------------------------


class AssignedChunker(Chunker):
    """A NannyML chunker that reproduces ``drift_chunks.assign_chunks``.

    Uses the ``CHUNK_INDEX`` / ``CHUNK_LABEL`` columns when the frame has them (so a subset of
    rows keeps its chunks), else assigns from ``timestamp_column``. While ``drop_incomplete``
    is set, chunks with fewer than ``min_rows`` rows are left out (used when fitting).
    """

    def __init__(self, params: ChunkingParams, timestamp_column: str):
        # No timestamp for the base class: it would re-sort rows with an unstable sort, and the
        # order of tied timestamps decides size-based chunks.
        super().__init__(timestamp_column_name=None)
        self.params = params
        self.timestamp_column = timestamp_column
        self.drop_incomplete = False

    def _split(self, data: pd.DataFrame) -> list[Chunk]:
        if CHUNK_INDEX in data.columns:
            codes = data[CHUNK_INDEX].to_numpy(dtype=np.int64)
            labels = data[CHUNK_LABEL].to_numpy(dtype=object)
        else:
            assignment = assign_chunks(
                data[self.timestamp_column], self.params, column=self.timestamp_column
            )
            codes, labels = assignment.codes, assignment.labels
        times = data[self.timestamp_column] if self.timestamp_column in data.columns else None
        if times is None:
            order = np.argsort(codes, kind="stable")
        else:
            # Rows of a chunk in time order (ties as given), as NannyML's own chunkers sort
            # them: sums over a chunk then add up in the same order.
            rank = np.empty(len(codes), dtype=np.int64)
            rank[np.argsort(times.to_numpy(), kind="stable")] = np.arange(len(codes))
            order = np.lexsort((rank, codes))
        uniques, starts = np.unique(codes[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        chunks = []
        for start, end in zip(starts, ends, strict=True):
            rows = order[start:end]
            if self.drop_incomplete and len(rows) < self.params.min_rows:
                continue
            chunk_data = data.iloc[rows]
            chunks.append(
                Chunk(
                    key=str(labels[rows[0]]),
                    data=chunk_data,
                    start_datetime=None if times is None else times.iloc[rows].min(),
                    end_datetime=None if times is None else times.iloc[rows].max(),
                )
            )
        logger.debug("AssignedChunker: %d chunks from %d codes", len(chunks), len(uniques))
        return chunks

    @contextmanager
    def fitting(self) -> Iterator[None]:
        """Leave incomplete chunks out while NannyML calibrates its thresholds."""
        self.drop_incomplete = True
        try:
            yield
        finally:
            self.drop_incomplete = False


@contextmanager
def _quiet_nannyml(what: str) -> Iterator[None]:
    """NannyML warns per chunk (too few chunks, no labels); log each message once instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message, n in Counter(str(w.message) for w in caught).items():
        logger.debug("NannyML (%s) warned %d time(s): %s", what, n, message)


# --- fitting -------------------------------------------------------------------------------------


@dataclass
class FittedNannyML:
    """NannyML calculators fitted on one reference; reusable for any number of analysis frames."""

    schema: DataSchema
    params: NannyMLParams
    chunking: ChunkingParams
    timestamp_column: str
    chunker: AssignedChunker
    univariate: UnivariateDriftCalculator | None = None
    multivariate: DataReconstructionDriftCalculator | None = None
    estimators: dict[str, CBPE] = field(default_factory=dict)
    calculators: dict[str, PerformanceCalculator] = field(default_factory=dict)
    # {"features" | "performance": chunk table of that baseline}, for the monitors that ran.
    baseline_chunks: dict[str, pd.DataFrame] = field(default_factory=dict)
    fit_seconds: float = 0.0


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise NannyMLDriftError(f"{what} lacks column(s) {', '.join(map(repr, missing))}")


def _with_chunks(
    frame: pd.DataFrame,
    columns: list[str],
    timestamp_column: str,
    assignment: ChunkAssignment,
    schema: DataSchema,
) -> pd.DataFrame:
    """A working copy with normalised timestamps and features, and the chunk helper columns.

    Features are passed as NannyML reads them from a plain pandas table: numeric features as
    float64 with NaN for missing (a nullable ``Int64`` column is neither numeric nor categorical
    to NannyML's multivariate calculator, which then leaves it out of imputation), categorical
    features as ``object`` with NaN for missing. The prediction log stores a missing category
    as ``None``, which scikit-learn's ``SimpleImputer(missing_values=np.nan)`` inside the
    multivariate calculator does not treat as missing; and NannyML's multivariate calculator
    decides categorical vs continuous by dtype, so integer-coded categories must be ``object``.
    """
    out = frame[columns].reset_index(drop=True).copy()
    out[timestamp_column] = normalise_timestamps(out[timestamp_column], timestamp_column)
    for name in schema.numeric_features:
        if name in out.columns:
            out[name] = out[name].astype("float64")
    for name in schema.categorical_features:
        if name in out.columns:
            values = out[name].astype(object)
            out[name] = values.where(values.notna(), np.nan)
    out[CHUNK_INDEX] = assignment.codes
    out[CHUNK_LABEL] = assignment.labels
    return out


def _model_frame(frame: pd.DataFrame, model: str, what: str) -> pd.DataFrame:
    """Rows the model scored, with an integer label column (the log's challenger label is Int64)."""
    probability, label = MODELS[model]
    scored = frame[probability].notna() & frame[label].notna()
    out = frame.loc[scored].copy()
    out[label] = out[label].astype(np.int64)
    bad = (out[probability] < 0) | (out[probability] > 1)
    if bad.any():
        raise NannyMLDriftError(
            f"{what}: column {probability!r} has {int(bad.sum())} value(s) outside [0, 1]"
        )
    return out


def _reference_models(reference: pd.DataFrame, params: NannyMLParams) -> list[str]:
    models = ["champion"]
    if params.challenger:
        if all(c in reference.columns for c in MODELS["challenger"]):
            models.append("challenger")
        else:
            logger.warning(
                "The reference has no %s / %s columns: challenger performance is not estimated",
                *MODELS["challenger"],
            )
    return models


def _baseline_chunks(
    frame: pd.DataFrame, ts: str, chunking: ChunkingParams, role: str
) -> ChunkAssignment:
    """The baseline's chunks; NannyML's thresholds need at least two complete ones."""
    assignment = assign_chunks(frame[ts], chunking, column=ts)
    n_complete = int(assignment.table["complete"].sum())
    if n_complete < _MIN_REFERENCE_CHUNKS:
        raise NannyMLDriftError(
            f"the {role} baseline (drift.baseline.{role}): only {n_complete} chunk(s) of "
            f"{chunking.describe()} have at least drift.chunking.min_rows={chunking.min_rows} "
            "rows; NannyML sets its thresholds from the spread over baseline chunks and needs "
            f"at least {_MIN_REFERENCE_CHUNKS} (drift.baseline.min_chunks recommends more). Use "
            "smaller chunks, a lower min_rows or a longer baseline"
        )
    return assignment


def fit_nannyml(
    reference: pd.DataFrame,
    schema: DataSchema,
    params: NannyMLParams,
    chunking: ChunkingParams,
    *,
    timestamp_column: str | None = None,
    feature_reference: pd.DataFrame | None = None,
) -> FittedNannyML:
    """Fit every enabled monitor on its baseline.

    ``reference`` is the performance baseline: labelled rows with the models' scores, on which
    CBPE calibrates and realised performance sets its thresholds. ``feature_reference`` is the
    features baseline of univariate and multivariate drift (features and timestamps only);
    by default ``reference`` serves as both. ``timestamp_column`` defaults to
    ``schema.timestamp``.
    """
    started = time.perf_counter()
    ts = timestamp_column or schema.timestamp
    features_baseline = reference if feature_reference is None else feature_reference
    _require(reference, [ts, schema.target, *MODELS["champion"]], "reference")
    _require(features_baseline, [ts, *schema.features], "the features baseline")
    if reference[schema.target].isna().any():
        raise NannyMLDriftError(
            f"reference: target column {schema.target!r} has "
            f"{int(reference[schema.target].isna().sum())} missing label(s); the reference must "
            "be fully labelled to calibrate CBPE"
        )
    feature_monitors = bool(
        params.continuous_methods or params.categorical_methods or params.multivariate
    )
    chunks: dict[str, ChunkAssignment] = {}
    if feature_monitors:
        chunks["features"] = _baseline_chunks(features_baseline, ts, chunking, "features")
    if params.performance_metrics:
        chunks["performance"] = (
            chunks["features"]
            if feature_reference is None and "features" in chunks
            else _baseline_chunks(reference, ts, chunking, "performance")
        )
    models = _reference_models(reference, params)
    chunker = AssignedChunker(chunking, ts)
    fitted = FittedNannyML(schema, params, chunking, ts, chunker)
    fitted.baseline_chunks = {role: a.table for role, a in chunks.items()}
    with chunker.fitting(), _quiet_nannyml("fit"):
        if "features" in chunks:
            frame = _with_chunks(
                features_baseline, [ts, *schema.features], ts, chunks["features"], schema
            )
            if params.continuous_methods or params.categorical_methods:
                fitted.univariate = _fit_univariate(frame, schema, params, chunker, ts)
            if params.multivariate:
                fitted.multivariate = DataReconstructionDriftCalculator(
                    column_names=schema.features,
                    timestamp_column_name=ts,
                    n_components=params.pca_components,
                    chunker=chunker,
                ).fit(frame)
        if "performance" in chunks:
            columns = [ts, schema.target]
            for model in models:
                columns += list(MODELS[model])
            frame = _with_chunks(reference, columns, ts, chunks["performance"], schema)
            for model in models:
                scored = _model_frame(frame, model, "reference")
                fitted.estimators[model] = _performance(CBPE, model, schema, params, chunker, ts)
                fitted.estimators[model].fit(scored)
                fitted.calculators[model] = _performance(
                    PerformanceCalculator, model, schema, params, chunker, ts
                ).fit(scored)
    fitted.fit_seconds = time.perf_counter() - started
    logger.info(
        "Fitted NannyML monitors in %.1f s on %s",
        fitted.fit_seconds,
        "; ".join(
            f"the {role} baseline ({len(table)} chunks, {int(table['complete'].sum())} complete)"
            for role, table in fitted.baseline_chunks.items()
        )
        or "no baseline (every monitor is off)",
    )
    return fitted


def _fit_univariate(
    frame: pd.DataFrame,
    schema: DataSchema,
    params: NannyMLParams,
    chunker: AssignedChunker,
    ts: str,
) -> UnivariateDriftCalculator | None:
    # A feature kind without methods is left out rather than given NannyML's default method.
    columns = []
    if params.continuous_methods:
        columns += schema.numeric_features
    if params.categorical_methods:
        columns += schema.categorical_features
    if not columns:
        return None
    return UnivariateDriftCalculator(
        column_names=columns,
        treat_as_numerical=[c for c in schema.numeric_features if c in columns],
        treat_as_categorical=[c for c in schema.categorical_features if c in columns],
        timestamp_column_name=ts,
        continuous_methods=list(params.continuous_methods) or None,
        categorical_methods=list(params.categorical_methods) or None,
        chunker=chunker,
    ).fit(frame)


def _performance(
    cls: type,
    model: str,
    schema: DataSchema,
    params: NannyMLParams,
    chunker: AssignedChunker,
    ts: str,
) -> Any:
    probability, label = MODELS[model]
    return cls(
        y_pred_proba=probability,
        y_pred=label,
        y_true=schema.target,
        timestamp_column_name=ts,
        metrics=list(params.performance_metrics),
        chunker=chunker,
        problem_type="classification_binary",
    )


# --- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NannyMLResults:
    """Tidy NannyML results; every frame has a ``chunk`` column with our chunk labels."""

    univariate: pd.DataFrame
    multivariate: pd.DataFrame
    estimated_performance: pd.DataFrame
    realised_performance: pd.DataFrame
    seconds: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        """All four in one long frame with a ``kind`` column (univariate, multivariate, ...)."""
        parts = []
        for kind in ("univariate", "multivariate", "estimated_performance", "realised_performance"):
            part = getattr(self, kind)
            if len(part):
                parts.append(part.assign(kind=kind))
        if not parts:
            return pd.DataFrame(columns=["kind", *PERFORMANCE_COLUMNS, "feature"])
        return pd.concat(parts, ignore_index=True)


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _alert(values: pd.Series) -> np.ndarray:
    # NannyML leaves alert NaN where it could not compute a value: no value, no alert.
    return values.astype(object).where(values.notna(), False).astype(bool).to_numpy()


def _number(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)


def univariate_table(calc: UnivariateDriftCalculator, result: Any) -> pd.DataFrame:
    """NannyML's univariate result (analysis period) as a tidy ``UNIVARIATE_COLUMNS`` table."""
    df = result.filter(period="analysis").to_df()
    keys = df[("chunk", "chunk", "key")].astype(str).to_numpy(dtype=object)
    parts = []
    for feature, methods in (
        (calc.continuous_column_names, calc.continuous_method_names),
        (calc.categorical_column_names, calc.categorical_method_names),
    ):
        for name in feature:
            for method in methods:
                block = df[(name, method)]
                parts.append(
                    pd.DataFrame(
                        {
                            "chunk": keys,
                            "feature": name,
                            "method": method,
                            **_value_columns(block, sampling_error=False),
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True) if parts else _empty(UNIVARIATE_COLUMNS)


def multivariate_table(result: Any) -> pd.DataFrame:
    """NannyML's reconstruction-error result (analysis period) as ``MULTIVARIATE_COLUMNS``."""
    df = result.filter(period="analysis").to_df()
    return pd.DataFrame(
        {
            "chunk": df[("chunk", "key")].astype(str).to_numpy(dtype=object),
            "metric": "reconstruction_error",
            "method": "pca_reconstruction",
            **_value_columns(df["reconstruction_error"], sampling_error=True),
        }
    )[list(MULTIVARIATE_COLUMNS)]


def performance_table(
    result: Any,
    model: str,
    method: str,
    metrics: tuple[str, ...],
    n_rows: pd.Series | None = None,
) -> pd.DataFrame:
    """A CBPE or PerformanceCalculator result (analysis period) as ``PERFORMANCE_COLUMNS``;
    ``n_rows``: rows per chunk label (without it the column is left out)."""
    df = result.filter(period="analysis").to_df()
    keys = df[("chunk", "key")].astype(str).to_numpy(dtype=object)
    parts = []
    for metric in metrics:
        part = pd.DataFrame(
            {
                "chunk": keys,
                "model": model,
                "metric": metric,
                "method": method,
                **_value_columns(df[metric], sampling_error=True),
            }
        )
        if n_rows is not None:
            part["n_rows"] = n_rows.reindex(keys).fillna(0).to_numpy(dtype=np.int64)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _value_columns(block: pd.DataFrame, *, sampling_error: bool) -> dict[str, np.ndarray]:
    columns = {"value": _number(block["value"])}
    if sampling_error:
        columns["sampling_error"] = _number(block["sampling_error"])
    columns["lower_threshold"] = _number(block["lower_threshold"])
    columns["upper_threshold"] = _number(block["upper_threshold"])
    columns["alert"] = _alert(block["alert"])
    return columns


def _labelled(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Labelled rows, the target as integers. A chunk whose labels hold one class stays: NannyML
    reports NaN for it (no ROC AUC, precision or recall from one class), as a direct run does."""
    labelled = frame.loc[frame[target].notna()].copy()
    labelled[target] = labelled[target].astype(np.int64)
    return labelled


def _run_performance(
    fitted: FittedNannyML, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    target = fitted.schema.target
    metrics = fitted.params.performance_metrics
    estimated, realised = [], []
    for model in _judged_models(fitted, frame):
        fitted_as, answered_by = JUDGED[model]
        estimator = fitted.estimators[fitted_as]
        probability, label = MODELS[fitted_as]
        if probability not in frame.columns or label not in frame.columns:
            logger.warning(
                "The analysis frame has no %s column: %s not estimated", probability, model
            )
            continue
        rows = frame.loc[answered_by_challenger(frame) == (answered_by == CHALLENGER_VARIANT)]
        scored = _model_frame(rows, fitted_as, "analysis")
        if scored.empty:
            logger.info("No analysis row was scored by the %s: nothing to estimate", model)
            continue
        n_scored = scored.groupby(CHUNK_LABEL).size()
        # Without the target column CBPE does not try (and warn about) realised values.
        result = estimator.estimate(scored.drop(columns=[target], errors="ignore"))
        estimated.append(performance_table(result, model, "cbpe", metrics, n_scored))
        if target not in scored.columns:
            continue
        labelled = _labelled(scored, target)
        if labelled.empty:
            logger.info("No labelled analysis rows for the %s yet: no realised performance", model)
            continue
        n_labelled = labelled.groupby(CHUNK_LABEL).size()
        result = fitted.calculators[fitted_as].calculate(labelled)
        realised.append(performance_table(result, model, "realised", metrics, n_labelled))
    return (
        pd.concat(estimated, ignore_index=True) if estimated else _empty(PERFORMANCE_COLUMNS),
        pd.concat(realised, ignore_index=True) if realised else _empty(PERFORMANCE_COLUMNS),
    )


def _judged_models(fitted: FittedNannyML, frame: pd.DataFrame) -> list[str]:
    """Champion, challenger (those fitted) and canary when the frame has records the
    challenger answered."""
    models = list(fitted.estimators)
    if "challenger" in fitted.estimators and answered_by_challenger(frame).any():
        models.append("canary")
    return models


def run_nannyml(
    fitted: FittedNannyML,
    analysis: pd.DataFrame,
    assignment: ChunkAssignment | None = None,
    *,
    timestamp_column: str | None = None,
) -> NannyMLResults:
    """Run every fitted monitor on ``analysis`` (prediction-log rows, target where it arrived).

    ``assignment`` is the analysis's chunk assignment (computed if not given);
    ``timestamp_column`` defaults to the one used at fit time.
    """
    started = time.perf_counter()
    ts = timestamp_column or fitted.timestamp_column
    schema = fitted.schema
    _require(analysis, [ts, *schema.features, *MODELS["champion"]], "analysis")
    if assignment is None:
        assignment = assign_chunks(analysis[ts], fitted.chunking, column=ts)
    elif len(assignment.codes) != len(analysis):
        raise NannyMLDriftError(
            f"the chunk assignment covers {len(assignment.codes)} rows, the analysis has "
            f"{len(analysis)}"
        )
    optional = [
        c for c in (schema.target, CHALLENGER_STATUS, MODEL_VARIANT) if c in analysis.columns
    ]
    if "challenger" in fitted.estimators:
        optional += [c for c in MODELS["challenger"] if c in analysis.columns]
    columns = [ts, *schema.features, *MODELS["champion"], *optional]
    frame = _with_chunks(analysis, list(dict.fromkeys(columns)), ts, assignment, schema)
    # The calculators were fitted with the reference's timestamp column name.
    frame = frame.rename(columns={ts: fitted.timestamp_column})
    if CHALLENGER_STATUS in frame.columns and CHALLENGER_PROBABILITY in frame.columns:
        # Only "ok" rows carry challenger outputs (docs/prediction_log.md); be strict anyway.
        frame.loc[frame[CHALLENGER_STATUS] != "ok", CHALLENGER_PROBABILITY] = np.nan

    with _quiet_nannyml("calculate"):
        univariate = (
            _empty(UNIVARIATE_COLUMNS)
            if fitted.univariate is None
            else univariate_table(fitted.univariate, fitted.univariate.calculate(frame))
        )
        multivariate = (
            _empty(MULTIVARIATE_COLUMNS)
            if fitted.multivariate is None
            else multivariate_table(fitted.multivariate.calculate(frame))
        )
        estimated, realised = _run_performance(fitted, frame)
    seconds = time.perf_counter() - started
    logger.info("Ran NannyML monitors on %d analysis rows in %.1f s", len(frame), seconds)
    return NannyMLResults(univariate, multivariate, estimated, realised, seconds)
