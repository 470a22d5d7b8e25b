"""The DCMTK command lines in the docs are DCMTK's and work as written against the node."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import httpx

from scp_node.cli import main
from tests.conftest import dcmtk_env

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("config/*"))]
TOOLS = r"(?:storescu|storescp|echoscu|findscu|movescu|getscu)"


def test_dcmtk_command_lines_name_dcmtk_by_its_full_path():
    """A bare ``storescu -...`` is pynetdicom's inside the venv (it rejects ``+sd +r``)."""
    bare = re.compile(rf"(?<![/\w.-]){TOOLS} [-+]")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in DOCS
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]
    assert not found, "call DCMTK as /usr/bin/<tool>:\n" + "\n".join(found)


def test_checklist_phantom_send_works_as_written(running_node, settings, tmp_path, monkeypatch):
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    (line,) = [x.strip() for x in text.splitlines() if "/usr/bin/storescu" in x and "+sd" in x]
    monkeypatch.chdir(tmp_path)
    assert main(["phantom", "--variant", "sacralization", "--slices", "4", "--size", "64",
                 "phantom"]) == 0  # fmt: skip
    assert (tmp_path / "phantom" / "truth.json").exists()  # the file DCMTK must not send
    command = line.replace("<docker-host>", "127.0.0.1").replace(
        " 11112 ", f" {settings.dicom.port} "
    )
    proc = subprocess.run(
        shlex.split(command), capture_output=True, text=True, env=dcmtk_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert running_node.index.count() == 4


def test_readyz_body_is_what_the_docs_show(running_node, settings):
    body = httpx.get(f"http://127.0.0.1:{settings.http.port}/readyz", timeout=10)
    assert body.status_code == 200
    for doc in ("deployment.md", "operations.md", "dicomweb.md"):
        assert f"`{body.text}`" in (ROOT / "docs" / doc).read_text(encoding="utf-8"), doc
