"""A real RabbitMQ broker for tests, started by the test itself (Debian ``rabbitmq-server``).

Its own node name, AMQP port, distribution port, epmd and data directory under ``root``; every
listener on 127.0.0.1. The Debian package's own service is never used. ``stop()`` ends the
broker and its epmd by PID; ``start()`` again reuses the same data (durable queues survive)::

    broker = RabbitMQ(tmp_path).start()
    broker.url  # amqp://guest:guest@127.0.0.1:PORT//
    broker.stop()
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.processes import stop_process

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "/usr/bin/epmd"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RabbitMQ:
    """One RabbitMQ node (plus its own epmd) with everything under ``root``."""

    def __init__(self, root: Path) -> None:
        if not Path(RABBITMQ_SERVER).exists() or not Path(EPMD).exists():
            pytest.skip("RabbitMQ is not installed (apt-get install rabbitmq-server)")
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.root = Path(root) / f"rabbitmq-{self.port}"
        self.name = f"scptest{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "rabbitmq.log"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        return {
            **env,
            "HOME": str(self.root),  # the Erlang cookie lives here (written by the first start)
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_ENABLED_PLUGINS": "",
            # exec the VM directly (no wrapper shell): the PID we hold is the broker's
            "RUNNING_UNDER_SYSTEMD": "1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 60.0) -> RabbitMQ:
        """Start epmd and the broker; return once the AMQP port accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")
        env = self._env()
        with open(self.log_path, "ab") as log:
            # our own epmd in the foreground (not -daemon), so that it can be stopped by PID
            self.epmd = subprocess.Popen(
                [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 10
            while not _listening(self.epmd_port) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.process = subprocess.Popen(
                [RABBITMQ_SERVER],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"RabbitMQ exited: {self.log_path.read_text()[-3000:]}")
            if _listening(self.port) and b"Server startup complete" in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"RabbitMQ did not start within {timeout} s")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and its epmd, by PID."""
        for attr in ("process", "epmd"):
            stop_process(getattr(self, attr), timeout)
            setattr(self, attr, None)

    def __enter__(self) -> RabbitMQ:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
