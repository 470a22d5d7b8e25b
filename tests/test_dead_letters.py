"""A study whose deliveries all ended as dead letters is ``delivery_failed``, counted and alertable.

Real SQLite, real sockets: the destination is a loopback port nobody listens on, then a DCMTK
storescp on that port once the dead letters are retried.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from prometheus_client import REGISTRY
from pydicom import dcmread

from scp_node.config import DeliverySettings, PipelineSettings
from scp_node.egress.worker import OutboxWorker
from scp_node.pipeline.monitor import StudyMonitor
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex, InstanceRecord
from scp_node.store.jobs import DELIVERED, DELIVERY_FAILED, QUEUED, JobStore
from tests.conftest import dcmtk, dcmtk_env, free_port
from tests.dicom_factory import write_mr
from tests.ports import wait_listening


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_dead_letters_fail_the_study_visibly_and_a_retry_recovers_it(tmp_path: Path) -> None:
    result = dcmread(write_mr(tmp_path / "sr.dcm", seed=5))
    study = str(result.StudyInstanceUID)
    db = Database(tmp_path / "index.sqlite3")
    InstanceIndex(db).add(
        InstanceRecord(
            sop_instance_uid="1.2.3.4.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
            study_uid=study, series_uid="1.2.3.4", transfer_syntax="1.2.840.10008.1.2.1",
            path=tmp_path / "x.dcm", size=1, received_at=time.time() - 60,
        )
    )  # fmt: skip
    jobs = JobStore(db)
    jobs.sync_from_studies()
    jobs.request_complete([study])
    jobs.complete_due(quiet_seconds=10, max_wait_seconds=600)
    job = jobs.claim_next()
    assert job is not None and jobs.advance(job, QUEUED)

    port = free_port()
    delivery = DeliverySettings(
        destinations={"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": port,
                               "timeout_s": 5}},
        max_attempts=1,
    )  # fmt: skip
    worker = OutboxWorker(db, delivery, tmp_path / "results")
    monitor = StudyMonitor(
        jobs,
        PipelineSettings(),
        delivered_at=worker.study_delivered_at,
        on_complete=lambda: None,
        delivery_counts=worker.outbox.study_state,
    )
    # exported before the first one, so that Prometheus' increase() sees the first dead letter
    labels = {"destination": "pacs", "kind": "result"}
    assert REGISTRY.get_sample_value("scp_node_outbox_dead_letters_total", labels) is not None
    outcome = {"outcome": "delivery_failed"}
    assert REGISTRY.get_sample_value("scp_node_jobs_total", outcome) is not None
    dead_before = metric("scp_node_outbox_dead_letters_total", destination="pacs", kind="result")
    failed_before = metric("scp_node_jobs_total", outcome="delivery_failed")

    worker.enqueue_results(study, [result], ["pacs"])
    assert worker.deliver_due() == 0  # nobody listens: the one attempt fails, dead letter
    assert [r.state for r in worker.outbox.rows()] == ["dead"]
    monitor.tick()
    failed = jobs.get(study)
    assert failed is not None and failed.state == DELIVERY_FAILED
    assert "1 of 1 deliveries dead-lettered" in failed.reason
    assert metric("scp_node_outbox_dead_letters_total", destination="pacs", kind="result") == (
        dead_before + 1
    )
    assert metric("scp_node_jobs_total", outcome="delivery_failed") == failed_before + 1

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    pacs = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS", "-od", str(inbox), str(port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port)
        assert worker.outbox.retry(dead=True)  # what `scp-node outbox retry --dead` does
        monitor.tick()
        queued = jobs.get(study)
        assert queued is not None and queued.state == QUEUED
        assert worker.deliver_due() == 1
    finally:
        pacs.terminate()
        pacs.wait(10)
    monitor.tick()
    delivered = jobs.get(study)
    assert delivered is not None and delivered.state == DELIVERED and delivered.reason == ""
    assert len(list(inbox.iterdir())) == 1
