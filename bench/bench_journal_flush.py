"""Microbenchmark for issue 15: what one durable 0.5 MB instance costs before Success.

Alternates, per iteration, on the same file system:
- ``spool``: temp file write + fdatasync + rename + directory fsync (the node's spool path);
- ``journal``: overwrite of a pre-written (really zeroed) region of a journal file + one
  fdatasync (no size change, no block allocation: no metadata journal commit);
- ``journal+spool``: the journal write and fdatasync, then the spool temp write + rename with no
  sync (what the C-STORE handler would wait for), while a background thread makes the spool files
  durable in batches (fdatasync each, one directory fsync per batch).

Prints the median and quartiles of each, in ms per instance.

    python bench/bench_journal_flush.py [--repeats 300] [--size 524288] [--dir /tmp/jbench]
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_write(tmp: Path, final: Path, data: bytes, sync: bool) -> None:
    fd, name = tempfile.mkstemp(dir=tmp, suffix=".part")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        if sync:
            os.fdatasync(handle.fileno())
    os.replace(name, final)
    if sync:
        fsync_dir(final.parent)


class Syncer(threading.Thread):
    """Background batches: fdatasync every queued file, then one fsync of the directory."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.todo: queue.Queue[Path | None] = queue.Queue()
        self.pause_s = 0.005

    def run(self) -> None:
        while True:
            first = self.todo.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    nxt = self.todo.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    return
                batch.append(nxt)
            for path in batch:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            fsync_dir(batch[-1].parent)
            time.sleep(self.pause_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--size", type=int, default=512 * 1024 + 1200)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/jbench"))
    parser.add_argument("--journal-mb", type=int, default=64)
    parser.add_argument("--batch-ms", type=float, default=5.0, help="pause between batches")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    tmp = args.dir / ".tmp"
    tmp.mkdir(parents=True)
    spool_a = args.dir / "a"
    spool_c = args.dir / "c"
    spool_a.mkdir()
    spool_c.mkdir()
    data = os.urandom(args.size)
    journal_size = args.journal_mb * 2**20
    jpath = args.dir / "journal.wal"
    with open(jpath, "wb") as handle:  # really written zeroes: no unwritten extents
        chunk = b"\0" * 2**20
        for _ in range(args.journal_mb):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(args.dir)
    jfd = os.open(jpath, os.O_RDWR)
    offset = 0
    syncer = Syncer()
    syncer.pause_s = args.batch_ms / 1000
    syncer.start()
    times: dict[str, list[float]] = {"spool": [], "journal": [], "journal+spool": []}
    for i in range(args.repeats):
        order = list(times) if i % 2 == 0 else list(reversed(times))
        for mode in order:
            started = time.perf_counter()
            if mode == "spool":
                spool_write(tmp, spool_a / f"{i}.dcm", data, sync=True)
            else:
                if offset + len(data) > journal_size:
                    offset = 0
                os.pwrite(jfd, data, offset)
                os.fdatasync(jfd)
                offset += len(data)
                if mode == "journal+spool":
                    final = spool_c / f"{i}.dcm"
                    spool_write(tmp, final, data, sync=False)
                    syncer.todo.put(final)
            times[mode].append((time.perf_counter() - started) * 1000)
    syncer.todo.put(None)
    syncer.join()
    os.close(jfd)
    print(f"{args.repeats} repeats of {args.size} bytes, load average {os.getloadavg()[0]:.2f}")
    print("| mode | median ms | p25 | p75 |")
    print("|---|---|---|---|")
    for mode, values in times.items():
        q = statistics.quantiles(values, n=4)
        print(f"| {mode} | {statistics.median(values):.2f} | {q[0]:.2f} | {q[2]:.2f} |")
    spool_med = statistics.median(times["spool"])
    print(f"journal+spool / spool = {statistics.median(times['journal+spool']) / spool_med:.2f}")
    shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
