"""List the stress-table studies whose disc chain was repaired (one level read on the second
peak of its map, :func:`scp_node.model.uncertainty.repair_chain`, or the levels counted up from
L5-S1 disc by disc, :func:`scp_node.model.uncertainty.count_up_chain`), with their verdict and
the distance of every level from the truth, so a repair can be checked against the anatomy.

    python bench/chain_repairs.py [--normals 20] [--lstv 10] [--rows baseline "11 slices"]
"""

from __future__ import annotations

import argparse

from scp_node.config import ModelSettings
from scp_node.model import datasets
from scp_node.model.engine import LocalizerEngine
from scp_node.model.evaluate import STRESS_ROWS, in_plane_errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--normals", type=int, default=20)
    ap.add_argument("--lstv", type=int, default=10, help="phantoms per LSTV variant")
    ap.add_argument("--rows", nargs="*", help="only rows whose name contains one of these")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    engine = LocalizerEngine.from_settings(ModelSettings(cpu_threads=args.threads))
    plan = (("normal", args.normals), ("lumbarization", args.lstv), ("sacralization", args.lstv))
    repaired = 0
    for name, make in STRESS_ROWS.items():
        if args.rows and not any(r in name for r in args.rows):
            continue
        for variant, count in plan:
            for i in range(count):
                ph = make(variant, datasets.EVALUATION_SEED0 + i)
                volume = datasets.phantom_series(ph)
                res = engine.analyze(volume)
                if not res.levels_repaired:
                    continue
                notes = [w for w in res.warnings if "second peak" in w or "counted up" in w]
                repaired += 1
                verdict = (
                    f"not assessable ({res.not_assessable_reason[:48]})"
                    if not res.assessable
                    else ("LSTV suspected" if res.lstv_suspected else "no LSTV suspected")
                )
                errors = in_plane_errors(res, ph, volume)
                print(f"{name} | {variant} {i} | score {res.lstv_score:.2f} | {verdict}")
                print("    errors mm: " + ", ".join(f"{k} {v:.1f}" for k, v in errors.items()))
                print(f"    {notes[0]}")
    print(f"{repaired} studies repaired")


if __name__ == "__main__":
    main()
