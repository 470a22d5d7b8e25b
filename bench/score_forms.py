"""The score's form: other ways to combine the engine's own figures into the LSTV score.

Screens every study once per weights file (the shipped screen, quality gate only) and keeps,
per level, the figures the score is made of, computed from the same maps three ways: over all
K x T samples (shipped: 3 context slices x 8 dropout passes), within each context slice
(mutual information of its 8 passes and the peak confidence of its mean map, averaged over the
slices) and on the middle context slice alone. Then, for each score form and weights file, the
training command's rule picks the reference limit (1.5 x p99 of the validation studies'
reference uncertainty, at least 0.3) and the threshold (95 % specificity on assessable
validation normals), and the table gives right / false alarm / miss / not assessable with the
AUROC on every set (the ``uncorroborated`` rule applied as shipped):

    python bench/score_forms.py --dump forms.json --weights D= --weights A512=/tmp/a.pt \
        validation own /tmp/third /tmp/fourth
    python bench/score_forms.py --dump forms.json                   # the table again

About 1.1 s per study and weights file on one thread (3 weights x 480 studies: 9 min).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import build_engine  # noqa: E402
from bench.mc_seeds import volumes  # noqa: E402
from scp_node.model import uncertainty as unc  # noqa: E402
from scp_node.model.calibration import choose_threshold  # noqa: E402
from scp_node.model.metrics import auroc  # noqa: E402

Figures = dict[str, Any]


def map_figures(maps: np.ndarray) -> Figures:
    """Per-level MI and peak confidence within each context slice and on the middle one, from
    the engine's maps ``[K, T, levels, S, S]``."""
    k = maps.shape[0]
    out: Figures = {"mi_within": [], "pc_within": [], "mi_mid": [], "pc_mid": []}
    for level in range(5):
        per = maps[:, :, level]
        out["mi_within"].append(float(np.mean([unc.mutual_information(p) for p in per])))
        out["pc_within"].append(float(np.mean([unc.peak_confidence(p.mean(0)) for p in per])))
        out["mi_mid"].append(unc.mutual_information(per[k // 2]))
        out["pc_mid"].append(unc.peak_confidence(per[k // 2].mean(0)))
    return out


def screen(engine: Any, volume: Any) -> Figures:
    """The figures of one study (the engine's maps are caught on their way to the statistics)."""
    caught: list[np.ndarray] = []
    predict = engine.predict

    def catching(inputs: torch.Tensor, mc: bool = True, encoded: Any = None) -> np.ndarray:
        maps = predict(inputs, mc=mc, encoded=encoded)
        if mc:
            caught.append(maps)
        return maps

    engine.predict = catching
    try:
        res = engine.analyze(volume)
    finally:
        engine.predict = predict
    return {
        "reason": res.not_assessable_reason,
        "junction": res.junction_disc_signal,
        "below": res.below_disc_signal,
        "gap": res.junction_gap_ratio,
        "mi": [f.mutual_information or 0.0 for f in res.levels],
        "pc": [f.peak_confidence for f in res.levels],
        **map_figures(caught[-1]),
    }


def level_u(mi: list[float], pc: list[float]) -> np.ndarray:
    """Per level ``4 MI + (1 - peak confidence)`` (:func:`unc.level_uncertainty`)."""
    return np.array([4.0 * m + 1.0 - p for m, p in zip(mi, pc, strict=True)])


def evidence(f: Figures) -> unc.DiscEvidence:
    return unc.DiscEvidence(junction=f["junction"], below=f["below"])


def excess(u: np.ndarray) -> float:
    return float(u[3:].mean() - u[:3].mean())


def disc_terms(f: Figures) -> float:
    e = evidence(f)
    return e.missing + e.extra


#: score form -> (level uncertainty of a study, score from it and the study's figures)
Form = tuple[Callable[[Figures], np.ndarray], Callable[[np.ndarray, Figures], float]]


def _all(f: Figures) -> np.ndarray:
    return level_u(f["mi"], f["pc"])


def _weighted(w: float) -> Callable[[np.ndarray, Figures], float]:
    return lambda u, f: w * excess(u) + disc_terms(f)


FORMS: dict[str, Form] = {
    "shipped: excess + missing + extra": (_all, _weighted(1.0)),
    "excess as a ratio (junction / reference - 1)": (
        _all,
        lambda u, f: float(u[3:].mean() / u[:3].mean() - 1.0) + disc_terms(f),
    ),
    "excess clipped at 0": (_all, lambda u, f: max(0.0, excess(u)) + disc_terms(f)),
    "0.5 x excess": (_all, _weighted(0.5)),
    "disc terms alone": (_all, _weighted(0.0)),
    "excess alone": (_all, lambda u, f: excess(u)),
    "excess of the MI term alone": (
        lambda f: level_u(f["mi"], [1.0] * 5),
        _weighted(1.0),
    ),
    "u within each context slice": (
        lambda f: level_u(f["mi_within"], f["pc_within"]),
        _weighted(1.0),
    ),
    "u of the middle context slice": (
        lambda f: level_u(f["mi_mid"], f["pc_mid"]),
        _weighted(1.0),
    ),
}


def gate(f: Figures, u: np.ndarray, limit: float) -> str:
    """The quality gate's reason, with the reference limit of this form."""
    reason = "" if f["reason"].startswith("reference levels uncertain") else f["reason"]
    return reason or ("reference levels uncertain" if u[:3].mean() > limit else "")


def tally(items: list[Figures], form: Form, threshold: float, limit: float) -> str:
    """right / false alarms / misses / not assessable, AUROC over the assessable ones."""
    counts = dict.fromkeys(("right", "fa", "miss", "na"), 0)
    scores, labels = [], []
    for item in items:
        f = item["figures"]
        u = form[0](f)
        score = form[1](u, f)
        reason = gate(f, u, limit)
        if not reason and score >= threshold:
            reason = unc.uncorroborated(evidence(f), unc.junction_shortening(f["gap"]))
        if reason:
            counts["na"] += 1
            continue
        lstv = item["variant"] != "normal"
        scores.append(score)
        labels.append(lstv)
        flagged = score >= threshold
        counts["right" if flagged == lstv else ("fa" if flagged else "miss")] += 1
    area = auroc(np.array(scores), np.array(labels)) if len(set(labels)) == 2 else float("nan")
    return f"{counts['right']}/{counts['fa']}/{counts['miss']}/{counts['na']} {area:.2f}"


def calibrate(validation: list[Figures], form: Form) -> tuple[float, float, float]:
    """(reference limit, threshold, validation AUROC) by the training command's rule."""
    us = [form[0](item["figures"]) for item in validation]
    limit = max(0.3, 1.5 * float(np.percentile([u[:3].mean() for u in us], 99)))
    kept = [
        (form[1](u, item["figures"]), item["variant"] != "normal")
        for u, item in zip(us, validation, strict=True)
        if not gate(item["figures"], u, limit)
    ]
    threshold = choose_threshold([s for s, lstv in kept if not lstv], 0.95)
    area = auroc(np.array([s for s, _ in kept]), np.array([lstv for _, lstv in kept]))
    return limit, threshold, area


def table(data: list[dict[str, Any]]) -> str:
    sets: dict[str, list[dict[str, Any]]] = {}
    for item in data:
        name = Path(item["set"]).name.rstrip("0123456789") or item["set"]
        sets.setdefault(name, []).append(item)
    blind = [item for item in data if item["set"] not in ("validation", "own")]
    others = [name for name in sets if name != "validation"]
    head = "| weights | score form | limit, threshold | validation AUROC | "
    lines = [
        head + " | ".join(others) + " | all folders |",
        "|---" * (5 + len(others)) + "|",
    ]
    for key in data[0]["weights"]:

        def of(items: list[dict[str, Any]], key: str = key) -> list[Figures]:
            return [{"variant": it["variant"], "figures": it["weights"][key]} for it in items]

        for name, form in FORMS.items():
            limit, threshold, area = calibrate(of(sets["validation"]), form)
            cells = [tally(of(sets[s]), form, threshold, limit) for s in others]
            cells.append(tally(of(blind), form, threshold, limit))
            lines.append(
                f"| {key} | {name} | {limit:.2f}, {threshold:.3f} | {area:.3f} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", help="validation, own, or folders of studies")
    parser.add_argument(
        "--weights", action="append", metavar="NAME=FILE", help="repeatable (FILE empty: shipped)"
    )
    parser.add_argument("--dump", type=Path, required=True, help="per-study figures (JSON)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.sets:
        if "validation" not in args.sets:
            parser.error("the thresholds need the 'validation' set")
        engines = {}
        for spec in args.weights or ["shipped="]:
            name, _, path = spec.partition("=")
            settings, engine = build_engine(Path(path) if path else None, 1)
            engine.require_evidence = False  # quality gate only: the rule is applied per form
            engines[name] = engine
        data = []
        for set_name in args.sets:
            for key, variant, volume in volumes(set_name, settings):
                per = {name: screen(engine, volume) for name, engine in engines.items()}
                data.append({"set": set_name, "key": key, "variant": variant, "weights": per})
            args.dump.write_text(json.dumps(data))
    print(table(json.loads(args.dump.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
