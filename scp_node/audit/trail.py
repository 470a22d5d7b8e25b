"""The audit trail service: messages go into the durable queue at once and a background thread
sends them to the configured destination, retrying with exponential backoff.

Nothing here ever blocks on the network or raises into DICOM or HTTP traffic: :meth:`emit`
writes one SQLite row; the sender thread does the rest (PS3.15 A.5, transport per RFC 5424/5425/
5426 or the local JSON-lines file).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from scp_node.audit import events
from scp_node.audit.collect import TransferCollector
from scp_node.audit.message import AuditMessage
from scp_node.audit.queue import AuditQueue, Queued
from scp_node.audit.syslog import Sender, StreamSender, UdpSender, client_context, rfc5424
from scp_node.config import AuditSettings, Settings

log = logging.getLogger(__name__)

BATCH = 100


def default_paths(settings: Settings) -> tuple[Path, Path]:
    """(JSON-lines file, queue file) of ``[audit]``, defaults under ``<data_dir>/audit/``."""
    audit, base = settings.audit, settings.storage.data_dir / "audit"
    return audit.file_path or base / "audit.jsonl", audit.queue_path or base / "queue.sqlite3"


def local_identity(settings: Settings) -> events.Local:
    """The node as its audit messages name it."""
    host = socket.gethostname()
    ae = settings.dicom.ae_title
    return events.Local(
        ae_title=ae,
        source_id=settings.audit.source_id or f"{ae}@{host}",
        site_id=settings.audit.enterprise_site_id,
        app_name=settings.audit.app_name,
        host=host,
    )


class FileSink:
    """The local append-only JSON-lines audit file: one object per message, fsynced per batch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def send(self, payloads: list[bytes]) -> None:
        # created readable by the node's user only: the messages carry patient IDs
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as handle:
            handle.write(b"".join(payloads))
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        return None


def json_line(item: Queued) -> bytes:
    record = {"id": item.id, "queued_at": item.created_at, "event": item.event, "xml": item.xml}
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def make_sender(audit: AuditSettings, file_path: Path) -> Sender:
    """The sender for ``audit.destination``."""
    if audit.destination == "file":
        return FileSink(file_path)
    if audit.destination == "syslog-udp":
        return UdpSender(audit.host, audit.port)
    context = None
    if audit.destination == "syslog-tls":
        context = client_context(audit.tls_ca_file, audit.tls_cert_file, audit.tls_key_file)
    return StreamSender(audit.host, audit.port, context)


class AuditTrail:
    """Queue + sender thread (``start()`` / ``stop()``) and the collector of received studies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.audit = settings.audit
        self.file_path, queue_path = default_paths(settings)
        self.local = local_identity(settings)
        self.queue = AuditQueue(queue_path)
        self.collector = TransferCollector(self.queue, self.local)
        # made by the sender thread: a wrong certificate path is logged and retried while the
        # messages wait in the queue, it does not stop the node
        self.sender: Sender | None = None
        self.copy: FileSink | None = None
        if self.audit.local_copy and self.audit.destination != "file":
            self.copy = FileSink(self.file_path)
        self._copied_upto = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    # --- producing ---
    def emit(self, event: str, message: AuditMessage) -> None:
        """Queue ``message`` durably and wake the sender; never raises."""
        try:
            self.queue.put(event, message.to_xml())
        except Exception:
            log.exception("audit message %s could not be queued", event)
            return
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # --- sending ---
    def start(self) -> None:
        log.info(
            "audit trail: %s (%s), %d messages queued",
            self.audit.destination,
            self._where(),
            self.queue.pending(),
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after one last attempt to send what is queued (the rest stays queued
        for the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.sender is not None:
            self.sender.close()
        self.queue.close()

    def _run(self) -> None:
        delay = 0.0
        while True:
            if delay:
                self._wake.wait(delay)
            else:
                self._wake.wait(1.0)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                while self.send_pending():
                    pass
                delay, self.failures = 0.0, 0
            except Exception as exc:  # the receiver is down or refused us: back off and retry
                self.failures += 1
                delay = min(
                    self.audit.retry_max_s, self.audit.retry_initial_s * 2 ** (self.failures - 1)
                )
                log.warning(
                    "audit: %s to %s failed (%s: %s); %s queued, retry in %.1f s",
                    self.audit.destination,
                    self._where(),
                    type(exc).__name__,
                    exc,
                    self._pending(),
                    delay,
                )
            if stopping:
                return

    def _pending(self) -> str:
        try:
            return str(self.queue.pending())
        except Exception:  # the queue was closed under a slow last attempt at stop
            return "?"

    def _where(self) -> str:
        if self.audit.destination == "file":
            return str(self.file_path)
        return f"{self.audit.host}:{self.audit.port}"

    def send_pending(self) -> int:
        """Send one batch of queued messages; returns how many (0 when the queue is empty)."""
        batch = self.queue.oldest(BATCH)
        if not batch:
            return 0
        if self.copy is not None:
            fresh = [q for q in batch if q.id > self._copied_upto]
            if fresh:
                self.copy.send([json_line(q) for q in fresh])
                self._copied_upto = fresh[-1].id
        if self.sender is None:
            self.sender = make_sender(self.audit, self.file_path)
        if isinstance(self.sender, FileSink):
            payloads = [json_line(q) for q in batch]
        else:
            payloads = [rfc5424(q.xml, self.audit.app_name) for q in batch]
        try:
            self.sender.send(payloads)
        except Exception:
            self.queue.failed([q.id for q in batch])
            raise
        self.queue.done([q.id for q in batch])
        return len(batch)

    def status(self) -> dict[str, Any]:
        return {"destination": self.audit.destination, "queued": self.queue.pending()}
