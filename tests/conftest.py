"""Shared test fixtures: free ports, DCMTK tool paths, an in-process node on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scp_node.config import Settings, load_settings
from scp_node.model.weights import load as load_weights
from tests.ports import free_port

#: The shipped weights' threshold, for tests that run the model with fewer Monte-Carlo passes (for
#: speed): those make other scores than it was chosen with, so the engine refuses it unless it is
#: given as [model] lstv_threshold (docs/model.md, "The Monte-Carlo seed").
SHIPPED_THRESHOLD = float(load_weights().metadata["lstv_threshold"])

if TYPE_CHECKING:
    from scp_node.node import Node


def _is_python_script(path: Path) -> bool:
    """A console script of a Python environment (pynetdicom installs storescu, echoscu, ...)."""
    python_bins = {Path(sys.executable).parent, Path(sys.prefix) / "bin"}
    return path.parent in python_bins or ".pyenv" in path.parts


def dcmtk(tool: str) -> str:
    """Absolute path of a DCMTK program: pynetdicom's console scripts of the same names shadow
    DCMTK's on PATH inside a virtual environment (and behind pyenv shims), so never those."""
    for candidate in (f"/usr/bin/{tool}", shutil.which(tool)):
        if candidate and Path(candidate).exists() and not _is_python_script(Path(candidate)):
            return str(candidate)
    pytest.skip(f"DCMTK {tool} is not installed (apt-get install dcmtk)")
    raise AssertionError  # unreachable


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK/Orthanc processes: TCP_NODELAY=1 avoids a ~45 ms wait per message."""
    return {**os.environ, "TCP_NODELAY": "1"}


def storescu(
    port: int,
    files: list[Path],
    *options: str,
    calling: str = "PACS",
    called: str = "LSTV_NODE",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu to 127.0.0.1:``port`` with ``options`` (e.g. ``-xv``, ``+tls KEY CERT``)."""
    return subprocess.run(
        [dcmtk("storescu"), *options, "-aet", calling, "-aec", called, "127.0.0.1", str(port),
         *map(str, files)],
        capture_output=True, text=True, env=dcmtk_env(), timeout=timeout,
    )  # fmt: skip


def node_settings(tmp_path: Path, **sections: dict) -> Settings:
    """Settings for a test node: data under tmp_path, listeners on free loopback ports."""
    base: dict[str, dict] = {
        "dicom": {"bind_host": "127.0.0.1", "port": free_port()},
        "storage": {"data_dir": str(tmp_path / "node"), "min_free_mb": 1},
        "http": {"host": "127.0.0.1", "port": free_port(), "auth": "none"},
        "pipeline": {"enabled": False},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return load_settings(**base)


def dimse_destination(ae_title: str, port: int) -> dict[str, object]:
    """A ``[delivery.destinations.<name>]`` entry for a DICOM peer on this host."""
    return {"kind": "dimse", "ae_title": ae_title, "host": "127.0.0.1", "port": port}


@contextmanager
def run_node(settings: Settings) -> Iterator[Node]:
    """A node started in this process; stopped when the block ends."""
    from scp_node.node import Node

    node = Node(settings)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return node_settings(tmp_path)


@pytest.fixture
def running_node(settings: Settings) -> Iterator[Node]:
    """A node started in this process with the ``settings`` fixture; stopped afterwards."""
    with run_node(settings) as node:
        yield node
