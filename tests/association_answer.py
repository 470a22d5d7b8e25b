"""What a peer answered to our A-ASSOCIATE-RQ, judged from the PDU itself (PS3.8 §9.3.4).

pynetdicom 3.0.4 races with a fast reject: when the peer sends A-ASSOCIATE-RJ and closes before
the requesting thread looks at the socket, the association is marked aborted, not rejected (seen
in CI under CPU load, with Orthanc and with the node). The DUL thread decodes the A-ASSOCIATE-RJ
all the same, so tests read result, source and reason from the decoded PDU.
"""

from __future__ import annotations

from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ


class RejectSeen:
    """``answer``: (result, source, reason) of the A-ASSOCIATE-RJ received, or None."""

    def __init__(self) -> None:
        self.answer: tuple[int, int, int] | None = None

    def __call__(self, event: Any) -> None:
        pdu = event.pdu
        if isinstance(pdu, A_ASSOCIATE_RJ):
            self.answer = (pdu.result, pdu.source, pdu.reason_diagnostic)


def request(ae: AE, port: int, called: str = "LSTV_NODE") -> tuple[Association, RejectSeen]:
    """``ae`` asks 127.0.0.1:``port`` for an association; the association and the reject seen."""
    seen = RejectSeen()
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=called, evt_handlers=[(evt.EVT_PDU_RECV, seen)]
    )
    return assoc, seen
