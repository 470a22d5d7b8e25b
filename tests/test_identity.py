"""The node identifies itself as documented on every association (PS3.7 D.3.3.2), seen by DCMTK.

The conformance statement gives the Implementation Class UID and Version Name; DCMTK's ``-d``
output shows what arrived on the wire, in both directions.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pydicom import dcmread

from scp_node.config import Destination
from scp_node.egress.dimse import send_files
from scp_node.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tests.conftest import dcmtk, dcmtk_env, free_port
from tests.dicom_factory import write_mr
from tests.ports import wait_listening

EXPECTED = (str(IMPLEMENTATION_CLASS_UID), IMPLEMENTATION_VERSION_NAME)


def their_identification(debug_output: str) -> list[tuple[str, str]]:
    """Every (class UID, version name) pair DCMTK's ``-d`` output says the peer sent."""
    uids = re.findall(r"Their Implementation Class UID:[ \t]*(\S*)", debug_output)
    names = re.findall(r"Their Implementation Version Name:[ \t]*(\S*)", debug_output)
    return [(u, n) for u, n in zip(uids, names, strict=True) if u]


def test_conformance_statement_gives_the_same_identification():
    text = (Path(__file__).parents[1] / "docs" / "conformance-statement.md").read_text()
    assert f"`{IMPLEMENTATION_CLASS_UID}`" in text
    assert f"`{IMPLEMENTATION_VERSION_NAME}`" in text


def test_listener_sends_the_documented_identification(running_node, settings):
    result = subprocess.run(
        [dcmtk("echoscu"), "-d", "-aet", "PACS", "-aec", "LSTV_NODE", "127.0.0.1",
         str(settings.dicom.port)],
        capture_output=True, text=True, env=dcmtk_env(), timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = their_identification(result.stdout + result.stderr)
    assert seen and set(seen) == {EXPECTED}, seen


def test_result_delivery_sends_the_documented_identification(tmp_path):
    inbox, port, log = tmp_path / "inbox", free_port(), tmp_path / "storescp.log"
    inbox.mkdir()
    with log.open("w") as out:
        receiver = subprocess.Popen(
            [dcmtk("storescp"), "-d", "-aet", "PACS", "-od", str(inbox), str(port)],
            env=dcmtk_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_listening(port)
        sent = write_mr(tmp_path / "result.dcm", seed=3)
        dest = Destination(ae_title="PACS", host="127.0.0.1", port=port)
        outcomes = send_files(dest, "LSTV_NODE", [(sent, str(dcmread(sent).SOPClassUID))])
        assert [o.ok for o in outcomes] == [True], outcomes
    finally:
        receiver.terminate()
        receiver.wait(10)
    seen = their_identification(log.read_text())
    assert seen and set(seen) == {EXPECTED}, seen


def test_result_files_carry_the_documented_identification(tmp_path):
    from scp_node.config import DeliverySettings
    from scp_node.egress.worker import OutboxWorker
    from scp_node.store.db import Database

    result = dcmread(write_mr(tmp_path / "made.dcm", seed=4))
    result.file_meta.ImplementationClassUID = "1.2.3.4"  # a toolkit's own, as highdicom sets
    worker = OutboxWorker(Database(tmp_path / "index.sqlite3"), DeliverySettings())
    worker.enqueue_results(str(result.StudyInstanceUID), [result], [])
    written = dcmread(worker.result_path(str(result.StudyInstanceUID), result))
    meta = written.file_meta
    assert (str(meta.ImplementationClassUID), meta.ImplementationVersionName) == EXPECTED
