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
