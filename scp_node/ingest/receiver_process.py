"""One more receiving process on the node's DICOM port (``dicom.processes`` > 1).

Started by :class:`scp_node.ingest.receivers.ReceiverProcesses` in the ``serve`` process, which
writes the node's settings as JSON to its standard input. It runs a pynetdicom AE of its own
(``SO_REUSEPORT``: the kernel spreads new connections over every listening process) that
spools and indexes exactly as the ``serve`` process does: the same spool, the same SQLite index
(WAL), the same per-UID locks and association slots (byte-range locks, :mod:`scp_node.store.locks`).
It never runs the pipeline or the outbox: back-pressure is read from the jobs table, a Storage
Commitment report is written to the outbox table for the ``serve`` process to send, and a
committed study is marked complete there. Prints ``ready`` on standard output once listening;
ends on SIGTERM/SIGINT or when its parent ends.

    python -m scp_node.ingest.receiver_process < settings.json
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import threading

from scp_node import audit
from scp_node.codecs import capabilities
from scp_node.config import Settings
from scp_node.egress.worker import OutboxWorker
from scp_node.ingest.commitment import commitment_handlers
from scp_node.ingest.dimse import DimseServer
from scp_node.ingest.receiver import Receiver, open_journal
from scp_node.ingest.slots import AssociationSlots
from scp_node.observe import setup_logging
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex
from scp_node.store.jobs import JobStore
from scp_node.store.spool import Spool

log = logging.getLogger(__name__)

READY = "ready"
PR_SET_PDEATHSIG = 1


def end_with_parent(stop: threading.Event) -> None:
    """Stop when the ``serve`` process ends, even by kill -9: the kernel signals us
    (prctl PR_SET_PDEATHSIG, Linux), and a thread notices the new parent as a fallback."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                log.warning("receiving process %d: the serve process ended; stopping", os.getpid())
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def admission(jobs: JobStore, queue_size: int) -> str | None:
    """The pipeline's back-pressure rule (:meth:`Pipeline.admit`), read from the jobs table."""
    depth = jobs.depth()
    if depth >= queue_size:
        return f"analysis queue full ({depth} studies waiting); retry later"
    return None


def build(settings: Settings) -> DimseServer:
    """The DIMSE listener of a receiving process, wired to the shared spool and index."""
    storage = settings.storage
    db = Database(storage.index_path)
    spool = Spool(storage.spool_dir, storage.min_free_mb * 2**20, storage.fsync)
    index = InstanceIndex(db)
    caps = capabilities()
    receiver = Receiver(
        spool, index, caps.accepted_transfer_syntaxes(), on_stored=audit.instance_stored
    )
    receiver.max_inflated = storage.max_instance_mb * 2**20
    receiver.max_inflate_ratio = storage.max_inflate_ratio
    # a journal no live process holds: that of a receiving process that died (replayed first)
    receiver.journal = open_journal(
        storage.journal_dir, storage.journal_mb, storage.fsync, receiver
    )
    jobs = JobStore(db)
    pipeline = settings.pipeline.enabled
    queue_size = settings.pipeline.queue_size
    outbox = OutboxWorker(  # never started here: the serve process delivers what it queues
        db,
        settings.delivery,
        storage.results_dir,
        calling_ae=settings.dicom.ae_title,
        fsync=storage.fsync,
    )

    def committed(studies: set[str]) -> None:
        if pipeline:
            jobs.request_complete(sorted(studies))

    return DimseServer(
        settings.dicom,
        receiver,
        caps,
        admit=(lambda: admission(jobs, queue_size)) if pipeline else None,
        extra_handlers=commitment_handlers(
            settings, index, committed, outbox.enqueue_commitment_report
        )
        + audit.dimse_handlers(),
        slots=AssociationSlots(
            storage.data_dir / "associations.lock", settings.dicom.max_associations
        ),
    )


def main() -> int:
    settings = Settings(**json.loads(sys.stdin.read()))
    setup_logging(settings.log.level, settings.log.format)
    stop = threading.Event()
    signalled: list[int] = []  # a handler takes no lock: SIGTERM may come twice (parent, kernel)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: signalled.append(signum))
    end_with_parent(stop)
    audit.start_producer(settings)  # queued here, sent by the serve process
    server = build(settings)
    server.start()
    print(READY, flush=True)
    log.info("receiving process %d listening on port %d", os.getpid(), server.port)
    while not signalled and not stop.wait(0.2):
        pass
    server.stop()
    if server.receiver.journal is not None:
        server.receiver.journal.close()
    audit.stop_producer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
