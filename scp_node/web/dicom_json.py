"""DICOM JSON (PS3.18 Annex F) for the node's DICOMweb answers: STOW-RS responses, QIDO-RS results
and WADO-RS metadata, all built as pydicom data sets and encoded with ``to_json_dict``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from scp_node.store.index import InstanceIndex, InstanceRecord

MEDIA_TYPE = "application/dicom+json"
#: Binary values above this many bytes are bulk data and are left out of metadata (PS3.18 §8.7.3).
BULK_THRESHOLD = 1024
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


@dataclass(frozen=True)
class FailedPart:
    """One STOW-RS part the node did not store, with its PS3.18 §10.5.3 FailureReason."""

    sop_class_uid: str
    sop_instance_uid: str
    status: int
    reason: str


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def encode(ds: Dataset) -> dict[str, Any]:
    """``ds`` as a DICOM JSON object (PS3.18 §F.2); values pydicom cannot encode are dropped."""
    encoded = ds.to_json_dict(BULK_THRESHOLD, None, suppress_invalid_tags=True)
    return dict(sorted(encoded.items()))


def retrieve_url(base: str, study: str, series: str = "", instance: str = "") -> str:
    """The WADO-RS URL of a study, series or instance (PS3.18 §10.4.1)."""
    url = f"{base}/studies/{study}"
    if series:
        url += f"/series/{series}"
        if instance:
            url += f"/instances/{instance}"
    return url


def stow_response(
    stored: Iterable[InstanceRecord], failed: Iterable[FailedPart], base: str, study_uid: str | None
) -> dict[str, Any]:
    """The Store Instances response (PS3.18 §10.5.3, Table 10.5.3-2): every stored instance in
    ReferencedSOPSequence with its RetrieveURL, every failure in FailedSOPSequence."""
    ds = Dataset()
    if study_uid:
        ds.RetrieveURL = retrieve_url(base, study_uid)
    failed_items = []
    for part in failed:
        item = Dataset()
        item.ReferencedSOPClassUID = part.sop_class_uid
        item.ReferencedSOPInstanceUID = part.sop_instance_uid
        item.FailureReason = part.status
        failed_items.append(item)
    stored_items = []
    for rec in stored:
        item = Dataset()
        item.ReferencedSOPClassUID = rec.sop_class_uid
        item.ReferencedSOPInstanceUID = rec.sop_instance_uid
        item.RetrieveURL = retrieve_url(base, rec.study_uid, rec.series_uid, rec.sop_instance_uid)
        stored_items.append(item)
    if failed_items:
        ds.FailedSOPSequence = failed_items
    if stored_items:
        ds.ReferencedSOPSequence = stored_items
    return encode(ds)


def read_header(path: Path) -> Dataset:
    """The data set of a spooled file without Pixel Data (and without the File Meta group)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    return ds


def stored_header(index: InstanceIndex, rec: InstanceRecord) -> Dataset:
    """The header of a stored instance, from the index (kept at ingest, so a request never
    re-parses, let alone re-inflates, the stored file); for instances indexed before headers
    were kept, read from the file, except Deflated ones (:class:`LookupError`)."""
    blob = index.header(rec.sop_instance_uid)
    if blob is not None:
        syntax = UID(rec.transfer_syntax)
        implicit = syntax == ImplicitVRLittleEndian
        little = syntax != ExplicitVRBigEndian
        return read_dataset(io.BytesIO(blob), implicit, little)
    if rec.transfer_syntax == DeflatedExplicitVRLittleEndian:
        raise LookupError("no indexed header for a deflated instance")
    return read_header(rec.path)


def without_bulk_data(ds: Dataset) -> Dataset:
    """Drop binary values above :data:`BULK_THRESHOLD` bytes, recursively (PS3.18 §8.7.3:
    metadata carries no bulk data; this node offers no separate BulkData resources)."""
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                without_bulk_data(item)
        elif elem.VR in _BINARY_VRS and elem.value is not None and len(elem.value) > BULK_THRESHOLD:
            del ds[elem.tag]
    return ds


def metadata(index: InstanceIndex, rec: InstanceRecord) -> dict[str, Any]:
    """WADO-RS metadata of one instance (PS3.18 §10.4.1.1.2), from its indexed header."""
    return encode(without_bulk_data(stored_header(index, rec)))


def parse_field(name: str) -> int | None:
    """An ``includefield`` / match key as a tag: a keyword or eight hex digits (PS3.18 §8.3.4)."""
    name = name.strip()
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return int(Tag(int(name, 16)))
    tag = tag_for_keyword(name)
    return int(tag) if tag is not None else None


def field_name(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


def copy_fields(source: Dataset, target: Dataset, tags: Iterable[int]) -> None:
    """Copy the listed top-level attributes that ``source`` has into ``target``."""
    for tag in tags:
        if tag in source:
            target[tag] = source[tag]
