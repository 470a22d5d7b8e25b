"""The DICOM listener: pynetdicom AE with C-ECHO and C-STORE SCP (PS3.4 Annex A and B).

Presentation contexts come from :mod:`scp_node.codecs`: every storage SOP class with the
uncompressed syntaxes plus only the compressed syntaxes this install proved it decodes. pynetdicom
picks, for each proposed context, the first syntax of *our* list that the sender proposed, so the
order of the list is the negotiation policy (``dicom.syntax_policy``).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    Verification,
)

from scp_node.codecs import UNCOMPRESSED, Capabilities
from scp_node.config import DicomSettings
from scp_node.identity import node_ae
from scp_node.ingest.dimse_guard import GuardedServer, GuardLimits
from scp_node.ingest.receiver import Origin, Receiver, Rejected
from scp_node.ingest.slots import AssociationSlots
from scp_node.ingest.store_response import quiet_standard_handlers
from scp_node.observe import INSTANCES_REFUSED

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_UNEXPECTED = 0xC000


def transfer_syntax_order(caps: Capabilities, policy: str) -> list[UID]:
    """Our accepted syntaxes in preference order: ``compressed`` keeps the sender's compressed
    image syntax when it proposes one; ``uncompressed`` takes Explicit/Implicit VR LE when offered.

    Deflated Explicit VR LE (PS3.5 A.5) is last under both: it is not image compression, and a
    sender that merely lists it (pynetdicom's defaults do) must not get uncompressed data stored
    deflated when it also offers a plain syntax."""
    deflated = [uid for uid in caps.decodable if uid == DeflatedExplicitVRLittleEndian]
    compressed = [uid for uid in caps.decodable if uid != DeflatedExplicitVRLittleEndian]
    uncompressed = list(UNCOMPRESSED)
    if policy == "compressed":
        return compressed + uncompressed + deflated
    return uncompressed + compressed + deflated


def status_dataset(status: int, comment: str) -> Dataset:
    """A C-STORE response status with an Error Comment (0000,0902), at most 64 characters."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


def server_ssl_context(settings: DicomSettings) -> ssl.SSLContext | None:
    """DICOM TLS (PS3.15 Annex B.9); client certificates are required when a CA file is set."""
    tls = settings.tls
    if not tls.enabled:
        return None
    if tls.cert_file is None or tls.key_file is None:
        raise ValueError("dicom.tls.enabled needs dicom.tls.cert_file and dicom.tls.key_file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(tls.ca_file))
    return context


def guard_limits(settings: DicomSettings) -> GuardLimits:
    """The acceptance guard's limits from the ``[dicom]`` settings (see :mod:`dimse_guard`)."""
    return GuardLimits(
        request_timeout_s=settings.association_request_timeout_s,
        max_request_bytes=settings.max_association_request_bytes,
        max_pending_per_peer=settings.max_pending_per_peer,
        max_pending=settings.max_pending_connections,
        max_pdata_bytes=settings.maximum_pdu_size,
        network_timeout_s=settings.network_timeout_s,
    )


#: A C-STORE data set larger than this is received into a file in the spool's ``.tmp``
#: (``dimse-*.dcm``) instead of memory (:meth:`GuardedSocket._spill_if_large`): small instances
#: stay as fast as before, and memory does not grow with what a peer sends.
SPILL_BYTES = 4 * 2**20


def _discard_partial_receive(assoc: Any) -> None:
    """Delete the file of a C-STORE data set still being received when ``assoc`` ended."""
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    handle = getattr(message, "_data_set_file", None)
    if handle is None:
        return
    try:
        handle.close()
        Path(handle.name).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not delete a partial C-STORE file: %s", exc)


def received_dataset(request: Any) -> tuple[Path, int] | None:
    """Where pynetdicom wrote a received C-STORE data set: its file and the data set's offset
    after pynetdicom's own File Meta Information (None when it was received in memory)."""
    path = getattr(request, "_dataset_path", None)
    if not isinstance(path, Path):
        return None
    with open(path, "rb") as handle:
        head = handle.read(144)
        # preamble, "DICM", then (0002,0000) UL 4 <group length> (PS3.10 §7.1): skip the group
        if head[128:140] == b"DICM\x02\x00\x00\x00UL\x04\x00":
            return path, 144 + int.from_bytes(head[140:144], "little")
        handle.seek(0)
        read_preamble(handle, force=True)
        _read_file_meta_info(handle)
        return path, handle.tell()


class DimseServer:
    """Owns the pynetdicom AE and its listening socket."""

    def __init__(
        self,
        settings: DicomSettings,
        receiver: Receiver,
        caps: Capabilities,
        admit: Callable[[], str | None] | None = None,
        extra_handlers: list[tuple[Any, Callable[..., Any]]] | None = None,
        slots: AssociationSlots | None = None,
    ) -> None:
        quiet_standard_handlers()  # before the AE and its server bind pynetdicom's defaults
        self.settings = settings
        self.receiver = receiver
        self.admit = admit
        #: ``max_associations`` across every receiving process (:mod:`scp_node.ingest.slots`)
        self.slots = slots
        self.ae = self._build_ae(caps)
        self._handlers: list[tuple[Any, Callable[..., Any]]] = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_CONN_CLOSE, lambda event: _discard_partial_receive(event.assoc)),
            *(extra_handlers or []),
        ]
        self._server: Any = None
        self._admission: dict[int, str | None] = {}
        self._lock = threading.Lock()

    def _build_ae(self, caps: Capabilities) -> AE:
        s = self.settings
        ae = node_ae(ae_title=s.ae_title)
        ae.maximum_pdu_size = s.maximum_pdu_size
        ae.maximum_associations = s.max_associations
        ae.acse_timeout = s.acse_timeout_s
        ae.dimse_timeout = s.dimse_timeout_s
        ae.network_timeout = s.network_timeout_s
        ae.require_called_aet = s.check_called_ae
        ae.require_calling_aet = list(s.allowed_calling_aes)
        syntaxes = transfer_syntax_order(caps, s.syntax_policy)
        ae.add_supported_context(Verification)
        ae.add_supported_context(StorageCommitmentPushModel)
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        log.info(
            "DICOM AE %s: %d storage SOP classes x %d transfer syntaxes (policy %s): %s",
            s.ae_title,
            len(AllStoragePresentationContexts),
            len(syntaxes),
            s.syntax_policy,
            ", ".join(str(u) for u in syntaxes),
        )
        return ae

    @property
    def is_running(self) -> bool:
        """Whether the listening socket is open."""
        return self._server is not None and self._server.socket.fileno() != -1

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server else self.settings.port

    def start(self) -> None:
        s = self.settings
        limits = replace(
            guard_limits(s),
            max_dataset_bytes=self.receiver.max_inflated,
            spill_bytes=SPILL_BYTES,
            spill_dir=str(self.receiver.spool.tmp_dir),
        )
        self._server = self.ae.make_server(
            (s.bind_host, s.port),
            evt_handlers=self._handlers,  # type: ignore[arg-type]
            ssl_context=server_ssl_context(s),
            server_class=GuardedServer,
            limits=limits,
            slots=self.slots,
            reuse_port=s.processes > 1,
        )
        threading.Thread(
            target=self._server.serve_forever, name="DicomListener", daemon=True
        ).start()
        self.ae._servers.append(self._server)  # so that AE.shutdown() stops it too
        log.info(
            "DICOM listener %s on %s:%d%s",
            s.ae_title,
            s.bind_host,
            self.port,
            " (TLS)" if s.tls.enabled else "",
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()

    # --- event handlers: each returns a status and never raises into the association ---

    @staticmethod
    def _peer(event: Any) -> str:
        requestor = event.assoc.requestor
        return f"{requestor.address}:{requestor.port}"

    def _on_echo(self, event: Any) -> int:
        log.info("C-ECHO from %s (%s)", event.assoc.requestor.ae_title, self._peer(event))
        return STATUS_SUCCESS

    def _on_store(self, event: Any) -> int | Dataset:
        request = event.request
        origin = Origin(
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
            called_ae=str(event.assoc.acceptor.ae_title).strip(),
            peer=self._peer(event),
            source="dimse",
        )
        try:
            if busy := self._admission.get(id(event.assoc)):
                raise Rejected(0xA700, busy)
            on_disk = received_dataset(request)
            if on_disk is not None:
                self.receiver.store_encoded_file(
                    on_disk[0],
                    on_disk[1],
                    UID(event.context.transfer_syntax),
                    origin,
                    command_sop_class=str(request.AffectedSOPClassUID),
                    command_sop_instance=str(request.AffectedSOPInstanceUID),
                )
            else:
                self.receiver.store_dataset(
                    request.DataSet.getvalue(),
                    UID(event.context.transfer_syntax),
                    origin,
                    command_sop_class=str(request.AffectedSOPClassUID),
                    command_sop_instance=str(request.AffectedSOPInstanceUID),
                )
        except Rejected as exc:
            INSTANCES_REFUSED.labels(status=f"0x{exc.status:04X}", source="dimse").inc()
            log.warning(
                "C-STORE refused sop=%s from=%s status=0x%04X: %s",
                request.AffectedSOPInstanceUID,
                origin.calling_ae,
                exc.status,
                exc.reason,
            )
            return status_dataset(exc.status, exc.reason)
        except Exception as exc:  # never raise into the association
            log.exception("C-STORE failed sop=%s: %s", request.AffectedSOPInstanceUID, exc)
            return status_dataset(STATUS_UNEXPECTED, f"internal error: {type(exc).__name__}")
        return STATUS_SUCCESS

    def _on_accepted(self, event: Any) -> None:
        # Back-pressure is decided per association: one that started while the analysis queue
        # was full gets 0xA700 for its C-STOREs; one already running finishes its study.
        if self.admit is not None:
            self._admission[id(event.assoc)] = self.admit()
        log.info(
            "association accepted from %s (%s) to %s in process %d",
            event.assoc.requestor.ae_title,
            self._peer(event),
            event.assoc.acceptor.ae_title,
            os.getpid(),
        )

    def _on_rejected(self, event: Any) -> None:
        primitive = event.assoc.acceptor.primitive
        reason = getattr(primitive, "reason_str", None) or getattr(primitive, "result_reason", "?")
        asked = getattr(event.assoc.requestor.primitive, "called_ae_title", None)
        log.warning(
            "association rejected from %s calling=%s called=%s: %s",
            self._peer(event),
            event.assoc.requestor.ae_title,
            str(asked).strip() if asked is not None else event.assoc.acceptor.ae_title,
            reason,
        )

    def _on_released(self, event: Any) -> None:
        self._admission.pop(id(event.assoc), None)
        log.info(
            "association released by %s (%s)", event.assoc.requestor.ae_title, self._peer(event)
        )

    def _on_aborted(self, event: Any) -> None:
        self._admission.pop(id(event.assoc), None)
        _discard_partial_receive(event.assoc)
        log.warning(
            "association aborted with %s (%s)", event.assoc.requestor.ae_title, self._peer(event)
        )
