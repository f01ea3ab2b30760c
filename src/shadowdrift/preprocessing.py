"""The feature preprocessor shared by the champion and the challenger, so both see identical inputs.

Output is a float64 numpy array: the numeric features (median-imputed, standardised) first, then
one ordinal code per categorical feature. An unseen or missing (NaN, None, pd.NA) category is
coded -1, whether it turns up at fit or at transform time. ``HistGradientBoostingClassifier``
reads -1 as missing and ``TorchTabularClassifier`` maps it to its reserved "unknown" embedding.

This module is plain scikit-learn and does not import Kedro.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, StandardScaler

from shadowdrift.value_types import category_text

# Both unseen and missing categories share this code; it must stay negative so that
# HistGradientBoosting reads it as missing rather than as a real category.
UNKNOWN_CATEGORY_CODE = -1


class FeaturePreprocessor(ColumnTransformer):
    """A ``ColumnTransformer`` that names the missing feature column(s) before sklearn fails.

    It adds no parameters, so ``get_params``, ``clone`` and pickling behave exactly as for
    ``ColumnTransformer``.
    """

    def fit(self, X: pd.DataFrame, y: Any = None, **params: Any) -> FeaturePreprocessor:
        _check_columns(X, self._declared_columns(), "fit")
        return super().fit(X, y, **params)

    def fit_transform(self, X: pd.DataFrame, y: Any = None, **params: Any) -> np.ndarray:
        _check_columns(X, self._declared_columns(), "fit")
        return super().fit_transform(X, y, **params)

    def transform(self, X: pd.DataFrame, **params: Any) -> np.ndarray:
        _check_columns(X, self._declared_columns(), "transform")
        return super().transform(X, **params)

    def _declared_columns(self) -> list[str]:
        return [column for _, _, columns in self.transformers for column in columns]


def _check_columns(X: Any, declared: Sequence[str], stage: str) -> None:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"The preprocessor selects features by name and needs a pandas DataFrame at {stage} "
            f"time, got {type(X).__name__}"
        )
    missing = [column for column in declared if column not in X.columns]
    if missing:
        raise ValueError(
            f"The DataFrame passed at {stage} time lacks the declared feature column(s): "
            f"{', '.join(missing)}"
        )


def missing_as_nan(X: Any) -> np.ndarray:
    """Categorical values as canonical text in an object array, every missing value as NaN.

    Validated records already hold canonical text (``shadowdrift.value_types``); a caller that
    passes a boolean or integer column (a notebook, a batch job) gets the same codes instead of
    "unknown". ``OrdinalEncoder`` only treats NaN as missing: a ``None`` seen at fit time (how
    pandas stores a blanked string) would otherwise become a category of its own.
    """
    values = np.asarray(X, dtype=object)
    missing = pd.isna(values)
    if infer_dtype(values[~missing], skipna=False) not in ("string", "empty"):
        flat = [_text_or_self(value) for value in values.ravel()]
        values = np.array(flat, dtype=object).reshape(values.shape)
    return np.where(missing, np.nan, values)


def _text_or_self(value: Any) -> Any:
    try:
        return category_text(value)
    except ValueError:
        return value  # no category of any kind: the encoder codes it as unknown


def build_preprocessor(
    numeric_features: Sequence[str], categorical_features: Sequence[str]
) -> ColumnTransformer:
    """The unfitted preprocessor: numeric columns first, then categorical codes, as numpy."""
    numeric = list(numeric_features)
    categorical = list(categorical_features)
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise ValueError(f"Features declared both numeric and categorical: {', '.join(overlap)}")
    numeric_pipeline = Pipeline(
        [
            # keep_empty_features keeps the column count fixed even if a column is all missing
            # in training, because the challenger relies on the first n columns being numeric.
            (
                "impute",
                SimpleImputer(strategy="median", add_indicator=False, keep_empty_features=True),
            ),
            ("scale", StandardScaler()),
        ]
    )
    categorical_encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=UNKNOWN_CATEGORY_CODE,
        encoded_missing_value=UNKNOWN_CATEGORY_CODE,
        dtype=np.float64,
    )
    categorical_pipeline = Pipeline(
        [
            (
                "missing_as_nan",
                FunctionTransformer(missing_as_nan, feature_names_out="one-to-one"),
            ),
            ("encode", categorical_encoder),
        ]
    )
    return FeaturePreprocessor(
        [
            ("numeric", numeric_pipeline, numeric),
            ("categorical", categorical_pipeline, categorical),
        ],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )


def categorical_mask(
    numeric_features: Sequence[str], categorical_features: Sequence[str]
) -> np.ndarray:
    """Boolean mask of the preprocessor's output columns that hold categorical codes.

    Pass it as ``HistGradientBoostingClassifier(categorical_features=mask)``.
    """
    return np.array(
        [False] * len(numeric_features) + [True] * len(categorical_features), dtype=bool
    )
