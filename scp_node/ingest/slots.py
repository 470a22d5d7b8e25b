"""``dicom.max_associations`` across every receiving process (``dicom.processes``).

Each accepted association holds one of ``max_associations`` slots: byte-range locks on one file in
the data directory (:class:`scp_node.store.locks.LockFile`). A process that dies, even by kill -9,
gives its slots back at once (the kernel drops its locks). An association request that finds no
free slot is rejected before pynetdicom sees it: A-ASSOCIATE-RJ rejected-transient (2),
service-provider presentation related (3), local-limit-exceeded (2) (PS3.8 §9.3.4), as pynetdicom
itself rejects one past ``maximum_associations`` in a single process.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

from scp_node.store.locks import LockFile

#: A-ASSOCIATE-RJ PDU (PS3.8 §9.3.4): result 2 transient, source 3 presentation, reason 2.
ASSOCIATE_RJ_LIMIT = struct.pack(">BBLBBBB", 0x03, 0, 4, 0, 2, 3, 2)


class AssociationSlots:
    """``size`` association slots shared by every process that opens the same ``path``."""

    def __init__(self, path: Path, size: int) -> None:
        self.size = size
        self.file = LockFile(path)
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def acquire(self) -> int | None:
        """A free slot (now held by this process), or None when all are taken."""
        with self._lock:
            for slot in range(self.size):
                if slot not in self._held and self.file.lock(slot, wait=False):
                    self._held.add(slot)
                    return slot
        return None

    def release(self, slot: int) -> None:
        with self._lock:
            if slot in self._held:
                self._held.discard(slot)
                self.file.unlock(slot)

    @property
    def held_here(self) -> int:
        """Slots held by this process."""
        with self._lock:
            return len(self._held)
