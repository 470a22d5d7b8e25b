"""The study monitor: opens jobs from the index, completes quiet studies, notices delivery."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from scp_node.config import PipelineSettings
from scp_node.observe import END_TO_END_SECONDS, JOB_OUTCOMES, QUEUE_DEPTH
from scp_node.store.jobs import DELIVERY_FAILED, QUEUED, JobStore
from scp_node.store.retention import purge_finished_studies

log = logging.getLogger(__name__)


class StudyMonitor:
    """A thread that polls the index every ``poll_interval_s`` (durable state, not memory)."""

    def __init__(
        self,
        jobs: JobStore,
        settings: PipelineSettings,
        delivered_at: Callable[[str], float | None],
        on_complete: Callable[[], None],
        retention_hours: float = 0.0,
        delivery_counts: Callable[[str], dict[str, int]] | None = None,
    ) -> None:
        self.jobs = jobs
        self.delivery_counts = delivery_counts
        self.settings = settings
        self.delivered_at = delivered_at
        self.on_complete = on_complete
        self.retention_hours = retention_hours
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="study-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # keep monitoring; the next tick retries from durable state
                log.exception("study monitor tick failed")
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    def tick(self) -> None:
        """One pass: open/reopen jobs, complete the due ones, close the delivered ones."""
        for study_uid in self.jobs.sync_from_studies():
            log.info("study %s: receiving", study_uid)
        completed = self.jobs.complete_due(
            self.settings.quiet_seconds, self.settings.max_wait_seconds
        )
        for study_uid in completed:
            log.info("study %s: complete, queued for the model", study_uid)
        if completed:
            self.on_complete()
        for job in self.jobs.in_state(QUEUED) + self.jobs.in_state(DELIVERY_FAILED):
            when = self.delivered_at(job.study_uid)
            if when is None:
                self._check_dead_letters(job.study_uid, job.state)
            elif self.jobs.mark_delivered(job.study_uid, when):
                JOB_OUTCOMES.labels(outcome="delivered").inc()
                if job.input_received_at:
                    END_TO_END_SECONDS.observe(max(0.0, when - job.input_received_at))
                log.info(
                    "study %s: results delivered (%.1f s after its last instance)",
                    job.study_uid,
                    when - (job.input_received_at or when),
                )
        QUEUE_DEPTH.set(self.jobs.depth())
        if self.retention_hours > 0:
            purge_finished_studies(self.jobs.db, self.retention_hours * 3600.0)

    def _check_dead_letters(self, study_uid: str, state: str) -> None:
        """``queued`` → ``delivery_failed`` once every delivery ended and one is dead; back to
        ``queued`` when an ``outbox retry`` made them pending again."""
        if self.delivery_counts is None:
            return
        counts = self.delivery_counts(study_uid)
        in_flight = counts.get("pending", 0) + counts.get("sending", 0)
        dead = counts.get("dead", 0)
        if state == QUEUED and dead and not in_flight:
            total = sum(n for s, n in counts.items() if s != "held")
            reason = (
                f"{dead} of {total} deliveries dead-lettered (scp-node outbox list --state dead)"
            )
            if self.jobs.move(study_uid, QUEUED, DELIVERY_FAILED, reason):
                JOB_OUTCOMES.labels(outcome=DELIVERY_FAILED).inc()
                log.error("study %s: delivery failed: %s", study_uid, reason)
        elif (
            state == DELIVERY_FAILED
            and in_flight
            and self.jobs.move(study_uid, DELIVERY_FAILED, QUEUED, "delivery retried")
        ):
            log.info("study %s: delivery retried, queued again", study_uid)
