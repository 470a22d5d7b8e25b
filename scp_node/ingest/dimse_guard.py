"""Acceptance-side guards of the DICOM listener against hostile or broken peers (PS3.8 §9.3).

pynetdicom reads each PDU in the association's own thread with a blocking ``recv`` and counts a
connection against ``maximum_associations`` from the moment it is accepted, so a socket that never
completes its A-ASSOCIATE-RQ holds a slot for as long as it stays silent. The guard moves the
first PDU out of pynetdicom's hands:

- the TLS handshake (PS3.15 B.9) and the whole A-ASSOCIATE-RQ (PS3.8 §9.3.2) must arrive within
  ``association_request_timeout_s`` and ``max_association_request_bytes``, in the connection's
  own thread, *before* pynetdicom creates its association (so a pending socket never counts
  against ``max_associations``); otherwise the connection is dropped and its address logged;
- at most ``max_pending_per_peer`` such pending sockets per peer address and
  ``max_pending_connections`` in all: a new connection evicts the oldest pending one, so a sender
  that sends its request at once always gets in;
- after the request, every PDU header is checked before its body is read: a P-DATA-TF longer than
  the maximum length the node announced (``maximum_pdu_size``), or any other PDU longer than the
  request limit, is answered with A-ABORT (source service-provider, reason "invalid PDU parameter
  value", PS3.8 §9.3.8) and the connection is closed, before its body is buffered.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import select
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynetdicom.association
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dsutils import create_file_meta
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from scp_node import audit
from scp_node.ingest.slots import ASSOCIATE_RJ_LIMIT, AssociationSlots
from scp_node.ingest.store_response import fast_store_responses
from scp_node.store.spool import temp_prefix

log = logging.getLogger(__name__)

PDU_ASSOCIATE_RQ = 0x01
PDU_P_DATA_TF = 0x04
#: A-ABORT PDU (PS3.8 §9.3.8): source 2 = service-provider, reason 6 = invalid PDU parameter value.
ABORT_INVALID_PARAMETER = struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 2, 6)
#: Longest wait of the DUL thread for data or an outgoing message (pynetdicom sleeps 1 ms).
WAIT_S = 0.001


@dataclass(frozen=True)
class GuardLimits:
    """Limits applied to every incoming connection (see the module docstring)."""

    request_timeout_s: float = 5.0
    max_request_bytes: int = 262144
    max_pending_per_peer: int = 8
    max_pending: int = 128
    #: largest P-DATA-TF PDU length accepted; 0 = no limit (only when the node announced none)
    max_pdata_bytes: int = 0
    #: largest data set of one DIMSE message (``storage.max_instance_mb``); 0 = no limit
    max_dataset_bytes: int = 0
    #: a C-STORE data set that grows past this many bytes in memory is moved to a file in
    #: ``spill_dir`` and received there (0 or no ``spill_dir``: never)
    spill_bytes: int = 0
    spill_dir: str = ""
    #: socket timeout once associated: a PDU half sent and then stalled is dropped after it
    network_timeout_s: float | None = 120.0


class Dropped(Exception):
    """The connection is closed without an association; the reason is logged."""


class PendingConnections:
    """Sockets that have not yet completed their A-ASSOCIATE-RQ, oldest first."""

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, tuple[socket.socket, str]] = OrderedDict()
        self.evicted = 0
        self.dropped = 0

    def add(self, sock: socket.socket, host: str) -> None:
        """Register ``sock``; evict the oldest pending socket of ``host`` (or of anyone, when the
        total is at its cap) so the new connection gets its chance."""
        victims: list[tuple[socket.socket, str]] = []
        with self._lock:
            same = [key for key, (_, h) in self._pending.items() if h == host]
            while len(same) >= self.limits.max_pending_per_peer:
                victims.append(self._pending.pop(same.pop(0)))
            while len(self._pending) >= self.limits.max_pending:
                victims.append(self._pending.popitem(last=False)[1])
            self._pending[id(sock)] = (sock, host)
            self.evicted += len(victims)
        for victim, victim_host in victims:
            log.warning(
                "DICOM connection from %s dropped: evicted by a newer connection "
                "(too many connections without an A-ASSOCIATE-RQ)",
                victim_host,
            )
            _shutdown(victim)

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            self._pending.pop(id(sock), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _recv_exactly(sock: socket.socket, count: int, deadline: float, what: str) -> bytes:
    """``count`` bytes from ``sock`` before ``deadline`` (time.monotonic), else :class:`Dropped`."""
    data = bytearray()
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Dropped(f"{what} incomplete after the time limit ({len(data)} of {count} bytes)")
        sock.settimeout(remaining)
        try:
            piece = sock.recv(min(count - len(data), 65536))
        except TimeoutError:
            continue
        except (OSError, ssl.SSLError) as exc:
            raise Dropped(f"{what} incomplete: {exc.__class__.__name__}") from None
        if not piece:
            raise Dropped(f"closed with {what} incomplete ({len(data)} of {count} bytes)")
        data += piece
    return bytes(data)


def read_association_request(sock: socket.socket, limits: GuardLimits) -> bytes:
    """The whole first PDU, which must be an A-ASSOCIATE-RQ within the limits (PS3.8 §9.3.2).

    Performs a pending TLS handshake first, under the same deadline."""
    deadline = time.monotonic() + limits.request_timeout_s
    if isinstance(sock, ssl.SSLSocket):
        sock.settimeout(limits.request_timeout_s)
        try:
            sock.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            audit.tls_handshake_failed(sock, exc)  # PS3.15 A.5.3.11 Security Alert
            raise Dropped(f"TLS handshake failed or timed out: {exc.__class__.__name__}") from None
    header = _recv_exactly(sock, 6, deadline, "A-ASSOCIATE-RQ header")
    pdu_type, _, length = struct.unpack(">BBL", header)
    if pdu_type != PDU_ASSOCIATE_RQ:
        _send_abort(sock)
        raise Dropped(f"first PDU is type 0x{pdu_type:02X}, not an A-ASSOCIATE-RQ")
    if length > limits.max_request_bytes:
        _send_abort(sock)
        raise Dropped(
            f"A-ASSOCIATE-RQ claims {length} bytes, limit {limits.max_request_bytes} (A-ABORT)"
        )
    return header + _recv_exactly(sock, length, deadline, "A-ASSOCIATE-RQ")


def _send_reject(sock: socket.socket) -> None:
    try:
        sock.settimeout(1.0)
        sock.sendall(ASSOCIATE_RJ_LIMIT)
    except OSError:
        pass


def _send_abort(sock: socket.socket) -> None:
    try:
        sock.settimeout(1.0)
        sock.sendall(ABORT_INVALID_PARAMETER)
    except OSError:
        pass


class GuardedSocket(AssociationSocket):
    """pynetdicom's socket wrapper with the prefetched A-ASSOCIATE-RQ served first and every
    later PDU header checked against the limits before the body is read."""

    _prefetched: bytearray
    _limits: GuardLimits
    _peer: str
    _expect_header: bool
    _pdu_type: int
    _dataset_bytes: int
    _wake_r: socket.socket
    _wake_w: socket.socket

    @classmethod
    def adopt(
        cls, plain: AssociationSocket, prefetched: bytes, limits: GuardLimits, peer: str
    ) -> GuardedSocket:
        """Turn pynetdicom's own socket object into a guarded one (keeps its queued events)."""
        plain.__class__ = cls
        guarded: GuardedSocket = plain  # type: ignore[assignment]
        guarded._prefetched = bytearray(prefetched)
        guarded._limits = limits
        guarded._peer = peer
        guarded._expect_header = True
        guarded._pdu_type = 0
        guarded._dataset_bytes = 0
        guarded._wake_r, guarded._wake_w = socket.socketpair()
        guarded._wake_r.setblocking(False)
        guarded._wake_w.setblocking(False)
        return guarded

    def wake_on_send(self, dul: Any) -> None:
        """Let pynetdicom's DUL thread wait for the peer's data *or* an outgoing message
        instead of sleeping between polls: its outgoing queue wakes :attr:`ready`, so a
        C-STORE response leaves as soon as it is queued and a PDU is read as soon as it arrives
        (pynetdicom polls every millisecond otherwise). Idle, it wakes as often as before."""
        dul.to_provider_queue = _WakingQueue(self._wake_w)
        dul._run_loop_delay = 0

    def close(self) -> None:
        super().close()
        self.close_wake()

    def close_wake(self) -> None:
        """Close the wake socket pair (idempotent). Also done when the association's thread
        ends: pynetdicom does not call :meth:`close` on every path an association ends by."""
        for end in (self._wake_r, self._wake_w):
            end.close()

    def _recv_exactly(self, nr_bytes: int) -> bytearray:
        """``nr_bytes`` from the socket (fewer only when the peer closed), read straight into one
        buffer in as few calls as the kernel allows (pynetdicom reads 4096 bytes per call)."""
        assert self.socket is not None
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        got = 0
        try:
            while got < nr_bytes:
                count = self.socket.recv_into(view[got:], nr_bytes - got)
                if not count:
                    return buffer[:got]
                got += count
        finally:
            view.release()
        return buffer

    def _refuse(self, message: str, *args: object) -> bytearray:
        """Log, send A-ABORT, close; pynetdicom then sees the transport closed (Evt17)."""
        log.warning("DICOM association with %s aborted: " + message, self._peer, *args)
        if self.socket is not None:
            _send_abort(self.socket)
            _shutdown(self.socket)
        return bytearray()

    @property
    def ready(self) -> bool:
        if self._prefetched:
            return True
        sock = self.socket
        if sock is not None and self._is_connected and self._wake_r.fileno() != -1:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return True
            try:
                readable, _, _ = select.select([sock, self._wake_r], [], [], WAIT_S)
            except (OSError, ValueError):
                readable = [sock]  # pynetdicom's own check below reports the closed transport
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if sock not in readable:
                return False
        return bool(AssociationSocket.ready.fget(self))  # type: ignore[attr-defined]

    def recv(self, nr_bytes: int) -> bytearray:
        if self._prefetched:
            out = self._prefetched[:nr_bytes]
            del self._prefetched[:nr_bytes]
            self._expect_header = not self._expect_header
            return out
        data = self._recv_exactly(nr_bytes)
        if self._expect_header and nr_bytes == 6 and len(data) == 6:
            pdu_type, _, length = struct.unpack(">BBL", bytes(data))
            limit = (
                self._limits.max_pdata_bytes
                if pdu_type == PDU_P_DATA_TF
                else self._limits.max_request_bytes
            )
            if limit and length > limit:
                return self._refuse(
                    "PDU type 0x%02X of %d bytes exceeds the %d bytes announced/allowed",
                    pdu_type,
                    length,
                    limit,
                )
            self._pdu_type = pdu_type
            self._expect_header = False
        elif not self._expect_header:
            self._expect_header = True
            if self._pdu_type == PDU_P_DATA_TF:
                problem = self._check_pdata(data)
                if problem is not None:
                    return self._refuse(*problem)
                if self._limits.spill_bytes and self._limits.spill_dir:
                    self._spill_if_large(len(data))
        return data

    def _check_pdata(self, body: bytearray) -> tuple[Any, ...] | None:
        """Why a P-DATA-TF body is refused (a log message and its arguments), or None: a PDV on
        a presentation context that was not accepted (PS3.8 §9.3.5, §7.6), or a data set past
        ``max_dataset_bytes``."""
        accepted = getattr(self.assoc, "_accepted_cx", None)
        pos, end = 0, len(body)
        while pos + 6 <= end:
            (length,) = struct.unpack_from(">L", body, pos)
            context_id, control = body[pos + 4], body[pos + 5]
            if accepted is not None and context_id not in accepted:
                return ("PDV on presentation context %d, which was not accepted", context_id)
            if not control & 1:  # a data set fragment
                self._dataset_bytes += max(int(length) - 2, 0)
                if self._limits.max_dataset_bytes and (
                    self._dataset_bytes > self._limits.max_dataset_bytes
                ):
                    return (
                        "data set larger than the maximum instance size of %d bytes",
                        self._limits.max_dataset_bytes,
                    )
                if control & 2:  # its last fragment: the next message starts from zero
                    self._dataset_bytes = 0
            pos += 4 + int(length)
        return None

    def _spill_if_large(self, incoming: int) -> None:
        """Move a C-STORE data set that outgrows ``spill_bytes`` from pynetdicom's in-memory
        buffer to a file, where pynetdicom then writes its remaining fragments (its own
        ``STORE_RECV_CHUNKED_DATASET`` mechanism, switched on per message): small instances
        stay in memory (fast), large ones never are. Runs in the DUL thread, which also
        decodes the fragments, so the message is not being written meanwhile."""
        message = getattr(getattr(self.assoc, "dimse", None), "message", None)
        if not isinstance(message, C_STORE_RQ) or message._data_set_file is not None:
            return
        buffer = message.data_set
        if not isinstance(buffer, io.BytesIO):
            return
        if buffer.tell() + incoming <= self._limits.spill_bytes:
            return
        command = message.command_set
        context = self.assoc._accepted_cx[int(message.context_id)]  # type: ignore[arg-type]
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - pynetdicom closes and deletes it
            delete=False, mode="wb", suffix=".dcm", prefix=temp_prefix(), dir=self._limits.spill_dir
        )
        handle.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(
            handle,  # type: ignore[arg-type]
            create_file_meta(
                sop_class_uid=UID(str(command.AffectedSOPClassUID)),
                sop_instance_uid=UID(str(command.AffectedSOPInstanceUID)),
                transfer_syntax=UID(str(context.transfer_syntax[0])),
            ),
        )
        handle.write(buffer.getbuffer())
        handle.file.flush()
        message._data_set_file = handle  # type: ignore[assignment]
        message._data_set_path = Path(handle.name)
        message.data_set = io.BytesIO()


class _WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """pynetdicom's DUL outgoing queue that also wakes the DUL thread's wait."""

    def __init__(self, wake: socket.socket) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        with contextlib.suppress(OSError):  # full (already woken) or closed (association over)
            self._wake.send(b"\0")


class _WakingMessageQueue(queue.Queue):  # type: ignore[type-arg]
    """pynetdicom's queue of decoded DIMSE messages that also wakes the association's reactor."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake.set()


#: The wake event of the association whose reactor runs in this thread (if any).
_reactor = threading.local()
#: pynetdicom 3.0's acceptor reactor (``Association._run_reactor``) sleeps this long per loop.
REACTOR_POLL_S = 0.001


class _ReactorClock:
    """Stands in for the ``time`` module in ``pynetdicom.association``: the acceptor reactor's
    1 ms sleep between looks at its DIMSE queue becomes a wait of at most 1 ms on its
    association's wake event (set when a decoded message is queued), so a C-STORE is handled
    as soon as its last fragment is decoded, not up to 1 ms later. It still wakes at least every
    millisecond (releases and aborts are polled), never more often than a message arrives.
    Every other use of ``time`` there is the real module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        wake: threading.Event | None = getattr(_reactor, "wake", None)
        if wake is None or seconds != REACTOR_POLL_S:
            time.sleep(seconds)
            return
        wake.wait(seconds)
        wake.clear()  # a message queued after this is still seen: the loop looks next


pynetdicom.association.time = _ReactorClock()  # type: ignore[assignment]


def _wake_reactor(assoc: Any) -> None:
    """Wire ``assoc`` (not yet running) to :class:`_ReactorClock`."""
    wake = threading.Event()
    assoc.dimse.msg_queue = _WakingMessageQueue(wake)
    run = assoc.run

    def run_with_wake() -> None:
        _reactor.wake = wake
        try:
            run()
        finally:
            _reactor.wake = None

    assoc.run = run_with_wake


class GuardedRequestHandler(RequestHandler):
    """Reads the A-ASSOCIATE-RQ under the guard's limits before pynetdicom sees the connection."""

    server: GuardedServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        host = str(self.client_address[0])
        peer = f"{host}:{self.client_address[1]}"
        pending = self.server.pending
        pending.add(sock, host)
        try:
            first = read_association_request(sock, pending.limits)
        except Dropped as exc:
            pending.dropped += 1
            log.warning("DICOM connection from %s dropped: %s", peer, exc)
            _shutdown(sock)
            return
        finally:
            pending.remove(sock)
        sock.settimeout(pending.limits.network_timeout_s)
        self._first_pdu = first
        self._peer = peer
        self._slot: int | None = None
        slots = self.server.slots
        if slots is not None:
            self._slot = slots.acquire()
            if self._slot is None:
                log.warning(
                    "association from %s rejected: %d associations already active (all "
                    "receiving processes); local limit exceeded",
                    peer,
                    slots.size,
                )
                _send_reject(sock)
                _shutdown(sock)
                return
        try:
            super().handle()
        except BaseException:
            if slots is not None and self._slot is not None:
                slots.release(self._slot)
            raise

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        assert assoc.dul.socket is not None
        guarded = GuardedSocket.adopt(
            assoc.dul.socket, self._first_pdu, self.server.pending.limits, self._peer
        )
        guarded.wake_on_send(assoc.dul)
        fast_store_responses(assoc)  # Success C-STORE-RSPs encoded directly
        _wake_reactor(assoc)  # a decoded C-STORE is served at once, not after the next 1 ms nap
        slots, slot = self.server.slots, self._slot
        run = assoc.run

        def run_then_release() -> None:
            """The association's thread: its slot and its wake pair end with it."""
            try:
                run()
            finally:
                guarded.close_wake()
                if slots is not None and slot is not None:
                    slots.release(slot)

        assoc.run = run_then_release  # type: ignore[method-assign]
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with :class:`GuardedRequestHandler` and the TLS handshake
    moved from the accepting thread (where one silent peer would stall every accept) into the
    connection's own thread."""

    daemon_threads = True

    def __init__(
        self,
        *args: Any,
        limits: GuardLimits,
        slots: AssociationSlots | None = None,
        reuse_port: bool = False,
        **kwargs: Any,
    ) -> None:
        self.pending = PendingConnections(limits)
        self.slots = slots
        self.reuse_port = reuse_port
        kwargs["request_handler"] = GuardedRequestHandler
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        # several receiving processes listen on one port and the kernel spreads new connections
        # over them (SO_REUSEPORT, socket(7)); it must be set before bind
        if self.reuse_port:
            assert self.socket is not None
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        client.settimeout(self.pending.limits.request_timeout_s)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address
