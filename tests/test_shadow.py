"""Shadow mode end to end: a node with a real destination receives studies, computes and keeps the
results, and sends nothing; /metrics shows the LSTV score histogram and the not-assessable count."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.uid import (
    Comprehensive3DSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE, evt

from scp_node.cli import main
from scp_node.phantom_dicom import write_phantom
from scp_node.store.db import Database
from scp_node.store.outbox import HELD, Outbox
from tests.conftest import dimse_destination, free_port, node_settings, run_node, storescu
from tests.node_process import write_toml
from tests.test_report import codes_of, groups

REASON = "reference levels uncertain (made by the test)"


@contextmanager
def store_scp(ae_title: str, port: int) -> Iterator[list[str]]:
    """A real Storage SCP on 127.0.0.1 (pynetdicom) that records the SOP Instance UIDs it gets."""
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(ae_title=ae_title)
    for sop_class in (Comprehensive3DSRStorage, SecondaryCaptureImageStorage):
        ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        yield received
    finally:
        server.shutdown()


class NotAssessableFor:
    """The node's real engine; studies in ``study_uids`` come back as a hand-made not-assessable
    outcome (what the quality gate of the engine reports), everything else unchanged."""

    def __init__(self, engine: Any, study_uids: set[str]) -> None:
        self.engine = engine
        self.study_uids = study_uids

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def analyze(self, volume: Any) -> Any:
        result = self.engine.analyze(volume)
        if volume.study_instance_uid in self.study_uids:
            return replace(
                result, assessable=False, not_assessable_reason=REASON, lstv_suspected=False
            )
        return result


def wait_for(predicate: Any, timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def metrics(port: int) -> dict[str, float]:
    """Every sample of /metrics as {"name{label=value,...}": value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_shadow_mode_keeps_results_sends_nothing_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs_port, node_port = free_port(), free_port()
    delivery = {
        "mode": "shadow",
        "destinations": {"pacs": dimse_destination("PACS", pacs_port)},
        "default_destinations": ["pacs"],
        "poll_interval_s": 0.2,
        "backoff_initial_s": 0.2,
    }
    settings = node_settings(
        tmp_path,
        dicom={"port": node_port},
        pipeline={"enabled": True, "quiet_seconds": 0.5, "poll_interval_s": 0.2},
        delivery=delivery,
        model={"device": "cpu"},
    )
    config = tmp_path / "node.toml"
    write_toml(
        config,
        {"storage": {"data_dir": str(settings.storage.data_dir)}, "delivery": delivery},
    )
    screened = write_phantom(tmp_path / "a", "normal", seed=941, slices=12, size=256)
    gated = write_phantom(tmp_path / "b", "normal", seed=942, slices=5, size=128)
    uid_a = str(pydicom.dcmread(screened[0], stop_before_pixels=True).StudyInstanceUID)
    uid_b = str(pydicom.dcmread(gated[0], stop_before_pixels=True).StudyInstanceUID)

    with store_scp("PACS", pacs_port) as received, run_node(settings) as node:
        assert node.pipeline is not None and node.http is not None
        worker = node.pipeline.worker
        assert worker.ready.wait(120), "model did not load"
        worker.engine = NotAssessableFor(worker.engine, {uid_b})
        before = metrics(node.http.port)
        for files in (screened, gated):
            sent = storescu(node_port, files)
            assert sent.returncode == 0, sent.stderr
        for uid in (uid_a, uid_b):
            wait_for(
                lambda uid=uid: (job := node.pipeline.jobs.get(uid)) and job.state == "shadow",
                what=f"study {uid} in state shadow",
            )
        time.sleep(1.5)  # several outbox polls: a send, if any, would have happened by now
        after = metrics(node.http.port)
        threshold = worker.engine.threshold
        assert received == [], "shadow mode sent a result"

        jobs = {uid: node.pipeline.jobs.get(uid) for uid in (uid_a, uid_b)}
        for job in jobs.values():
            assert job.reason == "shadow mode: result kept, not sent (held for pacs)"
        results = {uid: job.result() for uid, job in jobs.items()}
        assert results[uid_b]["assessable"] is False
        assert results[uid_b]["not_assessable_reason"] == REASON
        assert results[uid_b]["lstv_suspected"] is False
        assert results[uid_a]["calibration"] == "weights default threshold"

    # the kept results: outbox rows held for the destination, files on disk
    outbox = Outbox(Database(settings.storage.index_path))
    rows = outbox.rows(study_uid=uid_b)
    assert len(rows) == 2 and {r.state for r in rows} == {HELD}  # SR and SC
    assert {r.destination for r in rows} == {"pacs"} and all(r.path.is_file() for r in rows)
    assert {r.state for r in outbox.rows(study_uid=uid_a)} == {HELD}
    sr_row = next(r for r in rows if r.sop_class_uid == Comprehensive3DSRStorage)
    screen = groups(pydicom.dcmread(sr_row.path))["LSTV screen"]
    assert codes_of(screen)["Screen assessable"] == "No"
    assert codes_of(screen)["LSTV suspected"] == "Indeterminate"

    # metrics: outcomes, the score histogram (assessable studies only), the threshold in use
    assessable = [uid for uid, r in results.items() if r["assessable"]]
    assert uid_a in assessable, "the full-size normal phantom should be assessable"
    assert delta(after, before, "scp_node_jobs_total{outcome=shadow}") == 2
    assert delta(after, before, "scp_node_screen_outcomes_total{outcome=not_assessable}") == 1
    decided = delta(after, before, "scp_node_screen_outcomes_total{outcome=suspected}") + delta(
        after, before, "scp_node_screen_outcomes_total{outcome=not_suspected}"
    )
    assert decided == len(assessable)
    assert delta(after, before, "scp_node_lstv_score_count{}") == len(assessable)
    # the screened study's score went into the buckets at and above it, and no lower one
    # (no _sum: prometheus-client leaves it out when buckets go below 0, as the score can)
    score = results[uid_a]["lstv_score"]
    buckets = [k for k in after if k.startswith("scp_node_lstv_score_bucket{")]
    bounds = {k: float(k.split("le=")[1].rstrip("}")) for k in buckets}
    assert {-1.0, 0.0, 1.0, 3.0, float("inf")} <= set(bounds.values())
    for key, bound in bounds.items():
        assert delta(after, before, key) == (1 if score <= bound else 0), key
    assert after["scp_node_lstv_threshold{}"] == pytest.approx(threshold)

    # the operator's view: status and outbox listing show the kept results
    assert main(["status", "--json", "--config", str(config)]) == 0
    status = {row["study_uid"]: row for row in json.loads(capsys.readouterr().out)}
    assert status[uid_b]["state"] == "shadow" and status[uid_b]["assessable"] is False
    assert len(status[uid_b]["results"]) == 2
    assert main(["outbox", "list", "--json", "--state", "held", "--config", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["study_uid"] for r in listed} == {uid_a, uid_b} and len(listed) == 4
    # a held result is not released by a retry ...
    assert main(["outbox", "retry", str(sr_row.id), "--config", str(config)]) == 1
    assert "is held (shadow mode)" in capsys.readouterr().out
    assert outbox.get(sr_row.id).state == HELD

    # ... and the destination was real and reachable all along: a deliberate one-off send arrives
    with store_scp("PACS", pacs_port) as received:
        assert main(["send", str(sr_row.path), "--to", "pacs", "--config", str(config)]) == 0
        assert received == [sr_row.sop_instance_uid]


OLD_OUTBOX = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, path TEXT NOT NULL,
    destination TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, updated_at REAL NOT NULL,
    delivered_at REAL, generation INTEGER NOT NULL DEFAULT 1,
    UNIQUE (sop_instance_uid, destination)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
INSERT INTO outbox (id, study_uid, sop_instance_uid, sop_class_uid, path, destination, state,
    attempts, next_attempt_at, created_at, updated_at)
    VALUES (7, '1.2', '1.2.3', '1.2.840.10008.5.1.4.1.1.88.34', '/r/sr.dcm', 'pacs', 'dead',
            8, 0, 0, 0);
"""


def test_an_index_from_before_shadow_mode_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_OUTBOX)
    with pytest.raises(sqlite3.IntegrityError):  # the old constraint refuses 'held'
        conn.execute("UPDATE outbox SET state = 'held' WHERE id = 7")
    conn.close()
    outbox = Outbox(Database(path))
    old = outbox.get(7)
    assert old is not None and (old.state, old.attempts, old.destination) == ("dead", 8, "pacs")
    new_id = outbox.enqueue("1.2", "1.2.4", "1.2.840.10008.5.1.4.1.1.7", Path("/r/sc.dcm"),
                            "pacs", HELD)  # fmt: skip
    assert new_id > 7 and outbox.get(new_id).state == HELD  # ids continue after the old rows
    assert outbox.retry(row_id=new_id) == [] and outbox.claim_due() == []
    # a later run in send mode: its delivered rows close the study although old rows stay held
    sent = outbox.enqueue("1.2", "1.2.5", "1.2.840.10008.5.1.4.1.1.88.34", Path("/r/sr2.dcm"),
                          "pacs")  # fmt: skip
    (claimed,) = outbox.claim_due(ids=[sent])
    assert outbox.mark_delivered(claimed)
    assert outbox.study_delivered_at("1.2") is None  # the old dead row is not delivered
    with outbox.db.transaction() as conn:
        conn.execute("DELETE FROM outbox WHERE id = 7")
    assert outbox.study_delivered_at("1.2") is not None  # delivered + held: done
    Outbox(Database(path))  # opening again is a no-op
    indexes = {
        r[0]
        for r in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'"
        )
    }
    assert {"outbox_due", "outbox_study"} <= indexes
