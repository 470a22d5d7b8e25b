"""Syslog transport of audit messages: RFC 5424 messages over TLS (RFC 5425), UDP (RFC 5426)
or plain TCP with octet counting (RFC 6587 3.4.1), as IHE ATNA and PS3.15 A.5 ask.

A sender is a small object with ``send(payloads)`` and ``close()``; ``send`` raises ``OSError``
(or ``ssl.SSLError``) when the receiver did not take the messages, and the caller retries.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

#: PRI = facility 10 (security/authorization, authpriv) * 8 + severity 5 (notice) (RFC 5424 6.2.1)
AUDIT_PRI = 10 * 8 + 5
#: MSGID of audit messages in the DICOM/IHE ATNA audit format (PS3.15 A.5; IHE ITI TF-2 3.20.4)
AUDIT_MSGID = "IHE+RFC-3881"
#: RFC 5424 6.4: a MSG in UTF-8 starts with the byte order mark
BOM = b"\xef\xbb\xbf"
#: Largest datagram payload sent over UDP (RFC 5426 3.2 asks receivers for 2048 at least; IPv4
#: carries 65507); a longer message fails rather than being cut.
MAX_UDP = 65507


def _field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, ``-`` when empty."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or "-"


def rfc5424(
    xml: str,
    app_name: str,
    hostname: str | None = None,
    procid: str | None = None,
    when: datetime | None = None,
) -> bytes:
    """One RFC 5424 syslog message carrying ``xml`` as its MSG (BOM + UTF-8), no structured data."""
    stamp = (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    header = " ".join(
        [
            f"<{AUDIT_PRI}>1",
            stamp.replace("+00:00", "Z"),
            _field(hostname or socket.gethostname(), 255),
            _field(app_name, 48),
            _field(procid or str(os.getpid()), 128),
            AUDIT_MSGID,
            "-",
        ]
    )
    return header.encode("ascii") + b" " + BOM + xml.encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    """``MSG-LEN SP SYSLOG-MSG`` framing (RFC 5425 4.3, RFC 6587 3.4.1)."""
    return str(len(message)).encode("ascii") + b" " + message


class Sender(Protocol):
    def send(self, payloads: list[bytes]) -> None: ...

    def close(self) -> None: ...


class StreamSender:
    """RFC 5425 (``context`` given: TLS) or RFC 6587 (plain) over one kept-open TCP connection."""

    def __init__(
        self, host: str, port: int, context: ssl.SSLContext | None, timeout: float = 10.0
    ) -> None:
        self.host, self.port, self.context, self.timeout = host, port, context, timeout
        self.settle_s = 0.2
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.context is None:
            return raw
        try:
            return self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise

    def send(self, payloads: list[bytes]) -> None:
        """Send ``payloads``; raise when the receiver closed or refused the connection.

        Syslog has no acknowledgements (RFC 5425 4.4): a receiver that refuses our certificate
        after a TLS 1.3 handshake, or closed an idle connection, shows only as data (an alert)
        or end-of-file to read. So the connection is checked before sending and again
        :attr:`settle_s` after, and the batch counts as sent only when it is still open."""
        if self._sock is not None and _closed_by_peer(self._sock, 0.0):
            self.close()
        if self._sock is None:
            self._sock = self._connect()
        try:
            self._sock.sendall(b"".join(octet_counted(p) for p in payloads))
            if _closed_by_peer(self._sock, self.settle_s):
                raise ConnectionResetError("the syslog receiver closed the connection")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is None:
            return
        sock, self._sock = self._sock, None
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(1.0)
                sock.unwrap()  # close_notify (RFC 5425 4.4)
        except (OSError, ValueError):
            pass
        finally:
            sock.close()


def _closed_by_peer(sock: socket.socket, wait: float) -> bool:
    """Whether the receiver has closed ``sock`` or sent a TLS alert (within ``wait`` seconds).
    A syslog receiver never sends data, so anything readable means the end."""
    try:
        ready, _, _ = select.select([sock], [], [], wait)
        if not ready:
            return False
        sock.settimeout(0.5)
        return sock.recv(1) == b""
    except (OSError, ValueError):
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(None)


class UdpSender:
    """RFC 5426: one syslog message per datagram (no delivery guarantee: sent = delivered)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)

    def send(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            if len(payload) > MAX_UDP:
                raise OSError(f"audit message of {len(payload)} bytes is too long for UDP")
            self._sock.sendto(payload, self.address)

    def close(self) -> None:
        self._sock.close()


def client_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext:
    """TLS 1.2+ client context: the receiver is verified (``ca_file`` or the system CAs, host
    name included); a client certificate is presented when configured (mutual TLS, IHE ATNA)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        context.load_verify_locations(str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context
