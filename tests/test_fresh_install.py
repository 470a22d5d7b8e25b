"""A clean install runs every command: the project installed (not editable) into a fresh virtual
environment with its declared dependencies only (no test extra, no development interpreter's
packages) and the pinned torch from the same local wheel; then every ``scp-node`` sub-command
answers ``--help`` and the ones that need no server run for real on tiny inputs.

The development interpreter hides a missing dependency (issue 11: scipy); this venv does not."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from scp_node.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

#: the venv is built in the first test's setup (about 1.5 min here, more on a busy machine)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _torch_pin() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (pin,) = [d for d in project["dependencies"] if re.match(r"torch\s*==", d)]
    return pin.split("==", 1)[1].strip()


def _find_links() -> list[str]:
    """pip's find-links folders here: ``PIP_FIND_LINKS`` and any ``find-links`` in pip's config."""
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    ).stdout
    for value in re.findall(r"find-links='([^']*)'", listed):
        folders += value.split()
    return [f.removeprefix("file://") for f in folders if "://" not in f.removeprefix("file://")]


def _local_torch_wheel() -> Path | None:
    """The torch wheel pip takes for the pin here: ``SCP_NODE_TORCH_WHEEL``, else one in a
    find-links folder (these machines: the CPU build). None: pip would download GBs instead."""
    if os.environ.get("SCP_NODE_TORCH_WHEEL"):
        return Path(os.environ["SCP_NODE_TORCH_WHEEL"])
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in _find_links():
        found = sorted(Path(folder).glob(f"torch-{_torch_pin()}*-{tag}-{tag}-*linux*.whl"))
        if found:
            return found[-1]
    return None


def sub_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command path of the CLI: ``("model",)``, ``("model", "evaluate")``, ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from sub_commands(sub, (*prefix, name))


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with torch (local wheel) and the project from a copy of its source tree."""
    wheel = _local_torch_wheel()
    if wheel is None or not wheel.is_file():
        pytest.skip(f"no local torch=={_torch_pin()} wheel (PIP_FIND_LINKS, SCP_NODE_TORCH_WHEEL)")
    base = tmp_path_factory.mktemp("fresh")
    src = base / "src"  # the build writes build/ and *.egg-info: not into the work tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    shutil.copytree(
        ROOT / "scp_node", src / "scp_node", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = _clean_env()
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    for target in (str(wheel), str(src)):
        proc = subprocess.run([*pip, target], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


def _clean_env() -> dict[str, str]:
    """The caller's environment without what would leak the work tree or another venv in."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SCP_NODE_CONFIG"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def scp_node(
    venv: Path, *args: str, cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The venv's ``scp-node`` console script, run from ``cwd`` (never the work tree)."""
    return subprocess.run(
        [str(venv / "bin" / "scp-node"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=timeout,
    )


def test_the_install_is_the_venvs_own(venv: Path) -> None:
    probe = "import scp_node, torch; print(scp_node.__file__); print(torch.__version__)"
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=venv,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    package, torch_version = proc.stdout.split()
    assert Path(package).is_relative_to(venv), f"scp_node imported from {package}, not the venv"
    assert torch_version.split("+")[0] == _torch_pin()
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    ).stdout.lower()
    for test_only in ("pytest", "scipy", "deptry", "ruff"):
        assert f"\n{test_only}==" not in f"\n{freeze}", f"{test_only} leaked into the fresh venv"


def test_every_sub_command_answers_help(venv: Path, tmp_path: Path) -> None:
    commands = list(sub_commands(build_parser()))
    assert {("serve",), ("infer",), ("model", "evaluate"), ("outbox", "list"), ("status",)} <= set(
        commands
    )
    for command in [(), *commands]:
        proc = scp_node(venv, *command, "--help", cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, f"scp-node {' '.join(command)} --help: {proc.stderr[-2000:]}"
        assert proc.stdout.startswith("usage: scp-node"), proc.stdout[:200]


def test_decoders_phantom_infer(venv: Path, tmp_path: Path) -> None:
    decoders = scp_node(venv, "decoders", "--json", cwd=tmp_path)
    assert decoders.returncode == 0, decoders.stderr[-2000:]
    proven = {s["uid"] for s in json.loads(decoders.stdout) if s["proven_plugins"]}
    assert "1.2.840.10008.1.2.4.90" in proven, "J2K lossless must decode in a clean install"

    study = tmp_path / "study"
    phantom = scp_node(venv, "phantom", "--slices", "5", "--size", "128", str(study), cwd=tmp_path)
    assert phantom.returncode == 0, phantom.stderr[-2000:]
    assert len(list(study.glob("*.dcm"))) == 5 and (study / "truth.json").is_file()

    infer = scp_node(
        venv, "infer", "--json", "--sr", str(tmp_path / "sr.dcm"), str(study), cwd=tmp_path
    )
    assert infer.returncode == 0, infer.stderr[-2000:]
    result = json.loads(infer.stdout)
    assert result["applicable"] is True
    assert [level["level"] for level in result["levels"]] == [
        "L1-L2",
        "L2-L3",
        "L3-L4",
        "L4-L5",
        "L5-S1",
    ]
    assert (tmp_path / "sr.dcm").stat().st_size > 1000


def test_model_evaluate_on_a_handful_of_phantoms(venv: Path, tmp_path: Path) -> None:
    roc = tmp_path / "roc.png"
    proc = scp_node(
        venv,
        "model",
        "evaluate",
        "--normals",
        "2",
        "--lstv",
        "1",
        "--json",
        "--roc",
        str(roc),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["counts"] == {"normal": 2, "lumbarization": 1, "sacralization": 1}
    # four studies: the AUROC is a number, or NaN when the gate left one class without a study
    assert report["auroc"] != report["auroc"] or 0.0 <= report["auroc"] <= 1.0
    assert 0.0 <= report["not_assessable"] <= 1.0
    assert roc.read_bytes().startswith(b"\x89PNG")


def test_status_and_outbox_list_read_a_data_dir(venv: Path, tmp_path: Path) -> None:
    """An index written by this code (one received study, one pending delivery) read by the venv."""
    from scp_node.store.db import Database
    from scp_node.store.index import InstanceIndex, InstanceRecord
    from scp_node.store.jobs import JobStore
    from scp_node.store.outbox import Outbox

    data = tmp_path / "data"
    config = tmp_path / "node.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n', encoding="utf-8")
    data.mkdir()
    db = Database(data / "index.sqlite3")
    mr, explicit_le = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2.1"
    record = InstanceRecord(
        "1.2.3.4.1", mr, "1.2.3", "1.2.3.4", explicit_le, data / "spool" / "a.dcm", 1234
    )
    InstanceIndex(db).add(record)
    JobStore(db).sync_from_studies()
    Outbox(db).enqueue(
        "1.2.3", "1.2.3.9.1", "1.2.840.10008.5.1.4.1.1.88.34", data / "sr.dcm", "pacs"
    )
    db.close()

    status = scp_node(venv, "status", "--config", str(config), "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr[-2000:]
    assert [row["study_uid"] for row in json.loads(status.stdout)] == ["1.2.3"]

    outbox = scp_node(venv, "outbox", "list", "--config", str(config), "--json", cwd=tmp_path)
    assert outbox.returncode == 0, outbox.stderr[-2000:]
    (row,) = json.loads(outbox.stdout)
    assert (row["destination"], row["state"]) == ("pacs", "pending")


def test_console_templates_and_static_files_are_installed(venv: Path, tmp_path: Path) -> None:
    """The console's Jinja2 templates and vendored CSS/JS are package data of the install."""
    probe = (
        "from scp_node.config import load_settings\n"
        "from scp_node.web.console.render import Renderer\n"
        "from scp_node.web.console.routes import STATIC_DIR\n"
        "page = Renderer(load_settings()).page\n"
        "html = page('sign_in.html', None, title='t', error='', csrf='c')\n"
        "assert 'name=\"password\"' in html, html\n"
        "assert (STATIC_DIR / 'console.css').is_file() and (STATIC_DIR / 'console.js').is_file()\n"
        "print(STATIC_DIR)\n"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()).is_relative_to(venv)
