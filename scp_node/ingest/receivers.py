"""The ``serve`` process's side of ``dicom.processes`` > 1: start, watch and stop the extra
receiving processes (:mod:`scp_node.ingest.receiver_process`).

The ``serve`` process is receiver number 1 (its own listener, and the only pipeline and outbox
owner); this class adds ``processes - 1`` more. A receiving process that dies (kill -9, a crash)
is started again after its temp files are removed: what it acknowledged is already in the spool
and the index (fsynced and committed before Success), what it had not acknowledged the sender
sends again. Its association slots and per-UID locks are dropped by the kernel when it dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

import scp_node
from scp_node.config import Settings
from scp_node.ingest.receiver_process import READY
from scp_node.store.spool import Spool

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0


def settings_payload(settings: Settings) -> bytes:
    """The settings as JSON for a receiving process, every secret left out (it receives and
    indexes only: no token, password or broker URL is any use to it)."""

    def scrub(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return None
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [scrub(item) for item in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return json.dumps(scrub(settings.model_dump())).encode()


def child_environment() -> dict[str, str]:
    """This environment, with the directory this ``scp_node`` was imported from first on the
    module path: a receiving process runs the very code of its ``serve`` process."""
    here = str(Path(scp_node.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}


class ReceiverProcesses:
    """``count`` receiving processes, kept running until :meth:`stop`."""

    def __init__(self, settings: Settings, count: int, spool: Spool) -> None:
        self.settings = settings
        self.count = count
        self.spool = spool
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._payload = settings_payload(settings)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p is not None and p.poll() is None]

    def start(self) -> None:
        """Start them all (from a thread that lives as long as they do: the kernel tells a
        child when the thread that started it ends) and wait until each one listens."""
        if self.count <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="receivers", daemon=True)
        self._thread.start()
        self._started.wait(READY_TIMEOUT_S * self.count)

    def _spawn(self, slot: int) -> None:
        """Start receiving process ``slot`` (not waiting: see :meth:`_await_ready`)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "scp_node.ingest.receiver_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_environment(),
        )
        assert process.stdin is not None
        process.stdin.write(self._payload)
        process.stdin.close()
        self.processes[slot] = process

    def _await_ready(self, slot: int) -> None:
        process = self.processes[slot]
        if process is None or process.stdout is None:
            return
        ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT_S)
        line = process.stdout.readline().decode().strip() if ready else ""
        if line != READY:
            log.error("receiving process %d did not start (%r)", process.pid, line)
            return
        log.info(
            "receiving process %d of %d started (pid %d)", slot + 2, self.count + 1, process.pid
        )

    def _run(self) -> None:
        for slot in range(self.count):  # all at once: each one's start-up is mostly imports
            self._spawn(slot)
        for slot in range(self.count):
            self._await_ready(slot)
        self._started.set()
        while not self._stop.wait(0.2):
            for slot, process in enumerate(self.processes):
                if process is None or process.poll() is None:
                    continue
                log.warning(
                    "receiving process %d ended (exit status %s); starting it again",
                    process.pid,
                    process.returncode,
                )
                removed = self.spool.remove_stale_temp_files(process.pid)
                if removed:
                    log.warning("removed %d temp files of process %d", removed, process.pid)
                if process.stdout is not None:
                    process.stdout.close()
                self.processes[slot] = None
                if self._stop.wait(RESTART_DELAY_S):
                    return
                self._spawn(slot)
                self._await_ready(slot)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to each, then wait (SIGKILL after ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        running = [p for p in self.processes if p is not None]
        for process in running:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
            if process.stdout is not None:
                process.stdout.close()
        self.processes = [None] * self.count
