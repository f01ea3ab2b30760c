"""The prediction log: one row per scored record, written durably as Parquet part files.

The service logs every request (champion output, challenger output or the reason there is
none) and the batch pipeline logs its scores in the same format; Kedro's drift pipeline
reads the log back. The format, the file layout and the durability guarantee are documented
in ``docs/prediction_log.md``; in short:

* ``LogSchema(numeric_features, categorical_features)`` fixes the columns and their Arrow
  types (the features are passed in, so the module follows the project's data schema).
* ``PredictionLogWriter`` buffers records in memory (``append``: one dict per record;
  ``append_columns``: a batch as columns, e.g. numpy arrays) and a background thread
  (``BackgroundFlusher``) flushes them at least every ``flush_interval_s`` seconds as a new,
  complete part file
  ``<root>/date=YYYY-MM-DD/part-<time>-<host>-<pid>-<token>-<seq>.parquet``, written under a
  hidden temporary name, fsynced, renamed into place and the directory fsynced. Readers never
  see a partial file and a crash loses at most the records not yet flushed.
* ``write_batch`` writes a whole DataFrame with the same protocol (``source="batch"``).
* ``read_prediction_log`` reads a log directory; ``concat_partitions`` does the same for the
  output of a Kedro ``PartitionedDataset`` over that directory.

Plain Python (pyarrow and pandas): importable without Kedro.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

# 2 added ``model_variant``; files of version 1 are read with it filled in (``champion``: the
# only model that answered before the canary existed).
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
# Parquet key-value metadata entry that records the LogSchema a part file was written with.
METADATA_KEY = b"shadowdrift.prediction_log"

REQUEST_ID = "request_id"
RECORD_INDEX = "record_index"
LOGGED_AT = "logged_at"
EVENT_TIME = "event_time"
SOURCE = "source"
CHAMPION_PROBABILITY = "champion_probability"
CHAMPION_LABEL = "champion_label"
CHAMPION_MODEL_VERSION = "champion_model_version"
CHAMPION_LATENCY_MS = "champion_latency_ms"
CHALLENGER_STATUS = "challenger_status"
CHALLENGER_PROBABILITY = "challenger_probability"
CHALLENGER_LABEL = "challenger_label"
CHALLENGER_MODEL_VERSION = "challenger_model_version"
CHALLENGER_LATENCY_MS = "challenger_latency_ms"
MODEL_VARIANT = "model_variant"

# interrupted: the worker died before the challenger's outcome was logged; the record itself
# came back from the write-ahead log (prediction_wal.py)
INTERRUPTED = "interrupted"
CHALLENGER_STATUSES = ("ok", "shed", "failed", "sampled_out", "disabled", "skipped", INTERRUPTED)
# Which model's output was the answer: the champion, or the challenger for a canary record
# (serving.canary). A record without the key was answered by the champion.
CHAMPION_VARIANT = "champion"
CHALLENGER_VARIANT = "challenger"
MODEL_VARIANTS = (CHAMPION_VARIANT, CHALLENGER_VARIANT)
SOURCES = ("service", "batch")

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"
# lz4 decodes about 40% faster than zstd, and with dictionaries on the non-float columns the
# files came out 2.5% smaller (docs/benchmarks.md, "Scale-out"); drift reads the whole log on
# every run, so decoding speed is what matters.
# Readers accept any codec Parquet knows, so files written with zstd before stay readable.
PARQUET_COMPRESSION = "lz4"
DATE_DIR_PREFIX = "date="

# Without these keys a record cannot be interpreted; everything else defaults to null.
REQUIRED_RECORD_KEYS = frozenset(
    {
        REQUEST_ID,
        RECORD_INDEX,
        CHAMPION_PROBABILITY,
        CHAMPION_LABEL,
        CHAMPION_MODEL_VERSION,
        CHAMPION_LATENCY_MS,
        CHALLENGER_STATUS,
    }
)
# Columns that carry the challenger's output: all set when its status is "ok", all null otherwise.
CHALLENGER_OUTPUT_COLUMNS = (CHALLENGER_PROBABILITY, CHALLENGER_LABEL, CHALLENGER_MODEL_VERSION)

_STRING = pa.string()
_FLOAT = pa.float64()
_INT = pa.int64()
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_PANDAS_TIMESTAMP = "datetime64[ns, UTC]"
_NS_PER_US = 1_000
_NS_PER_DAY = 86_400 * 1_000_000_000


class PredictionLogError(ValueError):
    """A part file, partition or batch violates the prediction-log format; the message names it."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the log: name, Arrow type, whether nulls are allowed and what it means."""

    name: str
    arrow_type: pa.DataType
    nullable: bool
    description: str


_LEADING_COLUMNS = (
    ColumnSpec(REQUEST_ID, _STRING, False, "id of the request (or batch) the record came in"),
    ColumnSpec(RECORD_INDEX, _INT, False, "position of the record within its request, from 0"),
    ColumnSpec(LOGGED_AT, _TIMESTAMP, False, "when the writer accepted the record (UTC)"),
    ColumnSpec(EVENT_TIME, _TIMESTAMP, False, "the record's own event time, else logged_at"),
    ColumnSpec(SOURCE, _STRING, False, "'service' (online request) or 'batch' (batch scoring)"),
)
_TRAILING_COLUMNS = (
    ColumnSpec(
        CHAMPION_PROBABILITY,
        _FLOAT,
        False,
        "champion's probability of the positive class, in [0, 1]",
    ),
    ColumnSpec(CHAMPION_LABEL, _INT, False, "champion's predicted label (0/1)"),
    ColumnSpec(CHAMPION_MODEL_VERSION, _STRING, False, "champion model version"),
    ColumnSpec(CHAMPION_LATENCY_MS, _FLOAT, True, "champion inference time; null only for batch"),
    ColumnSpec(
        CHALLENGER_STATUS,
        _STRING,
        False,
        "ok, shed, failed, sampled_out, disabled, skipped or interrupted",
    ),
    ColumnSpec(CHALLENGER_PROBABILITY, _FLOAT, True, "challenger's probability; null unless ok"),
    ColumnSpec(CHALLENGER_LABEL, _INT, True, "challenger's label; null unless ok"),
    ColumnSpec(CHALLENGER_MODEL_VERSION, _STRING, True, "challenger version; null unless ok"),
    ColumnSpec(CHALLENGER_LATENCY_MS, _FLOAT, True, "challenger inference time, when it ran"),
    ColumnSpec(
        MODEL_VARIANT,
        _STRING,
        False,
        "which model answered: champion, or challenger (a canary record; status ok)",
    ),
)
BASE_COLUMNS = tuple(c.name for c in _LEADING_COLUMNS + _TRAILING_COLUMNS)


@dataclass(frozen=True)
class LogSchema:
    """The columns of a prediction log for a given feature set.

    Numeric features are stored as float64 and categorical features as strings, both nullable
    (a request may carry missing values; drift monitoring wants to see them). ``id_column``
    optionally carries the entity id (e.g. ``customer_id``) as a string, so that labels that
    arrive later can be joined back.
    """

    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    id_column: str | None = None

    def __post_init__(self) -> None:
        # Accept any sequence (lists from YAML) but keep the dataclass hashable.
        object.__setattr__(self, "numeric_features", _names(self.numeric_features, "numeric"))
        object.__setattr__(
            self, "categorical_features", _names(self.categorical_features, "categorical")
        )
        extra = (self.id_column,) if self.id_column is not None else ()
        _check_names((*self.numeric_features, *self.categorical_features, *extra))

    @classmethod
    def from_data_schema(cls, data_schema: Any, *, with_id: bool = True) -> LogSchema:
        """Build from a ``shadowdrift.schema.DataSchema`` (duck-typed to keep imports light)."""
        return cls(
            tuple(data_schema.numeric_features),
            tuple(data_schema.categorical_features),
            data_schema.id if with_id else None,
        )

    @cached_property
    def column_specs(self) -> tuple[ColumnSpec, ...]:
        features = [
            ColumnSpec(name, _FLOAT, True, "numeric input feature")
            for name in self.numeric_features
        ] + [
            ColumnSpec(name, _STRING, True, "categorical input feature")
            for name in self.categorical_features
        ]
        ids = (
            [ColumnSpec(self.id_column, _STRING, True, "entity id, for joining labels")]
            if self.id_column is not None
            else []
        )
        return (*_LEADING_COLUMNS, *ids, *features, *_TRAILING_COLUMNS)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.column_specs)

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        fields = [pa.field(s.name, s.arrow_type, nullable=s.nullable) for s in self.column_specs]
        return pa.schema(fields, metadata={METADATA_KEY: self.to_json().encode()})

    @cached_property
    def pandas_dtypes(self) -> dict[str, Any]:
        """The dtype of every column in the DataFrames this module returns."""
        return {spec.name: _pandas_dtype(spec) for spec in self.column_specs}

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "numeric_features": list(self.numeric_features),
                "categorical_features": list(self.categorical_features),
                "id_column": self.id_column,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> LogSchema:
        spec = json.loads(text)
        if spec.get("format_version") not in READABLE_FORMAT_VERSIONS:
            raise PredictionLogError(
                f"unsupported prediction-log format_version {spec.get('format_version')!r} "
                f"(this code reads versions {list(READABLE_FORMAT_VERSIONS)})"
            )
        return cls(spec["numeric_features"], spec["categorical_features"], spec.get("id_column"))

    def empty_frame(self) -> pd.DataFrame:
        """A DataFrame with no rows and the documented columns and dtypes."""
        return _to_pandas(self.arrow_schema.empty_table(), self)


def _names(value: Any, kind: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{kind} features must be a sequence of column names, got {value!r}")
    return tuple(value)


def _check_names(names: Sequence[Any]) -> None:
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ValueError(f"feature names must be non-empty strings, got {bad!r}")
    clash = sorted(set(names) & set(BASE_COLUMNS))
    if clash:
        raise ValueError(f"feature names clash with prediction-log columns: {clash}")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"duplicated feature names: {duplicated}")


def _pandas_dtype(spec: ColumnSpec) -> Any:
    if spec.arrow_type == _TIMESTAMP:
        return _PANDAS_TIMESTAMP
    if spec.arrow_type == _INT:
        # Plain int64 cannot hold nulls; the nullable extension type keeps labels integral.
        return pd.Int64Dtype() if spec.nullable else np.dtype("int64")
    if spec.arrow_type == _FLOAT:
        return np.dtype("float64")
    return np.dtype("object")


# --------------------------------------------------------------------------------------------
# Building and checking Arrow tables
# --------------------------------------------------------------------------------------------


_TEXT_KINDS = frozenset({str, type(None)})
_INT_KINDS = frozenset({int, type(None)})
_DATETIME_KINDS = frozenset({datetime, type(None)})
_UTC_ZONES = frozenset({None, UTC})


def _string_array(values: Any) -> pa.Array:
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    return pa.array(values, type=_STRING, from_pandas=True)


def _id_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # A column of integer ids with a gap arrives as floats; 17.0 is still customer "17".
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _id_array(values: Any) -> pa.Array:
    # Ids are identifiers, not numbers: store their text so any id type round-trips.
    if isinstance(values, pd.Series):
        values = values.astype(object).where(values.notna(), None).tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    kinds = set(map(type, values))
    if kinds <= _TEXT_KINDS:
        return pa.array(values, type=_STRING)
    if kinds <= _INT_KINDS:
        with contextlib.suppress(OverflowError, pa.ArrowException):
            return pa.array(values, type=_INT).cast(_STRING)  # "17", as str(17)
    return pa.array([_id_text(v) for v in values], type=_STRING)


def _float_array(values: Any) -> pa.Array:
    return pa.array(values, type=_FLOAT, from_pandas=True)


def _int_array(values: Any) -> pa.Array:
    if isinstance(values, pd.Series) and pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype("Int64")
    try:
        return pa.array(values, type=_INT, from_pandas=True)
    except pa.ArrowTypeError:
        # Models often return booleans for labels; Arrow refuses to cast Python bools to int.
        return pa.array(
            [int(v) if isinstance(v, bool | np.bool_) else v for v in values],
            type=_INT,
            from_pandas=True,
        )


def _timestamp_array(values: Any) -> pa.Array:
    """UTC microsecond timestamps from datetimes, Timestamps, ISO strings or epoch nanoseconds.

    Naive values are taken to be UTC.
    """
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return pa.array(values // _NS_PER_US, type=_INT).cast(_TIMESTAMP)
    if (
        isinstance(values, list)
        and set(map(type, values)) <= _DATETIME_KINDS
        and {value.tzinfo for value in values if value is not None} <= _UTC_ZONES
    ):
        # UTC or naive datetimes (the service's parsed event times) straight to Arrow. Only
        # these: with PYARROW_IGNORE_TIMEZONE set (pandera sets it when imported) Arrow would
        # take another zone's wall time as UTC; pandas below converts those correctly.
        return pa.array(values, type=_TIMESTAMP)
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    parsed = pd.to_datetime(series, utc=True, format="ISO8601")
    return pa.array(parsed.dt.floor("us"), type=_TIMESTAMP, from_pandas=True)


def _convert(spec: ColumnSpec, values: Any, schema: LogSchema) -> pa.Array:
    if spec.name == schema.id_column:
        return _id_array(values)
    if spec.arrow_type == _TIMESTAMP:
        return _timestamp_array(values)
    if spec.arrow_type == _INT:
        return _int_array(values)
    if spec.arrow_type == _FLOAT:
        return _float_array(values)
    return _string_array(values)


@dataclass(frozen=True)
class _Constant:
    """One value for every row of a column (``append_columns``, ``_build_table``)."""

    value: Any


def _repeat(spec: ColumnSpec, value: Any, n_rows: int, schema: LogSchema) -> pa.Array:
    if value is None:
        return pa.nulls(n_rows, spec.arrow_type)
    one = _convert(spec, value if isinstance(value, np.ndarray) else [value], schema)
    return pa.repeat(one[0], n_rows)


def _build_table(
    columns: Mapping[str, Any],
    n_rows: int,
    schema: LogSchema,
    origin: str,
    *,
    check: bool = True,
) -> pa.Table:
    """Convert column values (lists, arrays or Series) to a checked table in the log schema.

    A column absent from ``columns`` is all null, a ``_Constant`` is repeated on every row; a
    missing event time becomes ``logged_at``. ``check=False`` leaves ``_check_values`` to the
    caller (which can then check many tables at once).
    """
    arrays: list[pa.Array] = []
    for spec in schema.column_specs:
        values = columns.get(spec.name)
        try:
            if values is None:
                array = pa.nulls(n_rows, spec.arrow_type)
            elif isinstance(values, _Constant):
                array = _repeat(spec, values.value, n_rows, schema)
            else:
                array = _convert(spec, values, schema)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            raise PredictionLogError(f"{origin}: column {spec.name!r}: {exc}") from exc
        arrays.append(array)
    try:
        table = pa.Table.from_arrays(arrays, schema=schema.arrow_schema)
    except pa.ArrowException as exc:  # e.g. a column of another length
        raise PredictionLogError(f"{origin}: {exc}") from exc
    event_time = table.column(EVENT_TIME)
    if event_time.null_count:
        filled = pc.if_else(pc.is_null(event_time), table.column(LOGGED_AT), event_time)
        table = table.set_column(
            schema.columns.index(EVENT_TIME), schema.arrow_schema.field(EVENT_TIME), filled
        )
    variant = table.column(MODEL_VARIANT)
    if variant.null_count:
        # a record that does not say which model answered was answered by the champion
        table = table.set_column(
            schema.columns.index(MODEL_VARIANT),
            schema.arrow_schema.field(MODEL_VARIANT),
            pc.fill_null(variant, CHAMPION_VARIANT),
        )
    if check:
        _check_values(table, schema, origin)
    return table


def _conform_table(table: pa.Table, schema: LogSchema, origin: str) -> pa.Table:
    """Check that ``table`` has exactly the log's columns, cast them to the log's types, check values.

    A table without ``model_variant`` (format version 1, written before the canary existed)
    gets it filled with ``champion``, the model that answered every record then.
    """
    if MODEL_VARIANT not in table.column_names:
        table = table.append_column(
            MODEL_VARIANT, pa.repeat(pa.scalar(CHAMPION_VARIANT, _STRING), table.num_rows)
        )
    present = set(table.column_names)
    missing = [c for c in schema.columns if c not in present]
    extra = sorted(present - set(schema.columns))
    if missing or extra:
        raise PredictionLogError(
            f"{origin}: columns do not match the prediction-log schema "
            f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})"
        )
    arrays = []
    fields = []
    for spec, field in zip(schema.column_specs, schema.arrow_schema, strict=True):
        column = table.column(spec.name)
        if _is_dictionary_of(column.type, spec.arrow_type):
            # read with read_dictionary (the partitioned reader's categorical features): the
            # same values, kept encoded
            arrays.append(column)
            fields.append(field.with_type(column.type))
            continue
        try:
            arrays.append(
                column if column.type == spec.arrow_type else column.cast(spec.arrow_type)
            )
        except pa.ArrowException as exc:
            raise PredictionLogError(
                f"{origin}: column {spec.name!r} has type {column.type}, "
                f"expected {spec.arrow_type}: {exc}"
            ) from exc
        fields.append(field)
    conformed = pa.Table.from_arrays(
        arrays, schema=pa.schema(fields, metadata=schema.arrow_schema.metadata)
    )
    _check_values(conformed, schema, origin)
    return conformed


def _is_dictionary_of(arrow_type: pa.DataType, value_type: pa.DataType) -> bool:
    return pa.types.is_dictionary(arrow_type) and arrow_type.value_type == value_type


def _check_values(table: pa.Table, schema: LogSchema, origin: str) -> None:
    """Raise PredictionLogError naming ``origin`` if any row breaks a rule of the format."""
    problems = [_problem(table, mask, message) for mask, message in _rule_violations(table, schema)]
    problems = [p for p in problems if p]
    if problems:
        raise PredictionLogError(f"{origin}: " + "; ".join(problems))


def _rule_violations(table: pa.Table, schema: LogSchema) -> Iterable[tuple[Any, str]]:
    """Yield (boolean mask of offending rows, rule) pairs; nulls in a mask count as passing."""
    for spec in schema.column_specs:
        if not spec.nullable:
            yield pc.is_null(table.column(spec.name)), f"{spec.name} is null"
    source = table.column(SOURCE)
    yield _not_in(source, SOURCES), f"{SOURCE} not in {SOURCES}"
    yield (
        pc.and_(pc.equal(source, "service"), pc.is_null(table.column(CHAMPION_LATENCY_MS))),
        f"{CHAMPION_LATENCY_MS} is null for a service record",
    )
    status = table.column(CHALLENGER_STATUS)
    yield _not_in(status, CHALLENGER_STATUSES), f"{CHALLENGER_STATUS} not in {CHALLENGER_STATUSES}"
    is_ok = pc.equal(status, "ok")
    for name in CHALLENGER_OUTPUT_COLUMNS:
        column = table.column(name)
        yield (
            pc.and_(is_ok, pc.is_null(column)),
            f"{name} is null although {CHALLENGER_STATUS} is 'ok'",
        )
        yield (
            pc.and_(pc.invert(is_ok), pc.is_valid(column)),
            f"{name} is set although {CHALLENGER_STATUS} is not 'ok'",
        )
    for name in (CHAMPION_PROBABILITY, CHALLENGER_PROBABILITY):
        column = table.column(name)
        outside = pc.or_(pc.less(column, 0.0), pc.greater(column, 1.0))
        yield pc.or_(outside, pc.is_nan(column)), f"{name} is NaN or outside [0, 1]"
    variant = table.column(MODEL_VARIANT)
    yield _not_in(variant, MODEL_VARIANTS), f"{MODEL_VARIANT} not in {MODEL_VARIANTS}"
    yield (
        pc.and_(pc.equal(variant, CHALLENGER_VARIANT), pc.invert(is_ok)),
        f"{MODEL_VARIANT} is 'challenger' although {CHALLENGER_STATUS} is not 'ok'",
    )


def _not_in(column: Any, allowed: Sequence[str]) -> Any:
    # Nulls are reported by the not-null rule; do not count them twice.
    return pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=pa.array(allowed))))


def _problem(table: pa.Table, mask: Any, message: str) -> str | None:
    count = pc.sum(pc.fill_null(mask, False)).as_py() or 0
    if count == 0:
        return None
    row = pc.index(pc.fill_null(mask, False), True).as_py()
    request = table.column(REQUEST_ID)[row].as_py()
    return f"{message} in {count} row(s), first at row {row} (request_id={request!r})"


def _to_pandas(
    table: pa.Table, schema: LogSchema, dtypes: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """The log's documented pandas dtypes (or ``dtypes``), for whichever of its columns
    ``table`` holds."""
    dtypes = schema.pandas_dtypes if dtypes is None else dtypes
    # Timestamps come out as documented (ns) without a second pass in pandas. One array per
    # column instead of a consolidated block per dtype: a 300,000-row partition's floats were
    # one 45 MB block, freshly page-faulted for every partition (docs/benchmarks.md).
    frame = table.to_pandas(coerce_temporal_nanoseconds=True, split_blocks=True)
    for name in frame.columns:
        if frame[name].dtype != dtypes[name]:
            frame[name] = frame[name].astype(dtypes[name])
    return frame


# --------------------------------------------------------------------------------------------
# Durable part files
# --------------------------------------------------------------------------------------------


def _host_label() -> str:
    # '-' separates the name's fields, so the host name must not contain one.
    return re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname())[:40] or "host"


def _new_token() -> str:
    return secrets.token_hex(4)


def part_file_name(flushed_at: datetime, host: str, pid: int, token: str, seq: int) -> str:
    """``part-<UTC time, ms>-<host>-<pid>-<token>-<seq>.parquet``: sortable by time, unique."""
    stamp = flushed_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    millis = flushed_at.microsecond // 1000
    return f"{PART_PREFIX}{stamp}.{millis:03d}Z-{host}-{pid}-{token}-{seq:06d}{PART_SUFFIX}"


def _date_dir(root: Path, day: date) -> Path:
    return root / f"{DATE_DIR_PREFIX}{day.isoformat()}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) and make the new entries durable."""
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    # The new directory entry lives in the parent: without this a crash can lose the whole
    # date directory even though the files inside it were fsynced.
    _fsync_dir(directory.parent)


def _write_part_atomically(directory: Path, name: str, table: pa.Table) -> Path:
    """Write ``table`` to ``directory/name`` so that the name only ever shows a complete file.

    The file is written under a hidden ``.<name>.tmp`` name, fsynced, renamed into place with
    ``os.replace`` (atomic within a file system) and the directory is fsynced so the rename
    itself survives a crash.
    """
    final = directory / name
    tmp = directory / f".{name}{TMP_SUFFIX}"
    try:
        with open(tmp, "xb") as handle:
            pq.write_table(
                table,
                handle,
                compression=PARQUET_COMPRESSION,
                use_dictionary=_dictionary_columns(table.schema),
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)
    return final


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: everything but floating-point values.

    Float features and scores are nearly all distinct, so their dictionary pages are wasted
    work to build and to decode (the drift pipeline reads every file of the log); ids,
    categories, labels, versions and reasons repeat a lot and shrink several-fold.
    """
    return [field.name for field in schema if not pa.types.is_floating(field.type)]


def _day_of_ns(ns: int) -> date:
    return date(1970, 1, 1) + timedelta(days=ns // _NS_PER_DAY)


# --------------------------------------------------------------------------------------------
# The background flush thread (shared with the ground-truth log)
# --------------------------------------------------------------------------------------------


class BackgroundFlusher:
    """A daemon thread that calls ``flush`` at least every ``interval_s`` seconds.

    ``wake()`` makes it flush at once (a full buffer). The interval is kept with deadlines, so a
    slow flush does not stretch it. ``flush`` counts and logs its own failures and keeps what
    it could not write; what it raises is logged here at debug level and the next tick tries
    again. ``stop()`` ends the thread after a flush in progress; the owner then flushes once
    more itself. Used by ``PredictionLogWriter`` and the ground-truth log's writer
    (``shadowdrift.serving.feedback``).
    """

    def __init__(
        self, flush: Callable[[], Any], interval_s: float, *, name: str, what: str
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"flush interval must be positive, got {interval_s}")
        self._flush = flush
        self.interval_s = interval_s
        self._what = what
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Flush now rather than at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread and wait for it (a flush in progress finishes). Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        deadline = time.monotonic() + self.interval_s
        while True:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.interval_s
            try:
                self._flush()
            except Exception as exc:
                # counted and logged by flush; the records wait in the buffer for the next tick
                logger.debug("Background flush of %s failed: %s", self._what, exc)


# --------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------

# Blocks of fewer records are logged like ``append``'s records: converting a block to Arrow
# costs about 0.2 ms whatever its size, a record in a batch of records about 10 us.
COLUMNS_MIN_RECORDS = 32

# Values of ``append_columns`` that hold one value per record; anything else is one value for all.
_SEQUENCE_TYPES = (list, tuple, np.ndarray, pd.Series, pa.Array, pa.ChunkedArray)


@dataclass(frozen=True)
class WriterStats:
    """A snapshot of a writer's counters."""

    records_appended: int
    records_flushed: int
    records_buffered: int
    records_dropped: int
    records_rejected: int
    files_written: int
    flush_errors: int


def _check_record(record: Any) -> None:
    if not isinstance(record, Mapping):
        raise TypeError(f"a prediction-log record must be a mapping, got {type(record).__name__}")
    missing = REQUIRED_RECORD_KEYS - record.keys()
    if missing:
        raise ValueError(f"prediction-log record lacks {sorted(missing)}: {dict(record)!r}")
    status = record[CHALLENGER_STATUS]
    if status not in CHALLENGER_STATUSES:
        raise ValueError(
            f"{CHALLENGER_STATUS} must be one of {CHALLENGER_STATUSES}, got {status!r}"
        )
    variant = record.get(MODEL_VARIANT)
    if variant is not None and variant not in MODEL_VARIANTS:
        raise ValueError(f"{MODEL_VARIANT} must be one of {MODEL_VARIANTS}, got {variant!r}")


def _pylist(values: Any) -> list[Any]:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_pylist()
    if isinstance(values, np.ndarray | pd.Series):
        return values.tolist()
    return list(values)


def _rows_of(arrays: Mapping[str, Any], constants: Mapping[str, Any], n_rows: int) -> list[dict]:
    """Columns as record dicts (small blocks, and isolating a malformed block's records)."""
    lists = [(name, _pylist(values)) for name, values in arrays.items()]
    return [{**constants, **{name: values[i] for name, values in lists}} for i in range(n_rows)]


@dataclass(frozen=True)
class _Block:
    """Records queued together: one ``append`` or ``append_columns`` call, or a flush's rest.

    Exactly one of ``records`` (dicts, from ``append``), ``arrays`` (one sequence per column,
    from ``append_columns``, with ``constants`` for the columns that have one value for all
    records) and ``table`` (converted and checked: the unwritten rest of a failed flush) is
    set. The records of a call share ``logged_at`` (ns); ``day`` is the UTC date of the rows.
    """

    day: date
    n_rows: int
    logged_at: int = 0
    records: list[Mapping[str, Any]] | None = None
    arrays: dict[str, Any] | None = None
    constants: dict[str, Any] | None = None
    table: pa.Table | None = None

    def tail(self, start: int) -> _Block:
        """The block without its first ``start`` records."""
        rest = self.n_rows - start
        if self.records is not None:
            return replace(self, n_rows=rest, records=self.records[start:])
        if self.table is not None:
            return replace(self, n_rows=rest, table=self.table.slice(start))
        assert self.arrays is not None
        return replace(
            self, n_rows=rest, arrays={name: v[start:] for name, v in self.arrays.items()}
        )

    def entries(self) -> list[tuple[int, Mapping[str, Any]]]:
        """(logged_at, record) pairs of a ``records`` or ``arrays`` block."""
        if self.records is None:
            assert self.arrays is not None and self.constants is not None
            return [(self.logged_at, r) for r in _rows_of(self.arrays, self.constants, self.n_rows)]
        return [(self.logged_at, record) for record in self.records]


class PredictionLogWriter:
    """Buffers prediction-log records and flushes them durably from a background thread.

    ``append`` (records as dicts) and ``append_columns`` (a block of records column by
    column) only check the keys, take a lock and extend a list: the caller (a request handler)
    never waits for the disk, and the conversion to Arrow happens in the flush. A daemon thread
    flushes at least every ``flush_interval_s`` seconds and as soon as ``flush_records``
    records are buffered; each flush writes new part files (at most ``flush_records`` rows
    each) into the date directory of the records' ``logged_at``.

    Records are dicts with the keys in ``REQUIRED_RECORD_KEYS``; features, ``event_time``,
    the id column and the challenger outputs are optional (null when absent), keys outside
    the schema are ignored. ``logged_at`` is stamped by ``append``.

    A flush that fails with an I/O error keeps its records at the front of the buffer for the
    next attempt, counts ``flush_errors`` and logs an error. Records that cannot be converted
    (e.g. a string where a number belongs) would fail every attempt, so they are rejected,
    counted in ``records_rejected`` and logged. If the buffer grows beyond
    ``max_buffer_records`` (the disk has been failing for a long time) the oldest records are
    dropped and counted in ``records_dropped``.

    Use one writer per process and directory, created in the process that appends (a writer
    does not survive ``fork``). ``close()`` flushes and stops the thread; it is idempotent and
    registered with ``atexit``. ``flush_interval_s=None`` disables the thread (flush yourself).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: LogSchema,
        *,
        flush_interval_s: float | None = 1.0,
        flush_records: int = 10_000,
        max_buffer_records: int = 1_000_000,
        source: str = "service",
        token: str | None = None,
        columns_min_records: int = COLUMNS_MIN_RECORDS,
    ) -> None:
        if flush_interval_s is not None and flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive or None, got {flush_interval_s}")
        if flush_records < 1 or max_buffer_records < flush_records:
            raise ValueError(
                "need 1 <= flush_records <= max_buffer_records, "
                f"got {flush_records} and {max_buffer_records}"
            )
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if token is not None and not re.fullmatch(r"[A-Za-z0-9]+", token):
            raise ValueError(f"token must be alphanumeric, got {token!r}")
        self.path = Path(path)
        self.schema = schema
        self.flush_interval_s = flush_interval_s
        self.flush_records = flush_records
        self.max_buffer_records = max_buffer_records
        self.source = source
        self.columns_min_records = columns_min_records
        self.token = token or _new_token()
        self._host = _host_label()
        self._pid = os.getpid()
        self._seq = 0
        self._writable = frozenset(schema.columns) - {LOGGED_AT, SOURCE}
        self._buffer: list[_Block] = []
        self._buffered = 0  # records in _buffer
        self._lock = threading.Lock()  # guards the buffer, the counters it touches and _closed
        self._flush_lock = threading.Lock()  # one flush at a time: keeps files in append order
        self._closed = False
        self._records_appended = 0
        self._flushed_through = 0
        self._records_flushed = 0
        self._records_dropped = 0
        self._records_rejected = 0
        self._files_written = 0
        self._flush_errors = 0
        self._drops_reported = 0
        _ensure_dir(self.path)
        self._flusher: BackgroundFlusher | None = None
        if flush_interval_s is not None:
            self._flusher = BackgroundFlusher(
                self.flush,
                flush_interval_s,
                name=f"prediction-log-flush-{self.token}",
                what=f"prediction log {self.path}",
            )
        atexit.register(self.close)

    # -- counters --------------------------------------------------------------------------

    @property
    def records_appended(self) -> int:
        return self._records_appended

    @property
    def records_flushed(self) -> int:
        return self._records_flushed

    @property
    def flushed_through(self) -> int:
        """``records_appended`` as of the start of the last flush that ended without error:
        every record appended before is in a part file (or was rejected, or dropped)."""
        return self._flushed_through

    @property
    def records_dropped(self) -> int:
        return self._records_dropped

    @property
    def records_rejected(self) -> int:
        return self._records_rejected

    @property
    def files_written(self) -> int:
        return self._files_written

    @property
    def flush_errors(self) -> int:
        return self._flush_errors

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                records_appended=self._records_appended,
                records_flushed=self._records_flushed,
                records_buffered=self._buffered,
                records_dropped=self._records_dropped,
                records_rejected=self._records_rejected,
                files_written=self._files_written,
                flush_errors=self._flush_errors,
            )

    # -- public API ------------------------------------------------------------------------

    def append(self, records: Iterable[Mapping[str, Any]], *, logged_at: int | None = None) -> None:
        """Queue ``records`` for the log; raises on a malformed record (nothing is queued).

        ``logged_at`` (ns since the epoch) defaults to now; the acknowledged mode passes the
        time its write-ahead entry was made, which a replay after a crash writes too.
        """
        if isinstance(records, Mapping):
            raise TypeError("append takes an iterable of records; wrap a single record in a list")
        batch = list(records)
        for record in batch:
            _check_record(record)
        logged_at = time.time_ns() if logged_at is None else logged_at
        self._queue(_Block(_day_of_ns(logged_at), len(batch), logged_at, records=batch))

    def append_columns(
        self,
        columns: Mapping[str, Any],
        n_records: int | None = None,
        *,
        logged_at: int | None = None,
    ) -> None:
        """Queue a block of records given column by column; raises if malformed (nothing queued).

        ``columns`` maps log columns to one value per record (a list, tuple, numpy array,
        pandas Series or pyarrow Array, all of the same length) or to a single value that
        every record gets (a string, number, datetime or None). The required columns are
        ``append``'s required keys; absent columns are null, columns outside the schema are
        ignored, ``logged_at`` is stamped here unless given (as for ``append``). ``n_records`` is needed only when every value
        is a single one. The writer keeps the sequences until the flush converts them: do not
        modify them afterwards. Blocks of fewer than ``columns_min_records`` records are
        logged as records (cheaper for a handful).
        """
        arrays: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name, value in columns.items():
            if name in self._writable:
                (arrays if isinstance(value, _SEQUENCE_TYPES) else constants)[name] = value
        lengths = {len(values) for values in arrays.values()}
        if n_records is not None:
            lengths.add(n_records)
        if len(lengths) != 1:
            raise ValueError(
                "prediction-log columns must all have one value per record "
                + (f"(lengths {sorted(lengths)})" if lengths else "or n_records must be given")
            )
        n_rows = lengths.pop()
        missing = REQUIRED_RECORD_KEYS - arrays.keys() - constants.keys()
        if missing:
            raise ValueError(f"prediction-log columns lack {sorted(missing)}")
        status = constants.get(CHALLENGER_STATUS)
        unknown = (set(_pylist(arrays[CHALLENGER_STATUS])) if status is None else {status}) - set(
            CHALLENGER_STATUSES
        )
        if unknown:
            raise ValueError(
                f"{CHALLENGER_STATUS} must be one of {CHALLENGER_STATUSES}, got {sorted(unknown)!r}"
            )
        variant = constants.get(MODEL_VARIANT)
        variants = set(_pylist(arrays[MODEL_VARIANT])) if MODEL_VARIANT in arrays else {variant}
        unknown = variants - {None, *MODEL_VARIANTS}
        if unknown:
            raise ValueError(
                f"{MODEL_VARIANT} must be one of {MODEL_VARIANTS}, got {sorted(unknown)!r}"
            )
        logged_at = time.time_ns() if logged_at is None else logged_at
        day = _day_of_ns(logged_at)
        if n_rows < self.columns_min_records:
            records = _rows_of(arrays, constants, n_rows)
            self._queue(_Block(day, n_rows, logged_at, records=records))
        else:
            self._queue(_Block(day, n_rows, logged_at, arrays=arrays, constants=constants))

    def flush(self) -> int:
        """Write everything buffered now; returns the number of records written.

        On an I/O error the unwritten records go back to the buffer and the error is raised.
        """
        with self._flush_lock:
            with self._lock:
                blocks, self._buffer, self._buffered = self._buffer, [], 0
                through = self._records_appended
            self._report_drops()
            written = self._write_blocks(blocks)
            self._flushed_through = through
            return written

    def close(self) -> None:
        """Flush and stop the background thread. Idempotent; also runs at interpreter exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._flusher is not None:
            self._flusher.stop()
        try:
            self.flush()
        except Exception:
            lost = self._buffered
            self._records_dropped += lost
            logger.exception(
                "Prediction log %s: final flush failed, %d records are lost", self.path, lost
            )
        atexit.unregister(self.close)

    def __enter__(self) -> PredictionLogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _queue(self, block: _Block) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"prediction-log writer for {self.path} is closed")
            if not block.n_rows:
                return
            self._buffer.append(block)
            self._buffered += block.n_rows
            self._records_appended += block.n_rows
            self._enforce_capacity()
            full = self._buffered >= self.flush_records
        if full and self._flusher is not None:
            self._flusher.wake()

    def _enforce_capacity(self) -> None:
        """Drop the oldest records beyond ``max_buffer_records`` (caller holds ``_lock``)."""
        overflow = self._buffered - self.max_buffer_records
        while overflow > 0:
            oldest = self._buffer[0]
            if oldest.n_rows <= overflow:
                del self._buffer[0]
                dropped = oldest.n_rows
            else:
                self._buffer[0] = oldest.tail(overflow)
                dropped = overflow
            self._buffered -= dropped
            self._records_dropped += dropped
            overflow -= dropped

    def _report_drops(self) -> None:
        # Logged from the flush path, not from append, so a full buffer cannot flood the log.
        dropped = self._records_dropped
        if dropped > self._drops_reported:
            logger.error(
                "Prediction log %s: buffer full (%d records), dropped the %d oldest records "
                "(%d in total)",
                self.path,
                self.max_buffer_records,
                dropped - self._drops_reported,
                dropped,
            )
            self._drops_reported = dropped

    def _write_blocks(self, blocks: list[_Block]) -> int:
        """Write the blocks in order: one table per UTC day, files of at most flush_records."""
        by_day: dict[date, list[_Block]] = {}
        for block in blocks:
            by_day.setdefault(block.day, []).append(block)
        days = list(by_day.items())
        written = 0
        for position, (day, day_blocks) in enumerate(days):
            # Until conversion succeeds every record of the day is at stake; afterwards
            # rejected records stay rejected and only the unwritten rows get another try.
            pending = day_blocks
            try:
                table = self._day_table(day_blocks)
                while table is not None and table.num_rows:
                    pending = [_Block(day, table.num_rows, table=table)]
                    piece = table.slice(0, self.flush_records)
                    self._write_table(day, piece)
                    written += piece.num_rows
                    table = table.slice(piece.num_rows)
                pending = []
            except Exception as exc:
                kept = pending + [block for _, rest in days[position + 1 :] for block in rest]
                self._requeue(kept)
                self._flush_errors += 1
                logger.error(
                    "Prediction log %s: flush failed (%s); %d records kept for the next attempt",
                    self.path,
                    exc,
                    sum(block.n_rows for block in kept),
                    exc_info=self._flush_errors == 1,
                )
                raise
        return written

    def _day_table(self, blocks: list[_Block]) -> pa.Table | None:
        """The blocks as one checked table in their order (malformed records are rejected)."""
        pieces: list[pa.Table | None] = []
        unchecked: list[int] = []  # positions in pieces of converted column blocks
        column_blocks: dict[int, _Block] = {}
        run: list[tuple[int, Mapping[str, Any]]] = []
        for block in blocks:
            if block.records is not None:
                # consecutive appends of records are converted together, as one batch
                run.extend((block.logged_at, record) for record in block.records)
                continue
            if run:
                pieces.append(self._table_for(run)[0])
                run = []
            if block.table is not None:
                pieces.append(block.table)
                continue
            try:
                pieces.append(self._columns_to_table(block))
            except PredictionLogError:
                pieces.append(self._table_for(block.entries())[0])
                continue
            unchecked.append(len(pieces) - 1)
            column_blocks[len(pieces) - 1] = block
        if run:
            pieces.append(self._table_for(run)[0])
        if unchecked:
            self._check_column_tables(pieces, unchecked, column_blocks)
        tables = [piece for piece in pieces if piece is not None]
        if not tables:
            return None
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _check_column_tables(
        self, pieces: list[pa.Table | None], unchecked: list[int], blocks: dict[int, _Block]
    ) -> None:
        """Check the converted column blocks at once; isolate the records of a failing one."""
        tables = [pieces[i] for i in unchecked]
        try:
            _check_values(pa.concat_tables(tables), self.schema, "records")
            return
        except PredictionLogError:
            pass
        for position in unchecked:
            try:
                _check_values(pieces[position], self.schema, "records")
            except PredictionLogError:
                pieces[position] = self._table_for(blocks[position].entries())[0]

    def _columns_to_table(self, block: _Block) -> pa.Table:
        assert block.arrays is not None and block.constants is not None
        columns: dict[str, Any] = dict(block.arrays)
        for name, value in block.constants.items():
            columns[name] = _Constant(value)
        columns[LOGGED_AT] = _Constant(np.array([block.logged_at], dtype=np.int64))
        columns[SOURCE] = _Constant(self.source)
        return _build_table(
            columns, block.n_rows, self.schema, f"records for {self.path}", check=False
        )

    def _table_for(
        self, entries: list[tuple[int, Mapping[str, Any]]]
    ) -> tuple[pa.Table | None, list[tuple[int, Mapping[str, Any]]]]:
        """The entries as a checked table, and the entries in it (malformed ones are rejected)."""
        try:
            return self._entries_to_table(entries), entries
        except PredictionLogError:
            pass
        # Isolate the bad records one by one so that the good ones are still written.
        good: list[tuple[int, Mapping[str, Any]]] = []
        errors: list[str] = []
        for entry in entries:
            try:
                self._entries_to_table([entry])
                good.append(entry)
            except PredictionLogError as exc:
                record = entry[1]
                errors.append(
                    f"request_id={record.get(REQUEST_ID)!r} "
                    f"record_index={record.get(RECORD_INDEX)!r}: {exc}"
                )
        with self._lock:
            self._records_rejected += len(errors)
        logger.error(
            "Prediction log %s: rejected %d malformed records, e.g. %s",
            self.path,
            len(errors),
            "; ".join(errors[:3]),
        )
        return (self._entries_to_table(good) if good else None), good

    def _entries_to_table(self, entries: list[tuple[int, Mapping[str, Any]]]) -> pa.Table:
        records = [record for _, record in entries]
        columns: dict[str, Any] = {
            name: [record.get(name) for record in records]
            for name in self.schema.columns
            if name not in (LOGGED_AT, SOURCE)
        }
        columns[LOGGED_AT] = np.fromiter(
            (ns for ns, _ in entries), dtype=np.int64, count=len(entries)
        )
        columns[SOURCE] = _Constant(self.source)
        return _build_table(columns, len(entries), self.schema, origin=f"records for {self.path}")

    def _write_table(self, day: date, table: pa.Table) -> None:
        directory = _date_dir(self.path, day)
        _ensure_dir(directory)
        name = part_file_name(datetime.now(UTC), self._host, self._pid, self.token, self._seq)
        self._seq += 1
        _write_part_atomically(directory, name, table)
        with self._lock:
            self._records_flushed += table.num_rows
            self._files_written += 1

    def _requeue(self, blocks: list[_Block]) -> None:
        with self._lock:
            self._buffer[:0] = blocks
            self._buffered += sum(block.n_rows for block in blocks)
            self._enforce_capacity()


# --------------------------------------------------------------------------------------------
# Batch writes
# --------------------------------------------------------------------------------------------


def write_batch(
    path: str | os.PathLike[str],
    frame: pd.DataFrame,
    schema: LogSchema,
    *,
    request_id: str | None = None,
    max_records_per_file: int = 100_000,
) -> list[Path]:
    """Log a batch-scored DataFrame with ``source="batch"``; returns the part files written.

    ``frame`` holds the features and the champion columns (``champion_probability``,
    ``champion_label``, ``champion_model_version``); every other log column is optional:
    ``request_id`` defaults to one id for the whole batch, ``record_index`` to the row
    position, ``event_time`` to ``logged_at`` (now), ``challenger_status`` to "disabled".
    Columns outside the schema are ignored. The whole frame is checked before anything is
    written; each part file appears atomically, but a crash in the middle of a large batch can
    leave some of its files written (they share the ``request_id``).
    """
    if max_records_per_file < 1:
        raise ValueError(f"max_records_per_file must be >= 1, got {max_records_per_file}")
    required = {CHAMPION_PROBABILITY, CHAMPION_LABEL, CHAMPION_MODEL_VERSION}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise PredictionLogError(f"batch frame lacks required columns {missing}")
    if frame.empty:
        return []
    logged_at = datetime.now(UTC)
    table = _build_table(
        _batch_columns(frame, schema, request_id, logged_at), len(frame), schema, "batch frame"
    )
    root = Path(path)
    directory = _date_dir(root, logged_at.date())
    _ensure_dir(directory)
    host, pid, token = _host_label(), os.getpid(), _new_token()
    written = []
    for seq, start in enumerate(range(0, table.num_rows, max_records_per_file)):
        name = part_file_name(datetime.now(UTC), host, pid, token, seq)
        chunk = table.slice(start, max_records_per_file)
        written.append(_write_part_atomically(directory, name, chunk))
    logger.info("Logged %d batch records to %d part files in %s", len(frame), len(written), root)
    return written


def _batch_columns(
    frame: pd.DataFrame, schema: LogSchema, request_id: str | None, logged_at: datetime
) -> dict[str, Any]:
    n_rows = len(frame)
    columns: dict[str, Any] = {
        name: frame[name].reset_index(drop=True) for name in schema.columns if name in frame
    }
    columns.setdefault(REQUEST_ID, [request_id or f"batch-{uuid.uuid4().hex}"] * n_rows)
    columns.setdefault(RECORD_INDEX, np.arange(n_rows, dtype=np.int64))
    columns.setdefault(CHALLENGER_STATUS, ["disabled"] * n_rows)
    columns[LOGGED_AT] = np.full(n_rows, pd.Timestamp(logged_at).value, dtype=np.int64)
    columns[SOURCE] = ["batch"] * n_rows
    return columns


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _is_hidden(name: str) -> bool:
    # Hidden ('.') and underscore names are other tools' bookkeeping (_SUCCESS, _metadata) or
    # our own temporary files; neither is part of the log.
    return name.startswith((".", "_")) or name.endswith(TMP_SUFFIX)


def _as_utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _date_dir_in_range(name: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
    if not name.startswith(DATE_DIR_PREFIX):
        return True
    try:
        day = date.fromisoformat(name.removeprefix(DATE_DIR_PREFIX))
    except ValueError:
        return True  # not ours to judge; its files are read (and checked) like any other
    if start is not None and day < start.date():
        return False
    # end is exclusive: a log ending at midnight does not need that day's directory.
    return end is None or day <= (end.to_pydatetime() - timedelta(microseconds=1)).date()


def list_part_files(path: str | os.PathLike[str], start: Any = None, end: Any = None) -> list[Path]:
    """The visible ``*.parquet`` files under ``path`` (hidden and ``*.tmp`` files skipped).

    With ``start``/``end``, date directories that cannot hold rows in [start, end) are skipped.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(errno.ENOENT, "prediction log directory not found", str(root))
    start_utc, end_utc = _as_utc(start), _as_utc(end)
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [
            d for d in subdirs if not _is_hidden(d) and _date_dir_in_range(d, start_utc, end_utc)
        ]
        found.extend(
            Path(directory) / f for f in files if f.endswith(PART_SUFFIX) and not _is_hidden(f)
        )
    return sorted(found)


def _read_part_table(file: Path, read_dictionary: Sequence[str] | None = None) -> pa.Table:
    """The whole part file; ``read_dictionary`` columns stay dictionary-encoded (see
    ``pq.ParquetFile``). Errors name the file."""
    try:
        # ParquetFile reads exactly this file: no dataset discovery, no hive columns from the
        # date=... directory name.
        with pq.ParquetFile(file, read_dictionary=read_dictionary) as part:
            return part.read()
    except FileNotFoundError as exc:
        raise PredictionLogError(
            f"part file {file} disappeared while reading (is a compaction running?)"
        ) from exc
    except (pa.ArrowException, OSError) as exc:
        raise PredictionLogError(f"part file {file} is not a readable Parquet file: {exc}") from exc


def _schema_of(file: Path, table: pa.Table) -> LogSchema:
    return schema_from_metadata(file, table.schema.metadata)


def utc_times(times: pd.Series) -> pd.Series:
    """The log stores UTC; naive timestamps in the data are taken to be UTC."""
    return times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")


def answered_by_challenger(frame: pd.DataFrame) -> np.ndarray:
    """True for the rows the challenger answered (``model_variant = challenger``: canary
    records); a frame without the column was answered by the champion throughout."""
    if MODEL_VARIANT not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame[MODEL_VARIANT].eq(CHALLENGER_VARIANT).fillna(False).to_numpy(dtype=bool)


def schema_from_metadata(file: Path, metadata: dict[bytes, bytes] | None) -> LogSchema:
    """The ``LogSchema`` a part file records in its Parquet metadata; errors name the file."""
    metadata = metadata or {}
    if METADATA_KEY not in metadata:
        raise PredictionLogError(
            f"part file {file} has no {METADATA_KEY.decode()} metadata; pass schema= explicitly"
        )
    try:
        return LogSchema.from_json(metadata[METADATA_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise PredictionLogError(f"part file {file} has unreadable schema metadata: {exc}") from exc


def _filter_time(table: pa.Table, start: Any, end: Any) -> pa.Table:
    start_utc, end_utc = _as_utc(start), _as_utc(end)
    logged_at = table.column(LOGGED_AT)
    mask = None
    if start_utc is not None:
        mask = pc.greater_equal(logged_at, pa.scalar(start_utc.to_pydatetime(), _TIMESTAMP))
    if end_utc is not None:
        below = pc.less(logged_at, pa.scalar(end_utc.to_pydatetime(), _TIMESTAMP))
        mask = below if mask is None else pc.and_(mask, below)
    return table if mask is None else table.filter(mask)


def _finish(tables: list[pa.Table], schema: LogSchema, start: Any, end: Any) -> pd.DataFrame:
    if not tables:
        return schema.empty_frame()
    table = _filter_time(pa.concat_tables(tables), start, end)
    table = table.sort_by(
        [(LOGGED_AT, "ascending"), (REQUEST_ID, "ascending"), (RECORD_INDEX, "ascending")]
    )
    return _to_pandas(table, schema)


def read_prediction_log(
    path: str | os.PathLike[str],
    start: Any = None,
    end: Any = None,
    *,
    schema: LogSchema | None = None,
) -> pd.DataFrame:
    """Read every visible part file under ``path``, checked, sorted by ``logged_at``.

    ``start``/``end`` select rows with start <= logged_at < end (naive values are UTC).
    Without ``schema`` the schema is taken from the first part file's metadata and every
    other file must match it; an empty directory then yields only the base columns.

    Raises FileNotFoundError if ``path`` is not a directory and PredictionLogError naming the
    file if a part file is unreadable or breaks the format (nothing is skipped silently).
    """
    files = list_part_files(path, start, end)
    tables = []
    for file in files:
        raw = _read_part_table(file)
        schema = schema or _schema_of(file, raw)
        tables.append(_conform_table(raw, schema, origin=f"part file {file}"))
    if schema is None:
        return _base_only_frame()
    frame = _finish(tables, schema, start, end)
    logger.debug(
        "Read %d prediction-log rows from %d part files in %s", len(frame), len(files), path
    )
    return frame


def _base_only_frame() -> pd.DataFrame:
    # No file and no schema: the features are unknown, but the fixed columns are not.
    return LogSchema((), ()).empty_frame()


def concat_partitions(
    partitions: Mapping[str, Callable[[], pd.DataFrame]],
    schema: LogSchema,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """Combine the output of a Kedro ``PartitionedDataset`` over a prediction-log directory.

    The same checks as ``read_prediction_log``; errors name the partition. Hidden partitions
    and ``*.tmp`` files are skipped, because ``PartitionedDataset`` lists hidden files too.
    """
    tables = []
    for partition_id in sorted(partitions):
        if any(_is_hidden(part) for part in partition_id.split("/")):
            logger.debug("Skipping hidden partition %s", partition_id)
            continue
        origin = f"partition {partition_id!r}"
        try:
            frame = partitions[partition_id]()
            raw = pa.Table.from_pandas(frame, preserve_index=False)
        except Exception as exc:
            raise PredictionLogError(f"{origin} could not be loaded: {exc}") from exc
        tables.append(_conform_table(raw, schema, origin))
    return _finish(tables, schema, start, end)
