"""A write-ahead log: entries appended to segment files and fsynced in group commits.

The acknowledged durability mode of the service's logs (``prediction_wal.py``,
docs/prediction_log.md, "Durability modes") answers a request only once its records are in
here. The module knows bytes, not records:

* ``WriteAheadLog`` belongs to one writer in one process. It owns a directory
  ``<root>/<host>-<pid>-<token>/`` holding a ``lock`` file (``flock``-ed for the process's
  lifetime; the kernel lets go of it when the process dies, also on SIGKILL) and numbered
  segment files. ``append`` queues an entry and returns a ``concurrent.futures.Future``; one
  committer thread writes everything queued in one ``write`` and one ``fdatasync`` and then
  resolves the futures of all the entries it carried (group commit: concurrent callers share
  one fsync, and nobody's thread or event loop blocks on the disk).
* A checkpoint thread closes the current segment when it is ``segment_max_age_s`` old or
  ``segment_max_bytes`` large (the next one is created and fsynced beforehand, off the request
  path) and deletes a closed segment once every one of its entries has been handed to the
  writer (``handed_over``) and the writer reports a flush without error that began after the
  last hand-over (``WriterProgress``). Records that the writer dropped keep their segment.
* ``recover_orphans`` finds the directories of writers whose process is gone (their lock can
  be taken), hands their segments' entries to a replay callback and removes the directory
  once the callback returns. A directory whose owner lives is never touched.

Segment format: ``MAGIC`` (8 bytes), then frames. A frame is the payload's length and its
CRC-32 (two little-endian uint32) followed by the payload. The first frame is a JSON header
(what the entries are, whose they are); each further frame is one entry. A frame cut off by a
crash (short, or with a wrong checksum) ends the readable part: the complete entries before it
are returned and the bytes from it on are reported as ``torn_bytes``.

Plain Python (no pandas): importable anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MAGIC = b"SDWAL\x00\x01\n"
FRAME = struct.Struct("<II")  # payload length, CRC-32 of the payload
SEGMENT_PREFIX = "segment-"
SEGMENT_SUFFIX = ".wal"
LOCK_NAME = "lock"
# A length beyond this is a torn or corrupt frame, not an entry (a 5,000-record request is
# about 2 MB).
MAX_ENTRY_BYTES = 1 << 30
_SEGMENT_NAME = re.compile(rf"{SEGMENT_PREFIX}(\d+){re.escape(SEGMENT_SUFFIX)}")
_NEW_PREFIX = ".new-"
# a directory still under its hidden name this long after its creation was left by a crash
_NEW_GRACE_S = 60.0


class WriteAheadError(RuntimeError):
    """An entry could not be made durable (or the log is closed); the message says why."""


@dataclass(frozen=True)
class WriterProgress:
    """What the writer behind the log has made durable.

    ``flushed_through``: its count of records appended as of the start of its last flush that
    ended without error (every record appended before is in a part file, or was rejected as
    malformed); ``dropped``: records it dropped from a full buffer, in all.
    """

    flushed_through: int
    dropped: int


@dataclass(frozen=True)
class WriteAheadStats:
    """Counters of one log (a snapshot)."""

    entries: int
    commits: int
    failed_commits: int
    bytes_written: int
    fsync_seconds: float
    segments: int
    segments_deleted: int


def frame(payload: bytes) -> bytes:
    """``payload`` with its length and checksum in front."""
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def segment_name(number: int) -> str:
    return f"{SEGMENT_PREFIX}{number:08d}{SEGMENT_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --------------------------------------------------------------------------------------------
# Reading segments
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentContents:
    """The readable part of a segment file: its header, its complete entries, what was cut off."""

    path: Path
    header: dict[str, Any] | None
    entries: list[bytes]
    torn_bytes: int


def _next_frame(data: bytes, offset: int) -> tuple[bytes | None, int]:
    """The payload of the frame at ``offset`` and the offset after it; None if it is torn."""
    end = offset + FRAME.size
    if end > len(data):
        return None, offset
    length, checksum = FRAME.unpack_from(data, offset)
    if length == 0 or length > MAX_ENTRY_BYTES or end + length > len(data):
        return None, offset
    payload = data[end : end + length]
    if zlib.crc32(payload) != checksum:
        return None, offset
    return payload, end + length


def read_segment(path: Path) -> SegmentContents:
    """The header and complete entries of a segment; a torn tail is counted, not returned."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return SegmentContents(path, None, [], len(data))
    header_bytes, offset = _next_frame(data, len(MAGIC))
    if header_bytes is None:
        return SegmentContents(path, None, [], len(data))
    header = json.loads(header_bytes)
    entries = []
    while True:
        payload, offset = _next_frame(data, offset)
        if payload is None:
            break
        entries.append(payload)
    return SegmentContents(path, header, entries, len(data) - offset)


def segment_files(directory: Path) -> list[Path]:
    """The segment files of a log directory, oldest first."""
    found = []
    for path in directory.iterdir():
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


# --------------------------------------------------------------------------------------------
# Ownership: a directory per writer, locked while its process lives
# --------------------------------------------------------------------------------------------


def _lock(path: Path, *, create: bool) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path``; None if a live process holds it."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:  # removed by the process that held it before us
        os.close(fd)
        return None
    return fd


def _create_owned_directory(root: Path, name: str) -> tuple[Path, int]:
    """``root/name`` with its lock held: built under a hidden name, renamed once locked, so
    that no other process can take a directory whose owner has not locked it yet."""
    root.mkdir(parents=True, exist_ok=True)
    building = root / f"{_NEW_PREFIX}{name}"
    building.mkdir()
    fd = _lock(building / LOCK_NAME, create=True)
    assert fd is not None  # nobody else knows the hidden name
    final = root / name
    os.rename(building, final)
    _fsync_dir(root)
    return final, fd


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


@dataclass
class OrphanDirectory:
    """The directory of a writer whose process is gone, locked by us until ``remove``."""

    path: Path
    lock_fd: int

    def segments(self) -> list[SegmentContents]:
        return [read_segment(path) for path in segment_files(self.path)]

    def remove(self) -> None:
        """Delete the segments, the lock file and the directory (call after a replay)."""
        for path in segment_files(self.path):
            path.unlink()
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        for leftover in self.path.iterdir():  # a temporary file of a crashed rotation
            leftover.unlink()
        self.path.rmdir()
        _fsync_dir(self.path.parent)
        self.release()

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def orphan_directories(root: Path) -> Iterator[OrphanDirectory]:
    """Locked directories of dead writers under ``root`` (a half-created one is removed)."""
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if not path.is_dir():
            continue
        if path.name.startswith(_NEW_PREFIX) and _age_s(path) < _NEW_GRACE_S:
            continue  # another worker starting now may be between mkdir and flock
        fd = _lock(path / LOCK_NAME, create=False)
        if fd is None:
            if path.name.startswith(_NEW_PREFIX) and not (path / LOCK_NAME).exists():
                with contextlib.suppress(OSError):
                    path.rmdir()  # a crash between mkdir and creating the lock
            continue
        orphan = OrphanDirectory(path, fd)
        if path.name.startswith(_NEW_PREFIX):  # a crash before the rename: nothing was logged
            orphan.remove()
            continue
        yield orphan


def recover_orphans(root: Path, replay: Callable[[list[SegmentContents]], None]) -> int:
    """Replay and remove the directory of every dead writer under ``root``; entries replayed.

    ``replay`` must make the entries durable elsewhere before it returns; a directory whose
    replay raises is left in place (logged) for the next attempt, so ``replay`` must be
    idempotent. Directories of live writers are skipped.
    """
    replayed = 0
    for orphan in orphan_directories(root):
        try:
            segments = orphan.segments()
            for segment in segments:
                if segment.torn_bytes:
                    logger.warning(
                        "Write-ahead segment %s ends in %d bytes of an entry cut off by the "
                        "crash (not acknowledged); the %d complete entries before it are kept",
                        segment.path,
                        segment.torn_bytes,
                        len(segment.entries),
                    )
            entries = sum(len(segment.entries) for segment in segments)
            if entries:
                replay(segments)
            orphan.remove()
            replayed += entries
        except Exception:
            logger.exception(
                "Could not recover the write-ahead log %s; kept for later", orphan.path
            )
            orphan.release()
    return replayed


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Segment:
    number: int
    path: Path
    fd: int
    size: int
    opened_at: float  # monotonic
    dropped_at_open: int
    entries: int = 0
    waiting: int = 0  # committed entries not yet handed to the writer
    last_position: int = 0  # the writer's position after the latest hand-over of its entries


@dataclass(eq=False)
class _Ticket:
    data: bytes  # the framed payload
    sync: bool
    key: int | None
    future: Future = field(default_factory=Future)
    segment: _Segment | None = None
    position: int | None = None  # set when handed over to the writer


class WriteAheadLog:
    """One writer's write-ahead log: group-committed appends, closed segments deleted once
    their records are flushed (see the module docstring).

    ``header`` (JSON-able) is written at the start of every segment; ``progress`` reports the
    writer's flushes. ``on_commit(seconds, entries)`` is called after each successful commit.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        header: Mapping[str, Any],
        progress: Callable[[], WriterProgress],
        *,
        segment_max_bytes: int = 64 << 20,
        segment_max_age_s: float = 1.0,
        on_commit: Callable[[float, int], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self._header = frame(json.dumps(dict(header)).encode())
        self._progress = progress
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self._on_commit = on_commit
        self.directory, self._lock_fd = _create_owned_directory(self.root, name)
        self._lock = threading.Condition()
        self._pending: list[_Ticket] = []
        self._tickets: dict[int, _Ticket] = {}  # not yet both committed and handed over
        self._closed: list[_Segment] = []
        self._next_number = 1
        self._current: _Segment | None = self._open_segment()
        self._prepared: _Segment | None = None
        self._rotate = False
        self._stopping = False
        self._last_stamp_us = 0
        self._entries = self._commits = self._failed_commits = self._bytes = 0
        self._fsync_seconds = 0.0
        self._segments_deleted = 0
        self._dropped_warned = False
        self._committer = threading.Thread(
            target=self._commit_loop, name=f"wal-commit-{name}", daemon=True
        )
        self._committer.start()
        self._checkpoint_stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name=f"wal-checkpoint-{name}", daemon=True
        )
        self._checkpointer.start()

    # -- the public interface ----------------------------------------------------------------

    def stamp(self) -> int:
        """A time in ns since the epoch, later by at least 1 us than any this log gave before.

        Distinct at the microsecond precision of the Parquet files, so an entry's stamp
        identifies its records there (``logged_at``).
        """
        with self._lock:
            stamp_us = max(time.time_ns() // 1000, self._last_stamp_us + 1)
            self._last_stamp_us = stamp_us
        return stamp_us * 1000

    def append(
        self,
        payload: bytes,
        key: int | None = None,
        *,
        sync: bool = True,
        position: int | None = None,
    ) -> Future:
        """Queue an entry; the future resolves once it is on disk (fsynced when ``sync``).

        ``key`` (a stamp) names an entry whose records the writer has yet to receive
        (``handed_over``); ``position`` instead says that it has them already, up to that
        position. Without ``sync`` the entry is written with the next commit but asks for no
        fsync of its own: it survives a crash of the process, and a later fsync covers it
        against a crash of the machine.
        """
        ticket = _Ticket(frame(payload), sync, key, position=position)
        with self._lock:
            if self._stopping:
                raise WriteAheadError(f"the write-ahead log {self.directory} is closed")
            self._pending.append(ticket)
            if key is not None and position is None:
                self._tickets[key] = ticket
            self._lock.notify_all()
        return ticket.future

    def handed_over(self, key: int, position: int) -> None:
        """The records of entry ``key`` are in the writer's buffer, at ``position`` or before."""
        with self._lock:
            ticket = self._tickets.get(key)
            if ticket is None or ticket.position is not None:
                return
            ticket.position = position
            segment = ticket.segment
            if segment is not None:
                segment.waiting -= 1
                segment.last_position = max(segment.last_position, position)
                del self._tickets[key]

    def close(self) -> None:
        """Commit what is queued, stop the threads, delete what the writer has flushed.

        Call after the writer's final flush. Segments still needed are kept for the next
        start's recovery (logged); an empty directory is removed.
        """
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._lock.notify_all()
        self._committer.join()
        self._checkpoint_stop.set()
        self._checkpointer.join()
        with self._lock:
            for segment in (self._current, self._prepared):
                if segment is not None:
                    self._closed.append(segment)
            self._current = self._prepared = None
        self._delete_released()
        kept = [segment.path.name for segment in self._closed]
        for segment in self._closed:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
        if kept:
            logger.warning(
                "Write-ahead log %s: %d segments kept for recovery at the next start (%s)",
                self.directory,
                len(kept),
                ", ".join(kept[:5]),
            )
            os.close(self._lock_fd)
            return
        self._remove_directory()

    def stats(self) -> WriteAheadStats:
        with self._lock:
            return WriteAheadStats(
                entries=self._entries,
                commits=self._commits,
                failed_commits=self._failed_commits,
                bytes_written=self._bytes,
                fsync_seconds=self._fsync_seconds,
                segments=len(self._closed) + (self._current is not None),
                segments_deleted=self._segments_deleted,
            )

    # -- segments ------------------------------------------------------------------------------

    def _open_segment(self) -> _Segment:
        """A new segment with its header, fsynced, its name durable in the directory."""
        with self._lock:
            number = self._next_number
            self._next_number += 1
        path = self.directory / segment_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, MAGIC + self._header)
            os.fdatasync(fd)
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return _Segment(
            number,
            path,
            fd,
            len(MAGIC) + len(self._header),
            time.monotonic(),
            self._progress().dropped,
        )

    def _remove_directory(self) -> None:
        with contextlib.suppress(OSError):
            (self.directory / LOCK_NAME).unlink()
            self.directory.rmdir()
            _fsync_dir(self.root)
        os.close(self._lock_fd)

    # -- the committer -------------------------------------------------------------------------

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._rotate and not self._stopping:
                    self._lock.wait()
                batch, self._pending = self._pending, []
                if self._rotate or self._current is None:
                    self._switch_segment()
                segment = self._current
                if not batch and self._stopping:
                    return
            if batch:
                self._commit(batch, segment)

    def _switch_segment(self) -> None:
        """Close the current segment and continue in the prepared one (holding the lock)."""
        self._rotate = False
        if self._current is not None:
            self._closed.append(self._current)
        self._current, self._prepared = self._prepared, None

    def _commit(self, batch: list[_Ticket], segment: _Segment | None) -> None:
        started = time.perf_counter()
        try:
            if segment is None:
                segment = self._open_segment()  # after a failed commit, or the prepared one failed
                with self._lock:
                    self._current = segment
            data = b"".join(ticket.data for ticket in batch)
            _write_all(segment.fd, data)
            if any(ticket.sync for ticket in batch):
                os.fdatasync(segment.fd)
        except OSError as exc:
            self._failed(batch, segment, exc)
            return
        seconds = time.perf_counter() - started
        self._account(batch, segment, len(data), seconds)
        for ticket in batch:
            ticket.future.set_result(None)
        if self._on_commit is not None:
            self._on_commit(seconds, len(batch))

    def _account(self, batch: list[_Ticket], segment: _Segment, size: int, seconds: float) -> None:
        with self._lock:
            segment.size += size
            self._count_in(batch, segment)
            self._entries += len(batch)
            self._commits += 1
            self._bytes += size
            self._fsync_seconds += seconds

    def _count_in(self, batch: list[_Ticket], segment: _Segment) -> None:
        """Record that the batch's entries are (possibly) in ``segment`` (holding the lock)."""
        segment.entries += len(batch)
        for ticket in batch:
            ticket.segment = segment
            if ticket.position is None:
                segment.waiting += 1
                continue
            segment.last_position = max(segment.last_position, ticket.position)
            if ticket.key is not None:
                self._tickets.pop(ticket.key, None)

    def _failed(self, batch: list[_Ticket], segment: _Segment | None, exc: OSError) -> None:
        """Fail the batch's futures; the next commit starts a new segment.

        The entries may be partly on disk in the failed segment, so it is kept like any closed
        segment (deleted once their records are flushed, or replayed after a crash).
        """
        with self._lock:
            self._failed_commits += 1
            failures = self._failed_commits
            if segment is not None:
                self._count_in(batch, segment)
                if segment is self._current:
                    self._closed.append(segment)
                    self._current = None
            else:
                for ticket in batch:
                    if ticket.key is not None:
                        self._tickets.pop(ticket.key, None)
        logger.error(
            "Write-ahead log %s: could not write %d entries (%s); their requests are not "
            "acknowledged",
            self.directory,
            len(batch),
            exc,
            exc_info=failures == 1,
        )
        error = WriteAheadError(f"the write-ahead log could not write to disk: {exc}")
        for ticket in batch:
            ticket.future.set_exception(error)

    # -- the checkpointer ----------------------------------------------------------------------

    def _checkpoint_loop(self) -> None:
        interval = max(0.05, min(self.segment_max_age_s / 2, 0.5))
        while not self._checkpoint_stop.wait(interval):
            try:
                self._maybe_rotate()
                self._delete_released()
            except Exception:
                logger.exception("Write-ahead log %s: checkpoint failed", self.directory)

    def _maybe_rotate(self) -> None:
        with self._lock:
            current = self._current
            due = current is not None and current.entries > 0 and self._prepared is None
            if due:
                assert current is not None
                old = time.monotonic() - current.opened_at >= self.segment_max_age_s
                due = old or current.size >= self.segment_max_bytes
        if not due:
            return
        prepared = self._open_segment()  # file creation and fsyncs off the request path
        with self._lock:
            self._prepared = prepared
            self._rotate = True
            self._lock.notify_all()

    def _delete_released(self) -> None:
        """Delete closed segments whose records the writer has all flushed."""
        progress = self._progress()
        with self._lock:
            released = [s for s in self._closed if self._released(s, progress)]
            for segment in released:
                self._closed.remove(segment)
        for segment in released:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
            try:
                segment.path.unlink()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    logger.warning("Could not delete %s: %s", segment.path, exc)
        with self._lock:
            self._segments_deleted += len(released)

    def _released(self, segment: _Segment, progress: WriterProgress) -> bool:
        if progress.dropped != segment.dropped_at_open:
            if not self._dropped_warned:
                self._dropped_warned = True
                logger.error(
                    "Write-ahead log %s: the writer dropped records from a full buffer; the "
                    "segments are kept and replayed at the next start",
                    self.directory,
                )
            return False
        return segment.waiting == 0 and progress.flushed_through >= segment.last_position
