"""C-STORE ingest: scp-node versus DCMTK storescp, same files, same sender, same run.

500 uncompressed 512x512 16-bit MR images (and the same 500 as JPEG 2000 lossless) are sent by DCMTK
``storescu`` in one association to each receiver in turn, alternating, for several rounds. Both
receivers and the sender get TCP_NODELAY=1. The node runs its default configuration (pipeline on,
given time to load the model first) and writes durably (fdatasync of each file and its directory,
then the SQLite commit); storescp does not fsync. Further rows: the node with storage.fsync off, and
bench/minimal_pynetdicom_scp.py (what pynetdicom alone costs).
Prints a Markdown table of medians and the node/storescp ratio.

    python bench/bench_ingest.py [--count 500] [--rounds 3] [--work /tmp/scp-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage, generate_uid

ENV = {**os.environ, "TCP_NODELAY": "1"}
WARM_UP_S = 8.0


_NEXT_PORT = [0]


def free_port() -> int:
    """A free TCP port: any, or the next free one of ``SCP_BENCH_PORTS`` (``15000-15999``)."""
    bounds = os.environ.get("SCP_BENCH_PORTS", "")
    if not bounds:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    low, high = (int(x) for x in bounds.split("-"))
    for _ in range(high - low + 1):
        port = low + _NEXT_PORT[0] % (high - low + 1)
        _NEXT_PORT[0] += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in SCP_BENCH_PORTS={bounds}")


def make_series(folder: Path, count: int, j2k: bool) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.dcm"))
    if len(existing) == count:
        return existing
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    rows, cols = np.mgrid[0:512, 0:512]
    for i in range(count):
        image = (2000 + 800 * np.sin(rows / 40 + i / 10) * np.cos(cols / 55)).astype(np.int32)
        image = np.clip(image + rng.normal(0, 30, image.shape), 0, 4095).astype(np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.InstanceNumber = "MR", i + 1
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = image.tobytes()
        if j2k:
            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
    return sorted(folder.glob("*.dcm"))


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_storescp(out: Path, port: int) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "LSTV_NODE", "+xa", "-od", str(out), str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_node(data: Path, port: int, fsync: bool = True) -> subprocess.Popen[bytes]:
    env = {
        **ENV,
        "SCP_NODE_STORAGE__FSYNC": "true" if fsync else "false",
        "SCP_NODE_DICOM__PORT": str(port),
        "SCP_NODE_STORAGE__DATA_DIR": str(data),
        "SCP_NODE_HTTP__ENABLED": "false",
        "SCP_NODE_LOG__LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "scp_node", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def send(files: list[Path], port: int, flag: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            "/usr/bin/storescu",
            "-aet",
            "PACS",
            "-aec",
            "LSTV_NODE",
            flag,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        env=ENV,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def run_one(kind: str, files: list[Path], work: Path, flag: str) -> tuple[float, float]:
    port = free_port()
    target = work / f"recv-{kind}"
    shutil.rmtree(target, ignore_errors=True)
    if kind == "storescp":
        proc = start_storescp(target, port)
    elif kind == "minimal pynetdicom":
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("minimal_pynetdicom_scp.py")),
                str(port),
                str(target),
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    else:
        proc = start_node(target, port, fsync=kind == "scp-node")
    try:
        wait_port(port)
        if kind.startswith("scp-node"):
            time.sleep(WARM_UP_S)  # the model worker imports torch and loads weights at start
        seconds = send(files, port, flag)
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    received = len(list(target.rglob("*.dcm"))) + len(list(target.rglob("MR.*")))
    assert received == len(files), f"{kind} stored {received} of {len(files)}"
    return seconds, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/scp-bench"))
    args = parser.parse_args()
    print("| data | receiver | median s | MB/s | files/s | peak RSS MB | × storescp MB/s |")
    print("|---|---|---|---|---|---|---|")
    for label, j2k, flag in (("uncompressed", False, "-xe"), ("J2K lossless", True, "-xv")):
        files = make_series(args.work / label.replace(" ", "_"), args.count, j2k)
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        times: dict[str, list[float]] = {
            "storescp": [],
            "minimal pynetdicom": [],
            "scp-node": [],
            "scp-node, no fsync": [],
        }
        rss: dict[str, float] = {}
        for _ in range(args.rounds):
            for kind in times:
                seconds, peak = run_one(kind, files, args.work, flag)
                times[kind].append(seconds)
                rss[kind] = max(rss.get(kind, 0.0), peak)
        base = statistics.median(times["storescp"])
        for kind, values in times.items():
            med = statistics.median(values)
            print(
                f"| {label} ({megabytes:.0f} MB) | {kind} | {med:.2f} | {megabytes / med:.0f} | "
                f"{len(files) / med:.0f} | {rss[kind]:.0f} | {base / med:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
