"""The LSTV screen on the same studies with an acquisition artefact that real sagittal lumbar
T2 series often carry and none of the project's generators draws: an anterior saturation band.

Radiographers place a spatial saturation slab (a "sat band") over the abdomen in front of the
lumbar spine, parallel to it, so that aortic pulsation and bowel motion do not ghost across the
spine. In the sagittal images it is a dark strip over the prevertebral tissue, a few centimetres
wide, often clipping the front of the vertebral bodies.

This bench takes generated study folders (``truth.json`` with the true disc centres in patient
mm) and darkens the sagittal T2 series of each study inside such a slab, placed from the true
discs as a radiographer would place it on the localizer: parallel to the L1-L2 -> L5-S1 line,
its posterior face 12-30 mm in front of the most anterior disc centre, 30-70 mm thick, 5-25 % of
the signal left, 3 mm soft edges (the slab is perpendicular to the slices, so every slice has
it). It runs ``scp_node.analysis.analyze_study`` (CPU) on both copies and counts right / false
alarm / miss / not assessable before and after, with how far scores and points moved. Measured,
not judged (exit 0).

    python bench/artefact_probe.py /tmp/fourth /tmp/fifth [--seed 0] [--weights W.pt]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "bench"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import bench_screen  # noqa: E402
from lossless_agreement import changes, summary  # noqa: E402

from scp_node.model import variations  # noqa: E402


def _pixel_points(ds: pydicom.Dataset) -> np.ndarray:
    """Patient mm (rows, cols, 3) of every pixel of a single-frame image."""
    iop = [float(v) for v in ds.ImageOrientationPatient]
    return variations.pixel_points(
        np.array([float(v) for v in ds.ImagePositionPatient]),
        np.array(iop[:3]),
        np.array(iop[3:]),
        (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
        (int(ds.Rows), int(ds.Columns)),
    )


def with_band(study: Path, out: Path, rng: np.random.Generator) -> int:
    """Copy ``study`` to ``out`` with the T2 series darkened in a saturation band; the number
    of images changed."""
    truth = json.loads((study / "truth.json").read_text())
    discs = {d["level"]: np.array(d["patient_xyz"], dtype=float) for d in truth["discs"]}
    band = variations.place_saturation_band(discs, rng)
    shutil.copytree(study, out)
    changed = 0
    for path in bench_screen.dicom_files(out):
        ds = pydicom.dcmread(path)
        if ds.SeriesInstanceUID != truth["t2_series_instance_uid"] or "PixelData" not in ds:
            continue
        if int(ds.get("NumberOfFrames", 1)) != 1:
            raise ValueError(f"{path}: multi-frame images are not handled by this probe")
        pixels = ds.pixel_array
        darker = np.rint(pixels * band.factor(_pixel_points(ds))).astype(pixels.dtype)
        ds.PixelData = darker.tobytes()
        ds.save_as(path)
        changed += 1
    return changed


def outcome(result: dict[str, Any], lstv: bool) -> str:
    """right / fa / miss / na of one study's screen against its truth."""
    if not result["assessable"]:
        return "na"
    return "right" if result["suspected"] == lstv else ("fa" if result["suspected"] else "miss")


def run(
    roots: list[Path], seed: int, threads: int, work: Path, weights: Path | None = None
) -> dict[str, Any]:
    """Screen each study as generated and with a saturation band; tallies and changes."""
    from scp_node.analysis import analyze_study

    settings, engine = bench_screen.build_engine(weights, threads)
    rng = np.random.default_rng(seed)
    tallies: dict[str, Counter[str]] = {"as generated": Counter(), "sat band": Counter()}
    moved: Counter[str] = Counter()
    pairs = []
    for study in bench_screen.find_studies(roots):
        lstv = bool(json.loads((study / "truth.json").read_text())["lstv"])
        before = summary(analyze_study(bench_screen.dicom_files(study), settings, engine))
        copy = work / f"{study.parent.name}-{study.name}"
        with_band(study, copy, rng)
        after = summary(analyze_study(bench_screen.dicom_files(copy), settings, engine))
        shutil.rmtree(copy)
        pairs.append((before, after))
        tallies["as generated"][outcome(before, lstv)] += 1
        tallies["sat band"][outcome(after, lstv)] += 1
        moved[f"{outcome(before, lstv)} -> {outcome(after, lstv)}"] += 1
    return {
        "studies": len(pairs),
        "tallies": {k: dict(v) for k, v in tallies.items()},
        "transitions": dict(moved),
        **changes(pairs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding study folders")
    parser.add_argument("--seed", type=int, default=0, help="random placement of the bands")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped ones)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if not bench_screen.find_studies(args.roots):
        print(f"no study folder (with truth.json) under {[str(r) for r in args.roots]}")
        return 2
    with tempfile.TemporaryDirectory(prefix="artefact-") as work:
        report = run(args.roots, args.seed, args.threads, Path(work), args.weights)
    order = ("right", "fa", "miss", "na")
    for name, tally in report["tallies"].items():
        print(
            f"{name}: right / false alarm / miss / not assessable = "
            + " / ".join(str(tally.get(k, 0)) for k in order)
        )
    print(
        f"verdicts kept {report['verdicts_kept']}/{report['studies']}, score change median "
        f"{report['score_change_median']} max {report['score_change_max']}, point move max "
        f"{report['point_move_max_px']} px"
    )
    moved = {k: v for k, v in report["transitions"].items() if len(set(k.split(" -> "))) == 2}
    print("changes: " + (", ".join(f"{k}: {v}" for k, v in moved.items()) or "none"))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
