"""The spool: received instances as files, written atomically (temp file → fsync → rename).

Layout: ``<data>/spool/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``; temporary files live in
``<data>/spool/.tmp`` on the same file system so the rename is atomic (POSIX rename(2)).
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from scp_node.store.locks import UidLocks

#: A UID is up to 64 characters of digits and dots, components without leading zeros (PS3.5 §9.1).
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class InvalidUID(ValueError):
    """A UID that is empty, too long or not made of digits and dots (never used as a path)."""


class OutOfSpace(OSError):
    """The spool's file system is below its free-space floor (or full)."""


def check_uid(value: object, what: str) -> str:
    """``value`` as a valid UID string, or :class:`InvalidUID` (guards the spool against paths)."""
    text = str(value or "").strip().rstrip("\0")
    if not text:
        raise InvalidUID(f"{what} is missing")
    if len(text) > 64 or not _UID_RE.match(text):
        raise InvalidUID(f"{what} is not a valid UID")
    return text


class Spool:
    """Writes and finds instance files under ``root``."""

    def __init__(self, root: Path, min_free_bytes: int = 0, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / ".tmp"
        self.min_free_bytes = min_free_bytes
        self.fsync = fsync
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        #: one writer per SOP Instance UID at a time, across every receiving process
        self.locks = UidLocks(self.root / ".locks")
        self._made: set[Path] = set()  # directories known to exist (never removed while running)
        self._counter = itertools.count()

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return (
            self.root
            / check_uid(study_uid, "StudyInstanceUID")
            / check_uid(series_uid, "SeriesInstanceUID")
            / f"{check_uid(sop_uid, 'SOPInstanceUID')}.dcm"
        )

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def check_space(self, incoming_bytes: int = 0) -> None:
        """Raise :class:`OutOfSpace` when writing ``incoming_bytes`` would cross the floor."""
        free = self.free_bytes()
        if free - incoming_bytes < self.min_free_bytes:
            raise OutOfSpace(
                errno.ENOSPC,
                f"spool free space {free // 2**20} MiB is below the floor "
                f"{self.min_free_bytes // 2**20} MiB",
            )

    def write(
        self,
        final: Path,
        writer: Callable[[BinaryIO], None],
        size_hint: int = 0,
        sync: bool | None = None,
    ) -> int:
        """Write a file through ``writer`` into a temp file, fsync it, rename it to ``final``.

        Returns the size written. On any error the temp file is removed and nothing appears at
        ``final``; ENOSPC becomes :class:`OutOfSpace`. ``sync`` False skips both flushes (the
        intake journal already holds the bytes durably, :mod:`scp_node.store.journal`);
        None follows ``fsync``.
        """
        sync = self.fsync if sync is None else sync and self.fsync
        self.check_space(size_hint)
        if final.parent not in self._made:  # one mkdir per series directory, not per instance
            final.parent.mkdir(parents=True, exist_ok=True)
            if len(self._made) >= 10_000:  # bounded: a long run sees many series
                self._made.clear()
            self._made.add(final.parent)
        fd, tmp = self._temp_file()
        try:
            with os.fdopen(fd, "wb") as handle:
                writer(handle)
                handle.flush()
                size = handle.tell()
                if sync:
                    os.fdatasync(handle.fileno())
            try:
                os.replace(tmp, final)
            except FileNotFoundError:  # its directory was removed by hand since
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
            if sync:
                _fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC and not isinstance(exc, OutOfSpace):
                raise OutOfSpace(errno.ENOSPC, f"spool file system full: {exc}") from exc
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size

    def _temp_file(self) -> tuple[int, Path]:
        """A new temp file ``<pid>-<n>.part`` (created exclusively; a leftover of an earlier
        process with the same PID is skipped)."""
        while True:
            tmp = self.tmp_dir / f"{os.getpid()}-{next(self._counter)}.part"
            try:
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
            except FileExistsError:
                continue

    def remove_stale_temp_files(self, pid: int | None = None) -> int:
        """Delete temp files left by a crash (they were never acknowledged); returns the count.

        With ``pid``, only those of that (dead) receiving process: the others may be in use."""
        count = 0
        patterns = (
            ("*.part", "dimse-*.dcm")
            if pid is None
            else (f"{pid}-*.part", temp_prefix(pid) + "*.dcm")
        )
        for pattern in patterns:  # the receiver's and pynetdicom's temp files
            for leftover in self.tmp_dir.glob(pattern):
                leftover.unlink(missing_ok=True)
                count += 1
        return count


def temp_prefix(pid: int | None = None) -> str:
    """Name prefix of a C-STORE data set received into a temp file by process ``pid``."""
    return f"dimse-{os.getpid() if pid is None else pid}-"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
