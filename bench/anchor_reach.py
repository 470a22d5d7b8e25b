"""How often a sagittal T2 series could show the last rib, the counting anchor a reader uses.

The twelfth rib's head meets T12 about 20-30 mm beside the midline. For each study under the
roots (folders with ``truth.json``), from the sagittal T2 headers and the truth disc centres:
how far the slice stack reaches beside the midline (the disc centres' mean, along the slice
normal), and how far the field reaches above L1-L2 in units of the study's median lumbar gap
(the T12 body lies about 1.5 gaps above L1-L2). Headers only; no model, no pixel data.
docs/model.md, "What would move the lumbarization figures".

    python bench/anchor_reach.py /tmp/third /tmp/fourth /tmp/fifth
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

HEAD = np.array([0.0, 0.0, 1.0])  # patient +z (LPS): towards the head


def t2_headers(folder: Path, series_uid: str) -> list[Dataset]:
    """The headers of the study's sagittal T2 series (the one the truth names)."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "truth.json"):
        ds = dcmread(path, stop_before_pixels=True)
        if ds.SeriesInstanceUID == series_uid:
            out.append(ds)
    return out


def reach(folder: Path) -> tuple[float, float]:
    """(mm the stack reaches beside the midline, field above L1-L2 in median lumbar gaps)."""
    truth = json.loads((folder / "truth.json").read_text())
    headers = t2_headers(folder, truth["t2_series_instance_uid"])
    discs = {d["level"]: np.array(d["patient_xyz"], float) for d in truth["discs"]}
    midline = np.mean(list(discs.values()), axis=0)
    normal = np.array(truth["slice_normal"], float)
    offsets = [float(np.dot(np.array(ds.ImagePositionPatient, float) - midline, normal))
               for ds in headers]  # fmt: skip
    levels = ["L1-L2", "L2-L3", "L3-L4", "L4-L5"]
    gap = float(
        np.median(
            [np.linalg.norm(discs[a] - discs[b]) for a, b in zip(levels, levels[1:], strict=False)]
        )
    )
    ds = headers[0]
    iop = np.array(ds.ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    origin = np.array(ds.ImagePositionPatient, float)
    down, right = iop[3:] * row_mm * (ds.Rows - 1), iop[:3] * col_mm * (ds.Columns - 1)
    corners = [origin + i * down + j * right for i in (0, 1) for j in (0, 1)]
    top = max(float(np.dot(c - discs["L1-L2"], HEAD)) for c in corners)
    return max(abs(min(offsets)), abs(max(offsets))), top / gap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| set | studies | stack reach median mm | >= 20 mm | >= 25 mm | field to T12 body |")
    print("|---|---|---|---|---|---|")
    for root in args.roots:
        rows = [reach(f) for f in sorted(root.iterdir()) if (f / "truth.json").exists()]
        if not rows:
            continue
        side, above = (np.array(v) for v in zip(*rows, strict=True))
        print(
            f"| {root.name} | {len(rows)} | {np.median(side):.0f} | {np.mean(side >= 20):.0%} "
            f"| {np.mean(side >= 25):.0%} | {np.mean(above >= 1.5):.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
