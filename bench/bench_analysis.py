"""Analysis memory (peak RSS) and time of one study, in a fresh process per measurement.

Cases (phantom data written once under ``--work``):

* ``series``: one sagittal T2 series of ``--slices`` (200) 512x512 16-bit slices.
* ``study``: the same series plus decoy series up to ``--instances`` (1,000) instances: axial T2,
  sagittal T1 and sagittal STIR copies of it (other Series/SOP Instance UIDs).

Each measurement runs ``analyze_study`` and then builds the SR and Secondary Capture the way the
model worker does, in a new Python process, so the peaks do not mix. It prints the resident set
after importing torch, after loading the model, and the process peak (VmHWM) during the analysis.
``--baseline DIR`` measures another checkout (e.g. ``git worktree add /tmp/base main``) in the same
run, alternating with this one round by round.

``--node``: also the whole node (``scp-node serve``, default configuration, no destination): the
cases are sent one after the other (the next once the previous job has finished) by DCMTK
``storescu``, one association each; the peak resident set of the node's processes is reset once
the last instance is acknowledged, and read when the job has finished: the node's own figure for
"analysing a 200-slice series" (ingest peaks excluded), for a first and a later study.

    python bench/bench_analysis.py [--rounds 3] [--baseline /tmp/base] [--work /tmp/scp-bench-mem]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Runs in the measured checkout (its scp_node on PYTHONPATH); prints one JSON line.
CHILD = r"""
import json, sys, time
from pathlib import Path
from types import SimpleNamespace

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024.0
    return 0.0

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:  # Linux >= 4.0: VmHWM := VmRSS
        f.write("5")

out = {"start_mb": status("VmRSS")}
import torch
out["torch_mb"] = status("VmRSS")
from scp_node.analysis import analyze_study
from scp_node.config import load_settings
from scp_node.model.engine import LocalizerEngine
from scp_node.pipeline.worker import ModelWorker
import pydicom
settings = load_settings(None)
engine = LocalizerEngine.from_settings(settings.model)
out["model_mb"] = status("VmRSS")
paths = sorted(p for p in Path(sys.argv[1]).rglob("*.dcm"))
records = []
for p in paths:
    ds = pydicom.dcmread(p, stop_before_pixels=True,
                         specific_tags=["SOPInstanceUID", "SeriesInstanceUID"])
    records.append(SimpleNamespace(path=p, sop_instance_uid=str(ds.SOPInstanceUID),
                                   series_uid=str(ds.SeriesInstanceUID), source="received"))
del ds
reset_peak()
out["before_mb"] = status("VmRSS")
started = time.perf_counter()
result = analyze_study(paths, settings, engine)
out["analyze_s"] = time.perf_counter() - started
out["stages"] = dict(getattr(engine, "timings", {}) or {})
out["device"] = engine.device_name
worker = ModelWorker(settings, None, None, None, None, None)
started = time.perf_counter()
datasets = worker._reports(result, records)
out["report_s"] = time.perf_counter() - started
out["peak_mb"] = status("VmHWM")
out["result"] = {k: v for k, v in result.to_json().items() if k not in ("inference_ms", "device")}
out["reports"] = [str(d.SOPInstanceUID) for d in datasets]
print(json.dumps(out))
"""


def make_data(work: Path, slices: int, instances: int, cases: list[str]) -> dict[str, Path]:
    """The 200-slice series and the 1,000-instance study (cached), those in ``cases``."""
    sys.path.insert(0, str(ROOT))
    from scp_node.phantom_dicom import write_phantom

    series = work / f"series-{slices}"
    if not (series / "truth.json").exists():
        write_phantom(series, "normal", seed=7, slices=slices, size=512)
    out = {"series": series} if "series" in cases else {}
    if "study" in cases:
        study = out["study"] = work / f"study-{instances}"
        if not (study / "done").exists():
            _write_decoys(series, study, instances - slices)
            (study / "done").write_text("")
    return out


def _write_decoys(series: Path, study: Path, count: int) -> None:
    """Link the target series into ``study`` and add ``count`` decoy instances (other series)."""
    import pydicom
    from pydicom.uid import generate_uid

    target = study / "target"
    target.mkdir(parents=True, exist_ok=True)
    sources = sorted(series.glob("IM*.dcm"))
    for path in sources:
        if not (target / path.name).exists():
            os.link(path, target / path.name)
    kinds = [
        ("ax T2 TSE", [1, 0, 0, 0, 1, 0]),  # axial: not sagittal
        ("sag T1 TSE", None),  # excluded by description
        ("sag STIR", None),  # excluded by description
    ]
    for n in range(count):
        name, orientation = kinds[n % len(kinds)]
        folder = study / f"decoy-{n % len(kinds)}"
        folder.mkdir(exist_ok=True)
        ds = pydicom.dcmread(sources[(n // len(kinds)) % len(sources)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(series), name])
        ds.SeriesDescription = name
        ds.SeriesNumber = 10 + n % len(kinds)
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(series), name, str(n)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if orientation is not None:
            ds.ImageOrientationPatient = orientation
        ds.save_as(folder / f"D{n:05d}.dcm", enforce_file_format=True)


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (receiving processes, where the node has several)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            out += _tree_pids(int(child))
    return out


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def measure_node(tree: Path, folders: list[Path], work: Path) -> list[dict[str, object]]:
    """Peak RSS of a node (all its processes) while it analyses each of ``folders`` in turn
    (each sent by storescu once the previous study's job has finished)."""
    import sqlite3
    import time

    sys.path.insert(0, str(ROOT))
    from tests.conftest import free_port
    from tests.node_process import NodeProcess, write_toml

    port = free_port()
    data = work / f"node-data-{port}"
    config = work / f"node-{port}.toml"
    write_toml(
        config,
        {
            "dicom": {"port": port},
            "storage": {"data_dir": str(data), "min_free_mb": 1},
            "http": {"enabled": False},
            "log": {"level": "WARNING"},
            "pipeline": {"quiet_seconds": 3.0, "poll_interval_s": 0.1},
        },
    )
    node = NodeProcess(config, port)
    saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = str(tree)
    os.chdir(tree)  # ``python -m`` puts the working directory first on sys.path
    try:
        node.start()
    finally:
        os.chdir(cwd)
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
    rows: list[dict[str, object]] = []
    try:
        assert node.process is not None
        time.sleep(8.0)  # model loaded (and warmed up) before the study comes
        for n, folder in enumerate(folders, 1):
            files = sorted(str(p) for p in folder.rglob("*.dcm"))
            subprocess.run(
                ["/usr/bin/storescu", "-aet", "PACS", "-aec", "LSTV_NODE", "127.0.0.1", str(port)]
                + files,
                env={**os.environ, "TCP_NODELAY": "1"},
                check=True,
                capture_output=True,
            )
            pids = _tree_pids(node.process.pid)
            after_ingest = max(_hwm_mb(p) for p in pids)
            for pid in pids:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            before = max(_hwm_mb(p) for p in pids)  # = the resident set now
            deadline = time.monotonic() + 300
            done: list[str] = []
            while time.monotonic() < deadline:
                with sqlite3.connect(data / "index.sqlite3") as db:
                    done = [
                        r[0]
                        for r in db.execute("SELECT state FROM jobs")
                        if r[0] in ("reported", "not_applicable", "failed", "queued", "shadow")
                    ]
                if len(done) >= n:
                    break
                time.sleep(0.2)
            peak = max(_hwm_mb(p) for p in _tree_pids(node.process.pid))
            rows.append(
                {
                    "ingest_peak_mb": after_ingest,
                    "before_mb": before,
                    "analysis_peak_mb": peak,
                    "state": ",".join(done),
                }
            )
        return rows
    finally:
        node.stop()


def measure(tree: Path, folder: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tree,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--cases", nargs="+", default=["series", "study"], help="series, study")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scp-bench-mem"))
    parser.add_argument("--node", action="store_true", help="also the whole node (storescu in)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cases = make_data(args.work, args.slices, args.instances, args.cases)
    trees = {"this": ROOT} | ({"baseline": args.baseline} if args.baseline else {})
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}
    for _ in range(args.rounds):
        for case, folder in cases.items():
            for name, tree in trees.items():
                runs.setdefault((case, name), []).append(measure(tree, folder))
    print(f"device: {next(iter(runs.values()))[0]['device']}")
    print(
        "| case | checkout | torch MB | + model MB | peak RSS MB | analyse s "
        "(decode / canonical / model) | SR+SC s |"
    )
    print("|---|---|---|---|---|---|---|")
    for (case, name), rows in runs.items():

        def med(key: str, rows: list[dict[str, object]] = rows) -> float:
            return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]

        stages = [
            statistics.median(float(r["stages"][k]) for r in rows)  # type: ignore[index]
            for k in ("decode_s", "canonical_s", "model_s")
            if all(k in r["stages"] for r in rows)  # type: ignore[operator]
        ]
        split = " (" + " / ".join(f"{v:.2f}" for v in stages) + ")" if stages else ""
        print(
            f"| {case} | {name} | {med('torch_mb'):.0f} | {med('model_mb'):.0f} | "
            f"**{med('peak_mb'):.0f}** | {med('analyze_s'):.2f}{split} | {med('report_s'):.2f} |"
        )
    if args.node:
        print(
            "\n| node | case | peak RSS up to the last C-STORE MB | RSS then MB "
            "| peak RSS while analysing MB | job |"
        )
        print("|---|---|---|---|---|---|")
        # a first and a second 200-slice study in one node; the 1,000-instance one in another
        # (its target series is the first study's: sent to the same node it would reopen it)
        second = args.work / f"series-{args.slices}-b"
        if not (second / "truth.json").exists():
            from scp_node.phantom_dicom import write_phantom

            write_phantom(second, "normal", seed=8, slices=args.slices, size=512)
        runs_by_node = [[("series", cases["series"]), ("2nd series", second)]]
        if "study" in cases:
            runs_by_node.append([("study", cases["study"])])
        for name, tree in trees.items():
            for run in runs_by_node:
                rows = measure_node(tree, [folder for _, folder in run], args.work)
                for (case, _), row in zip(run, rows, strict=True):
                    print(
                        f"| {name} | {case} | {row['ingest_peak_mb']:.0f} | "
                        f"{row['before_mb']:.0f} | **{row['analysis_peak_mb']:.0f}** | "
                        f"{row['state']} |"
                    )
    if args.baseline:
        for case in cases:
            same = runs[(case, "this")][0]["result"] == runs[(case, "baseline")][0]["result"]
            reports = runs[(case, "this")][0]["reports"] == runs[(case, "baseline")][0]["reports"]
            print(f"{case}: results identical: {same}; report UIDs identical: {reports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
