"""TCP ports for the servers tests start on 127.0.0.1 (the node, Orthanc, RabbitMQ, ...).

A port from ``bind(0)`` comes out of the kernel's ephemeral range (``ip_local_port_range``,
32768-60999 by default), the range every outgoing connection draws its source port from: a
moment after it is handed out it can be the source port of some client connection, and the
server that binds it fails with EADDRINUSE (seen in CI). Ports here come from below that range,
where the kernel never picks source ports, and none is handed out twice in one test run.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

#: Where test servers listen: above the well-known and the common fixed service ports, below the
#: ephemeral range (bench/ uses 15000-15499 by default).
LOWEST, HIGHEST = 20000, 32000
_handed_out: set[int] = set()
_draw = random.Random()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that outgoing connections do not
    use (outside the ephemeral range); never the same twice in one run."""
    highest = min(HIGHEST, _ephemeral_low() - 1)
    for _ in range(1000):
        port = _draw.randint(LOWEST, highest)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free TCP port in {LOWEST}-{highest} on 127.0.0.1")


def _listening_ports() -> set[int]:
    """Ports in the LISTEN state (``0A``) in /proc/net/tcp and tcp6, without connecting."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(*ports: int, timeout: float = 15.0) -> None:
    """Wait until a server listens on every one of ``ports`` (a DCMTK storescp just started).

    Read from the kernel's socket tables rather than by connecting, so the server never sees a
    stray connection (a TLS storescp would log a failed handshake)."""
    deadline = time.monotonic() + timeout
    while not set(ports) <= _listening_ports():
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on 127.0.0.1:{ports} after {timeout} s")
        time.sleep(0.05)
