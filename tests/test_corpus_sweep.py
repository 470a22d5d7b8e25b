"""Sweep the offline corpora (pydicom's bundled test files, the pydicom-data package) through the
node: every file is stored or refused with a correct status, and the node never stops serving."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

#: Failure statuses the node may answer with (PS3.4 Table B.2-1 and the node's 0xC1xx codes).
REFUSAL_STATUSES = {0xA700, 0xA900, 0xC000, 0xC100, 0xC101, 0xC102, 0xC103, 0xC122}
TIME_BUDGET_S = 120.0


def corpus_files() -> list[Path]:
    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    files = []
    for root in roots:
        files.extend(p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".py")
    return files


def candidates() -> list[tuple[Path, str, str, str]]:
    """(path, SOP class, SOP instance, transfer syntax) for each readable Part 10 file."""
    found = []
    for path in corpus_files():
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except (InvalidDicomError, Exception):
            continue
        meta = ds.file_meta
        sop_class = str(meta.get("MediaStorageSOPClassUID", ""))
        # the data set's own UID is what C-STORE sends (some files' meta disagrees with it)
        sop_uid = str(ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID", ""))
        syntax = str(meta.get("TransferSyntaxUID", ""))
        if sop_class and sop_uid and syntax:
            found.append((path, sop_class, sop_uid, syntax))
    return found


def test_offline_corpus_is_stored_or_refused(running_node, settings):
    files = candidates()
    assert len(files) > 80, "the offline corpora should offer many Part 10 files"
    outcomes: dict[str, list[str]] = {"stored": [], "refused": [], "not negotiated": []}
    started = time.monotonic()
    ae = AE(ae_title="CORPUS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for path, sop_class, sop_uid, syntax in files:
        assert time.monotonic() - started < TIME_BUDGET_S, "sweep ran past its time budget"
        ae.requested_contexts = []
        ae.add_requested_context(sop_class, [syntax])
        assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
        if not assoc.is_established:
            # pynetdicom answers a proposal with no acceptable context (e.g. a DICOMDIR's
            # Media Storage Directory class) by refusing the association.
            assert assoc.is_rejected or assoc.is_aborted
            outcomes["not negotiated"].append(path.name)
            continue
        try:
            if not assoc.accepted_contexts:
                outcomes["not negotiated"].append(path.name)
                continue
            try:
                status = assoc.send_c_store(path)
            except Exception as exc:
                # pynetdicom itself refuses to send some broken files; not the node's answer
                outcomes["not negotiated"].append(f"{path.name} (sender: {exc})")
                continue
            if not status:
                # the sender could not encode the file (pynetdicom logs why); nothing was sent
                outcomes["not negotiated"].append(f"{path.name} (sender could not encode)")
                continue
            assert "Status" in status, f"{path.name}: C-STORE response without a status"
            code = int(status.Status)
            if code == 0x0000:
                record = running_node.index.get(sop_uid)
                assert record is not None, f"{path.name}: Success but not indexed"
                assert Path(record.path).is_file()
                outcomes["stored"].append(path.name)
            else:
                assert code in REFUSAL_STATUSES, f"{path.name}: unexpected status 0x{code:04X}"
                assert "ErrorComment" in status, f"{path.name}: refusal without a reason"
                outcomes["refused"].append(f"{path.name}: 0x{code:04X} {status.ErrorComment}")
        finally:
            if assoc.is_established:
                assoc.release()
    assert len(outcomes["stored"]) > 40
    # the node still answers after the whole sweep
    ae.requested_contexts = []
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    print({k: len(v) for k, v in outcomes.items()})
    print("\n".join(outcomes["refused"]))


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm"])
def test_a_file_that_no_plugin_decodes_is_stored_but_fails_decoding_clearly(
    running_node, settings, name
):
    """Stored as received (the node does not decode at ingest); decoding names the problem."""
    from scp_node.codecs import DecodeError, decode_pixels

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.exists():
        pytest.skip(f"{name} not in this pydicom")
    ds = dcmread(path)
    with pytest.raises(DecodeError, match="no plugin decoded"):
        decode_pixels(ds)
