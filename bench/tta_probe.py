"""Test-time augmentation as a further uncertainty source (exploratory, 2026-12-03).

Besides the T dropout passes over the context slices, each context slice is also shown to the
network rotated and scaled about the canonical grid's centre; each output map is warped back onto
the unaugmented grid and joins the samples, so the level terms (peak confidence, MI) also carry
how much the localization moves when the picture is turned or zoomed a little. Configurations
(name: list of (degrees, scale)): ``none`` is the shipped engine.

Per study and configuration the engine's figures are dumped (quality gate only); the table gives,
for each configuration, the threshold at 95 % specificity on the validation phantoms (the training
command's rule, with its own reference-uncertainty limit, 1.5 x p99) and right / false alarm /
miss / not assessable and AUROC on the other sets:

    python bench/tta_probe.py --dump a.json validation own          # one process per group
    python bench/tta_probe.py --dump b.json /tmp/third /tmp/fourth /tmp/fifth
    python bench/tta_probe.py --table a.json b.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import build_engine  # noqa: E402
from bench.mc_seeds import study_figures, volumes  # noqa: E402
from scp_node.model import uncertainty as unc  # noqa: E402
from scp_node.model.calibration import choose_threshold  # noqa: E402
from scp_node.model.engine import Encoded, LocalizerEngine  # noqa: E402
from scp_node.model.metrics import auroc  # noqa: E402

CONFIGS: dict[str, list[tuple[float, float]]] = {
    "none": [],
    "rot5": [(5.0, 1.0), (-5.0, 1.0)],
    "rot8s10": [(8.0, 1.0), (-8.0, 1.0), (0.0, 0.9), (0.0, 1.1)],
}


def _theta(degrees: float, scale: float) -> torch.Tensor:
    a = math.radians(degrees)
    return torch.tensor(
        [
            [scale * math.cos(a), -scale * math.sin(a), 0.0],
            [scale * math.sin(a), scale * math.cos(a), 0.0],
        ],
        dtype=torch.float32,
    )


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _inverse(theta: torch.Tensor) -> torch.Tensor:
    m = theta[:, :2]
    inv = torch.linalg.inv(m)
    return torch.cat([inv, torch.zeros(2, 1)], dim=1)


class TTAEngine(LocalizerEngine):
    """The shipped engine whose MC prediction adds rotated / scaled views of each input."""

    augmentations: list[tuple[float, float]] = []

    def predict(
        self, inputs: torch.Tensor, mc: bool = True, encoded: Encoded | None = None
    ) -> np.ndarray:
        base = super().predict(inputs, mc, encoded)
        if not mc or not self.augmentations:
            return base
        parts = [base]
        for degrees, scale in self.augmentations:
            theta = _theta(degrees, scale)
            maps = super().predict(_warp(inputs, theta), mc, None)  # [K, T, L, S, S]
            k, t = maps.shape[:2]
            flat = torch.from_numpy(maps.reshape(k * t, *maps.shape[2:]))
            back = _warp(flat, _inverse(theta)).clamp(min=0).numpy()
            back = unc.normalise(back)
            parts.append(back.reshape(maps.shape))
        return np.concatenate(parts, axis=1)


def tally(items: list[dict[str, Any]], config: str, threshold: float, limit: float) -> str:
    counts = dict.fromkeys(("right", "fa", "miss", "na"), 0)
    scores, labels = [], []
    for item in items:
        row = item["configs"][config]
        reason = row["reason"]
        if reason.startswith("reference levels uncertain"):
            reason = ""
        if not reason and row["reference"] > limit:
            reason = "reference"
        if not reason and row["score"] >= threshold:
            evidence = unc.DiscEvidence(junction=row["junction"], below=row["below"])
            reason = unc.uncorroborated(evidence, unc.junction_shortening(row["gap"]))
        lstv = item["variant"] != "normal"
        if reason:
            counts["na"] += 1
            continue
        scores.append(row["score"])
        labels.append(int(lstv))
        flagged = row["score"] >= threshold
        counts["right" if flagged == lstv else ("fa" if flagged else "miss")] += 1
    area = auroc(np.asarray(scores), np.asarray(labels)) if len(set(labels)) == 2 else float("nan")
    return f"{counts['right']}/{counts['fa']}/{counts['miss']}/{counts['na']} {area:.2f}"


def table(data: list[dict[str, Any]]) -> str:
    sets: dict[str, list[dict[str, Any]]] = {}
    for item in data:
        sets.setdefault(item["set"], []).append(item)
    others = [name for name in sets if name != "validation"]
    lines = [
        "| config | threshold | limit | validation AUROC, NA | "
        + " | ".join(f"{name}" for name in others)
        + " |",
        "|---" * (4 + len(others)) + "|",
    ]
    for config in data[0]["configs"]:
        val = sets["validation"]
        ref = np.array([it["configs"][config]["reference"] for it in val])
        limit = max(0.3, 1.5 * float(np.percentile(ref, 99)))
        kept = [
            (it["configs"][config]["score"], it["variant"])
            for it in val
            if not it["configs"][config]["reason"] and it["configs"][config]["reference"] <= limit
        ]
        threshold = choose_threshold([s for s, v in kept if v == "normal"], 0.95)
        area = auroc(np.array([s for s, _ in kept]), np.array([v != "normal" for _, v in kept]))
        cells = [tally(sets[name], config, threshold, limit) for name in others]
        lines.append(
            f"| {config} | {threshold:.3f} | {limit:.2f} | {area:.3f}, {len(val) - len(kept)} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", help="validation, own, or folders of studies")
    parser.add_argument("--dump", type=Path, help="per-study figures (JSON)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--table", nargs="*", type=Path, help="dumps to tabulate")
    args = parser.parse_args(argv)
    if args.table:
        data = [item for path in args.table for item in json.loads(path.read_text())]
        print(table(data))
        return 0
    torch.set_num_threads(1)
    settings, engine = build_engine(None, 1)
    engine.__class__ = TTAEngine
    engine.require_evidence = False
    engine.quality = unc.QualityLimits(max_reference_uncertainty=float("inf"))
    data = []
    for name in args.sets:
        for key, variant, volume in volumes(name, settings):
            rows = {}
            for config in args.configs:
                engine.augmentations = CONFIGS[config]
                rows[config] = study_figures(engine.analyze(volume))
            data.append({"set": name, "key": key, "variant": variant, "configs": rows})
            print(key, {c: round(r["score"], 3) for c, r in rows.items()}, flush=True)
        args.dump.write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
