"""Log forging (issue 13 D7): peer-supplied values never start a new log line."""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset

from scp_node.observe import setup_logging
from tests.conftest import node_settings, run_node
from tests.dicom_factory import mr_dataset
from tests.hostile.raw_pdu import associate_rq
from tests.hostile.stow import stow_parts

FORGED = "2026-12-02 00:00:00,000 INFO    scp_node.ingest.receiver: stored sop=FORGED"


@pytest.fixture
def captured(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[io.StringIO]:
    """The node's own log set-up (text or JSON), writing into a buffer."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO", request.param)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@pytest.mark.parametrize("captured", ["text", "json"], indirect=True)
def test_forged_values_stay_on_one_line(
    tmp_path, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the node's handler writes to sys.stderr as it is when a record is logged (set here, in the
    # test's call phase: pytest's own capture re-installs sys.stderr after fixture set-up)
    monkeypatch.setattr(sys, "stderr", captured)
    settings = node_settings(tmp_path, dicom={"allowed_calling_aes": ["PACS"]}, http={"port": 0})
    with run_node(settings) as node:
        # a calling AE title with a line break, NUL and ESC (through pynetdicom and the node)
        with socket.create_connection(("127.0.0.1", settings.dicom.port), timeout=5) as sock:
            sock.sendall(associate_rq(b"EV\nIL\x00\x1b[2J"))
            sock.recv(1024)  # the A-ASSOCIATE-RJ
        # a STOW part whose SOP Instance UID carries a forged line
        ds: Dataset = mr_dataset()
        ds.SOPInstanceUID = "1.2.3\n" + FORGED
        part = io.BytesIO()
        ds.save_as(part, enforce_file_format=True)
        answer = stow_parts(node.http.port, [part.getvalue()], timeout=30)
        assert answer.status_code == 409
    lines = captured.getvalue().splitlines()
    assert lines
    assert not [line for line in lines if line.startswith("2026-12-02 00:00:00,000")]
    assert not [line for line in lines if "\x00" in line or "\x1b" in line]
    if captured is not None and lines[0].startswith("{"):
        messages = [json.loads(line)["message"] for line in lines]
    else:
        messages = lines
    assert any("FORGED" in m for m in messages)  # the value is there, escaped, on one line
    assert any("EV" in m and "IL" in m for m in messages)
