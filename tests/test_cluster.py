"""Scale-out on Celery + RabbitMQ with real parts (issue 16): a RabbitMQ broker started by the test,
ingest nodes (``role = "ingest"``), ``scp-node worker`` processes, Orthanc as the PACS and DCMTK
storescu as a sender. Workers are separate processes (killed with SIGKILL by PID); ingest nodes
run in this process unless a test restarts one (then it is a process too).

Every assertion is an outcome: how many SRs each study has in the PACS, the job's state and
reason, which worker recorded the result, the verdict against the all-in-one analysis.
"""

from __future__ import annotations

import json
import os
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
from tests.cluster_worker import MODEL, TOKEN, Worker
from tests.conftest import dimse_destination, free_port, node_settings, storescu
from tests.node_process import NodeProcess, write_toml
from tests.orthanc import Orthanc
from tests.rabbitmq import RabbitMQ

pytest.importorskip("celery")

REPO = Path(__file__).resolve().parent.parent
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
VARIANTS = ("normal", "sacralization", "lumbarization")
DEADLINE_S = 150.0


def wait_for(
    predicate: Any, timeout: float = DEADLINE_S, what: str = "condition", interval: float = 0.25
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
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
                lambda n=node, u=uid: (
                    (j := n.pipeline.jobs.get(u)) and j.state == "delivered" and j
                ),
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
        # the workers fetched J2K as stored (compressed on the wire), and logged no PHI
        logs = "".join(w.log() for w in workers)
        assert logs.count(f"(as {J2K_LOSSLESS})") == 6 and logs.count(f"(as {EXPLICIT_LE})") == 6
        assert "decoder self-test: JPEG 2000 Image Compression (Lossless Only)" in logs
        assert f"ts={J2K_LOSSLESS} (JPEG 2000 Image Compression (Lossless Only)) plugin=" in logs
        assert "PHANTOM^" not in logs and "PH-" not in logs
    finally:
        for node in nodes:
            node.stop()
        pacs.stop()


# --- (b) a worker killed mid-task ----------------------------------------------------------------


def test_worker_killed_mid_task_its_study_is_redelivered(tmp_path, broker, queue, workers):
    """SIGKILL a worker while it analyses a study: RabbitMQ hands the unacknowledged task to
    the other worker, and every study still gets exactly one SR."""
    pacs = Orthanc(tmp_path).start()
    settings = ingest_settings(tmp_path, "ingest_k", broker, queue, pacs)
    node = Node(settings)
    node.start()
    try:
        for name in ("k1", "k2"):
            workers.append(Worker(tmp_path, name, broker, queue).start())
        for worker in workers:
            worker.wait_ready()
        studies = []
        for k in range(4):
            uid, files = phantom_study(tmp_path, k)
            studies.append(uid)
            assert storescu(settings.dicom.port, files, called="INGEST_K").returncode == 0

        def busy() -> tuple[Worker, str] | None:
            """A worker that fetched a study and is in inference (no result published yet)."""
            for worker in workers:
                lines = [
                    line
                    for line in worker.log().splitlines()
                    if "analysing study" in line or "fetched study" in line or " done in " in line
                ]
                if len(lines) >= 2 and "fetched study" in lines[-1]:
                    return worker, lines[-1].split("fetched study ")[1].split(":")[0]
            return None

        victim, study = wait_for(busy, what="a worker in inference", interval=0.02)
        victim.kill9()
        assert f"study {study} done" not in victim.log(), "killed before its result was sent"
        survivor = next(w for w in workers if w is not victim)
        counts = wait_for(lambda: all_have_one_sr(pacs, studies), what="an SR per study")
        time.sleep(1.0)  # a duplicate SR would arrive within this window: look again
        counts = srs_by_study(pacs)
        assert {uid: counts.get(uid) for uid in studies} == {uid: 1 for uid in studies}
        assert node.pipeline.jobs.get(study).result()["worker"] == survivor.name
        assert f"analysing study {study} generation 1 from ingest_k (attempt 1, redelivered=True)" \
            in survivor.log()  # fmt: skip
        assert all(node.pipeline.jobs.get(uid).state == "delivered" for uid in studies)

        # the same task published once more (as after a crash between publish and bookkeeping):
        # a worker runs it, the ingest node drops the result, the PACS still has one SR
        from scp_node.cluster.app import make_app, task_queue
        from scp_node.cluster.messages import TASK_NAME, AnalysisTask

        bridge = node.pipeline.bridge
        again = AnalysisTask(study, 1, bridge.node_id, bridge.dicomweb_url, bridge.reply_queue.name)
        metrics_url = f"http://127.0.0.1:{settings.http.port}/metrics"
        duplicates = 'scp_node_cluster_results_total{outcome="duplicate"}'

        def duplicate_count() -> float:
            for line in httpx.get(metrics_url, timeout=10).text.splitlines():
                if line.startswith(duplicates):
                    return float(line.split()[-1])
            return 0.0

        before = duplicate_count()
        make_app(settings.cluster).send_task(
            TASK_NAME, args=(again.to_json(),), task_id=again.task_id,
            queue=task_queue(settings.cluster.queue),
        )  # fmt: skip
        wait_for(lambda: duplicate_count() == before + 1, what="the repeated result dropped")
        time.sleep(1.0)
        assert srs_by_study(pacs)[study] == 1
        assert node.pipeline.jobs.get(study).state == "delivered"

        # a study whose only series QIDO already rules out (CT) is not fetched: not applicable
        ct_uid, files = phantom_study(tmp_path, 7)
        for path in files:
            ds = dcmread(path)
            ds.Modality = "CT"
            ds.save_as(path)
        assert storescu(settings.dicom.port, files, called="INGEST_K").returncode == 0
        job = wait_for(
            lambda: (j := node.pipeline.jobs.get(ct_uid)) and j.state == "not_applicable" and j,
            what="not applicable",
        )
        assert "1 series ruled out by their attributes" in job.reason
        assert job.result()["study_instance_uid"] == ct_uid
    finally:
        node.stop()
        pacs.stop()


# --- (c) broker down, ingest node restarted ------------------------------------------------------


def test_broker_down_and_ingest_restart_lose_nothing_repeat_nothing(
    tmp_path, broker, queue, workers
):
    """Tasks dispatched with no worker up; RabbitMQ stopped while more studies arrive (ingest
    keeps accepting, they wait as ``complete``); the ingest node killed with SIGKILL and
    restarted after the broker is back; then a worker: every study exactly one SR, and
    ``scp-node status`` says which worker did each."""
    pacs = Orthanc(tmp_path).start()
    config = cluster_config(tmp_path, "ingest_r", broker, queue, pacs)
    config_path = tmp_path / "ingest_r.toml"
    write_toml(config_path, config)
    port = config["dicom"]["port"]
    ingest = NodeProcess(config_path, port)
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO)
    try:
        ingest.start()
        states = state_reader(Path(config["storage"]["data_dir"]))
        first = [phantom_study(tmp_path, k) for k in range(2)]
        for _uid, files in first:
            assert storescu(port, files, called="INGEST_R").returncode == 0
        wait_for(
            lambda: states() == ["dispatched", "dispatched"],
            what="two tasks dispatched, no worker yet",
        )
        broker.stop()
        second = [phantom_study(tmp_path, k) for k in range(2, 4)]
        for _uid, files in second:
            sent = storescu(port, files, called="INGEST_R")
            assert sent.returncode == 0, "ingest keeps accepting while the broker is down"
        wait_for(
            lambda: states() == ["complete", "complete", "dispatched", "dispatched"],
            what="the new studies wait to be published",
        )  # fmt: skip
        wait_for(lambda: ingest.log().count("broker unavailable") >= 2, what="broker retries")
        ingest.kill9()
        broker.start()
        ingest.start()
        workers.append(Worker(tmp_path, "r1", broker, queue).start())
        studies = [uid for uid, _ in first + second]
        wait_for(lambda: all_have_one_sr(pacs, studies), what="an SR per study")
        wait_for(lambda: states() == ["delivered"] * 4, what="all delivered")
        time.sleep(1.0)  # a duplicate SR would arrive within this window: look again
        counts = srs_by_study(pacs)
        assert {uid: counts.get(uid) for uid in studies} == {uid: 1 for uid in studies}
        rows = status_reader(config_path)()
        assert {r["worker"] for r in rows} == {"r1"}
        text = subprocess.run(
            [sys.executable, "-m", "scp_node", "status", "--config", str(config_path)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout  # fmt: skip
        assert "worker" in text.splitlines()[0] and text.count(" r1 ") == 4
    finally:
        ingest.stop()
        pacs.stop()
        if env_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_path
        if broker.process is None:  # leave the module's broker running for the next test
            broker.start()


def state_reader(data_dir: Path) -> Any:
    """The sorted job states in the node's SQLite index (read while the node runs)."""
    import sqlite3

    def read() -> list[str]:
        path = data_dir / "index.sqlite3"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return sorted(r[0] for r in conn.execute("SELECT state FROM jobs"))
        except sqlite3.OperationalError:  # no jobs table yet
            return []
        finally:
            conn.close()

    return read


def status_reader(config_path: Path) -> Any:
    """``scp-node status --json`` of the node on ``config_path`` (reads its SQLite index)."""

    def read() -> list[dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "scp_node", "status", "--json", "--config", str(config_path)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        return list(json.loads(done.stdout)) if done.returncode == 0 and done.stdout else []

    return read


# --- failure and back-pressure ----------------------------------------------------------------


def test_unreachable_ingest_node_fails_the_study_visibly(tmp_path, broker, queue, workers):
    """The worker cannot reach the DICOMweb URL in the task (a closed port): it retries with
    backoff, then the job is ``failed`` with the reason."""
    settings = ingest_settings(
        tmp_path, "ingest_u", broker, queue, None,
        cluster={"advertise_url": f"http://127.0.0.1:{free_port()}/dicom-web"},
    )  # fmt: skip
    node = Node(settings)
    node.start()
    try:
        workers.append(Worker(tmp_path, "u1", broker, queue, fetch_retries=2).start())
        uid, files = phantom_study(tmp_path, 0)
        assert storescu(settings.dicom.port, files, called="INGEST_U").returncode == 0
        job = wait_for(
            lambda: (j := node.pipeline.jobs.get(uid)) and j.state == "failed" and j,
            what="job failed",
        )
        assert "ingest node unreachable after 3 attempts" in job.reason
        assert job.reason.startswith("worker u1:")
        assert workers[0].log().count("unreachable") >= 2, "retried with backoff first"
        config = tmp_path / "u.toml"
        write_toml(config, {"storage": {"data_dir": str(settings.storage.data_dir)}})
        retry = subprocess.run(
            [sys.executable, "-m", "scp_node", "status", "--retry", uid, "--config", str(config)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert retry.returncode == 0, retry.stdout + retry.stderr
        wait_for(lambda: workers[0].log().count(f"analysing study {uid}") >= 4, what="run again")
        wait_for(lambda: node.pipeline.jobs.get(uid).state == "failed", what="failed again")
    finally:
        node.stop()


def test_broker_queue_depth_refuses_new_studies(tmp_path, broker, queue):
    """No worker: tasks pile up in the broker; at ``max_queue_depth`` the next association's
    C-STORE gets 0xA700 and STOW-RS 503, like the local queue's back-pressure."""
    settings = ingest_settings(
        tmp_path, "ingest_q", broker, queue, None, cluster={"max_queue_depth": 2}
    )
    node = Node(settings)
    node.start()
    try:
        for k in range(2):
            _uid, files = phantom_study(tmp_path, k)
            assert storescu(settings.dicom.port, files[:3], called="INGEST_Q").returncode == 0
        bridge = node.pipeline.bridge
        wait_for(lambda: bridge.broker_depth == 2, what="two tasks in the broker queue")
        _uid, files = phantom_study(tmp_path, 2)
        refused = storescu(settings.dicom.port, files[:3], called="INGEST_Q")
        assert refused.returncode != 0
        assert all(node.index.get(str(dcmread(f).SOPInstanceUID)) is None for f in files[:3])
        stow = httpx.post(
            f"http://127.0.0.1:{settings.http.port}/dicom-web/studies",
            content=b"--b\r\nContent-Type: application/dicom\r\n\r\n"
            + files[0].read_bytes()
            + b"\r\n--b--\r\n",
            headers={
                "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
                "Authorization": f"Bearer {TOKEN}",
            },
            timeout=30,
        )
        assert stow.status_code == 503 and "cluster analysis queue full" in stow.text
        metrics = httpx.get(f"http://127.0.0.1:{settings.http.port}/metrics", timeout=10).text
        assert "scp_node_cluster_queue_depth 2.0" in metrics
        assert "scp_node_cluster_tasks_in_flight 2.0" in metrics
    finally:
        node.stop()


# --- no broker needed -------------------------------------------------------------------------


def test_all_in_one_never_imports_the_broker_client():
    code = (
        "import sys; from scp_node.config import load_settings; from scp_node.node import Node; "
        "import scp_node.cli as c; c.build_parser(); "
        "assert load_settings().cluster.role == 'all'; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')], 'imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_role_ingest_without_broker_url_does_not_start(tmp_path):
    config = tmp_path / "c.toml"
    write_toml(config, {"storage": {"data_dir": str(tmp_path / "d")}})
    done = subprocess.run(
        [sys.executable, "-m", "scp_node", "serve", "--role", "ingest", "--config", str(config)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "broker_url" in done.stdout + done.stderr


def test_result_round_trips_through_json():
    from scp_node.cluster.messages import AnalysisReply
    from scp_node.result import LevelFinding, ModelIdentity, StudyResult

    result = StudyResult(
        study_instance_uid="1.2.3",
        applicable=True,
        series_instance_uid="1.2.3.4",
        levels=(
            LevelFinding("L4-L5", "1.2.3.4.5", 6, (10.5, 20.0), (1.0, 2.0, 3.0), 0.9, 1.2, 0.4),
        ),
        lstv_score=0.7,
        model=ModelIdentity("m", "1", "ab" * 32),
        warnings=("w",),
        evidence=("e1", "e2"),
    )
    wire = json.loads(json.dumps(AnalysisReply("1.2.3", 2, "ok", "w1", result=result.to_json())
                                 .to_json()))  # fmt: skip
    assert StudyResult.from_json(AnalysisReply.from_json(wire).result) == result


def test_multipart_split():
    from scp_node.cluster.fetch import split_multipart

    body = b"--xx\r\nContent-Type: application/dicom\r\n\r\nAB\r\nC\r\n--xx\r\n\r\nD\r\n--xx--\r\n"
    assert list(split_multipart(body, b"xx")) == [("application/dicom", b"AB\r\nC"), ("", b"D")]
