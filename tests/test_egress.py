"""Delivery to a real Orthanc: C-STORE and STOW-RS, retries, exactly-once, dead letters, the CLI."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from orthanc import Orthanc
from test_report import groups, phantom_study, read_all, result_for

from scp_node.cli import main as cli_main
from scp_node.config import DeliverySettings, Destination, ReportSettings, Settings
from scp_node.egress.outcome import Outcome
from scp_node.egress.worker import OutboxWorker, backoff_delay, resolve_destinations, send_rows
from scp_node.report import build_reports
from scp_node.store.db import Database
from scp_node.store.outbox import Outbox, OutboxRow

FAST = {"backoff_initial_s": 0.02, "backoff_max_s": 0.1, "poll_interval_s": 0.05}


def dimse_to(pacs: Orthanc, ae_title: str = "ORTHANC") -> Destination:
    return Destination(
        kind="dimse", ae_title=ae_title, host="127.0.0.1", port=pacs.dicom_port, timeout_s=5
    )


def stow_to(pacs: Orthanc) -> Destination:
    return Destination(kind="stow", url=pacs.dicomweb_url, timeout_s=5)


@pytest.fixture
def running_pacs(tmp_path: Path) -> Iterator[Orthanc]:
    """A running Orthanc (see ``tests/orthanc.py``), stopped by PID afterwards."""
    with Orthanc(tmp_path) as pacs:
        yield pacs


@pytest.fixture
def reports(tmp_path: Path) -> list[pydicom.Dataset]:
    paths, truth = phantom_study(tmp_path / "src")
    return build_reports(result_for(truth), read_all(paths), ReportSettings())


def make_worker(tmp_path: Path, dest: Destination, sender=send_rows, **delivery: object):
    settings = DeliverySettings(
        destinations={"pacs": dest}, default_destinations=["pacs"], **{**FAST, **delivery}
    )
    db = Database(tmp_path / "node" / "index.sqlite3")
    return OutboxWorker(
        db,
        settings,
        tmp_path / "node" / "results",
        "LSTV_NODE",
        sender=sender,
        rng=random.Random(1),
    )


def counting(sender: Callable) -> tuple[Callable, list[Outcome]]:
    outcomes: list[Outcome] = []

    def wrapped(dest: Destination, aet: str, rows: Sequence[OutboxRow]) -> list[Outcome]:
        result = sender(dest, aet, rows)
        outcomes.extend(result)
        return result

    return wrapped, outcomes


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_cstore_delivers_sr_and_sc_to_orthanc(tmp_path, running_pacs, reports, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="scp_node")
    worker = make_worker(tmp_path, dimse_to(running_pacs))
    sr = reports[0]
    ids = worker.enqueue_results(sr.StudyInstanceUID, reports, ["pacs"])
    assert len(ids) == 2 and not worker.study_delivered(sr.StudyInstanceUID)
    stored = Path(worker.outbox.get(ids[0]).path)  # type: ignore[union-attr]
    assert stored.is_file() and stored.is_relative_to(tmp_path / "node" / "results")
    assert worker.deliver_due() == 2
    assert worker.study_delivered(sr.StudyInstanceUID)
    found = running_pacs.find_instances(Modality="SR")
    assert len(found) == 1
    tags = running_pacs.instance_tags(found[0])
    assert tags["SOPInstanceUID"] == sr.SOPInstanceUID
    assert tags["StudyInstanceUID"] == sr.StudyInstanceUID
    assert len(running_pacs.find_instances(SOPInstanceUID=reports[1].SOPInstanceUID)) == 1
    assert sr.PatientID not in caplog.text and str(sr.PatientName) not in caplog.text


def test_stow_rs_delivers_sr_with_its_content(tmp_path, running_pacs, reports) -> None:
    worker = make_worker(tmp_path, stow_to(running_pacs))
    worker.enqueue_results(reports[0].StudyInstanceUID, reports[:1], ["pacs"])
    assert worker.deliver_due() == 1
    found = running_pacs.find_instances(Modality="SR")
    assert len(found) == 1
    import io

    back = pydicom.dcmread(io.BytesIO(running_pacs.instance_file(found[0])))
    assert back.SOPInstanceUID == reports[0].SOPInstanceUID
    assert set(groups(back)) == set(groups(reports[0]))


def test_stow_rs_failure_is_retried(tmp_path, reports) -> None:
    pacs = Orthanc(tmp_path)  # never started: connection refused
    worker = make_worker(tmp_path, stow_to(pacs), max_attempts=3)
    (row_id,) = worker.enqueue_results(reports[0].StudyInstanceUID, reports[:1], ["pacs"])
    assert worker.deliver_due() == 0
    row = worker.outbox.get(row_id)
    assert row is not None and row.state == "pending" and row.attempts == 1
    assert "STOW-RS" in row.last_error


def test_pending_until_orthanc_starts_then_delivered_exactly_once(tmp_path, reports) -> None:
    pacs = Orthanc(tmp_path)
    sender, outcomes = counting(send_rows)
    worker = make_worker(tmp_path, dimse_to(pacs), sender=sender, max_attempts=1000)
    worker.start()
    try:
        (row_id,) = worker.enqueue_results(reports[0].StudyInstanceUID, reports[:1], ["pacs"])
        assert wait_for(lambda: worker.outbox.get(row_id).attempts >= 2)  # type: ignore[union-attr]
        row = worker.outbox.get(row_id)
        assert row is not None and row.state in ("pending", "sending")
        assert "no association" in row.last_error
        with pacs:
            assert wait_for(lambda: worker.study_delivered(reports[0].StudyInstanceUID))
            time.sleep(0.3)  # a duplicate send would show up here
            assert pacs.count_instances() == 1
            assert sum(o.ok for o in outcomes) == 1
            assert worker.study_delivered_at(reports[0].StudyInstanceUID) is not None
    finally:
        worker.stop()


def write_config(tmp_path: Path, pacs: Orthanc, **delivery: object) -> Path:
    config = tmp_path / "node.toml"
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in delivery.items())
    config.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "node"}"\nmin_free_mb = 1\n'
        f"[delivery]\n{extra}"
        f'[delivery.destinations.pacs]\nkind = "dimse"\nae_title = "ORTHANC"\n'
        f'host = "127.0.0.1"\nport = {pacs.dicom_port}\ntimeout_s = 5\n'
    )
    return config


def test_dead_letter_then_outbox_retry_delivers(tmp_path, reports, capsys) -> None:
    pacs = Orthanc(tmp_path)
    config = write_config(tmp_path, pacs)
    worker = make_worker(tmp_path, dimse_to(pacs), max_attempts=2, backoff_initial_s=0.0)
    (row_id,) = worker.enqueue_results(reports[0].StudyInstanceUID, reports[:1], ["pacs"])
    worker.deliver_due()
    worker.deliver_due()
    row = worker.outbox.get(row_id)
    assert row is not None and row.state == "dead" and row.attempts == 2
    assert worker.deliver_due() == 0  # dead rows stay put
    assert cli_main(["outbox", "list", "--json", "--config", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["state"]) for r in listed] == [(row_id, "dead")]
    with pacs:
        assert cli_main(["outbox", "retry", "--dead", "--config", str(config)]) == 0
        said = capsys.readouterr().out
        assert f"1 outbox row reset to pending: #{row_id}\n" in said, said  # an id, not a count
        assert "delivered 1 of 1" in said
        assert worker.outbox.get(row_id).state == "delivered"  # type: ignore[union-attr]
        assert len(pacs.find_instances(Modality="SR")) == 1


def test_send_command_one_off(tmp_path, running_pacs, reports) -> None:
    path = tmp_path / "sc.dcm"
    reports[1].save_as(path, enforce_file_format=True)
    config = write_config(tmp_path, running_pacs)
    assert cli_main(["send", str(path), "--to", "pacs", "--config", str(config)]) == 0
    assert len(running_pacs.find_instances(SOPInstanceUID=reports[1].SOPInstanceUID)) == 1
    assert cli_main(["send", str(path), "--to", "nowhere", "--config", str(config)]) == 2


def test_wrong_called_ae_is_logged_retried_and_dead_lettered(
    tmp_path, running_pacs, reports, caplog
):
    caplog.set_level(logging.WARNING, logger="scp_node")
    worker = make_worker(
        tmp_path, dimse_to(running_pacs, "NOT_ORTHANC"), max_attempts=2, backoff_initial_s=0.0
    )
    (row_id,) = worker.enqueue_results(reports[0].StudyInstanceUID, reports[:1], ["pacs"])
    worker.deliver_due()
    assert worker.outbox.get(row_id).state == "pending"  # type: ignore[union-attr]
    assert "retry in" in caplog.text
    worker.deliver_due()
    row = worker.outbox.get(row_id)
    assert row is not None and row.state == "dead"
    assert "rejected" in row.last_error and "called ae title" in row.last_error.lower()
    assert "dead letter" in caplog.text and "called ae title" in caplog.text.lower()
    assert running_pacs.find_instances(Modality="SR") == []


# --- no network -----------------------------------------------------------------------------------
def test_enqueue_is_idempotent_and_a_rerun_replaces(tmp_path, reports) -> None:
    worker = make_worker(tmp_path, Destination())
    sr = reports[0]
    (first,) = worker.enqueue_results(sr.StudyInstanceUID, [sr], ["pacs"])
    row = worker.outbox.claim_due()[0]
    assert worker.outbox.mark_delivered(row)
    (again,) = worker.enqueue_results(sr.StudyInstanceUID, [sr], ["pacs"])
    assert again == first
    reset = worker.outbox.get(first)
    assert reset is not None and reset.state == "pending" and reset.attempts == 0
    assert reset.generation == row.generation + 1
    assert not worker.outbox.mark_delivered(row)  # stale outcome of the older generation
    assert len(worker.outbox.rows()) == 1


def test_rows_stuck_in_sending_are_recovered_on_start(tmp_path, reports) -> None:
    worker = make_worker(
        tmp_path, Destination(), sender=lambda d, a, rows: [Outcome(True)] * len(rows)
    )
    (row_id,) = worker.enqueue_results(reports[0].StudyInstanceUID, reports[:1], ["pacs"])
    worker.outbox.claim_due()  # "crash" while sending
    assert worker.outbox.get(row_id).state == "sending"  # type: ignore[union-attr]
    worker.start()
    try:
        assert wait_for(lambda: worker.study_delivered(reports[0].StudyInstanceUID), 5)
    finally:
        worker.stop()


def test_backoff_is_exponential_with_full_jitter() -> None:
    rng = random.Random(0)
    samples = [backoff_delay(n, 2.0, 300.0, rng) for n in (1, 2, 3, 12) for _ in range(200)]
    first, second, third, late = (samples[i * 200 : (i + 1) * 200] for i in range(4))
    assert min(first) >= 0 and max(first) <= 2.0
    assert max(second) <= 4.0 and max(second) > 2.0
    assert max(third) <= 8.0
    assert max(late) <= 300.0 and max(late) > 150.0


def test_resolve_destinations_prefers_reply_to_sender() -> None:
    settings = Settings(
        delivery=DeliverySettings(
            destinations={"a": Destination(), "b": Destination(), "c": Destination()},
            default_destinations=["a", "c"],
            reply_to_sender={"MODALITY1": "b", "OTHER": "missing"},
        )
    )
    assert resolve_destinations("MODALITY1", settings) == ["b"]
    assert resolve_destinations("SOMEONE", settings) == ["a", "c"]
    assert resolve_destinations("OTHER", settings.delivery) == []


def test_study_without_rows_is_not_delivered(tmp_path) -> None:
    outbox = Outbox(Database(tmp_path / "i.sqlite3"))
    assert outbox.study_delivered_at("1.2.3") is None
    assert outbox.study_state("1.2.3")["pending"] == 0
