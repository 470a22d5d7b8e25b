"""End-to-end latency and throughput on CPU, with a real Orthanc as the PACS.

* Latency: one 20-slice 512x512 JPEG 2000 lossless phantom study, sent by DCMTK ``storescu``;
  measured from the last C-STORE acknowledged (storescu exits) to the SR found in Orthanc, minus the
  configured quiet time. Median of ``--repeats`` studies (each a new seed, so a new study).
* Throughput: ``--senders`` storescu processes at once, each sending its own study; studies
  per minute
  from the first send to the last SR in Orthanc.

    python bench/bench_pipeline.py [--repeats 5] [--senders 4] [--work /tmp/scp-bench-e2e]
"""

from __future__ import annotations

import argparse
import os
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for orthanc_id in pacs.find_instances(Modality="SR"):
            if pacs.instance_tags(orthanc_id).get("StudyInstanceUID") == study_uid:
                return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"no SR for {study_uid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("/tmp/scp-bench-e2e"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    pacs = Orthanc(args.work)
    pacs.start()
    port = free_port()
    config = args.work / f"node-{port}.toml"
    write_toml(
        config,
        {
            "dicom": {"port": port},
            "storage": {"data_dir": str(args.work / f"data-{port}"), "min_free_mb": 1},
            "http": {"enabled": False},
            "log": {"level": "WARNING"},
            "pipeline": {"quiet_seconds": QUIET_S, "poll_interval_s": 0.05},
            "delivery": {
                "default_destinations": ["pacs"],
                "poll_interval_s": 0.05,
                "destinations": {"pacs": dimse_destination(pacs.aet, pacs.dicom_port)},
            },
        },
    )
    node = NodeProcess(config, port).start()
    try:
        time.sleep(5.0)  # let the model load before timing
        latencies = []
        for i in range(args.repeats):
            files, study_uid = make_study(args.work, 1000 + i, args.size, args.slices)
            sender = send(files, port)
            sender.wait(120)
            acked = time.monotonic()
            latencies.append(wait_sr(pacs, study_uid) - acked - QUIET_S)
        studies = [
            make_study(args.work, 2000 + i, args.size, args.slices) for i in range(args.senders)
        ]
        started = time.monotonic()
        senders = [send(files, port) for files, _ in studies]
        for proc in senders:
            proc.wait(300)
        last = max(wait_sr(pacs, uid) for _, uid in studies)
        per_minute = len(studies) / ((last - started) / 60)
    finally:
        node.stop()
        pacs.stop()
    print(f"| study | {args.slices} slices {args.size}x{args.size} J2K lossless |")
    print("|---|---|")
    print(
        f"| end-to-end latency, median of {args.repeats} (excl. {QUIET_S:.0f} s quiet time) "
        f"| {statistics.median(latencies):.2f} s (min {min(latencies):.2f}, "
        f"max {max(latencies):.2f}) |"
    )
    print(
        f"| {args.senders} senders at once | {per_minute:.1f} studies/min "
        f"({last - started:.1f} s for {args.senders} studies) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
