"""The intake journal (write-ahead log, issue 15): one flush before Success, replay after a crash.

Real ``scp-node serve`` processes, real DCMTK ``storescu`` and a real SIGKILL where the fault can be
caused so; what a power loss would do to unflushed spool files and index commits cannot be caused
here and is injected (each test says where).
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from scp_node.config import Settings
from scp_node.ingest.receiver import Origin, Receiver
from scp_node.node import Node
from scp_node.store import journal as journal_module
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex
from scp_node.store.journal import DATA_START, IntakeJournal, JournalEntry, read_entries
from scp_node.store.spool import Spool
from tests.conftest import free_port, node_settings
from tests.dicom_factory import mr_dataset, write_mr
from tests.node_process import write_toml
from tests.processes import stop_process
from tests.test_ingest_faults import encode_dataset, store_file
from tests.test_ingest_processes import (
    acknowledged,
    index_rows,
    series,
    start_node,
    storescu_verbose,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


def receiver_for(tmp_path: Path) -> Receiver:
    """A receiver on a spool and index under ``tmp_path`` (journal not opened yet)."""
    data = tmp_path / "node"
    data.mkdir(exist_ok=True)
    index = InstanceIndex(Database(data / "index.sqlite3"))
    return Receiver(Spool(data / "spool"), index, [ExplicitVRLittleEndian])


def entry(seq: int, received_at: float = 0.0) -> tuple[dict[str, object], bytes]:
    return {"received_at": received_at or time.time(), "n": seq}, bytes([seq % 251]) * 100_000


def test_space_is_recycled_after_checkpoints(tmp_path: Path) -> None:
    """50 records of 100 kB through a 1 MiB journal: the file never grows, every record is
    consumed once its spool file is flushed, and nothing is left to replay."""
    applied: list[JournalEntry] = []
    journal = IntakeJournal.open(tmp_path / "j", 2**20, applied.append)
    path = journal.path
    try:
        for n in range(50):
            meta, data = entry(n)
            ticket = journal.append(meta, [data])
            assert ticket is not None
            spool_file = tmp_path / f"{n}.dcm"
            spool_file.write_bytes(data)
            journal.applied(ticket, spool_file)
            assert path.stat().st_size == 2**20
            assert journal.unconsumed() <= (2**20 - DATA_START) // 100_000  # what fits
        assert journal.drain(10)
    finally:
        journal.close()
    assert path.stat().st_size == 2**20
    assert read_entries(path)[0] == []
    # reopened: nothing to replay, the sequence goes on
    again = IntakeJournal.open(tmp_path / "j", 2**20, applied.append)
    try:
        assert applied == []
        meta, data = entry(51)
        assert again.append(meta, [data]) is not None
    finally:
        again.close(timeout=0.2)


def test_a_record_larger_than_a_quarter_is_not_journaled(tmp_path: Path) -> None:
    journal = IntakeJournal.open(tmp_path / "j", 2**20, lambda _: None)
    try:
        assert journal.append({"received_at": 1.0}, [b"x" * (2**20 // 4 + 1)]) is None
    finally:
        journal.close()


def test_a_torn_trailing_record_is_ignored_with_a_log_line(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    journal = IntakeJournal.open(tmp_path / "j", 2**20, lambda _: None)
    offsets = []
    for n in range(3):  # appended, never applied: all three stay unconsumed
        meta, data = entry(n + 1)
        ticket = journal.append(meta, [data])
        offsets.append(ticket.offset)  # type: ignore[union-attr]
    path = journal.path
    journal.close(timeout=0.1)  # as after a crash: nothing consumed
    # injected: the last record's tail never reached the disk (a torn write)
    with open(path, "r+b") as handle:
        handle.seek(offsets[2] + 50_000)
        handle.write(b"\xff" * 10)
    replayed: list[JournalEntry] = []
    with caplog.at_level(logging.WARNING, logger="scp_node.store.journal"):
        again = IntakeJournal.open(tmp_path / "j", 2**20, replayed.append)
    again.close()
    assert [e.meta["n"] for e in replayed] == [1, 2]
    assert replayed[0].data == bytes([1]) * 100_000
    assert "torn or corrupt" in caplog.text
    assert read_entries(path)[0] == []  # replayed ones are consumed


def test_garbage_after_the_checkpoint_is_not_replayed(tmp_path: Path) -> None:
    journal = IntakeJournal.open(tmp_path / "j", 2**20, lambda _: None)
    path = journal.path
    journal.close()
    with open(path, "r+b") as handle:
        handle.seek(DATA_START)
        handle.write(os.urandom(4096))
    assert read_entries(path)[0] == []


def held_node(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``serve``, no pipeline, journal checkpoints held back (tests/journal_held_node.py)."""
    port = free_port()
    config = {
        "dicom": {"bind_host": "127.0.0.1", "port": port},
        "storage": {"data_dir": str(tmp_path / "node"), "min_free_mb": 1, "journal_mb": 8},
        "http": {"enabled": False},
        "pipeline": {"enabled": False},
    }
    config_path = tmp_path / "node.toml"
    write_toml(config_path, config)
    log = tmp_path / "node.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "journal_held_node.py")],
            env={**os.environ, "SCP_NODE_CONFIG": str(config_path), "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "node started" in log.read_text(), "the node to start", 60)
    except AssertionError:
        stop_process(process)
        raise
    return process, port, log


def test_journaled_instances_survive_sigkill_and_lost_spool_files(tmp_path: Path) -> None:
    """storescu → serve, SIGKILL while the spool files are not flushed yet; then what a power
    loss would add (injected: the unflushed spool files and index commits are lost) — the
    restarted node puts every acknowledged instance back from the journal, byte for byte."""
    files = series(tmp_path / "s", 12, seed=7)
    process, port, _ = held_node(tmp_path)
    try:
        done = storescu_verbose(port, files)
    finally:
        os.kill(process.pid, signal.SIGKILL)  # real kill -9, checkpoints still held back
        process.wait(10)
    acked = acknowledged(done.stdout + done.stderr)
    assert len(acked) == 12, done.stdout + done.stderr
    data = tmp_path / "node"
    assert len(read_entries(data / "journal" / "intake-0.wal")[0]) == 12  # none consumed
    # injected power loss: unflushed spool files lost (truncated), the last commits lost
    for spooled in (data / "spool").glob("*/*/*.dcm"):
        spooled.write_bytes(b"")
    with sqlite3.connect(data / "index.sqlite3") as db:
        db.execute("DELETE FROM instances")
    node = Node(node_settings(tmp_path, storage={"journal_mb": 8}))
    node.start()
    try:
        for path in acked:
            sent = dcmread(path)
            record = node.index.get(str(sent.SOPInstanceUID))
            assert record is not None, f"acknowledged {path.name} lost"
            stored = dcmread(record.path)
            assert stored.PixelData == sent.PixelData
            assert record.size == record.path.stat().st_size
            assert record.calling_ae == "PACS"
        assert read_entries(data / "journal" / "intake-0.wal")[0] == []
    finally:
        node.stop()


def test_kill9_of_the_real_node_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """The node as shipped (checkpoints on), killed -9 in the middle of a transfer."""
    files = series(tmp_path / "s", 40, seed=3)
    port = free_port()
    config = {
        "dicom": {"bind_host": "127.0.0.1", "port": port},
        "storage": {"data_dir": str(tmp_path / "node"), "min_free_mb": 1, "journal_mb": 8},
        "http": {"enabled": False},
        "pipeline": {"enabled": False},
    }
    write_toml(tmp_path / "node.toml", config)
    log = tmp_path / "node.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scp_node", "serve"],
            env={**os.environ, "SCP_NODE_CONFIG": str(tmp_path / "node.toml")},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "node started" in log.read_text(), "the node to start", 60)
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(storescu_verbose, port, files)
            wait_for(lambda: len(index_rows(tmp_path)) >= 10, "instances to arrive", 60)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            result = running.result()
    finally:
        stop_process(process)
    acked = acknowledged(result.stdout + result.stderr)
    assert acked
    node = Node(node_settings(tmp_path, storage={"journal_mb": 8}))
    node.start()
    try:
        for path in acked:
            record = node.index.get(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID))
            assert record is not None, f"acknowledged {path.name} lost"
            assert dcmread(record.path).PixelData == dcmread(path).PixelData
    finally:
        node.stop()


def test_duplicates_stay_idempotent_and_replay_keeps_the_newer_version(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """v1 journaled (checkpoints held back: injected), v2 of the same UID replaces it; a replay of
    the journal (as after a crash) keeps v2, and replaying twice changes nothing."""
    monkeypatch.setattr(journal_module, "BATCH_WAIT_S", 3600.0)
    receiver = receiver_for(tmp_path)
    receiver.journal = IntakeJournal.open(tmp_path / "node" / "journal", 2**22, receiver.replay)
    ds = mr_dataset(seed=5)
    v1 = encode_dataset(ds)
    ds.PixelData = bytes(len(ds.PixelData))  # same UIDs, other pixels
    v2 = encode_dataset(ds)
    origin = Origin(calling_ae="PACS")
    first = receiver.store_dataset(v1, ExplicitVRLittleEndian, origin)
    second = receiver.store_dataset(v2, ExplicitVRLittleEndian, origin)
    again = receiver.store_dataset(v2, ExplicitVRLittleEndian, origin)
    uid = first.sop_instance_uid
    assert first.path == second.path == again.path
    assert second.received_at > first.received_at
    receiver.journal.close(timeout=0.1)  # as after a crash: v1's record is not consumed
    receiver.journal = None
    entries, _, _ = read_entries(tmp_path / "node" / "journal" / "intake-0.wal")
    assert len(entries) == 1  # only the new instance went through the journal
    for _ in range(2):
        receiver.replay(entries[0])
    assert dcmread(first.path).PixelData == ds.PixelData  # v2 kept
    rows = (
        receiver.index.db.connection()
        .execute(
            "SELECT COUNT(*), times_received FROM instances WHERE sop_instance_uid = ?", (uid,)
        )
        .fetchone()
    )
    assert tuple(rows) == (1, 3)
    # a lost index row (power loss, injected): the replay restores v1's row and file
    receiver.index.db.connection().execute("DELETE FROM instances")
    receiver.replay(entries[0])
    restored = receiver.index.get(uid)
    assert restored is not None and restored.received_at == first.received_at


def test_journal_off_and_fsync_off_write_the_spool_directly(tmp_path: Path) -> None:
    for storage in ({"journal_mb": 0}, {"fsync": False}):
        settings: Settings = node_settings(tmp_path / str(len(storage)) / next(iter(storage)),
                                           storage=storage)  # fmt: skip
        node = Node(settings)
        node.start()
        try:
            assert node.receiver.journal is None
        finally:
            node.stop()
    settings = node_settings(tmp_path / "on")
    node = Node(settings)
    node.start()
    try:
        assert node.receiver.journal is not None
        sent = write_mr(tmp_path / "one.dcm", seed=9)
        assert store_file(settings.dicom.port, sent) == 0
        assert node.receiver.journal.drain(10)
        assert node.receiver.journal.unconsumed() == 0
    finally:
        node.stop()
    assert len(index_rows(tmp_path / "on")) == 1


@pytest.mark.parametrize("processes", [2])
def test_each_receiving_process_has_its_own_journal(tmp_path: Path, processes: int) -> None:
    node = start_node(tmp_path, processes=processes)
    try:
        wait_for(
            lambda: len(list((tmp_path / "node" / "journal").glob("intake-*.wal"))) == processes,
            "a journal per process",
        )
        files = series(tmp_path / "s", 6, seed=11)
        assert storescu_verbose(node.port, files).returncode == 0
    finally:
        node.stop()
    assert len(index_rows(tmp_path)) == 6
