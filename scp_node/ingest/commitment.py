"""Storage Commitment Push Model as SCP (PS3.4 Annex J).

N-ACTION-RQ (Action Type 1, "Request Storage Commitment") lists SOP instances. Before the node
answers the N-ACTION-RSP it checks each instance against its index (an instance in the index is on
disk, fsynced) and queues the result durably in the outbox (:mod:`scp_node.egress.commitment`); the
outbox worker sends it as N-EVENT-REPORT-RQ (Event Type 1: all committed; 2: some failed) over a
*new* association to the requester, found through ``delivery.reply_to_sender`` (calling AE title →
DIMSE destination, with its TLS settings), retried and dead-lettered like results (PS3.4 J.3.3).
A request the node cannot report (no such destination, the report cannot be stored) is answered
0x0110 Processing Failure instead of Success. The studies of the committed instances are then
complete at once (no quiet time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt

from scp_node.config import Settings
from scp_node.store.index import InstanceIndex

log = logging.getLogger(__name__)

WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
FAILURE_NO_SUCH_OBJECT = 0x0112
STATUS_SUCCESS = 0x0000
STATUS_NO_SUCH_ACTION = 0x0123
STATUS_INVALID_ARGUMENT = 0x0115
STATUS_PROCESSING_FAILURE = 0x0110


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


def commitment_handlers(
    settings: Settings,
    index: InstanceIndex,
    on_committed: Callable[[set[str]], None],
    enqueue_report: Callable[[Dataset, str], int],
) -> list[tuple[Any, Callable[..., Any]]]:
    """The pynetdicom N-ACTION handler for :class:`DimseServer` ``extra_handlers``;
    ``enqueue_report(event information, destination name)`` queues the N-EVENT-REPORT durably."""

    def on_n_action(event: Any) -> tuple[int | Dataset, Dataset | None]:
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
        destination = report_destination(settings, calling_ae)
        if destination is None:
            reason = f"no DIMSE destination for {calling_ae} in delivery.reply_to_sender"
            log.warning("storage commitment from %s refused (0x0110): %s", calling_ae, reason)
            return failure(reason), None
        try:
            info, studies = commitment_result(request, index)
            enqueue_report(info, destination)
        except Exception as exc:  # never raise into the association; the requester may retry
            log.exception("storage commitment from %s: cannot queue the report", calling_ae)
            return failure(f"cannot queue the report: {type(exc).__name__}"), None
        log.info(
            "storage commitment from %s: %d committed, %d failed",
            calling_ae,
            len(info.get("ReferencedSOPSequence", [])),
            len(info.get("FailedSOPSequence", [])),
        )
        if studies:
            on_committed(studies)
        return STATUS_SUCCESS, None

    return [(evt.EVT_N_ACTION, on_n_action)]


def report_destination(settings: Settings, calling_ae: str) -> str | None:
    """The DIMSE destination a requester's reports go to (``delivery.reply_to_sender``)."""
    name = settings.delivery.reply_to_sender.get(calling_ae)
    dest = settings.delivery.destinations.get(name) if name else None
    return name if dest is not None and dest.kind == "dimse" else None


def failure(comment: str) -> Dataset:
    """An N-ACTION-RSP status 0x0110 Processing Failure with an Error Comment (PS3.7 C.4.2)."""
    status = Dataset()
    status.Status = STATUS_PROCESSING_FAILURE
    status.ErrorComment = comment[:64]
    return status
