"""The worker's DICOMweb client towards an ingest node: QIDO-RS lists the study's series,
WADO-RS fetches only the candidate sagittal series, in the syntax they were stored in
(``transfer-syntax=*``: compressed pixel data stays compressed on the wire and is decoded by the
worker's own decoders).

A series is a candidate unless its QIDO attributes already rule it out the way
:func:`scp_node.series.candidates` would: another modality than MR, excluded by the description
rules, or an orientation too far from sagittal. The final choice is still
:func:`scp_node.series.select_and_load` on the fetched files, exactly as on an all-in-one node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydicom.dataset import Dataset

from scp_node.config import ClusterSettings, SeriesRules
from scp_node.series import deviation_from_sagittal_deg, why_not_t2

log = logging.getLogger(__name__)

ACCEPT_ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: QIDO-RS attributes the pre-selection reads (from one instance of each series).
INCLUDE_FIELDS = (
    "SeriesDescription",
    "ProtocolName",
    "SequenceName",
    "EchoTime",
    "ImageOrientationPatient",
)


class FetchError(Exception):
    """The ingest node could not be reached or answered with a server error (retried)."""


class StudyGone(Exception):
    """The ingest node answered, but does not have (or refuses) the study: not retried."""


@dataclass(frozen=True)
class Fetched:
    """What one fetch brought: the files, the series fetched and those left on the node."""

    paths: list[Path]
    fetched_series: list[str]
    skipped_series: list[str]
    bytes: int


def client_for(cluster: ClusterSettings, fallback_token: str = "") -> httpx.Client:
    """An HTTP client with the bearer token and the CA bundle of ``[cluster]``."""
    token = cluster.dicomweb_token.get_secret_value() if cluster.dicomweb_token else fallback_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify: Any = str(cluster.dicomweb_ca_file) if cluster.dicomweb_ca_file else True
    return httpx.Client(headers=headers, timeout=cluster.fetch_timeout_s, verify=verify)


def _get(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    try:
        reply = client.get(url, **kwargs)
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc
    if reply.status_code >= 500 or reply.status_code == 429:
        raise FetchError(f"HTTP {reply.status_code} from {url}")
    if reply.status_code in (401, 403):
        raise StudyGone(f"HTTP {reply.status_code}: the ingest node refused the worker's token")
    return reply


def is_candidate(series: Dataset, rules: SeriesRules) -> bool:
    """False when the series' QIDO attributes already rule it out as the sagittal T2 series."""
    if str(series.get("Modality", "MR") or "MR") != "MR":
        return False
    if why_not_t2(series, rules):
        return False
    orientation = series.get("ImageOrientationPatient")
    if orientation is not None and len(orientation) == 6:
        try:
            if deviation_from_sagittal_deg([float(v) for v in orientation]) > (
                rules.max_normal_deviation_deg
            ):
                return False
        except (ValueError, TypeError):
            return True  # let the real selection say why
    return True


def list_series(client: httpx.Client, base: str, study_uid: str) -> list[Dataset]:
    """QIDO-RS ``/studies/{uid}/series`` with the pre-selection attributes."""
    params = [("includefield", name) for name in INCLUDE_FIELDS]
    reply = _get(client, f"{base}/studies/{study_uid}/series", params=params)
    if reply.status_code == 204:
        return []
    if reply.status_code != 200:
        raise StudyGone(f"QIDO-RS answered HTTP {reply.status_code} for the study")
    return [Dataset.from_json(item) for item in reply.json()]


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            return value.strip().strip('"').encode("ascii")
    raise FetchError(f"multipart reply without a boundary: {content_type!r}")


def split_multipart(body: bytes, boundary: bytes) -> Iterator[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a ``multipart/related`` payload (RFC 2046 §5.1.1)."""
    delimiter = b"--" + boundary
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            return  # the close delimiter
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise FetchError("malformed multipart part (no header end)")
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        content_type = ""
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                content_type = value.strip()
        yield content_type, payload


def _syntax(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "transfer-syntax":
            return value.strip().strip('"')
    return ""


def fetch_series(
    client: httpx.Client, base: str, study_uid: str, series_uid: str, out_dir: Path
) -> tuple[list[Path], int, set[str]]:
    """WADO-RS one series into ``out_dir`` as stored on the ingest node: the files, the bytes
    received and the transfer syntaxes the parts were sent in."""
    url = f"{base}/studies/{study_uid}/series/{series_uid}"
    reply = _get(client, url, headers={"Accept": ACCEPT_ANY_SYNTAX})
    if reply.status_code != 200:
        raise StudyGone(f"WADO-RS answered HTTP {reply.status_code} for a series")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    syntaxes: set[str] = set()
    parts = split_multipart(reply.content, _boundary(reply.headers.get("content-type", "")))
    for number, (content_type, part) in enumerate(parts):
        path = out_dir / f"{number:05d}.dcm"
        path.write_bytes(part)
        paths.append(path)
        syntaxes.add(_syntax(content_type))
    return paths, len(reply.content), syntaxes


def fetch_study(
    client: httpx.Client, base: str, study_uid: str, rules: SeriesRules, out_dir: Path
) -> Fetched:
    """List the study's series, fetch the candidates; raises :class:`FetchError` when the ingest
    node cannot be reached, :class:`StudyGone` when it refuses or lacks the study."""
    started = time.perf_counter()
    series = list_series(client, base.rstrip("/"), study_uid)
    paths: list[Path] = []
    fetched: list[str] = []
    skipped: list[str] = []
    total = 0
    syntaxes: set[str] = set()
    for number, item in enumerate(series):
        uid = str(item.get("SeriesInstanceUID", ""))
        if not uid or not is_candidate(item, rules):
            skipped.append(uid)
            continue
        got, size, sent_as = fetch_series(
            client, base.rstrip("/"), study_uid, uid, out_dir / f"s{number}"
        )
        paths += got
        total += size
        syntaxes |= sent_as
        fetched.append(uid)
    log.info(
        "fetched study %s: %d of %d series, %d instances, %.1f MB in %.2f s (as %s)",
        study_uid,
        len(fetched),
        len(series),
        len(paths),
        total / 1e6,
        time.perf_counter() - started,
        ", ".join(sorted(syntaxes)) or "-",
    )
    return Fetched(paths, fetched, skipped, total)
