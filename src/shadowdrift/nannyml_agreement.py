"""The project's drift monitors side by side with a direct NannyML 0.13.1 run, chunk by chunk.

``tests/test_nannyml_agreement.py`` asserts that both sides agree and
``benchmarks/nannyml_agreement.py`` prints the tables of docs/drift_quality.md. Two data sets
bundled with NannyML (nothing is downloaded):

* ``synthetic_case()``: NannyML's synthetic binary classification data (work from home):
  50,000 reference rows as the baseline, 50,000 analysis rows as production, the model scores
  NannyML ships with them, a bool feature (``wfh_prev_workday``) and a ``timestamp``;
* ``titanic_case()``: NannyML's Titanic data: 891 reference and 418 analysis passengers, mixed
  types, missing values (``Age``, ``Fare``, ``Embarked``), no timestamp and no model scores; a
  logistic regression scores them (out-of-fold on the reference, so CBPE calibrates on scores
  the model never trained on).

Each side gets the data the way it would meet it. **Ours**: rows as the prediction log holds
them (categorical values as strings, a missing category as ``None``, numbers as float64, the
log's tz-aware UTC ``event_time``; the baseline with the schema's timestamp), through
``drift_monitor.run_drift`` with ``drift.chunking``. **NannyML**: the frames as NannyML loads
them (native types, ``NaN``), with ``chunk_size`` or ``chunk_period``. Titanic has no
timestamps: size chunks follow the row order on both sides (ours: an ``event_time`` that
increases with the row number).

NannyML's result frames become tidy tables with the same readers on both sides
(``nannyml_drift.univariate_table`` ...: they only pick NannyML's columns); ``side_by_side(ours,
theirs)`` lines up the tidy tables per chunk and subject; ``agreement`` summarises the largest
differences. Plain pandas / NannyML; does not import Kedro.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nannyml as nml
import numpy as np
import pandas as pd
from nannyml.chunk import Chunker, SizeBasedChunker
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shadowdrift.drift_monitor import DriftResults, run_drift
from shadowdrift.nannyml_drift import (
    NannyMLResults,
    multivariate_table,
    performance_table,
    univariate_table,
)
from shadowdrift.prediction_log import CHAMPION_LABEL, CHAMPION_PROBABILITY, EVENT_TIME
from shadowdrift.schema import DataSchema, parse_schema

CONTINUOUS_METHODS = ("kolmogorov_smirnov", "jensen_shannon")
CATEGORICAL_METHODS = ("chi2", "jensen_shannon")
METRICS = ("roc_auc", "f1", "precision", "recall")
PCA_COMPONENTS = 0.65  # the project's default (drift.nannyml.pca_components)
THRESHOLD = 0.5  # both data sets' y_pred is y_pred_proba >= 0.5


@dataclass(frozen=True)
class Case:
    """One data set, prepared for both sides."""

    name: str
    schema: DataSchema
    reference: pd.DataFrame  # ours: the baseline (schema.timestamp, features, target, scores)
    analysis: pd.DataFrame  # ours: prediction-log rows (event_time, features, scores, target)
    nml_reference: pd.DataFrame  # NannyML's side, native types
    nml_analysis: pd.DataFrame
    timestamp: str | None  # NannyML's timestamp column (None: row order)
    y_true: str
    y_pred_proba: str
    y_pred: str

    @property
    def numeric(self) -> list[str]:
        return self.schema.numeric_features

    @property
    def categorical(self) -> list[str]:
        return self.schema.categorical_features


def _as_logged(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """Features as the prediction log stores them: float64, strings, missing as None."""
    out = frame.copy()
    for name in schema.numeric_features:
        out[name] = out[name].astype("float64")
    for name in schema.categorical_features:
        text = out[name].map(lambda v: None if pd.isna(v) else str(v))
        out[name] = text.astype(object)
    return out


def _ours(
    frame: pd.DataFrame,
    schema: DataSchema,
    times: pd.Series,
    *,
    logged: bool,
    proba: str,
    pred: str,
) -> pd.DataFrame:
    out = _as_logged(frame, schema).rename(
        columns={proba: CHAMPION_PROBABILITY, pred: CHAMPION_LABEL}
    )
    column = EVENT_TIME if logged else schema.timestamp
    out = out.drop(columns=[c for c in (schema.timestamp, EVENT_TIME) if c in out.columns])
    out[column] = times.dt.tz_localize("UTC") if logged else times
    return out


def synthetic_case(step: int = 1) -> Case:
    """NannyML's synthetic binary classification data; ``step`` > 1 keeps every step-th row of
    each part (the same time span and drift, fewer rows: faster tests)."""
    reference, analysis, targets = nml.load_synthetic_binary_classification_dataset()
    analysis = analysis.merge(targets, on="id", how="left")
    reference = reference.iloc[::step].reset_index(drop=True)
    analysis = analysis.iloc[::step].reset_index(drop=True)
    numeric = [
        "distance_from_office",
        "gas_price_per_litre",
        "public_transportation_cost",
        "tenure",
    ]
    categorical = ["salary_range", "wfh_prev_workday", "workday"]
    schema = parse_schema(
        {
            "id": "id",
            "timestamp": "timestamp",
            "target": "work_home_actual",
            "numeric": {name: {"dtype": "float"} for name in numeric},
            "categorical": {
                name: {"values": sorted(reference[name].astype(str).unique().tolist())}
                for name in categorical
            },
        }
    )
    kwargs = {"schema": schema, "proba": "y_pred_proba", "pred": "y_pred"}
    return Case(
        name="synthetic binary classification",
        schema=schema,
        reference=_ours(
            reference, times=pd.to_datetime(reference["timestamp"]), logged=False, **kwargs
        ),
        analysis=_ours(
            analysis, times=pd.to_datetime(analysis["timestamp"]), logged=True, **kwargs
        ),
        nml_reference=reference,
        nml_analysis=analysis,
        timestamp="timestamp",
        y_true="work_home_actual",
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
    )


def _titanic_model(numeric: list[str], categorical: list[str]) -> Any:
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=1000))


def titanic_case() -> Case:
    """NannyML's Titanic data, scored by a logistic regression (out-of-fold on the reference)."""
    reference, analysis, targets = nml.load_titanic_dataset()
    analysis = analysis.merge(targets, on="PassengerId", how="left")
    numeric = ["Age", "SibSp", "Parch", "Fare"]
    categorical = ["Pclass", "Sex", "Embarked"]
    # Pclass is a class, not a number: NannyML's multivariate calculator decides by dtype, so
    # NannyML's side gets it as text too (the schema says categorical; see the docs).
    reference = reference.assign(Pclass=reference["Pclass"].astype(str))
    analysis = analysis.assign(Pclass=analysis["Pclass"].astype(str))
    model = _titanic_model(numeric, categorical)
    features = numeric + categorical
    reference["y_pred_proba"] = cross_val_predict(
        model, reference[features], reference["Survived"], cv=5, method="predict_proba"
    )[:, 1]
    model.fit(reference[features], reference["Survived"])
    analysis["y_pred_proba"] = model.predict_proba(analysis[features])[:, 1]
    for frame in (reference, analysis):
        frame["y_pred"] = (frame["y_pred_proba"] >= THRESHOLD).astype(np.int64)
    schema = parse_schema(
        {
            "id": "PassengerId",
            "timestamp": EVENT_TIME,
            "target": "Survived",
            "numeric": {name: {"dtype": "float", "nullable": True} for name in numeric},
            "categorical": {
                name: {
                    "values": sorted(reference[name].dropna().unique().tolist()),
                    "nullable": True,
                }
                for name in categorical
            },
        }
    )

    def row_times(frame: pd.DataFrame, start: str) -> pd.Series:
        return pd.Series(pd.Timestamp(start) + pd.to_timedelta(np.arange(len(frame)), unit="s"))

    kwargs = {"schema": schema, "proba": "y_pred_proba", "pred": "y_pred"}
    return Case(
        name="titanic",
        schema=schema,
        reference=_ours(
            reference, times=row_times(reference, "1912-04-01"), logged=False, **kwargs
        ),
        analysis=_ours(analysis, times=row_times(analysis, "1912-04-10"), logged=True, **kwargs),
        nml_reference=reference,
        nml_analysis=analysis,
        timestamp=None,
        y_true="Survived",
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
    )


# --- the two sides -------------------------------------------------------------------------------


def drift_parameters(
    chunking: Mapping[str, Any], metrics: tuple[str, ...] = METRICS
) -> dict[str, Any]:
    """The ``drift`` parameters of our side: the given chunking, the compared monitors."""
    return {
        "chunking": dict(chunking),
        "psi": {"monitor_predictions": False},
        "nannyml": {
            "continuous_methods": list(CONTINUOUS_METHODS),
            "categorical_methods": list(CATEGORICAL_METHODS),
            "multivariate": True,
            "pca_components": PCA_COMPONENTS,
            "performance_metrics": list(metrics),
            "challenger": False,
        },
        "baseline": {"min_chunks": 2},
    }


def run_ours(
    case: Case, chunking: Mapping[str, Any], metrics: tuple[str, ...] = METRICS
) -> DriftResults:
    """The project's path: ``run_drift`` on the baseline and the logged analysis rows."""
    return run_drift(
        case.reference, case.analysis, case.schema, THRESHOLD, drift_parameters(chunking, metrics)
    )


def nannyml_chunking(case: Case, chunking: Mapping[str, Any]) -> dict[str, Any]:
    """NannyML's keyword arguments for the same chunking: ``chunk_size`` or ``chunk_period``."""
    if chunking["by"] == "size":
        return {"chunk_size": int(chunking["size"])}
    return {"chunk_period": chunking["period"]}


def _chunker_kwargs(case: Case, chunking: Mapping[str, Any], chunker: Chunker | None) -> dict:
    if chunker is not None:
        return {"chunker": chunker}
    return {"timestamp_column_name": case.timestamp, **nannyml_chunking(case, chunking)}


@dataclass
class DirectRun:
    """A direct NannyML run: the fitted calculators and their tidy analysis results."""

    univariate: nml.UnivariateDriftCalculator
    multivariate: nml.DataReconstructionDriftCalculator
    cbpe: nml.CBPE
    realised: nml.PerformanceCalculator
    results: NannyMLResults


def run_nannyml_directly(
    case: Case,
    chunking: Mapping[str, Any],
    *,
    fit_chunker: Chunker | None = None,
    analysis_chunker: Chunker | None = None,
    metrics: tuple[str, ...] = METRICS,
) -> DirectRun:
    """NannyML's own calculators on NannyML's frames, chunked by ``chunk_size`` / ``chunk_period``.

    ``fit_chunker`` / ``analysis_chunker`` replace that chunking for fitting and for the
    analysis (a NannyML ``SizeBasedChunker(incomplete="drop")`` for fitting reproduces a
    baseline whose last size chunk is incomplete, see docs/drift_quality.md).
    """
    ref, ana = case.nml_reference, case.nml_analysis
    fit = _chunker_kwargs(case, chunking, fit_chunker)
    features = case.numeric + case.categorical
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        univariate = nml.UnivariateDriftCalculator(
            column_names=features,
            treat_as_numerical=case.numeric,
            treat_as_categorical=case.categorical,
            continuous_methods=list(CONTINUOUS_METHODS),
            categorical_methods=list(CATEGORICAL_METHODS),
            **fit,
        ).fit(ref)
        multivariate = nml.DataReconstructionDriftCalculator(
            column_names=features, n_components=PCA_COMPONENTS, **fit
        ).fit(ref)
        performance = {
            "y_pred_proba": case.y_pred_proba,
            "y_pred": case.y_pred,
            "y_true": case.y_true,
            "metrics": list(metrics),
            "problem_type": "classification_binary",
            **fit,
        }
        cbpe = nml.CBPE(**performance).fit(ref)
        realised = nml.PerformanceCalculator(**performance).fit(ref)
        if analysis_chunker is not None:
            for calculator in (univariate, multivariate, cbpe, realised):
                calculator.chunker = analysis_chunker
        results = NannyMLResults(
            univariate_table(univariate, univariate.calculate(ana)),
            multivariate_table(multivariate.calculate(ana)),
            performance_table(
                cbpe.estimate(ana.drop(columns=[case.y_true])), "champion", "cbpe", metrics
            ),
            performance_table(realised.calculate(ana), "champion", "realised", metrics),
        )
    return DirectRun(univariate, multivariate, cbpe, realised, results)


def incomplete_size_chunk_dropped(case: Case, size: int) -> dict[str, Chunker]:
    """NannyML chunkers reproducing a size-chunked baseline whose last chunk is incomplete."""
    timestamp = {"timestamp_column_name": case.timestamp}
    return {
        "fit_chunker": SizeBasedChunker(size, incomplete="drop", **timestamp),
        "analysis_chunker": SizeBasedChunker(size, incomplete="keep", **timestamp),
    }


# --- comparison ----------------------------------------------------------------------------------

MONITORS = {
    "univariate": ["feature", "method"],
    "multivariate": ["metric"],
    "estimated_performance": ["metric"],
    "realised_performance": ["metric"],
}
NUMBERS = ("value", "lower_threshold", "upper_threshold", "sampling_error")


def side_by_side(ours: NannyMLResults, theirs: NannyMLResults, monitor: str) -> pd.DataFrame:
    """One row per (subject, chunk) of ``monitor``: ``<column>_ours`` and ``<column>_nannyml``.

    Every chunk of either side is kept (an outer join): a chunk on one side only shows as NaN.
    """
    keys = ["chunk", *MONITORS[monitor]]
    left, right = getattr(ours, monitor), getattr(theirs, monitor)
    columns = [c for c in (*NUMBERS, "alert") if c in right.columns]
    merged = left[[*keys, *columns]].merge(
        right[[*keys, *columns]], on=keys, how="outer", suffixes=("_ours", "_nannyml"),
        indicator=True,
    )  # fmt: skip
    # An outer join sorts the keys as text ([10000:14999] before [5000:9999]): back to time order.
    order = {chunk: i for i, chunk in enumerate(dict.fromkeys([*left["chunk"], *right["chunk"]]))}
    rank = merged["chunk"].map(order)
    return merged.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


def agreement(table: pd.DataFrame) -> dict[str, Any]:
    """Largest absolute differences per number, alert mismatches and unmatched chunks."""
    out: dict[str, Any] = {
        "rows": len(table),
        "unmatched": int((table["_merge"] != "both").sum()),
        "alerts_ours": int(table["alert_ours"].fillna(False).astype(bool).sum()),
        "alerts_nannyml": int(table["alert_nannyml"].fillna(False).astype(bool).sum()),
        "alert_mismatches": int(
            (
                table["alert_ours"].fillna(False).astype(bool)
                != table["alert_nannyml"].fillna(False).astype(bool)
            ).sum()
        ),
    }
    for column in NUMBERS:
        if f"{column}_ours" not in table.columns:
            continue
        a, b = table[f"{column}_ours"].to_numpy(float), table[f"{column}_nannyml"].to_numpy(float)
        both_nan = np.isnan(a) & np.isnan(b)
        one_nan = np.isnan(a) ^ np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        out[f"{column}_max_abs_diff"] = float(
            np.inf if one_nan.any() else np.nanmax(diff, initial=0.0)
        )
    return out


def tables_equal(ours: NannyMLResults, theirs: NannyMLResults) -> dict[str, dict[str, Any]]:
    """``agreement`` of every monitor."""
    return {monitor: agreement(side_by_side(ours, theirs, monitor)) for monitor in MONITORS}
