"""C-STORE SCU (PS3.4 Annex B, PS3.7 §9.1.1): one association per batch, optional TLS (PS3.15 B.9).

Each SOP class in the batch is proposed with Explicit VR Little Endian and Implicit VR Little
Endian; the files are stored in Explicit VR LE and pynetdicom converts if the peer picks Implicit.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import evt
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

from scp_node.config import Destination
from scp_node.egress.outcome import OK, Outcome
from scp_node.identity import node_ae

log = logging.getLogger(__name__)

SYNTAXES = [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian]


def status_text(code: int) -> str:
    """``0xA700 Failure (Refused: Out of Resources)``: a DIMSE status as a log text (PS3.7 C)."""
    category = code_to_category(code)
    detail = STORAGE_SERVICE_CLASS_STATUS.get(code, ("", ""))[1] or ""
    return f"0x{code:04X} {category}" + (f" ({detail})" if detail else "")


def tls_context(dest: Destination) -> ssl.SSLContext:
    """A client TLS context: the destination's CA (or the system's), our cert/key if configured."""
    context = ssl.create_default_context(cafile=str(dest.tls.ca_file) if dest.tls.ca_file else None)
    if dest.tls.cert_file and dest.tls.key_file:
        context.load_cert_chain(str(dest.tls.cert_file), str(dest.tls.key_file))
    return context


class _RejectListener:
    """Keeps the A-ASSOCIATE-RJ primitive (result, source, reason) when the peer rejects us."""

    def __init__(self) -> None:
        self.reason = ""
        self.answered = False

    def __call__(self, event: Any) -> None:
        primitive = event.primitive
        self.answered = True
        if getattr(primitive, "result", None) in (0x01, 0x02):
            self.reason = (
                f"{primitive.result_str}, source: {primitive.source_str}, "
                f"reason: {primitive.reason_str}"
            )


def send_files(
    dest: Destination, calling_ae: str, files: Sequence[tuple[Path, str]]
) -> list[Outcome]:
    """C-STORE ``files`` (path, SOP Class UID) to ``dest`` on one association; outcome per file."""
    ae = node_ae(ae_title=dest.calling_ae or calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
    ae.connection_timeout = dest.timeout_s
    for sop_class in sorted({cls for _, cls in files}):
        ae.add_requested_context(sop_class, SYNTAXES)
    listener = _RejectListener()
    tls_args = (tls_context(dest), dest.host) if dest.tls.enabled else None
    assoc = ae.associate(
        dest.host,
        dest.port,
        ae_title=dest.ae_title,
        tls_args=tls_args,
        evt_handlers=[(evt.EVT_ACSE_RECV, listener)],
    )
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"
    if not assoc.is_established:
        if assoc.is_rejected:
            error = f"association rejected by {where}: {listener.reason or 'no reason given'}"
        elif assoc.is_aborted and listener.answered:
            error = f"association with {where} aborted (no acceptable presentation context?)"
        else:
            error = f"no association with {where} (connection refused or timed out)"
        log.warning("%s", error)
        return [Outcome.failed(error)] * len(files)
    outcomes: list[Outcome] = []
    try:
        for path, _ in files:
            outcomes.append(_store_one(assoc, path, where))
    finally:
        if assoc.is_established:
            assoc.release()
    return outcomes


def _store_one(assoc: Any, path: Path, where: str) -> Outcome:
    if not assoc.is_established:
        return Outcome.failed(f"association with {where} ended before the C-STORE")
    try:
        ds = pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        return Outcome.failed(f"cannot read {path.name}: {exc}")
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
