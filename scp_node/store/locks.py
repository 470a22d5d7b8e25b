"""Locks that hold across the node's processes: POSIX byte-range locks on one file (fcntl(2)).

The kernel drops a process's locks when it exits, however it exits (kill -9 included), so a crashed
receiving process never leaves a lock behind. POSIX record locks belong to the *process*, not to a
thread or a descriptor: every lock here is therefore paired with an in-process record (a
``threading.Lock`` or a set of held bytes), and the lock file is opened once per process and never
closed while locks are held (closing any descriptor of the file drops all of them).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockFile:
    """One lock file, opened on first use; byte ``n`` is lock number ``n``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._open_lock = threading.Lock()

    def fd(self) -> int:
        with self._open_lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            return self._fd

    def lock(self, number: int, wait: bool = True) -> bool:
        """Take lock ``number`` (waiting, or not: then False when another process holds it)."""
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.lockf(self.fd(), flags, 1, number)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def lock_within(self, number: int, timeout_s: float, poll_s: float = 0.0002) -> bool:
        """Take lock ``number`` within ``timeout_s`` (False after it: the caller goes on without
        it), trying again every ``poll_s``: bounded, unlike a blocking wait on a stuck holder."""
        deadline = time.monotonic() + timeout_s
        while not self.lock(number, wait=False):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def unlock(self, number: int) -> None:
        fcntl.lockf(self.fd(), fcntl.LOCK_UN, 1, number)


class UidLocks:
    """Serialises the spooling and indexing of one SOP Instance UID across threads and processes
    (256 buckets by a hash that is the same in every process)."""

    BUCKETS = 256

    def __init__(self, path: Path) -> None:
        self.file = LockFile(path)
        self._threads = tuple(threading.Lock() for _ in range(self.BUCKETS))

    def bucket(self, sop_instance_uid: str) -> int:
        """The lock number of ``sop_instance_uid``: the same in every process."""
        return zlib.crc32(sop_instance_uid.encode()) % self.BUCKETS

    @contextmanager
    def hold(self, sop_instance_uid: str) -> Iterator[None]:
        bucket = self.bucket(sop_instance_uid)
        with self._threads[bucket]:
            self.file.lock(bucket)
            try:
                yield
            finally:
                self.file.unlock(bucket)
