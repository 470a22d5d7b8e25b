"""Several receiving processes on one DICOM port (``dicom.processes``, issue 15): correctness only.

Real ``scp-node serve`` processes, real DCMTK ``storescu`` senders and pynetdicom/raw-socket
peers on 127.0.0.1; the index is read back from its SQLite file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    Verification,
)

from scp_node.audit.trail import default_paths
from scp_node.config import load_settings
from tests.association_answer import request
from tests.audit_rules import parse
from tests.conftest import (
    dcmtk,
    dcmtk_env,
    dimse_destination,
    free_port,
    node_settings,
    run_node,
    storescu,
)
from tests.dicom_factory import write_mr
from tests.hostile.raw_pdu import associate
from tests.node_process import NodeProcess, write_toml
from tests.test_commitment_tls import commitment_request


def start_node(tmp_path: Path, processes: int, **dicom: object) -> NodeProcess:
    """``serve`` with ``processes`` receiving processes, waited for until all of them listen."""
    port = free_port()
    config = {
        "dicom": {"bind_host": "127.0.0.1", "port": port, "processes": processes, **dicom},
        "storage": {"data_dir": str(tmp_path / "node"), "min_free_mb": 1},
        "http": {"enabled": False},
        "pipeline": {"enabled": False},
    }
    path = tmp_path / "node.toml"
    write_toml(path, config)
    node = NodeProcess(path, port).start()
    wait_for(lambda: "node started" in node.log(), "the node to start")
    wait_for(lambda: len(children(node)) == processes - 1, "the receiving processes")
    return node


def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def children(node: NodeProcess) -> list[int]:
    """PIDs of the receiving processes the node started (its child processes)."""
    assert node.process is not None
    out = subprocess.run(
        ["pgrep", "-P", str(node.process.pid)], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


def index_rows(tmp_path: Path) -> dict[str, tuple[int, str, int]]:
    """SOP Instance UID → (times received, path, size) from the node's index file."""
    with sqlite3.connect(tmp_path / "node" / "index.sqlite3") as db:
        rows = db.execute(
            "SELECT sop_instance_uid, times_received, path, size FROM instances"
        ).fetchall()
    return {uid: (times, path, size) for uid, times, path, size in rows}


def series(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True)
    return [write_mr(folder / f"{i:03d}.dcm", seed=seed * 1000 + i) for i in range(count)]


def storescu_verbose(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    argv = [dcmtk("storescu"), "-v", "-aet", "PACS", "-aec", "LSTV_NODE", "127.0.0.1", str(port)]
    return subprocess.run(
        [*argv, *map(str, files)], capture_output=True, text=True, env=dcmtk_env(), timeout=120
    )


def acknowledged(output: str) -> list[Path]:
    """Files that storescu -v reports as sent and answered with Success."""
    done, current = [], None
    for line in output.splitlines():
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = Path(sending.group(1).strip())
        elif "Received Store Response (Success)" in line and current is not None:
            done.append(current)
            current = None
    return done


def test_every_instance_is_indexed_once_with_several_processes(tmp_path: Path) -> None:
    node = start_node(tmp_path, processes=3)
    try:
        batches = [series(tmp_path / f"s{k}", 8, seed=k) for k in range(8)]
        with ThreadPoolExecutor(len(batches)) as pool:
            results = list(pool.map(lambda files: storescu_verbose(node.port, files), batches))
        assert all(r.returncode == 0 for r in results), [r.stderr[-500:] for r in results]
        sent = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for b in batches for f in b}
        rows = index_rows(tmp_path)
        assert set(rows) == sent
        assert {times for times, _, _ in rows.values()} == {1}, "each instance indexed once"
        assert all(Path(path).stat().st_size == size for _, path, size in rows.values())
        # the associations were spread over more than one process (8 connections, 3 listeners)
        pids = set(re.findall(r"association accepted from PACS .* in process (\d+)", node.log()))
        assert len(pids) >= 2, pids
    finally:
        node.stop()
    assert not list((tmp_path / "node" / "spool" / ".tmp").iterdir())


def test_max_associations_hold_across_processes(tmp_path: Path) -> None:
    node = start_node(tmp_path, processes=3, max_associations=2)
    ae = AE(ae_title="PACS")
    ae.add_requested_context(Verification)
    held = []
    try:
        for _ in range(2):
            assoc = ae.associate("127.0.0.1", node.port, ae_title="LSTV_NODE")
            assert assoc.is_established
            held.append(assoc)
        # whichever process the kernel hands them to, a third and later one is rejected
        for _ in range(6):
            extra, rejected = request(ae, node.port)
            assert not extra.is_established
            # rejected-transient (2), service-provider presentation (3), local-limit-exceeded (2)
            assert rejected.answer == (2, 3, 2)
        held.pop().release()
        # the slot is free once the node's association thread has ended (a moment after the
        # A-RELEASE-RP): a sender that tries again gets in, whichever process it reaches
        deadline = time.monotonic() + 10
        while True:
            again = ae.associate("127.0.0.1", node.port, ae_title="LSTV_NODE")
            if again.is_established or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert again.is_established, "a released slot is free again for every process"
        again.release()
    finally:
        for assoc in held:
            assoc.release()
        node.stop()
    assert "local limit exceeded" in node.log()


def test_per_association_pdu_limit_holds_in_every_process(tmp_path: Path) -> None:
    node = start_node(tmp_path, processes=3, maximum_pdu_size=16384)
    try:
        for _ in range(8):
            with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
                assert associate(sock)[:1] == b"\x02"  # A-ASSOCIATE-AC
                # a P-DATA-TF longer than the node announced: A-ABORT, before the body is read
                sock.sendall(struct.pack(">BBL", 0x04, 0, 16384 * 4))
                answer = sock.recv(64)
                assert answer[:1] == b"\x07", answer
        assert "exceeds the 16384 bytes announced" in node.log()
    finally:
        node.stop()


def test_kill9_of_a_receiving_process_loses_nothing_acknowledged(tmp_path: Path) -> None:
    node = start_node(tmp_path, processes=2)
    batches = [series(tmp_path / f"s{k}", 20, seed=k) for k in range(6)]
    try:
        (victim,) = children(node)
        with ThreadPoolExecutor(len(batches)) as pool:
            running = [pool.submit(storescu_verbose, node.port, files) for files in batches]
            wait_for(lambda: len(index_rows(tmp_path)) >= 12, "instances to arrive", 60)
            os.kill(victim, signal.SIGKILL)
            results = [future.result() for future in running]
        # the serve process starts a new receiving process and removes the dead one's temp files
        wait_for(lambda: children(node) and children(node) != [victim], "a new receiving process")
        wait_for(
            lambda: not list((tmp_path / "node" / "spool" / ".tmp").glob(f"{victim}-*")),
            "the dead process's temp files to be removed",
        )
    finally:
        node.stop()
    acked = [f for r in results for f in acknowledged(r.stdout + r.stderr)]
    assert acked, "some instances were acknowledged"
    rows = index_rows(tmp_path)
    for path in acked:
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert uid in rows, f"acknowledged {path.name} is not indexed"
        _, stored, size = rows[uid]
        assert Path(stored).stat().st_size == size
        assert dcmread(stored).PixelData == dcmread(path).PixelData
    # and after a restart they are all still there
    node.start()
    try:
        wait_for(lambda: "node started" in node.log().split("stopped")[-1], "the restart")
        assert set(index_rows(tmp_path)) >= {
            str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in acked
        }
        wait_for(lambda: len(children(node)) == 1, "the receiving process")
        orphans = children(node)
        node.kill9()  # the serve process itself: its receiving process must not outlive it
        wait_for(lambda: not any(alive(pid) for pid in orphans), "the receiver to end", 10)
    finally:
        node.stop()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    except OSError:
        return False


def test_storage_commitment_answered_by_any_process_is_reported(tmp_path: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    """N-ACTIONs reach whichever receiving process the kernel picks; each one's report is queued
    in the shared outbox and sent by the serve process (here an in-process node)."""
    listener_port = free_port()
    settings = node_settings(
        tmp_path,
        dicom={"processes": 3},
        delivery={
            "destinations": {"modality": dimse_destination("MODALITY", listener_port)},
            "reply_to_sender": {"MODALITY": "modality"},
            "poll_interval_s": 0.2,
        },
    )
    reports: dict[str, set[str]] = {}

    def on_event_report(event):  # type: ignore[no-untyped-def]
        info = event.event_information
        reports[str(info.TransactionUID)] = {
            str(item.ReferencedSOPInstanceUID) for item in info.ReferencedSOPSequence
        }
        return 0x0000, None

    listener = AE(ae_title="MODALITY")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    server = listener.start_server(
        ("127.0.0.1", listener_port),
        block=False,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event_report)],
    )
    files = [write_mr(tmp_path / f"in{i}.dcm", seed=70 + i) for i in range(3)]
    sent = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    transactions = [f"1.2.826.0.1.3680043.8.498.15.{k}" for k in range(8)]
    try:
        with run_node(settings):
            assert storescu(settings.dicom.port, files, calling="MODALITY").returncode == 0
            requester = AE(ae_title="MODALITY")
            requester.add_requested_context(StorageCommitmentPushModel)
            for transaction in transactions:  # 8 associations over 3 listening processes
                request = commitment_request(files)
                request.TransactionUID = transaction
                assoc = requester.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
                status, _ = assoc.send_n_action(
                    request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1"
                )
                assoc.release()
                assert status.Status == 0x0000
            wait_for(lambda: len(reports) == len(transactions), "every report", 30)
    finally:
        server.shutdown()
    assert reports == {transaction: sent for transaction in transactions}
    # the receiving processes log to standard error: some N-ACTIONs were theirs
    others = set(re.findall(r"from MODALITY .* in process (\d+)", capfd.readouterr().err))
    assert others - {str(os.getpid())}, "no association reached another process"


def test_back_pressure_holds_in_every_process(tmp_path: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    """A full analysis queue (jobs table) refuses new associations' C-STOREs with 0xA700, whichever
    receiving process they reach."""
    settings = node_settings(
        tmp_path,
        dicom={"processes": 3},
        pipeline={"enabled": True, "quiet_seconds": 0.2, "poll_interval_s": 0.1, "queue_size": 1},
        model={"weights": str(tmp_path / "absent.pt")},  # the worker never drains the queue
    )
    with run_node(settings) as node:
        first = [write_mr(tmp_path / "first.dcm", seed=90)]
        assert storescu(settings.dicom.port, first).returncode == 0
        assert node.pipeline is not None
        wait_for(lambda: node.pipeline.jobs.depth() >= 1, "the queued study")  # type: ignore[union-attr]
        sender = AE(ae_title="PACS")
        sender.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
        for k in range(8):  # 8 associations over 3 listening processes
            late = dcmread(write_mr(tmp_path / f"late{k}.dcm", seed=91 + k))
            assoc = sender.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
            assert assoc.is_established
            status = assoc.send_c_store(late)
            assoc.release()
            assert status.Status == 0xA700, status
            assert "queue full" in status.ErrorComment
            assert node.index.get(str(late.SOPInstanceUID)) is None
    others = set(re.findall(r"from PACS .* in process (\d+)", capfd.readouterr().err))
    assert others - {str(os.getpid())}, "no association reached another process"


def test_audit_trail_covers_every_receiving_process(tmp_path: Path) -> None:
    """Each process queues its associations' Instances Transferred messages in the shared audit
    queue; the serve process alone sends them, with one Application Start and Stop."""
    node = start_node(tmp_path, processes=3)
    files = [write_mr(tmp_path / f"a{k}.dcm", seed=300 + k) for k in range(8)]
    try:
        with ThreadPoolExecutor(len(files)) as pool:  # 8 associations over 3 processes
            results = list(pool.map(lambda f: storescu_verbose(node.port, [f]), files))
        assert all(r.returncode == 0 for r in results)
    finally:
        node.stop()
    studies = {str(dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in files}
    path, _ = default_paths(load_settings(node.config_path))
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    kinds = [line["event"] for line in lines]
    assert kinds.count("application-start") == 1 and kinds.count("application-stop") == 1
    transferred = [parse(x["xml"]) for x in lines if x["event"] == "transferred"]
    assert {t.objects_of("110180")[0].object_id for t in transferred} == studies
    assert len(transferred) == len(studies)
