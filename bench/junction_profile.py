"""Diagnostic: the mobile-disc channel along the spine below L4-L5, for studies whose L5-S1 the
localizer put a segment too low (``junction_miscounted``, "not assessable").

For each such study under the roots (folders with ``truth.json``): the disc signal (relative to
the same study's L1-L2 .. L3-L4, as in :func:`scp_node.model.uncertainty.disc_evidence`) at 0.5 ..
1.5 median gaps below L4-L5 along the L4-L5 -> predicted L5-S1 direction, the true L5-S1's
position on that axis, and its peak. It answers whether a missing disc where L5-S1 should be
tells sacralization from a normal (docs/model.md, "Third generator"). Shipped weights, CPU.

    python bench/junction_profile.py /tmp/third [--all]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import dicom_files, find_studies  # noqa: E402
from scp_node.config import Settings  # noqa: E402
from scp_node.model import uncertainty as unc  # noqa: E402
from scp_node.model.engine import LocalizerEngine  # noqa: E402
from scp_node.model.geometry import slice_frames  # noqa: E402
from scp_node.series import select_series  # noqa: E402

FRACTIONS = np.round(np.arange(0.5, 1.55, 0.1), 2)


def profile(engine: LocalizerEngine, maps: np.ndarray, result: Any, frame: Any, truth: dict) -> str:
    """One line: disc signal along the axis below L4-L5 and where the true L5-S1 lies on it."""
    levels = len(engine.levels)
    disc_map = maps[:, :, levels].reshape(-1, *maps.shape[-2:]).mean(axis=0)
    pts = np.array(
        [frame.patient_to_canonical(engine.grid, np.array(lv.patient_xyz)) for lv in result.levels]
    )
    ref = float(np.median([unc._mass_near(disc_map, x, y, 3) for x, y in pts[:3]]))
    med = float(np.median(np.hypot(*np.diff(pts[:4], axis=0).T)))
    axis = (pts[4] - pts[3]) / max(float(np.linalg.norm(pts[4] - pts[3])), 1e-9)
    signal = [unc._mass_near(disc_map, *(pts[3] + axis * med * f), 3) / ref for f in FRACTIONS]
    true_l5s1 = next(d for d in truth["discs"] if d["level"] == "L5-S1")
    at = float(
        np.dot(
            frame.patient_to_canonical(engine.grid, np.array(true_l5s1["patient_xyz"])) - pts[3],
            axis,
        )
        / med
    )
    gap = float(np.linalg.norm(pts[4] - pts[3])) / med
    return (
        f"{truth['variant'][:13]:13s} L5-S1 at {gap:.2f} gaps (true {at:.2f}); "
        f"peak {max(signal):.2f} profile " + " ".join(f"{v:.2f}" for v in signal)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--all", action="store_true", help="every study, not only miscounted ones")
    args = parser.parse_args(argv)
    settings = Settings()
    engine = LocalizerEngine.from_settings(settings.model)
    captured: dict[str, np.ndarray] = {}
    predict = engine.predict

    def keep_maps(inputs: Any, mc: bool = True, encoded: Any = None) -> np.ndarray:
        maps = predict(inputs, mc=mc, encoded=encoded)
        if mc:
            captured["maps"] = maps
        return maps

    engine.predict = keep_maps  # type: ignore[method-assign]
    print(f"fractions of the median gap below L4-L5: {' '.join(f'{f:.1f}' for f in FRACTIONS)}")
    for folder in find_studies(args.roots):
        truth = json.loads((folder / "truth.json").read_text())
        volume = select_series(dicom_files(folder), settings.series, 1).volume
        if volume is None:
            continue
        result = engine.analyze(volume)
        if not args.all and "segment too low" not in result.not_assessable_reason:
            continue
        frame = slice_frames(volume)[result.levels[0].slice_index]
        print(
            f"{folder.name}: " + profile(engine, captured["maps"], result, frame, truth), flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
