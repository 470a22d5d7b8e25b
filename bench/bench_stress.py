"""Stress-test evaluation of the LSTV screen on held-out phantoms of the project's generator.

One row per site variation alone (flip, pixel spacing, slice count, noise, bias, rotation,
off-centre, partial coverage, multi-frame), then all combined. Per row: AUROC, sensitivity and
specificity at the shipped threshold (assessable studies), not-assessable rate, median disc
error (normals). Not a timed test; the figures go into docs/model.md.

    python bench/bench_stress.py [--normals 20] [--lstv 10] [--rows flip noise] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from scp_node.config import ModelSettings
from scp_node.model.engine import LocalizerEngine
from scp_node.model.evaluate import STRESS_ROWS, evaluate_row, multiframe_loader


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown(table: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| row | n | AUROC | sensitivity | specificity | not assessable | median disc error mm |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in table.items():
        n = sum(r["counts"].values())
        lines.append(
            f"| {name} | {n} | {_fmt(r['auroc'], 3)} | {_fmt(r['sensitivity'])} | "
            f"{_fmt(r['specificity'])} | {_fmt(r['not_assessable'])} | "
            f"{_fmt(r['error_mm']['median'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normals", type=int, default=20)
    parser.add_argument("--lstv", type=int, default=10, help="phantoms per LSTV variant")
    parser.add_argument("--rows", nargs="*", default=None, help="substrings of row names")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engine = LocalizerEngine.from_settings(
        ModelSettings(device="cpu", cpu_threads=args.threads, weights=args.weights)
    )
    table: dict[str, dict[str, Any]] = {}
    rows = dict(STRESS_ROWS)
    rows["multi-frame (Legacy Converted Enhanced MR)"] = STRESS_ROWS["baseline (256 px, 15 slices)"]
    for name, make in rows.items():
        if args.rows and not any(r in name for r in args.rows):
            continue
        load = multiframe_loader if name.startswith("multi-frame") else None
        kwargs = {"load": load} if load else {}
        table[name] = evaluate_row(engine, make, args.normals, args.lstv, **kwargs)
        print(markdown({name: table[name]}).splitlines()[-1], flush=True)
    print()
    print(f"weights sha256 {engine.identity.weights_sha256}, threshold {engine.threshold}")
    print(markdown(table))
    if args.json:
        for r in table.values():
            r.pop("roc", None)
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
