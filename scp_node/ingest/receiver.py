"""One place where any received instance is checked, spooled durably and indexed.

Used by the DIMSE C-STORE handler and by STOW-RS. The order is the node's durability promise: the
file is fsynced and renamed into the spool, *then* indexed, *then* the caller answers Success.
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import os
import shutil
import struct
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom.uid as uids
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from scp_node.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from scp_node.ingest.strict_parse import MalformedDataSet, walk
from scp_node.store.index import InstanceIndex, InstanceRecord
from scp_node.store.journal import IntakeJournal, JournalEntry, replay_orphans
from scp_node.store.spool import InvalidUID, OutOfSpace, Spool, check_uid

log = logging.getLogger(__name__)


class Rejected(Exception):
    """An instance the node refuses, with the DIMSE status (PS3.4 Annex B.2.3) and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


#: DIMSE C-STORE failure statuses used by the node (PS3.4 Table B.2-1; 0xCxxx "cannot understand").
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_SOP_CLASS_MISMATCH = 0xA900
STATUS_CANNOT_PARSE = 0xC100
STATUS_MISSING_UID = 0xC101
STATUS_INCOMPLETE = 0xC102
STATUS_UID_MISMATCH = 0xC103
STATUS_SYNTAX_NOT_SUPPORTED = 0xC122  # PS3.18 STOW-RS FailureReason "transfer syntax not supported"
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_DUPLICATE_INSTANCE = 0x0111  # PS3.7 C.4.8 "Duplicate SOP Instance"

#: Inflation limits of a Deflated Explicit VR Little Endian data set (PS3.5 A.5); the node sets
#: them from ``storage.max_instance_mb`` and ``storage.max_inflate_ratio``.
DEFAULT_MAX_INFLATED = 256 * 2**20
DEFAULT_MAX_RATIO = 200
#: Below this inflated size the ratio is not checked (small, very regular objects compress well).
RATIO_FREE_BYTES = 16 * 2**20


#: Objects that never start an analysis (PS3.3 C.7.3.1.1.1 Modality defined terms).
NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "DOC", "REG", "SEG", "RWV", "PLAN"})
#: Secondary Capture and SR classes: the node's own result objects when its manufacturer is set.
RESULT_SOP_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.33"}
)
#: Manufacturers Model Name (0008,1090) the node writes into its SR and SC (scp_node.report).
RESULT_MODEL_NAME = "scp-node"


@dataclass(frozen=True)
class Origin:
    """Who sent an instance and how."""

    calling_ae: str = ""
    called_ae: str = ""
    peer: str = ""
    source: str = "dimse"


@dataclass(frozen=True)
class Header:
    """The identifying attributes read from a received data set."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    modality: str
    patient_id: str
    model_name: str = ""

    @property
    def is_study_input(self) -> bool:
        """Whether this instance can change the analysis: images only, and not the node's own
        results (a PACS may route the node's SR/SC back to it)."""
        if self.modality in NON_IMAGE_MODALITIES:
            return False
        return not (
            self.sop_class_uid in RESULT_SOP_CLASSES and self.model_name == RESULT_MODEL_NAME
        )


def _is_implicit_little(transfer_syntax: UID) -> tuple[bool, bool]:
    if transfer_syntax == uids.ImplicitVRLittleEndian:
        return True, True
    if transfer_syntax == uids.ExplicitVRBigEndian:
        return False, False
    return False, True


def inflate(
    raw: bytes, max_bytes: int = DEFAULT_MAX_INFLATED, max_ratio: float = DEFAULT_MAX_RATIO
) -> bytes:
    """Inflate a deflated data set (PS3.5 A.5, raw deflate) within bounds: never more than
    ``max_bytes`` out, nor more than ``max_ratio`` × the input once past 16 MiB (0xA700 beyond,
    before the excess is held in memory); a stream that is cut short or followed by other
    bytes is 0xC100."""
    cap = max_bytes
    if max_ratio > 0:
        cap = min(cap, max(RATIO_FREE_BYTES, int(len(raw) * max_ratio)))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, cap + 1)
    except zlib.error as exc:
        raise Rejected(STATUS_CANNOT_PARSE, f"deflated data set does not inflate: {exc}") from exc
    if len(out) > cap:
        raise Rejected(
            STATUS_OUT_OF_RESOURCES,
            f"deflated data set of {len(raw)} bytes inflates past {cap} bytes "
            f"(limits {max_bytes} bytes, ratio {max_ratio:g})",
        )
    if not inflater.eof:
        raise Rejected(STATUS_CANNOT_PARSE, "deflated data set is truncated")
    # PS3.5 A.5: an odd-length deflated stream is padded with one 00H byte; anything else is not
    if inflater.unused_data and not (inflater.unused_data == b"\0" and len(raw) % 2 == 0):
        raise Rejected(STATUS_CANNOT_PARSE, "deflated data set has trailing bytes")
    return out


#: Headers (the data set before Pixel Data) up to this size are kept in the index, so QIDO-RS and
#: WADO-RS metadata never read (or inflate) stored files again.
MAX_INDEXED_HEADER = 1 << 20


def parse_dataset(
    raw: bytes | memoryview,
    transfer_syntax: UID,
    max_inflated: int = DEFAULT_MAX_INFLATED,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Dataset:
    """The checked header data set of ``raw`` (see :func:`parse_with_header`)."""
    return parse_with_header(raw, transfer_syntax, max_inflated, max_ratio)[0]


def parse_with_header(
    raw: bytes | memoryview,
    transfer_syntax: UID,
    max_inflated: int = DEFAULT_MAX_INFLATED,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> tuple[Dataset, bytes | None]:
    """Check a whole encoded data set (no Part 10 header); return its header as a data set
    (every element before Pixel Data) and as encoded bytes.

    pydicom reads truncated data silently, so the checks are ours: a strict structural walk
    (:mod:`strict_parse`: every element inside its bounds, ascending tags, delimiters present,
    nothing after the last element), no reader warning while reading the header, native Pixel
    Data of the size its attributes promise (PS3.5 §8.1.1), and Pixel Data present in an image
    SOP class. Pixel Data itself is never copied (``raw`` may be a memory map of a file).
    The encoded header is returned when it is at most :data:`MAX_INDEXED_HEADER` bytes (inflated
    for the Deflated syntax), else None.
    """
    if transfer_syntax == uids.DeflatedExplicitVRLittleEndian:
        raw = inflate(bytes(raw), max_inflated, max_ratio)
    implicit, little = _is_implicit_little(transfer_syntax)
    try:
        pixel_offset, pixel_length = walk(raw, implicit, little)
    except MalformedDataSet as exc:
        if exc.truncated:
            raise Rejected(STATUS_INCOMPLETE, f"data set truncated: {exc}") from exc
        raise Rejected(STATUS_CANNOT_PARSE, f"data set malformed: {exc}") from exc
    encoded_header = bytes(raw[:pixel_offset])
    stream = io.BytesIO(encoded_header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = read_dataset(stream, implicit, little)
    except Exception as exc:
        raise Rejected(STATUS_CANNOT_PARSE, f"data set cannot be parsed: {exc}") from exc
    if stream.tell() != len(encoded_header):
        raise Rejected(STATUS_CANNOT_PARSE, "data set has trailing bytes that are not elements")
    _check_pixel_data_complete(ds, transfer_syntax, pixel_length)
    return ds, (encoded_header if len(encoded_header) <= MAX_INDEXED_HEADER else None)


def _check_pixel_data_complete(ds: Dataset, transfer_syntax: UID, pixel_length: int | None) -> None:
    """``pixel_length``: the top-level Pixel Data value length (None: absent; -1: encapsulated)."""
    if pixel_length is None:
        if "Rows" in ds and "Columns" in ds:
            raise Rejected(STATUS_INCOMPLETE, "image attributes present but Pixel Data is missing")
        if _is_image_class(ds.get("SOPClassUID")):
            raise Rejected(STATUS_INCOMPLETE, "image SOP class without Pixel Data")
        return
    if transfer_syntax.is_encapsulated:
        return
    # Native YBR_FULL_422 stores two samples per pixel (Y Y Cb Cr per pair, PS3.3 C.7.6.3.1.2).
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        samples = 2
    else:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    try:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * samples
            * int(ds.get("NumberOfFrames", 1) or 1)
            * int(ds.BitsAllocated)
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise Rejected(STATUS_INCOMPLETE, f"image pixel module incomplete: {exc}") from exc
    expected_bytes = (expected + 7) // 8
    actual = max(pixel_length, 0)
    if actual < expected_bytes:
        raise Rejected(
            STATUS_INCOMPLETE,
            f"Pixel Data truncated: {actual} bytes, attributes need {expected_bytes}",
        )


def _is_image_class(sop_class: object) -> bool:
    """Whether a SOP class's IOD has an Image Pixel module (its name says Image Storage)."""
    try:
        name = UID(str(sop_class or "")).name
    except Exception:
        return False
    return "Image Storage" in name and "Raw Data" not in name


def read_header(ds: Dataset) -> Header:
    try:
        return Header(
            sop_class_uid=check_uid(ds.get("SOPClassUID"), "SOPClassUID"),
            sop_instance_uid=check_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID"),
            study_uid=check_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID"),
            series_uid=check_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID"),
            modality=str(ds.get("Modality", "") or ""),
            patient_id=str(ds.get("PatientID", "") or ""),
            model_name=str(ds.get("ManufacturerModelName", "") or ""),
        )
    except InvalidUID as exc:
        raise Rejected(STATUS_MISSING_UID, str(exc)) from exc


def file_meta_for(header: Header, transfer_syntax: UID, calling_ae: str) -> FileMetaDataset:
    """The Part 10 File Meta Information for a received data set (PS3.10 §7.1)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(header.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(header.sop_instance_uid)
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if calling_ae:
        meta.SourceApplicationEntityTitle = calling_ae
    return meta


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element of group 0002 (PS3.5 §7.1.2)."""
    tag = struct.pack("<HH", 2, group_element)
    if vr == b"OB":
        return tag + vr + b"\0\0" + struct.pack("<L", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    """``text`` in ASCII, padded to even length (PS3.5 §6.2: UI with NUL, AE/SH with space)."""
    raw = text.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(header: Header, transfer_syntax: UID, calling_ae: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information of :func:`file_meta_for`, encoded
    directly (PS3.10 §7.1; the same bytes as pydicom's ``write_file_meta_info``): the UIDs were
    checked by :func:`read_header`, so nothing is built or validated twice per instance."""
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\0\1"),
            _element(0x0002, b"UI", _padded(header.sop_class_uid, b"\0")),
            _element(0x0003, b"UI", _padded(header.sop_instance_uid, b"\0")),
            _element(0x0010, b"UI", _padded(str(transfer_syntax), b"\0")),
            _element(0x0012, b"UI", _padded(str(IMPLEMENTATION_CLASS_UID), b"\0")),
            _element(0x0013, b"SH", _padded(str(IMPLEMENTATION_VERSION_NAME), b" ")),
            _element(0x0016, b"AE", _padded(calling_ae, b" ")) if calling_ae else b"",
        )
    )
    return b"\0" * 128 + b"DICM" + _element(0x0000, b"UL", struct.pack("<L", len(body))) + body


def part10_writer(
    meta: bytes | FileMetaDataset, raw: bytes | Callable[[BinaryIO], None]
) -> Callable[[BinaryIO], None]:
    """Writes preamble, File Meta Information (``meta``: from :func:`encode_file_meta`, or a
    data set to encode) and the data set bytes exactly as received (``raw`` itself, or what the
    callable ``raw`` writes)."""

    def write(handle: BinaryIO) -> None:
        if isinstance(meta, bytes):
            handle.write(meta)
        else:
            handle.write(b"\0" * 128 + b"DICM")
            write_file_meta_info(handle, meta, enforce_standard=True)  # type: ignore[arg-type]
        if callable(raw):
            raw(handle)
        else:
            handle.write(raw)

    return write


#: Received data sets up to this size are read into memory whole; larger ones are memory-mapped
#: and copied into the spool by the kernel (bounded memory whatever a peer sends).
READ_WHOLE_BYTES = 8 * 2**20


def copier(path: Path, offset: int) -> Callable[[BinaryIO], None]:
    """Writes the bytes of ``path`` from ``offset`` on (``os.copy_file_range`` where the kernel
    has it, else 1 MiB at a time)."""

    def write(handle: BinaryIO) -> None:
        handle.flush()
        with open(path, "rb") as source:
            remaining = os.fstat(source.fileno()).st_size - offset
            position = offset
            try:
                while remaining > 0:
                    done = os.copy_file_range(source.fileno(), handle.fileno(), remaining, position)
                    if done <= 0:
                        break
                    position += done
                    remaining -= done
            except OSError:
                pass  # not supported here: copy the rest in user space
            if remaining > 0:
                source.seek(position)
                shutil.copyfileobj(source, handle, 1 << 20)
        handle.seek(0, os.SEEK_END)

    return write


def instance_record(
    header: Header, transfer_syntax: UID, path: Path, size: int, origin: Origin, received_at: float
) -> InstanceRecord:
    """The index row of one stored instance (as received, or as replayed from the journal)."""
    return InstanceRecord(
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        study_uid=header.study_uid,
        series_uid=header.series_uid,
        transfer_syntax=str(transfer_syntax),
        path=path,
        size=size,
        modality=header.modality,
        patient_id=header.patient_id,
        calling_ae=origin.calling_ae,
        called_ae=origin.called_ae,
        peer=origin.peer,
        source=origin.source,
        received_at=received_at,
    )


class Receiver:
    """Checks, spools and indexes instances; calls ``on_stored`` after each one is durable."""

    def __init__(
        self,
        spool: Spool,
        index: InstanceIndex,
        accepted_syntaxes: list[UID],
        on_stored: Callable[[InstanceRecord], None] | None = None,
    ) -> None:
        self.spool = spool
        self.index = index
        self.accepted = set(accepted_syntaxes)
        self.on_stored = on_stored
        #: Set by the node: None when new work is welcome, else why not (analysis queue full).
        self.admit: Callable[[], str | None] | None = None
        #: Inflation limits for the Deflated syntax (``storage.max_instance_mb``,
        #: ``storage.max_inflate_ratio``).
        self.max_inflated = DEFAULT_MAX_INFLATED
        self.max_inflate_ratio: float = DEFAULT_MAX_RATIO
        #: The process's intake journal (``storage.journal_mb``), set by the node once opened:
        #: a new instance held in memory is made durable there, its spool file in the background.
        self.journal: IntakeJournal | None = None

    def store_dataset(
        self,
        raw: bytes,
        transfer_syntax: UID,
        origin: Origin,
        command_sop_class: str | None = None,
        command_sop_instance: str | None = None,
        expect_study_uid: str | None = None,
    ) -> InstanceRecord:
        """Store an encoded data set as received (PS3.7 §9.1.1 C-STORE, or a STOW-RS part).

        ``command_*`` are the C-STORE request's UIDs; ``expect_study_uid`` the study of a
        ``POST .../studies/{uid}`` URL (another study is refused with 0xA900, PS3.18 §10.5.3).
        """
        self._check_syntax(transfer_syntax)
        self._check_size(len(raw))
        return self._store(
            raw, raw, transfer_syntax, origin, command_sop_class, command_sop_instance,
            expect_study_uid,
        )  # fmt: skip

    def store_encoded_file(
        self,
        path: Path,
        offset: int,
        transfer_syntax: UID,
        origin: Origin,
        command_sop_class: str | None = None,
        command_sop_instance: str | None = None,
        expect_study_uid: str | None = None,
    ) -> InstanceRecord:
        """:meth:`store_dataset` for a data set that starts at ``offset`` in the file ``path``
        (a C-STORE received to disk, a STOW-RS part): the file is memory-mapped for the checks and
        copied into the spool, so an instance is never held in memory as a whole."""
        self._check_syntax(transfer_syntax)
        size = path.stat().st_size - offset
        self._check_size(size)
        if size <= READ_WHOLE_BYTES:  # small: one read is cheaper than mapping and copying
            with open(path, "rb") as handle:
                handle.seek(offset)
                raw = handle.read()
            return self._store(
                raw, raw, transfer_syntax, origin, command_sop_class, command_sop_instance,
                expect_study_uid,
            )  # fmt: skip
        with open(path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            view = memoryview(mapped)[offset:]
            try:
                return self._store(
                    view, copier(path, offset), transfer_syntax, origin, command_sop_class,
                    command_sop_instance, expect_study_uid,
                )  # fmt: skip
            finally:
                with contextlib.suppress(BufferError):  # a traceback may still hold a view
                    view.release()
        finally:
            with contextlib.suppress(BufferError):  # then the garbage collector closes it
                mapped.close()

    def _store(
        self,
        data: bytes | memoryview,
        write_data: bytes | Callable[[BinaryIO], None],
        transfer_syntax: UID,
        origin: Origin,
        command_sop_class: str | None,
        command_sop_instance: str | None,
        expect_study_uid: str | None,
    ) -> InstanceRecord:
        ds, encoded_header = parse_with_header(
            data, transfer_syntax, self.max_inflated, self.max_inflate_ratio
        )
        header = read_header(ds)
        if expect_study_uid is not None and header.study_uid != expect_study_uid:
            raise Rejected(
                STATUS_SOP_CLASS_MISMATCH, "Study Instance UID differs from the study in the URL"
            )
        if command_sop_instance and command_sop_instance != header.sop_instance_uid:
            raise Rejected(STATUS_UID_MISMATCH, "SOP Instance UID differs from the C-STORE request")
        if command_sop_class and command_sop_class != header.sop_class_uid:
            raise Rejected(
                STATUS_SOP_CLASS_MISMATCH, "SOP Class UID differs from the C-STORE request"
            )
        meta = encode_file_meta(header, transfer_syntax, origin.calling_ae.strip())
        writer = part10_writer(meta, write_data)
        parts = None if callable(write_data) else (meta, write_data)
        return self._commit(
            header, transfer_syntax, origin, writer, len(data), encoded_header, parts
        )

    def store_part10_file(
        self, path: Path, origin: Origin, expect_study_uid: str | None = None
    ) -> InstanceRecord:
        """Store a Part 10 file from disk, e.g. a spooled STOW-RS part (PS3.18 §10.5).

        With ``expect_study_uid`` (the study of a ``POST .../studies/{uid}`` URL), an instance of
        another study is refused with 0xA900 before anything is written (PS3.18 §10.5.3).
        A missing 128-byte preamble is tolerated (some clients, e.g. dicomweb-client, send the
        File Meta Information first); missing File Meta Information is not.
        The upload temp file is left to the caller; it is memory-mapped, never read whole.
        """
        self._check_size(path.stat().st_size)
        with open(path, "rb") as stream:
            try:
                read_preamble(stream, force=True)
                meta = _read_file_meta_info(stream)
            except Exception as exc:
                raise Rejected(STATUS_CANNOT_PARSE, f"not a DICOM Part 10 file: {exc}") from exc
            transfer_syntax = UID(str(meta.get("TransferSyntaxUID", "")))
            if not transfer_syntax:
                reason = "not a DICOM Part 10 file: no File Meta Information Transfer Syntax"
                raise Rejected(STATUS_CANNOT_PARSE, reason)
            offset = stream.tell()
        return self.store_encoded_file(
            path, offset, transfer_syntax, origin, expect_study_uid=expect_study_uid
        )

    def _check_size(self, size: int) -> None:
        """Refuse an instance above ``storage.max_instance_mb`` (0xA700, PS3.4 B.2.3)."""
        if size > self.max_inflated:
            raise Rejected(
                STATUS_OUT_OF_RESOURCES,
                f"instance of {size} bytes exceeds the node's maximum {self.max_inflated}",
            )

    def _check_syntax(self, transfer_syntax: UID) -> None:
        if transfer_syntax not in self.accepted:
            raise Rejected(
                STATUS_SYNTAX_NOT_SUPPORTED, f"transfer syntax {transfer_syntax} is not accepted"
            )

    def _commit(
        self,
        header: Header,
        transfer_syntax: UID,
        origin: Origin,
        write: Callable[[BinaryIO], None],
        size_hint: int,
        encoded_header: bytes | None = None,
        parts: tuple[bytes, bytes | memoryview] | None = None,
    ) -> InstanceRecord:
        """Spool and index under the UID's lock. A new instance whose bytes are in memory
        (``parts``: File Meta Information and data set) goes through the intake journal: one
        flush, the spool file unflushed (the journal's thread flushes it). Anything else, and
        every replacement of a stored UID, is written durably here, and a replacement's index
        row is flushed too, so that a journal replay never puts an older version back
        (:meth:`replay` keeps the newer ``received_at``)."""
        path = self.spool.path_for(header.study_uid, header.series_uid, header.sop_instance_uid)
        started = time.perf_counter()
        touch_study = header.is_study_input and origin.source != "result"
        with self.spool.locks.hold(header.sop_instance_uid):
            previous = self.index.version(header.sop_instance_uid)
            if previous is not None and previous[:2] != (header.study_uid, header.series_uid):
                # docs/conformance-statement.md: a UID stays in the study and series it came in
                raise Rejected(
                    STATUS_DUPLICATE_INSTANCE,
                    "SOP Instance UID already stored in another study or series",
                )
            received_at = time.time()
            if previous is not None:  # versions of one UID in order, whatever the clock does
                received_at = max(received_at, previous[2] + 1e-3)
            journal = self.journal
            ticket = None
            if journal is not None and parts is not None and previous is None:
                ticket = self._journal(journal, header, transfer_syntax, origin, parts,
                                       received_at, size_hint)  # fmt: skip
            written: Path | None = None
            try:
                try:
                    size = self.spool.write(
                        path, write, size_hint, sync=None if ticket is None else False
                    )
                except OutOfSpace as exc:
                    raise Rejected(STATUS_OUT_OF_RESOURCES, str(exc.strerror or exc)) from exc
                except OSError as exc:
                    raise Rejected(STATUS_OUT_OF_RESOURCES, f"spool write failed: {exc}") from exc
                record = instance_record(header, transfer_syntax, path, size, origin, received_at)
                try:
                    new = self.index.add(
                        record,
                        touch_study=touch_study,
                        header=encoded_header,
                        durable=previous is not None and journal is not None,
                    )
                except Exception:
                    if previous is None:  # never acknowledged, never indexed: leave no orphan
                        path.unlink(missing_ok=True)
                    else:  # the file was replaced: the next start re-indexes nothing, so say it
                        log.error(
                            "index update failed after replacing sop=%s; `scp-node spool check` "
                            "will show the mismatch",
                            header.sop_instance_uid,
                        )
                    raise
                written = path
            finally:
                if ticket is not None and journal is not None:
                    journal.applied(ticket, written)
        log.info(
            "stored sop=%s study=%s ts=%s (%s) bytes=%d from=%s via=%s%s in %.1f ms",
            header.sop_instance_uid,
            header.study_uid,
            transfer_syntax,
            transfer_syntax.name,
            size,
            origin.calling_ae or origin.peer,
            origin.source,
            "" if new else " (duplicate, replaced)",
            (time.perf_counter() - started) * 1000,
        )
        if self.on_stored is not None:
            self.on_stored(record)
        return record

    def _journal(
        self,
        journal: IntakeJournal,
        header: Header,
        transfer_syntax: UID,
        origin: Origin,
        parts: tuple[bytes, bytes | memoryview],
        received_at: float,
        size_hint: int,
    ) -> object | None:
        """Append the instance to the intake journal (durable when this returns a ticket)."""
        try:
            self.spool.check_space(size_hint)  # refuse before anything is made durable
        except OutOfSpace as exc:
            raise Rejected(STATUS_OUT_OF_RESOURCES, str(exc.strerror or exc)) from exc
        meta = {
            "ts": str(transfer_syntax),
            "meta_len": len(parts[0]),
            "received_at": received_at,
            "calling_ae": origin.calling_ae,
            "called_ae": origin.called_ae,
            "peer": origin.peer,
            "source": origin.source,
        }
        return journal.append(meta, parts)

    def replay(self, entry: JournalEntry) -> None:
        """Put a journaled instance into the spool (flushed) and the index, idempotently: a
        version of the UID indexed later than this record is kept."""
        meta = entry.meta
        transfer_syntax = UID(str(meta["ts"]))
        raw = memoryview(entry.data)[int(meta["meta_len"]) :]
        try:
            ds, encoded_header = parse_with_header(
                raw, transfer_syntax, self.max_inflated, self.max_inflate_ratio
            )
            header = read_header(ds)
        except Rejected as exc:  # it passed these checks before it was journaled
            log.error("intake journal record %d fails its checks (%s); skipped", entry.seq, exc)
            return
        path = self.spool.path_for(header.study_uid, header.series_uid, header.sop_instance_uid)
        with self.spool.locks.hold(header.sop_instance_uid):
            previous = self.index.version(header.sop_instance_uid)
            if previous is not None and (
                previous[2] > entry.received_at
                or previous[:2] != (header.study_uid, header.series_uid)
            ):
                log.info(
                    "journal replay: sop=%s has a newer version; kept", header.sop_instance_uid
                )
                return
            size = self.spool.write(path, _writer_of(entry.data), len(entry.data), sync=True)
            if previous is not None and previous[2] == entry.received_at:
                log.info("journal replay: sop=%s file rewritten", header.sop_instance_uid)
                return  # the row already describes this version
            origin = Origin(
                calling_ae=str(meta.get("calling_ae", "")),
                called_ae=str(meta.get("called_ae", "")),
                peer=str(meta.get("peer", "")),
                source=str(meta.get("source", "dimse")),
            )
            record = instance_record(header, transfer_syntax, path, size, origin, entry.received_at)
            self.index.add(
                record,
                touch_study=header.is_study_input and origin.source != "result",
                header=encoded_header,
                durable=True,
            )
        log.warning(
            "journal replay: sop=%s restored to the spool and index", header.sop_instance_uid
        )


def open_journal(
    journal_dir: Path, journal_mb: int, fsync: bool, receiver: Receiver, orphans: bool = False
) -> IntakeJournal | None:
    """Replay and open this process's intake journal for ``receiver`` (None when
    ``storage.fsync`` is false or ``storage.journal_mb`` is 0: the spool is then written durably
    or not at all, as configured). With ``orphans`` (the ``serve`` process at start) the
    journals no live process holds are replayed first. A journal left by an earlier
    configuration is replayed even when the journal is now off."""
    if orphans:
        replay_orphans(journal_dir, receiver.replay)
    if not fsync or journal_mb <= 0:
        return None
    return IntakeJournal.open(journal_dir, journal_mb * 2**20, receiver.replay)


def _writer_of(data: bytes) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write
