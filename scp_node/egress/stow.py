"""STOW-RS client (PS3.18 §10.5): one multipart/related POST per batch, optional bearer token.

The request is ``multipart/related; type="application/dicom"`` to ``{url}/studies``; the response's
Store Instances Response Module (PS3.18 §10.5.3) decides each instance: it must be listed in the
ReferencedSOPSequence (0008,1199) and not in the FailedSOPSequence (0008,1198).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pydicom

from scp_node.config import Destination
from scp_node.egress.outcome import OK, Outcome

log = logging.getLogger(__name__)

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"


def multipart_body(parts: Sequence[bytes]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/related request holding ``parts`` (RFC 2387)."""
    boundary = f"scpnode-{secrets.token_hex(16)}"
    chunks: list[bytes] = []
    for part in parts:
        chunks += [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            part,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type


def _uids(response: dict[str, Any], tag: str) -> dict[str, int | None]:
    """SOP Instance UID → Failure Reason (or None) for the items of one response sequence."""
    found: dict[str, int | None] = {}
    for item in (response.get(tag) or {}).get("Value") or []:
        uid = ((item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or [""])[0]
        reason = ((item.get(FAILURE_REASON) or {}).get("Value") or [None])[0]
        if uid:
            found[str(uid)] = None if reason is None else int(reason)
    return found


def auth_headers(dest: Destination) -> dict[str, str]:
    """``Accept`` and, when the destination has a token, ``Authorization: Bearer`` (RFC 6750)."""
    headers = {"Accept": "application/dicom+json"}
    if dest.token is not None:
        headers["Authorization"] = f"Bearer {dest.token.get_secret_value()}"
    return headers


def http_client(dest: Destination) -> httpx.Client:
    """An HTTP client with the destination's timeout, CA file and client certificate."""
    verify: Any = str(dest.tls.ca_file) if dest.tls.ca_file else True
    cert = (str(dest.tls.cert_file), str(dest.tls.key_file)) if dest.tls.cert_file else None
    return httpx.Client(timeout=dest.timeout_s, verify=verify, cert=cert)


def send_files(dest: Destination, files: Sequence[Path]) -> list[Outcome]:
    """STOW-RS ``files`` to ``dest.url``; one outcome per file."""
    uids: list[str] = []
    parts: list[bytes] = []
    for path in files:
        data = Path(path).read_bytes()
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uids.append(str(ds.SOPInstanceUID))
        parts.append(data)
    body, content_type = multipart_body(parts)
    headers = {"Content-Type": content_type, **auth_headers(dest)}
    url = dest.url.rstrip("/") + "/studies"
    try:
        with http_client(dest) as client:
            reply = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        error = f"STOW-RS to {url}: {type(exc).__name__}: {exc}"
        log.warning("%s", error)
        return [Outcome.failed(error)] * len(files)
    try:
        payload = reply.json() if reply.content else {}
    except ValueError:
        payload = {}
    if isinstance(payload, list):  # some servers wrap the module in a list
        payload = payload[0] if payload else {}
    referenced = _uids(payload, REFERENCED_SOP_SEQUENCE)
    failed = _uids(payload, FAILED_SOP_SEQUENCE)
    outcomes = []
    for uid in uids:
        if uid in failed:
            reason = failed[uid]
            code = f"0x{reason:04X}" if reason is not None else "unknown"
            outcomes.append(
                Outcome.failed(
                    f"STOW-RS to {url}: HTTP {reply.status_code}, failure reason {code}", reason
                )
            )
        elif uid in referenced and reply.status_code in (200, 202):
            outcomes.append(OK)
        else:
            outcomes.append(
                Outcome.failed(
                    f"STOW-RS to {url}: HTTP {reply.status_code}, instance not acknowledged",
                    reply.status_code,
                )
            )
    return outcomes
