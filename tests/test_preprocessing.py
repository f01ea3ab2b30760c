"""The shared preprocessor: column layout, unknown/missing categories, imputation, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier

from shadowdrift.preprocessing import build_preprocessor, categorical_mask
from shadowdrift.simulation import CATEGORICAL_FEATURES, NUMERIC_FEATURES, simulate_history

NUMERIC = ["income", "age"]
CATEGORICAL = ["plan", "region"]


@pytest.fixture
def frame() -> pd.DataFrame:
    # Columns deliberately out of declared order, plus an extra column that must be dropped.
    return pd.DataFrame(
        {
            "region": ["north", "south", "north", "east"],
            "extra": [1, 2, 3, 4],
            "age": [30.0, 40.0, np.nan, 60.0],
            "plan": ["basic", "pro", "basic", None],
            "income": [1.0, 2.0, 3.0, 10.0],
        }
    )


def test_output_is_numeric_columns_then_categorical_codes(frame):
    preprocessor = build_preprocessor(NUMERIC, CATEGORICAL)
    out = preprocessor.fit_transform(frame)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float64
    assert out.shape == (4, 4)
    assert list(preprocessor.get_feature_names_out()) == NUMERIC + CATEGORICAL
    # Categorical codes are the sorted category positions.
    np.testing.assert_array_equal(out[:, 3], [1.0, 2.0, 1.0, 0.0])


def test_numeric_features_are_median_imputed_then_standardised(frame):
    preprocessor = build_preprocessor(NUMERIC, CATEGORICAL)
    out = preprocessor.fit_transform(frame)
    ages = np.array([30.0, 40.0, 40.0, 60.0])  # the missing age becomes the median, 40
    np.testing.assert_allclose(out[:, 1], (ages - ages.mean()) / ages.std())
    np.testing.assert_allclose(out[:, 0].mean(), 0.0, atol=1e-12)

    later = frame.iloc[[0]].assign(age=np.nan)
    np.testing.assert_allclose(
        preprocessor.transform(later)[0, 1], (40.0 - ages.mean()) / ages.std()
    )


def test_unseen_and_missing_categories_become_minus_one(frame):
    preprocessor = build_preprocessor(NUMERIC, CATEGORICAL)
    out = preprocessor.fit_transform(frame)
    assert out[3, 2] == -1  # missing in training is not a category of its own

    new = pd.DataFrame(
        {
            "income": [1.0, 1.0, 1.0, 1.0],
            "age": [30.0, 30.0, 30.0, 30.0],
            "plan": ["enterprise", None, np.nan, pd.NA],
            "region": ["north", np.nan, "atlantis", "south"],
        }
    )
    codes = preprocessor.transform(new)[:, 2:]
    np.testing.assert_array_equal(codes, [[-1, 1], [-1, -1], [-1, -1], [-1, 2]])


@pytest.mark.parametrize("stage", ["fit", "transform"])
def test_a_missing_column_is_named_in_the_error(frame, stage):
    preprocessor = build_preprocessor(NUMERIC, CATEGORICAL)
    if stage == "transform":
        preprocessor.fit(frame)
    broken = frame.drop(columns=["plan", "age"])
    with pytest.raises(ValueError, match=rf"{stage} time.*age, plan"):
        if stage == "fit":
            preprocessor.fit(broken)
        else:
            preprocessor.transform(broken)


def test_fit_transform_also_checks_columns(frame):
    with pytest.raises(ValueError, match="region"):
        build_preprocessor(NUMERIC, CATEGORICAL).fit_transform(frame.drop(columns="region"))


def test_a_feature_declared_twice_is_rejected():
    with pytest.raises(ValueError, match="age"):
        build_preprocessor(["age"], ["age"])


def test_categorical_mask_marks_the_trailing_code_columns():
    np.testing.assert_array_equal(
        categorical_mask(NUMERIC, CATEGORICAL), [False, False, True, True]
    )
    assert categorical_mask(NUMERIC, CATEGORICAL).dtype == bool


def test_hist_gradient_boosting_reads_minus_one_as_missing():
    rng = np.random.default_rng(0)
    n = 600
    plan = rng.choice(["basic", "pro", "max"], size=n).astype(object)
    plan[rng.random(n) < 0.1] = None
    frame = pd.DataFrame({"income": rng.normal(size=n), "age": rng.normal(size=n), "plan": plan})
    y = ((frame["plan"] == "pro") | (frame["income"] > 1)).astype(int)
    preprocessor = build_preprocessor(NUMERIC, ["plan"])
    X = preprocessor.fit_transform(frame)
    assert (X[:, 2] == -1).any()

    model = HistGradientBoostingClassifier(
        categorical_features=categorical_mask(NUMERIC, ["plan"]), max_iter=20, random_state=0
    ).fit(X, y)
    unknown = preprocessor.transform(frame.iloc[:50].assign(plan="platinum"))
    as_nan = unknown.copy()
    as_nan[:, 2] = np.nan
    np.testing.assert_array_equal(model.predict_proba(unknown), model.predict_proba(as_nan))


def test_the_simulated_features_pass_through_and_survive_clone_and_pickle():
    events, _ = simulate_history(300, 3, "2024-01-01", 30, 7)
    preprocessor = build_preprocessor(list(NUMERIC_FEATURES), list(CATEGORICAL_FEATURES))
    out = preprocessor.fit_transform(events)
    assert out.shape == (300, len(NUMERIC_FEATURES) + len(CATEGORICAL_FEATURES))
    assert np.isfinite(out).all()
    restored = pickle.loads(pickle.dumps(preprocessor))
    np.testing.assert_array_equal(restored.transform(events.iloc[[5]]), out[[5]])
    np.testing.assert_array_equal(clone(preprocessor).fit_transform(events), out)
