"""Check the records of a ``POST /predict`` against the data schema from configuration.

The rules come from ``schema`` in ``conf/<env>/parameters.yml`` (``shadowdrift.schema``) and
the ``serving.request`` policy; nothing about the features is written here. Per record:

* every feature is required (a missing key is an error);
* numeric features take JSON numbers (not booleans, not strings), finite, integral for
  ``dtype: int``, inside ``[min, max]``;
* categorical features take strings of at most ``max_string_length`` characters, or JSON
  booleans / integers where the schema lists booleans / integers (they become canonical text,
  ``shadowdrift.value_types``, also in the prediction log); a value outside ``values`` is
  *unseen*: accepted and
  counted (policy ``unseen_categories: accept``, the default, so drift monitoring sees it in
  the prediction log; the models code it as unknown) or rejected (``reject``);
* ``null`` for a feature: accepted as missing if the schema declares it nullable or the policy
  is ``missing_values: accept`` (the default; imputed like in training), else rejected;
* the id column (string or integer) and the timestamp column (ISO 8601; naive means UTC) are
  optional and go to the log;
* any other field is rejected (``unknown_fields: reject``, the default) or ignored.

All problems of a request are collected (up to ``max_problems``) so that the client sees every
offending field at once; the request is then refused as a whole with HTTP 422. Too many records
is HTTP 413. The validator never raises anything but ``RequestRejected`` for client input.

Plain Python and numpy; the per-field checks are a tight loop because this runs on every request
(about 0.5 us per field; see docs/serving.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import numpy as np

from shadowdrift.serving.config import ACCEPT, REJECT, RequestPolicy
from shadowdrift.value_types import BOOLEAN, INTEGER, STRING, is_kind_text

# pandas (which the prediction log uses) holds nanosecond timestamps: years 1678-2261.
_MIN_TIME = datetime(1678, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(2261, 12, 31, tzinfo=UTC)
_MAX_ID_LENGTH = 256
_MAX_SHOWN_VALUE = 60


class _Missing:
    """Sentinel for an absent key (``None`` is an explicit JSON null)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


@dataclass(frozen=True)
class Problem:
    """One reason a request is refused: which record, which field, why."""

    record_index: int | None
    field: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        loc: list[Any] = ["records"]
        if self.record_index is not None:
            loc.append(self.record_index)
        if self.field is not None:
            loc.append(self.field)
        return {
            "loc": loc,
            "record_index": self.record_index,
            "field": self.field,
            "msg": self.message,
        }


class RequestRejected(Exception):
    """A client error: HTTP ``status`` with a message and the problems, field by field."""

    def __init__(
        self,
        status: int,
        message: str,
        problems: Sequence[Problem] = (),
        total_problems: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.total_problems = len(self.problems) if total_problems is None else total_problems

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.message,
            "detail": [problem.to_json() for problem in self.problems],
        }
        if self.total_problems > len(self.problems):
            body["problems_not_shown"] = self.total_problems - len(self.problems)
        return body


@dataclass
class ValidatedRecords:
    """The accepted records of one request.

    ``records`` are the request's own dicts (the timestamp replaced by a UTC ``datetime``);
    ``numeric`` is ``(n, n_numeric)`` float64 in the schema's numeric order with NaN for a
    missing value; ``categorical`` holds one list of ``n`` values per categorical feature, in
    the schema's order, with ``None`` for a missing value. ``unseen`` and ``missing`` count per
    feature. ``ids`` and ``times`` are the id and the parsed timestamp of each record (``None``
    where a record has none), or ``None`` when no record has one.
    """

    records: list[dict[str, Any]]
    numeric: np.ndarray
    categorical: list[list[str | None]]
    unseen: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    ids: list[Any] | None = None
    times: list[datetime | None] | None = None

    def __len__(self) -> int:
        return len(self.records)


def json_type(value: Any) -> str:  # noqa: PLR0911  (one answer per JSON type)
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 3] + "..."


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


_EXPECTED_KIND = {
    STRING: "a string",
    BOOLEAN: "a boolean (true or false)",
    INTEGER: "an integer code",
}


def _wrong_kind(value: Any, spec: _CategoricalSpec) -> str:
    return f"must be {_EXPECTED_KIND[spec.kind]}, got {json_type(value)} {_shown(value)}"


# Records per request from which the column-wise checks beat the per-record loop.
COLUMNAR_MIN_RECORDS = 16

_ID_KINDS = frozenset({str, int, type(None)})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _fitting_texts(ids: list[Any]) -> bool:
    """Every string id holds 1 to ``_MAX_ID_LENGTH`` characters."""
    lengths = [len(entity) for entity in ids if type(entity) is str]
    numbers = [entity for entity in ids if type(entity) is int]
    if numbers and not _INT64_MIN <= min(numbers) <= max(numbers) <= _INT64_MAX:
        return False
    return not lengths or (min(lengths) > 0 and max(lengths) <= _MAX_ID_LENGTH)


def _id_problem(entity: Any) -> str | None:
    """Why ``entity`` is not an acceptable id (None if it is, or if there is none)."""
    kind = type(entity)
    if entity is None or (kind is int and _INT64_MIN <= entity <= _INT64_MAX):
        return None
    if kind is int:
        return "must fit in 64 bits"
    if kind is not str:
        return f"must be a string or an integer, got {json_type(entity)} {_shown(entity)}"
    if not 0 < len(entity) <= _MAX_ID_LENGTH:
        return f"must hold 1 to {_MAX_ID_LENGTH} characters"
    return None


@dataclass(frozen=True)
class _NumericSpec:
    name: str
    low: float | None
    high: float | None
    is_int: bool
    null_ok: bool


@dataclass(frozen=True)
class _CategoricalSpec:
    name: str
    allowed: frozenset[str]
    null_ok: bool
    listed: tuple[str, ...]
    kind: str = STRING

    def native_text(self, value: Any) -> str | None:
        """The canonical text of a JSON boolean or integer of this feature's kind, else None."""
        kind = type(value)
        if self.kind == BOOLEAN and kind is bool:
            return "true" if value else "false"
        if self.kind == INTEGER and (kind is int or (kind is float and value.is_integer())):
            return str(int(value))
        return None


class RequestValidator:
    """Validates request records against a ``DataSchema`` under a ``RequestPolicy``.

    Two paths give the same answer: a per-record loop for small requests and column-wise
    numpy checks for batches (``COLUMNAR_MIN_RECORDS`` and up), where only offending values
    are looked at one by one to word their messages. Problems are reported in record order,
    then field order (unknown fields, numeric features, categorical features, id, timestamp).
    """

    def __init__(self, schema: Any, policy: RequestPolicy, max_problems: int = 50) -> None:
        self.schema = schema
        self.policy = policy
        self.max_problems = max_problems
        accept_missing = policy.missing_values == ACCEPT
        self._numeric = [
            _NumericSpec(
                f.name,
                None if f.min is None else float(f.min),
                None if f.max is None else float(f.max),
                f.dtype == "int",
                f.nullable or accept_missing,
            )
            for f in schema.numeric
        ]
        self._categorical = [
            _CategoricalSpec(
                f.name, frozenset(f.values), f.nullable or accept_missing, tuple(f.values), f.kind
            )
            for f in schema.categorical
        ]
        # features listed as booleans or integers: their JSON values become canonical text
        self._native = any(spec.kind != STRING for spec in self._categorical)
        self._id = schema.id
        self._timestamp = schema.timestamp
        self._target = schema.target
        self._allowed_keys = frozenset({*schema.features, schema.id, schema.timestamp})
        names = [spec.name for spec in self._numeric] + [spec.name for spec in self._categorical]
        # every feature of a record in one C call (KeyError if one is missing: slow path)
        self._n_features = len(names)
        self._features_of = itemgetter(*names) if len(names) >= 2 else None
        self._reject_unknown = policy.unknown_fields == REJECT
        self._reject_unseen = policy.unseen_categories == REJECT
        self._max_string = policy.max_string_length
        n_numeric = len(self._numeric)
        self._rank_categorical = n_numeric
        self._rank_id = n_numeric + len(self._categorical)
        self._rank_time = self._rank_id + 1

    # -- request level ---------------------------------------------------------------------

    def check_count(self, n_records: int) -> None:
        """413 above ``max_records``, 422 for an empty request."""
        if n_records == 0:
            raise RequestRejected(
                422, "no records to score", [Problem(None, None, "records must not be empty")]
            )
        if n_records > self.policy.max_records:
            raise RequestRejected(
                413,
                f"too many records: {n_records} in one request, the limit is "
                f"{self.policy.max_records} (serving.request.max_records); split the batch",
            )

    def validate(self, records: Sequence[Any], *, columnar: bool | None = None) -> ValidatedRecords:
        """Check every record; raise ``RequestRejected`` listing all problems, or return them.

        ``columnar`` forces a path (tests); by default batches use the column-wise checks.
        """
        self.check_count(len(records))
        if columnar is None:
            columnar = len(records) >= COLUMNAR_MIN_RECORDS
        found: list[tuple[int, int, str | None, str]] = []
        unseen: dict[str, int] = {}
        missing: dict[str, int] = {}
        objects = (
            []
            if set(map(type, records)) == {dict}
            else [index for index, record in enumerate(records) if type(record) is not dict]
        )
        for index in objects:
            found.append(
                (
                    index,
                    -2,
                    None,
                    f"a record must be a JSON object, got {json_type(records[index])}",
                )
            )
        accepted = (
            [record for record in records if type(record) is dict] if objects else list(records)
        )
        positions = (
            [i for i, record in enumerate(records) if type(record) is dict] if objects else None
        )
        if self._native:
            self._native_to_text(accepted, positions, found)
        rows = self._feature_rows(accepted) if columnar else None
        self._unknown_fields(accepted, positions, found, complete=rows is not None)
        if columnar:
            numeric, categorical = self._columns(accepted, positions, found, unseen, missing, rows)
        else:
            numeric, categorical = self._rows(accepted, positions, found, unseen, missing)
        ids, times = self._ids_and_times(accepted, positions, found)
        if found:
            found.sort(key=lambda p: (p[0], p[1], p[2] or ""))
            kept = [Problem(i, name, message) for i, _, name, message in found[: self.max_problems]]
            n_bad = len({p.record_index for p in kept})
            raise RequestRejected(
                422,
                f"{len(found)} problem(s) in the records (first {len(kept)} shown, in "
                f"{n_bad} record(s)); nothing was scored",
                kept,
                len(found),
            )
        return ValidatedRecords(accepted, numeric, categorical, unseen, missing, ids, times)

    def _native_to_text(
        self,
        records: list[dict[str, Any]],
        positions: list[int] | None,
        found: list[tuple[int, int, str | None, str]],
    ) -> None:
        """JSON booleans and integers of such features as canonical text, in the records.

        A string is taken if it is already that text ("true", "3"); any other string is of the
        wrong type (not an unseen value): a problem.
        """
        for m, spec in enumerate(self._categorical):
            if spec.kind == STRING:
                continue
            name = spec.name
            for k, record in enumerate(records):
                value = record.get(name)
                if value is None:
                    continue
                text = spec.native_text(value) if type(value) is not str else value
                if text is not None and is_kind_text(text, spec.kind):
                    record[name] = text
                elif type(value) is str:
                    index = positions[k] if positions else k
                    found.append(
                        (index, self._rank_categorical + m, name, _wrong_kind(value, spec))
                    )

    def _feature_rows(self, records: list[dict[str, Any]]) -> list[tuple[Any, ...]] | None:
        """Every record's features in schema order, or None if a record lacks one."""
        if self._features_of is None:
            return None
        try:
            return list(map(self._features_of, records))
        except KeyError:
            return None

    # -- fields that are not features ------------------------------------------------------

    def _unknown_fields(
        self,
        records: list[dict[str, Any]],
        positions: list[int] | None,
        found: list[tuple[int, int, str | None, str]],
        *,
        complete: bool = False,
    ) -> None:
        """Unknown keys; ``complete``: every record is known to have every feature."""
        allowed = self._allowed_keys
        n_features, id_key, time_key = self._n_features, self._id, self._timestamp
        for k, record in enumerate(records):
            if complete:
                # the features are all there, so the record's other keys are only the id and
                # the timestamp if it has no more keys than those (cheaper than a set test)
                extra = len(record) - n_features
                if extra == 0 or extra == (id_key in record) + (time_key in record):
                    continue
            if record.keys() <= allowed:
                continue
            index = positions[k] if positions else k
            extra = record.keys() - allowed
            if not self._reject_unknown:
                for key in extra:
                    # ignored, and never allowed to reach the log (e.g. "challenger_probability")
                    del record[key]
                continue
            for key in extra:
                if key == self._target:
                    message = (
                        f"{key!r} is the target, not an input; send ground truth to POST /feedback"
                    )
                else:
                    message = "unknown field: not a feature, id or timestamp of the schema"
                found.append((index, -1, str(key)[:_MAX_SHOWN_VALUE], message))

    def _ids_and_times(
        self,
        records: list[dict[str, Any]],
        positions: list[int] | None,
        found: list[tuple[int, int, str | None, str]],
    ) -> tuple[list[Any] | None, list[datetime | None] | None]:
        """Check the optional id and timestamp; their columns (None if no record has one)."""
        id_key, time_key = self._id, self._timestamp
        ids = [record.get(id_key) for record in records]
        times = [record.get(time_key) for record in records]
        n_records = len(records)
        has_ids = ids.count(None) != n_records
        has_times = times.count(None) != n_records
        if has_ids and not (set(map(type, ids)) <= _ID_KINDS and _fitting_texts(ids)):
            for k, entity in enumerate(ids):
                problem = _id_problem(entity)
                if problem is not None:
                    index = positions[k] if positions else k
                    found.append((index, self._rank_id, id_key, problem))
        if has_times:
            for k, stamp in enumerate(times):
                if stamp is None:
                    continue
                parsed = parse_timestamp(stamp)
                if parsed is None:
                    index = positions[k] if positions else k
                    found.append(
                        (
                            index,
                            self._rank_time,
                            time_key,
                            "must be an ISO 8601 date-time between 1678 and 2261 "
                            f"(e.g. 2026-11-23T15:04:05Z), got {json_type(stamp)} {_shown(stamp)}",
                        )
                    )
                else:
                    records[k][time_key] = parsed
                    times[k] = parsed
        return (ids if has_ids else None), (times if has_times else None)

    # -- one value -------------------------------------------------------------------------

    @staticmethod
    def _numeric_problem(value: Any, spec: _NumericSpec) -> str | None:  # noqa: PLR0911
        """Why ``value`` is not acceptable for a numeric feature (None if it is)."""
        kind = type(value)
        if kind is int or kind is float:
            if kind is float and not math.isfinite(value):
                return f"must be a finite number, got {value!r}"
            if spec.is_int and kind is float and not value.is_integer():
                return f"must be an integer, got {value!r}"
            if spec.low is not None and value < spec.low:
                return f"must be >= {_number_text(spec.low)}, got {value!r}"
            if spec.high is not None and value > spec.high:
                return f"must be <= {_number_text(spec.high)}, got {value!r}"
            return None
        if value is None:
            return None if spec.null_ok else "must not be null"
        if value is MISSING:
            return "is required"
        return f"must be a number, got {json_type(value)} {_shown(value)}"

    def _categorical_problem(self, value: Any, spec: _CategoricalSpec) -> str | None:  # noqa: PLR0911
        """Why ``value`` is not acceptable for a categorical feature (None if it is)."""
        if type(value) is str:
            if value in spec.allowed:
                return None
            if len(value) > self._max_string:
                return (
                    f"must hold at most {self._max_string} characters "
                    f"(serving.request.max_string_length), got {len(value)}"
                )
            if not self._reject_unseen:
                return None
            return f"{_shown(value)} is not an allowed value; allowed: {list(spec.listed)}"
        if value is None:
            return None if spec.null_ok else "must not be null"
        if value is MISSING:
            return "is required"
        return _wrong_kind(value, spec)

    # -- per record (small requests) -------------------------------------------------------

    def _rows(
        self,
        records: list[dict[str, Any]],
        positions: list[int] | None,
        found: list[tuple[int, int, str | None, str]],
        unseen: dict[str, int],
        missing: dict[str, int],
    ) -> tuple[np.ndarray, list[list[str | None]]]:
        numeric = np.empty((len(records), len(self._numeric)), dtype=np.float64)
        categorical: list[list[str | None]] = [[None] * len(records) for _ in self._categorical]
        for k, record in enumerate(records):
            index = positions[k] if positions else k
            row = numeric[k]
            for j, spec in enumerate(self._numeric):
                value = record.get(spec.name, MISSING)
                kind = type(value)
                if (kind is int or kind is float) and self._numeric_problem(value, spec) is None:
                    row[j] = value
                    continue
                if value is None and spec.null_ok:
                    missing[spec.name] = missing.get(spec.name, 0) + 1
                else:
                    found.append((index, j, spec.name, self._numeric_problem(value, spec) or ""))
                row[j] = math.nan
            for m, spec in enumerate(self._categorical):
                value = record.get(spec.name, MISSING)
                if type(value) is str:
                    if value not in spec.allowed:
                        if self._reject_unseen or len(value) > self._max_string:
                            found.append(
                                (
                                    index,
                                    self._rank_categorical + m,
                                    spec.name,
                                    self._categorical_problem(value, spec) or "",
                                )
                            )
                        else:
                            unseen[spec.name] = unseen.get(spec.name, 0) + 1
                    categorical[m][k] = value
                elif value is None and spec.null_ok:
                    missing[spec.name] = missing.get(spec.name, 0) + 1
                else:
                    found.append(
                        (
                            index,
                            self._rank_categorical + m,
                            spec.name,
                            self._categorical_problem(value, spec) or "",
                        )
                    )
        return numeric, categorical

    # -- column-wise (batches) -------------------------------------------------------------

    def _columns(
        self,
        records: list[dict[str, Any]],
        positions: list[int] | None,
        found: list[tuple[int, int, str | None, str]],
        unseen: dict[str, int],
        missing: dict[str, int],
        rows: list[tuple[Any, ...]] | None = None,
    ) -> tuple[np.ndarray, list[list[str | None]]]:
        n_records = len(records)
        numeric = np.empty((n_records, len(self._numeric)), dtype=np.float64)
        # one sequence per feature (transposed rows), or gathered feature by feature
        by_feature: list[Any] = list(zip(*rows, strict=True)) if rows else []
        for j, spec in enumerate(self._numeric):
            name = spec.name
            column = by_feature[j] if rows else [record.get(name, MISSING) for record in records]
            bad = self._numeric_column(column, spec, numeric[:, j], missing)
            for k in bad:
                found.append(
                    (
                        positions[k] if positions else k,
                        j,
                        name,
                        self._numeric_problem(column[k], spec) or "",
                    )
                )
        categorical: list[list[str | None]] = []
        n_numeric = len(self._numeric)
        for m, spec in enumerate(self._categorical):
            name = spec.name
            column = (
                list(by_feature[n_numeric + m])
                if rows
                else [record.get(name, MISSING) for record in records]
            )
            bad = self._categorical_column(column, spec, unseen, missing)
            for k in bad:
                found.append(
                    (
                        positions[k] if positions else k,
                        self._rank_categorical + m,
                        name,
                        self._categorical_problem(column[k], spec) or "",
                    )
                )
            categorical.append(column)
        return numeric, categorical

    def _numeric_column(
        self, column: list[Any], spec: _NumericSpec, out: np.ndarray, missing: dict[str, int]
    ) -> list[int]:
        """Fill ``out`` with the column's values (NaN for a missing one); the offending positions."""
        kinds = set(map(type, column))
        if kinds <= {int, float}:
            bad = _numbers_outside(column, spec, out, has_floats=float in kinds)
            if bad is not None:
                return bad
        bad = []
        problem_of = self._numeric_problem
        for k, value in enumerate(column):
            kind = type(value)
            if kind is int or kind is float:
                try:
                    out[k] = value
                except OverflowError:
                    out[k] = math.nan
                if problem_of(value, spec) is not None:
                    bad.append(k)
            else:
                out[k] = math.nan
                if value is None and spec.null_ok:
                    missing[spec.name] = missing.get(spec.name, 0) + 1
                else:
                    bad.append(k)
        return bad

    def _categorical_column(
        self,
        column: list[Any],
        spec: _CategoricalSpec,
        unseen: dict[str, int],
        missing: dict[str, int],
    ) -> list[int]:
        """Count unseen and missing values of a categorical column; the offending positions."""
        if set(map(type, column)) == {str}:
            if set(column) <= spec.allowed:
                return []
            allowed = spec.allowed
            outside = [k for k, value in enumerate(column) if value not in allowed]
            if self._reject_unseen:
                return outside
            too_long = [k for k in outside if len(column[k]) > self._max_string]
            unseen[spec.name] = unseen.get(spec.name, 0) + len(outside) - len(too_long)
            return too_long
        bad = []
        for k, value in enumerate(column):
            if type(value) is str:
                if value not in spec.allowed:
                    if self._reject_unseen or len(value) > self._max_string:
                        bad.append(k)
                    else:
                        unseen[spec.name] = unseen.get(spec.name, 0) + 1
            elif value is None and spec.null_ok:
                missing[spec.name] = missing.get(spec.name, 0) + 1
            else:
                bad.append(k)
        return bad


def _numbers_outside(
    column: list[Any], spec: _NumericSpec, out: np.ndarray, *, has_floats: bool
) -> list[int] | None:
    """Positions in a column of plain numbers that break ``spec`` (None: not convertible)."""
    try:
        values = np.array(column, dtype=np.float64)
    except OverflowError:  # an integer beyond float range: the per-value loop words it
        return None
    out[:] = values
    wrong = np.zeros(len(column), dtype=bool)
    with np.errstate(invalid="ignore"):
        if has_floats:
            wrong |= ~np.isfinite(values)
            if spec.is_int:
                wrong |= values != np.floor(values)
        if spec.low is not None:
            wrong |= values < spec.low
        if spec.high is not None:
            wrong |= values > spec.high
    return np.flatnonzero(wrong).tolist()


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 string as an aware UTC datetime (naive means UTC), or None if it is not one."""
    if type(value) is not str:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if not _MIN_TIME <= parsed <= _MAX_TIME:
        return None
    return parsed
