"""Hostile DIMSE peers (issue 13): bounded counts, real sockets on 127.0.0.1, small timeouts."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from scp_node.config import Settings
from tests.conftest import node_settings, run_node
from tests.hostile.stow import stow_parts

#: The first 8 bytes of an A-ASSOCIATE-RQ that claims ~4 GiB (PS3.8 §9.3.2), then silence.
HALF_RQ = struct.pack(">BBL", 1, 0, 0xFFFFFFF0) + b"\0\1"
#: The same within the size limit (claims 2000 bytes), then silence: only the deadline drops it.
HALF_SMALL_RQ = struct.pack(">BBL", 1, 0, 2000) + b"\0\1"


def echo(port: int) -> bool:
    ae = AE(ae_title="PACS")
    ae.add_requested_context(Verification)
    ae.acse_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title="LSTV_NODE")
    if not assoc.is_established:
        return False
    try:
        return int(assoc.send_c_echo().Status) == 0
    finally:
        assoc.release()


@contextmanager
def idle_sockets(port: int, count: int, payload: bytes) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if payload:
                sock.sendall(payload)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed_by_peer(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
            # an A-ABORT before the close is fine
    except TimeoutError:
        return False
    except OSError:
        return True


def lockout_settings(tmp_path) -> Settings:
    return node_settings(
        tmp_path,
        dicom={"max_associations": 2, "association_request_timeout_s": 1.0},
    )


@pytest.mark.parametrize("payload", [HALF_RQ, HALF_SMALL_RQ], ids=["claims-4GiB", "claims-2000"])
def test_half_sent_associate_rq_neither_locks_out_nor_stays(tmp_path, caplog, payload):
    """D1: 12 sockets that send 8 bytes of an A-ASSOCIATE-RQ and hold still (more than
    ``max_associations``) must not keep a real sender out, and are dropped and logged."""
    settings = lockout_settings(tmp_path)
    caplog.set_level(logging.WARNING, logger="scp_node.ingest.dimse_guard")
    with run_node(settings), idle_sockets(settings.dicom.port, 12, payload) as socks:
        started = time.monotonic()
        assert echo(settings.dicom.port)
        assert time.monotonic() - started < 10
        assert all(closed_by_peer(s, 5.0) for s in socks)
        assert echo(settings.dicom.port)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped and all("127.0.0.1" in line for line in dropped)


def test_silent_sockets_do_not_lock_out(tmp_path):
    """D1: 40 connections that send nothing do not count against ``max_associations``."""
    settings = lockout_settings(tmp_path)
    with run_node(settings), idle_sockets(settings.dicom.port, 40, b""):
        started = time.monotonic()
        assert echo(settings.dicom.port)
        assert time.monotonic() - started < 10


def test_oversized_associate_rq_is_aborted(tmp_path, caplog):
    """D1/D2: an A-ASSOCIATE-RQ longer than the limit gets A-ABORT at once, body unread."""
    settings = lockout_settings(tmp_path)
    caplog.set_level(logging.WARNING, logger="scp_node.ingest.dimse_guard")
    with run_node(settings), idle_sockets(settings.dicom.port, 1, HALF_RQ + b"\0" * 1000) as socks:
        socks[0].settimeout(3)
        reply = socks[0].recv(10)
        assert reply[:1] == b"\x07"  # A-ABORT
        assert echo(settings.dicom.port)
    assert any("A-ASSOCIATE-RQ claims" in r.getMessage() for r in caplog.records)


def test_oversized_pdata_is_aborted_before_it_is_buffered(tmp_path, caplog):
    """D2: a P-DATA-TF whose length claims ~4 GiB (more than the 128 KiB the node announced),
    followed by 64 MiB, gets A-ABORT and the connection closed; the process does not buffer it."""
    from tests.hostile.raw_pdu import associate, vm_kib

    settings = node_settings(tmp_path)
    caplog.set_level(logging.WARNING, logger="scp_node.ingest.dimse_guard")
    with run_node(settings):
        before = vm_kib("VmRSS")
        with socket.create_connection(("127.0.0.1", settings.dicom.port), timeout=10) as sock:
            assert associate(sock)[:1] == b"\x02"  # A-ASSOCIATE-AC
            sock.sendall(struct.pack(">BBL", 4, 0, 0xFFFFFFF0))
            sent = 0
            chunk = b"\0" * (1 << 20)
            try:
                while sent < 64 * (1 << 20):
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass  # the node closed the connection: expected
            sock.settimeout(5)
            try:
                reply = sock.recv(16)
            except OSError:
                reply = b""
        grown_mib = (vm_kib("VmRSS") - before) / 1024
        assert echo(settings.dicom.port)
    assert reply[:1] in (b"\x07", b"")  # A-ABORT (or reset after it)
    assert any("exceeds the 131072 bytes" in r.getMessage() for r in caplog.records)
    assert grown_mib < 32, f"RSS grew {grown_mib:.0f} MiB"


def big_mr(path, mib: int):
    """An MR image of ``mib`` MiB of (zero) 16-bit pixels, written to ``path``."""
    from tests.dicom_factory import mr_dataset

    ds = mr_dataset(size=8)
    ds.Rows, ds.Columns = 1024, mib * 512
    ds.PixelData = bytes(ds.Rows * ds.Columns * 2)
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_large_instance_streams_to_disk_not_memory(tmp_path):
    """D2: a 48 MiB C-STORE (DCMTK storescu, another process) is received into a file and copied
    into the spool: the node's peak memory grows by far less than the instance."""
    from tests.conftest import storescu
    from tests.hostile.raw_pdu import reset_peak_rss, vm_kib

    if not reset_peak_rss():
        pytest.skip("cannot reset the peak RSS here (/proc/self/clear_refs)")
    path = tmp_path / "big.dcm"
    ds = big_mr(path, 48)
    settings = node_settings(tmp_path, storage={"fsync": False})
    with run_node(settings) as node:
        reset_peak_rss()
        before = vm_kib("VmHWM")
        result = storescu(settings.dicom.port, [path], "-xe")
        peak_mib = (vm_kib("VmHWM") - before) / 1024
        assert result.returncode == 0, result.stderr
        record = node.index.get(str(ds.SOPInstanceUID))
        assert record is not None and record.size > 48 * 2**20
        assert not list(node.spool.tmp_dir.iterdir())
    assert peak_mib < 24, f"peak RSS grew {peak_mib:.0f} MiB for a 48 MiB instance"


def test_instance_above_the_maximum_is_refused_and_leaves_nothing(tmp_path, caplog):
    """D2: above ``storage.max_instance_mb`` a C-STORE is aborted as its bytes arrive (PS3.8
    A-ABORT: a status can only follow the whole data set) and STOW-RS answers a failed part
    0xA700; no temp file stays behind."""

    from tests.conftest import storescu

    path = tmp_path / "big.dcm"
    big_mr(path, 12)
    settings = node_settings(tmp_path, storage={"max_instance_mb": 8}, http={"port": 0})
    caplog.set_level(logging.WARNING)
    with run_node(settings) as node:
        result = storescu(settings.dicom.port, [path], "-xe")
        assert result.returncode != 0 or "Abort" in result.stderr + result.stdout
        answer = stow_parts(node.http.port, [path.read_bytes()], timeout=60)
        assert answer.status_code == 409
        assert answer.json()["00081198"]["Value"][0]["00081197"]["Value"][0] == 0xA700
        assert node.index.count() == 0
        time.sleep(0.5)
        assert not list(node.spool.tmp_dir.iterdir())
        assert echo(settings.dicom.port)
    assert any("maximum instance size" in r.getMessage() for r in caplog.records)
