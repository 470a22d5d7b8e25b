"""Bad input over DIMSE: the right answer, the node keeps serving, nothing accepted is lost."""

from __future__ import annotations

import logging
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import MRImageStorage, Verification  # type: ignore[attr-defined]

from scp_node.ingest.spool_check import check_spool
from scp_node.node import Node
from tests.association_answer import request
from tests.conftest import node_settings, storescu
from tests.dicom_factory import mr_dataset, write_mr

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def associate_seen(port: int, calling: str = "PACS", called: str = "LSTV_NODE"):
    """The association and the A-ASSOCIATE-RJ seen (:mod:`tests.association_answer`)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage, [EXPLICIT_LE])
    ae.add_requested_context(Verification)
    return request(ae, port, called)


def associate(port: int, calling: str = "PACS", called: str = "LSTV_NODE"):
    return associate_seen(port, calling, called)[0]


def store_file(port: int, path: Path) -> int:
    assoc = associate(port)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
        return int(status.Status)
    finally:
        assoc.release()


def encode_dataset(ds) -> bytes:
    """``ds`` encoded in Explicit VR Little Endian, without a Part 10 header."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def send_part_then_abort(
    port: int, encoded: bytes, sop_class: str, sop_instance: str, send_fraction: float = 0.5
) -> None:
    """Start a C-STORE-RQ, send only ``send_fraction`` of its P-DATA fragments, then A-ABORT."""
    ae = AE(ae_title="PACS")
    ae.add_requested_context(MRImageStorage, [EXPLICIT_LE])
    ae.maximum_pdu_size = 16384
    assoc = ae.associate("127.0.0.1", port, ae_title="LSTV_NODE")
    assert assoc.is_established
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = sop_instance
    request.Priority = 2
    request.DataSet = BytesIO(encoded)
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    fragments = list(message.encode_msg(assoc.accepted_contexts[0].context_id, 16384))
    assert len(fragments) > 4
    for pdata in fragments[: int(len(fragments) * send_fraction)]:
        assoc.dul.send_pdu(pdata)
    assoc.abort()


def send_raw_file(port: int, tmp_path: Path, encoded: bytes, sop_class: str, sop_uid: str) -> int:
    """C-STORE of ``encoded`` exactly as given: pynetdicom's chunked mode sends the bytes after
    the file meta without parsing them (the sender does no checks of its own)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_LE
    path = tmp_path / f"raw-{sop_uid[-8:]}.dcm"
    with path.open("wb") as handle:
        handle.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(handle, meta)
        handle.write(encoded)
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return store_file(port, path)
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = False


@pytest.fixture(autouse=True)
def spool_consistent_afterwards(request: pytest.FixtureRequest):
    """After each fault test on the shared node: index and spool agree (issue 13 D5)."""
    yield
    node = request.node.funcargs.get("running_node")
    if node is not None:
        report = check_spool(node.spool.root, node.index)
        assert report.ok, "\n".join(report.lines())


def assert_still_serving(node: Node, tmp_path: Path) -> None:
    good = write_mr(tmp_path / "after.dcm", seed=99)
    assert store_file(node.settings.dicom.port, good) == 0x0000
    assert node.index.get(str(dcmread(good).SOPInstanceUID)) is not None


def test_unknown_calling_ae_is_rejected_with_reason(tmp_path, caplog):
    settings = node_settings(tmp_path, dicom={"allowed_calling_aes": ["PACS"]})
    node = Node(settings)
    node.start()
    try:
        with caplog.at_level(logging.WARNING):
            assoc, rejected = associate_seen(settings.dicom.port, calling="STRANGER")
        assert not assoc.is_established
        # PS3.8 §9.3.4: result 1 (rejected-permanent), source 1 (service-user),
        # reason 3 (calling-AE-title-not-recognized)
        assert rejected.answer == (1, 1, 3)
        assert "STRANGER" in caplog.text and "rejected" in caplog.text
        assert_still_serving(node, tmp_path)
    finally:
        node.stop()


def test_wrong_called_ae_is_rejected_with_reason(running_node, settings):
    assoc, rejected = associate_seen(settings.dicom.port, called="NOT_THE_NODE")
    assert not assoc.is_established
    assert rejected.answer == (1, 1, 7)  # called-AE-title-not-recognized


def test_truncated_dataset_is_refused(running_node, settings, tmp_path):
    ds = mr_dataset()
    encoded = encode_dataset(ds)[:-1000]
    status = send_raw_file(
        settings.dicom.port, tmp_path, encoded, str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    )
    assert status == 0xC102
    assert running_node.index.count() == 0
    assert not list(Path(running_node.spool.root).rglob("*.dcm"))
    assert_still_serving(running_node, tmp_path)


def test_missing_sop_instance_uid_is_refused(running_node, settings, tmp_path):
    ds = mr_dataset()
    uid = str(ds.SOPInstanceUID)
    del ds.SOPInstanceUID  # the C-STORE request still names one
    status = send_raw_file(
        settings.dicom.port, tmp_path, encode_dataset(ds), str(ds.SOPClassUID), uid
    )
    assert status == 0xC101
    assert running_node.index.count() == 0
    assert_still_serving(running_node, tmp_path)


def test_uid_that_would_escape_the_spool_is_refused(running_node, settings, tmp_path):
    ds = mr_dataset()
    ds.StudyInstanceUID = "../../../etc"
    path = tmp_path / "evil.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert store_file(settings.dicom.port, path) == 0xC101
    assert not (Path(running_node.spool.root).parent.parent / "etc").exists()


def test_aborted_association_leaves_no_partial_file(running_node, settings, tmp_path, caplog):
    """Send the command and half of the data set's fragments, then A-ABORT (a real socket)."""
    first = write_mr(tmp_path / "first.dcm", seed=1)
    assert store_file(settings.dicom.port, first) == 0  # accepted before: must survive

    ds = mr_dataset(size=256, seed=2)
    with caplog.at_level(logging.INFO):
        send_part_then_abort(
            settings.dicom.port, encode_dataset(ds), str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        )
        assert_still_serving(running_node, tmp_path)
    assert running_node.index.get(str(ds.SOPInstanceUID)) is None
    assert running_node.index.get(str(dcmread(first).SOPInstanceUID)) is not None
    assert not list(running_node.spool.tmp_dir.iterdir()), "partial temp file left behind"
    assert "aborted" in caplog.text


def test_disk_floor_gives_out_of_resources_and_keeps_earlier_data(tmp_path, caplog):
    settings = node_settings(tmp_path)
    node = Node(settings)
    node.start()
    try:
        kept = write_mr(tmp_path / "kept.dcm", seed=5)
        assert store_file(settings.dicom.port, kept) == 0
        node.spool.min_free_bytes = node.spool.free_bytes() + 2**40  # floor above free space
        refused = write_mr(tmp_path / "refused.dcm", seed=6)
        with caplog.at_level(logging.WARNING):
            assert store_file(settings.dicom.port, refused) == 0xA700
        assert "floor" in caplog.text
        assert node.index.get(str(dcmread(kept).SOPInstanceUID)) is not None
        assert Path(node.index.get(str(dcmread(kept).SOPInstanceUID)).path).exists()
        node.spool.min_free_bytes = 0  # space is back: the node serves again
        assert_still_serving(node, tmp_path)
    finally:
        node.stop()


def test_max_associations_rejects_the_extra_one(tmp_path):
    settings = node_settings(tmp_path, dicom={"max_associations": 1})
    node = Node(settings)
    node.start()
    try:
        first = associate(settings.dicom.port)
        assert first.is_established
        second, rejected = associate_seen(settings.dicom.port)
        assert not second.is_established
        # rejected-transient (2), service-provider presentation (3), local-limit-exceeded (2)
        assert rejected.answer == (2, 3, 2)
        first.release()
    finally:
        node.stop()


def test_tls_storescu_with_a_certificate_made_here(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    settings = node_settings(
        tmp_path,
        dicom={
            "tls": {
                "enabled": True,
                "cert_file": str(cert),
                "key_file": str(key),
                "ca_file": str(cert),
            }
        },
    )
    node = Node(settings)
    node.start()
    try:
        sent = write_mr(tmp_path / "tls.dcm", seed=7)
        result = storescu(
            settings.dicom.port, [sent], "+tls", str(key), str(cert), "+cf", str(cert)
        )
        assert result.returncode == 0, result.stderr
        assert node.index.get(str(dcmread(sent).SOPInstanceUID)) is not None
        plain = storescu(settings.dicom.port, [sent])
        assert plain.returncode != 0, "a plain-TCP sender must not get through a TLS listener"
    finally:
        node.stop()


@pytest.mark.parametrize("floor_mb", [1])
def test_stale_temp_files_are_removed_at_start(tmp_path, floor_mb):
    settings = node_settings(tmp_path, storage={"min_free_mb": floor_mb})
    tmp_dir = settings.storage.spool_dir / ".tmp"
    tmp_dir.mkdir(parents=True)
    (tmp_dir / "crashed.part").write_bytes(b"half a file")
    node = Node(settings)
    node.start()
    try:
        assert not (tmp_dir / "crashed.part").exists()
    finally:
        node.stop()
