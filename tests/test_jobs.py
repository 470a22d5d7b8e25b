"""The job state machine on a real SQLite index (no model, no sockets)."""

from __future__ import annotations

from pathlib import Path

from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex, InstanceRecord
from scp_node.store.jobs import (
    COMPLETE,
    DELIVERED,
    INFERRING,
    QUEUED,
    RECEIVED,
    REPORTING,
    JobStore,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add_instance(index: InstanceIndex, study: str, sop: str, when: float) -> None:
    index.add(
        InstanceRecord(
            sop_instance_uid=sop,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
            study_uid=study,
            series_uid="1.2.3",
            transfer_syntax="1.2.840.10008.1.2.1",
            path=Path("/x"),
            size=1,
            received_at=when,
        )
    )


def make(tmp_path: Path) -> tuple[JobStore, InstanceIndex, Clock]:
    db = Database(tmp_path / "index.sqlite3")
    clock = Clock()
    return JobStore(db, clock), InstanceIndex(db), clock


def test_quiet_time_completes_a_study(tmp_path):
    jobs, index, clock = make(tmp_path)
    add_instance(index, "1.1", "1.1.1", clock.now)
    assert jobs.sync_from_studies() == ["1.1"]
    assert jobs.get("1.1").state == RECEIVED
    clock.now += 5
    assert jobs.complete_due(quiet_seconds=10, max_wait_seconds=600) == []
    clock.now += 6
    assert jobs.complete_due(quiet_seconds=10, max_wait_seconds=600) == ["1.1"]
    assert jobs.get("1.1").state == COMPLETE


def test_request_complete_skips_the_quiet_time(tmp_path):
    jobs, index, clock = make(tmp_path)
    add_instance(index, "1.2", "1.2.1", clock.now)
    jobs.request_complete(["1.2"])
    assert jobs.complete_due(quiet_seconds=600, max_wait_seconds=600) == ["1.2"]


def test_max_wait_completes_a_study_that_never_goes_quiet(tmp_path):
    jobs, index, clock = make(tmp_path)
    add_instance(index, "1.3", "1.3.0", clock.now)
    jobs.sync_from_studies()
    for i in range(1, 8):
        clock.now += 5
        add_instance(index, "1.3", f"1.3.{i}", clock.now)
        jobs.sync_from_studies()
    assert jobs.complete_due(quiet_seconds=10, max_wait_seconds=30) == ["1.3"]


def test_instances_during_inference_reopen_the_job_and_void_the_old_run(tmp_path):
    jobs, index, clock = make(tmp_path)
    add_instance(index, "1.4", "1.4.1", clock.now)
    jobs.request_complete(["1.4"])
    jobs.complete_due(10, 600)
    job = jobs.claim_next()
    assert job is not None and job.state == INFERRING
    clock.now += 1
    add_instance(index, "1.4", "1.4.2", clock.now)  # arrives while the model runs
    assert jobs.sync_from_studies() == ["1.4"]
    assert jobs.get("1.4").state == RECEIVED
    assert jobs.advance(job, REPORTING) is False, "a stale run must not overwrite the state"
    assert jobs.get("1.4").generation == job.generation + 1


def test_crash_recovery_puts_running_jobs_back_to_complete(tmp_path):
    jobs, index, clock = make(tmp_path)
    add_instance(index, "1.5", "1.5.1", clock.now)
    jobs.request_complete(["1.5"])
    jobs.complete_due(10, 600)
    assert jobs.claim_next() is not None
    # a new process on the same file
    again = JobStore(Database(tmp_path / "index.sqlite3"), clock)
    assert again.recover() == 1
    assert again.get("1.5").state == COMPLETE
    assert again.depth() == 1


def test_delivered_only_from_queued(tmp_path):
    jobs, index, clock = make(tmp_path)
    add_instance(index, "1.6", "1.6.1", clock.now)
    jobs.request_complete(["1.6"])
    jobs.complete_due(10, 600)
    job = jobs.claim_next()
    assert jobs.mark_delivered("1.6", clock.now) is False
    assert jobs.advance(job, QUEUED)
    assert jobs.mark_delivered("1.6", clock.now + 3)
    assert jobs.get("1.6").state == DELIVERED


def test_non_image_objects_do_not_open_jobs(tmp_path):
    jobs, index, clock = make(tmp_path)
    index.add(
        InstanceRecord(
            sop_instance_uid="9.9",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
            study_uid="1.7",
            series_uid="9",
            transfer_syntax="1.2.840.10008.1.2.1",
            path=Path("/x"),
            size=1,
        ),
        touch_study=False,
    )
    assert jobs.sync_from_studies() == []


def test_retention_purges_only_finished_studies_past_the_age(tmp_path):
    from scp_node.store.jobs import NOT_APPLICABLE
    from scp_node.store.retention import purge_finished_studies

    jobs, index, clock = make(tmp_path)
    files = {}
    for study in ("2.1", "2.2"):
        path = tmp_path / f"{study}.dcm"
        path.write_bytes(b"x")
        files[study] = path
        index.add(InstanceRecord(
            sop_instance_uid=f"{study}.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
            study_uid=study, series_uid="1.2.3", transfer_syntax="1.2.840.10008.1.2.1",
            path=path, size=1, received_at=clock.now,
        ))  # fmt: skip
    jobs.request_complete(["2.1", "2.2"])
    jobs.complete_due(10, 600)
    finished = jobs.claim_next()
    assert jobs.advance(finished, NOT_APPLICABLE, "no sagittal series")
    # 2.2 is still waiting for the model: never purged
    assert purge_finished_studies(jobs.db, older_than_s=3600, now=clock.now + 10) == 0
    assert purge_finished_studies(jobs.db, older_than_s=3600, now=clock.now + 7200) == 1
    assert not files[finished.study_uid].exists()
    assert index.for_study(finished.study_uid) == []
    other = "2.2" if finished.study_uid == "2.1" else "2.1"
    assert files[other].exists() and index.for_study(other)
    assert "purged" in jobs.get(finished.study_uid).reason
    assert jobs.sync_from_studies() == []  # a purge does not reopen the job
