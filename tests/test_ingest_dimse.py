"""C-STORE ingest with real DCMTK senders: every decodable syntax, refusal, bad input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification  # type: ignore[attr-defined]

from scp_node.codecs import LOSSY, capabilities
from scp_node.config import Settings
from tests.conftest import dcmtk, dcmtk_env, node_settings, storescu
from tests.dicom_factory import ENCODERS, encode, encode_htj2k, write_mr

HTJ2K_SYNTAXES = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")


def storescu_exactly(
    settings: Settings,
    files: list[Path],
    transfer_syntax: str,
    tmp_path: Path,
    calling: str = "PACS",
) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu proposing MR Image Storage with exactly one transfer syntax (a profile)."""
    profile = tmp_path / "exact.cfg"
    profile.write_text(
        "[[TransferSyntaxes]]\n[Exact]\nTransferSyntax1 = " + transfer_syntax + "\n"
        "[[PresentationContexts]]\n[ExactOnly]\n"
        "PresentationContext1 = MRImageStorage\\Exact\n"
        "[[Profiles]]\n[Exact]\nPresentationContexts = ExactOnly\n"
    )
    return storescu(
        settings.dicom.port,
        files,
        "-xf",
        str(profile),
        "Exact",
        calling=calling,
        called=settings.dicom.ae_title,
    )


def pynetdicom_store(settings: Settings, path: Path, transfer_syntax: str, calling: str = "PACS"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage, [transfer_syntax])
    assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title=settings.dicom.ae_title)
    assert assoc.is_established, "association with the node failed"
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


DECODABLE = [str(uid) for uid in capabilities().decodable]


@pytest.mark.parametrize("transfer_syntax", [ts for ts in ENCODERS if ts in DECODABLE])
def test_each_decodable_syntax_is_stored_as_sent(running_node, settings, tmp_path, transfer_syntax):
    bits = 8 if transfer_syntax == "1.2.840.10008.1.2.4.50" else 12
    source = write_mr(tmp_path / "src.dcm", bits=bits, seed=3)
    sent = encode(source, tmp_path / "sent.dcm", transfer_syntax)
    sop = str(dcmread(sent).SOPInstanceUID)
    result = storescu_exactly(settings, [sent], transfer_syntax, tmp_path)
    assert result.returncode == 0, result.stderr

    record = running_node.index.get(sop)
    assert record is not None, "instance not indexed"
    assert record.transfer_syntax == transfer_syntax
    assert record.calling_ae == "PACS"
    stored = dcmread(record.path)
    assert stored.file_meta.TransferSyntaxUID == transfer_syntax
    if transfer_syntax not in LOSSY:
        from scp_node.codecs import decode_pixels

        assert np.array_equal(decode_pixels(stored), dcmread(source).pixel_array)


@pytest.mark.parametrize("transfer_syntax", [ts for ts in HTJ2K_SYNTAXES if ts in DECODABLE])
def test_htj2k_from_a_pynetdicom_sender(running_node, settings, tmp_path, transfer_syntax):
    source = write_mr(tmp_path / "src.dcm", bits=12, seed=4)
    sent = encode_htj2k(source, tmp_path / "sent.dcm", transfer_syntax)
    status = pynetdicom_store(settings, sent, transfer_syntax)
    assert status.Status == 0x0000
    record = running_node.index.get(str(dcmread(sent).SOPInstanceUID))
    assert record is not None and record.transfer_syntax == transfer_syntax
    if transfer_syntax not in LOSSY:
        from scp_node.codecs import decode_pixels

        assert np.array_equal(decode_pixels(dcmread(record.path)), dcmread(source).pixel_array)


def test_syntax_without_decoder_is_refused(running_node, settings, tmp_path):
    # JPEG 2000 Part 2 multi-component (.92): pydicom has no decoder, so the node never accepts it.
    source = write_mr(tmp_path / "src.dcm")
    result = storescu_exactly(settings, [source], "1.2.840.10008.1.2.4.92", tmp_path)
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stderr + result.stdout
    assert running_node.index.count() == 0


def test_sender_offering_compressed_and_uncompressed_keeps_compressed(
    running_node, settings, tmp_path
):
    sent = encode(write_mr(tmp_path / "src.dcm"), tmp_path / "j2k.dcm", "1.2.840.10008.1.2.4.90")
    result = storescu(settings.dicom.port, [sent], "-xv", called=settings.dicom.ae_title)
    assert result.returncode == 0, result.stderr
    record = running_node.index.get(str(dcmread(sent).SOPInstanceUID))
    assert record is not None and record.transfer_syntax == "1.2.840.10008.1.2.4.90"


def test_uncompressed_policy_takes_explicit_le(tmp_path):
    from scp_node.node import Node

    settings = node_settings(tmp_path, dicom={"syntax_policy": "uncompressed"})
    node = Node(settings)
    node.start()
    try:
        ae = AE(ae_title="PACS")
        ae.add_requested_context(MRImageStorage, ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"])
        assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
        assert assoc.is_established
        accepted = [cx.transfer_syntax[0] for cx in assoc.accepted_contexts]
        assoc.release()
        assert accepted == ["1.2.840.10008.1.2.1"]
    finally:
        node.stop()


def test_duplicate_sop_instance_is_idempotent(running_node, settings, tmp_path):
    source = write_mr(tmp_path / "src.dcm")
    for _ in range(2):
        assert pynetdicom_store(settings, source, "1.2.840.10008.1.2.1").Status == 0
    sop = str(dcmread(source).SOPInstanceUID)
    rows = (
        running_node.db.connection()
        .execute("SELECT times_received FROM instances WHERE sop_instance_uid = ?", (sop,))
        .fetchall()
    )
    assert [r[0] for r in rows] == [2]
    assert len(list(Path(running_node.spool.root).rglob("*.dcm"))) == 1


def test_echo_from_dcmtk_and_from_the_cli(running_node, settings):
    result = subprocess.run(
        [
            dcmtk("echoscu"),
            "-aet",
            "PACS",
            "-aec",
            "LSTV_NODE",
            "127.0.0.1",
            str(settings.dicom.port),
        ],
        capture_output=True,
        text=True,
        env=dcmtk_env(),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    from scp_node.cli import main

    assert main(["echo", "--port", str(settings.dicom.port)]) == 0


def test_echo_cli_reports_failure_when_nothing_listens(settings):
    from scp_node.cli import main

    assert main(["echo", "--port", str(settings.dicom.port)]) == 1


def test_verification_is_accepted(running_node, settings):
    ae = AE(ae_title="ANY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
