"""Per-study CPU latency of the LSTV screen: 20 sagittal slices 512x512, T = 8 MC passes.

Times ``LocalizerEngine.analyze`` (canonical resampling, batched MC passes, uncertainty maths) on an
in-memory series; series loading/decoding is not included. Prints the median of the repeats.

    python bench/bench_inference.py [--repeats 7] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from scp_node.config import ModelSettings
from scp_node.model import datasets
from scp_node.model.engine import LocalizerEngine
from scp_node.model.phantom import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mc", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    engine = LocalizerEngine.from_settings(
        # timing only: a placeholder threshold, since other --mc make other scores than the
        # weights' threshold was chosen with (the engine refuses it then)
        ModelSettings(
            device="cpu", mc_samples=args.mc, cpu_threads=args.threads, lstv_threshold=0.5
        )
    )
    vol = datasets.phantom_series(generate("normal", 1, slices=args.slices, size=args.size))
    engine.analyze(vol)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        engine.analyze(vol)
        times.append((time.perf_counter() - t0) * 1000)
    report = {
        "device": engine.device_name,
        "torch": torch.__version__,
        "slices": args.slices,
        "size": args.size,
        "mc_samples": args.mc,
        "context_slices": engine.context_slices,
        "forward_samples": engine.context_slices * args.mc,
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:<16} {value}")


if __name__ == "__main__":
    main()
