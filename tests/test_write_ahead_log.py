"""The write-ahead log behind ``serving.log.durability: acknowledged``: group commit, torn
tails, recovery of dead writers (exactly once, also when recovery itself is interrupted)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from shadowdrift import write_ahead_log as wal
from shadowdrift.prediction_log import read_prediction_log
from shadowdrift.prediction_wal import (
    WAL_DIR,
    recover_ground_truth,
    recover_prediction_log,
)
from shadowdrift.serving.feedback import read_ground_truth
from shadowdrift.write_ahead_log import (
    MAGIC,
    WriteAheadLog,
    WriterProgress,
    read_segment,
    recover_orphans,
    segment_files,
)

REPO = Path(__file__).resolve().parents[1]


def never_flushed() -> WriterProgress:
    return WriterProgress(flushed_through=0, dropped=0)


def open_log(root: Path, **options) -> WriteAheadLog:
    return WriteAheadLog(root, "writer", {"log": "test"}, never_flushed, **options)


# --------------------------------------------------------------------------------------------
# Appending and reading segments
# --------------------------------------------------------------------------------------------


def test_concurrent_appends_share_fsyncs_and_all_come_back(tmp_path, monkeypatch):
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd):  # a disk whose flush takes 5 ms, like a real one under load
        time.sleep(0.005)
        real_fdatasync(fd)

    monkeypatch.setattr(wal.os, "fdatasync", slow_fdatasync)
    log = open_log(tmp_path, segment_max_age_s=3600)
    threads, per_thread = 16, 25

    def client(n: int) -> None:
        for i in range(per_thread):
            log.append(f"{n}:{i}".encode()).result(timeout=10)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats = log.stats()
    [segment] = segment_files(log.directory)
    contents = read_segment(segment)
    log.close()  # nothing was handed to a writer: the segment is kept for recovery

    assert stats.entries == threads * per_thread
    # 16 clients waiting on a 5 ms fsync: each commit carries several of them
    assert stats.commits <= stats.entries / 3, stats
    assert contents.header == {"log": "test"}
    assert sorted(contents.entries) == sorted(
        f"{n}:{i}".encode() for n in range(threads) for i in range(per_thread)
    )
    assert contents.torn_bytes == 0


def test_a_torn_tail_keeps_every_complete_entry_before_it(tmp_path):
    log = open_log(tmp_path, segment_max_age_s=3600)
    payloads = [f"entry {i}".encode() * (i + 1) for i in range(5)]
    for payload in payloads:
        log.append(payload).result(timeout=10)
    [segment] = segment_files(log.directory)
    log.close()
    whole = segment.read_bytes()
    last = len(wal.frame(payloads[-1]))

    # a crash in the middle of the last write: every cut inside its frame
    for cut in range(1, last):
        segment.write_bytes(whole[: len(whole) - cut])
        contents = read_segment(segment)
        assert contents.entries == payloads[:-1], cut
        assert contents.torn_bytes == last - cut

    # a frame whose bytes did not all reach the disk: the checksum does not match
    flipped = bytearray(whole)
    flipped[-1] ^= 0xFF
    segment.write_bytes(bytes(flipped))
    assert read_segment(segment).entries == payloads[:-1]

    # a crash before the header was complete: nothing, and nothing invented
    segment.write_bytes(whole[: len(MAGIC) + 3])
    assert read_segment(segment).entries == []


def test_recovery_skips_live_writers_and_replays_dead_ones(tmp_path):
    live = open_log(tmp_path / "live", segment_max_age_s=3600)
    live.append(b"still mine").result(timeout=10)
    replayed: list[bytes] = []

    def replay(segments):
        replayed.extend(entry for segment in segments for entry in segment.entries)

    assert recover_orphans(tmp_path / "live", replay) == 0
    assert replayed == []
    assert segment_files(live.directory), "a live writer's segment was touched"
    live.close()  # closing keeps the unflushed segment and lets go of the lock

    assert recover_orphans(tmp_path / "live", replay) == 1
    assert replayed == [b"still mine"]
    assert not any((tmp_path / "live").iterdir())


def test_flushed_segments_are_deleted_in_the_background(tmp_path):
    flushed = {"through": 0}
    log = WriteAheadLog(
        tmp_path,
        "writer",
        {"log": "test"},
        lambda: WriterProgress(flushed["through"], 0),
        segment_max_age_s=0.1,
    )
    for position in range(1, 4):
        log.append(b"x", key=position, position=position).result(timeout=10)
    deadline = time.monotonic() + 5
    while log.stats().segments_deleted == 0 and time.monotonic() < deadline:
        flushed["through"] = 3  # the writer flushed everything handed to it
        time.sleep(0.05)
    assert log.stats().segments_deleted >= 1
    log.close()
    assert not tmp_path.joinpath("writer").exists()


# --------------------------------------------------------------------------------------------
# A worker killed with SIGKILL, then recovery
# --------------------------------------------------------------------------------------------

# The worker's last moments: request a was answered and flushed into a part file, b (a batch,
# logged as a column block) answered and handed to the writer but not flushed, c answered
# while the challenger was still scoring it (written ahead without the challenger's columns, as
# the service does), d a canary record answered by the challenger (written ahead with its
# outcome) and not yet handed to the writer; two labels answered. Then SIGKILL.
_CRASHING_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from shadowdrift.prediction_log import PredictionLogWriter
    from shadowdrift.prediction_wal import CHALLENGER_COLUMNS, AcknowledgedLogs
    from shadowdrift.serving.feedback import GroundTruthWriter, Label
    from tests.test_prediction_log import SCHEMA, columns_of, make_record

    log_dir, label_dir = sys.argv[1], sys.argv[2]
    logs = AcknowledgedLogs(
        PredictionLogWriter(log_dir, SCHEMA, flush_interval_s=None),
        GroundTruthWriter(label_dir, flush_interval_s=None),
        segment_max_age_s=3600,
    )
    writer = logs.predictions

    a = [make_record("a", 0, "sampled_out"), make_record("a", 1, "sampled_out")]
    logs.write_ahead(a).result()
    writer.append(a)
    writer.flush()

    b = columns_of([make_record("b", i, "ok") for i in range(40)])
    logs.write_ahead(b).result()
    writer.append_columns(b)

    c = [make_record("c", 0, "ok")]
    for name in CHALLENGER_COLUMNS:
        del c[0][name]
    logs.write_ahead(c).result()

    d = [make_record("d", 0, "ok")]
    logs.write_ahead(d).result()

    logs.labels([Label("a", 1, 0), Label("a", 0, 1)]).result()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def crash_a_worker(tmp_path: Path) -> tuple[Path, Path]:
    log_dir, label_dir = tmp_path / "prediction_log", tmp_path / "ground_truth"
    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_WORKER, str(log_dir), str(label_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, done.stderr
    return log_dir, label_dir


def segments_of(log_dir: Path) -> list[Path]:
    return sorted((log_dir / WAL_DIR).glob("*/*.wal"))


def assert_exactly_once(log_dir: Path, label_dir: Path) -> None:
    log = read_prediction_log(log_dir)
    keys = sorted(zip(log["request_id"], log["record_index"], strict=True))
    expected = sorted([("a", 0), ("a", 1), ("c", 0), ("d", 0)] + [("b", i) for i in range(40)])
    assert keys == expected
    status = dict(zip(log["request_id"], log["challenger_status"], strict=False))
    # the challenger's outcome of b was written ahead with its hand-over; c's never came; d's
    # was part of its answer
    assert status == {"a": "sampled_out", "b": "ok", "c": "interrupted", "d": "ok"}
    assert log.loc[log["request_id"].isin(["b", "d"]), "challenger_probability"].notna().all()
    labels = read_ground_truth(label_dir)
    assert sorted(
        zip(labels["request_id"], labels["record_index"], labels["label"], strict=True)
    ) == [
        ("a", 0, 1),
        ("a", 1, 0),
    ]


def test_recovery_after_kill_9_logs_every_acknowledged_record_once(tmp_path):
    log_dir, label_dir = crash_a_worker(tmp_path)
    # before recovery the part files hold only what the worker flushed
    assert sorted(read_prediction_log(log_dir)["request_id"]) == ["a", "a"]
    assert segments_of(log_dir)

    assert recover_prediction_log(log_dir) == 6  # a, b, c, d and the outcomes of a and b
    assert recover_ground_truth(label_dir) == 1
    assert_exactly_once(log_dir, label_dir)
    assert segments_of(log_dir) == [] and segments_of(label_dir) == []

    # nothing left to do, nothing written twice
    assert recover_prediction_log(log_dir) == 0
    assert_exactly_once(log_dir, label_dir)


def test_a_crash_between_replay_and_segment_removal_duplicates_nothing(tmp_path, monkeypatch):
    log_dir, label_dir = crash_a_worker(tmp_path)

    def crash_before_removal(self):
        raise OSError("the recovering process died here")

    with monkeypatch.context() as patched:
        patched.setattr(wal.OrphanDirectory, "remove", crash_before_removal)
        recover_prediction_log(log_dir)
        recover_ground_truth(label_dir)
    assert segments_of(log_dir) and segments_of(label_dir), "the segments must still be there"
    assert_exactly_once(log_dir, label_dir)

    # the next start replays the same segments again: the records found in part files are
    # not written a second time
    recover_prediction_log(log_dir)
    recover_ground_truth(label_dir)
    assert_exactly_once(log_dir, label_dir)
    assert segments_of(log_dir) == [] and segments_of(label_dir) == []


def test_a_torn_tail_after_kill_9_is_skipped_and_the_rest_recovered(tmp_path, caplog):
    log_dir, label_dir = crash_a_worker(tmp_path)
    [segment] = segments_of(log_dir)
    whole = segment.read_bytes()
    # the half-written frame of a request that was never answered
    segment.write_bytes(whole + wal.frame(b"\x01" + b"never answered" * 20)[:-7])

    with caplog.at_level(logging.WARNING, logger="shadowdrift.write_ahead_log"):
        recover_prediction_log(log_dir)
    recover_ground_truth(label_dir)
    assert "cut off by the crash" in caplog.text
    assert_exactly_once(log_dir, label_dir)


@pytest.mark.parametrize("reader", ["read_prediction_log", "catalog", "dask"])
def test_readers_never_see_the_write_ahead_log(tmp_path, reader):
    log_dir, _ = crash_a_worker(tmp_path)  # part files and segments side by side
    from tests.test_prediction_log import SCHEMA

    if reader == "read_prediction_log":
        frame = read_prediction_log(log_dir)
    elif reader == "catalog":
        from shadowdrift.datasets import PredictionLogDataset

        frame = PredictionLogDataset(path=str(log_dir), id_column=SCHEMA.id_column).load()
    else:
        from shadowdrift.datasets.dask_prediction_log_dataset import DaskPredictionLogDataset

        dataset = DaskPredictionLogDataset(path=str(log_dir), id_column=SCHEMA.id_column)
        frame = dataset.load().compute()
    assert sorted(frame["request_id"]) == ["a", "a"]


def test_a_directory_being_created_is_left_alone_and_a_stale_one_removed(tmp_path):
    # another worker starting at the same moment, between its mkdir and its flock
    starting = tmp_path / ".new-host-1-abc"
    starting.mkdir()
    assert list(wal.orphan_directories(tmp_path)) == []
    assert starting.is_dir()

    # left by a crash a while ago: cleaned up, nothing replayed
    (starting / wal.LOCK_NAME).touch()
    an_hour_ago = time.time() - 3600
    os.utime(starting, (an_hour_ago, an_hour_ago))
    assert list(wal.orphan_directories(tmp_path)) == []
    assert not starting.exists()
