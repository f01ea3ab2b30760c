"""Acknowledged durability for the prediction log and the ground-truth log.

``serving.log.durability: acknowledged`` (docs/prediction_log.md, "Durability modes"): the
service answers ``/predict`` and ``/feedback`` only once the request's records are in a
write-ahead log on disk (``write_ahead_log.py``: a segment per worker, group commit), and the
writers keep producing the same Parquet part files as in the buffered mode. Pieces:

* ``AcknowledgedLogs`` is what ``ServingCore`` holds in that mode. ``write_ahead(log)``
  stamps a request's log entries with their ``logged_at`` and queues them as an ``answered``
  entry (the future resolves when it is fsynced); ``labels(labels)`` does the same for
  ``/feedback`` and hands the labels to the ground-truth writer.
* ``AcknowledgedPredictionWriter`` stands in for the ``PredictionLogWriter``: when the shadow
  hands it the finished entries it passes them on with their stamp and writes an ``outcome``
  entry (the challenger's columns, no fsync of its own), so that a crash costs the challenger's
  results only of requests it had not finished.
* ``recover_prediction_log`` / ``recover_ground_truth`` (run by every worker at start-up, and
  by ``python -m shadowdrift.prediction_wal``) replay the segments of dead workers into part
  files and delete them. Idempotent: a record already in a part file of that writer (same
  ``logged_at``, ``request_id``, ``record_index``; the stamps are unique per writer) is not
  written again, so a crash between "part file written" and "segment deleted" duplicates
  nothing. Replayed records whose challenger outcome was lost get
  ``challenger_status = "interrupted"``.

Readers never see the write-ahead log: it lives in ``<log>/_wal/``, which every reader skips
(names starting with ``_``), and its files end in ``.wal``, not ``.parquet``.
"""

from __future__ import annotations

import argparse
import logging
import os
import struct
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shadowdrift.prediction_log import (
    CHALLENGER_LABEL,
    CHALLENGER_LATENCY_MS,
    CHALLENGER_MODEL_VERSION,
    CHALLENGER_PROBABILITY,
    CHALLENGER_STATUS,
    INTERRUPTED,
    LOGGED_AT,
    PART_PREFIX,
    PART_SUFFIX,
    RECORD_INDEX,
    REQUEST_ID,
    SOURCE,
    LogSchema,
    PredictionLogWriter,
    WriterStats,
    _host_label,
    list_part_files,
    part_file_name,
)
from shadowdrift.serving.feedback import GroundTruthWriter, Label
from shadowdrift.serving.log_entries import LogEntries, set_column
from shadowdrift.write_ahead_log import (
    SegmentContents,
    WriteAheadLog,
    WriteAheadStats,
    WriterProgress,
    recover_orphans,
)

logger = logging.getLogger(__name__)

BUFFERED = "buffered"
ACKNOWLEDGED = "acknowledged"
DURABILITY_MODES = (BUFFERED, ACKNOWLEDGED)
WAL_DIR = "_wal"

# Entry kinds: a request's records as answered, the challenger's columns for them once the
# shadow finished, a /feedback request's labels.
ANSWERED = 1
OUTCOME = 2
LABELS = 3
_ENTRY = struct.Struct("<BQ")  # kind, stamp (ns since the epoch, the records' logged_at)
_RECORDS = b"R"  # body: orjson list of record dicts
_COLUMNS = b"C"  # body: a column block (_encode_columns)
_LENGTH = struct.Struct("<I")
CHALLENGER_COLUMNS = (
    CHALLENGER_STATUS,
    CHALLENGER_PROBABILITY,
    CHALLENGER_LABEL,
    CHALLENGER_MODEL_VERSION,
    CHALLENGER_LATENCY_MS,
)
# A part file is named after its flush, which follows its records' logged_at; a clock that
# steps back by less than this still finds them.
_CLOCK_MARGIN = timedelta(minutes=5)


# --------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _encode_columns(columns: Mapping[str, Any]) -> bytes:
    """A column block: numeric numpy arrays as raw bytes, the rest in a JSON header."""
    arrays: list[tuple[str, np.ndarray]] = []
    header: dict[str, Any] = {"arrays": [], "lists": {}, "constants": {}}
    for name, value in columns.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            array = np.ascontiguousarray(value)
            arrays.append((name, array))
            header["arrays"].append([name, array.dtype.str, array.nbytes])
        elif isinstance(value, list | tuple | np.ndarray):
            header["lists"][name] = value
        else:
            header["constants"][name] = value
    head = _json(header)
    return b"".join([_LENGTH.pack(len(head)), head, *(array.tobytes() for _, array in arrays)])


def _decode_columns(data: bytes) -> dict[str, Any]:
    (length,) = _LENGTH.unpack_from(data)
    header = orjson.loads(data[_LENGTH.size : _LENGTH.size + length])
    columns: dict[str, Any] = {**header["constants"], **header["lists"]}
    offset = _LENGTH.size + length
    for name, dtype, nbytes in header["arrays"]:
        columns[name] = np.frombuffer(data, dtype=np.dtype(dtype), count=-1, offset=offset)[
            : nbytes // np.dtype(dtype).itemsize
        ]
        offset += nbytes
    return columns


def encode_log(kind: int, stamp: int, log: LogEntries, writable: frozenset[str]) -> bytes:
    """An entry holding ``log`` (only the columns the writer would write)."""
    head = _ENTRY.pack(kind, stamp)
    if isinstance(log, dict):
        return head + _COLUMNS + _encode_columns({k: v for k, v in log.items() if k in writable})
    records = [{k: v for k, v in record.items() if k in writable} for record in log]
    return head + _RECORDS + _json(records)


def outcome_of(log: LogEntries) -> dict[str, Any]:
    """The challenger's columns of finished log entries (as a column block)."""
    if isinstance(log, dict):
        return {name: log[name] for name in CHALLENGER_COLUMNS if name in log}
    return {name: [record.get(name) for record in log] for name in CHALLENGER_COLUMNS}


def encode_labels(stamp: int, labels: Iterable[Label]) -> bytes:
    rows = [[label.request_id, label.label, label.record_index] for label in labels]
    return _ENTRY.pack(LABELS, stamp) + _json(rows)


@dataclass(frozen=True)
class Entry:
    """A decoded entry: its kind, stamp and body (records, a column block or labels)."""

    kind: int
    stamp: int
    body: Any


def decode_entry(payload: bytes) -> Entry:
    kind, stamp = _ENTRY.unpack_from(payload)
    rest = payload[_ENTRY.size :]
    if kind == LABELS:
        return Entry(kind, stamp, [Label(r, y, i) for r, y, i in orjson.loads(rest)])
    if kind not in (ANSWERED, OUTCOME):
        raise ValueError(f"unknown write-ahead entry kind {kind}")
    form, body = rest[:1], rest[1:]
    return Entry(kind, stamp, orjson.loads(body) if form == _RECORDS else _decode_columns(body))


# --------------------------------------------------------------------------------------------
# Writing: the acknowledged mode
# --------------------------------------------------------------------------------------------


def _stamp_of(record: Mapping[str, Any]) -> int | None:
    return record.get(LOGGED_AT)


def _wal_name(token: str) -> str:
    return f"{_host_label()}-{os.getpid()}-{token}"


class AcknowledgedPredictionWriter:
    """A ``PredictionLogWriter`` behind a write-ahead log (the writer's interface, plus
    ``write_ahead``). Entries stamped by ``write_ahead`` keep that stamp as ``logged_at``."""

    def __init__(
        self,
        writer: PredictionLogWriter,
        *,
        segment_max_bytes: int,
        segment_max_age_s: float,
        on_commit: Any = None,
    ) -> None:
        self.writer = writer
        self._writable = frozenset(writer.schema.columns) - {LOGGED_AT, SOURCE}
        header = {
            "log": "prediction_log",
            "writer": writer.token,
            "source": writer.source,
            "schema": writer.schema.to_json(),
        }
        self.wal = WriteAheadLog(
            writer.path / WAL_DIR,
            _wal_name(writer.token),
            header,
            self._progress,
            segment_max_bytes=segment_max_bytes,
            segment_max_age_s=segment_max_age_s,
            on_commit=on_commit,
        )

    def __getattr__(self, name: str) -> Any:  # path, schema, token, counters, ...
        return getattr(self.writer, name)

    def _progress(self) -> WriterProgress:
        return WriterProgress(self.writer.flushed_through, self.writer.records_dropped)

    def write_ahead(self, log: LogEntries) -> Future:
        """Stamp ``log`` and queue it; the future resolves once the entry is fsynced."""
        stamp = self.wal.stamp()
        set_column(log, LOGGED_AT, stamp)
        return self.wal.append(encode_log(ANSWERED, stamp, log, self._writable), stamp)

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        for stamp, group in groupby(records, key=_stamp_of):
            batch = list(group)
            self.writer.append(batch, logged_at=stamp)
            if stamp is not None:
                self._handed_over(stamp, batch)

    def append_columns(self, columns: Mapping[str, Any], n_records: int | None = None) -> None:
        stamp = columns.get(LOGGED_AT)
        self.writer.append_columns(columns, n_records, logged_at=stamp)
        if stamp is not None:
            self._handed_over(stamp, columns)

    def _handed_over(self, stamp: int, log: LogEntries) -> None:
        position = self.writer.records_appended
        payload = _ENTRY.pack(OUTCOME, stamp) + _COLUMNS + _encode_columns(outcome_of(log))
        try:
            self.wal.append(payload, sync=False, position=position)
        except Exception:  # closed: the records are with the writer; a crash leaves them
            logger.debug("challenger outcome not written ahead", exc_info=True)  # interrupted
        self.wal.handed_over(stamp, position)

    def flush(self) -> int:
        return self.writer.flush()

    def stats(self) -> WriterStats:
        return self.writer.stats()

    def close(self) -> None:
        """Close the writer (its final flush); ``AcknowledgedLogs.close`` closes the log."""
        self.writer.close()


class AcknowledgedLogs:
    """Both logs of a worker in the acknowledged mode (see the module docstring)."""

    def __init__(
        self,
        predictions: PredictionLogWriter,
        ground_truth: GroundTruthWriter,
        *,
        segment_max_bytes: int = 64 << 20,
        segment_max_age_s: float = 1.0,
        on_commit: Any = None,
    ) -> None:
        options = {
            "segment_max_bytes": segment_max_bytes,
            "segment_max_age_s": segment_max_age_s,
            "on_commit": on_commit,
        }
        self.predictions = AcknowledgedPredictionWriter(predictions, **options)
        self.ground_truth = ground_truth
        self.labels_wal = WriteAheadLog(
            ground_truth.path / WAL_DIR,
            _wal_name(ground_truth.token),
            {"log": "ground_truth", "writer": ground_truth.token, "source": ground_truth.source},
            lambda: WriterProgress(ground_truth.flushed_through, 0),
            **options,
        )

    def write_ahead(self, log: LogEntries) -> Future:
        """Queue a request's records; the future fails if they cannot be made durable."""
        try:
            return self.predictions.write_ahead(log)
        except Exception as exc:  # closed (shutting down) or unencodable: not acknowledged
            return _failed(exc)

    def labels(self, labels: list[Label]) -> Future:
        """Queue ``labels`` in the write-ahead log and hand them to the ground-truth writer."""
        try:
            stamp = self.labels_wal.stamp()
            durable = self.labels_wal.append(encode_labels(stamp, labels), stamp)
        except Exception as exc:  # closed (shutting down): not acknowledged, not logged
            return _failed(exc)
        self.ground_truth.append(labels, received_at=stamp)
        self.labels_wal.handed_over(stamp, self.ground_truth.records_appended)
        return durable

    def close(self) -> None:
        """Close both write-ahead logs; call after both writers are closed."""
        self.predictions.wal.close()
        self.labels_wal.close()

    def describe(self) -> dict[str, Any]:
        return {
            "mode": ACKNOWLEDGED,
            "prediction_log": _describe(self.predictions.wal.stats()),
            "ground_truth": _describe(self.labels_wal.stats()),
        }


def open_durable_logs(
    predictions: PredictionLogWriter, ground_truth: GroundTruthWriter, durability: Any
) -> AcknowledgedLogs | None:
    """Replay what crashed writers of both logs acknowledged but had not flushed (whatever the
    mode now); in the acknowledged mode (``durability``: ``serving.log`` settings, with
    ``acknowledged``, ``segment_max_bytes``, ``segment_max_age_s``) open the write-ahead logs."""
    recover_prediction_log(predictions.path)
    recover_ground_truth(ground_truth.path)
    if not durability.acknowledged:
        return None
    return AcknowledgedLogs(
        predictions,
        ground_truth,
        segment_max_bytes=durability.segment_max_bytes,
        segment_max_age_s=durability.segment_max_age_s,
    )


def all_durable(futures: list[Future | None]) -> Future | None:
    """One future for several write-ahead entries: done when all are, failed if one fails."""
    pending = [future for future in futures if future is not None]
    if len(pending) <= 1:
        return pending[0] if pending else None
    combined: Future = Future()
    remaining = [len(pending)]
    lock = threading.Lock()

    def done(future: Future) -> None:
        with lock:
            if combined.done():
                return
            if future.exception() is not None:
                combined.set_exception(future.exception())
                return
            remaining[0] -= 1
            if remaining[0] == 0:
                combined.set_result(None)

    for future in pending:
        future.add_done_callback(done)
    return combined


def _failed(exc: BaseException) -> Future:
    future: Future = Future()
    future.set_exception(exc)
    return future


def _describe(stats: WriteAheadStats) -> dict[str, Any]:
    described = dict(vars(stats))
    described["mean_commit_ms"] = (
        round(1000 * stats.fsync_seconds / stats.commits, 3) if stats.commits else None
    )
    return described


# --------------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------------


def _part_name_fields(name: str) -> tuple[str, str] | None:
    """(flush time text, writer token) of a part file's name; None for other names."""
    if not (name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)):
        return None
    fields = name[: -len(PART_SUFFIX)].split("-")
    return (fields[1], fields[4]) if len(fields) == 6 else None


def _files_of_writer(root: Path, token: str, since_ns: int) -> list[Path]:
    """Part files under ``root`` that writer ``token`` (or a replay of it) wrote since then."""
    since = datetime.fromtimestamp(since_ns / 1e9, UTC) - _CLOCK_MARGIN
    earliest = part_file_name(since, "h", 0, "t", 0)[len(PART_PREFIX) :].split("-")[0]
    found = []
    for file in list_part_files(root, start=since):
        fields = _part_name_fields(file.name)
        if fields is not None and fields[1] == token and fields[0] >= earliest:
            found.append(file)
    return found


def _logged_keys(files: list[Path], columns: tuple[str, str, str]) -> Counter:
    """(time in us, request id, record index) of every row of ``files``, counted."""
    keys: Counter = Counter()
    for file in files:
        with pq.ParquetFile(file) as part:
            table = part.read(columns=list(columns))
        times = table.column(columns[0]).cast(pa.int64()).to_pylist()
        ids = table.column(columns[1]).to_pylist()
        indexes = table.column(columns[2]).to_pylist()
        keys.update(zip(times, ids, indexes, strict=True))
    return keys


def _is_logged(key: tuple[int, str, int | None], logged: Counter) -> bool:
    """Whether a part file holds the row ``key``; each row found answers for one record."""
    if logged[key] > 0:
        logged[key] -= 1
        return True
    return False


def _rows(value: Any, keep: np.ndarray) -> Any:
    if isinstance(value, np.ndarray):
        return value[keep]
    if isinstance(value, list):
        return [item for item, kept in zip(value, keep.tolist(), strict=True) if kept]
    return value  # one value for every record


def _unlogged(log: LogEntries, stamp: int, logged: Counter) -> LogEntries:
    """The records of ``log`` that no part file holds yet (all, some or none)."""
    time_us = stamp // 1000
    if isinstance(log, list):
        return [r for r in log if not _is_logged((time_us, r[REQUEST_ID], r[RECORD_INDEX]), logged)]
    indexes = np.asarray(log[RECORD_INDEX]).tolist()
    request_ids = log[REQUEST_ID]
    if isinstance(request_ids, str):
        request_ids = [request_ids] * len(indexes)
    keep = np.array(
        [
            not _is_logged((time_us, request_id, index), logged)
            for request_id, index in zip(request_ids, indexes, strict=True)
        ],
        dtype=bool,
    )
    if keep.all():
        return log
    return {name: _rows(value, keep) for name, value in log.items()} if keep.any() else []


def _completed(log: LogEntries, outcome: dict[str, Any] | None) -> LogEntries:
    """The answered entries with the challenger's columns, or marked ``interrupted``.

    Entries written ahead with a challenger status already hold its outcome (the canary's
    records: the challenger's call ended before the answer) and are kept as they are.
    """
    if outcome is None:
        if isinstance(log, dict) and log.get(CHALLENGER_STATUS) is not None:
            return log
        outcome = {name: None for name in CHALLENGER_COLUMNS} | {CHALLENGER_STATUS: INTERRUPTED}
        if isinstance(log, list):
            pending = [record for record in log if record.get(CHALLENGER_STATUS) is None]
            for record in pending:
                record.update(outcome)
            return log
    columns = outcome
    if isinstance(log, dict):
        return {**log, **columns}
    for index, record in enumerate(log):
        for name, values in columns.items():
            record[name] = values[index] if isinstance(values, list | np.ndarray) else values
    return log


def _size(log: LogEntries) -> int:
    return len(log) if isinstance(log, list) else len(np.asarray(log[RECORD_INDEX]))


def _header(segments: list[SegmentContents], kind: str) -> dict[str, Any]:
    headers = [segment.header for segment in segments if segment.header is not None]
    if not headers or headers[0].get("log") != kind:
        raise ValueError(f"write-ahead segments {segments[0].path.parent} are not a {kind} log")
    return headers[0]


def _entries(segments: list[SegmentContents]) -> list[Entry]:
    return [decode_entry(payload) for segment in segments for payload in segment.entries]


def _replay_predictions(path: Path, segments: list[SegmentContents]) -> None:
    """Write the records of a dead writer's segments that no part file holds yet."""
    header = _header(segments, "prediction_log")
    answered: dict[int, LogEntries] = {}
    outcomes: dict[int, dict[str, Any]] = {}
    for entry in _entries(segments):
        (answered if entry.kind == ANSWERED else outcomes)[entry.stamp] = entry.body
    if not answered:
        return
    token = header["writer"]
    logged = _logged_keys(
        _files_of_writer(path, token, min(answered)), (LOGGED_AT, REQUEST_ID, RECORD_INDEX)
    )
    writer = PredictionLogWriter(
        path,
        LogSchema.from_json(header["schema"]),
        flush_interval_s=None,
        token=token,
        source=header["source"],
        flush_records=100_000,
        max_buffer_records=10_000_000,
    )
    counts: Counter = Counter()
    for stamp in sorted(answered):
        log = _unlogged(answered[stamp], stamp, logged)
        counts["found"] += _size(answered[stamp]) - _size(log)
        if not _size(log):
            continue
        counts["interrupted" if stamp not in outcomes else "complete"] += _size(log)
        log = _completed(log, outcomes.get(stamp))
        if isinstance(log, dict):
            writer.append_columns(log, logged_at=stamp)
        else:
            writer.append(log, logged_at=stamp)
    writer.flush()
    writer.close()
    logger.warning(
        "Recovered %d records of prediction-log writer %s from its write-ahead log (%d of "
        "them without the challenger's outcome: challenger_status interrupted); %d were "
        "already in part files",
        counts["complete"] + counts["interrupted"],
        token,
        counts["interrupted"],
        counts["found"],
    )


def _replay_labels(path: Path, segments: list[SegmentContents]) -> None:
    """Write the labels of a dead writer's segments that no part file holds yet."""
    header = _header(segments, "ground_truth")
    entries = sorted(_entries(segments), key=lambda entry: entry.stamp)
    if not entries:
        return
    token = header["writer"]
    logged = _logged_keys(
        _files_of_writer(path, token, entries[0].stamp),
        ("received_at", "request_id", "record_index"),
    )
    writer = GroundTruthWriter(path, flush_interval_s=None, token=token, source=header["source"])
    found = 0
    for entry in entries:
        time_us = entry.stamp // 1000
        labels = [
            label
            for label in entry.body
            if not _is_logged((time_us, label.request_id, label.record_index), logged)
        ]
        found += len(entry.body) - len(labels)
        if labels:
            writer.append(labels, received_at=entry.stamp)
    recovered = writer.flush()
    writer.close()
    logger.warning(
        "Recovered %d labels of ground-truth writer %s from its write-ahead log; %d were "
        "already in part files",
        recovered,
        token,
        found,
    )


def recover_prediction_log(path: str | os.PathLike[str]) -> int:
    """Replay the write-ahead logs of dead writers of the prediction log at ``path``.

    Returns the number of entries replayed (0 when there is nothing to do). Safe while
    writers are running: only the directories of processes that are gone are touched.
    """
    root = Path(path)
    return recover_orphans(root / WAL_DIR, partial(_replay_predictions, root))


def recover_ground_truth(path: str | os.PathLike[str]) -> int:
    """``recover_prediction_log`` for the ground-truth log at ``path``."""
    root = Path(path)
    return recover_orphans(root / WAL_DIR, partial(_replay_labels, root))


def main(argv: list[str] | None = None) -> None:
    """``python -m shadowdrift.prediction_wal``: recover both logs while the service is down
    (a running service recovers at start-up by itself)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--prediction-log", help="default: serving.prediction_log.path")
    parser.add_argument("--ground-truth", help="default: serving.ground_truth.path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.prediction_log is None or args.ground_truth is None:
        from shadowdrift.serving.config import load_serving_settings  # noqa: PLC0415

        settings = load_serving_settings()
        args.prediction_log = args.prediction_log or settings.prediction_log.path
        args.ground_truth = args.ground_truth or settings.ground_truth.path
    entries = recover_prediction_log(args.prediction_log) + recover_ground_truth(args.ground_truth)
    logger.info("Replayed %d write-ahead entries", entries)


if __name__ == "__main__":
    main(sys.argv[1:])
