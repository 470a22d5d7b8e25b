"""Stopping a process a test started, by its PID: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(process: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    """Ask ``process`` to stop (SIGTERM); after ``grace_s`` seconds kill it (SIGKILL). Reaps it
    either way; a process that already ended (or ``None``) is left as it is."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(5)
