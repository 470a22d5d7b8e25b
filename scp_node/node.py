"""The running node: wires settings, store, ingress, pipeline, delivery and the HTTP server."""

from __future__ import annotations

import logging
import threading
from typing import Any

from scp_node import audit
from scp_node.codecs import capabilities
from scp_node.config import Settings
from scp_node.egress.worker import worker_for
from scp_node.ingest.commitment import commitment_handlers
from scp_node.ingest.dimse import DimseServer
from scp_node.ingest.receiver import Receiver, open_journal
from scp_node.ingest.receivers import ReceiverProcesses
from scp_node.ingest.slots import AssociationSlots
from scp_node.observe import BYTES_RECEIVED, INSTANCES_RECEIVED
from scp_node.pipeline import Pipeline
from scp_node.store import recovery
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex, InstanceRecord
from scp_node.store.spool import Spool

log = logging.getLogger(__name__)


#: Distinct calling AE titles that get their own metric label; later ones count as ``other``
#: (a peer must not grow the metrics without bound by inventing AE titles).
MAX_AE_LABELS = 64
_ae_labels: set[str] = set()
_ae_labels_lock = threading.Lock()


def ae_label(calling_ae: str) -> str:
    """``calling_ae`` as a metric label value, or ``other`` once :data:`MAX_AE_LABELS` exist."""
    with _ae_labels_lock:
        if calling_ae in _ae_labels:
            return calling_ae
        if len(_ae_labels) < MAX_AE_LABELS:
            _ae_labels.add(calling_ae)
            return calling_ae
    return "other"


class Node:
    """Everything ``scp-node serve`` runs; startable and stoppable in-process (tests do)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        storage = settings.storage
        storage.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(storage.index_path)
        self.spool = Spool(storage.spool_dir, storage.min_free_mb * 2**20, storage.fsync)
        self.index = InstanceIndex(self.db)
        self.capabilities = capabilities()
        self.receiver = Receiver(
            self.spool,
            self.index,
            self.capabilities.accepted_transfer_syntaxes(),
            on_stored=self._on_stored,
        )
        self.receiver.max_inflated = settings.storage.max_instance_mb * 2**20
        self.receiver.max_inflate_ratio = settings.storage.max_inflate_ratio
        self.pipeline: Pipeline | None = None
        if settings.pipeline.enabled:
            self.pipeline = Pipeline(settings, self.db, self.index)
            self.receiver.admit = self.pipeline.admit
        # the outbox also carries Storage Commitment reports: it runs with or without a pipeline
        self.outbox = self.pipeline.outbox if self.pipeline else worker_for(settings, self.db)
        self.dimse = DimseServer(
            settings.dicom,
            self.receiver,
            self.capabilities,
            admit=self.pipeline.admit if self.pipeline else None,
            extra_handlers=commitment_handlers(
                settings, self.index, self._commit_requested, self.outbox.enqueue_commitment_report
            )
            + audit.dimse_handlers(),
            slots=AssociationSlots(
                storage.data_dir / "associations.lock", settings.dicom.max_associations
            ),
        )
        # dicom.processes > 1: more receiving processes on the same port (docs/ingest.md)
        self.receivers = ReceiverProcesses(settings, settings.dicom.processes - 1, self.spool)
        self._stopped = threading.Event()
        self.services: list[Any] = [self.pipeline or self.outbox]
        self.http: Any = None
        if settings.http.enabled:  # DICOMweb + /healthz /readyz /metrics (docs/dicomweb.md)
            from scp_node.web.server import HttpService

            self.http = HttpService(
                settings,
                self.receiver,
                self.index,
                self.db,
                self.dimse,
                on_stow_complete=self._commit_requested,
                engine=lambda: getattr(getattr(self.pipeline, "worker", None), "engine", None),
            )
            self.services.append(self.http)

    def _commit_requested(self, study_uids: set[str] | list[str]) -> None:
        """A STOW-RS request or a Storage Commitment closed these studies: no quiet time."""
        if self.pipeline is not None:
            self.pipeline.request_complete(sorted(study_uids))

    def _on_stored(self, record: InstanceRecord) -> None:
        audit.instance_stored(record)  # PS3.15 A.5.3.7, per association and study
        labels = (record.transfer_syntax, ae_label(record.calling_ae), record.source)
        INSTANCES_RECEIVED.labels(*labels).inc()
        BYTES_RECEIVED.labels(*labels).inc(record.size)

    def start(self) -> None:
        audit.start(self.settings)  # the audit trail first: Application Start (PS3.15 A.5.3.1)
        data_dir = self.settings.storage.data_dir
        # instances journaled but not yet flushed in the spool (kill -9, power loss) first:
        # those of every process, then this process's own journal (docs/ingest.md)
        storage = self.settings.storage
        self.receiver.journal = open_journal(
            storage.journal_dir, storage.journal_mb, storage.fsync, self.receiver, orphans=True
        )
        if recovery.was_unclean(data_dir):
            log.warning("the last run did not stop cleanly: checking the spool against the index")
            recovery.reindex_spool(self.spool.root, self.index)
        recovery.mark_running(data_dir)
        removed = self.spool.remove_stale_temp_files()
        if removed:
            log.warning("removed %d unacknowledged temp files left by an earlier crash", removed)
        self.dimse.start()
        self.receivers.start()  # dicom.processes - 1 more listeners on the same port
        for service in self.services:
            service.start()
        log.info("node started: %d instances in the index", self.index.count())

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.dimse.stop()
        self.receivers.stop()
        if self.receiver.journal is not None:  # flush the spool, consume the journal
            self.receiver.journal.close()
            self.receiver.journal = None
        audit.stop()  # open transfers, Application Stop; what is unsent stays queued
        recovery.mark_stopped(self.settings.storage.data_dir)
        self.db.close()
        self._stopped.set()

    def wait(self) -> None:
        self._stopped.wait()
