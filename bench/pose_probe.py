"""Spine-axis normalisation: the MC passes see the lumbar spine at one angle (exploratory).

A deterministic pass on the mid-sagittal slice gives L1-L2 .. L5-S1; when that chain is plausible,
the canonical picture of the context slices is re-made from the source pixels with its axes turned
in the slice plane so that the line from L1-L2 to L5-S1 lies at ``spine_axis_deg`` (the median
of the validation phantoms, 7 degrees from canonical down towards posterior), about the line's
middle. Points go back to source pixels through the turned frames. Configurations: ``none`` (the
shipped engine) and ``axis7``. Table as in ``bench/tta_probe.py`` (thresholds re-chosen on the
validation phantoms by the training command's rule):

    python bench/pose_probe.py --dump a.json validation own
    python bench/pose_probe.py --dump b.json /tmp/third /tmp/fourth /tmp/fifth
    python bench/tta_probe.py --table a.json b.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import build_engine  # noqa: E402
from bench.mc_seeds import study_figures, volumes  # noqa: E402
from scp_node.model import uncertainty as unc  # noqa: E402

CONFIGS: dict[str, float | None] = {"none": None, "axis7": 7.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="validation, own, or folders of studies")
    parser.add_argument("--dump", type=Path, required=True, help="per-study figures (JSON)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings, engine = build_engine(None, 1)
    engine.require_evidence = False
    engine.quality = unc.QualityLimits(max_reference_uncertainty=float("inf"))
    data = []
    for name in args.sets:
        for key, variant, volume in volumes(name, settings):
            rows = {}
            for config in args.configs:
                engine.spine_axis_deg = CONFIGS[config]
                rows[config] = study_figures(engine.analyze(volume))
            data.append({"set": name, "key": key, "variant": variant, "configs": rows})
            print(key, {c: round(r["score"], 3) for c, r in rows.items()}, flush=True)
        args.dump.write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
