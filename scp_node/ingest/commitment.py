"""Storage Commitment Push Model as SCP (PS3.4 Annex J).

N-ACTION-RQ (Action Type 1, "Request Storage Commitment") lists SOP instances; the node answers
N-ACTION-RSP at once, then checks each instance against its index (an instance in the index is on
disk, fsynced) and sends the result as N-EVENT-REPORT-RQ (Event Type 1: all committed; 2: some
failed) over a *new* association to the requester, found through ``delivery.reply_to_sender``
(calling AE title → DIMSE destination), the way PS3.4 J.3.3 allows. The studies of the committed
instances are then complete at once (no quiet time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from scp_node.config import Settings
from scp_node.identity import node_ae
from scp_node.store.index import InstanceIndex

log = logging.getLogger(__name__)

WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
FAILURE_NO_SUCH_OBJECT = 0x0112
STATUS_SUCCESS = 0x0000
STATUS_NO_SUCH_ACTION = 0x0123
STATUS_INVALID_ARGUMENT = 0x0115


def commitment_result(request: Dataset, index: InstanceIndex) -> tuple[Dataset, set[str]]:
    """The N-EVENT-REPORT Event Information for a commitment request, and the studies involved."""
    committed, failed, studies = [], [], set()
    for item in request.get("ReferencedSOPSequence", []):
        sop_uid = str(item.get("ReferencedSOPInstanceUID", ""))
        sop_class = str(item.get("ReferencedSOPClassUID", ""))
        record = index.get(sop_uid) if sop_uid else None
        reference = Dataset()
        reference.ReferencedSOPClassUID = sop_class
        reference.ReferencedSOPInstanceUID = sop_uid
        if record is not None and record.path.exists() and record.sop_class_uid == sop_class:
            committed.append(reference)
            studies.add(record.study_uid)
        else:
            reference.FailureReason = FAILURE_NO_SUCH_OBJECT
            failed.append(reference)
    info = Dataset()
    info.TransactionUID = request.TransactionUID
    if committed:
        info.ReferencedSOPSequence = committed
    if failed:
        info.FailedSOPSequence = failed
    return info, studies


def send_event_report(settings: Settings, calling_ae: str, info: Dataset) -> bool:
    """N-EVENT-REPORT to the requester over a new association (node as Storage Commitment SCP)."""
    name = settings.delivery.reply_to_sender.get(calling_ae)
    dest = settings.delivery.destinations.get(name) if name else None
    if dest is None or dest.kind != "dimse":
        log.warning(
            "storage commitment from %s: no DIMSE destination in delivery.reply_to_sender for it; "
            "the N-EVENT-REPORT cannot be sent",
            calling_ae,
        )
        return False
    ae = node_ae(ae_title=settings.dicom.ae_title)
    ae.add_requested_context(StorageCommitmentPushModel)
    role = build_role(StorageCommitmentPushModel, scp_role=True, scu_role=False)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, ext_neg=[role])
    if not assoc.is_established:
        log.warning(
            "storage commitment: association to %s@%s:%d failed",
            dest.ae_title,
            dest.host,
            dest.port,
        )
        return False
    try:
        event_type = 2 if "FailedSOPSequence" in info else 1
        status, _ = assoc.send_n_event_report(
            info, event_type, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE
        )
        code = int(status.Status) if status and "Status" in status else -1
        log.info(
            "storage commitment transaction %s reported to %s: event type %d, status 0x%04X",
            info.TransactionUID,
            calling_ae,
            event_type,
            code,
        )
        return code == 0
    finally:
        assoc.release()


def commitment_handlers(
    settings: Settings, index: InstanceIndex, on_committed: Callable[[set[str]], None]
) -> list[tuple[Any, Callable[..., Any]]]:
    """The pynetdicom event handler for N-ACTION, for :class:`DimseServer` ``extra_handlers``."""

    def on_n_action(event: Any) -> tuple[int, Dataset | None]:
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        if event.request.ActionTypeID != 1:
            return STATUS_NO_SUCH_ACTION, None
        try:
            request = event.action_information
            if "TransactionUID" not in request:
                return STATUS_INVALID_ARGUMENT, None
        except Exception as exc:
            log.warning("storage commitment from %s: unreadable request: %s", calling_ae, exc)
            return STATUS_INVALID_ARGUMENT, None

        def report() -> None:
            info, studies = commitment_result(request, index)
            log.info(
                "storage commitment from %s: %d committed, %d failed",
                calling_ae,
                len(info.get("ReferencedSOPSequence", [])),
                len(info.get("FailedSOPSequence", [])),
            )
            if studies:
                on_committed(studies)
            send_event_report(settings, calling_ae, info)

        threading.Thread(target=report, name="commitment-report", daemon=True).start()
        return STATUS_SUCCESS, None

    return [(evt.EVT_N_ACTION, on_n_action)]
