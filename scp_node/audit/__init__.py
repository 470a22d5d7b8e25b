"""The audit trail: DICOM PS3.15 A.5 audit messages (IHE ATNA), queued durably and sent to a
syslog receiver (RFC 5424 over TLS, RFC 5425, or UDP, RFC 5426) or a local JSON-lines file.

Modules: :mod:`codes` (coded values), :mod:`message` (the XML of A.5.1), :mod:`events` (one
builder per A.5.3 message), :mod:`collect` (received studies per association), :mod:`results`
(results sent), :mod:`queue` (the durable queue), :mod:`syslog` (framing and senders),
:mod:`trail` (the sender thread), :mod:`requests` (the HTTP request being served) and
:mod:`hooks` (the one-line calls the rest of the node makes, re-exported here).
"""

from scp_node.audit.hooks import (
    association_aborted,
    association_rejected,
    association_released,
    current,
    dimse_handlers,
    instance_stored,
    results_sent,
    start,
    stop,
    tls_handshake_failed,
    user_authentication,
    web_metadata,
    web_query,
    web_refused,
    web_request_ended,
    web_retrieve,
)
from scp_node.audit.requests import audit_requests

__all__ = [
    "association_aborted",
    "association_rejected",
    "association_released",
    "audit_requests",
    "current",
    "dimse_handlers",
    "instance_stored",
    "results_sent",
    "start",
    "stop",
    "tls_handshake_failed",
    "user_authentication",
    "web_metadata",
    "web_query",
    "web_refused",
    "web_request_ended",
    "web_retrieve",
]
