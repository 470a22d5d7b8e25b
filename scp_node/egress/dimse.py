"""C-STORE SCU (PS3.4 Annex B, PS3.7 §9.1.1): one association per batch, optional TLS (PS3.15 B.9).

Each SOP class in the batch is proposed with Explicit VR Little Endian and Implicit VR Little
Endian; the files are stored in Explicit VR LE and pynetdicom converts if the peer picks Implicit.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

from scp_node.config import Destination
from scp_node.egress.outcome import OK, Outcome
from scp_node.identity import node_ae

log = logging.getLogger(__name__)

SYNTAXES = [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian]
#: Seconds the diagnostic TLS handshake after a failed association may take.
TLS_PROBE_TIMEOUT_S = 5.0


def status_text(code: int) -> str:
    """``0xA700 Failure (Refused: Out of Resources)``: a DIMSE status as a log text (PS3.7 C)."""
    category = code_to_category(code)
    detail = STORAGE_SERVICE_CLASS_STATUS.get(code, ("", ""))[1] or ""
    return f"0x{code:04X} {category}" + (f" ({detail})" if detail else "")


def tls_context(dest: Destination) -> ssl.SSLContext:
    """A client TLS context (PS3.15 B.9): the destination's CA (or the system's), our cert/key if
    configured. The server's certificate must name ``dest.host`` in its subjectAltName."""
    context = ssl.create_default_context(cafile=str(dest.tls.ca_file) if dest.tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if dest.tls.cert_file and dest.tls.key_file:
        context.load_cert_chain(str(dest.tls.cert_file), str(dest.tls.key_file))
    return context


def describe(dest: Destination, calling_ae: str) -> str:
    """``LSTV_NODE -> PACS@host:port over TLS (CA ca.pem, client certificate cert.pem)``."""
    text = f"{dest.calling_ae or calling_ae} -> {dest.ae_title}@{dest.host}:{dest.port}"
    if not dest.tls.enabled:
        return text + " (plain TCP)"
    ca = f"CA {dest.tls.ca_file}" if dest.tls.ca_file else "system CAs"
    client = f", client certificate {dest.tls.cert_file}" if dest.tls.cert_file else ""
    return f"{text} over TLS ({ca}{client})"


def tls_problem(dest: Destination) -> str | None:
    """Why a TLS handshake with ``dest`` fails (certificate verification, protocol), or None.

    Called after an association failed, so that a certificate that does not name the host or is
    not signed by the configured CA is logged as that, not as "connection refused"."""
    try:
        context = tls_context(dest)
        timeout = min(dest.timeout_s, TLS_PROBE_TIMEOUT_S)  # a dead host costs little more
        raw = socket.create_connection((dest.host, dest.port), timeout=timeout)
        with raw, context.wrap_socket(raw, server_hostname=dest.host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return (
            f"TLS certificate verification failed: {exc.verify_message} (the certificate must "
            f"be signed by the destination's ca_file and name {dest.host!r} in subjectAltName)"
        )
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc}"
    except OSError:
        return None  # not a TLS problem: the plain connection fails too


class _RejectListener:
    """Keeps what the peer answered: whether any PDU came back, and the A-ASSOCIATE-RJ's result,
    source and reason (PS3.8 §9.3.4) when it rejected us.

    It listens to decoded PDUs in the DUL thread, not to primitives in the requesting thread:
    pynetdicom 3.0.4 reports a fast reject (the peer sends A-ASSOCIATE-RJ and closes before the
    requesting thread looks) as an abort, but the PDU was received and decoded all the same.
    """

    def __init__(self) -> None:
        self.reason = ""
        self.answered = False

    def __call__(self, event: Any) -> None:
        self.answered = True
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            pdu = event.pdu
            self.reason = f"{pdu.result_str}, source: {pdu.source_str}, reason: {pdu.reason_str}"


def associate(
    dest: Destination,
    calling_ae: str,
    abstract_syntaxes: Sequence[str],
    *,
    ext_neg: Sequence[Any] = (),
) -> tuple[Association | None, str]:
    """An association to ``dest`` with exactly the settings delivery uses (calling AE title,
    timeouts, TLS); ``(association, "")`` or ``(None, why it failed)``."""
    ae = node_ae(dest.calling_ae or calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
    ae.connection_timeout = dest.timeout_s
    for abstract_syntax in abstract_syntaxes:
        ae.add_requested_context(abstract_syntax, SYNTAXES)
    listener = _RejectListener()
    tls_args = (tls_context(dest), dest.host) if dest.tls.enabled else None
    assoc = ae.associate(
        dest.host,
        dest.port,
        ae_title=dest.ae_title,
        tls_args=tls_args,
        ext_neg=list(ext_neg) or None,
        evt_handlers=[(evt.EVT_PDU_RECV, listener)],
    )
    if assoc.is_established:
        return assoc, ""
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"
    if assoc.is_rejected or listener.reason:
        error = f"association rejected by {where}: {listener.reason or 'no reason given'}"
    elif assoc.is_aborted and listener.answered:
        error = f"association with {where} aborted (no acceptable presentation context?)"
    else:
        problem = tls_problem(dest) if dest.tls.enabled else None
        error = f"no association with {where}: " + (problem or "connection refused or timed out")
    log.warning("%s", error)
    return None, error


def send_files(
    dest: Destination, calling_ae: str, files: Sequence[tuple[Path, str]]
) -> list[Outcome]:
    """C-STORE ``files`` (path, SOP Class UID) to ``dest`` on one association; outcome per file."""
    assoc, error = associate(dest, calling_ae, sorted({cls for _, cls in files}))
    if assoc is None:
        return [Outcome.failed(error)] * len(files)
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"
    return on_one_association(assoc, where, [path for path, _ in files], _store_one)


def on_one_association(
    assoc: Any, where: str, paths: list[Path], send_one: Callable[[Any, Path, str], Outcome]
) -> list[Outcome]:
    """``send_one`` for each file on one established association, which is then released."""
    outcomes: list[Outcome] = []
    try:
        for path in paths:
            outcomes.append(send_one(assoc, path, where))
    finally:
        if assoc.is_established:
            assoc.release()
    return outcomes


def read_to_send(assoc: Any, path: Path, where: str, message: str) -> Dataset | Outcome:
    """The file to send as ``message`` on ``assoc``, or the failed Outcome (association gone,
    file unreadable) that a caller returns instead."""
    if not assoc.is_established:
        return Outcome.failed(f"association with {where} ended before the {message}")
    try:
        return pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        return Outcome.failed(f"cannot read {path.name}: {exc}")


def _store_one(assoc: Any, path: Path, where: str) -> Outcome:
    ds = read_to_send(assoc, path, where, "C-STORE")
    if isinstance(ds, Outcome):
        return ds
    try:
        status = assoc.send_c_store(ds)
    except (ValueError, RuntimeError) as exc:  # no accepted context for the class / syntax
        return Outcome.failed(f"C-STORE to {where} not sent: {exc}")
    if not status or "Status" not in status:
        return Outcome.failed(f"C-STORE to {where}: no response (timeout or abort)")
    code = int(status.Status)
    category = code_to_category(code)
    if category == "Success":
        return OK
    if category == "Warning":
        log.warning("C-STORE of %s to %s: %s", ds.SOPInstanceUID, where, status_text(code))
        return OK
    comment = str(status.get("ErrorComment", "") or "")
    error = f"C-STORE to {where} failed: status {status_text(code)}" + (
        f": {comment}" if comment else ""
    )
    return Outcome.failed(error, code)
