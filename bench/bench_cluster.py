"""Cluster throughput and the cost of the broker hop, with a real RabbitMQ and real workers.

One ingest node (``role = "ingest"``, in this process), a RabbitMQ started here on 127.0.0.1, and
``scp-node worker`` processes (one CPU thread each). Per worker count:

* **Throughput**: ``--studies`` phantom studies (12 slices, 256 x 256, J2K lossless) sent by DCMTK
  storescu, one association each, all at once; studies per minute from the first task published
  to the last result recorded (jobs' ``started_at`` .. ``finished_at``).
* **Latency** (with 1 worker, studies one at a time, nothing queued): per study, *study complete
  → result taken by the ingest node* minus the worker's own time (fetch + selection + inference):
  ``broker_hop`` is what the broker adds (wake-up, publish with confirm, delivery to the worker,
  result message, consume); ``added`` also counts the worker's DICOMweb fetch, since an all-in-one
  node reads the same files from its disk instead (``fetch`` on its own).

    python bench/bench_cluster.py [--studies 12] [--workers 1 2] [--latency 5] [--mc-samples 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydicom import dcmread  # noqa: E402

from scp_node.cluster.ingest import ROUND_TRIP_SECONDS  # noqa: E402
from scp_node.node import Node  # noqa: E402
from scp_node.phantom_dicom import write_phantom  # noqa: E402
from tests.cluster_worker import TOKEN, Worker  # noqa: E402
from tests.conftest import node_settings  # noqa: E402
from tests.rabbitmq import RabbitMQ  # noqa: E402

J2K = "1.2.840.10008.1.2.4.90"
ENV = {**os.environ, "TCP_NODELAY": "1"}
DONE = ("reported", "not_applicable", "failed")


def make_study(work: Path, seed: int) -> tuple[list[Path], str]:
    folder = work / f"study-{seed}"
    files = sorted(folder.glob("IM*.dcm")) or write_phantom(
        folder, variant="normal", seed=seed, slices=12, size=256, transfer_syntax=J2K
    )
    return files, str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def send(files: list[Path], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["/usr/bin/storescu", "-xv", "-aec", "BENCH", "127.0.0.1", str(port), *map(str, files)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_done(node: Node, uids: list[str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [node.pipeline.jobs.get(uid) for uid in uids]
        if all(j is not None and j.state in DONE for j in jobs):
            return
        time.sleep(0.1)
    raise TimeoutError("studies not done in time")


def round_trip_sum() -> float:
    for metric in ROUND_TRIP_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                return float(sample.value)
    return 0.0


def run(args: argparse.Namespace, broker: RabbitMQ, count: int, seeds: list[int]) -> dict[str, Any]:
    work = args.work / f"w{count}-{uuid.uuid4().hex[:6]}"
    queue = f"scp_node.bench.{uuid.uuid4().hex[:8]}"
    settings = node_settings(
        work,
        dicom={"ae_title": "BENCH", "max_associations": 64},  # every sender at once
        storage={"fsync": False},
        http={"auth": "token", "token": TOKEN},
        pipeline={"enabled": True, "quiet_seconds": 0.5, "poll_interval_s": 0.1, "queue_size": 512},
        cluster={"role": "ingest", "broker_url": broker.url, "queue": queue, "node_id": "bench"},
    )
    node = Node(settings)
    node.start()
    # throughput only: a placeholder threshold, since other passes make other scores than the
    # weights' threshold was chosen with (the workers refuse it then)
    model = {"mc_samples": args.mc_samples, "cpu_threads": 1, "lstv_threshold": 0.5}
    workers = [Worker(work, f"b{i}", broker, queue, model=model).start() for i in range(count)]
    out: dict[str, Any] = {"workers": count}
    try:
        for worker in workers:
            worker.wait_ready()
        if count == 1 and args.latency:
            hops, added, fetches, own, record = [], [], [], [], []
            for seed in seeds[: args.latency]:
                files, uid = make_study(args.work, seed + 10_000)
                before = round_trip_sum()
                send(files, settings.dicom.port).wait()
                wait_done(node, [uid])
                job = node.pipeline.jobs.get(uid)
                result = job.result()
                taken = job.started_at + round_trip_sum() - before  # result taken by the node
                # added by the cluster: complete → published → worker, its fetch, result → node
                hop = taken - job.complete_at - result["worker_seconds"]
                hops.append(hop)
                added.append(hop + result["fetch_seconds"])
                record.append(job.finished_at - taken)  # SR + SC written, outbox rows
                fetches.append(result["fetch_seconds"])
                own.append(result["worker_seconds"])
            out.update(
                broker_hop_ms_median=round(1000 * statistics.median(hops), 1),
                broker_hop_ms_max=round(1000 * max(hops), 1),
                added_ms_median=round(1000 * statistics.median(added), 1),
                fetch_ms_median=round(1000 * statistics.median(fetches), 1),
                worker_s_median=round(statistics.median(own), 3),
                ingest_record_ms_median=round(1000 * statistics.median(record), 1),
            )
        studies = [make_study(args.work, seed) for seed in seeds]
        senders = [send(files, settings.dicom.port) for files, _ in studies]
        for sender in senders:
            sender.wait()
        uids = [uid for _, uid in studies]
        wait_done(node, uids)
        jobs = [node.pipeline.jobs.get(uid) for uid in uids]
        span = max(j.finished_at for j in jobs) - min(j.started_at for j in jobs)
        by_worker: dict[str, int] = {}
        for job in jobs:
            name = job.result().get("worker", "?")
            by_worker[name] = by_worker.get(name, 0) + 1
        busy = sum(j.result().get("worker_seconds", 0.0) for j in jobs)
        out.update(
            # workers' own time over the span: near 1 = the workers are the bottleneck (more
            # workers help if there are cores or GPUs for them); low = they wait for tasks
            worker_utilisation=round(busy / (span * count), 2),
            worker_s_median_under_load=round(
                statistics.median(j.result().get("worker_seconds", 0.0) for j in jobs), 3
            ),
            studies=len(uids),
            span_s=round(span, 2),
            studies_per_minute=round(60 * len(uids) / span, 1),
            by_worker=by_worker,
        )
    finally:
        for worker in workers:
            worker.stop()
        node.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--latency", type=int, default=5, help="studies for the hop latency")
    parser.add_argument("--mc-samples", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/scp-bench-cluster"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    broker = RabbitMQ(args.work).start()
    results = []
    try:
        for count in args.workers:
            seeds = [1000 * count + k for k in range(args.studies)]
            results.append(run(args, broker, count, seeds))
            print(json.dumps(results[-1]), flush=True)
    finally:
        broker.stop()
    if len(results) >= 2:
        base = results[0]["studies_per_minute"]
        for r in results[1:]:
            print(f"{r['workers']} workers: {r['studies_per_minute'] / base:.2f}x one worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
