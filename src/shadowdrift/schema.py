"""The data schema: parsed from configuration, enforced with pandera.

The schema (id, timestamp, target and its positive class, numeric and categorical features with
ranges and allowed values) lives in ``conf/<env>/parameters.yml`` under ``schema``. ``parse_schema`` turns that
mapping into a ``DataSchema`` and fails with a message naming the offending key when the
configuration itself is malformed; ``validate_frame`` checks a DataFrame against it and fails
with a message naming the column, the rule and a few offending rows. Categorical values and the
target are brought to one form on the way (``value_types``): categories as canonical text,
labels as 0/1.

Plain Python: importable without Kedro (the service validates requests with the same schema).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from shadowdrift.value_types import (
    KIND_RULE_PREFIX,
    STRING,
    categories_as_text,
    category_text,
    describe_values,
    is_text_of_kind,
    kind_rule,
    labels_as_binary,
    target_classes_problem,
    value_kind,
)

logger = logging.getLogger(__name__)

_NUMERIC_KEYS = {"dtype", "min", "max", "nullable", "description"}
_CATEGORICAL_KEYS = {"values", "nullable", "description"}
_TOP_KEYS = {"id", "timestamp", "target", "positive_class", "numeric", "categorical"}
_NUMERIC_DTYPES = {"int", "float"}


class SchemaConfigError(ValueError):
    """The schema configuration itself is malformed; the message names the key."""


class DataValidationError(ValueError):
    """A dataset violates the schema; the message names column, rule and offending rows."""

    def __init__(self, message: str, failure_cases: pd.DataFrame | None = None):
        super().__init__(message)
        self.failure_cases = failure_cases


@dataclass(frozen=True)
class NumericFeature:
    name: str
    dtype: str = "float"
    min: float | None = None
    max: float | None = None
    nullable: bool = False


@dataclass(frozen=True)
class CategoricalFeature:
    """``values`` are the allowed values as canonical text; ``kind`` is their configured type."""

    name: str
    values: tuple[str, ...]
    nullable: bool = False
    kind: str = STRING

    def describe(self) -> str:
        return describe_values(self.kind, self.values)


@dataclass(frozen=True)
class DataSchema:
    id: str
    timestamp: str
    target: str
    numeric: tuple[NumericFeature, ...] = field(default_factory=tuple)
    categorical: tuple[CategoricalFeature, ...] = field(default_factory=tuple)
    # the target value the model predicts; None: the target is 0/1 or true/false
    positive_class: Any = None

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.categorical]

    @property
    def features(self) -> list[str]:
        return self.numeric_features + self.categorical_features

    @property
    def columns(self) -> list[str]:
        return [self.id, self.timestamp, *self.features, self.target]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require_mapping(value: Any, key: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise SchemaConfigError(f"{key} must be a mapping, got {type(value).__name__}: {value!r}")
    return value


def _require_name(config: Mapping, key: str, prefix: str) -> str:
    if key not in config:
        raise SchemaConfigError(f"{prefix}.{key} is missing: name the {key} column")
    value = config[key]
    if not isinstance(value, str) or not value:
        raise SchemaConfigError(f"{prefix}.{key} must be a column name, got {value!r}")
    return value


def _unknown_keys(spec: Mapping, allowed: set[str], key: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SchemaConfigError(
            f"{key}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _parse_nullable(spec: Mapping, key: str) -> bool:
    value = spec.get("nullable", False)
    if not isinstance(value, bool):
        raise SchemaConfigError(f"{key}.nullable must be true or false, got {value!r}")
    return value


def _parse_numeric(name: str, spec: Any, prefix: str) -> NumericFeature:
    key = f"{prefix}.numeric.{name}"
    spec = _require_mapping(spec if spec is not None else {}, key)
    _unknown_keys(spec, _NUMERIC_KEYS, key)
    dtype = spec.get("dtype", "float")
    if dtype not in _NUMERIC_DTYPES:
        raise SchemaConfigError(
            f"{key}.dtype must be one of {sorted(_NUMERIC_DTYPES)}, got {dtype!r}"
        )
    bounds = {}
    for bound in ("min", "max"):
        value = spec.get(bound)
        if value is not None and not _is_number(value):
            raise SchemaConfigError(f"{key}.{bound} must be a finite number, got {value!r}")
        bounds[bound] = value
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        raise SchemaConfigError(
            f"{key}: min ({bounds['min']}) is greater than max ({bounds['max']})"
        )
    return NumericFeature(name, dtype, bounds["min"], bounds["max"], _parse_nullable(spec, key))


def _parse_categorical(name: str, spec: Any, prefix: str) -> CategoricalFeature:
    key = f"{prefix}.categorical.{name}"
    spec = _require_mapping(spec, key)
    _unknown_keys(spec, _CATEGORICAL_KEYS, key)
    values = spec.get("values")
    if not isinstance(values, list | tuple) or not values:
        raise SchemaConfigError(
            f"{key}.values must be a non-empty list of allowed values, got {values!r}"
        )
    kinds = {value_kind(v) for v in values}
    if None in kinds or len(kinds) > 1:
        raise SchemaConfigError(
            f"{key}.values must all be of one type: strings, booleans or integers, got {values!r}"
        )
    (kind,) = kinds
    texts = tuple(category_text(v) for v in values)
    if len(set(texts)) != len(texts):
        raise SchemaConfigError(f"{key}.values lists a value twice: {values!r}")
    return CategoricalFeature(name, texts, _parse_nullable(spec, key), kind)


def parse_schema(config: Any, prefix: str = "schema") -> DataSchema:
    """Build a ``DataSchema`` from configuration, failing with the offending key's name."""
    config = _require_mapping(config, prefix)
    _unknown_keys(config, _TOP_KEYS, prefix)
    id_col = _require_name(config, "id", prefix)
    ts_col = _require_name(config, "timestamp", prefix)
    target = _require_name(config, "target", prefix)
    numeric_cfg = _require_mapping(config.get("numeric") or {}, f"{prefix}.numeric")
    categorical_cfg = _require_mapping(config.get("categorical") or {}, f"{prefix}.categorical")
    if not numeric_cfg and not categorical_cfg:
        raise SchemaConfigError(
            f"{prefix}: declare at least one feature under numeric or categorical"
        )
    numeric = tuple(_parse_numeric(n, s, prefix) for n, s in numeric_cfg.items())
    categorical = tuple(_parse_categorical(n, s, prefix) for n, s in categorical_cfg.items())
    positive_class = config.get("positive_class")
    if positive_class is not None and value_kind(positive_class) is None:
        raise SchemaConfigError(
            f"{prefix}.positive_class must be a string, a boolean or an integer (the target "
            f"value the model predicts), got {positive_class!r}"
        )
    names = [id_col, ts_col, target, *numeric_cfg, *categorical_cfg]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SchemaConfigError(f"{prefix}: column {name!r} is declared more than once")
        seen.add(name)
    return DataSchema(id_col, ts_col, target, numeric, categorical, positive_class)


def _numeric_column(feature: NumericFeature, *, allow_nulls: bool) -> pa.Column:
    checks = []
    if feature.min is not None:
        checks.append(pa.Check.ge(feature.min))
    if feature.max is not None:
        checks.append(pa.Check.le(feature.max))
    # Nullable integers arrive as floats; the integer check then is on the non-null values.
    nullable = feature.nullable or allow_nulls
    dtype = "int64" if feature.dtype == "int" and not nullable else "float64"
    if feature.dtype == "int" and nullable:
        checks.append(
            pa.Check(lambda s: s.dropna() % 1 == 0, element_wise=False, name="is_integer")
        )
    return pa.Column(dtype, checks=checks, nullable=nullable, coerce=True)


def utc_naive(times: pd.Series) -> pd.Series:
    """Timestamps as naive UTC: aware ones converted, ISO text parsed; others left for coercion
    to refuse. Naive timestamps are taken to be UTC already (the prediction log stores UTC)."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        return times.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_object_dtype(times.dtype) or pd.api.types.is_string_dtype(times.dtype):
        try:
            return pd.to_datetime(times, utc=True, format="ISO8601").dt.tz_localize(None)
        except (TypeError, ValueError):
            return times
    return times


def _categorical_column(
    feature: CategoricalFeature, *, allow_unseen: bool, allow_nulls: bool
) -> pa.Column:
    """Values of the feature's kind become canonical text; other kinds fail a named rule."""
    checks = [
        pa.Check(
            lambda s, kind=feature.kind: is_text_of_kind(s, kind),
            name=kind_rule(feature.kind, feature.values),
        )
    ]
    if not allow_unseen:
        checks.append(pa.Check.isin(list(feature.values)))
    return pa.Column(
        None,
        checks=checks,
        parsers=[pa.Parser(lambda s, kind=feature.kind: categories_as_text(s, kind))],
        nullable=feature.nullable or allow_nulls,
        coerce=False,
    )


def build_pandera_schema(
    schema: DataSchema,
    *,
    require_target: bool = True,
    allow_unseen_categories: bool = False,
    allow_nulls: bool = False,
) -> pa.DataFrameSchema:
    """A pandera schema for a labelled table (or, relaxed, for production records)."""
    columns: dict[str, pa.Column] = {
        schema.id: pa.Column(nullable=False, unique=True),
        schema.timestamp: pa.Column(
            "datetime64[ns]", parsers=[pa.Parser(utc_naive)], nullable=False, coerce=True
        ),
    }
    for feature in schema.numeric:
        columns[feature.name] = _numeric_column(feature, allow_nulls=allow_nulls)
    for feature in schema.categorical:
        columns[feature.name] = _categorical_column(
            feature, allow_unseen=allow_unseen_categories, allow_nulls=allow_nulls
        )
    columns[schema.target] = pa.Column(
        "int8",
        checks=[pa.Check.isin([0, 1])],
        parsers=[pa.Parser(lambda s: labels_as_binary(s, schema.positive_class))],
        nullable=False,
        coerce=True,
        required=require_target,
    )
    return pa.DataFrameSchema(columns, strict=False, name="schema")


def _plain(value: Any) -> Any:
    """numpy scalars print as ``np.int64(3)``; users want ``3``."""
    return value.item() if hasattr(value, "item") else value


# Rules whose failure makes every later rule of the column fail too: a value that cannot be
# coerced, or a category of another type than the schema's.
ROOT_RULES = ("coerce_dtype", KIND_RULE_PREFIX)


def _drop_cascading_failures(failures: pd.DataFrame) -> pd.DataFrame:
    """A value of the wrong type also fails every later check; report the type rule only."""
    checks = failures["check"].astype(str)
    uncoercible = set(failures.loc[checks.str.startswith((*ROOT_RULES, "dtype(")), "column"])
    keep = ~failures["column"].isin(uncoercible) | checks.str.startswith(ROOT_RULES)
    if not keep.any():
        return failures
    return failures[keep]


def missing_column_line(column: str) -> str:
    """One line of a validation message: a required column is absent."""
    return f"  - required column {column!r} is missing"


def failed_rule_line(column: Any, check: Any, n_rows: int, examples: list[str]) -> str:
    """One line of a validation message: a rule broken in ``n_rows`` rows, with examples."""
    rows = "row" if n_rows == 1 else "rows"
    return f"  - column {column!r} failed rule {check!r} in {n_rows} {rows}; e.g. " + "; ".join(
        examples
    )


def validation_message(dataset: str, lines: list[str]) -> str:
    """The text of ``DataValidationError`` (the same on the pandas and the Dask path)."""
    return f"{dataset} does not match the schema ({len(lines)} problem(s)):\n" + "\n".join(lines)


def _format_failures(
    dataset: str, failures: pd.DataFrame, frame: pd.DataFrame, id_col: str, max_rows: int
) -> str:
    failures = _drop_cascading_failures(failures)
    missing = failures["check"] == "column_in_dataframe"
    lines = [missing_column_line(column) for column in failures.loc[missing, "failure_case"]]
    groups = failures[~missing].groupby(["column", "check"], sort=False, dropna=False)
    for (column, check), group in groups:
        examples = []
        for _, row in group.head(max_rows).iterrows():
            index = row["index"]
            value = _plain(row["failure_case"])
            if pd.notna(index) and index in frame.index and id_col in frame.columns:
                examples.append(
                    f"row {index} ({id_col}={_plain(frame.at[index, id_col])!r}): {value!r}"
                )
            elif pd.notna(index):
                examples.append(f"row {index}: {value!r}")
            else:
                examples.append(repr(value))
        lines.append(failed_rule_line(column, check, len(group), examples))
    return validation_message(dataset, lines)


def validate_frame(
    frame: pd.DataFrame,
    schema: DataSchema,
    dataset: str,
    *,
    require_target: bool = True,
    allow_unseen_categories: bool = False,
    allow_nulls: bool = False,
    max_examples: int = 5,
) -> pd.DataFrame:
    """Validate and coerce ``frame``; raise ``DataValidationError`` listing every violation."""
    pandera_schema = build_pandera_schema(
        schema,
        require_target=require_target,
        allow_unseen_categories=allow_unseen_categories,
        allow_nulls=allow_nulls,
    )
    if frame.empty:
        raise DataValidationError(f"{dataset} is empty: there are no rows to validate")
    if require_target and schema.target in frame.columns:
        check_target_classes(frame[schema.target].unique(), schema, dataset)
    try:
        return pandera_schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        failures = exc.failure_cases
        message = _format_failures(dataset, failures, frame, schema.id, max_examples)
        raise DataValidationError(message, failures) from None


def check_target_classes(values: Any, schema: DataSchema, dataset: str) -> None:
    """Refuse a target that is not a binary label under ``schema.positive_class``."""
    problem = target_classes_problem(list(values), schema.target, schema.positive_class)
    if problem is not None:
        raise DataValidationError(validation_message(dataset, [f"  - {problem}"]))
