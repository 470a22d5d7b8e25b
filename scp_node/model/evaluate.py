"""Held-out evaluation on fresh phantoms: localization error on normals, LSTV vs normal screening.

Seeds start at :data:`datasets.EVALUATION_SEED0`, disjoint from training and validation. The error
is
the in-plane distance (mm) between the predicted and the true disc centre on the sagittal plane.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from scp_node.model import datasets
from scp_node.model.engine import LocalizerEngine
from scp_node.model.metrics import auroc, roc_points, sens_spec
from scp_node.model.phantom import generate
from scp_node.result import DISC_LEVELS, StudyResult


def localization_errors(
    result: StudyResult, truth_px: dict[str, tuple[float, float]], spacing: tuple[float, float]
) -> dict[str, float]:
    """Per level in-plane error in mm (PixelSpacing = row, column spacing)."""
    out = {}
    for f in result.levels:
        if f.level in truth_px:
            tc, tr = truth_px[f.level]
            out[f.level] = float(
                np.hypot((f.pixel_xy[0] - tc) * spacing[1], (f.pixel_xy[1] - tr) * spacing[0])
            )
    return out


def evaluate(
    engine: LocalizerEngine,
    normals: int = 60,
    per_lstv_variant: int = 30,
    size: int = 256,
    slices: int = 15,
    seed0: int = datasets.EVALUATION_SEED0,
) -> dict[str, Any]:
    """Run the engine on held-out phantoms and compute the figures for the model card."""
    started = time.perf_counter()
    errors: list[float] = []
    per_level: dict[str, list[float]] = {lv: [] for lv in DISC_LEVELS}
    scores, labels, variants = [], [], []
    review = 0
    plan = [
        ("normal", normals),
        ("lumbarization", per_lstv_variant),
        ("sacralization", per_lstv_variant),
    ]
    for variant, count in plan:
        for i in range(count):
            ph = generate(variant, seed=seed0 + i, slices=slices, size=size)
            res = engine.analyze(datasets.phantom_series(ph))
            scores.append(res.lstv_score)
            labels.append(0 if variant == "normal" else 1)
            variants.append(variant)
            review += int(res.needs_review)
            if variant == "normal":
                truth = {d.level: (d.col, d.row) for d in ph.discs}
                for lv, err in localization_errors(res, truth, ph.pixel_spacing).items():
                    errors.append(err)
                    per_level[lv].append(err)
    s, y = np.array(scores), np.array(labels)
    sens, spec = sens_spec(s, y, engine.threshold)
    fpr, tpr = roc_points(s, y)
    by_variant = {
        v: [float(x) for x, vv in zip(scores, variants, strict=True) if vv == v]
        for v in ("normal", "lumbarization", "sacralization")
    }
    sub_auc = {}
    for v in ("lumbarization", "sacralization"):
        mask = np.array([vv in ("normal", v) for vv in variants])
        sub_auc[v] = auroc(s[mask], y[mask])
    return {
        "counts": {v: c for v, c in plan},
        "size": size,
        "slices": slices,
        "seed0": seed0,
        "error_mm": {
            "median": float(np.median(errors)),
            "p95": float(np.percentile(errors, 95)),
            "max": float(np.max(errors)),
            "per_level_median": {lv: float(np.median(v)) for lv, v in per_level.items()},
        },
        "auroc": auroc(s, y),
        "auroc_by_variant": sub_auc,
        "threshold": engine.threshold,
        "sensitivity": sens,
        "specificity": spec,
        "needs_review_fraction": review / len(scores),
        "score_median_by_variant": {v: float(np.median(x)) for v, x in by_variant.items()},
        "scores": by_variant,
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "seconds": round(time.perf_counter() - started, 1),
        "weights_sha256": engine.identity.weights_sha256,
    }


def write_roc_png(report: dict[str, Any], path: Path, size: int = 420) -> None:
    """A plain ROC plot with Pillow (no matplotlib needed)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    m = 50
    w = size - 2 * m

    def pt(fx: float, ty: float) -> tuple[float, float]:
        return m + fx * w, size - m - ty * w

    draw.rectangle([pt(0, 1), pt(1, 0)], outline="black")
    for t in (0.25, 0.5, 0.75):
        draw.line([pt(t, 0), pt(t, 1)], fill=(225, 225, 225))
        draw.line([pt(0, t), pt(1, t)], fill=(225, 225, 225))
        draw.text((pt(t, 0)[0] - 10, size - m + 5), f"{t:.2f}", fill="black")
        draw.text((5, pt(0, t)[1] - 5), f"{t:.2f}", fill="black")
    draw.line([pt(0, 0), pt(1, 1)], fill=(160, 160, 160))
    fpr, tpr = report["roc"]["fpr"], report["roc"]["tpr"]
    draw.line([pt(f, t) for f, t in zip(fpr, tpr, strict=True)], fill=(200, 30, 30), width=3)
    sens, spec = report["sensitivity"], report["specificity"]
    x, yy = pt(1 - spec, sens)
    draw.ellipse([x - 5, yy - 5, x + 5, yy + 5], outline=(30, 30, 200), width=2)
    draw.text(
        (m, 12), f"LSTV vs normal (held-out phantoms)  AUROC {report['auroc']:.3f}", fill="black"
    )
    draw.text(
        (m, 28),
        f"o = threshold {report['threshold']:.3f}: sens {sens:.2f} spec {spec:.2f}",
        fill=(30, 30, 200),
    )
    draw.text((size / 2 - 60, size - 20), "1 - specificity (FPR)", fill="black")
    draw.text((5, m - 20), "sensitivity", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
