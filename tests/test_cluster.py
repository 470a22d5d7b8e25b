"""Scale-out on Celery + RabbitMQ with real parts (issue 16): a RabbitMQ broker started by the test,
ingest nodes (``role = "ingest"``), ``scp-node worker`` processes, Orthanc as the PACS and DCMTK
storescu as a sender. Workers are separate processes (killed with SIGKILL by PID); ingest nodes
run in this process unless a test restarts one (then it is a process too).

Every assertion is an outcome: how many SRs each study has in the PACS, the job's state and
reason, which worker recorded the result, the verdict against the all-in-one analysis.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from scp_node.config import Settings
from scp_node.node import Node
from scp_node.phantom_dicom import write_phantom
from tests.conftest import dimse_destination, free_port, node_settings, storescu
from tests.node_process import NodeProcess, write_toml
from tests.orthanc import Orthanc
from tests.rabbitmq import RabbitMQ

pytest.importorskip("celery")

REPO = Path(__file__).resolve().parent.parent
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
TOKEN = "cluster-test-token"
VARIANTS = ("normal", "sacralization", "lumbarization")
#: Fewer MC-dropout passes and one CPU thread per worker: 2 cores on this machine.
MODEL = {"mc_samples": 2, "cpu_threads": 1}
DEADLINE_S = 150.0


def wait_for(predicate: Any, timeout: float = DEADLINE_S, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    mq = RabbitMQ(tmp_path_factory.mktemp("broker")).start()
    try:
        yield mq
    finally:
        mq.stop()


@pytest.fixture
def queue() -> str:
    """A queue of this test's own: tests share one broker, never each other's tasks."""
    return f"scp_node.analysis.test-{uuid.uuid4().hex[:8]}"


class Worker:
    """``python -m scp_node worker`` as a process; stopped or killed by PID."""

    def __init__(self, root: Path, name: str, broker: RabbitMQ, queue: str, **cluster: Any):
        self.name = name
        self.config = root / f"{name}.toml"
        self.log_path = root / f"{name}.log"
        write_toml(
            self.config,
            {
                "storage": {"data_dir": str(root / name)},
                "http": {"enabled": False},
                "model": MODEL,
                "cluster": {
                    "broker_url": broker.url,
                    "queue": queue,
                    "dicomweb_token": TOKEN,
                    "fetch_backoff_s": 0.2,
                    **cluster,
                },
            },
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("SCP_NODE_CONFIG", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scp_node", "worker", "--config", str(self.config),
                 "--name", self.name],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        return self

    def wait_ready(self) -> Worker:
        wait_for(lambda: f"worker {self.name} ready" in self.log(), 90, f"{self.name} ready")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    """Workers a test starts (appended here) are stopped by PID afterwards."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def cluster_config(
    tmp_path: Path, name: str, broker: RabbitMQ, queue: str, pacs: Orthanc | None, **extra: Any
) -> dict[str, Any]:
    """An ingest node's settings as nested dicts (data under tmp_path/name, loopback ports)."""
    config: dict[str, Any] = {
        "dicom": {"bind_host": "127.0.0.1", "port": free_port(), "ae_title": name.upper()},
        "storage": {"data_dir": str(tmp_path / name), "min_free_mb": 1, "fsync": False},
        "http": {"host": "127.0.0.1", "port": free_port(), "auth": "token", "token": TOKEN},
        "pipeline": {"enabled": True, "quiet_seconds": 1.0, "poll_interval_s": 0.2},
        "delivery": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "poll_interval_s": 0.2},
        "cluster": {
            "role": "ingest",
            "broker_url": broker.url,
            "queue": queue,
            "node_id": name,
            "reconnect_interval_s": 1.0,
        },
    }
    if pacs is not None:
        config["delivery"]["destinations"] = {"pacs": dimse_destination(pacs.aet, pacs.dicom_port)}
        config["delivery"]["default_destinations"] = ["pacs"]
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config


def ingest_settings(*args: Any, **extra: Any) -> Settings:
    return node_settings(args[0], **cluster_config(*args, **extra))


def phantom_study(root: Path, k: int, syntax: str = EXPLICIT_LE) -> tuple[str, list[Path]]:
    files = write_phantom(
        root / f"study{k}", variant=VARIANTS[k % 3], seed=300 + k, slices=12, size=256,
        transfer_syntax=syntax,
    )  # fmt: skip
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID), files


def upload(pacs: Orthanc, files: list[Path]) -> str:
    study_id = ""
    for path in files:
        reply = httpx.post(f"{pacs.url}/instances", content=path.read_bytes(), timeout=30)
        reply.raise_for_status()
        study_id = reply.json()["ParentStudy"]
    return str(study_id)


def srs_by_study(pacs: Orthanc) -> dict[str, int]:
    counts: dict[str, int] = {}
    for orthanc_id in pacs.find_instances(Modality="SR"):
        study = pacs.instance_tags(orthanc_id).get("StudyInstanceUID", "")
        counts[study] = counts.get(study, 0) + 1
    return counts


def all_have_one_sr(pacs: Orthanc, studies: list[str]) -> dict[str, int] | None:
    counts = srs_by_study(pacs)
    return counts if all(counts.get(uid, 0) >= 1 for uid in studies) else None


def local_verdict(files: list[Path]) -> dict[str, Any]:
    """The all-in-one node's analysis of the same files (same code path as its model worker)."""
    from scp_node.analysis import analyze_study
    from scp_node.config import load_settings
    from scp_node.model.engine import LocalizerEngine

    settings = load_settings(model=MODEL)
    return analyze_study(files, settings, LocalizerEngine.from_settings(settings.model)).to_json()


# --- (a) two ingest nodes, two workers ---------------------------------------------------------


def test_two_ingest_nodes_two_workers_each_study_one_sr(tmp_path, broker, queue, workers):
    """12 studies, 6 pushed by Orthanc (J2K lossless) to ingest node A and 6 sent by storescu
    to ingest node B: each gets exactly one SR in Orthanc, both workers work, the verdicts equal
    the all-in-one analysis, and /metrics shows the broker side."""
    pacs = Orthanc(tmp_path)
    a_cfg = cluster_config(tmp_path, "ingest_a", broker, queue, pacs)
    b_cfg = cluster_config(tmp_path, "ingest_b", broker, queue, pacs)
    pacs.extra_config["DicomModalities"] = {
        "ingest_a": ["INGEST_A", "127.0.0.1", a_cfg["dicom"]["port"]]
    }
    pacs.start()
    nodes = [Node(node_settings(tmp_path, **a_cfg)), Node(node_settings(tmp_path, **b_cfg))]
    for node in nodes:
        node.start()
    try:
        for name in ("w1", "w2"):
            workers.append(Worker(tmp_path, name, broker, queue).start())
        for worker in workers:
            worker.wait_ready()
        studies: dict[str, list[Path]] = {}
        for k in range(12):
            uid, files = phantom_study(tmp_path, k, J2K_LOSSLESS if k < 6 else EXPLICIT_LE)
            studies[uid] = files
            if k < 6:
                reply = httpx.post(
                    f"{pacs.url}/modalities/ingest_a/store", json=upload(pacs, files), timeout=120
                )
                reply.raise_for_status()
            else:
                sent = storescu(b_cfg["dicom"]["port"], files, called="INGEST_B")
                assert sent.returncode == 0, sent.stderr
        counts = wait_for(lambda: all_have_one_sr(pacs, list(studies)), what="an SR per study")
        time.sleep(1.0)  # a duplicate SR would arrive within this window: look again
        counts = srs_by_study(pacs)
        assert {uid: counts.get(uid) for uid in studies} == {uid: 1 for uid in studies}

        done_by: dict[str, str] = {}
        for uid in studies:
            node = nodes[0] if nodes[0].pipeline.jobs.get(uid) else nodes[1]
            job = wait_for(
                lambda n=node, u=uid: (j := n.pipeline.jobs.get(u)) and j.state == "delivered" and j,
                what="job delivered",
            )
            done_by[uid] = job.result()["worker"]
        assert set(done_by.values()) == {"w1", "w2"}, "both workers took tasks"
        assert sum(n.pipeline.jobs.get(u) is not None for n in nodes for u in studies) == 12

        # same verdicts as the all-in-one analysis (one study of each phantom variant)
        for uid in list(studies)[6:9]:
            job = nodes[1].pipeline.jobs.get(uid)
            mine, theirs = local_verdict(studies[uid]), job.result()
            for key in ("applicable", "assessable", "lstv_score", "lstv_suspected", "needs_review"):
                assert theirs[key] == mine[key], key
            assert theirs["series_instance_uid"] == mine["series_instance_uid"]

        metrics = httpx.get(f"http://127.0.0.1:{a_cfg['http']['port']}/metrics", timeout=10).text
        assert 'scp_node_cluster_worker_seconds_count{worker="w1"}' in metrics
        assert "scp_node_cluster_queue_depth 0.0" in metrics
        assert "scp_node_cluster_broker_up 1.0" in metrics
        assert "scp_node_cluster_workers 2.0" in metrics
        # the worker fetched J2K as stored (compressed on the wire), and logged no PHI
        logs = "".join(w.log() for w in workers)
        assert "PHANTOM^" not in logs and "PH-" not in logs
    finally:
        for node in nodes:
            node.stop()
        pacs.stop()
