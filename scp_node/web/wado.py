"""WADO-RS retrieve (PS3.18 §10.4) of the instances the node holds, served as stored.

Instances, series and studies come back as ``multipart/related; type="application/dicom"``
with one Part 10 file per part, streamed from the spool in 1 MiB pieces; metadata comes back as a
DICOM JSON array. Without a transfer-syntax parameter, or with ``*``, instances are served in the
syntax they were received in. The one conversion the node makes is lossless and cheap: an instance
stored Deflated Explicit VR Little Endian (PS3.5 A.5, deflate over the data set, not image
compression) is served inflated when Explicit VR Little Endian is asked for. Any other syntax that
differs from a stored instance's is answered 406 (PS3.18 §8.7.3.5): no image transcoding.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from scp_node import audit
from scp_node.store.index import InstanceIndex, InstanceRecord, QueryMatch
from scp_node.web.dicom_json import metadata
from scp_node.web.multipart import parse_media_type

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def find(
    index: InstanceIndex, study: str, series: str = "", instance: str = ""
) -> list[InstanceRecord]:
    """The stored instances under a study, series or instance URL (empty when none)."""
    match = QueryMatch(
        study_uids=(study,),
        series_uids=(series,) if series else (),
        sop_instance_uids=(instance,) if instance else (),
    )
    return index.query_instances(match)


def not_acceptable(accept: str | None, records: Sequence[InstanceRecord]) -> str | None:
    """Why no Accept alternative can be served (None when one can)."""
    return negotiate(accept, records)[0]


def negotiate(
    accept: str | None, records: Sequence[InstanceRecord]
) -> tuple[str | None, str | None]:
    """(why no Accept alternative can be served or None, the syntax to convert Deflated instances
    to or None): Explicit VR LE may be served from Deflated files, nothing else is converted."""
    if not accept:
        return None, None
    syntaxes = {r.transfer_syntax for r in records}
    reasons = []
    for alternative in accept.split(","):
        media = parse_media_type(alternative)
        if media.value in ("*/*", "multipart/*"):
            return None, None
        if media.value != "multipart/related":
            reasons.append(f"{media.value} is not offered")
            continue
        if media.params.get("type", "application/dicom").lower() not in ("application/dicom",):
            reasons.append(f"type {media.params.get('type')} is not offered")
            continue
        wanted = media.params.get("transfer-syntax", "*")
        if wanted == "*" or syntaxes <= {wanted}:
            return None, None
        if wanted == ExplicitVRLittleEndian and syntaxes <= {
            wanted,
            DeflatedExplicitVRLittleEndian,
        }:
            return None, ExplicitVRLittleEndian
        reasons.append(f"transfer syntax {wanted} differs from the stored one (no transcoding)")
    return "; ".join(reasons) or "no acceptable media type", None


def new_boundary() -> str:
    return uuid.uuid4().hex


def content_type(boundary: str) -> str:
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


def inflated(rec: InstanceRecord) -> bytes:
    """A Deflated instance re-encoded as Explicit VR Little Endian, same content (lossless)."""
    ds = pydicom.dcmread(rec.path)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def multipart_body(
    records: Sequence[InstanceRecord], boundary: str, inflate_to: str | None = None
) -> Iterator[bytes]:
    """Each stored file as one part (PS3.18 §8.6.1.2); a file gone since the look-up is skipped.
    With ``inflate_to`` (Explicit VR LE), Deflated instances are served inflated."""
    audit.web_retrieve(records)  # PS3.15 A.5.3.3 Begin Transferring DICOM Instances
    for rec in records:
        if inflate_to and rec.transfer_syntax == DeflatedExplicitVRLittleEndian:
            try:
                data = inflated(rec)
            except Exception as exc:
                log.warning("WADO-RS: sop=%s not inflated: %s", rec.sop_instance_uid, exc)
                continue
            yield (
                f"--{boundary}\r\n"
                f"Content-Type: application/dicom; transfer-syntax={inflate_to}\r\n\r\n"
            ).encode("ascii")
            yield data + b"\r\n"
            continue
        try:
            handle = open(rec.path, "rb")  # noqa: SIM115 - closed below; kept open across yields
        except OSError as exc:
            log.warning("WADO-RS: file of sop=%s is gone: %s", rec.sop_instance_uid, exc)
            continue
        with handle:
            yield (
                f"--{boundary}\r\n"
                f"Content-Type: application/dicom; transfer-syntax={rec.transfer_syntax}\r\n\r\n"
            ).encode("ascii")
            while piece := handle.read(CHUNK):
                yield piece
            yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def metadata_list(index: InstanceIndex, records: Sequence[InstanceRecord]) -> list[dict[str, Any]]:
    """WADO-RS metadata (PS3.18 §10.4.1.1.2) of each instance, from its indexed header."""
    audit.web_metadata(records)  # PS3.15 A.5.3.6 DICOM Instances Accessed
    out = []
    for rec in records:
        try:
            out.append(metadata(index, rec))
        except Exception as exc:
            log.warning("WADO-RS metadata: sop=%s unreadable: %s", rec.sop_instance_uid, exc)
    return out
