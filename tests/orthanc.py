"""A real Orthanc as the hospital PACS in tests (reusable: ``Orthanc`` and the ``orthanc`` fixture).

``Orthanc(tmp_path)`` writes a config (DICOM AET "ORTHANC", free DICOM and HTTP ports on this host,
storage in ``tmp_path``, DICOMweb at ``/dicom-web/``) and can be started later than the node:

    with Orthanc(tmp_path) as pacs:  # or: pacs = Orthanc(tmp_path); pacs.start(); ...; pacs.stop()
        pacs.find_instances(Modality="SR")
Orthanc 1.10 binds every interface (no listen-address key); tests only talk to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port
from tests.processes import stop_process

ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class Orthanc:
    """One Orthanc process with its own config and storage under ``root``."""

    def __init__(self, root: Path, aet: str = "ORTHANC", **extra_config: Any) -> None:
        if not Path(ORTHANC_BIN).exists():
            pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
        self.root = Path(root) / f"orthanc-{free_port()}"
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "orthanc.log"
        self.stop_grace_s = 0.5

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web/"

    def config(self) -> dict[str, Any]:
        plugins = [DICOMWEB_PLUGIN] if Path(DICOMWEB_PLUGIN).exists() else []
        return {
            "Name": "test-pacs",
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "Plugins": plugins,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,
            **self.extra_config,
        }

    def start(self, timeout: float = 20.0) -> Orthanc:
        """Start Orthanc and wait until its REST API answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        config_path = self.root / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        env = {**os.environ, "TCP_NODELAY": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [ORTHANC_BIN, str(config_path), "--no-jobs"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/system", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout} s")

    def stop(self) -> None:
        """Stop the process started by :meth:`start` (by its PID)."""
        if self.process is None:
            return
        # a clean stop can take seconds (thread pools); test storage is throwaway
        stop_process(self.process, self.stop_grace_s)
        self.process = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- REST helpers -------------------------------------------------------------------------
    def find_instances(self, **query: str) -> list[str]:
        """Orthanc ids of instances matching ``query`` (``POST /tools/find``)."""
        reply = httpx.post(
            f"{self.url}/tools/find", json={"Level": "Instance", "Query": query}, timeout=10
        )
        reply.raise_for_status()
        return list(reply.json())

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.url}/instances/{orthanc_id}/simplified-tags", timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    def instance_file(self, orthanc_id: str) -> bytes:
        reply = httpx.get(f"{self.url}/instances/{orthanc_id}/file", timeout=10)
        reply.raise_for_status()
        return reply.content

    def count_instances(self) -> int:
        return int(httpx.get(f"{self.url}/statistics", timeout=10).json()["CountInstances"])


def orthanc_available() -> bool:
    return Path(ORTHANC_BIN).exists() and shutil.which(ORTHANC_BIN) is not None


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A running Orthanc (stopped after the test)."""
    with Orthanc(tmp_path) as pacs:
        yield pacs
