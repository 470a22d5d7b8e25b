"""Storage Commitment reports (N-EVENT-REPORT, PS3.4 J.3.3) delivered through the outbox.

The Event Information of a report is written durably as a small DICOM file (File Meta: Media
Storage SOP Class = Storage Commitment Push Model, Media Storage SOP Instance = Transaction UID) and
queued in the outbox like a result; the outbox worker sends it over a new association with the
requester's destination settings (calling AE title, timeouts, DICOM TLS; PS3.15 B.9), retries with
backoff and dead-letters it like any delivery. PS3.4 J.3.3 lets the SCP send the report on an
association it opens itself, proposing the SCP role by SCP/SCU Role Selection (PS3.7 D.3.3.4).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import build_role
from pynetdicom.association import Association
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from scp_node.config import Destination
from scp_node.egress.dimse import associate, on_one_association, read_to_send
from scp_node.egress.outcome import OK, Outcome
from scp_node.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

log = logging.getLogger(__name__)

#: The outbox row's ``sop_class_uid`` that marks a Storage Commitment report (not a result).
COMMITMENT_CLASS = str(StorageCommitmentPushModel)
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"


def event_type(info: Dataset) -> int:
    """Event Type ID: 1 = all committed, 2 = some failed (PS3.4 J.3.3)."""
    return 2 if "FailedSOPSequence" in info else 1


def report_dataset(info: Dataset) -> tuple[str, Dataset]:
    """(Transaction UID, the Event Information as a PS3.10 dataset ready for ``save_as``)."""
    transaction = str(info.TransactionUID)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(COMMITMENT_CLASS)
    meta.MediaStorageSOPInstanceUID = UID(transaction)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds = Dataset()
    ds.update(info)
    ds.file_meta = meta
    return transaction, ds


def send_reports(dest: Destination, calling_ae: str, files: Sequence[Path]) -> list[Outcome]:
    """N-EVENT-REPORT each stored Event Information in ``files`` to ``dest`` on one association."""
    role = build_role(StorageCommitmentPushModel, scp_role=True, scu_role=False)
    assoc, error = associate(dest, calling_ae, [StorageCommitmentPushModel], ext_neg=[role])
    if assoc is None:
        return [Outcome.failed(f"storage commitment report: {error}")] * len(files)
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"
    return on_one_association(assoc, where, list(files), _report_one)


def _report_one(assoc: Association, path: Path, where: str) -> Outcome:
    info = read_to_send(assoc, path, where, "N-EVENT-REPORT")
    if isinstance(info, Outcome):
        return info
    del info.file_meta
    kind = event_type(info)
    try:
        status, _ = assoc.send_n_event_report(
            info, kind, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE
        )
    except (ValueError, RuntimeError) as exc:  # no accepted context / role for the report
        return Outcome.failed(f"N-EVENT-REPORT to {where} not sent: {exc}")
    if not status or "Status" not in status:
        return Outcome.failed(f"N-EVENT-REPORT to {where}: no response (timeout or abort)")
    code = int(status.Status)
    log.info(
        "storage commitment transaction %s reported to %s: event type %d, status 0x%04X",
        info.TransactionUID,
        where,
        kind,
        code,
    )
    if code == 0x0000:
        return OK
    return Outcome.failed(f"N-EVENT-REPORT to {where}: status 0x{code:04X}", code)
