"""The numpy fast path reproduces the fitted scikit-learn pipeline exactly, or falls back."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from shadowdrift.churn_model import ChurnModel
from shadowdrift.schema import parse_schema
from shadowdrift.serving.fast_path import (
    FOREST_KERNEL_MISSING,
    NODE_DTYPE,
    CompiledHGB,
    CompiledPreprocessor,
    FastScorer,
    UnsupportedModel,
)
from shadowdrift.simulation import simulate_history
from shadowdrift.training import fit_candidate
from tests.conftest import base_parameters

# the tiny models are trained in-process once per session (a few seconds)
pytestmark = pytest.mark.slow

TINY = {
    "gbm": {"kind": "hist_gradient_boosting", "params": {"max_iter": 40, "random_state": 0}},
    "mlp": {"kind": "torch_mlp", "params": {"max_epochs": 2, "random_state": 0, "num_threads": 1}},
}


@functools.cache
def project_schema() -> Any:
    return parse_schema(base_parameters()["schema"])


@functools.cache
def history(n_rows: int = 2500, with_gaps: bool = False) -> pd.DataFrame:
    events, _ = simulate_history(n_rows, seed=3, start="2024-01-01", days=120, label_delay_days=30)
    if with_gaps:
        # missing values in training: the HGB then knows code -1 as a category of its own
        rng = np.random.default_rng(5)
        events = events.copy()
        for column in ("payment_method", "region"):
            events[column] = events[column].astype(object)
            events.loc[rng.random(len(events)) < 0.1, column] = None
        events.loc[rng.random(len(events)) < 0.1, "satisfaction_score"] = np.nan
    return events


@functools.cache
def tiny_models(with_gaps: bool = False) -> dict[str, ChurnModel]:
    """Small gbm and mlp candidates fitted in-process (a few seconds), cached for the session."""
    schema = project_schema()
    events = history(with_gaps=with_gaps)
    fit_rows, validation_rows = events.iloc[:2000], events.iloc[2000:]
    models = {}
    for name, spec in TINY.items():
        candidate = fit_candidate(
            name,
            spec,
            fit_rows,
            validation_rows,
            schema.numeric_features,
            schema.categorical_features,
            schema.target,
            {"rule": "max_f1"},
        )
        models[name] = ChurnModel(
            candidate.pipeline,
            candidate.threshold,
            schema.numeric_features,
            schema.categorical_features,
            name=name,
            kind=candidate.kind,
        )
    return models


def awkward_records(n_rows: int = 600) -> pd.DataFrame:
    """Realistic records plus missing numbers, missing and unseen categories."""
    schema = project_schema()
    events, _ = simulate_history(n_rows, seed=9, start="2025-01-01", days=30, label_delay_days=30)
    frame = events[schema.features].copy()
    rng = np.random.default_rng(1)
    for column in schema.numeric_features[:5]:
        frame[column] = frame[column].astype(float)
        frame.loc[rng.random(n_rows) < 0.1, column] = np.nan
    for column in schema.categorical_features:
        frame[column] = frame[column].astype(object)
        frame.loc[rng.random(n_rows) < 0.08, column] = None
        frame.loc[rng.random(n_rows) < 0.05, column] = "never_seen_before"
    return frame.reset_index(drop=True)


def as_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, list[list[str | None]]]:
    schema = project_schema()
    numeric = frame[schema.numeric_features].to_numpy(dtype=np.float64)
    categorical = [
        [None if pd.isna(value) else value for value in frame[column]]
        for column in schema.categorical_features
    ]
    return numeric, categorical


def scorer(model: ChurnModel, **kwargs: Any) -> FastScorer:
    schema = project_schema()
    return FastScorer(model, schema.numeric_features, schema.categorical_features, **kwargs)


def test_the_c_forest_kernel_is_built():
    """``pip install -e .`` compiles it; without it batches fall back to the slower numpy path."""
    assert FOREST_KERNEL_MISSING is None, FOREST_KERNEL_MISSING
    # the C struct shadowdrift_node: double, 3 x int32, int16, 2 x uint8, no padding
    assert NODE_DTYPE.itemsize == 24
    assert [NODE_DTYPE.fields[name][1] for name in NODE_DTYPE.names] == [0, 8, 12, 16, 20, 22, 23]


@pytest.mark.parametrize("kernel", ["c", "numpy"])
@pytest.mark.parametrize("with_gaps", [False, True])
def test_compiled_hgb_equals_the_pipeline_bit_for_bit(with_gaps, kernel):
    model = tiny_models(with_gaps)["gbm"]
    fast = scorer(model, c_kernel=kernel == "c")
    assert fast.path == "compiled-hgb"
    assert fast.kernel == kernel
    # only the C kernel makes a batch worth a scoring thread of its own in the service
    assert fast.releases_gil == (kernel == "c")
    frame = awkward_records()
    numeric, categorical = as_arrays(frame)
    expected = model.predict_probability(frame)
    # a batch takes scikit-learn's per-tree routine...
    assert np.array_equal(fast.predict_probability(numeric, categorical), expected)
    # ...and single records and small batches the numpy walk of all trees
    singles = [
        fast.predict_probability(numeric[i : i + 1], [column[i : i + 1] for column in categorical])[
            0
        ]
        for i in range(len(frame))
    ]
    assert np.array_equal(np.array(singles), expected)
    # every remainder of the C kernel's groups of eight rows
    for n_rows in (5, 8, 9, 15, 16, 17, 599):
        some = fast.predict_probability(
            numeric[:n_rows], [column[:n_rows] for column in categorical]
        )
        assert np.array_equal(some, expected[:n_rows]), n_rows


def test_compiled_preprocessor_equals_the_column_transformer():
    model = tiny_models(True)["mlp"]
    frame = awkward_records()
    numeric, categorical = as_arrays(frame)
    compiled = CompiledPreprocessor.from_fitted(model.pipeline[0])
    expected = model.pipeline[0].transform(frame[model.features])
    assert np.array_equal(compiled.transform(numeric, categorical), expected)


def test_mlp_behind_compiled_preprocessing_equals_the_pipeline():
    model = tiny_models()["mlp"]
    fast = scorer(model)
    assert fast.path == "compiled-preprocessing"
    assert not fast.releases_gil
    frame = awkward_records()
    numeric, categorical = as_arrays(frame)
    assert np.array_equal(
        fast.predict_probability(numeric, categorical), model.predict_probability(frame)
    )
    one = fast.predict_probability(numeric[:1], [column[:1] for column in categorical])
    assert np.array_equal(one, model.predict_probability(frame.head(1)))


def test_labels_use_the_models_threshold():
    model = tiny_models()["gbm"]
    fast = scorer(model)
    probability = np.array([model.threshold - 1e-9, model.threshold, model.threshold + 1e-9])
    assert fast.labels(probability).tolist() == [0, 1, 1]


def test_schema_order_may_differ_from_the_models_order():
    model = tiny_models()["gbm"]
    schema = project_schema()
    numeric_order = list(reversed(schema.numeric_features))
    categorical_order = list(reversed(schema.categorical_features))
    fast = FastScorer(model, numeric_order, categorical_order)
    frame = awkward_records(50)
    numeric = frame[numeric_order].to_numpy(dtype=np.float64)
    categorical = [[None if pd.isna(v) else v for v in frame[c]] for c in categorical_order]
    assert np.array_equal(
        fast.predict_probability(numeric, categorical), model.predict_probability(frame)
    )


def test_an_unsupported_pipeline_falls_back_to_the_models_own_path():
    base = tiny_models()["gbm"]
    schema = project_schema()
    events = history()
    # no shadowdrift preprocessor: HGB straight on the numeric columns
    numeric_only = Pipeline(
        [
            ("select", _Columns(schema.numeric_features)),
            (
                "model",
                HistGradientBoostingClassifier(max_iter=10).fit(
                    events[schema.numeric_features], events[schema.target]
                ),
            ),
        ]
    )
    model = ChurnModel(
        numeric_only,
        base.threshold,
        schema.numeric_features,
        schema.categorical_features,
        "odd",
        "other",
    )
    fast = scorer(model)
    assert fast.path == "pipeline"
    assert fast.fallback_reason
    frame = awkward_records(40)
    numeric, categorical = as_arrays(frame)
    assert np.array_equal(
        fast.predict_probability(numeric, categorical), model.predict_probability(frame)
    )


def test_fast_path_can_be_switched_off():
    model = tiny_models()["gbm"]
    fast = scorer(model, enabled=False)
    assert fast.path == "pipeline"
    frame = awkward_records(20)
    numeric, categorical = as_arrays(frame)
    assert np.array_equal(
        fast.predict_probability(numeric, categorical), model.predict_probability(frame)
    )


def test_a_model_needing_a_feature_the_schema_lacks_is_refused():
    model = tiny_models()["gbm"]
    schema = project_schema()
    with pytest.raises(ValueError, match="tenure_months"):
        FastScorer(model, schema.numeric_features[1:], schema.categorical_features)


def test_compiling_something_else_says_why():
    with pytest.raises(UnsupportedModel):
        CompiledPreprocessor.from_fitted(object())
    with pytest.raises(UnsupportedModel):
        CompiledHGB(object())


class _Columns:
    """A minimal selector transformer (fit/transform by column name)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> _Columns:
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.columns]


def test_models_with_the_older_bare_ordinal_encoder_compile_too():
    """Models trained before ``missing_as_nan`` encode categories with a bare OrdinalEncoder."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    schema = project_schema()
    base = tiny_models(True)["gbm"]
    old = base.pipeline[0]
    numeric = old.named_transformers_["numeric"]
    events = history(with_gaps=True)
    legacy = ColumnTransformer(
        [
            ("numeric", numeric, schema.numeric_features),
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                    encoded_missing_value=-1,
                    dtype=np.float64,
                ),
                schema.categorical_features,
            ),
        ],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )
    legacy.fit(events[schema.features])
    assert any(None in list(c) for c in legacy.named_transformers_["categorical"].categories_)
    frame = awkward_records(300)
    compiled = CompiledPreprocessor.from_fitted(legacy)
    numeric_values, categorical = as_arrays(frame)
    assert np.array_equal(
        compiled.transform(numeric_values, categorical), legacy.transform(frame[schema.features])
    )
