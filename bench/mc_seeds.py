"""The Monte-Carlo seed: how much of the screen is the choice of dropout masks.

The T dropout passes of the engine are fixed subnetworks drawn from ``seed``. This screens the
same studies with seeds 0 .. N-1 (each T = 8, the shipped settings, quality gate only), then,
for each seed alone and for the score averaged over the first 2, 4, 8 seeds: the threshold at
95 % specificity on the validation phantoms (the training command's rule), and right / false
alarm / miss / not assessable with AUROC on the project's own held-out phantoms and on
generated study folders (``truth.json``, e.g. the third and fourth generators'):

    python bench/mc_seeds.py --seeds 8 --dump seeds.json validation own /tmp/third /tmp/fourth
    python bench/mc_seeds.py --dump seeds.json          # the table again from the dump

About 3.5 s per study for 8 seeds on one thread (440 studies: 25 min).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import build_engine, dicom_files, find_studies  # noqa: E402
from scp_node.model import datasets, evaluate, train  # noqa: E402
from scp_node.model import uncertainty as unc  # noqa: E402
from scp_node.model.calibration import choose_threshold  # noqa: E402
from scp_node.model.metrics import auroc  # noqa: E402
from scp_node.series import SeriesVolume, select_and_load  # noqa: E402


def volumes(name: str, settings: Any) -> Any:
    """(key, variant, volume) of a set: ``validation``, ``own`` or a folder of studies."""
    if name == "validation":
        jobs = train.validation_jobs(20)
        for job, vol in zip(jobs, datasets.validation_volumes(jobs, 1), strict=True):
            yield f"validation/{job[0]}/{job[1]}", job[2], vol
    elif name == "own":
        for variant, count in (("normal", 60), ("lumbarization", 30), ("sacralization", 30)):
            for i in range(count):
                phantom = evaluate._combined(variant, datasets.EVALUATION_SEED0 + i)
                yield f"own/{variant}/{i}", variant, datasets.phantom_series(phantom)
    else:
        for folder in find_studies([Path(name)]):
            truth = json.loads((folder / "truth.json").read_text())
            selection = select_and_load(dicom_files(folder), settings.series)
            if selection.volume is not None:
                yield str(folder), str(truth.get("variant", "normal")), selection.volume


def study_figures(res: Any) -> dict[str, Any]:
    """The figures of one engine result that the tables recount (quality gate only)."""
    return {
        "score": res.lstv_score,
        "reason": res.not_assessable_reason,
        "junction": res.junction_disc_signal,
        "below": res.below_disc_signal,
        "gap": res.junction_gap_ratio,
        "reference": unc.reference_uncertainty({f.level: f for f in res.levels}),
    }


def per_seed(engine: Any, volume: SeriesVolume, seeds: int) -> list[dict[str, Any]]:
    """The engine's figures on one volume for each seed."""
    rows = []
    for seed in range(seeds):
        engine.seed = seed
        rows.append(study_figures(engine.analyze(volume)))
    engine.seed = 0
    return rows


def combined(
    rows: list[dict[str, Any]], limit: float
) -> tuple[float, str, unc.DiscEvidence, float]:
    """Score, gate reason, disc evidence and gap ratio averaged over ``rows`` (seeds)."""
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("score", "junction", "below", "gap")}
    reference = float(np.mean([r["reference"] for r in rows]))
    geometry = rows[0]["reason"]
    if geometry.startswith("reference levels uncertain"):
        geometry = ""
    reason = geometry or ("reference levels uncertain" if reference > limit else "")
    evidence = unc.DiscEvidence(junction=mean["junction"], below=mean["below"])
    return mean["score"], reason, evidence, mean["gap"]


def counts(items: list[dict[str, Any]], which: list[int], threshold: float, limit: float) -> str:
    """right / false alarms / misses / not assessable, AUROC of the assessable ones."""
    tally = dict.fromkeys(("right", "fa", "miss", "na"), 0)
    scores, labels = [], []
    for item in items:
        score, reason, evidence, gap = combined([item["seeds"][s] for s in which], limit)
        if not reason and score >= threshold:
            reason = unc.uncorroborated(evidence, unc.junction_shortening(gap))
        lstv = item["variant"] != "normal"
        if reason:
            tally["na"] += 1
            continue
        scores.append(score)
        labels.append(int(lstv))
        flagged = score >= threshold
        tally["right" if flagged == lstv else ("fa" if flagged else "miss")] += 1
    area = auroc(np.asarray(scores), np.asarray(labels)) if len(set(labels)) == 2 else float("nan")
    return f"{tally['right']}/{tally['fa']}/{tally['miss']}/{tally['na']} {area:.2f}"


def table(data: list[dict[str, Any]], limit: float) -> str:
    sets: dict[str, list[dict[str, Any]]] = {}
    for item in data:
        sets.setdefault(item["set"], []).append(item)
    seeds = len(data[0]["seeds"])
    configs = [(f"seed {s}", [s]) for s in range(seeds)]
    configs += [(f"mean of {n} seeds", list(range(n))) for n in (2, 4, 8) if n <= seeds]
    others = [name for name in sets if name != "validation"]
    lines = [
        "| masks | threshold | validation AUROC | "
        + " | ".join(f"{name}: right/FA/miss/NA AUROC" for name in others)
        + " |",
        "|---" * (3 + len(others)) + "|",
    ]
    for label, which in configs:
        scored = [combined([it["seeds"][s] for s in which], limit) for it in sets["validation"]]
        kept = [
            (s[0], it["variant"])
            for s, it in zip(scored, sets["validation"], strict=True)
            if not s[1]
        ]
        threshold = choose_threshold([s for s, v in kept if v == "normal"], 0.95)
        area = auroc(np.array([s for s, _ in kept]), np.array([v != "normal" for _, v in kept]))
        cells = [counts(sets[name], which, threshold, limit) for name in others]
        lines.append(f"| {label} | {threshold:.3f} | {area:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", help="validation, own, or folders of studies")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--dump", type=Path, required=True, help="per-seed figures (JSON)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings, engine = build_engine(None, 1)
    engine.require_evidence = False  # gate only: the rule is applied to the combined score
    limit = engine.quality.max_reference_uncertainty
    if args.sets:
        if "validation" not in args.sets:
            parser.error("the thresholds need the 'validation' set")
        data = []
        for name in args.sets:
            for key, variant, volume in volumes(name, settings):
                seeds = per_seed(engine, volume, args.seeds)
                data.append({"set": name, "key": key, "variant": variant, "seeds": seeds})
            args.dump.write_text(json.dumps(data))
    data = json.loads(args.dump.read_text())
    print(table(data, limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
