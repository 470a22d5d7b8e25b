"""Intake journal: a write-ahead log that makes a received instance durable with one flush.

Each receiving process owns one journal file, ``<data>/journal/intake-<n>.wal``: fixed in size,
written with zeroes once (really written, not ``fallocate``d: overwriting it changes no file
system metadata, so ``fdatasync`` is one device flush and no metadata journal commit). Before a
C-STORE (or STOW-RS part) gets Success, its record (the Part 10 bytes and what the index needs)
is appended and ``fdatasync``ed; the spool file is then written *without* a flush and indexed.
A background thread makes the spool files durable in batches (``fdatasync`` each, one fsync per
directory) and only then records a checkpoint ("records up to sequence number S are consumed"),
which frees their space: the file is a ring and never grows.

At start, records after the checkpoint whose checksum holds are replayed into the spool and the
index (:meth:`IntakeJournal.open`, :func:`replay_orphans`); the first torn or corrupt record ends
the log (a record is acknowledged only after every earlier one is on disk, so nothing acknowledged
lies behind it).

Layout: two 512-byte checkpoint slots (written alternately, each with its own CRC-32), then
records from :data:`DATA_START`: ``magic, crc32, seq, received_at, meta length, data length``,
JSON metadata, data. A record that would pass the end of the file starts at :data:`DATA_START`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal"
SLOT_SIZE = 512
DATA_START = 4096
CHECKPOINT = struct.Struct("<8sIQQ")  # magic, crc32 of the rest, last consumed seq, next offset
CHECKPOINT_MAGIC = b"SCPJCKP1"
RECORD = struct.Struct("<4sIQdIQ")  # magic, crc32, seq, received_at, meta length, data length
RECORD_MAGIC = b"SJR1"
#: A record larger than this share of the journal is not journaled (the direct, slower path).
MAX_RECORD_SHARE = 0.25
#: How long the checkpoint thread gathers records before a batch (seconds).
BATCH_WAIT_S = 0.02
#: How long an append waits for space freed by a checkpoint before giving up (seconds).
SPACE_WAIT_S = 30.0


@dataclass(frozen=True)
class JournalEntry:
    """One record read back: its sequence number, arrival time, metadata and Part 10 bytes."""

    seq: int
    received_at: float
    meta: dict[str, Any]
    data: bytes


@dataclass
class _Pending:
    seq: int
    offset: int
    end: int
    done: bool = False
    path: Path | None = None


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        if directory:
            os.fsync(fd)
        else:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def _read_checkpoint(fd: int) -> tuple[int, int]:
    """(last consumed seq, offset of the next record) from the newer valid slot; (0, start)."""
    best = (0, DATA_START)
    for slot in range(2):
        raw = os.pread(fd, CHECKPOINT.size, slot * SLOT_SIZE)
        if len(raw) < CHECKPOINT.size:
            continue
        magic, crc, seq, offset = CHECKPOINT.unpack(raw)
        if magic != CHECKPOINT_MAGIC or crc != zlib.crc32(raw[12:]):
            continue
        if seq >= best[0]:
            best = (seq, offset)
    return best


def _checkpoint_bytes(seq: int, offset: int) -> bytes:
    rest = struct.pack("<QQ", seq, offset)
    return CHECKPOINT_MAGIC + struct.pack("<I", zlib.crc32(rest)) + rest


def read_entries(path: Path) -> tuple[list[JournalEntry], int, int]:
    """The unconsumed records of the journal at ``path`` with a valid checksum, in order, and
    (last seq seen, offset after it). The first invalid record ends the log; a torn or corrupt
    one (right magic and sequence number, wrong checksum or length) is logged and ignored."""
    entries: list[JournalEntry] = []
    with open(path, "rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        seq, offset = _read_checkpoint(fd)
        while True:
            entry, end = _read_record(fd, offset, seq + 1, size, path)
            if entry is None and offset != DATA_START:  # the writer wrapped around here
                entry, end = _read_record(fd, DATA_START, seq + 1, size, path)
            if entry is None:
                return entries, seq, offset
            entries.append(entry)
            seq, offset = entry.seq, end


def _read_record(
    fd: int, offset: int, seq: int, size: int, path: Path
) -> tuple[JournalEntry | None, int]:
    if offset + RECORD.size > size:
        return None, offset
    head = os.pread(fd, RECORD.size, offset)
    magic, crc, got_seq, received_at, meta_len, data_len = RECORD.unpack(head)
    if magic != RECORD_MAGIC or got_seq != seq:
        return None, offset  # the end of the log (zeroes, or an older record)
    end = offset + RECORD.size + meta_len + data_len
    if end > size:
        log.warning(
            "intake journal %s: record %d at %d has a bad length; ignored", path, seq, offset
        )
        return None, offset
    body = os.pread(fd, meta_len + data_len, offset + RECORD.size)
    if len(body) != meta_len + data_len or zlib.crc32(body, zlib.crc32(head[8:])) != crc:
        log.warning(
            "intake journal %s: record %d at %d is torn or corrupt (checksum); ignored",
            path,
            seq,
            offset,
        )
        return None, offset
    try:
        meta = json.loads(body[:meta_len])
    except ValueError:
        log.warning("intake journal %s: record %d metadata unreadable; ignored", path, seq)
        return None, offset
    return JournalEntry(seq, received_at, meta, body[meta_len:]), end


def _fill(fd: int, path: Path, size: int) -> None:
    """Make the (locked) journal ``size`` bytes of zeroes, really written, and flush it and its
    directory: overwriting it later changes no metadata. Interrupted, it is filled again."""
    os.ftruncate(fd, 0)
    chunk = b"\0" * (1 << 20)
    offset = 0
    while offset < size:
        offset += os.pwrite(fd, chunk[: min(size - offset, len(chunk))], offset)
    os.fsync(fd)
    _fsync_path(path.parent, directory=True)


class IntakeJournal:
    """One process's journal: :meth:`append` before Success, :meth:`applied` once the spool
    file is written (unsynced), a thread for the batched flushes and checkpoints."""

    def __init__(self, path: Path, size: int, fd: int) -> None:
        self.path = path
        self.size = size
        self._fd = fd  # open, locked (flock) by this process
        self._lock = threading.Lock()  # order of appends
        self._changed = threading.Condition(threading.Lock())
        self._pending: deque[_Pending] = deque()
        self._seq, self._head = _read_checkpoint(fd)
        self._consumed = self._seq
        self._stop = False
        self._thread: threading.Thread | None = None
        self.max_record = int(size * MAX_RECORD_SHARE)
        self.failed: str | None = None
        self._slot = 0

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls, directory: Path, size: int, apply: Callable[[JournalEntry], None]
    ) -> IntakeJournal:
        """Take the first journal of ``directory`` no live process holds (or a new one), replay
        what it holds unconsumed through ``apply`` (which must make it durable), and start."""
        directory.mkdir(parents=True, exist_ok=True)
        number = 0
        while True:
            path = directory / f"intake-{number}.wal"
            fd = _try_lock(path)
            if fd is not None:
                break
            number += 1
        try:
            _replay_fd(path, apply)
            if os.fstat(fd).st_size != size:  # new, or another size: emptied by the replay
                _fill(fd, path, size)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        journal = cls(path, size, fd)
        journal._write_checkpoint(journal._seq, DATA_START)
        journal._head = DATA_START
        journal._thread = threading.Thread(
            target=journal._run, name=f"journal-{number}", daemon=True
        )
        journal._thread.start()
        log.info("intake journal %s ready (%d MiB)", path.name, size // 2**20)
        return journal

    # --- the hot path ----------------------------------------------------------------------

    def append(self, meta: dict[str, Any], parts: Sequence[bytes | memoryview]) -> object | None:
        """Append a record and make it durable; returns a ticket for :meth:`applied`, or None
        when it is not journaled (too large, the journal failed): the caller then writes the
        spool file durably itself."""
        meta_raw = json.dumps(meta, separators=(",", ":")).encode()
        data_len = sum(len(p) for p in parts)
        length = RECORD.size + len(meta_raw) + data_len
        if self.failed or length > self.max_record:
            return None
        received_at = float(meta.get("received_at", time.time()))
        with self._lock:
            offset = self._reserve(length)
            if offset is None:
                return None
            seq = self._seq + 1
            rest = struct.pack("<QdIQ", seq, received_at, len(meta_raw), data_len)
            crc = zlib.crc32(meta_raw, zlib.crc32(rest))
            for part in parts:
                crc = zlib.crc32(part, crc)
            head = RECORD_MAGIC + struct.pack("<I", crc) + rest
            pending = _Pending(seq, offset, offset + length)
            try:
                _pwrite_all(self._fd, [head, meta_raw, *parts], offset)
            except OSError as exc:
                self._fail(f"write failed: {exc}")
                return None
            self._seq = seq
            self._head = offset + length
            with self._changed:
                self._pending.append(pending)
        # outside the lock: concurrent appends share one flush (each record was written
        # before the next one's flush began, so a flush covers every earlier record)
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            self._fail(f"flush failed: {exc}")
            self.applied(pending, None)
            return None
        return pending

    def applied(self, ticket: object, path: Path | None) -> None:
        """The record of ``ticket`` is in the spool (``path``, not yet flushed), or was given up
        (None: nothing to flush, e.g. the instance was refused after all)."""
        assert isinstance(ticket, _Pending)
        with self._changed:
            ticket.path = path
            ticket.done = True
            self._changed.notify_all()

    def _reserve(self, length: int) -> int | None:
        """Where a record of ``length`` bytes goes; waits while unconsumed records are there."""
        deadline = time.monotonic() + SPACE_WAIT_S
        with self._changed:
            while True:
                offset = self._head if self._head + length <= self.size else DATA_START
                if not any(p.offset < offset + length and offset < p.end for p in self._pending):
                    return offset
                if self._stop or self.failed or time.monotonic() > deadline:
                    return None
                self._changed.notify_all()
                self._changed.wait(0.05)

    def _fail(self, why: str) -> None:
        if not self.failed:
            log.error("intake journal %s: %s; writing the spool directly", self.path.name, why)
        self.failed = why

    # --- checkpoints -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stop and not (self._pending and self._pending[0].done):
                    self._changed.wait(1.0)
                if self._stop and not any(p.done for p in self._pending):
                    return
            time.sleep(BATCH_WAIT_S)  # let a batch gather
            self.checkpoint()
            with self._changed:
                if self._stop and not self._pending:
                    return

    def checkpoint(self) -> int:
        """Flush the spool files of the applied records at the head of the log, then record
        them as consumed; returns how many were consumed."""
        with self._changed:
            batch: list[_Pending] = []
            for pending in self._pending:
                if not pending.done:
                    break
                batch.append(pending)
        if not batch:
            return 0
        directories: dict[Path, None] = {}
        for pending in batch:
            if pending.path is None:
                continue
            try:
                _fsync_path(pending.path)
            except FileNotFoundError:
                continue  # replaced or deleted since: the newer writer made it durable
            directories[pending.path.parent] = None
        for directory in directories:
            with contextlib.suppress(FileNotFoundError):
                _fsync_path(directory, directory=True)
        last = batch[-1]
        self._write_checkpoint(last.seq, last.end)
        with self._changed:
            for _ in batch:
                self._pending.popleft()
            self._consumed = last.seq
            self._changed.notify_all()
        return len(batch)

    def _write_checkpoint(self, seq: int, offset: int) -> None:
        """Slots alternate: if this write is torn, the other one holds the previous checkpoint,
        and no record after that one has been overwritten yet."""
        self._slot ^= 1
        os.pwrite(self._fd, _checkpoint_bytes(seq, offset), self._slot * SLOT_SIZE)
        os.fdatasync(self._fd)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every appended record is consumed (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.notify_all()
                self._changed.wait(min(left, 0.05))
        return True

    def unconsumed(self) -> int:
        with self._changed:
            return len(self._pending)

    def close(self, timeout: float = 30.0) -> None:
        """Consume what was applied, stop the thread, release the file."""
        self.drain(timeout)
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _pwrite_all(fd: int, parts: list[bytes | memoryview], offset: int) -> None:
    total = sum(len(p) for p in parts)
    done = os.pwritev(fd, parts, offset)
    if done != total:  # short write (rare): write the rest piece by piece
        flat = b"".join(bytes(p) for p in parts)
        while done < total:
            done += os.pwrite(fd, flat[done:], offset + done)


def _try_lock(path: Path) -> int | None:
    """An fd of ``path`` (created empty if missing) locked by this process, None when another
    live process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _replay_fd(path: Path, apply: Callable[[JournalEntry], None]) -> int:
    if os.path.getsize(path) < DATA_START:
        return 0
    entries, _, _ = read_entries(path)
    for entry in entries:
        apply(entry)
    if entries:
        log.warning("intake journal %s: replayed %d unconsumed records", path.name, len(entries))
        _mark_consumed(path, entries[-1].seq)
    return len(entries)


def _mark_consumed(path: Path, seq: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        for slot in range(2):  # one after the other: a torn write leaves the other whole
            os.pwrite(fd, _checkpoint_bytes(seq, DATA_START), slot * SLOT_SIZE)
            os.fdatasync(fd)
    finally:
        os.close(fd)


def replay_orphans(directory: Path, apply: Callable[[JournalEntry], None]) -> int:
    """Replay the unconsumed records of every journal in ``directory`` that no live process
    holds (the ``serve`` process at start, before any receiving process), oldest arrival
    first across journals; returns how many were replayed."""
    if not directory.is_dir():
        return 0
    held: list[tuple[Path, int]] = []
    entries: list[tuple[float, int, JournalEntry, Path]] = []
    try:
        for number, path in enumerate(sorted(directory.glob("intake-*.wal"))):
            fd = _try_lock(path)
            if fd is None:
                continue
            held.append((path, fd))
            if os.fstat(fd).st_size < DATA_START:
                continue
            found, _, _ = read_entries(path)
            entries.extend((e.received_at, number, e, path) for e in found)
        entries.sort(key=lambda item: (item[0], item[1], item[2].seq))
        for _, _, entry, _ in entries:
            apply(entry)
        last: dict[Path, int] = {}
        for _, _, entry, path in entries:
            last[path] = max(last.get(path, 0), entry.seq)
        for path, seq in last.items():
            _mark_consumed(path, seq)
    finally:
        for _, fd in held:
            os.close(fd)
    if entries:
        log.warning("intake journals: replayed %d unconsumed records", len(entries))
    return len(entries)
