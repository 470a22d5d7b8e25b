"""DICOM Instances Transferred for received studies: one message per association *and* study
(PS3.15 A.5.3.7), not one per instance.

The first instance of a study in an association opens a transfer, written to the durable queue
before the C-STORE (or STOW-RS part) is answered, so a study the node accepted always gets its
message: at the association's (or HTTP request's) end normally, at the next start after a crash
(then as a minor failure, "ended without release"). Later instances only count in memory.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from scp_node.audit import codes as c
from scp_node.audit import events
from scp_node.audit.message import AuditMessage, SopClassRef
from scp_node.audit.queue import AuditQueue

log = logging.getLogger(__name__)

#: The Origin sources of received instances that are audited as transfers to the node.
AUDITED_SOURCES = frozenset({"dimse", "stow"})


def association_key(source: str, peer: str, calling_ae: str) -> str:
    """Identifies a running association (DIMSE) or HTTP request (STOW-RS) by its TCP peer."""
    return f"{source}|{peer}|{calling_ae}"


@dataclass
class OpenTransfer:
    """What is known of one study received in one association so far."""

    study_uid: str
    patient_id: str
    calling_ae: str
    called_ae: str
    peer: str
    source: str
    classes: Counter[str] = field(default_factory=Counter)

    def info(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "patient_id": self.patient_id,
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "peer": self.peer,
            "source": self.source,
            "classes": dict(self.classes),
        }

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> OpenTransfer:
        classes = Counter({str(k): int(v) for k, v in info.get("classes", {}).items()})
        fields = {k: str(info.get(k, "")) for k in ("study_uid", "patient_id", "calling_ae")}
        return cls(
            **fields,
            called_ae=str(info.get("called_ae", "")),
            peer=str(info.get("peer", "")),
            source=str(info.get("source", "")),
            classes=classes,
        )

    def message(self, local: events.Local, outcome: int, description: str) -> AuditMessage:
        host = self.peer.rsplit(":", 1)[0] if self.peer else ""
        source = events.peer(self.calling_ae, host, True, c.SOURCE)
        destination = local.process(False, c.DESTINATION)
        if self.called_ae and self.called_ae != local.ae_title:
            destination = replace(destination, user_id=self.called_ae)
        refs = tuple(SopClassRef(uid, n) for uid, n in sorted(self.classes.items()))
        study = events.StudyRef(self.study_uid, self.patient_id, refs)
        return events.instances_transferred(
            local, source, destination, study, c.CREATE, outcome, description
        )


class TransferCollector:
    """Aggregates stored instances per (association, study); thread-safe."""

    def __init__(self, queue: AuditQueue, local: events.Local) -> None:
        self.queue = queue
        self.local = local
        self._open: dict[str, dict[str, OpenTransfer]] = {}
        self._lock = threading.Lock()

    def stored(
        self,
        source: str,
        peer: str,
        calling_ae: str,
        called_ae: str,
        study_uid: str,
        patient_id: str,
        sop_class_uid: str,
    ) -> None:
        """One instance was stored; the first of its study in this association is made durable."""
        if source not in AUDITED_SOURCES:
            return
        key = association_key(source, peer, calling_ae)
        with self._lock:
            studies = self._open.setdefault(key, {})
            transfer = studies.get(study_uid)
            first = transfer is None
            if transfer is None:
                transfer = OpenTransfer(study_uid, patient_id, calling_ae, called_ae, peer, source)
                studies[study_uid] = transfer
            transfer.classes[sop_class_uid] += 1
            info = transfer.info() if first else None
        if info is not None:
            self.queue.open_transfer(f"{key}|{study_uid}", info)

    def end(self, key_prefix: str, outcome: int = c.SUCCESS, description: str = "") -> int:
        """The association (or request) whose key starts with ``key_prefix`` ended: queue one
        message per study it stored. Returns how many."""
        with self._lock:
            keys = [k for k in self._open if k.startswith(key_prefix)]
            ended = [(k, self._open.pop(k)) for k in keys]
        count = 0
        for key, studies in ended:
            for study_uid, transfer in studies.items():
                message = transfer.message(self.local, outcome, description)
                self.queue.put("transferred", message.to_xml(), close_key=f"{key}|{study_uid}")
                count += 1
        return count

    def end_all(self, description: str) -> int:
        """The node stops: every association still open ends as a minor failure."""
        return self.end("", c.MINOR_FAILURE, description)

    def recover(self) -> int:
        """At start: transfers left open by a crash are queued (minor failure)."""
        count = 0
        for key, info in self.queue.open_transfers():
            transfer = OpenTransfer.from_info(info)
            message = transfer.message(
                self.local,
                c.MINOR_FAILURE,
                "the association did not end before the node stopped; instance counts may be "
                "incomplete",
            )
            self.queue.put("transferred", message.to_xml(), close_key=key)
            count += 1
        return count
