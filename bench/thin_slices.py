"""Thin-slice (3-D) series against the 2-D series of the same spines: the LSTV screen on both.

Each phantom of the project's generator (held-out seeds from ``--seed0``) is made twice: as its
2-D series (15 slices of the drawn 3-5 mm) and as contiguous thin partitions
(``generate(slice_thickness_mm=...)``, same spine and acquisition). Both go through the shipped
engine (CPU, one thread). ``--consecutive`` reads the context slices as consecutive indices (the
engine before 2026-12-03, afternoon) instead of about ``CONTEXT_SPACING_MM`` apart. Prints, for
the 2-D and the thin series: assessable count, AUROC, sensitivity / specificity at the shipped
threshold, median disc error (mm). Findings: docs/model.md, "Thin-slice 3-D series".

    python bench/thin_slices.py --thickness 1.0 --slices 41 --seed0 330000
    python bench/thin_slices.py --thickness 1.0 --slices 41 --seed0 330000 --consecutive
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from scp_node.config import ModelSettings
from scp_node.model import datasets
from scp_node.model.engine import LocalizerEngine
from scp_node.model.evaluate import in_plane_errors
from scp_node.model.metrics import auroc, sens_spec
from scp_node.model.phantom import generate


def summary(rows: list[dict[str, Any]], key: str, threshold: float) -> str:
    """One line: the screen on the ``key`` ("2d" or "thin") series of every phantom."""
    assessed = [r for r in rows if r[key]["assessable"]]
    scores = np.array([r[key]["score"] for r in assessed])
    labels = np.array([r["variant"] != "normal" for r in assessed], dtype=int)
    sens, spec = sens_spec(scores, labels, threshold)
    error = float(np.median([r[key]["error_mm"] for r in rows]))
    return (
        f"{key:>4}: n {len(rows)}, assessable {len(assessed)}, AUROC {auroc(scores, labels):.3f}, "
        f"sensitivity {sens:.2f}, specificity {spec:.2f}, median disc error {error:.2f} mm"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normals", type=int, default=40, help="and half as many per LSTV type")
    parser.add_argument("--thickness", type=float, default=1.0, help="partition thickness, mm")
    parser.add_argument("--slices", type=int, default=41, help="partitions of the thin series")
    parser.add_argument("--seed0", type=int, default=330000)
    parser.add_argument("--consecutive", action="store_true", help="the old context choice")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engine = LocalizerEngine.from_settings(ModelSettings(device="cpu", cpu_threads=1))
    if args.consecutive:
        spaced = engine.context

        def consecutive(centre: int, n_slices: int, slice_spacing_mm: float = 0.0) -> list[int]:
            return spaced(centre, n_slices, 0.0)  # spacing unknown: consecutive slices

        engine.context = consecutive  # type: ignore[method-assign]
    rows: list[dict[str, Any]] = []
    plan = [("normal", args.normals)]
    plan += [(v, args.normals // 2) for v in ("lumbarization", "sacralization")]
    thin = {"slices": args.slices, "slice_thickness_mm": args.thickness}
    for variant, count in plan:
        for i in range(count):
            row: dict[str, Any] = {"variant": variant, "seed": args.seed0 + i}
            for key, kwargs in (("2d", {"slices": 15}), ("thin", thin)):
                ph = generate(variant, seed=args.seed0 + i, size=256, **kwargs)  # type: ignore[arg-type]
                volume = datasets.phantom_series(ph)
                result = engine.analyze(volume)
                errors = in_plane_errors(result, ph, volume)
                row[key] = {
                    "score": result.lstv_score,
                    "assessable": result.assessable,
                    "error_mm": float(np.median(list(errors.values()))),
                }
            rows.append(row)
    for key in ("2d", "thin"):
        print(summary(rows, key, engine.threshold))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
