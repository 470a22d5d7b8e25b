"""Hostile data sets (issue 13 D4, D3): truncated, garbage-tailed, fuzzed and deflate bombs.

The byte-offset sweep and the fuzzer call the Receiver directly (thousands of cases); a few cases
go end to end over DIMSE (pynetdicom SCU) and STOW-RS (httpx) on 127.0.0.1.
"""

from __future__ import annotations

import io
import random
import zlib
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from scp_node.ingest.receiver import Origin, Receiver, Rejected
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex
from scp_node.store.spool import Spool
from tests.conftest import node_settings, run_node
from tests.dicom_factory import mr_dataset
from tests.hostile.stow import stow_parts

SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]


def encode(ds: Dataset, implicit: bool) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, ds)
    return buffer.getvalue()


def small_mr(seed: int = 0) -> Dataset:
    ds = mr_dataset(size=8, seed=seed)
    # a sequence with an item, so nested bounds are exercised too
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T2", "99X", "T2 weighted"
    ds.ProcedureCodeSequence = [item]
    return ds


def deflate(raw: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(raw) + packer.flush()


@pytest.fixture
def receiver(tmp_path: Path) -> Receiver:
    db = Database(tmp_path / "index.sqlite3")
    return Receiver(Spool(tmp_path / "spool", fsync=False), InstanceIndex(db), SYNTAXES)


def refused(receiver: Receiver, raw: bytes, syntax: UID) -> int:
    """The status the Receiver refuses ``raw`` with (0 when it stores it)."""
    try:
        receiver.store_dataset(raw, syntax, Origin(calling_ae="FUZZ"))
    except Rejected as exc:
        return exc.status
    return 0


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_every_truncation_is_refused(receiver: Receiver, implicit: bool) -> None:
    """D4: a data set cut at any byte offset is refused with a 0xC000-range status."""
    raw = encode(small_mr(), implicit)
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    assert refused(receiver, raw, syntax) == 0
    statuses = {cut: refused(receiver, raw[:cut], syntax) for cut in range(len(raw))}
    accepted = [cut for cut, status in statuses.items() if status & 0xF000 != 0xC000]
    assert not accepted, f"truncations stored or not 0xCxxx: {accepted[:10]}"


def small_sr() -> Dataset:
    """A non-image object (no Pixel Data to betray a cut) with UIDs in the middle."""
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 7
    ds.ValueType = "TEXT"
    ds.TextValue = "a finding" * 5
    return ds


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_every_cut_inside_an_element_of_a_non_image_is_refused(
    receiver: Receiver, implicit: bool
) -> None:
    """D4: the attack's case: a cut inside a UID value (pydicom reads the short value).
    A cut exactly between two top-level elements leaves a shorter, well-formed data set,
    which no structural check can tell from one sent that way; every other cut is refused."""
    ds = small_sr()
    raw = encode(ds, implicit)
    boundaries = set()
    partial = Dataset()
    for element in ds:
        partial.add(element)
        boundaries.add(len(encode(partial, implicit)))
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    stored = [
        cut
        for cut in range(len(raw))
        if cut not in boundaries and refused(receiver, raw[:cut], syntax) == 0
    ]
    assert not stored, f"cuts inside an element stored with Success: {stored[:10]}"


GARBAGE = {
    "random-777": random.Random(7).randbytes(777),
    "zeros": b"\0" * 64,
    "odd-byte": b"\x01",
    "0xff": b"\xff" * 100,
    "text": b"trailing text that is not DICOM\n",
    "half-header": b"\xe0\x7f\x10\x00",
    "delimiter": b"\xfe\xff\xdd\xe0\0\0\0\0",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_trailing_garbage_is_refused(receiver: Receiver, kind: str, implicit: bool) -> None:
    raw = encode(small_mr(), implicit)
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    assert refused(receiver, raw + GARBAGE[kind], syntax) & 0xF000 == 0xC000


def test_header_then_random_bytes_is_refused(receiver: Receiver) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    raw = encode(ds, False) + random.Random(5).randbytes(5000)
    assert refused(receiver, raw, ExplicitVRLittleEndian) & 0xF000 == 0xC000


def test_deflated_truncated_or_trailing_is_refused(receiver: Receiver) -> None:
    packed = deflate(encode(small_mr(), False))
    assert refused(receiver, packed, DeflatedExplicitVRLittleEndian) == 0
    for cut in range(0, len(packed), 7):
        assert refused(receiver, packed[:cut], DeflatedExplicitVRLittleEndian) & 0xF000 == 0xC000
    assert refused(receiver, packed + b"junk", DeflatedExplicitVRLittleEndian) == 0xC100


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    position=st.floats(0, 1),
    change=st.binary(min_size=1, max_size=16),
    mode=st.sampled_from(["overwrite", "insert", "append", "cut"]),
    implicit=st.booleans(),
)
def test_fuzzed_data_sets_are_stored_only_when_well_formed(
    receiver: Receiver, position: float, change: bytes, mode: str, implicit: bool
) -> None:
    """Property: a mutated data set is either refused with a failure status or, when stored,
    re-reads exactly (what was acknowledged is what is on disk) and has every element in
    bounds (the strict walker accepts the stored bytes)."""
    from scp_node.ingest.strict_parse import check_structure

    raw = encode(small_mr(), implicit)
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    at = int(position * len(raw))
    mutated = {
        "overwrite": raw[:at] + change + raw[at + len(change) :],
        "insert": raw[:at] + change + raw[at:],
        "append": raw + change,
        "cut": raw[:at],
    }[mode]
    if mutated == raw:
        return
    status = refused(receiver, mutated, syntax)
    if status == 0:
        check_structure(mutated, implicit)  # stored only if well formed
    else:
        assert status in {0xA700, 0xA900, 0xC100, 0xC101, 0xC102, 0xC103}


# --- end to end: DIMSE and STOW-RS --------------------------------------------------------------


def test_garbage_over_dimse_and_stow_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    from tests.test_ingest_faults import send_raw_file

    settings_ = node_settings(tmp_path, http={"port": 0})
    ds = mr_dataset()
    good = encode(ds, False)
    with run_node(settings_) as node:
        port = settings_.dicom.port
        for bad in (good[:301], good + random.Random(1).randbytes(777)):
            status = send_raw_file(port, tmp_path, bad, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
            assert status & 0xF000 == 0xC000
        part = io.BytesIO()
        ds.save_as(part, enforce_file_format=True)
        answer = stow_parts(node.http.port, [part.getvalue() + random.Random(2).randbytes(777)])
        assert answer.status_code == 409
        failed = answer.json()["00081198"]["Value"][0]
        assert failed["00081197"]["Value"][0] & 0xF000 == 0xC000
        assert node.index.count() == 0
        assert not list(Path(node.spool.root).rglob("*.dcm"))


# --- D3: deflate bombs, and metadata served from the index --------------------------------------


def deflated_part10(ds: Dataset) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta)
    out.write(deflate(encode(ds, False)))
    return out.getvalue()


def test_deflate_bomb_is_refused_a700_over_dimse_and_stow(tmp_path: Path, caplog) -> None:
    """D3: 40 MiB of zeros deflate to ~40 KiB; with ``max_instance_mb = 8`` the node stops
    inflating at 8 MiB and answers 0xA700 with a log line; nothing is stored."""
    import logging

    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

    bomb = mr_dataset(size=8)
    bomb.add_new(0x00091010, "LO", "BOMB")  # private creator
    bomb.add_new(0x00091011, "OB", b"\0" * (40 * 2**20))
    settings_ = node_settings(tmp_path, http={"port": 0}, storage={"max_instance_mb": 8})
    caplog.set_level(logging.WARNING)
    with run_node(settings_) as node:
        answer = stow_parts(node.http.port, [deflated_part10(bomb)])
        assert answer.status_code == 409
        assert answer.json()["00081198"]["Value"][0]["00081197"]["Value"][0] == 0xA700
        ae = AE(ae_title="PACS")
        ae.add_requested_context(MRImageStorage, [DeflatedExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", settings_.dicom.port, ae_title="LSTV_NODE")
        assert assoc.is_established
        path = tmp_path / "bomb.dcm"
        path.write_bytes(deflated_part10(bomb))
        status = assoc.send_c_store(path)
        assoc.release()
        assert int(status.Status) == 0xA700
        assert node.index.count() == 0
    assert any("inflates past" in r.getMessage() for r in caplog.records)


def test_qido_and_wado_metadata_come_from_the_index(tmp_path: Path) -> None:
    """D3: search and metadata answers never re-read (or re-inflate) the stored file: they
    still answer in full after the spool file has been emptied behind the node's back."""
    settings_ = node_settings(tmp_path, http={"port": 0})
    ds = mr_dataset(size=8)
    ds.SeriesDescription = "INDEXED AT INGEST"
    with run_node(settings_) as node:
        assert stow_parts(node.http.port, [deflated_part10(ds)]).status_code == 200
        record = node.index.get(str(ds.SOPInstanceUID))
        assert record is not None
        record.path.write_bytes(b"")  # a request that parsed the file would now find nothing
        base = f"http://127.0.0.1:{node.http.port}/dicom-web"
        found = httpx.get(f"{base}/instances?includefield=SeriesDescription", timeout=10).json()
        assert found[0]["0008103E"]["Value"] == ["INDEXED AT INGEST"]
        series = httpx.get(f"{base}/series", timeout=10).json()
        assert series[0]["0008103E"]["Value"] == ["INDEXED AT INGEST"]
        meta = httpx.get(
            f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata",
            timeout=10,
        ).json()
        assert meta[0]["0008103E"]["Value"] == ["INDEXED AT INGEST"]
        assert meta[0]["00280010"]["Value"] == [8]


def test_deflate_odd_length_pad_byte_is_accepted() -> None:
    """PS3.5 A.5: an odd-length deflated stream carries one trailing 00H (DCMTK writes it)."""
    from scp_node.ingest.receiver import inflate

    for seed in range(50):
        plain = encode(small_mr(seed), False)
        packed = deflate(plain)
        if len(packed) % 2:
            break
    assert len(packed) % 2
    assert inflate(packed + b"\0") == plain
    with pytest.raises(Rejected):
        inflate(packed + b"\0\0\0")
