"""The prediction log: format, durable writer, readers (plain and through Kedro's catalog)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from shadowdrift import prediction_log as plog
from shadowdrift.prediction_log import (
    LogSchema,
    PredictionLogError,
    PredictionLogWriter,
    concat_partitions,
    list_part_files,
    read_prediction_log,
    write_batch,
)
from shadowdrift.simulation import CATEGORICAL_FEATURES, ID_COLUMN, NUMERIC_FEATURES

SCHEMA = LogSchema(NUMERIC_FEATURES, CATEGORICAL_FEATURES, ID_COLUMN)
PART_NAME = re.compile(
    r"part-\d{8}T\d{6}\.\d{3}Z-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-(?P<token>[A-Za-z0-9]+)"
    r"-(?P<seq>\d{6,})\.parquet"
)

# The catalog entry documented in docs/prediction_log.md (path replaced per test).
CATALOG_YAML = """
prediction_log:
  type: partitions.PartitionedDataset
  path: data/07_model_output/prediction_log
  dataset:
    type: pandas.ParquetDataset
  filename_suffix: .parquet
"""


def make_record(request_id: str, index: int = 0, status: str = "ok") -> dict[str, Any]:
    """A record as the service would log it; the challenger columns follow ``status``."""
    seed = index % 7
    record: dict[str, Any] = {
        "request_id": request_id,
        "record_index": index,
        "event_time": "2025-03-01T12:00:00Z",
        ID_COLUMN: 1000 + index,
        "champion_probability": 0.1 * seed,
        "champion_label": int(seed > 3),
        "champion_model_version": "champion-3",
        "champion_latency_ms": 1.5,
        "challenger_status": status,
        "challenger_latency_ms": 2.5 if status in ("ok", "failed") else None,
    }
    record.update({name: float(seed) for name in NUMERIC_FEATURES})
    record.update({name: f"cat{seed}" for name in CATEGORICAL_FEATURES})
    if status == "ok":
        record.update(
            challenger_probability=0.05 * seed,
            challenger_label=int(seed > 4),
            challenger_model_version="challenger-1",
        )
    return record


# Columns that hold one value for a whole block when the service logs it column by column.
CONSTANT_COLUMNS = (
    "champion_model_version",
    "champion_latency_ms",
    "challenger_status",
    "challenger_model_version",
    "challenger_latency_ms",
)


def columns_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The records as ``append_columns`` takes them, laid out as the service lays them out:
    numbers as numpy arrays (NaN for a missing one), one value for the block's constants."""
    columns: dict[str, Any] = {}
    for key in records[0]:
        values = [record.get(key) for record in records]
        if key in CONSTANT_COLUMNS and len(set(values)) == 1:
            columns[key] = values[0]
        elif key in NUMERIC_FEATURES or key == "champion_probability":
            columns[key] = np.array([np.nan if v is None else v for v in values], dtype=float)
        elif key in ("record_index", "champion_label"):
            columns[key] = np.array(values, dtype=np.int64)
        else:
            columns[key] = values
    return columns


def keys(frame: pd.DataFrame) -> list[tuple[str, int]]:
    return list(zip(frame["request_id"], frame["record_index"], strict=True))


def assert_documented_layout(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(SCHEMA.columns)
    assert frame.dtypes.to_dict() == SCHEMA.pandas_dtypes


def test_round_trip_from_two_threads(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=0.05, flush_records=37)
    statuses = plog.CHALLENGER_STATUSES

    def produce(thread: int) -> None:
        for request in range(100):
            request_id = f"t{thread}-r{request}"
            status = statuses[request % len(statuses)]
            writer.append([make_record(request_id, i, status) for i in range(5)])

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    writer.close()  # idempotent

    frame = read_prediction_log(tmp_path)
    expected = {(f"t{t}-r{r}", i) for t in range(2) for r in range(100) for i in range(5)}
    assert len(frame) == len(expected) == 1000
    assert set(keys(frame)) == expected
    assert_documented_layout(frame)
    assert frame["logged_at"].is_monotonic_increasing
    assert (frame["source"] == "service").all()
    assert frame["event_time"].eq(pd.Timestamp("2025-03-01T12:00:00Z")).all()

    not_ok = frame["challenger_status"] != "ok"
    assert frame.loc[not_ok, "challenger_probability"].isna().all()
    assert frame.loc[not_ok, "challenger_label"].isna().all()
    assert frame.loc[not_ok, "challenger_model_version"].isna().all()
    row = frame.set_index(["request_id", "record_index"]).loc[("t1-r0", 4)]
    original = make_record("t1-r0", 4, "ok")
    assert row["challenger_probability"] == pytest.approx(original["challenger_probability"])
    assert row[NUMERIC_FEATURES[0]] == original[NUMERIC_FEATURES[0]]
    assert row[CATEGORICAL_FEATURES[0]] == original[CATEGORICAL_FEATURES[0]]
    assert row[ID_COLUMN] == "1004"

    stats = writer.stats()
    assert stats.records_appended == stats.records_flushed == 1000
    assert stats.records_buffered == stats.records_dropped == stats.records_rejected == 0
    assert stats.flush_errors == 0
    assert stats.files_written == len(list_part_files(tmp_path)) > 1
    with pytest.raises(RuntimeError, match="closed"):
        writer.append([make_record("late")])


def test_records_become_visible_within_the_flush_interval(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA)  # default interval: 1.0 s

    def seconds_until_files(count: int) -> float:
        started = time.monotonic()
        while len(list_part_files(tmp_path)) < count:
            assert time.monotonic() - started < 3.0, "records did not become visible"
            time.sleep(0.01)
        return time.monotonic() - started

    try:
        writer.append([make_record("first")])
        seconds_until_files(1)
        # Appended right after a flush: the worst case, a whole interval of waiting.
        writer.append([make_record("second")])
        waited = seconds_until_files(2)
    finally:
        writer.close()
    assert waited < 1.2
    assert set(read_prediction_log(tmp_path)["request_id"]) == {"first", "second"}


def test_a_full_buffer_is_flushed_without_waiting_for_the_interval(tmp_path: Path) -> None:
    with PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=30, flush_records=10) as writer:
        writer.append([make_record("r", i) for i in range(10)])
        deadline = time.monotonic() + 5
        while writer.records_flushed < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.records_flushed == 10


def test_a_concurrent_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=0.01, flush_records=20)
    done = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def read_continuously() -> None:
        while not done.is_set():
            try:
                counts.append(len(read_prediction_log(tmp_path, schema=SCHEMA)))
            except BaseException as exc:
                errors.append(exc)
                return

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for request in range(300):
            writer.append([make_record(f"r{request}", i) for i in range(4)])
            time.sleep(0.001)
        writer.close()
    finally:
        done.set()
        reader.join()
    assert not errors, errors
    assert writer.files_written >= 50
    assert len(counts) > 5
    assert counts == sorted(counts), "a reader saw records disappear"
    assert len(read_prediction_log(tmp_path)) == 1200


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from shadowdrift.prediction_log import LogSchema, PredictionLogWriter
    sys.path.insert(0, {tests!r})
    from test_prediction_log import SCHEMA, columns_of, make_record

    writer = PredictionLogWriter({path!r}, SCHEMA, flush_interval_s=0.2)
    appended = 0
    stop = time.monotonic() + 30  # never outlive a failed test
    while time.monotonic() < stop:
        records = [make_record(f"{{appended + i:08d}}") for i in range({batch})]
        if {columns}:
            writer.append_columns(columns_of(records))
        else:
            writer.append(records)
        appended += {batch}
        sys.stdout.write(f"{{writer.records_appended}} {{writer.records_flushed}}\\n")
        sys.stdout.flush()
        time.sleep(0.002)
    """
)


@pytest.mark.parametrize(("columns", "batch"), [(False, 20), (True, 40)], ids=["append", "columns"])
def test_kill_9_loses_at_most_the_unflushed_records(
    tmp_path: Path, columns: bool, batch: int
) -> None:
    log = tmp_path / "log"
    script = KILLED_WRITER.format(
        path=str(log), tests=str(Path(__file__).parent), columns=columns, batch=batch
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        started = time.monotonic()
        # Let it write a few files, then kill it while it is appending and flushing.
        while time.monotonic() - started < 10:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if time.monotonic() - started > 1.0 and int(line.split()[1]) >= 200:
                break
        os.kill(process.pid, signal.SIGKILL)
        remaining, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines += remaining.splitlines()
    assert process.returncode == -signal.SIGKILL, stderr
    appended, flushed = map(int, lines[-1].split())
    assert flushed >= 200, stderr

    # A torn temporary file, as a crash in the middle of a write leaves behind.
    day_dir = next(log.glob("date=*"))
    good_file = next(day_dir.glob("part-*.parquet"))
    (day_dir / f".{good_file.name}.tmp").write_bytes(good_file.read_bytes()[:100])
    (day_dir / "part-torn.parquet.tmp").write_bytes(b"PAR1 not really")

    for part in list_part_files(log):
        pq.read_table(part)  # every visible file is complete
    frame = read_prediction_log(log)
    read = len(frame)
    assert read >= flushed
    # At most one more batch can have been appended after the last line was printed.
    assert read <= appended + batch
    # A single thread appends in order, so what survives is a prefix of what was appended:
    # nothing duplicated, nothing out of order, only the tail (the unflushed records) lost.
    assert sorted(frame["request_id"]) == [f"{i:08d}" for i in range(read)]


def test_a_corrupt_part_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write_batch(tmp_path, batch_frame(5), SCHEMA)
    day_dir = next(tmp_path.glob("date=*"))
    corrupt = day_dir / "part-20250101T000000.000Z-host-1-abc-000000.parquet"
    corrupt.write_bytes(b"this is not parquet at all")
    with pytest.raises(PredictionLogError, match=re.escape(str(corrupt))):
        read_prediction_log(tmp_path)

    good = next(p for p in day_dir.glob("part-*.parquet") if p != corrupt)
    corrupt.write_bytes(good.read_bytes()[:-20])  # truncated: footer gone
    with pytest.raises(PredictionLogError, match=re.escape(str(corrupt))):
        read_prediction_log(tmp_path)


def test_a_part_file_with_other_columns_is_an_error_naming_file_and_columns(
    tmp_path: Path,
) -> None:
    write_batch(tmp_path, batch_frame(5), SCHEMA)
    day_dir = next(tmp_path.glob("date=*"))
    odd = day_dir / "part-20250101T000000.000Z-host-1-abc-000000.parquet"
    table = pq.read_table(next(day_dir.glob("part-*.parquet")))
    pq.write_table(table.drop_columns(["champion_label"]), odd)
    with pytest.raises(PredictionLogError, match=r"missing: \['champion_label'\]") as error:
        read_prediction_log(tmp_path, schema=SCHEMA)
    assert str(odd) in str(error.value)


def test_a_missing_directory_is_file_not_found_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_prediction_log(missing)


def test_an_empty_directory_reads_as_an_empty_frame(tmp_path: Path) -> None:
    (tmp_path / "date=2025-01-01").mkdir()
    (tmp_path / "date=2025-01-01" / ".part-x.parquet.tmp").write_bytes(b"partial")
    frame = read_prediction_log(tmp_path, schema=SCHEMA)
    assert frame.empty
    assert_documented_layout(frame)
    assert list(read_prediction_log(tmp_path).columns) == list(plog.BASE_COLUMNS)


def test_two_writers_in_one_directory_never_collide(tmp_path: Path) -> None:
    writers = [PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None) for _ in range(2)]

    def write_many(writer: PredictionLogWriter, name: str) -> None:
        for request in range(50):
            writer.append([make_record(f"{name}-{request}")])
            writer.flush()

    threads = [
        threading.Thread(target=write_many, args=(w, f"w{n}")) for n, w in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()

    names = [p.name for p in list_part_files(tmp_path)]
    assert len(names) == len(set(names)) == 100
    parsed = [PART_NAME.fullmatch(name) for name in names]
    assert all(parsed), names
    assert {m["token"] for m in parsed if m} == {w.token for w in writers}
    assert {m["pid"] for m in parsed if m} == {str(os.getpid())}
    assert len(read_prediction_log(tmp_path)) == 100


def test_a_failed_flush_keeps_the_records_for_the_next_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None)
    writer.append([make_record("r", i) for i in range(5)])
    real_write = plog._write_part_atomically

    def disk_full(*args: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plog, "_write_part_atomically", disk_full)
    with pytest.raises(OSError, match="No space"):
        writer.flush()
    assert writer.flush_errors == 1
    assert writer.stats().records_buffered == 5
    writer.append([make_record("r", 5)])

    monkeypatch.setattr(plog, "_write_part_atomically", real_write)
    writer.close()
    frame = read_prediction_log(tmp_path)
    assert keys(frame) == [("r", i) for i in range(6)]
    assert writer.records_flushed == 6
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_full_buffer_drops_the_oldest_records_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = PredictionLogWriter(
        tmp_path, SCHEMA, flush_interval_s=None, flush_records=2, max_buffer_records=4
    )
    writer.append([make_record("r", i) for i in range(6)])
    assert writer.records_dropped == 2
    writer.close()
    assert keys(read_prediction_log(tmp_path)) == [("r", i) for i in range(2, 6)]
    assert "dropped the 2 oldest records" in caplog.text


def test_malformed_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None)
    with pytest.raises(ValueError, match="lacks"):
        writer.append([{"request_id": "r"}])
    with pytest.raises(ValueError, match="challenger_status"):
        writer.append([make_record("r", 0, status="busy")])
    with pytest.raises(TypeError, match="iterable of records"):
        writer.append(make_record("r"))  # type: ignore[arg-type]
    assert writer.records_appended == 0

    # Wrong value types only show when converting; the bad record is rejected, not retried.
    bad = make_record("bad") | {NUMERIC_FEATURES[0]: "twelve"}
    inconsistent = make_record("inconsistent", status="shed") | {"challenger_probability": 0.3}
    writer.append([make_record("good"), bad, inconsistent])
    writer.close()
    assert writer.records_rejected == 2
    assert list(read_prediction_log(tmp_path)["request_id"]) == ["good"]
    assert "'bad'" in caplog.text and "twelve" in caplog.text
    assert "challenger_probability is set although challenger_status is not 'ok'" in caplog.text


def requests_for_columns() -> list[list[dict[str, Any]]]:
    """Requests of 40 records with every kind of value the service logs."""
    plus_two = timezone(timedelta(hours=2))
    requests = []
    for number, status in enumerate(plog.CHALLENGER_STATUSES):
        records = [make_record(f"req-{number}", i, status) for i in range(40)]
        for i, record in enumerate(records):
            record[NUMERIC_FEATURES[1]] = None if i % 5 == 0 else record[NUMERIC_FEATURES[1]]
            record[CATEGORICAL_FEATURES[0]] = None if i % 7 == 0 else "unseen-value"
            # the service hands over parsed datetimes; aware ones in any zone, naive means UTC
            if number == 1:
                record["event_time"] = datetime(2025, 3, 1, 14, 0, tzinfo=plus_two)
            elif number == 2:
                record["event_time"] = datetime(2025, 3, 1, 12, 0)
            if number == 3:
                record[ID_COLUMN] = None if i % 2 else f"c-{i}"
        requests.append(records)
    return requests


@pytest.mark.parametrize("columns_min_records", [0, plog.COLUMNS_MIN_RECORDS, 1000])
def test_append_columns_logs_what_append_logs(tmp_path: Path, columns_min_records: int) -> None:
    by_records, by_columns = tmp_path / "records", tmp_path / "columns"
    writers = (
        PredictionLogWriter(by_records, SCHEMA, flush_interval_s=None, flush_records=70),
        PredictionLogWriter(
            by_columns,
            SCHEMA,
            flush_interval_s=None,
            flush_records=70,
            columns_min_records=columns_min_records,
        ),
    )
    for number, records in enumerate(requests_for_columns()):
        writers[0].append(records)
        writers[1].append_columns(columns_of(records))
        if number == 2:
            for writer in writers:
                writer.flush()
    for writer in writers:
        writer.close()
    logs = [
        read_prediction_log(path).sort_values(["request_id", "record_index"], ignore_index=True)
        for path in (by_records, by_columns)
    ]
    expected = 40 * len(plog.CHALLENGER_STATUSES)  # one request of 40 records per status
    assert len(logs[1]) == expected and writers[1].records_flushed == expected
    assert_documented_layout(logs[1])
    pd.testing.assert_frame_equal(
        logs[0].drop(columns="logged_at"), logs[1].drop(columns="logged_at")
    )
    log = logs[1]
    assert log["event_time"].eq(pd.Timestamp("2025-03-01T12:00:00Z")).all()
    assert log.loc[log["request_id"] == "req-0", ID_COLUMN].tolist() == [
        str(1000 + i) for i in range(40)
    ]
    ids = log.loc[log["request_id"] == "req-3", ID_COLUMN]
    assert ids.tolist() == [None if i % 2 else f"c-{i}" for i in range(40)]
    assert log[NUMERIC_FEATURES[1]].isna().sum() == 8 * len(plog.CHALLENGER_STATUSES)  # i % 5 == 0
    for path in (by_columns,):
        for part in list_part_files(path):
            assert pq.ParquetFile(part).metadata.num_rows <= 70


def test_append_columns_refuses_a_malformed_block_whole(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None)
    good = columns_of([make_record("r", i) for i in range(40)])
    with pytest.raises(ValueError, match=r"lack.*champion_label"):
        writer.append_columns({k: v for k, v in good.items() if k != "champion_label"})
    with pytest.raises(ValueError, match="lengths"):
        writer.append_columns(good | {"champion_probability": np.zeros(39)})
    with pytest.raises(ValueError, match="challenger_status"):
        writer.append_columns(good | {"challenger_status": "busy"})
    with pytest.raises(ValueError, match="challenger_status"):
        writer.append_columns(good | {"challenger_status": ["ok"] * 39 + ["busy"]})
    scalars = {k: (v[0] if isinstance(v, list | np.ndarray) else v) for k, v in good.items()}
    with pytest.raises(ValueError, match="n_records"):
        writer.append_columns(scalars)
    assert writer.records_appended == 0
    writer.append_columns(scalars, n_records=3)  # every record the same values
    writer.append_columns(scalars | {"champion_probability": []})  # no record: nothing to log
    writer.close()
    assert writer.records_appended == writer.records_flushed == 3
    with pytest.raises(RuntimeError, match="closed"):
        writer.append_columns(good)


def test_malformed_values_in_a_block_reject_only_those_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None)
    wrong_type = columns_of([make_record("wrong-type", i) for i in range(40)])
    wrong_type[NUMERIC_FEATURES[0]] = [float(i) for i in range(40)]
    wrong_type[NUMERIC_FEATURES[0]][5] = "twelve"
    missing_output = columns_of([make_record("missing-output", i) for i in range(40)])
    missing_output["challenger_probability"] = np.array([0.5] * 39 + [np.nan])
    fine = columns_of([make_record("fine", i) for i in range(40)])
    for block in (wrong_type, missing_output, fine):
        writer.append_columns(block)
    writer.close()
    assert writer.records_rejected == 2
    log = read_prediction_log(tmp_path)
    assert log.groupby("request_id").size().to_dict() == {
        "fine": 40,
        "missing-output": 39,
        "wrong-type": 39,
    }
    assert 5 not in log.loc[log["request_id"] == "wrong-type", "record_index"].tolist()
    assert "'wrong-type'" in caplog.text and "twelve" in caplog.text
    assert "challenger_probability is null although challenger_status is 'ok'" in caplog.text


def test_a_failed_flush_of_blocks_keeps_the_unwritten_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None, flush_records=25)
    for request in range(3):
        writer.append_columns(columns_of([make_record(f"r{request}", i) for i in range(40)]))
    real_write = plog._write_part_atomically
    calls = []

    def fail_on_third(*args: Any) -> Path:
        calls.append(args)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(*args)

    monkeypatch.setattr(plog, "_write_part_atomically", fail_on_third)
    with pytest.raises(OSError, match="No space"):
        writer.flush()
    assert writer.records_flushed == 50 and writer.stats().records_buffered == 70
    assert writer.flush_errors == 1
    writer.append_columns(columns_of([make_record("r3", i) for i in range(40)]))
    writer.close()
    frame = read_prediction_log(tmp_path)
    assert sorted(keys(frame)) == sorted((f"r{r}", i) for r in range(4) for i in range(40))
    assert writer.records_flushed == 160
    assert all(pq.ParquetFile(p).metadata.num_rows <= 25 for p in list_part_files(tmp_path))


def test_a_full_buffer_of_blocks_drops_the_oldest_records(tmp_path: Path) -> None:
    writer = PredictionLogWriter(
        tmp_path, SCHEMA, flush_interval_s=None, flush_records=10, max_buffer_records=50
    )
    for request in ("first", "second"):
        writer.append_columns(columns_of([make_record(request, i) for i in range(40)]))
    assert writer.records_dropped == 30
    writer.close()
    assert keys(read_prediction_log(tmp_path)) == [("first", i) for i in range(30, 40)] + [
        ("second", i) for i in range(40)
    ]


def batch_frame(n: int) -> pd.DataFrame:
    records = pd.DataFrame([make_record("ignored", i, status="disabled") for i in range(n)])
    records = records.drop(columns=["request_id", "record_index", "champion_latency_ms"])
    records["churned"] = 0  # extra columns are ignored
    return records


def test_write_batch(tmp_path: Path) -> None:
    frame = batch_frame(25)
    written = write_batch(tmp_path, frame, SCHEMA, max_records_per_file=10)
    assert len(written) == 3
    assert all(PART_NAME.fullmatch(p.name) for p in written)
    assert not list(tmp_path.rglob("*.tmp"))
    log = read_prediction_log(tmp_path)
    assert_documented_layout(log)
    assert (log["source"] == "batch").all()
    assert log["request_id"].nunique() == 1
    assert list(log["record_index"]) == list(range(25))
    assert log["champion_latency_ms"].isna().all()
    assert write_batch(tmp_path, frame.iloc[:0], SCHEMA) == []

    with pytest.raises(PredictionLogError, match="champion_label"):
        write_batch(tmp_path, frame.drop(columns=["champion_label"]), SCHEMA)
    bad = frame.assign(champion_probability=1.5)
    with pytest.raises(PredictionLogError, match="outside"):
        write_batch(tmp_path, bad, SCHEMA)
    assert len(read_prediction_log(tmp_path)) == 25  # nothing of the bad batch was written


def test_part_files_are_lz4_with_dictionaries_off_for_floats_and_zstd_logs_still_read(
    tmp_path: Path,
) -> None:
    written = write_batch(tmp_path, batch_frame(20), SCHEMA)
    metadata = pq.ParquetFile(written[0]).metadata.row_group(0)
    schema = pq.read_schema(written[0])
    for i in range(metadata.num_columns):
        column = metadata.column(i)
        assert column.compression == "LZ4", column.path_in_schema
        floating = pa.types.is_floating(schema.field(column.path_in_schema).type)
        # float values hardly repeat: their dictionary pages would be wasted work
        assert ("RLE_DICTIONARY" in column.encodings) != floating, column.path_in_schema
    expected = read_prediction_log(tmp_path)

    # a log written with zstd (the format's codec before lz4) reads exactly the same
    table = pq.read_table(written[0])
    written[0].unlink()
    pq.write_table(table, written[0], compression="zstd")
    pd.testing.assert_frame_equal(read_prediction_log(tmp_path), expected)


def test_start_and_end_select_logged_at(tmp_path: Path) -> None:
    write_batch(tmp_path, batch_frame(3), SCHEMA)
    logged = read_prediction_log(tmp_path)["logged_at"].iloc[0]
    assert len(read_prediction_log(tmp_path, start=logged)) == 3
    assert len(read_prediction_log(tmp_path, end=logged)) == 0
    assert len(read_prediction_log(tmp_path, start=logged + pd.Timedelta(1, "us"))) == 0
    yesterday = (logged - pd.Timedelta(days=1)).tz_localize(None)  # naive means UTC
    assert len(read_prediction_log(tmp_path, start=yesterday, end="2999-01-01")) == 3


def load_catalog_entry(path: Path) -> dict[str, Any]:
    from kedro.io import DataCatalog

    config = yaml.safe_load(CATALOG_YAML)
    config["prediction_log"]["path"] = str(path)
    return DataCatalog.from_config(config).load("prediction_log")


def test_the_catalog_entry_reads_what_read_prediction_log_reads(tmp_path: Path) -> None:
    with PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None, flush_records=7) as writer:
        for request in range(10):
            status = plog.CHALLENGER_STATUSES[request % 5]
            writer.append([make_record(f"r{request}", i, status) for i in range(3)])
    write_batch(tmp_path, batch_frame(4), SCHEMA)
    day_dir = next(tmp_path.glob("date=*"))
    good = next(day_dir.glob("part-*.parquet"))
    # PartitionedDataset lists hidden files too; these two must not count.
    (day_dir / f".{good.name}").write_bytes(good.read_bytes())
    (day_dir / f".{good.name}.tmp").write_bytes(b"partial")

    partitions = load_catalog_entry(tmp_path)
    assert f"{day_dir.name}/.{good.stem}" in partitions  # what concat_partitions has to skip
    from_kedro = concat_partitions(partitions, SCHEMA)
    pd.testing.assert_frame_equal(from_kedro, read_prediction_log(tmp_path))
    assert len(from_kedro) == 34


def test_concat_partitions_names_a_bad_partition(tmp_path: Path) -> None:
    write_batch(tmp_path, batch_frame(3), SCHEMA)
    day_dir = next(tmp_path.glob("date=*"))
    (day_dir / "part-garbage.parquet").write_bytes(b"garbage")
    partitions = load_catalog_entry(tmp_path)
    with pytest.raises(PredictionLogError, match="part-garbage"):
        concat_partitions(partitions, SCHEMA)

    def wrong_columns() -> pd.DataFrame:
        return pd.DataFrame({"a": [1]})

    with pytest.raises(PredictionLogError, match=r"partition 'x'.*missing"):
        concat_partitions({"x": wrong_columns}, SCHEMA)
    assert_documented_layout(concat_partitions({}, SCHEMA))


def test_log_schema() -> None:
    assert SCHEMA.arrow_schema.field("tenure_months").type == pa.float64()
    assert SCHEMA.arrow_schema.field("contract_type").type == pa.string()
    assert not SCHEMA.arrow_schema.field("champion_probability").nullable
    assert LogSchema.from_json(SCHEMA.to_json()) == SCHEMA
    with pytest.raises(ValueError, match="clash"):
        LogSchema(["source"], [])
    with pytest.raises(ValueError, match="duplicated"):
        LogSchema(["a"], ["a"])


# -- model_variant: which model answered ------------------------------------------------------


def test_model_variant_says_which_model_answered_and_defaults_to_the_champion(
    tmp_path: Path,
) -> None:
    canary = make_record("canary", 0, "ok") | {"model_variant": "challenger"}
    with PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None) as writer:
        writer.append([make_record("plain", 0), canary])
        # a block whose records were answered partly by each model
        block = columns_of([make_record("block", i) for i in range(4)])
        block["model_variant"] = ["champion", "challenger", "champion", "challenger"]
        writer.append_columns(block)
    write_batch(tmp_path, batch_frame(2), SCHEMA)  # batch scoring: the champion answers
    log = read_prediction_log(tmp_path).set_index(["request_id", "record_index"])
    assert log.loc[("plain", 0), "model_variant"] == "champion"
    assert log.loc[("canary", 0), "model_variant"] == "challenger"
    assert log.loc["block", "model_variant"].tolist() == [
        "champion",
        "challenger",
        "champion",
        "challenger",
    ]
    assert (log.loc[log["source"] == "batch", "model_variant"] == "champion").all()


def test_a_challenger_answer_without_challenger_outputs_or_an_unknown_variant_is_refused(
    tmp_path: Path,
) -> None:
    writer = PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None)
    with pytest.raises(ValueError, match="model_variant must be one of"):
        writer.append([make_record("r", 0) | {"model_variant": "canary"}])
    with pytest.raises(ValueError, match="model_variant must be one of"):
        writer.append_columns(columns_of([make_record("r", 0)]) | {"model_variant": "shadow"})
    # the challenger cannot have answered a record it did not score: rejected at the flush
    writer.append([make_record("bad", 0, "failed") | {"model_variant": "challenger"}])
    writer.append([make_record("good", 0)])
    writer.close()
    assert writer.records_rejected == 1
    assert read_prediction_log(tmp_path)["request_id"].tolist() == ["good"]


def _as_format_version_1(file: Path) -> None:
    """Rewrite ``file`` as the format wrote it before ``model_variant`` existed."""
    table = pq.read_table(file).drop_columns(["model_variant"])
    metadata = dict(table.schema.metadata)
    spec = json.loads(metadata[plog.METADATA_KEY])
    metadata[plog.METADATA_KEY] = json.dumps(spec | {"format_version": 1}).encode()
    pq.write_table(table.replace_schema_metadata(metadata), file)


def test_part_files_of_format_version_1_read_as_answered_by_the_champion(tmp_path: Path) -> None:
    from shadowdrift.partitioned_prediction_log import read_prediction_log_partitioned

    old = write_batch(tmp_path, batch_frame(3), SCHEMA)[0]
    _as_format_version_1(old)
    with PredictionLogWriter(tmp_path, SCHEMA, flush_interval_s=None) as writer:
        writer.append([make_record("new", 0) | {"model_variant": "challenger"}])
    assert LogSchema.from_json(pq.read_schema(old).metadata[plog.METADATA_KEY]) == SCHEMA
    log = read_prediction_log(tmp_path)
    assert len(log) == 4
    assert log.groupby("source")["model_variant"].agg(set).to_dict() == {
        "batch": {"champion"},
        "service": {"challenger"},
    }
    partitioned = read_prediction_log_partitioned(tmp_path).compute()
    assert sorted(partitioned["model_variant"]) == sorted(log["model_variant"])
    from_kedro = concat_partitions(load_catalog_entry(tmp_path), SCHEMA)
    pd.testing.assert_frame_equal(from_kedro, log)
