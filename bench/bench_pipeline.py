"""End-to-end latency and throughput on CPU, with a real Orthanc as the PACS.

* Latency: one 20-slice 512x512 JPEG 2000 lossless phantom study, sent by DCMTK ``storescu``.
  Time to result is measured **from study completion** (the job's ``complete_at`` in the node's
  index: the quiet time is configuration) to the SR acknowledged by Orthanc's C-STORE response
  (the outbox row's ``delivered_at``; Orthanc has stored it then), and to the SR found over
  Orthanc's REST API (50 ms polling). The split: queue (completion to the worker claiming the
  job), the analysis stages the worker logs (select = headers, decode, canonical, model, report =
  SR + Secondary Capture), enqueue (written durably to the outbox), delivery (C-STORE to Orthanc);
  and the head start the worker took while the study was quiet (before completion, not counted).
  Median of ``--repeats`` studies (each a new seed, so a new study).
* Throughput: ``--senders`` storescu processes at once, each sending its own study; studies
  per minute from the first send to the last SR in Orthanc.
* ``--baseline DIR``: a second node from another checkout (e.g. ``git worktree add /tmp/base
  main``) runs beside this one, and the studies alternate between them (same run, same Orthanc).

    python bench/bench_pipeline.py [--repeats 5] [--senders 4] [--baseline DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydicom import dcmread  # noqa: E402

from scp_node.phantom_dicom import write_phantom  # noqa: E402
from tests.conftest import dimse_destination, free_port  # noqa: E402
from tests.node_process import NodeProcess, write_toml  # noqa: E402
from tests.orthanc import Orthanc  # noqa: E402

J2K = "1.2.840.10008.1.2.4.90"
QUIET_S = 1.0
ENV = {**os.environ, "TCP_NODELAY": "1"}


def make_study(work: Path, seed: int, size: int, slices: int) -> tuple[list[Path], str]:
    folder = work / f"study-{seed}"
    files = sorted(folder.glob("IM*.dcm")) or write_phantom(
        folder, variant="normal", seed=seed, slices=slices, size=size, transfer_syntax=J2K
    )
    return files, str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def send(files: list[Path], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "/usr/bin/storescu",
            "-xv",  # propose JPEG 2000 lossless: storescu never decompresses on the fly
            "-aet",
            "PACS",
            "-aec",
            "LSTV_NODE",
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_sr(pacs: Orthanc, study_uid: str, timeout: float = 300.0) -> float:
    """time.time() when the study's SR is first seen over Orthanc's REST API."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pacs.find_instances(Modality="SR", StudyInstanceUID=study_uid):
            return time.time()
        time.sleep(0.05)
    raise TimeoutError(f"no SR for {study_uid}")


class BenchNode:
    """One node (from ``tree``) delivering to ``pacs``; its index gives the timestamps."""

    def __init__(self, name: str, tree: Path, work: Path, pacs: Orthanc) -> None:
        self.name = name
        self.port = free_port()
        self.data = work / f"data-{name}-{self.port}"
        config = work / f"node-{name}-{self.port}.toml"
        write_toml(
            config,
            {
                "dicom": {"port": self.port},
                "storage": {"data_dir": str(self.data), "min_free_mb": 1},
                "http": {"enabled": False},
                "log": {"level": "INFO"},
                "pipeline": {"quiet_seconds": QUIET_S, "poll_interval_s": 0.05},
                "delivery": {
                    "default_destinations": ["pacs"],
                    "poll_interval_s": 0.05,
                    "destinations": {"pacs": dimse_destination(pacs.aet, pacs.dicom_port)},
                },
            },
        )
        self.process = NodeProcess(config, self.port)
        # ``python -m`` puts the working directory first on sys.path: start it in ``tree``
        saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
        os.environ["PYTHONPATH"] = str(tree)
        os.chdir(tree)
        try:
            self.process.start()
        finally:
            os.chdir(cwd)
            if saved is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = saved

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the model worker has loaded (and warmed up) the model."""
        deadline = time.monotonic() + timeout
        while "model loaded on" not in self.process.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # the warm-up (where there is one) follows the load

    def split(self, study_uid: str, sr_seen: float) -> dict[str, float]:
        """Seconds from completion, per stage, from the index and the worker's log line."""
        deadline = time.monotonic() + 30
        while True:  # Orthanc stores the SR before the node records its C-STORE response
            with sqlite3.connect(self.data / "index.sqlite3") as db:
                complete, started = db.execute(
                    "SELECT complete_at, started_at FROM jobs WHERE study_uid = ?", (study_uid,)
                ).fetchone()
                rows = db.execute(
                    "SELECT sop_class_uid, created_at, delivered_at FROM outbox "
                    "WHERE study_uid = ?",
                    (study_uid,),
                ).fetchall()
            sr = [r for r in rows if r[0].startswith("1.2.840.10008.5.1.4.1.1.88.")]
            if sr and all(r[2] is not None for r in sr) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        enqueued, acked = min(r[1] for r in sr), max(r[2] for r in sr)
        out = {
            "to SR acknowledged": acked - complete,
            "to SR found (REST)": sr_seen - complete,
            "queue": started - complete,
            "analysis+report+enqueue": enqueued - started,
            "delivery": acked - enqueued,
        }
        log = self.process.log()
        ahead = re.search(rf"study {re.escape(study_uid)}: prepared while quiet in (\d+) ms", log)
        if ahead:
            out["prepared before completion (not counted)"] = int(ahead.group(1)) / 1000.0
        line = re.search(rf"study {re.escape(study_uid)}: stage times (.*)", log)
        if line:
            for stage, ms in re.findall(r"(\w+)=(\d+)ms", line.group(1)):
                out[stage] = int(ms) / 1000.0
        return out

    def cpu_s(self) -> float:
        """User + system CPU seconds the node's process (all its threads) has used so far."""
        assert self.process.process is not None
        fields = Path(f"/proc/{self.process.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scp-bench-e2e"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    pacs = Orthanc(args.work)
    pacs.start()
    nodes: list[BenchNode] = []
    try:
        nodes.append(BenchNode("this", ROOT, args.work, pacs))
        if args.baseline is not None:
            nodes.append(BenchNode("baseline", args.baseline, args.work, pacs))
        for node in nodes:
            node.wait_ready()
        splits: dict[str, list[dict[str, float]]] = {node.name: [] for node in nodes}
        for i in range(args.repeats):
            for j, node in enumerate(nodes):
                seed = 1000 + i * len(nodes) + j
                files, study_uid = make_study(args.work, seed, args.size, args.slices)
                cpu = node.cpu_s()
                send(files, node.port).wait(120)
                split = node.split(study_uid, wait_sr(pacs, study_uid))
                split["node CPU s (receive to delivered)"] = node.cpu_s() - cpu
                splits[node.name].append(split)
        studies = [
            make_study(args.work, 2000 + i, args.size, args.slices) for i in range(args.senders)
        ]
        started = time.monotonic()
        senders = [send(files, nodes[0].port) for files, _ in studies]
        for proc in senders:
            proc.wait(300)
        for _, uid in studies:
            wait_sr(pacs, uid)
        elapsed = time.monotonic() - started
        per_minute = len(studies) / (elapsed / 60)
    finally:
        for node in nodes:
            node.stop()
        pacs.stop()
    print(
        f"{args.slices} slices {args.size}x{args.size} J2K lossless; seconds from study "
        f"completion, median of {args.repeats} (min-max); load average before "
        f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    names = list(splits)
    print("| stage | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    keys = list(dict.fromkeys(k for rows in splits.values() for row in rows for k in row))
    for key in keys:
        cells = []
        for name in names:
            values = [row[key] for row in splits[name] if key in row]
            cells.append(
                f"{statistics.median(values):.3f} ({min(values):.2f}-{max(values):.2f})"
                if values
                else "-"
            )
        print(f"| {key} | " + " | ".join(cells) + " |")
    print(
        f"{args.senders} senders at once ({nodes[0].name}): {per_minute:.1f} studies/min "
        f"({elapsed:.1f} s for {args.senders} studies)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
