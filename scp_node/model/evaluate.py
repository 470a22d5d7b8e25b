"""Held-out evaluation on fresh phantoms: localization error, LSTV vs normal screening, the quality
gate, under site variation ("stress rows": each variation alone, then all combined).

Seeds start at :data:`datasets.EVALUATION_SEED0`, disjoint from training and validation. The error
is the distance (mm) between the predicted and the true disc centre within the sagittal plane (the
component along the slice normal is left out: the prediction lies on the mid-sagittal slice the
engine chose). Sensitivity, specificity and AUROC are over assessable studies; the not-assessable
rate is reported beside them. AUROC ranks the scores; sensitivity and specificity count the
verdicts the node reports ("LSTV suspected"), so a score over the threshold that was held back
for want of an anatomical sign (:func:`scp_node.model.uncertainty.uncorroborated`) is a negative.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scp_node.model import datasets, variations
from scp_node.model.engine import LocalizerEngine
from scp_node.model.metrics import auroc, roc_points, sens_spec
from scp_node.model.phantom import Phantom, generate
from scp_node.result import DISC_LEVELS, StudyResult
from scp_node.series import SeriesVolume

VARIANTS = ("normal", "lumbarization", "sacralization")

#: A stress row: (variant, seed) -> phantom presented one way.
PhantomMaker = Callable[[str, int], Phantom]


def _rng(seed: int, variant: str) -> np.random.Generator:
    return np.random.default_rng([seed, VARIANTS.index(variant), 17])


def _plain(size: int = 256, slices: int = 15, **kw: Any) -> PhantomMaker:
    return lambda variant, seed: generate(variant, seed, slices=slices, size=size, **kw)


def _transformed(transform: Callable[[Phantom, np.random.Generator], Phantom]) -> PhantomMaker:
    return lambda variant, seed: transform(
        generate(variant, seed, slices=15, size=256), _rng(seed, variant)
    )


def _rotated(variant: str, seed: int) -> Phantom:
    sign = 1.0 if _rng(seed, variant).random() < 0.5 else -1.0
    return generate(variant, seed, slices=15, size=256, acquisition={"rotation_deg": 15.0 * sign})


def _off_centre(variant: str, seed: int) -> Phantom:
    rng = _rng(seed, variant)
    lateral = 10.0 if rng.random() < 0.5 else -10.0
    ph = generate(variant, seed, slices=15, size=256, acquisition={"lateral_offset_mm": lateral})
    return variations.off_centre(ph, rng, 45.0)


def _stack_off_midline(variant: str, seed: int) -> Phantom:
    """The slice stack centred 20 mm to one side of the spine (a mis-centred stack, or a
    scoliotic lumbar spine): the mid-sagittal slice lies near the stack's edge."""
    lateral = 20.0 if _rng(seed, variant).random() < 0.5 else -20.0
    return generate(variant, seed, slices=15, size=256, acquisition={"lateral_offset_mm": lateral})


def _combined(variant: str, seed: int) -> Phantom:
    return datasets.site_phantom(variant, seed, _rng(seed, variant))


#: Each variation alone (on the generator's own random acquisition), then all combined.
STRESS_ROWS: dict[str, PhantomMaker] = {
    "baseline (256 px, 15 slices)": _plain(),
    "anterior on the right (flip)": _transformed(
        lambda ph, _rng: variations.flip_anterior_posterior(ph)
    ),
    "pixel spacing 0.5 mm (600 px)": _plain(size=600, spacing_mm=0.5),
    "pixel spacing 1.1 mm (272 px)": _plain(size=272, spacing_mm=1.1),
    "pixel spacing 0.4 mm (640 px)": _plain(size=640, spacing_mm=0.4),
    "pixel spacing 1.2 mm (256 px)": _plain(size=256, spacing_mm=1.2),
    "11 slices": _plain(slices=11),
    "19 slices": _plain(slices=19),
    "9 slices": _plain(slices=9),
    "25 slices": _plain(slices=25),
    "3-D thin slices (1 mm, 41 partitions)": _plain(slices=41, slice_thickness_mm=1.0),
    "high noise (sigma 0.12, SNR ~8)": _plain(acquisition={"noise_sigma": 0.12}),
    "strong bias field (x1.6)": _plain(acquisition={"bias_strength": 1.6}),
    "rotation 15 deg": _rotated,
    "off-centre (10 mm lateral, 45 mm in-plane)": _off_centre,
    "stack 20 mm off the midline": _stack_off_midline,
    "partial coverage (T12-S2 window)": _transformed(variations.coverage_window),
    "anterior saturation band": _transformed(variations.saturation_band),
    "all combined (site-like)": _combined,
}


def in_plane_errors(result: StudyResult, ph: Phantom, volume: SeriesVolume) -> dict[str, float]:
    """Per level distance (mm) in the sagittal plane between prediction and truth."""
    normal = np.cross(volume.row_direction, volume.column_direction)
    normal = normal / np.linalg.norm(normal)
    truth = {d.level: np.asarray(d.patient_xyz) for d in ph.discs}
    out = {}
    for f in result.levels:
        if f.level in truth:
            d = np.asarray(f.patient_xyz) - truth[f.level]
            out[f.level] = float(np.linalg.norm(d - (d @ normal) * normal))
    return out


def evaluate_row(
    engine: LocalizerEngine,
    make: PhantomMaker,
    normals: int,
    per_lstv_variant: int,
    seed0: int = datasets.EVALUATION_SEED0,
    load: Callable[[Phantom], SeriesVolume] = datasets.phantom_series,
) -> dict[str, Any]:
    """The screen on ``normals`` + 2 x ``per_lstv_variant`` phantoms made by ``make``."""
    started = time.perf_counter()
    errors: list[float] = []
    per_level: dict[str, list[float]] = {lv: [] for lv in DISC_LEVELS}
    scores, labels, variants, ms = [], [], [], []
    suspected: list[float] = []
    review = not_assessable = held_back = 0
    reasons: dict[str, int] = {}
    plan = [("normal", normals), ("lumbarization", per_lstv_variant)]
    plan.append(("sacralization", per_lstv_variant))
    for variant, count in plan:
        for i in range(count):
            ph = make(variant, seed0 + i)
            volume = load(ph)
            res = engine.analyze(volume)
            ms.append(res.inference_ms)
            review += int(res.needs_review)
            if not res.assessable:
                not_assessable += 1
                key = res.not_assessable_reason.split("(")[0].strip()
                reasons[key] = reasons.get(key, 0) + 1
                continue
            scores.append(res.lstv_score)
            suspected.append(float(res.lstv_suspected))
            held_back += int(bool(res.held_back))
            labels.append(0 if variant == "normal" else 1)
            variants.append(variant)
            if variant == "normal":
                for lv, err in in_plane_errors(res, ph, volume).items():
                    errors.append(err)
                    per_level[lv].append(err)
    s, y = np.array(scores), np.array(labels)
    sens, spec = sens_spec(np.array(suspected), y, 0.5)  # the verdicts, not the scores
    fpr, tpr = roc_points(s, y) if len(s) else (np.array([]), np.array([]))
    total = sum(c for _, c in plan)
    by_variant = {
        v: [float(x) for x, vv in zip(scores, variants, strict=True) if vv == v] for v in VARIANTS
    }
    sub_auc = {}
    for v in ("lumbarization", "sacralization"):
        mask = np.array([vv in ("normal", v) for vv in variants], dtype=bool)
        sub_auc[v] = auroc(s[mask], y[mask]) if mask.any() else float("nan")
    return {
        "counts": dict(plan),
        "seed0": seed0,
        "error_mm": {
            "median": float(np.median(errors)) if errors else float("nan"),
            "p95": float(np.percentile(errors, 95)) if errors else float("nan"),
            "max": float(np.max(errors)) if errors else float("nan"),
            "per_level_median": {
                lv: float(np.median(v)) if v else float("nan") for lv, v in per_level.items()
            },
        },
        "auroc": auroc(s, y),
        "auroc_by_variant": sub_auc,
        "threshold": engine.threshold,
        "sensitivity": sens,
        "specificity": spec,
        "not_assessable": not_assessable / total,
        "not_assessable_reasons": reasons,
        "held_back": held_back,
        "needs_review_fraction": review / total,
        "score_median_by_variant": {
            v: float(np.median(x)) if x else float("nan") for v, x in by_variant.items()
        },
        "scores": by_variant,
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "median_inference_ms": float(np.median(ms)),
        "seconds": round(time.perf_counter() - started, 1),
        "weights_sha256": engine.identity.weights_sha256,
    }


def evaluate(
    engine: LocalizerEngine,
    normals: int = 60,
    per_lstv_variant: int = 30,
    seed0: int = datasets.EVALUATION_SEED0,
) -> dict[str, Any]:
    """The model card's headline: held-out site-like phantoms (every variation drawn at random)."""
    report = evaluate_row(engine, _combined, normals, per_lstv_variant, seed0)
    report["phantoms"] = (
        "site-like: matrix 256-512, 9-21 slices, either side, coverage, acquisition"
    )
    return report


def multiframe_loader(ph: Phantom) -> SeriesVolume:
    """The phantom written as one multi-frame MR instance and read back by the series loader."""
    from scp_node.config import SeriesRules
    from scp_node.phantom_dicom import write_phantom_multiframe
    from scp_node.series import select_and_load

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_phantom_multiframe(Path(tmp), ph)
        selection = select_and_load(paths, SeriesRules())
    if selection.volume is None:
        raise RuntimeError(selection.reason)
    return selection.volume


def stress_table(
    engine: LocalizerEngine, normals: int, per_lstv_variant: int, rows: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_row` for every stress row (or those named)."""
    out = {}
    for name, make in STRESS_ROWS.items():
        if rows and not any(r in name for r in rows):
            continue
        out[name] = evaluate_row(engine, make, normals, per_lstv_variant)
    return out


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
