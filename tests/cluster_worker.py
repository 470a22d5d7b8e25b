"""``scp-node worker`` as a separate process for the cluster tests and the cluster benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import SHIPPED_THRESHOLD
from tests.node_process import write_toml
from tests.processes import stop_process
from tests.rabbitmq import RabbitMQ

REPO = Path(__file__).resolve().parent.parent
TOKEN = "cluster-test-token"
#: Fewer MC-dropout passes and one CPU thread per worker: 2 cores on this machine; with fewer
#: passes the threshold must be given (these tests judge the plumbing, not the verdicts).
MODEL: dict[str, Any] = {"mc_samples": 2, "cpu_threads": 1, "lstv_threshold": SHIPPED_THRESHOLD}


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Worker:
    """``python -m scp_node worker`` as a process; stopped or killed by PID."""

    def __init__(
        self,
        root: Path,
        name: str,
        broker: RabbitMQ,
        queue: str,
        model: dict[str, Any] | None = None,
        **cluster: Any,
    ) -> None:
        self.name = name
        self.config = root / f"{name}.toml"
        self.log_path = root / f"{name}.log"
        write_toml(
            self.config,
            {
                "storage": {"data_dir": str(root / name)},
                "http": {"enabled": False},
                "model": model or MODEL,
                "cluster": {
                    "broker_url": broker.url,
                    "queue": queue,
                    "dicomweb_token": TOKEN,
                    "fetch_backoff_s": 0.2,
                    **cluster,
                },
            },
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("SCP_NODE_CONFIG", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scp_node", "worker", "--config", str(self.config),
                 "--name", self.name],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        return self

    def wait_ready(self) -> Worker:
        _wait(lambda: f"worker {self.name} ready" in self.log(), 90, f"{self.name} ready")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process, 10)
