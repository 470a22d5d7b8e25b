"""Does the localizer hesitate at the top of its chain when it counted the spine from the sacrum?

On a lumbar-only field a lumbarization is often localized one segment low: L5-S1 on the mobile
S1-S2 disc and L1-L2 on L2-L3, under a lumbar disc instead of T12-L1. If a localizer trained on
normal spines were less sure of L1-L2 there, the top of the chain would be a counting sign. This
reads the JSON of ``bench/bench_screen.py --json`` and prints, per set, the AUROC of a few
top-of-chain figures for those lumbarizations (assessable, L1-L2 more than ``--shift`` mm from the
truth) against the assessable normals localized right. docs/model.md, "L5-S1 two segments under
L4-L5, and the ninth generator".

    python bench/bench_screen.py /tmp/third /tmp/fourth ... --json screen.json
    python bench/chain_top.py screen.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import auroc  # noqa: E402

Levels = dict[str, dict[str, Any]]


def uncertainty(fig: dict[str, Any]) -> float:
    """The screen's per-level uncertainty, 4 MI + (1 - peak confidence) (uncertainty.py)."""
    return 4.0 * float(fig["mi"] or 0.0) + 1.0 - float(fig["peak"])


def _against_below(value: Callable[[dict[str, Any]], float]) -> Callable[[Levels], float]:
    """L1-L2's figure minus the mean of L2-L3's and L3-L4's (self-normalised, like the score)."""
    return lambda lv: value(lv["L1-L2"]) - (value(lv["L2-L3"]) + value(lv["L3-L4"])) / 2.0


FIGURES: dict[str, Callable[[Levels], float]] = {
    "L1-L2 uncertainty": lambda lv: uncertainty(lv["L1-L2"]),
    "L1-L2 uncertainty - L2-L3/L3-L4": _against_below(uncertainty),
    "L1-L2 entropy - L2-L3/L3-L4": _against_below(lambda f: float(f["entropy"])),
    "1 - L1-L2 peak confidence": lambda lv: 1.0 - float(lv["L1-L2"]["peak"]),
}


def groups(studies: list[dict[str, Any]], shift_mm: float) -> dict[str, dict[str, list[Levels]]]:
    """Per set: "counted low" lumbarizations and "normal" normals (level figures of each)."""
    out: dict[str, dict[str, list[Levels]]] = defaultdict(lambda: defaultdict(list))
    for st in studies:
        if not st.get("assessable") or not st.get("level_figures"):
            continue
        low = st["disc_errors_mm"].get("L1-L2", 0.0) > shift_mm
        if st["variant"] == "lumbarization" and low:
            out[st["set"]]["counted low"].append(st["level_figures"])
        elif st["variant"] == "normal" and not low:
            out[st["set"]]["normal"].append(st["level_figures"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("screen_json", type=Path)
    parser.add_argument("--shift", type=float, default=15.0, help="mm (default 15)")
    args = parser.parse_args(argv)
    by_set = groups(json.loads(args.screen_json.read_text())["studies"], args.shift)
    names = sorted(by_set)
    heads = [f"{n} ({len(by_set[n]['counted low'])})" for n in names]
    print("| figure | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(names))
    for label, figure in FIGURES.items():
        cells = []
        for name in names:
            low, normal = by_set[name]["counted low"], by_set[name]["normal"]
            scores = [figure(lv) for lv in low + normal]
            value = auroc(scores, [True] * len(low) + [False] * len(normal))
            cells.append("-" if value is None else f"{value:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
