"""The ingest node's side of the cluster: publish complete studies, take the results back.

One thread (``cluster-bridge``) owns one broker connection and, in a loop:

1. publishes every ``complete`` job as one task (``complete`` is the durable "to publish" state:
   while the broker is down, studies wait there, and an ingest node restarted with studies in it
   publishes them on start) and marks it ``dispatched`` once the broker confirmed the message;
2. consumes its own durable result queue: a result is recorded only if its job still waits for
   that study *and generation* (:meth:`JobStore.take_result`), so a task run twice (redelivered
   after a worker died, or published again after a restart) reports once; the message is
   acknowledged after the SR is in the outbox;
3. reads the broker's queue depth and workers for back-pressure and ``/metrics``;
4. publishes again a task that stayed ``dispatched`` past ``[cluster] task_timeout_s``.

When the broker is unreachable the loop waits ``reconnect_interval_s`` and tries again; ingest
(DIMSE, STOW-RS) never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from celery import Celery
from kombu import Connection, Message
from prometheus_client import Counter, Gauge, Histogram

from scp_node.cluster.app import make_app, result_queue, result_queue_name, task_queue
from scp_node.cluster.messages import (
    OK,
    TASK_NAME,
    AnalysisReply,
    AnalysisTask,
)
from scp_node.config import Settings
from scp_node.observe import JOB_OUTCOMES
from scp_node.pipeline.worker import ModelWorker
from scp_node.result import StudyResult
from scp_node.store.jobs import COMPLETE, DISPATCHED, FAILED, JobStore

log = logging.getLogger(__name__)

BROKER_UP = Gauge("scp_node_cluster_broker_up", "1 while the broker connection is up")
BROKER_QUEUE_DEPTH = Gauge(
    "scp_node_cluster_queue_depth", "Analysis tasks waiting in the broker queue (all ingest nodes)"
)
BROKER_WORKERS = Gauge("scp_node_cluster_workers", "Workers consuming the analysis queue")
TASKS_IN_FLIGHT = Gauge(
    "scp_node_cluster_tasks_in_flight", "This node's studies published and waiting for a result"
)
TASKS_PENDING_PUBLISH = Gauge(
    "scp_node_cluster_tasks_pending_publish", "This node's complete studies not yet published"
)
TASKS_PUBLISHED = Counter("scp_node_cluster_tasks_published_total", "Analysis tasks published")
RESULTS = Counter(
    "scp_node_cluster_results_total",
    "Results received from workers: recorded, duplicate (ignored) or failed",
    ["outcome"],
)
WORKER_SECONDS = Histogram(
    "scp_node_cluster_worker_seconds",
    "Per worker: seconds a task took on the worker (fetch + series selection + inference)",
    ["worker"],
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)
ROUND_TRIP_SECONDS = Histogram(
    "scp_node_cluster_round_trip_seconds",
    "Seconds from publishing a task to recording its result (queueing + broker + worker)",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 900),
)
MAX_WORKER_LABELS = 64
#: Longest wait for a result message before the loop looks whether a study became complete.
WAKE_CHECK_S = 0.02
#: Seconds between looks for tasks overdue past ``task_timeout_s``.
OVERDUE_CHECK_S = 10.0


class ClusterBridge:
    """Replaces the in-process model worker on an ingest node (``[cluster] role = "ingest"``)."""

    def __init__(self, settings: Settings, jobs: JobStore, recorder: ModelWorker) -> None:
        self.settings = settings
        self.cluster = settings.cluster
        self.jobs = jobs
        self.recorder = recorder
        self.node_id = self.cluster.node_name(settings.http)
        self.dicomweb_url = self.cluster.ingest_url(settings.http)
        self.reply_queue = result_queue(result_queue_name(self.node_id))
        self.task_queue = task_queue(self.cluster.queue)
        self.app: Celery = make_app(self.cluster, name=f"scp_node.ingest.{self.node_id}")
        self.broker_depth: int | None = None
        self.workers: int | None = None
        self._worker_labels: set[str] = set()
        self._overdue_checked = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the node's service interface ---------------------------------------------------------
    def start(self) -> None:
        log.info(
            "cluster ingest node %s: tasks to queue %s, results from %s, workers fetch from %s",
            self.node_id,
            self.cluster.queue,
            self.reply_queue.name,
            self.dicomweb_url,
        )
        self._thread = threading.Thread(target=self._run, name="cluster-bridge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def admit(self) -> str | None:
        """Why new studies are refused (broker queue too deep), or None."""
        depth = self.broker_depth
        if depth is not None and depth >= self.cluster.max_queue_depth:
            return f"cluster analysis queue full ({depth} tasks waiting); retry later"
        return None

    # --- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.app.connection_for_write() as conn:
                    conn.ensure_connection(max_retries=1)
                    self._serve(conn)
            except Exception as exc:  # noqa: BLE001 - broker down or lost: wait, try again
                BROKER_UP.set(0)
                self.broker_depth = None
                log.warning(
                    "broker unavailable (%s: %s); complete studies wait to be published, "
                    "retrying in %.0f s",
                    type(exc).__name__,
                    exc,
                    self.cluster.reconnect_interval_s,
                )
                self._stop.wait(self.cluster.reconnect_interval_s)

    def _serve(self, conn: Connection) -> None:
        channel = conn.default_channel
        self.task_queue(channel).declare()
        self.reply_queue(channel).declare()
        BROKER_UP.set(1)
        log.info("broker connected")
        poll = self.settings.pipeline.poll_interval_s
        last = 0.0
        with conn.Consumer(
            self.reply_queue, callbacks=[self._on_reply], accept=["json"], prefetch_count=8
        ):
            while not self._stop.is_set():
                now = time.monotonic()
                if self._wake.is_set() or now - last >= poll:  # woken by a complete study
                    self._wake.clear()
                    last = now
                    self._republish_overdue()
                    self._publish_pending(conn)
                    self._read_depth(channel)
                # results are handled as they arrive (callbacks); socket.timeout: none came
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=WAKE_CHECK_S)

    def _publish_pending(self, conn: Connection) -> None:
        pending = self.jobs.in_state(COMPLETE)
        TASKS_PENDING_PUBLISH.set(len(pending))
        for job in pending:
            task = AnalysisTask(
                study_uid=job.study_uid,
                generation=job.generation,
                node_id=self.node_id,
                dicomweb_url=self.dicomweb_url,
                reply_queue=self.reply_queue.name,
            )
            # raises when the broker is gone: the job stays complete, published later
            self.app.send_task(
                TASK_NAME,
                args=(task.to_json(),),
                task_id=task.task_id,
                connection=conn,
                queue=self.task_queue,
                retry=False,
            )
            TASKS_PUBLISHED.inc()
            if self.jobs.mark_dispatched(job.study_uid, job.generation):
                log.info("study %s: task published (generation %d)", job.study_uid, job.generation)
        TASKS_PENDING_PUBLISH.set(0)
        TASKS_IN_FLIGHT.set(len(self.jobs.in_state(DISPATCHED)))

    def _read_depth(self, channel: Any) -> None:
        ok = self.task_queue(channel).queue_declare(passive=True)
        self.broker_depth = int(ok.message_count)
        self.workers = int(ok.consumer_count)
        BROKER_QUEUE_DEPTH.set(self.broker_depth)
        BROKER_WORKERS.set(self.workers)

    def _republish_overdue(self) -> None:
        now = time.monotonic()
        if now - self._overdue_checked < OVERDUE_CHECK_S:
            return
        self._overdue_checked = now
        again = self.jobs.redispatch_overdue(time.time() - self.cluster.task_timeout_s)
        if again:
            log.warning("%d studies had no result within task_timeout_s: published again", again)

    # --- results ------------------------------------------------------------------------------
    def _worker_label(self, worker: str) -> str:
        if worker in self._worker_labels or len(self._worker_labels) < MAX_WORKER_LABELS:
            self._worker_labels.add(worker)
            return worker
        return "other"

    def _on_reply(self, body: Any, message: Message) -> None:
        try:
            reply = AnalysisReply.from_json(body)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("unreadable result message dropped: %s", exc)
            message.ack()
            return
        job = self.jobs.take_result(reply.study_uid, reply.generation)
        if job is None:
            RESULTS.labels(outcome="duplicate").inc()
            log.info(
                "study %s: result from %s for generation %d ignored (already recorded or "
                "superseded)",
                reply.study_uid,
                reply.worker,
                reply.generation,
            )
            message.ack()
            return
        WORKER_SECONDS.labels(worker=self._worker_label(reply.worker)).observe(reply.worker_seconds)
        if job.started_at is not None:
            ROUND_TRIP_SECONDS.observe(max(0.0, time.time() - job.started_at))
        annotations = {
            "worker": reply.worker,
            "worker_seconds": round(reply.worker_seconds, 3),
            "fetch_seconds": round(reply.fetch_seconds, 3),
        }
        if reply.status != OK:
            RESULTS.labels(outcome="failed").inc()
            log.warning(
                "study %s failed on worker %s: %s", job.study_uid, reply.worker, reply.reason
            )
            reason = f"worker {reply.worker}: {reply.reason}"[:500]
            self.jobs.advance(job, FAILED, reason, annotations)
            JOB_OUTCOMES.labels(outcome="failed").inc()
            message.ack()
            return
        try:
            self.recorder.record(job, StudyResult.from_json(reply.result), annotations=annotations)
        except Exception as exc:  # noqa: BLE001 - one study must not stop the bridge
            log.exception("study %s: the result could not be recorded", job.study_uid)
            self.jobs.advance(job, FAILED, f"{type(exc).__name__}: {exc}"[:500], annotations)
            JOB_OUTCOMES.labels(outcome="failed").inc()
        else:
            RESULTS.labels(outcome="recorded").inc()
            log.info("study %s: result from worker %s recorded", job.study_uid, reply.worker)
        message.ack()
