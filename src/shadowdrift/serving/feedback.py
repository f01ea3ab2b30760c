"""The ground-truth log: labels that arrive after the prediction, joined to it by request id.

``POST /feedback`` appends here; the drift pipeline reads it to compute realised performance.
Same durable style as the prediction log (``docs/prediction_log.md``): Parquet part files
written under a hidden temporary name, fsynced, renamed into place, in one directory per UTC
day; a reader never sees a partial file and a crash loses at most the labels not yet flushed.

Columns (format version 1, recorded as Parquet metadata ``shadowdrift.ground_truth``):

================  ==================  =====  ==================================================
column            Arrow type          null?  meaning
================  ==================  =====  ==================================================
``request_id``    string              no     the ``request_id`` the service answered with
``record_index``  int64               yes    record within that request; null: all its records
``label``         int64               no     the observed outcome: 1 the positive class, else 0
``received_at``   timestamp[us, UTC]  no     when the service accepted the label
``source``        string              no     ``service`` (POST /feedback) or ``batch``
================  ==================  =====  ==================================================

Join: ``prediction_log.merge(labels, on=["request_id", "record_index"])`` after expanding rows
with a null ``record_index`` to every record of their request; when a record is labelled more
than once, the latest ``received_at`` wins (``read_ground_truth(..., latest_only=True)``).
Files written before the column was called ``label`` name it ``churned``; readers take both.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shadowdrift.prediction_log import (
    BackgroundFlusher,
    _date_dir,
    _day_of_ns,
    _ensure_dir,
    _host_label,
    _new_token,
    _write_part_atomically,
    list_part_files,
    part_file_name,
)
from shadowdrift.serving.request_validation import Problem, RequestRejected, _shown, json_type
from shadowdrift.value_types import label_of, value_kind

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_KEY = b"shadowdrift.ground_truth"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_LABEL_FIELDS = frozenset({"request_id", "label", "record_index"})
# the outcome column's earlier name, still read (files are never rewritten)
_EARLIER_LABEL_COLUMN = "churned"
# an unknown field's name is echoed in the error at most this long
_MAX_SHOWN_FIELD = 100

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("record_index", pa.int64(), nullable=True),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("received_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ],
    metadata={METADATA_KEY: json.dumps({"format_version": FORMAT_VERSION}).encode()},
)


@dataclass(frozen=True)
class Label:
    """One piece of ground truth."""

    request_id: str
    label: int
    record_index: int | None = None


def parse_labels(payload: Any, max_items: int, positive_class: Any = None) -> list[Label]:
    """Labels from a ``/feedback`` body: one object or ``{"labels": [...]}``; 422/413 otherwise.

    A label is 0/1 or true/false, or, when the schema names a ``positive_class``, a value of
    the target (the positive class counts as 1, another value as 0).
    """
    if isinstance(payload, Mapping) and "labels" in payload:
        items = payload["labels"]
        if not isinstance(items, list):
            raise RequestRejected(
                422,
                "labels must be a list",
                [_LabelProblem(None, "labels", f"must be an array, got {json_type(items)}")],
            )
        nested = True
    else:
        items, nested = [payload], False
    if not items:
        raise RequestRejected(
            422, "no labels", [_LabelProblem(None, "labels", "must not be empty")]
        )
    if len(items) > max_items:
        raise RequestRejected(
            413, f"too many labels: {len(items)}, the limit is {max_items} per request"
        )
    labels, problems = [], []
    for index, item in enumerate(items):
        label, item_problems = _parse_label(item, index if nested else None, positive_class)
        problems.extend(item_problems)
        if label is not None:
            labels.append(label)
    if problems:
        raise RequestRejected(
            422,
            f"{len(problems)} problem(s) in the labels; nothing was stored",
            problems[:50],
            len(problems),
        )
    return labels


def _outcome(value: Any, positive_class: Any) -> int | None:
    """0/1 for a label value, None if it is not one.

    Without a positive class: 0, 1, true or false. With one: a value of the target's own type
    (the positive class is 1, any other value 0), so that a client sending 1 for a "yes"/"no"
    target is refused rather than read as "not yes".
    """
    if positive_class is None:
        if isinstance(value, bool) or (type(value) in (int, float) and value in (0, 1)):
            return int(value)
        return None
    if value_kind(value) is None or value_kind(value) != value_kind(positive_class):
        return None
    return label_of(value, positive_class)


def _parse_label(
    item: Any, index: int | None, positive_class: Any = None
) -> tuple[Label | None, list[Problem]]:
    def problem(name: str, message: str) -> Problem:
        return _LabelProblem(index, name, message)

    if not isinstance(item, Mapping):
        return None, [problem("labels", f"a label must be a JSON object, got {json_type(item)}")]
    problems = []
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
        problems.append(
            problem(
                "request_id",
                "is required: the request_id of the prediction (1-128 characters of "
                f"letters, digits, '.', '_', ':', '-'), got {json_type(request_id)}",
            )
        )
    outcome = _outcome(item.get("label"), positive_class)
    if outcome is None:
        expected = (
            f"the target's value ({positive_class!r} for the positive class)"
            if positive_class is not None
            else "0, 1, true or false"
        )
        problems.append(
            problem("label", f"is required: {expected}, got {_shown(item.get('label'))}")
        )
    record_index = item.get("record_index")
    if record_index is not None and (type(record_index) is not int or record_index < 0):
        problems.append(
            problem(
                "record_index",
                f"must be a non-negative integer or null, got {_shown(record_index)}",
            )
        )
    unknown = sorted(str(name)[:_MAX_SHOWN_FIELD] for name in set(item) - _LABEL_FIELDS)
    if unknown:
        problems.extend(problem(name, "unknown field") for name in unknown)
    if problems:
        return None, problems
    return Label(request_id, outcome, record_index), []


class _LabelProblem(Problem):
    """A problem located in ``labels[i].field`` rather than ``records[i].field``."""

    def to_json(self) -> dict[str, Any]:
        loc: list[Any] = ["labels"] if self.record_index is not None else []
        if self.record_index is not None:
            loc.append(self.record_index)
        if self.field is not None and not (self.field == "labels" and loc):
            loc.append(self.field)
        return {
            "loc": loc,
            "label_index": self.record_index,
            "field": self.field,
            "msg": self.message,
        }


class GroundTruthWriter:
    """Buffers labels and flushes them as durable Parquet part files from a daemon thread.

    One writer per process (create it inside the BentoML worker); ``close()`` flushes and stops
    the thread and is registered with ``atexit``. ``flush_interval_s=None``: flush yourself.
    ``token`` (alphanumeric) names the writer in its files' names; random by default.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval_s: float | None = 1.0,
        source: str = "service",
        token: str | None = None,
    ) -> None:
        if token is not None and not re.fullmatch(r"[A-Za-z0-9]+", token):
            raise ValueError(f"token must be alphanumeric, got {token!r}")
        self.path = Path(path)
        self.source = source
        self.token = token or _new_token()
        self._host = _host_label()
        self._pid = os.getpid()
        self._seq = 0
        self._buffer: list[tuple[int, Label]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._closed = False
        self.records_appended = 0
        # records_appended as of the start of the last flush that ended without error
        self.flushed_through = 0
        self.records_flushed = 0
        self.flush_errors = 0
        _ensure_dir(self.path)
        # the prediction log's flush thread: at least every flush_interval_s, errors retried
        self._flusher: BackgroundFlusher | None = None
        if flush_interval_s is not None:
            self._flusher = BackgroundFlusher(
                self.flush,
                flush_interval_s,
                name=f"ground-truth-flush-{self.token}",
                what=f"ground-truth log {self.path}",
            )
        atexit.register(self.close)

    def append(self, labels: Iterable[Label], *, received_at: int | None = None) -> int:
        """Queue labels; ``received_at`` (ns since the epoch) defaults to now (the acknowledged
        mode passes its write-ahead entry's time, which a replay after a crash writes too)."""
        batch = list(labels)
        received_at = time.time_ns() if received_at is None else received_at
        with self._lock:
            if self._closed:
                raise RuntimeError(f"ground-truth writer for {self.path} is closed")
            self._buffer.extend((received_at, label) for label in batch)
            self.records_appended += len(batch)
        return len(batch)

    def flush(self) -> int:
        """Write everything buffered now; on an I/O error the labels go back to the buffer."""
        with self._flush_lock:
            with self._lock:
                entries, self._buffer = self._buffer, []
                through = self.records_appended
            if not entries:
                self.flushed_through = through
                return 0
            by_day: dict[Any, list[tuple[int, Label]]] = {}
            for entry in entries:
                by_day.setdefault(_day_of_ns(entry[0]), []).append(entry)
            written = 0
            for day, day_entries in by_day.items():
                try:
                    self._write(day, day_entries)
                except Exception:
                    with self._lock:
                        self._buffer[:0] = [e for d, es in by_day.items() if d >= day for e in es]
                    self.flush_errors += 1
                    logger.exception("Ground-truth log %s: flush failed; labels kept", self.path)
                    raise
                written += len(day_entries)
            self.flushed_through = through
            return written

    def _write(self, day: Any, entries: list[tuple[int, Label]]) -> None:
        table = pa.Table.from_arrays(
            [
                pa.array([label.request_id for _, label in entries], pa.string()),
                pa.array([label.record_index for _, label in entries], pa.int64()),
                pa.array([label.label for _, label in entries], pa.int64()),
                pa.array([ns // 1000 for ns, _ in entries], pa.int64()).cast(
                    SCHEMA.field("received_at").type
                ),
                pa.array([self.source] * len(entries), pa.string()),
            ],
            schema=SCHEMA,
        )
        directory = _date_dir(self.path, day)
        _ensure_dir(directory)
        name = part_file_name(datetime.now(UTC), self._host, self._pid, self.token, self._seq)
        self._seq += 1
        _write_part_atomically(directory, name, table)
        self.records_flushed += len(entries)

    def close(self) -> None:
        """Flush and stop the thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._flusher is not None:
            self._flusher.stop()
        try:
            self.flush()
        except Exception:
            logger.exception("Ground-truth log %s: final flush failed", self.path)
        atexit.unregister(self.close)


def read_ground_truth(path: str | os.PathLike[str], *, latest_only: bool = False) -> pd.DataFrame:
    """All labels under ``path`` (hidden and ``.tmp`` files skipped), oldest first.

    ``latest_only`` keeps the most recent label per ``(request_id, record_index)``.
    """
    files = list_part_files(path)
    if not files:
        frame = SCHEMA.empty_table().to_pandas()
    else:
        tables = []
        for file in files:
            with pq.ParquetFile(file) as part:
                table = part.read()
            if _EARLIER_LABEL_COLUMN in table.column_names:
                names = ["label" if n == _EARLIER_LABEL_COLUMN else n for n in table.column_names]
                table = table.rename_columns(names)
            tables.append(table.cast(SCHEMA))
        frame = pa.concat_tables(tables).to_pandas()
    frame["record_index"] = frame["record_index"].astype("Int64")
    frame = frame.sort_values("received_at", kind="stable").reset_index(drop=True)
    if latest_only and len(frame):
        frame = frame.drop_duplicates(["request_id", "record_index"], keep="last").reset_index(
            drop=True
        )
    return frame
