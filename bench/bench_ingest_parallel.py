"""C-STORE ingest, issue 15: one association against the peers, and 4 associations at once.

Part 1, one association: the same series (``--count`` uncompressed 512x512 16-bit MR) is sent by
DCMTK ``storescu`` in one association to DCMTK ``storescp``, Orthanc 1.10, the bare pynetdicom
handler (bench/minimal_pynetdicom_scp.py) and scp-node in its default durable configuration
(fsync of file and directory, index commit before Success; pipeline on), alternating, one fresh
receiver per round. Part 2, several associations: 4 ``storescu`` at once (4 series) against 1,
into the node with ``dicom.processes`` = 1 and = N (and Orthanc with 4). Part 3, the same with
``storage.fsync = false``, where nothing waits on the disk and only more cores can help.
Every process gets TCP_NODELAY=1; receiver CPU = user + system seconds of the receiver's
processes during the transfer.

Prints Markdown tables of medians (seconds for the run, instances per second) and ratios.

    python bench/bench_ingest_parallel.py [--count 200] [--rounds 3] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import ENV, free_port, make_series, wait_port  # noqa: E402

ORTHANC = "/usr/sbin/Orthanc"
STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"
NODE_WARM_UP_S = 8.0
#: receiver name -> CPU seconds (user + system, receiver processes) per run
CPU: dict[str, list[float]] = {}  # the pipeline owner imports torch and loads the weights at start


def _quiet(
    argv: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def start_storescp(out: Path, port: int) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    return _quiet([STORESCP, "-aet", "LSTV_NODE", "+xa", "-od", str(out), str(port)], ENV)


def start_orthanc(out: Path, port: int) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "bench",
        "DicomAet": "LSTV_NODE",
        "DicomPort": port,
        "HttpPort": free_port(),
        "StorageDirectory": str(out / "storage"),
        "IndexDirectory": str(out / "index"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "StorageCompression": False,
        "Plugins": [],
    }
    (out / "orthanc.json").write_text(json.dumps(config))
    return _quiet([ORTHANC, str(out / "orthanc.json"), "--no-jobs"], ENV, cwd=out)


def start_minimal(out: Path, port: int) -> subprocess.Popen[bytes]:
    script = Path(__file__).with_name("minimal_pynetdicom_scp.py")
    return _quiet([sys.executable, str(script), str(port), str(out)], ENV)


def node_starter(
    processes: int,
    fsync: bool = True,
    tree: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Callable[[Path, int], subprocess.Popen[bytes]]:
    """Starts ``scp-node serve``; with ``tree``, the scp_node package of that source tree (an
    older commit checked out elsewhere, for before/after rows in one alternating run)."""

    def start(out: Path, port: int) -> subprocess.Popen[bytes]:
        env = {
            **ENV,
            **({"PYTHONPATH": str(tree)} if tree is not None else {}),
            "SCP_NODE_STORAGE__FSYNC": "true" if fsync else "false",
            "SCP_NODE_DICOM__PORT": str(port),
            "SCP_NODE_DICOM__PROCESSES": str(processes),
            "SCP_NODE_STORAGE__DATA_DIR": str(out),
            "SCP_NODE_HTTP__ENABLED": "false",
            "SCP_NODE_LOG__LEVEL": "WARNING",
            **(extra_env or {}),
        }
        log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 - the child holds it
        return subprocess.Popen(  # in ``tree``: `-m` puts the working directory first on sys.path
            [sys.executable, "-m", "scp_node", "serve"],
            env=env,
            stdout=log,
            stderr=log,
            cwd=tree,
        )

    return start


def send(series: list[list[Path]], port: int) -> float:
    """Seconds for one ``storescu`` per series, all started at once, to finish."""

    def one(files: list[Path]) -> None:
        argv = [STORESCU, "-aet", "PACS", "-aec", "LSTV_NODE", "-xe", "127.0.0.1", str(port)]
        done = subprocess.run([*argv, *map(str, files)], env=ENV, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"storescu exit {done.returncode}: {done.stderr[-1000:]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(len(series)) as pool:
        list(pool.map(one, series))
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its child processes (receiving processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    total = 0
    for one in [pid, *map(int, out.split())]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def settle(pid: int, longest_s: float = 60.0) -> None:
    """Wait until the node is idle (the pipeline owner imports torch and loads the model at
    start): at least :data:`NODE_WARM_UP_S`, then until its processes use < 5 % CPU."""
    time.sleep(NODE_WARM_UP_S)
    deadline = time.monotonic() + longest_s
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - before < 0.05:
            return
        before = now


def stored(out: Path) -> int:
    """Instances a receiver kept (node spool, Orthanc storage, storescp/minimal output)."""
    if (out / "storage").is_dir():  # Orthanc: one file per instance, named by its own id
        return sum(1 for p in (out / "storage").rglob("*") if p.is_file())
    if (out / "spool").is_dir():
        return sum(1 for _ in (out / "spool").glob("*/*/*.dcm"))
    return sum(1 for name in ("*.dcm", "MR.*") for _ in out.glob(name))


def run_one(
    name: str,
    start: Callable[[Path, int], subprocess.Popen[bytes]],
    series: list[list[Path]],
    work: Path,
) -> float:
    port = free_port()
    out = work / "recv" / name.replace(" ", "_")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = start(out, port)
    try:
        wait_port(port)
        if name.startswith("scp-node"):
            settle(proc.pid)
        cpu_before = cpu_seconds(proc.pid)
        seconds = send(series, port)
        CPU.setdefault(name, []).append(cpu_seconds(proc.pid) - cpu_before)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    expected = sum(len(files) for files in series)
    got = stored(out)
    assert got == expected, f"{name} stored {got} of {expected}"
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def table(
    title: str,
    runs: dict[str, tuple[Callable[[Path, int], subprocess.Popen[bytes]], list[list[Path]]]],
    rounds: int,
    work: Path,
    base: str,
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (start, series) in runs.items():
            times[name].append(run_one(name, start, series, work))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n### {title}\n")
    print(
        f"| receiver | instances | median s | range s | instances/s | × {base} | "
        "receiver CPU s (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, values in times.items():
        count = sum(len(files) for files in runs[name][1])
        rate = count / medians[name]
        base_rate = sum(len(f) for f in runs[base][1]) / medians[base]
        print(
            f"| {name} | {count} | {medians[name]:.2f} | {min(values):.2f}-{max(values):.2f} | "
            f"{rate:.0f} | {rate / base_rate:.2f} | {statistics.median(CPU[name]):.2f} |"
        )
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="instances per series")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="N for the node's second row")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scp-bench-15"))
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["single", "parallel", "cpu-bound"]
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a source tree of an older scp-node (e.g. a `git worktree` of main): one more row "
        "in the one-association table, alternating with the others",
    )
    parser.add_argument(
        "--journal-off",
        action="store_true",
        help="one-association table: one more node row with storage.journal_mb = 0",
    )
    parser.add_argument(
        "--only-nodes",
        action="store_true",
        help="one-association table: Orthanc and the node(s) only (no storescp, bare handler)",
    )
    args = parser.parse_args()
    series = [make_series(args.work / f"series{i}", args.count, False) for i in range(4)]
    print(f"{os.cpu_count()} CPUs; {args.count} instances per series; {args.rounds} rounds")
    if "single" not in args.skip:
        single: dict[str, tuple[Callable[[Path, int], subprocess.Popen[bytes]], list[list[Path]]]]
        single = {
            "DCMTK storescp": (start_storescp, series[:1]),
            "Orthanc 1.10": (start_orthanc, series[:1]),
            "bare pynetdicom": (start_minimal, series[:1]),
            "scp-node (durable)": (node_starter(1), series[:1]),
        }
        if args.only_nodes:
            del single["DCMTK storescp"], single["bare pynetdicom"]
        if args.journal_off:
            single["scp-node, journal off (durable)"] = (
                node_starter(1, extra_env={"SCP_NODE_STORAGE__JOURNAL_MB": "0"}),
                series[:1],
            )
        if args.baseline is not None:
            single["scp-node baseline (durable)"] = (
                node_starter(1, tree=args.baseline.resolve()),
                series[:1],
            )
        table(
            "One association (one storescu)",
            single,
            args.rounds,
            args.work,
            base="Orthanc 1.10",
        )
    if "parallel" not in args.skip:
        n = args.processes
        table(
            "Four associations at once (four storescu) against one",
            {
                "scp-node, 1 process, 1 sender": (node_starter(1), series[:1]),
                "scp-node, 1 process, 4 senders": (node_starter(1), series),
                f"scp-node, {n} processes, 1 sender": (node_starter(n), series[:1]),
                f"scp-node, {n} processes, 4 senders": (node_starter(n), series),
                "Orthanc 1.10, 4 senders": (start_orthanc, series),
            },
            args.rounds,
            args.work,
            base="scp-node, 1 process, 1 sender",
        )
    if "cpu-bound" not in args.skip:  # no fsync waits to overlap: only more cores help
        n = args.processes
        table(
            "Four associations, storage.fsync = false (CPU-bound: what the GIL allows)",
            {
                "no fsync, 1 process, 1 sender": (node_starter(1, False), series[:1]),
                "no fsync, 1 process, 4 senders": (node_starter(1, False), series),
                f"no fsync, {n} processes, 4 senders": (node_starter(n, False), series),
            },
            args.rounds,
            args.work,
            base="no fsync, 1 process, 1 sender",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
