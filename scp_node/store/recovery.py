"""Start-up recovery after an unclean stop: the spool is the record, the index is rebuilt from it.

The index commits with ``synchronous=NORMAL`` (WAL): safe against a killed process, but a power
loss may drop its last commits. Every spool file was fsynced and renamed before its C-STORE got
Success, so after an unclean stop (the ``running`` marker is still there) the node indexes any spool
file the index lacks. A clean stop removes the marker and the next start skips the scan.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pydicom import dcmread

from scp_node.store.index import InstanceIndex, InstanceRecord

log = logging.getLogger(__name__)

MARKER_NAME = "running"


def was_unclean(data_dir: Path) -> bool:
    return (data_dir / MARKER_NAME).exists()


def mark_running(data_dir: Path) -> None:
    (data_dir / MARKER_NAME).write_text(str(time.time()))


def mark_stopped(data_dir: Path) -> None:
    (data_dir / MARKER_NAME).unlink(missing_ok=True)


def reindex_spool(spool_root: Path, index: InstanceIndex) -> int:
    """Index every spooled instance the index does not know; returns how many were added."""
    added = 0
    for path in spool_root.glob("*/*/*.dcm"):
        sop_uid = path.stem
        if index.get(sop_uid) is not None:
            continue
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            log.warning("recovery: %s is not readable (%s); left in place", path, exc)
            continue
        meta = ds.file_meta
        index.add(
            InstanceRecord(
                sop_instance_uid=sop_uid,
                sop_class_uid=str(ds.SOPClassUID),
                study_uid=path.parent.parent.name,
                series_uid=path.parent.name,
                transfer_syntax=str(meta.TransferSyntaxUID),
                path=path,
                size=path.stat().st_size,
                modality=str(ds.get("Modality", "")),
                patient_id=str(ds.get("PatientID", "")),
                calling_ae=str(meta.get("SourceApplicationEntityTitle", "") or "").strip(),
                source="recovered",
                received_at=path.stat().st_mtime,
            )
        )
        added += 1
    if added:
        log.warning("recovery: indexed %d spooled instances the index had lost", added)
    return added
