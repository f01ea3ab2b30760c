"""Score records without pandas: the fitted preprocessing and HistGradientBoosting in numpy.

Why: the logged model is a scikit-learn ``Pipeline`` that takes a pandas DataFrame. For one
record, the ``ColumnTransformer`` costs about 3 ms and ``HistGradientBoostingClassifier`` another
3 ms (its own internal ``ColumnTransformer`` plus one Python call per tree); the service's
budget for a whole request is 5 ms. This module rebuilds both from the *fitted* parameters:

* ``CompiledPreprocessor``: median imputation and standard scaling of the numeric features,
  ordinal codes of the categorical features (unknown or missing = -1), exactly as
  ``shadowdrift.preprocessing.build_preprocessor`` fitted them.
* ``CompiledHGB``: the estimator's internal re-encoding of categorical codes and its trees. A few
  rows go through a numpy walk of all trees at once; larger batches call scikit-learn's own
  compiled per-tree routine, skipping the per-call Python overhead.
* ``FastScorer``: a ``ChurnModel`` behind either path; anything it cannot compile (another
  preprocessor layout, another estimator) falls back to the model's own ``predict_probability``
  on a DataFrame, so serving never depends on the fast path being available.

Both compiled paths reproduce scikit-learn's results bit for bit (same float64 operations in
the same order); ``tests/test_serving_fast_path.py`` checks this on real and edge-case records.
They read fitted attributes of scikit-learn 1.9 (some private, e.g. ``_predictors``); the test
fails loudly if an upgrade changes them, and compilation raises ``UnsupportedModel`` (so the
scorer falls back) when an attribute is missing.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data

logger = logging.getLogger(__name__)

UNKNOWN_CODE = -1.0
# Below this many rows the numpy tree walk beats scikit-learn's per-tree loop (docs/serving.md).
DEFAULT_SMALL_BATCH = 8


class UnsupportedModel(Exception):
    """The fitted object does not have the layout this module reproduces."""


# One node of the flattened forest as the C kernel reads it (``_forest.c``, shadowdrift_node).
NODE_DTYPE = np.dtype(
    [
        ("threshold", np.float64),
        ("feature", np.int32),
        ("left", np.int32),
        ("right", np.int32),
        ("category_row", np.int16),
        ("missing_left", np.uint8),
        ("is_leaf", np.uint8),
    ]
)
KERNEL_C = "c"
KERNEL_NUMPY = "numpy"


def _load_forest_kernel() -> tuple[Any, str | None]:
    """The compiled ``shadowdrift_forest_raw``, or None and why (not built: no C compiler)."""
    spec = importlib.util.find_spec("shadowdrift.serving._forest")
    if spec is None or spec.origin is None:
        return None, "the C forest kernel is not built (pip install -e . needs a C compiler)"
    try:
        function = ctypes.CDLL(spec.origin).shadowdrift_forest_raw
    except (OSError, AttributeError) as exc:
        return None, f"the C forest kernel at {spec.origin} does not load: {exc}"
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    function.argtypes = [pointer, size, size, pointer, size, pointer, pointer, pointer]
    function.argtypes += [ctypes.c_double, pointer]
    function.restype = None
    return function, None


_FOREST_KERNEL, FOREST_KERNEL_MISSING = _load_forest_kernel()


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledPreprocessor:
    """The fitted numeric and categorical transformers of ``build_preprocessor`` as arrays.

    ``transform`` takes the numeric values as an ``(n, n_numeric)`` float64 array (NaN =
    missing) and the categorical values as one sequence of ``n`` values per feature (``None`` =
    missing), both in the order of ``numeric_features`` / ``categorical_features``.
    """

    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    fill: np.ndarray
    mean: np.ndarray | None
    scale: np.ndarray | None
    codes: tuple[dict[Any, float], ...]
    numeric_columns: np.ndarray
    categorical_columns: np.ndarray
    n_outputs: int

    @classmethod
    def from_fitted(cls, transformer: Any) -> CompiledPreprocessor:
        """Compile a fitted ``FeaturePreprocessor``; ``UnsupportedModel`` if it is laid out otherwise."""
        try:
            named = transformer.named_transformers_
            numeric_steps = named["numeric"].named_steps
            encoder, none_is_missing = _categorical_encoder(named["categorical"])
            columns = {name: list(cols) for name, _, cols in transformer.transformers_}
            output = transformer.output_indices_
        except (AttributeError, KeyError, TypeError) as exc:
            raise UnsupportedModel(f"not a fitted shadowdrift preprocessor: {exc}") from exc
        if set(numeric_steps) != {"impute", "scale"}:
            raise UnsupportedModel(f"unexpected numeric steps {list(numeric_steps)}")
        if any(name not in ("numeric", "categorical", "remainder") for name in columns):
            raise UnsupportedModel(f"unexpected transformers {list(columns)}")
        if getattr(transformer, "remainder", "drop") != "drop":
            raise UnsupportedModel("remainder columns are passed through")
        fill = _imputer_fill(numeric_steps["impute"], len(columns["numeric"]))
        mean, scale = _scaler_arrays(numeric_steps["scale"])
        codes = _ordinal_codes(encoder, none_is_missing=none_is_missing)
        numeric_columns = np.arange(output["numeric"].start, output["numeric"].stop)
        categorical_columns = np.arange(output["categorical"].start, output["categorical"].stop)
        if len(numeric_columns) != len(columns["numeric"]) or len(categorical_columns) != len(
            codes
        ):
            raise UnsupportedModel("output columns do not match the declared features")
        return cls(
            numeric_features=tuple(columns["numeric"]),
            categorical_features=tuple(columns["categorical"]),
            fill=fill,
            mean=mean,
            scale=scale,
            codes=codes,
            numeric_columns=numeric_columns,
            categorical_columns=categorical_columns,
            n_outputs=len(numeric_columns) + len(categorical_columns),
        )

    def transform(
        self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]
    ) -> np.ndarray:
        """The preprocessor's output for these records, as float64 ``(n, n_outputs)``."""
        n_rows = numeric.shape[0]
        out = np.empty((n_rows, self.n_outputs), dtype=np.float64)
        out[:, self.numeric_columns] = self.numeric_values(numeric)
        for values, column, mapping in zip(
            categorical, self.categorical_columns, self.codes, strict=True
        ):
            out[:, column] = _codes(mapping, values, UNKNOWN_CODE)
        return out

    def numeric_values(self, numeric: np.ndarray) -> np.ndarray:
        """Median-imputed, standardised numeric features."""
        values = numeric
        missing = np.isnan(values)
        if missing.any():
            values = np.where(missing, self.fill, values)
        # Same float64 operations, in the same order, as StandardScaler.transform (X -= mean_;
        # X /= scale_), so the results are identical, not just close.
        if self.mean is not None:
            values = values - self.mean
        if self.scale is not None:
            values = values / self.scale
        return values


def _codes(mapping: dict[Any, float], values: Sequence[Any], default: float) -> np.ndarray:
    """``mapping[value]`` per value, ``default`` for a value it does not have (a C-level loop)."""
    return np.fromiter(
        map(mapping.get, values, repeat(default)), dtype=np.float64, count=len(values)
    )


def _imputer_fill(imputer: Any, n_features: int) -> np.ndarray:
    statistics = getattr(imputer, "statistics_", None)
    if statistics is None or getattr(imputer, "add_indicator", False):
        raise UnsupportedModel("the numeric imputer is not fitted or adds indicator columns")
    missing_values = imputer.missing_values
    if not (isinstance(missing_values, float) and math.isnan(missing_values)):
        raise UnsupportedModel(f"the imputer treats {missing_values!r} as missing, not NaN")
    fill = np.asarray(statistics, dtype=np.float64)
    if fill.shape != (n_features,) or np.isnan(fill).any():
        # keep_empty_features=False would drop all-missing columns and shift the layout
        raise UnsupportedModel("the imputer dropped a feature or has no fill value for it")
    return fill


def _scaler_arrays(scaler: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not hasattr(scaler, "n_features_in_"):
        raise UnsupportedModel("the scaler is not fitted")
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    return (
        None if mean is None else np.asarray(mean, dtype=np.float64),
        None if scale is None else np.asarray(scale, dtype=np.float64),
    )


def _categorical_encoder(transformer: Any) -> tuple[Any, bool]:
    """The fitted ``OrdinalEncoder`` and whether ``None`` reaches it as NaN (i.e. as missing).

    Two layouts: ``Pipeline([missing_as_nan, encode])`` (current) and a bare ``OrdinalEncoder``
    (models trained before ``missing_as_nan`` existed), where ``None`` is a value of its own.
    """
    steps = getattr(transformer, "named_steps", None)
    if steps is None:
        if type(transformer).__name__ != "OrdinalEncoder":
            raise UnsupportedModel(
                f"unexpected categorical transformer {type(transformer).__name__}"
            )
        return transformer, False
    if set(steps) != {"missing_as_nan", "encode"}:
        raise UnsupportedModel(f"unexpected categorical steps {list(steps)}")
    return steps["encode"], True


def _ordinal_codes(encoder: Any, *, none_is_missing: bool) -> tuple[dict[Any, float], ...]:
    """Per feature: category -> code. ``None`` maps to its own code when the encoder saw it."""
    if (
        getattr(encoder, "handle_unknown", None) != "use_encoded_value"
        or encoder.unknown_value != UNKNOWN_CODE
        or encoder.encoded_missing_value != UNKNOWN_CODE
        or getattr(encoder, "_infrequent_enabled", False)
    ):
        raise UnsupportedModel("the ordinal encoder does not code unknown/missing as -1")
    codes = []
    for categories in encoder.categories_:
        mapping: dict[Any, float] = {}
        for code, value in enumerate(categories):
            if isinstance(value, str):
                mapping[value] = float(code)
            elif value is None and not none_is_missing:
                mapping[None] = float(code)
            elif isinstance(value, float) and math.isnan(value):
                if not none_is_missing:
                    # a bare encoder may or may not equate None with a NaN category
                    raise UnsupportedModel("a NaN category without missing_as_nan")
            elif value is not None:
                raise UnsupportedModel(f"non-string category {value!r}")
        codes.append(mapping)
    return tuple(codes)


# --------------------------------------------------------------------------------------------
# HistGradientBoosting
# --------------------------------------------------------------------------------------------


def _bit(bitsets: np.ndarray, row: int, value: int) -> bool:
    return bool((int(bitsets[row, value // 32]) >> (value % 32)) & 1)


class CompiledHGB:
    """A fitted binary ``HistGradientBoostingClassifier`` as flat arrays.

    ``predict_proba1`` returns P(class 1) for a float64 matrix laid out like the estimator's
    input (here: the preprocessor's output).
    """

    def __init__(
        self,
        estimator: Any,
        *,
        small_batch: int = DEFAULT_SMALL_BATCH,
        n_threads: int = 1,
        use_c_kernel: bool = True,
    ):
        try:
            predictors = estimator._predictors
            baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64)
            known_bitsets, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
            self._inverse_link = estimator._loss.link.inverse
        except AttributeError as exc:
            raise UnsupportedModel(f"not a fitted HistGradientBoostingClassifier: {exc}") from exc
        if estimator.n_trees_per_iteration_ != 1 or baseline.shape != (1, 1):
            raise UnsupportedModel("only binary classification (one tree per iteration)")
        self._cython_predict = _predict_from_raw_data
        self.small_batch = small_batch
        self.n_threads = n_threads
        self.n_features = int(estimator.n_features_in_)
        self.baseline = float(baseline[0, 0])
        self._input_layout(estimator)
        self._trees = [(p[0].nodes, p[0].raw_left_cat_bitsets) for p in predictors]
        self._known_bitsets = known_bitsets
        self._f_idx_map = f_idx_map
        self._flatten(known_bitsets, f_idx_map)
        # "c": every batch size in one GIL-free call; "numpy": the walk for a few rows and
        # scikit-learn's per-tree routine for more (the same numbers, slower on batches)
        self._kernel = None
        self.kernel_missing = FOREST_KERNEL_MISSING if use_c_kernel else "switched off"
        if use_c_kernel and _FOREST_KERNEL is not None:
            try:
                self._node_records()
                self._kernel = _FOREST_KERNEL
            except UnsupportedModel as exc:
                self.kernel_missing = str(exc)
        self.kernel = KERNEL_C if self._kernel is not None else KERNEL_NUMPY

    # -- layout ----------------------------------------------------------------------------

    def _input_layout(self, estimator: Any) -> None:
        """How to turn an input row into the estimator's internal row (categoricals re-coded first)."""
        preprocessor = getattr(estimator, "_preprocessor", None)
        if preprocessor is None:
            self._order = np.arange(self.n_features)
            self._categories: list[tuple[int, np.ndarray]] = []
            return
        try:
            encoder = preprocessor.named_transformers_["encoder"]
            output = preprocessor.output_indices_
            is_categorical = np.asarray(estimator.is_categorical_, dtype=bool)
        except (AttributeError, KeyError) as exc:
            raise UnsupportedModel(f"unexpected internal preprocessor: {exc}") from exc
        unknown = encoder.unknown_value
        if not (isinstance(unknown, float) and math.isnan(unknown)):
            raise UnsupportedModel("the internal encoder does not map unknowns to NaN")
        categorical_inputs = np.flatnonzero(is_categorical)
        numeric_inputs = np.flatnonzero(~is_categorical)
        order = np.empty(self.n_features, dtype=np.intp)
        order[output["encoder"]] = categorical_inputs
        order[output["numerical"]] = numeric_inputs
        self._order = order
        self._categories = []
        for position, categories in zip(
            range(output["encoder"].start, output["encoder"].stop), encoder.categories_, strict=True
        ):
            values = np.asarray(categories, dtype=np.float64)
            known = values[~np.isnan(values)]
            if not np.all(np.diff(known) > 0):
                raise UnsupportedModel("internal categories are not sorted")
            self._categories.append((position, known))

    def _flatten(self, known_bitsets: np.ndarray, f_idx_map: np.ndarray) -> None:
        """Concatenate all trees' nodes; leaves point at themselves so a walk can overshoot."""
        offsets = np.cumsum([0] + [len(nodes) for nodes, _ in self._trees])
        nodes = np.concatenate([nodes for nodes, _ in self._trees])
        n_nodes = len(nodes)
        tree_of = np.repeat(np.arange(len(self._trees)), np.diff(offsets))
        own = np.arange(n_nodes)
        is_leaf = nodes["is_leaf"].astype(bool)
        self.roots = offsets[:-1].astype(np.intp)
        self.feature = np.where(is_leaf, 0, nodes["feature_idx"]).astype(np.intp)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.left = np.where(is_leaf, own, nodes["left"].astype(np.intp) + offsets[tree_of])
        self.right = np.where(is_leaf, own, nodes["right"].astype(np.intp) + offsets[tree_of])
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.value = nodes["value"].astype(np.float64)
        self.is_leaf = is_leaf
        self.is_categorical = nodes["is_categorical"].astype(bool) & ~is_leaf
        self.max_depth = int(nodes["depth"].max())
        categorical_nodes = np.flatnonzero(self.is_categorical)
        self.categorical_nodes = categorical_nodes
        self._category_rows = np.arange(len(categorical_nodes))
        # go_left[row, v] for category code v (0..255), mirroring _predict_one_from_raw_data:
        # left if in the node's left bitset; right if a known category; else as missing.
        table = np.zeros((max(len(categorical_nodes), 1), 256), dtype=bool)
        for row, node in enumerate(categorical_nodes):
            tree = tree_of[node]
            left_bits = self._trees[tree][1]
            bitset = int(nodes["bitset_idx"][node])
            known_row = int(f_idx_map[nodes["feature_idx"][node]])
            for value in range(256):
                if _bit(left_bits, bitset, value):
                    table[row, value] = True
                elif _bit(known_bitsets, known_row, value):
                    table[row, value] = False
                else:
                    table[row, value] = self.missing_left[node]
        self.category_table = table

    def _node_records(self) -> None:
        """The flattened forest as ``NODE_DTYPE`` records and the raw pointers the kernel takes."""
        n_nodes = len(self.feature)
        if n_nodes >= 2**31 or len(self.categorical_nodes) >= 2**15:
            raise UnsupportedModel("the forest is too large for the C kernel's 32-bit indexes")
        category_row = np.full(n_nodes, -1, dtype=np.int16)
        category_row[self.categorical_nodes] = np.arange(len(self.categorical_nodes))
        nodes = np.zeros(n_nodes, dtype=NODE_DTYPE)
        nodes["threshold"] = self.threshold
        nodes["feature"] = self.feature
        nodes["left"] = self.left
        nodes["right"] = self.right
        nodes["category_row"] = category_row
        nodes["missing_left"] = self.missing_left
        nodes["is_leaf"] = self.is_leaf
        self._c_nodes = nodes
        self._c_roots = self.roots.astype(np.int32)
        self._c_table = np.ascontiguousarray(self.category_table, dtype=np.uint8)
        self._c_value = np.ascontiguousarray(self.value, dtype=np.float64)
        # the arrays above live as long as this object, so their addresses stay valid
        self._c_arguments = (
            self._c_roots.ctypes.data,
            len(self._c_roots),
            nodes.ctypes.data,
            self._c_table.ctypes.data,
            self._c_value.ctypes.data,
            self.baseline,
        )

    # -- prediction ------------------------------------------------------------------------

    def internal(self, X: np.ndarray) -> np.ndarray:
        """Inputs in the estimator's internal layout: categorical codes re-coded, placed first."""
        internal = np.ascontiguousarray(X[:, self._order], dtype=np.float64)
        for position, known in self._categories:
            internal[:, position] = recode(known, internal[:, position])
        return internal

    def internal_position(self, input_column: int) -> int:
        """Where input column ``input_column`` sits in the internal layout."""
        return int(np.flatnonzero(self._order == input_column)[0])

    def known_categories(self, input_column: int) -> np.ndarray | None:
        """The sorted codes the internal encoder knows for a categorical input column."""
        position = self.internal_position(input_column)
        for candidate, known in self._categories:
            if candidate == position:
                return known
        return None

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds), as the estimator's ``_raw_predict`` computes them."""
        return self.raw_internal(self.internal(X))

    def raw_internal(self, internal: np.ndarray) -> np.ndarray:
        if self._kernel is not None:
            return self._c_forest(internal)
        if internal.shape[0] <= self.small_batch:
            return self._walk(internal)
        return self._per_tree(internal)

    def predict_proba1(self, X: np.ndarray) -> np.ndarray:
        return self._inverse_link(self.raw(X))

    def proba_internal(self, internal: np.ndarray) -> np.ndarray:
        return self._inverse_link(self.raw_internal(internal))

    def _c_forest(self, internal: np.ndarray) -> np.ndarray:
        internal = np.ascontiguousarray(internal, dtype=np.float64)
        n_rows, n_features = internal.shape
        if n_features != self.n_features:
            raise ValueError(f"expected {self.n_features} internal columns, got {n_features}")
        out = np.empty(n_rows, dtype=np.float64)
        roots, n_trees, nodes, table, value, baseline = self._c_arguments
        self._kernel(
            internal.ctypes.data, n_rows, n_features, roots, n_trees, nodes, table, value,
            baseline, out.ctypes.data,
        )  # fmt: skip
        return out

    def _per_tree(self, internal: np.ndarray) -> np.ndarray:
        raw = np.full(internal.shape[0], self.baseline)
        out = np.empty(internal.shape[0], dtype=np.float64)
        for nodes, left_bits in self._trees:
            self._cython_predict(
                nodes,
                internal,
                left_bits,
                self._known_bitsets,
                self._f_idx_map,
                self.n_threads,
                out,
            )
            raw += out
        return raw

    def _walk(self, internal: np.ndarray) -> np.ndarray:
        """Decide every node of the forest for each row at once, then follow the decisions.

        For a handful of rows this is a few vectorised passes over all nodes plus ``max_depth``
        gathers, instead of one Python-level call per tree.
        """
        n_rows = internal.shape[0]
        value = internal[:, self.feature]
        go_left = value <= self.threshold
        missing = np.isnan(value)
        if self.categorical_nodes.size:
            codes = value[:, self.categorical_nodes]
            negative = codes < 0
            usable = np.where(negative | np.isnan(codes), 0.0, codes)
            # _predict_one_from_raw_data casts the code to uint8 and treats < 0 as missing
            lookup = usable.astype(np.intp) & 255
            decision = self.category_table[self._category_rows, lookup]
            go_left[:, self.categorical_nodes] = np.where(
                negative, self.missing_left[self.categorical_nodes], decision
            )
        if missing.any():
            go_left = np.where(missing, self.missing_left, go_left)
        following = np.where(go_left, self.left, self.right)
        if n_rows == 1:
            node = self.roots
            step = following[0]
            for _ in range(self.max_depth):
                node = step[node]
            leaves = self.value[node][None, :]
        else:
            rows = np.arange(n_rows)[:, None]
            node = np.broadcast_to(self.roots, (n_rows, len(self.roots)))
            for _ in range(self.max_depth):
                node = following[rows, node]
            leaves = self.value[node]
        # scikit-learn adds tree by tree onto the baseline; a cumulative sum keeps that order.
        start = np.full((n_rows, 1), self.baseline)
        return np.cumsum(np.concatenate([start, leaves], axis=1), axis=1)[:, -1]


def recode(known: np.ndarray, column: np.ndarray) -> np.ndarray:
    """Position of each value in the sorted ``known`` codes, NaN where absent (HGB's encoder)."""
    index = np.searchsorted(known, column)
    clipped = np.minimum(index, len(known) - 1)
    return np.where(known[clipped] == column, index, np.nan)


class FusedHGBInput:
    """Validated records straight into a ``CompiledHGB``'s internal layout.

    Composes the preprocessor (imputation, scaling, ordinal codes) with the estimator's own
    re-coding and column order, so a record goes from strings and numbers to the trees'
    input in one step: category string -> preprocessor code -> internal code is a single
    dictionary lookup with the same result as the two steps.
    """

    def __init__(self, preprocessor: CompiledPreprocessor, hgb: CompiledHGB) -> None:
        if preprocessor.n_outputs != hgb.n_features:
            raise UnsupportedModel(
                f"preprocessor gives {preprocessor.n_outputs} columns, trees take {hgb.n_features}"
            )
        self.preprocessor = preprocessor
        self.n_features = hgb.n_features
        self.numeric_positions = np.array(
            [hgb.internal_position(int(c)) for c in preprocessor.numeric_columns], dtype=np.intp
        )
        self.categorical: list[tuple[int, dict[str, float], float]] = []
        for column, mapping in zip(
            preprocessor.categorical_columns, preprocessor.codes, strict=True
        ):
            known = hgb.known_categories(int(column))
            if known is None:  # the trees treat this code as a number
                fused, default = dict(mapping), UNKNOWN_CODE
            else:
                codes = np.array([*mapping.values(), UNKNOWN_CODE], dtype=np.float64)
                internal = recode(known, codes).tolist()
                fused = dict(zip(mapping, internal[:-1], strict=True))
                default = internal[-1]
            self.categorical.append((hgb.internal_position(int(column)), fused, default))

    def transform(
        self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]
    ) -> np.ndarray:
        out = np.empty((numeric.shape[0], self.n_features), dtype=np.float64)
        out[:, self.numeric_positions] = self.preprocessor.numeric_values(numeric)
        for values, (position, fused, default) in zip(categorical, self.categorical, strict=True):
            out[:, position] = _codes(fused, values, default)
        return out


# --------------------------------------------------------------------------------------------
# A ChurnModel behind the fast path
# --------------------------------------------------------------------------------------------


class FastScorer:
    """Churn probabilities of a ``ChurnModel`` from validated arrays, by the fastest exact path.

    ``numeric`` (``(n, n_numeric)`` float64, NaN = missing) and ``categorical`` (one list of
    ``n`` values per feature, None = missing) come in the *schema's* feature order
    (``schema_numeric``, ``schema_categorical``); the scorer reorders them for the model. ``path`` says which path is
    in use: ``compiled-hgb`` (numpy preprocessing and trees), ``compiled-preprocessing``
    (numpy preprocessing, then the estimator on the array) or ``pipeline`` (the model's own
    DataFrame path). For ``compiled-hgb``, ``kernel`` says how the trees are walked: ``c``
    (``_forest.c``, one GIL-free call) or ``numpy`` (no compiled kernel; ``kernel_missing``
    says why).
    """

    def __init__(
        self,
        model: Any,
        schema_numeric: Sequence[str],
        schema_categorical: Sequence[str],
        *,
        enabled: bool = True,
        small_batch: int = DEFAULT_SMALL_BATCH,
        n_threads: int = 1,
        c_kernel: bool = True,
    ) -> None:
        self.model = model
        self.threshold = float(model.threshold)
        self.schema_numeric = list(schema_numeric)
        self.schema_categorical = list(schema_categorical)
        missing = [
            name
            for name in (*model.numeric_features, *model.categorical_features)
            if name not in self.schema_numeric and name not in self.schema_categorical
        ]
        if missing:
            raise ValueError(
                f"model {model.name!r} needs feature(s) {missing} that the schema does not declare"
            )
        self._preprocessor: CompiledPreprocessor | None = None
        self._hgb: CompiledHGB | None = None
        self._hgb_input: FusedHGBInput | None = None
        self._estimator: Any = None
        self.path = "pipeline"
        self.fallback_reason: str | None = None
        self._c_kernel = c_kernel
        if enabled:
            self._compile(small_batch, n_threads)
        else:
            self.fallback_reason = "serving.single_record_fast_path is false"

    def _compile(self, small_batch: int, n_threads: int) -> None:
        try:
            preprocessor = CompiledPreprocessor.from_fitted(self.model.pipeline[0])
            self._numeric_order = self._positions(
                preprocessor.numeric_features, self.schema_numeric, "numeric"
            )
            self._categorical_order = self._positions(
                preprocessor.categorical_features, self.schema_categorical, "categorical"
            )
            estimator = self.model.pipeline[-1]
            if len(self.model.pipeline) != 2:
                raise UnsupportedModel("the pipeline has more than preprocessing + estimator")
        except (UnsupportedModel, AttributeError, TypeError, IndexError) as exc:
            self.fallback_reason = str(exc) or type(exc).__name__
            logger.warning("Model %s: no fast path (%s)", self.model.name, exc)
            return
        self._preprocessor = preprocessor
        if type(estimator).__name__ == "HistGradientBoostingClassifier":
            try:
                self._hgb = CompiledHGB(
                    estimator,
                    small_batch=small_batch,
                    n_threads=n_threads,
                    use_c_kernel=self._c_kernel,
                )
                self._hgb_input = FusedHGBInput(preprocessor, self._hgb)
                self.path = "compiled-hgb"
                return
            except UnsupportedModel as exc:
                logger.warning("Model %s: trees not compiled (%s)", self.model.name, exc)
        self._estimator = estimator
        self.path = "compiled-preprocessing"

    @staticmethod
    def _positions(wanted: Sequence[str], available: list[str], kind: str) -> list[int] | None:
        """Indexes of ``wanted`` in ``available``; None when they are the same order already."""
        try:
            positions = [available.index(name) for name in wanted]
        except ValueError as exc:
            raise UnsupportedModel(
                f"a {kind} feature of the model is not {kind} in the schema"
            ) from exc
        return None if positions == list(range(len(available))) else positions

    @property
    def kernel(self) -> str | None:
        """How the trees are walked (``c`` or ``numpy``); None when no trees are compiled."""
        return self._hgb.kernel if self._hgb is not None else None

    @property
    def releases_gil(self) -> bool:
        """Whether scoring spends its time without the GIL (the C forest kernel).

        Only then is a batch worth a thread of its own: torch's many small calls on an MLP
        re-take the GIL between operations and were slower on a thread (docs/serving.md).
        """
        return self.kernel == KERNEL_C

    @property
    def kernel_missing(self) -> str | None:
        """Why the trees are not walked by the C kernel, if they are compiled at all."""
        return self._hgb.kernel_missing if self._hgb is not None else None

    def preprocess(
        self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]
    ) -> np.ndarray:
        """The fitted preprocessing of the records (fast path only)."""
        assert self._preprocessor is not None
        numeric, categorical = self._model_order(numeric, categorical)
        return self._preprocessor.transform(numeric, categorical)

    def _model_order(
        self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]
    ) -> tuple[np.ndarray, Sequence[Sequence[str | None]]]:
        if self._numeric_order is not None:
            numeric = numeric[:, self._numeric_order]
        if self._categorical_order is not None:
            categorical = [categorical[i] for i in self._categorical_order]
        return numeric, categorical

    def predict_probability(
        self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]
    ) -> np.ndarray:
        """P(positive class) per record, float64."""
        if self._preprocessor is None:
            return np.asarray(
                self.model.predict_probability(self.frame(numeric, categorical)), dtype=np.float64
            )
        if self._hgb is not None and self._hgb_input is not None:
            numeric, categorical = self._model_order(numeric, categorical)
            return self._hgb.proba_internal(self._hgb_input.transform(numeric, categorical))
        features = self.preprocess(numeric, categorical)
        return np.asarray(self._estimator.predict_proba(features)[:, 1], dtype=np.float64)

    def frame(self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]) -> Any:
        """The records as the DataFrame the model's own pipeline takes."""
        frame = pd.DataFrame(numeric, columns=self.schema_numeric)
        for name, values in zip(self.schema_categorical, categorical, strict=True):
            frame[name] = pd.Series(values, dtype=object)
        return frame

    def labels(self, probability: np.ndarray) -> np.ndarray:
        """Labels at the model's threshold, as ``ChurnModel.predict`` computes them."""
        return (probability >= self.threshold).astype(np.int64)
