"""``scp-node worker``: one process that holds the model and runs analysis tasks from the broker.

Per task: fetch the study's candidate series from the ingest node that published it (DICOMweb,
authenticated), select the series and run the model exactly as an all-in-one node does
(:func:`scp_node.analysis.analyze_study`), and publish the result to that ingest node's result
queue (persistent, confirmed) *before* the task is acknowledged. A worker killed mid-task leaves
its task unacknowledged: RabbitMQ gives it to another worker. An ingest node that cannot be
reached is retried with exponential backoff (``[cluster] fetch_retries``, ``fetch_backoff_s``);
after the last retry the result says ``failed`` with the reason, and the job shows it.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry
from celery.signals import worker_ready

from scp_node.cluster.app import make_app, result_queue
from scp_node.cluster.fetch import FetchError, StudyGone, client_for, fetch_study
from scp_node.cluster.messages import FAILED, OK, TASK_NAME, AnalysisReply, AnalysisTask
from scp_node.config import Settings

log = logging.getLogger(__name__)

#: How long publishing a result waits for a broker that went away (then the task is redelivered).
REPLY_RETRY_POLICY = {
    "max_retries": 60,
    "interval_start": 0.5,
    "interval_step": 0.5,
    "interval_max": 2.0,
}


def default_name() -> str:
    """``worker-<pid>@<hostname>``: unique per process on a machine."""
    return f"worker-{os.getpid()}@{socket.gethostname()}"


class AnalysisRunner:
    """The model and the DICOMweb client of one worker process."""

    def __init__(self, settings: Settings, name: str, engine: Any = None) -> None:
        self.settings = settings
        self.name = name
        self.engine = engine
        token = settings.http.token.get_secret_value() if settings.http.token else ""
        self.client = client_for(settings.cluster, fallback_token=token)

    def load_engine(self) -> None:
        from scp_node.model.engine import LocalizerEngine

        started = time.perf_counter()
        self.engine = LocalizerEngine.from_settings(self.settings.model)
        log.info(
            "worker %s: model loaded on %s in %.1f s (%s %s, weights sha256 %s)",
            self.name,
            self.engine.device_name,
            time.perf_counter() - started,
            self.engine.identity.name,
            self.engine.identity.version,
            self.engine.identity.weights_sha256[:12],
        )

    def run(self, task: Task, payload: dict[str, Any]) -> AnalysisReply:
        """Analyse one study; raises :class:`Retry` while the ingest node is unreachable."""
        from scp_node.analysis import analyze_study

        job = AnalysisTask.from_json(payload)
        retries = int(task.request.retries or 0)
        redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
        log.info(
            "worker %s: analysing study %s generation %d from %s (attempt %d, redelivered=%s)",
            self.name,
            job.study_uid,
            job.generation,
            job.node_id,
            retries + 1,
            redelivered,
        )
        started = time.perf_counter()
        cluster = self.settings.cluster
        try:
            with tempfile.TemporaryDirectory(prefix="scp-node-task-") as tmp:
                fetched = fetch_study(
                    self.client, job.dicomweb_url, job.study_uid, self.settings.series, Path(tmp)
                )
                fetch_s = time.perf_counter() - started
                result = analyze_study(fetched.paths, self.settings, self.engine)
            if not fetched.paths:  # every series ruled out by its QIDO attributes
                result = replace(
                    result,
                    study_instance_uid=job.study_uid,
                    reason=f"{result.reason}; {len(fetched.skipped_series)} series ruled out "
                    "by their attributes (modality, description, orientation), none fetched",
                )
        except FetchError as exc:
            if retries < cluster.fetch_retries:
                delay = cluster.fetch_backoff_s * 2**retries
                log.warning(
                    "worker %s: ingest node %s unreachable (%s); retry %d of %d in %.1f s",
                    self.name,
                    job.node_id,
                    exc,
                    retries + 1,
                    cluster.fetch_retries,
                    delay,
                )
                raise task.retry(
                    countdown=delay, exc=exc, max_retries=cluster.fetch_retries
                ) from exc
            reason = f"ingest node unreachable after {retries + 1} attempts: {exc}"
            return self._failed(job, reason, started)
        except StudyGone as exc:
            return self._failed(job, str(exc), started)
        except Retry:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the study's failure, visibly
            log.exception("worker %s: study %s failed", self.name, job.study_uid)
            return self._failed(job, f"{type(exc).__name__}: {exc}", started)
        elapsed = time.perf_counter() - started
        log.info(
            "worker %s: study %s done in %.2f s (fetch %.2f s)",
            self.name,
            job.study_uid,
            elapsed,
            fetch_s,
        )
        return AnalysisReply(
            study_uid=job.study_uid,
            generation=job.generation,
            status=OK,
            worker=self.name,
            worker_seconds=elapsed,
            fetch_seconds=fetch_s,
            result=result.to_json(),
        )

    def _failed(self, job: AnalysisTask, reason: str, started: float) -> AnalysisReply:
        log.warning("worker %s: study %s failed: %s", self.name, job.study_uid, reason)
        return AnalysisReply(
            study_uid=job.study_uid,
            generation=job.generation,
            status=FAILED,
            worker=self.name,
            worker_seconds=time.perf_counter() - started,
            reason=reason[:500],
        )


def publish_reply(app: Celery, queue_name: str, reply: AnalysisReply) -> None:
    """Send ``reply`` to the ingest node's durable result queue (persistent; broker-confirmed)."""
    queue = result_queue(queue_name)
    with app.producer_or_acquire() as producer:
        producer.publish(
            reply.to_json(),
            exchange="",
            routing_key=queue.name,
            declare=[queue],
            serializer="json",
            delivery_mode=2,
            retry=True,
            retry_policy=REPLY_RETRY_POLICY,
        )


def build_app(settings: Settings, runner: AnalysisRunner) -> Celery:
    """The worker's Celery app with the analysis task registered."""
    app = make_app(settings.cluster, name="scp_node.worker")

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def analyse_study(self: Task, payload: dict[str, Any]) -> None:
        reply = runner.run(self, payload)
        publish_reply(app, str(payload["reply_queue"]), reply)

    return app


def _tick() -> None:
    """Nothing: its timer bounds the event loop's sleep."""


def run_worker(settings: Settings, name: str = "") -> int:
    """Load the model, then consume the analysis queue until SIGTERM (warm shutdown)."""
    from scp_node.codecs import capabilities

    name = name or default_name()
    capabilities()  # the decoder self-test, before any task: only proven decoders are used
    runner = AnalysisRunner(settings, name)
    runner.load_engine()
    app = build_app(settings, runner)

    @worker_ready.connect(weak=False)
    def _ready(sender: Any = None, **_: Any) -> None:
        # a 1 s tick: the event loop otherwise sleeps up to 10 s before it sees a SIGTERM
        timer = getattr(sender, "timer", None)
        if timer is not None:
            timer.call_repeatedly(1.0, _tick)
        log.info("worker %s ready: consuming queue %s", name, settings.cluster.queue)

    worker = app.Worker(
        hostname=name,
        pool_cls="solo",
        concurrency=1,
        queues=[settings.cluster.queue],
        loglevel=settings.log.level,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
        quiet=True,
    )
    worker.start()
    return int(worker.exitcode or 0)
