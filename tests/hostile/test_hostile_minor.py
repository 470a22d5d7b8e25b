"""Minor defects of issue 13 (D8, D9, D11, D13): bounded, real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import struct
import time
from pathlib import Path

import httpx
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.association_answer import request
from tests.conftest import node_settings, run_node
from tests.dicom_factory import mr_dataset
from tests.hostile.raw_pdu import associate


def test_wrong_called_ae_is_logged_as_asked(tmp_path: Path, caplog) -> None:
    """D11: the rejection names the called AE title the peer asked for, not the node's."""
    settings = node_settings(tmp_path)
    caplog.set_level(logging.WARNING, logger="scp_node.ingest.dimse")
    with run_node(settings):
        ae = AE(ae_title="PACS")
        ae.add_requested_context(Verification)
        assoc, rejected = request(ae, settings.dicom.port, called="NOT_THE_NODE")
        assert not assoc.is_established and rejected.answer == (1, 1, 7)
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert lines and "called=NOT_THE_NODE" in lines[0], lines


def test_pdv_on_a_context_not_accepted_is_aborted_and_logged(tmp_path: Path, caplog) -> None:
    """D13: a PDV on presentation context 3 (only 1 was proposed and accepted) gets A-ABORT
    (PS3.8 §9.3.5: an unexpected PDU parameter) and a log line, instead of a hang."""
    settings = node_settings(tmp_path)
    caplog.set_level(logging.WARNING, logger="scp_node.ingest.dimse_guard")
    with (
        run_node(settings),
        socket.create_connection(("127.0.0.1", settings.dicom.port), timeout=5) as sock,
    ):
        assert associate(sock)[:1] == b"\x02"
        command = b"\x00" * 12
        pdv = struct.pack(">LBB", 2 + len(command), 3, 0x03) + command
        sock.sendall(struct.pack(">BBL", 4, 0, len(pdv)) + pdv)
        started = time.monotonic()
        reply = sock.recv(16)
        assert reply[:1] == b"\x07"  # A-ABORT
        assert time.monotonic() - started < 5
    assert any("presentation context 3" in r.getMessage() for r in caplog.records)


def _stow_headers(boundary: str, length: int, extra: str = "") -> bytes:
    return (
        "POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}\r\n'
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def test_stow_client_disconnect_mid_body_is_one_line(tmp_path: Path, caplog) -> None:
    """D8: a client that goes away mid-body: one WARNING saying what was stored, no traceback;
    the parts completed before stay stored."""
    settings = node_settings(tmp_path, http={"port": 0})
    caplog.set_level(logging.INFO)
    parts = []
    for seed in range(2):
        buffer = io.BytesIO()
        mr_dataset(seed=seed).save_as(buffer, enforce_file_format=True)
        parts.append(buffer.getvalue())
    boundary = "b0undary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
            for p in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    cut = len(body) - len(parts[1]) // 2
    with run_node(settings) as node:
        with socket.create_connection(("127.0.0.1", node.http.port), timeout=5) as sock:
            sock.sendall(_stow_headers(boundary, len(body)) + body[:cut])
            time.sleep(1.0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            "disconnected" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.1)
        assert node.index.count() == 1
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and "1 stored" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info and "ClientDisconnect" in str(r.exc_info)]


def test_calling_ae_header_is_validated(tmp_path: Path) -> None:
    """D9: X-Calling-AE-Title must be an AE title (PS3.5 §6.2: ≤ 16 printable ASCII, no
    backslash): Latin-1 or control bytes get 400, nothing reaches the file meta or a metric."""
    settings = node_settings(tmp_path, http={"port": 0})
    buffer = io.BytesIO()
    mr_dataset().save_as(buffer, enforce_file_format=True)
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + buffer.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with run_node(settings) as node:
        url = f"http://127.0.0.1:{node.http.port}/dicom-web/studies"
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        for bad in (b"PAC\xe9S", b"A\x01B", b"A\\B", b"X" * 17):
            answer = httpx.post(
                url,
                content=body,
                headers={"Content-Type": content_type, "X-Calling-AE-Title": bad},  # type: ignore[dict-item]
                timeout=30,
            )
            assert answer.status_code == 400, bad
        assert node.index.count() == 0
        good = httpx.post(
            url,
            content=body,
            headers={"Content-Type": content_type, "X-Calling-AE-Title": "ORTHANC"},
            timeout=30,
        )
        assert good.status_code == 200
        record = (
            node.index.get(str(mr_dataset().SOPInstanceUID))
            or node.index.query_instances(
                __import__("scp_node.store.index", fromlist=["QueryMatch"]).QueryMatch()
            )[0]
        )
        assert record.calling_ae == "ORTHANC"


def test_failed_parts_and_junk_pdus_are_aggregated(tmp_path: Path, monkeypatch, caplog) -> None:
    """D10: 30 failed STOW parts give at most 10 per-part WARNINGs plus one summary line with the
    counts by FailureReason; a junk PDU gives pynetdicom's message without a traceback."""
    import sys

    from scp_node.observe import setup_logging

    settings = node_settings(tmp_path, http={"port": 0})
    boundary = "b0undary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + b"not DICOM %d\r\n" % i
            for i in range(30)
        )
        + f"--{boundary}--\r\n".encode()
    )
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO", "text")
    try:
        with run_node(settings) as node:
            answer = httpx.post(
                f"http://127.0.0.1:{node.http.port}/dicom-web/studies",
                content=body,
                headers={
                    "Content-Type": f'multipart/related; type="application/dicom"; '
                    f"boundary={boundary}"
                },
                timeout=30,
            )
            assert answer.status_code == 409
            with socket.create_connection(("127.0.0.1", settings.dicom.port), timeout=5) as sock:
                assert associate(sock)[:1] == b"\x02"
                # an A-ASSOCIATE-RJ too short to decode
                sock.sendall(struct.pack(">BBL", 3, 0, 2) + b"\0\0")
                sock.settimeout(5)
                with contextlib.suppress(OSError):
                    sock.recv(16)
            time.sleep(0.5)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    text = stream.getvalue()
    assert text.count("STOW-RS part refused") == 10
    assert "30 failed (0xC100 x 30)" in text
    assert "Traceback" not in text
