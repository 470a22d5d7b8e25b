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
