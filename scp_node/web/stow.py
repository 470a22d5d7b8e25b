"""STOW-RS Store Instances (PS3.18 §10.5): the request body streamed part by part into the spool.

Each part is written to a temp file in the spool's ``.tmp`` folder as its bytes arrive, then handed
to :meth:`Receiver.store_part10_file` in a worker thread (same checks and transfer-syntax policy as
C-STORE), then the temp file is deleted. Only one chunk plus one instance's data set is in memory.
Limits: ``max_bytes`` of body and ``max_parts`` parts; crossing either stops reading and raises
:class:`TooLarge` (HTTP 413). Parts stored before that stay stored (durable and indexed); the part
in flight is discarded.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from fastapi.concurrency import run_in_threadpool

from scp_node.ingest.receiver import (
    STATUS_CANNOT_PARSE,
    STATUS_PROCESSING_FAILURE,
    Origin,
    Receiver,
    Rejected,
)
from scp_node.observe import INSTANCES_REFUSED
from scp_node.store.index import InstanceRecord
from scp_node.web.dicom_json import FailedPart
from scp_node.web.multipart import (
    MultipartParser,
    PartBegin,
    PartData,
    PartEnd,
    parse_media_type,
)

log = logging.getLogger(__name__)

DICOM = "application/dicom"
#: Failed parts logged one by one per request; the rest only in the summary (issue 13 D10).
LOGGED_FAILURES = 10


@dataclass(frozen=True)
class StowLimits:
    max_bytes: int
    max_parts: int


@dataclass
class StowResult:
    """What a STOW-RS request stored and refused, in part order."""

    stored: list[InstanceRecord] = field(default_factory=list)
    failed: list[FailedPart] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        """200 all stored, 202 some failed, 409 none stored (PS3.18 §10.5.3, Table 10.5.3-1)."""
        if not self.failed:
            return 200
        return 202 if self.stored else 409

    @property
    def failure_summary(self) -> str:
        """Failed parts by FailureReason, e.g. ``0xC100 x 4998, 0xA700 x 2`` ('' if none)."""
        counts = Counter(f"0x{f.status:04X}" for f in self.failed)
        return ", ".join(f"{status} x {n}" for status, n in counts.most_common())

    @property
    def study_uids(self) -> set[str]:
        return {rec.study_uid for rec in self.stored}


class TooLarge(Exception):
    """The body crossed ``max_bytes`` or ``max_parts`` (HTTP 413); ``result`` holds what was
    stored before."""

    def __init__(self, reason: str, result: StowResult) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


class _Part:
    """The part being received: a temp file, or a discard sink for a non-DICOM media type."""

    def __init__(self, tmp_dir: Path, headers: dict[str, str]) -> None:
        media = parse_media_type(headers.get("content-type", DICOM))
        self.refusal = None if media.value == DICOM else f"part media type {media.value!r}"
        self.handle: BinaryIO | None = None
        self.path: Path | None = None
        if self.refusal is None:
            fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="stow-", suffix=".part")
            self.handle = os.fdopen(fd, "wb")
            self.path = Path(name)

    def write(self, data: bytes) -> None:
        if self.handle is not None:
            self.handle.write(data)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def discard(self) -> None:
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class StowSession:
    """One STOW-RS request: feed it the body stream, get a :class:`StowResult`."""

    def __init__(
        self,
        receiver: Receiver,
        origin: Origin,
        study_uid: str | None,
        limits: StowLimits,
        tmp_dir: Path,
    ) -> None:
        self.receiver = receiver
        self.origin = origin
        self.study_uid = study_uid
        self.limits = limits
        self.tmp_dir = tmp_dir
        self.result = StowResult()

    async def run(self, boundary: str, body: AsyncIterator[bytes]) -> StowResult:
        """Parse and store every part; raises MultipartError (400) or TooLarge (413)."""
        parser = MultipartParser(boundary)
        received = 0
        parts = 0
        part: _Part | None = None
        try:
            async for chunk in body:
                received += len(chunk)
                if received > self.limits.max_bytes:
                    raise TooLarge(f"body exceeds {self.limits.max_bytes} bytes", self.result)
                for event in parser.feed(chunk):
                    if isinstance(event, PartBegin):
                        parts += 1
                        if parts > self.limits.max_parts:
                            raise TooLarge(f"more than {self.limits.max_parts} parts", self.result)
                        part = _Part(self.tmp_dir, event.headers)
                    elif isinstance(event, PartData) and part is not None:
                        part.write(event.data)
                    elif isinstance(event, PartEnd) and part is not None:
                        part.close()
                        await self._store(part)
                        part.discard()
                        part = None
            parser.close()
        finally:
            if part is not None:
                part.discard()
        return self.result

    async def _store(self, part: _Part) -> None:
        if part.refusal is not None or part.path is None:
            self._refuse(FailedPart("", "", STATUS_CANNOT_PARSE, part.refusal or "empty part"))
            return
        outcome = await run_in_threadpool(self._store_file, part.path)
        if isinstance(outcome, FailedPart):
            self._refuse(outcome)
        else:
            self.result.stored.append(outcome)

    def _store_file(self, path: Path) -> InstanceRecord | FailedPart:
        """Blocking: the Receiver's checks, spool write and index insert for one part."""
        try:
            return self.receiver.store_part10_file(path, self.origin, self.study_uid)
        except Rejected as exc:
            return FailedPart(*_peek_uids(path), exc.status, exc.reason)
        except Exception as exc:  # one bad part must not fail the whole request
            log.exception("STOW-RS part failed unexpectedly: %s", exc)
            return FailedPart(*_peek_uids(path), STATUS_PROCESSING_FAILURE, type(exc).__name__)

    def _refuse(self, failure: FailedPart) -> None:
        """Count a failed part; the first :data:`LOGGED_FAILURES` of a request get a WARNING
        each, the rest only the request's summary line (``StowResult.failure_summary``)."""
        INSTANCES_REFUSED.labels(f"0x{failure.status:04X}", "stow").inc()
        self.result.failed.append(failure)
        if len(self.result.failed) <= LOGGED_FAILURES:
            log.warning(
                "STOW-RS part refused sop=%s from=%s status=0x%04X: %s",
                failure.sop_instance_uid or "?",
                self.origin.peer,
                failure.status,
                failure.reason,
            )
        elif len(self.result.failed) == LOGGED_FAILURES + 1:
            log.warning(
                "STOW-RS from %s: more than %d parts refused; the rest are counted in the "
                "request's summary line",
                self.origin.peer,
                LOGGED_FAILURES,
            )


def _peek_uids(path: Path) -> tuple[str, str]:
    """SOP Class and Instance UID of a refused part, for its FailedSOPSequence item ('' if none)."""
    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
        )
        meta = ds.file_meta
        sop_class = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID", "")
        sop_instance = ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID", "")
        return str(sop_class), str(sop_instance)
    except Exception:
        return "", ""


def on_complete_caller(
    callback: Callable[[set[str]], None] | None,
) -> Callable[[StowResult], None]:
    """Wrap ``on_stow_complete`` so a failing hook is logged, never turned into an HTTP error."""

    def call(result: StowResult) -> None:
        if callback is None or not result.study_uids:
            return
        try:
            callback(result.study_uids)
        except Exception:
            log.exception("on_stow_complete hook failed for studies %s", sorted(result.study_uids))

    return call
