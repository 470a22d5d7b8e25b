"""The pipeline service: the study monitor, the model worker and the outbox worker together."""

from __future__ import annotations

import logging
from typing import Any

from scp_node.config import Settings
from scp_node.egress.worker import OutboxWorker, resolve_destinations
from scp_node.model.calibration import preflight
from scp_node.pipeline.monitor import StudyMonitor
from scp_node.pipeline.worker import ModelWorker
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex
from scp_node.store.jobs import JobStore

log = logging.getLogger(__name__)


class Pipeline:
    """Started and stopped by the node; ingest talks to it only through ``admit`` and
    ``request_complete`` (never waits for inference)."""

    def __init__(self, settings: Settings, db: Database, index: InstanceIndex) -> None:
        # a calibration made for other weights stops the node here, not later in the worker
        calibration = preflight(settings.model)
        if calibration is not None:
            log.info("LSTV threshold from %s", calibration.label)
        self.settings = settings
        self.jobs = JobStore(db)
        self.outbox = OutboxWorker(
            db,
            settings.delivery,
            settings.storage.results_dir,
            calling_ae=settings.dicom.ae_title,
            fsync=settings.storage.fsync,
        )
        self.worker = ModelWorker(
            settings,
            self.jobs,
            index,
            enqueue=self.outbox.enqueue_results,
            destinations_for=lambda calling_ae: resolve_destinations(calling_ae, settings),
            result_path=self.outbox.result_path,
        )
        self.bridge: Any = None  # [cluster] role = "ingest": workers analyse, via the broker
        if settings.cluster.role == "ingest":
            from scp_node.cluster.ingest import ClusterBridge

            self.bridge = ClusterBridge(settings, self.jobs, self.worker)
        self.monitor = StudyMonitor(
            self.jobs,
            settings.pipeline,
            delivered_at=self.outbox.study_delivered_at,
            on_complete=(self.bridge or self.worker).wake,
            retention_hours=settings.storage.retention_hours,
            delivery_counts=self.outbox.outbox.study_state,
        )

    def start(self) -> None:
        recovered = self.jobs.recover()
        if recovered:
            log.warning("%d studies interrupted by a restart will run again", recovered)
        if (
            not self.settings.delivery.default_destinations
            and not self.settings.delivery.reply_to_sender
        ):
            log.warning(
                "no result destination configured ([delivery]): results stay in the node "
                "(WADO-RS, scp-node status) and are not sent to a PACS"
            )
        self.outbox.start()
        (self.bridge or self.worker).start()
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()
        (self.bridge or self.worker).stop()
        self.outbox.stop()

    def admit(self) -> str | None:
        """None when there is room; else why new work is refused (back-pressure, 0xA700/503)."""
        depth = self.jobs.depth()
        if depth >= self.settings.pipeline.queue_size:
            return f"analysis queue full ({depth} studies waiting); retry later"
        return self.bridge.admit() if self.bridge else None

    def request_complete(self, study_uids: list[str]) -> None:
        """Storage Commitment or a finished STOW-RS request: analyse without the quiet time."""
        self.jobs.request_complete(list(study_uids))
        self.monitor.wake()
