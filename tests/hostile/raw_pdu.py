"""Hand-made upper-layer PDUs (PS3.8 §9.3) for hostile-peer tests."""

from __future__ import annotations

import socket
import struct


def associate_rq(calling: bytes, called: bytes = b"LSTV_NODE") -> bytes:
    """A minimal A-ASSOCIATE-RQ (PS3.8 §9.3.2) proposing Verification, with raw AE titles."""

    def item(kind: int, body: bytes) -> bytes:
        return struct.pack(">BBH", kind, 0, len(body)) + body

    context = item(
        0x20,
        bytes([1, 0, 0, 0]) + item(0x30, b"1.2.840.10008.1.1") + item(0x40, b"1.2.840.10008.1.2"),
    )
    user = item(0x50, item(0x51, struct.pack(">L", 16384)) + item(0x52, b"1.2.3.4"))
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16)[:16]
        + calling.ljust(16)[:16]
        + b"\0" * 32
        + item(0x10, b"1.2.840.10008.3.1.1.1")
        + context
        + user
    )
    return struct.pack(">BBL", 1, 0, len(body)) + body


def associate(sock: socket.socket, calling: bytes = b"PACS") -> bytes:
    """Send an A-ASSOCIATE-RQ on ``sock`` and return the answer's first bytes (0x02 = AC)."""
    sock.sendall(associate_rq(calling))
    return sock.recv(65536)


def vm_kib(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` figure of this process, KiB (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux: ``clear_refs`` 5); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
