"""The calls the rest of the node makes: one line each in ingest, web, egress and the node.

Every function here is a no-op while no trail runs (tests of single parts, ``audit.enabled =
false``) and never raises: an audit problem is logged and the DICOM or HTTP traffic goes on.
The node starts one trail per process (:func:`start`), like its one metrics registry.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Concatenate, ParamSpec, TypeVar

from scp_node.audit import codes as c
from scp_node.audit import events
from scp_node.audit.collect import association_key
from scp_node.audit.message import SopClassRef
from scp_node.audit.requests import RequestInfo, current_request
from scp_node.audit.trail import AuditTrail
from scp_node.config import Settings

log = logging.getLogger(__name__)

_trail: AuditTrail | None = None
_lock = threading.Lock()

P = ParamSpec("P")
R = TypeVar("R")


def _safe(func: Callable[Concatenate[AuditTrail, P], R]) -> Callable[P, R | None]:
    """Run the hook only while a trail runs; log (never raise) what goes wrong."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        trail = _trail
        if trail is None:
            return None
        try:
            return func(trail, *args, **kwargs)
        except Exception:
            log.exception("audit hook %s failed", func.__name__)
            return None

    return wrapper


def current() -> AuditTrail | None:
    """The running trail, if any."""
    return _trail


def start(settings: Settings) -> AuditTrail | None:
    """Start the trail of ``settings`` (none when ``audit.enabled`` is false): queue what a
    crash left open, then Application Start (PS3.15 A.5.3.1)."""
    global _trail
    if not settings.audit.enabled:
        return None
    with _lock:
        if _trail is not None:
            _trail.stop()
        trail = AuditTrail(settings)
        recovered = trail.collector.recover()
        if recovered:
            log.warning("audit: %d transfers left open by the last run queued", recovered)
        trail.emit("application-start", events.application_activity(trail.local, True))
        trail.start()
        _trail = trail
    return trail


def _detach() -> AuditTrail | None:
    """The current trail, which is no longer the current one."""
    global _trail
    with _lock:
        trail, _trail = _trail, None
    return trail


def stop() -> None:
    """Close open transfers, Application Stop, then stop the sender (queued messages stay)."""
    trail = _detach()
    if trail is None:
        return
    try:
        trail.collector.end_all("the node stopped before the association ended")
        trail.emit("application-stop", events.application_activity(trail.local, False))
    finally:
        trail.stop()


def start_producer(settings: Settings) -> AuditTrail | None:
    """The trail of a receiving process (``dicom.processes`` > 1, scp_node/ingest/receivers.py):
    its associations and stored instances are queued in the shared queue file, and the ``serve``
    process's sender thread (it looks every second) sends them. No sender thread, no Application
    Start and no recovery of open transfers here: those belong to the ``serve`` process, whose
    next start also queues what a crashed receiving process left open."""
    global _trail
    if not settings.audit.enabled:
        return None
    with _lock:
        _trail = AuditTrail(settings)
    return _trail


def stop_producer() -> None:
    """A receiving process stops: its open transfers are queued, the queue file closed."""
    trail = _detach()
    if trail is None:
        return
    try:
        trail.collector.end_all("the receiving process stopped before the association ended")
    finally:
        trail.queue.close()


# --- DICOM (ingest/dimse.py, ingest/dimse_guard.py, node.py) ---


@_safe
def instance_stored(trail: AuditTrail, record: Any) -> None:
    """An instance is durable (the receiver's ``on_stored``); counts towards its study's
    Instances Transferred message."""
    trail.collector.stored(
        record.source,
        record.peer,
        record.calling_ae,
        record.called_ae,
        record.study_uid,
        record.patient_id,
        record.sop_class_uid,
    )


def _assoc_prefix(event: Any) -> str:
    requestor = event.assoc.requestor
    peer = f"{requestor.address}:{requestor.port}"
    return association_key("dimse", peer, str(requestor.ae_title).strip())


@_safe
def association_released(trail: AuditTrail, event: Any) -> None:
    if trail.collector.end(_assoc_prefix(event)):
        trail.wake()


@_safe
def association_aborted(trail: AuditTrail, event: Any) -> None:
    if trail.collector.end(_assoc_prefix(event), c.MINOR_FAILURE, "association aborted"):
        trail.wake()


#: A-ASSOCIATE-RJ diagnostics of the service user that concern identity (PS3.8 9.3.4):
#: 3 calling AE title not recognized, 7 called AE title not recognized.
AE_DIAGNOSTICS = {3: "calling AE title not recognized", 7: "called AE title not recognized"}


@_safe
def association_rejected(trail: AuditTrail, event: Any) -> None:
    """Security Alert (Node Authentication) for an association refused for its AE titles."""
    primitive = event.assoc.acceptor.primitive
    source, diagnostic = (
        getattr(primitive, "result_source", None),
        getattr(primitive, "diagnostic", None),
    )
    if source != 1 or diagnostic not in AE_DIAGNOSTICS:
        return
    requestor = event.assoc.requestor
    called = getattr(requestor.primitive, "called_ae_title", "") or ""
    calling = str(requestor.ae_title).strip()
    text = (
        f"association rejected: {AE_DIAGNOSTICS[diagnostic]} (calling {calling!r}, "
        f"called {str(called).strip()!r})"
    )
    performer = events.peer(calling, str(requestor.address), True, c.SOURCE)
    subject = f"dicom://{trail.local.ae_title}@{trail.local.host}"
    trail.emit(
        "security-alert",
        events.security_alert(trail.local, c.NODE_AUTHENTICATION, text, performer, subject),
    )


def dimse_handlers() -> list[tuple[Any, Callable[..., Any]]]:
    """pynetdicom notification handlers for the node's listener (added beside its own)."""
    from pynetdicom import evt

    return [
        (evt.EVT_RELEASED, association_released),
        (evt.EVT_ABORTED, association_aborted),
        (evt.EVT_CONN_CLOSE, association_aborted),
        (evt.EVT_REJECTED, association_rejected),
    ]


@_safe
def tls_handshake_failed(trail: AuditTrail, sock: Any, exc: BaseException) -> None:
    """Security Alert (Node Authentication): a DICOM TLS handshake failed (PS3.15 B.9)."""
    try:
        address = str(sock.getpeername()[0])
    except OSError:
        address = ""
    text = f"DICOM TLS handshake failed: {type(exc).__name__}"
    performer = events.peer("", address, True) if address else None
    subject = f"dicom-tls://{trail.local.ae_title}@{trail.local.host}"
    trail.emit(
        "security-alert",
        events.security_alert(trail.local, c.NODE_AUTHENTICATION, text, performer, subject),
    )


# --- DICOMweb (web/qido.py, web/wado.py; requests.py for STOW-RS and 401) ---


def _web_participants(
    trail: AuditTrail, request: RequestInfo | None = None
) -> tuple[events.ActiveParticipant, events.ActiveParticipant, RequestInfo | None]:
    """(the HTTP client as requestor, the node's DICOMweb service, the request or None)."""
    request = request or current_request()
    if request is None:
        client = events.peer("unknown", "", True, c.SOURCE)
        return client, trail.local.process(False, c.DESTINATION), None
    client = events.peer(request.user, request.host, True, c.SOURCE)
    service = events.peer(
        request.service_url, "", False, c.DESTINATION, alt=f"AETITLES={trail.local.ae_title}"
    )
    return client, service, request


@_safe
def web_query(trail: AuditTrail, level: Any) -> None:
    """Query (PS3.15 A.5.3.10) for a QIDO-RS search."""
    client, service, request = _web_participants(trail)
    target = request.target if request is not None else ""
    patient_id = request.param("PatientID") if request is not None else ""
    name = getattr(level, "name", str(level)).title()
    description = f"QIDO-RS SearchFor{name}"
    trail.emit(
        "query",
        events.query(trail.local, client, service, target.encode("utf-8"), description, patient_id),
    )


def _studies(records: Iterable[Any]) -> list[events.StudyRef]:
    """Records grouped by study (one message per study: one patient each, PS3.15 A.5.3)."""
    by_study: dict[tuple[str, str], defaultdict[str, int]] = {}
    for rec in records:
        key = (rec.study_uid, rec.patient_id)
        by_study.setdefault(key, defaultdict(int))[rec.sop_class_uid] += 1
    return [
        events.StudyRef(study, patient, tuple(SopClassRef(u, n) for u, n in sorted(cl.items())))
        for (study, patient), cl in by_study.items()
    ]


@_safe
def web_retrieve(trail: AuditTrail, records: Sequence[Any]) -> None:
    """Begin Transferring DICOM Instances (PS3.15 A.5.3.3) for a WADO-RS retrieve: the node is
    the source, the HTTP client the destination (and the requestor)."""
    client, service, _ = _web_participants(trail)
    source = replace(service, roles=(c.SOURCE,))
    destination = replace(client, roles=(c.DESTINATION,))
    for study in _studies(records):
        trail.emit(
            "begin-transferring",
            events.begin_transferring(trail.local, source, destination, study),
        )


@_safe
def web_metadata(trail: AuditTrail, records: Sequence[Any]) -> None:
    """DICOM Instances Accessed (PS3.15 A.5.3.6, Read) for WADO-RS metadata."""
    client, _, _ = _web_participants(trail)
    user = replace(client, roles=())
    for study in _studies(records):
        trail.emit(
            "instances-accessed",
            events.instances_accessed(trail.local, user, study, "WADO-RS metadata"),
        )


@_safe
def web_request_ended(trail: AuditTrail, host: str, port: int | None, status: int) -> None:
    """An HTTP request ended: its STOW-RS studies are complete (one Instances Transferred
    each; a minor failure when the request failed)."""
    prefix = f"stow|{host}:{port}|"
    outcome = c.SUCCESS if status < 400 else c.MINOR_FAILURE
    text = "" if status < 400 else f"STOW-RS answered HTTP {status}"
    if trail.collector.end(prefix, outcome, text):
        trail.wake()


@_safe
def web_refused(trail: AuditTrail, reason: str, request: RequestInfo | None = None) -> None:
    """Security Alert (Use of Restricted Function): a DICOMweb request without a valid token."""
    client, _, current = _web_participants(trail, request)
    request = request or current
    subject = request.url if request is not None else "dicom-web"
    trail.emit(
        "security-alert",
        events.security_alert(trail.local, c.USE_OF_RESTRICTED_FUNCTION, reason, client, subject),
    )


# --- the operator console ---


@_safe
def user_authentication(
    trail: AuditTrail,
    user: str,
    succeeded: bool,
    address: str = "",
    logout: bool = False,
    description: str = "",
) -> None:
    """User Authentication (PS3.15 A.5.3.12): a sign-in (``logout`` False) or sign-out of
    ``user`` from ``address``; a failed sign-in is a minor failure."""
    person = events.peer(user or "unknown", address, True)
    outcome = c.SUCCESS if succeeded else c.MINOR_FAILURE
    trail.emit(
        "user-authentication",
        events.user_authentication(trail.local, person, logout, outcome, description),
    )


# --- results sent (egress/worker.py) ---


@_safe
def results_sent(
    trail: AuditTrail,
    name: str,
    dest: Any,
    rows: Sequence[Any],
    outcomes: Sequence[Any],
    max_attempts: int,
) -> None:
    """DICOM Instances Transferred and Export (PS3.15 A.5.3.7, A.5.3.4) per study of a batch
    sent to destination ``name``: delivered rows as success; rows that became dead letters as
    a serious failure. Attempts that will be retried are not audited (the log has them)."""
    from scp_node.audit.results import result_messages

    for event, message in result_messages(trail.local, name, dest, rows, outcomes, max_attempts):
        trail.emit(event, message)
