"""Deflated Explicit VR LE is the node's last choice, and WADO-RS serves it inflated on request.

Senders: pynetdicom with its default proposal (Deflated among the uncompressed syntaxes in one
presentation context) and DCMTK storescu with a profile offering Deflated alone; retrieval is
WADO-RS over real HTTP.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

from tests.dicom_factory import write_mr
from tests.test_ingest_dimse import storescu_exactly
from tests.test_web import parse_multipart


def stored_syntax(node, sop_uid: str) -> str:  # type: ignore[no-untyped-def]
    record = node.index.get(sop_uid)
    assert record is not None
    return str(record.transfer_syntax)


def test_uncompressed_offered_beside_deflated_is_stored_uncompressed(
    running_node, settings, tmp_path
):
    """pynetdicom's default proposal lists Implicit, Explicit, Deflated and Explicit BE in one
    presentation context: the node's order picks, and Deflated is its last choice."""
    path = write_mr(tmp_path / "plain.dcm", seed=61)
    ae = AE(ae_title="PACS")
    ae.add_requested_context(MRImageStorage)  # pynetdicom's default transfer syntaxes
    assert DeflatedExplicitVRLittleEndian in ae.requested_contexts[0].transfer_syntax
    assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
    assert assoc.is_established
    try:
        accepted = assoc.accepted_contexts[0].transfer_syntax[0]
        status = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert status.Status == 0x0000
    assert accepted != DeflatedExplicitVRLittleEndian
    sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    assert stored_syntax(running_node, sop) in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def test_deflated_only_is_stored_deflated_and_served_inflated(running_node, settings, tmp_path):
    path = write_mr(tmp_path / "deflate.dcm", seed=62)
    original = pydicom.dcmread(path)
    sent = storescu_exactly(settings, [path], DeflatedExplicitVRLittleEndian, tmp_path)
    assert sent.returncode == 0, sent.stderr
    sop, series = str(original.SOPInstanceUID), str(original.SeriesInstanceUID)
    assert stored_syntax(running_node, sop) == DeflatedExplicitVRLittleEndian

    url = (
        f"http://127.0.0.1:{settings.http.port}/dicom-web/studies/{original.StudyInstanceUID}"
        f"/series/{series}/instances/{sop}"
    )
    media = 'multipart/related; type="application/dicom"; transfer-syntax='
    explicit = httpx.get(url, headers={"Accept": media + ExplicitVRLittleEndian}, timeout=30)
    assert explicit.status_code == 200, explicit.text
    assert f"transfer-syntax={ExplicitVRLittleEndian}" in explicit.text[:400]
    [body] = parse_multipart(explicit)
    served = pydicom.dcmread(io.BytesIO(body))
    assert served.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert served.SOPInstanceUID == sop
    assert np.array_equal(served.pixel_array, original.pixel_array)

    as_stored = httpx.get(url, timeout=30)
    [raw] = parse_multipart(as_stored)
    assert pydicom.dcmread(io.BytesIO(raw)).file_meta.TransferSyntaxUID == (
        DeflatedExplicitVRLittleEndian
    )
    j2k = httpx.get(url, headers={"Accept": media + "1.2.840.10008.1.2.4.90"}, timeout=30)
    assert j2k.status_code == 406  # image transcoding stays out
