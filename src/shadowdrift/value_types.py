"""How the values in a user's file meet the schema's types: categories as text, labels as 0/1.

A categorical feature may arrive as strings, booleans, integer codes or a pandas category, from
parquet or CSV (where an integer column with gaps reads as floats), and the schema lists its
allowed values in their own type: ``[a, b]``, ``[true, false]`` or ``[1, 2, 3]``. That type is
the feature's *kind*. Past validation every categorical value is its *canonical text*, one
spelling per value: ``"true"`` / ``"false"`` for booleans, the decimal digits for integers, the
string itself for strings. Models, the prediction log, the service and drift monitoring all see
that text, so a value means the same thing everywhere, whatever the file's type was.

A value of another kind (the string ``"yes"`` for a boolean feature, ``True`` for a string
feature) is not converted: validation refuses it and names the column, the kind the schema
expects and the value found.

The target is a label: 0/1, true/false, or any two values of which ``schema.positive_class``
names the one the model predicts; it becomes 0/1.

Plain pandas; importable without Kedro.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype

STRING = "string"
BOOLEAN = "boolean"
INTEGER = "integer"
KINDS = (STRING, BOOLEAN, INTEGER)
_BOOLEAN_TEXT = {True: "true", False: "false"}


def value_kind(value: Any) -> str | None:
    """The kind of one configured value (``None``: not a kind a category can have)."""
    if isinstance(value, bool | np.bool_):
        return BOOLEAN
    if isinstance(value, int | np.integer):
        return INTEGER
    if isinstance(value, str):
        return STRING
    return None


def category_text(value: Any) -> str | None:
    """The canonical text of one categorical value of any kind; ``None`` for a missing value.

    Integral floats count as integers (a CSV column of codes with a gap reads as floats).
    A value that is no category of any kind (a fractional float, a list) raises ValueError.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return _BOOLEAN_TEXT[bool(value)]
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    raise ValueError(f"{value!r} is not a category value (a string, a boolean or an integer)")


def describe_values(kind: str, values: Sequence[str]) -> str:
    """``boolean [true, false]``: how messages show a feature's allowed values."""
    shown = ", ".join(values if kind != STRING else map(repr, values))
    return f"{kind} [{shown}]"


def is_kind_text(text: Any, kind: str) -> bool:
    """Whether ``text`` is canonical text of ``kind`` (``"true"``, ``"3"``, any string)."""
    if not isinstance(text, str):
        return False
    if kind == BOOLEAN:
        return text in ("true", "false")
    if kind == INTEGER:
        return text.lstrip("-").isdigit() and text == str(int(text))
    return True


def _convert_one(value: Any, kind: str) -> Any:
    """Canonical text if ``value`` is of ``kind`` (or missing); the value itself otherwise."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind == BOOLEAN and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()
    is_boolean = isinstance(value, bool | np.bool_)
    is_integral = isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    )
    if (kind == BOOLEAN and is_boolean) or (kind == INTEGER and is_integral and not is_boolean):
        return category_text(value)
    return value


def categories_as_text(series: pd.Series, kind: str) -> pd.Series:
    """``series`` as canonical text of ``kind`` (object dtype, ``None`` where missing).

    Values of another kind are left as they are, for validation to refuse by name; the common
    cases (a column of strings, of booleans, of integers) are converted without a Python loop.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    dtype = series.dtype
    if kind == BOOLEAN and pd.api.types.is_bool_dtype(dtype):
        text = series.map(_BOOLEAN_TEXT)
        return text.astype(object).where(text.notna(), None)
    if kind == INTEGER and pd.api.types.is_numeric_dtype(dtype) and not is_bool_dtype(dtype):
        present = series.notna().to_numpy()
        numbers = series[present]
        if pd.api.types.is_integer_dtype(dtype) or bool((numbers % 1 == 0).all()):
            out = np.full(len(series), None, dtype=object)
            out[present] = numbers.astype(np.int64).astype(str).to_numpy(dtype=object)
            return pd.Series(out, index=series.index, name=series.name)
    if kind == STRING and pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("string", "empty"):
            return series.where(series.notna(), None)
    converted = [_convert_one(value, kind) for value in series.to_numpy(dtype=object)]
    return pd.Series(converted, index=series.index, name=series.name, dtype=object)


def is_text_of_kind(series: pd.Series, kind: str) -> pd.Series:
    """Per value: missing, or canonical text of ``kind`` (what ``categories_as_text`` makes)."""
    if kind == STRING and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return pd.Series(True, index=series.index)
    ok = [value is None or is_kind_text(value, kind) for value in series.to_numpy(dtype=object)]
    return pd.Series(ok, index=series.index)


KIND_RULE_PREFIX = "is "


def kind_rule(kind: str, values: Sequence[str]) -> str:
    """The name validation gives the type rule of a categorical feature."""
    rule = f"{KIND_RULE_PREFIX}{kind} like the schema's {describe_values(kind, values)}"
    if kind == BOOLEAN:
        rule += " (YAML reads unquoted yes/no/on/off as booleans: quote strings)"
    return rule


# --- the target ------------------------------------------------------------------------------


def label_of(value: Any, positive_class: Any) -> Any:
    """1 for the positive class, 0 for another value, the value itself if it is no label.

    Without ``positive_class`` a label is 0/1 or true/false.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return value
    if positive_class is None:
        if isinstance(value, bool | np.bool_):
            return int(value)
        if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
            return int(value)
        return value
    try:
        return int(category_text(value) == category_text(positive_class))
    except ValueError:
        return value


def labels_as_binary(series: pd.Series, positive_class: Any) -> pd.Series:
    """The target column as 0/1 (see ``label_of``); values that are no label are left as is."""
    if positive_class is None and is_bool_dtype(series.dtype):
        return series.astype("Int8") if series.isna().any() else series.astype(np.int8)
    if positive_class is None and pd.api.types.is_numeric_dtype(series.dtype):
        return series
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    converted = [label_of(value, positive_class) for value in series.to_numpy(dtype=object)]
    return pd.Series(converted, index=series.index, name=series.name, dtype=object)


def target_classes_problem(values: Sequence[Any], target: str, positive_class: Any) -> str | None:
    """Why the distinct non-missing ``values`` of the target are not a binary label, if they are not."""
    present = [v for v in values if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    shown = sorted({repr(v.item() if hasattr(v, "item") else v) for v in present})[:6]
    if positive_class is None:
        return None  # 0/1 is checked value by value
    texts = set()
    for value in present:
        try:
            texts.add(category_text(value))
        except ValueError:
            texts.add(repr(value))
    positive = category_text(positive_class)
    if len(texts) > 2:
        return (
            f"target {target!r} holds {len(texts)} distinct values ({', '.join(shown)}); a binary "
            f"target has two, schema.positive_class ({positive_class!r}) names the one predicted"
        )
    if present and positive not in texts:
        hint = ""
        if isinstance(positive_class, bool) and any(isinstance(v, str) for v in present):
            hint = ' (YAML reads yes/no/on/off as booleans: quote the value, e.g. "yes")'
        return (
            f"schema.positive_class is {positive_class!r}, which target {target!r} never holds; "
            f"its values are {', '.join(shown)}{hint}"
        )
    return None


def label_numbers(series: pd.Series, positive_class: Any) -> pd.Series:
    """The target as float 0/1 for joining labels: NaN where missing or not a label."""
    binary = labels_as_binary(series, positive_class)
    numbers = pd.to_numeric(binary, errors="coerce").astype(float)
    return numbers.where(numbers.isin((0.0, 1.0)))
