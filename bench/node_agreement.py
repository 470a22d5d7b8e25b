"""The whole node against the analysis function, on generated study folders (``truth.json``).

Each study folder (e.g. the blind generators' ``bench/fourth_phantom.py`` and
``bench/fifth_phantom.py`` output) is screened twice:

* directly: ``scp_node.analysis.analyze_study`` on the folder's files (``Settings()`` defaults,
  the shipped weights, CPU), as ``bench/bench_screen.py`` does;
* by the node: ``scp-node serve`` in a subprocess (default configuration except a data folder
  of its own, free loopback ports, no destination and ``[pipeline] quiet_seconds`` 2), each
  study sent by DCMTK ``storescu`` on one association (``TCP_NODELAY=1``), or with ``--via stow``
  as one STOW-RS request; the node's result is read from its job table once every job has
  reached a final state.

It prints, per set, how many studies the node finished and in which state, and how many node
results agree with the direct ones: same series, same score (to 1e-6), same assessable /
suspected verdict, same not-assessable reason. Any disagreement is listed. The node process is
stopped by its PID (SIGTERM, then SIGKILL) whatever happens.

    python bench/node_agreement.py /tmp/fifth [/tmp/fourth ...] [--via stow] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pydicom

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import build_engine, dicom_files, find_studies  # noqa: E402
from scp_node.analysis import analyze_study  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.processes import stop_process  # noqa: E402

TOKEN = "node-agreement-token-0123456789"
FINAL = ("delivered", "reported", "not_applicable", "failed", "shadow", "delivery_failed")
#: studies sent ahead of the node's worker: well under any [pipeline] queue_size a site sets
#: (the node answers 0xA700 beyond it, and DCMTK storescu stops a study at a refused image)
MAX_WAITING = 8
COMPARED = ("series_instance_uid", "applicable", "assessable", "lstv_suspected")


def dcmtk_storescu() -> str:
    """DCMTK's storescu by absolute path (a venv's pynetdicom script of that name shadows it)."""
    path = Path("/usr/bin/storescu")
    if not path.exists():
        raise SystemExit("DCMTK storescu not found at /usr/bin/storescu (apt-get install dcmtk)")
    return str(path)


def study_uid(folder: Path) -> str:
    from pydicom import dcmread

    for path in dicom_files(folder):
        return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    raise ValueError(f"{folder}: no DICOM file")


def direct(folders: list[Path], threads: int) -> dict[str, dict[str, Any]]:
    settings, engine = build_engine(None, threads)
    results = {}
    for folder in folders:
        results[str(folder)] = analyze_study(dicom_files(folder), settings, engine).to_json()
    return results


def same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two result dicts (empty = they agree)."""
    diffs = [k for k in COMPARED if a.get(k) != b.get(k)]
    if abs(float(a.get("lstv_score") or 0.0) - float(b.get("lstv_score") or 0.0)) > 1e-6:
        diffs.append(f"score {a.get('lstv_score')} != {b.get('lstv_score')}")
    if a.get("not_assessable_reason") != b.get("not_assessable_reason"):
        diffs.append("not_assessable_reason")
    return diffs


def waiting_jobs(db: Path) -> int:
    """Jobs of the node not yet in a final state (0 before its database exists)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=10) as conn:
        marks = ",".join("?" * len(FINAL))
        row = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE state NOT IN ({marks})", FINAL)
        return int(row.fetchone()[0])


#: DCMTK 3.6.7 storescu's option proposing a compressed syntax (with the uncompressed ones);
#: without it storescu proposes uncompressed syntaxes only and fails on a compressed file (it
#: never decompresses). It cannot send HTJ2K at all.
STORESCU_PROPOSES = {
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1.99": "-xd",
}
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def c_store(storescu: str, port: int, folder: Path, env: dict[str, str]) -> str:
    """Send a study folder with DCMTK storescu on one association, proposing the files' own
    transfer syntax; "" or what went wrong."""
    files = dicom_files(folder)
    syntax = str(pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
    if syntax not in UNCOMPRESSED and syntax not in STORESCU_PROPOSES:
        return f"DCMTK storescu cannot send transfer syntax {syntax}"
    propose = [STORESCU_PROPOSES[syntax]] if syntax in STORESCU_PROPOSES else []
    sent = subprocess.run(
        [storescu, *propose, "-aet", "PACS", "-aec", "LSTV_NODE", "127.0.0.1", str(port),
         *map(str, files)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    return f"storescu exit {sent.returncode}: {sent.stderr[-300:]}" if sent.returncode else ""


def stow(http_port: int, folder: Path) -> str:
    """Send a study folder as one STOW-RS request (PS3.18 10.5, multipart/related of Part 10
    files); "" or what went wrong."""
    boundary = "node-agreement-boundary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + path.read_bytes()
            + b"\r\n"
            for path in dicom_files(folder)
        )
        + f"--{boundary}--\r\n".encode()
    )
    answer = httpx.post(
        f"http://127.0.0.1:{http_port}/dicom-web/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/dicom+json",
        },
        timeout=300,
    )
    return "" if answer.status_code == 200 else f"STOW-RS HTTP {answer.status_code}"


def through_node(
    folders: list[Path], work: Path, timeout_s: float, via: str = "dimse"
) -> dict[str, dict[str, Any]]:
    """Send every folder to a fresh ``scp-node serve`` (DIMSE or STOW-RS) and read back its job
    results."""
    port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "TCP_NODELAY": "1",
        "SCP_NODE_DICOM__PORT": str(port),
        "SCP_NODE_HTTP__PORT": str(http_port),
        "SCP_NODE_HTTP__TOKEN": TOKEN,
        "SCP_NODE_STORAGE__DATA_DIR": str(work / "node"),
        "SCP_NODE_PIPELINE__QUIET_SECONDS": "2",
        "SCP_NODE_MODEL__DEVICE": "cpu",
    }
    scp_node = Path(sys.executable).parent / "scp-node"
    command = [str(scp_node)] if scp_node.exists() else [sys.executable, "-m", "scp_node"]
    log = (work / "node.log").open("w")
    node = subprocess.Popen([*command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    uids = {str(folder): study_uid(folder) for folder in folders}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if node.poll() is not None:
                raise SystemExit(f"the node exited ({node.returncode}); see {work / 'node.log'}")
            time.sleep(0.5)
        storescu = dcmtk_storescu() if via == "dimse" else ""
        db = work / "node" / "index.sqlite3"
        for folder in folders:
            # a PACS retries what the node refuses with 0xA700 (analysis queue full); storescu
            # does not, so the queue is kept short
            while waiting_jobs(db) >= MAX_WAITING:
                if node.poll() is not None:
                    raise SystemExit(f"the node exited ({node.returncode})")
                time.sleep(0.5)
            if via == "stow":
                problem = stow(http_port, folder)
            else:
                problem = c_store(storescu, port, folder, env)
            if problem:  # nothing (or not all) of it reached the node: no job to wait for
                print(f"{folder}: {problem}", flush=True)
                del uids[str(folder)]
        deadline = time.monotonic() + timeout_s
        rows: dict[str, tuple[str, str]] = {}
        while time.monotonic() < deadline:
            with sqlite3.connect(db, timeout=10) as conn:
                rows = {
                    r[0]: (r[1], r[2])
                    for r in conn.execute("SELECT study_uid, state, result_json FROM jobs")
                }
            if len(rows) >= len(set(uids.values())) and all(s in FINAL for s, _ in rows.values()):
                break
            time.sleep(1.0)
    finally:
        stop_process(node, grace_s=60)
        log.close()
    out = {}
    for key, uid in uids.items():
        state, result = rows.get(uid, ("missing", ""))
        out[key] = {"state": state, **(json.loads(result) if result else {})}
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding study folders")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (direct)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the node")
    parser.add_argument("--json", type=Path, help="per-study results of both")
    parser.add_argument(
        "--via", choices=("dimse", "stow"), default="dimse", help="DCMTK storescu or STOW-RS"
    )
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the node process is stopped by the finally blocks
    signal.signal(signal.SIGTERM, _interrupt)
    folders = find_studies(args.roots)
    started = time.perf_counter()
    mine = direct(folders, args.threads)
    direct_s = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="scp-node-agreement-"))
    try:
        started = time.perf_counter()
        node = through_node(folders, work, args.timeout, args.via)
        node_s = time.perf_counter() - started
    finally:
        log = work / "node.log"
        if log.exists():
            shutil.copy(log, Path(tempfile.gettempdir()) / "scp-node-agreement-node.log")
        shutil.rmtree(work, ignore_errors=True)
    by_set: dict[str, dict[str, int]] = {}
    for folder in folders:
        key = str(folder)
        tally = by_set.setdefault(folder.parent.name, {"studies": 0, "agree": 0})
        tally["studies"] += 1
        theirs = node.get(key, {"state": "not sent"})
        state = theirs["state"]
        tally[state] = tally.get(state, 0) + 1
        diffs = same(mine[key], theirs)
        if diffs:
            print(f"{key}: node {state}: differs in {', '.join(diffs)}")
        else:
            tally["agree"] += 1
    for name, tally in by_set.items():
        print(name, json.dumps(tally))
    print(f"direct {direct_s:.0f} s, node {node_s:.0f} s (send + finish) for {len(folders)}")
    if args.json:
        args.json.write_text(json.dumps({"direct": mine, "node": node}, indent=1))
    return 0 if all(t["agree"] == t["studies"] for t in by_set.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
