"""Pieces of the issue-15 ingest path: the directly encoded File Meta Information and the locks
that hold across processes (real second processes, real lock files)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from scp_node.config import Settings
from scp_node.ingest.receiver import Header, encode_file_meta, file_meta_for
from scp_node.ingest.receivers import settings_payload
from scp_node.ingest.slots import AssociationSlots
from scp_node.store.locks import UidLocks
from tests.conftest import node_settings


@pytest.mark.parametrize("calling_ae", ["PACS", "ODD", "", "SIXTEEN_CHARS_AE"])
@pytest.mark.parametrize("sop_uid", ["1.2.3", "1.2.34"])
@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.90"]
)
def test_file_meta_bytes_equal_pydicoms(calling_ae: str, sop_uid: str, syntax: str) -> None:
    """PS3.10 §7.1: the same preamble, group length, padding and element order as pydicom."""
    header = Header("1.2.840.10008.5.1.4.1.1.4", sop_uid, "1.2.3.4", "1.2.3.5", "MR", "")
    expected = io.BytesIO()
    expected.write(b"\0" * 128 + b"DICM")
    meta = file_meta_for(header, UID(syntax), calling_ae)
    write_file_meta_info(expected, meta, enforce_standard=True)  # type: ignore[arg-type]
    assert encode_file_meta(header, UID(syntax), calling_ae) == expected.getvalue()


HOLDER = """
import sys, time
from pathlib import Path
from scp_node.ingest.slots import AssociationSlots
from scp_node.store.locks import UidLocks
slots = AssociationSlots(Path(sys.argv[1]), 3)
held = [slots.acquire(), slots.acquire()]
locks = UidLocks(Path(sys.argv[2]))
with locks.hold("1.2.3"):
    print(held, flush=True)
    time.sleep(60)
"""


def test_slots_and_uid_locks_hold_across_processes_and_die_with_them(tmp_path: Path) -> None:
    slot_file, lock_file = tmp_path / "associations.lock", tmp_path / ".locks"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(slot_file), str(lock_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "[0, 1]"
        slots = AssociationSlots(slot_file, 3)
        assert slots.acquire() == 2, "the other process holds two of the three"
        assert slots.acquire() is None
        locks = UidLocks(lock_file)
        bucket = locks.bucket("1.2.3")
        assert not locks.file.lock(bucket, wait=False), "held by the other process"
    finally:
        holder.kill()  # kill -9: the kernel drops its locks
        holder.wait()
    assert slots.acquire() is not None
    assert locks.file.lock(bucket, wait=False)
    locks.file.unlock(bucket)


def test_receiving_process_settings_carry_no_secret(tmp_path: Path) -> None:
    """A receiving process gets the serve process's settings on its standard input, secrets
    left out (it neither sends nor serves HTTP)."""
    settings = node_settings(
        tmp_path,
        http={"token": "http-token-value"},
        cluster={"broker_url": "amqp://user:broker-password@127.0.0.1:5672/scp"},
        dicom={"processes": 3, "max_associations": 7},
    )
    payload = settings_payload(settings)
    assert b"http-token-value" not in payload and b"broker-password" not in payload
    again = Settings(**json.loads(payload))
    assert again.dicom == settings.dicom and again.storage == settings.storage
    assert again.http.token is None and again.cluster.broker_url is None
