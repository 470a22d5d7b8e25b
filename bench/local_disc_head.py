"""Experiment (rejected): a *local* disc detector read below L5-S1, as lumbarization evidence.

The shipped network's mobile-discs channel sees the whole picture, and on normal spines it has
learned that no mobile disc lies below L5-S1: on a lumbarized spine that it localizes correctly
it reads the well-formed S1-S2 disc at ~0.01 of an upper disc, so the ``extra`` score term
hardly ever fires. This script trains a small head with a limited field of view (three k x k
convolutions on the frozen shipped encoder's second skip features, 2x down-sampled; about 65 mm
across for k = 3) to mark mobile disc centres on normal phantoms of both training generators,
then reads it 15-65 mm below the localizer's L5-S1 along the spine (within 10 mm of that line),
relative to the same study's L1-L2 .. L3-L4. It prints, per set, the median of that ratio by
variant and the AUROC of lumbarization against normal. Findings: docs/model.md, "Tried and
rejected (2026-12-03, evening): a local disc detector below L5-S1". CPU, shipped weights.

    python bench/local_disc_head.py --train 600 360 --steps 3000 --heads /tmp/head.pt
    python bench/local_disc_head.py --heads /tmp/head.pt --own 20 /tmp/fourth /tmp/fourth5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import dicom_files, find_studies  # noqa: E402
from scp_node.config import Settings  # noqa: E402
from scp_node.model import datasets, evaluate  # noqa: E402
from scp_node.model.engine import CanonicalSlices, LocalizerEngine  # noqa: E402
from scp_node.model.geometry import slice_frames  # noqa: E402
from scp_node.model.metrics import auroc  # noqa: E402
from scp_node.model.train import GRID, augment  # noqa: E402
from scp_node.series import SeriesVolume, select_series  # noqa: E402


class LocalDiscHead(nn.Module):
    """Mobile-disc logits at half resolution from the encoder's second skip features."""

    def __init__(self, kernel: int, channels: int = 16, width: int = 24, layers: int = 3):
        super().__init__()
        parts: list[nn.Module] = []
        for i in range(layers):
            parts += [nn.Conv2d(channels if i == 0 else width, width, kernel, padding=kernel // 2)]
            parts += [nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*parts, nn.Conv2d(width, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def train_head(
    engine: LocalizerEngine, first: int, second: int, steps: int, kernel: int
) -> nn.Module:
    """The head, trained on normal phantoms (per-pixel BCE against the mobile-disc target, the
    training augmentation), with the shipped encoder frozen in inference mode."""
    x, m, y = (
        np.concatenate(parts)
        for parts in zip(
            datasets.training_arrays(first, GRID, workers=2),
            datasets.spin_echo_training_arrays(second, GRID, workers=2),
            strict=True,
        )
    )
    xs, ms, ys = torch.from_numpy(x), torch.from_numpy(m.astype(np.float16)), torch.from_numpy(y)
    torch.manual_seed(5)
    head = LocalDiscHead(kernel)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(11)
    started = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(xs), (16,), generator=gen)
        xb, mb, _ = augment(xs[idx], ms[idx].float(), ys[idx], gen)
        with torch.no_grad():
            _, skips = engine.model.encode(xb)
        target = F.max_pool2d(mb[:, 1:2], 2).clamp(0.0, 1.0)
        loss = F.binary_cross_entropy_with_logits(
            head(skips[1]), target, pos_weight=torch.tensor(5.0)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            elapsed = time.perf_counter() - started
            print(f"step {step} loss {float(loss.detach()):.4f} ({elapsed:.0f} s)")
    return head.eval()


def below_ratio(disc: np.ndarray, points: np.ndarray, spacing_mm: float) -> float:
    """Peak of the local disc map 15-65 mm below L5-S1 along L4-L5 -> L5-S1 (within 10 mm of
    that line) over the median peak near L1-L2 .. L3-L4; ``points`` in the map's pixels."""

    def peak_near(x: float, y: float) -> float:
        xi, yi = int(round(x)), int(round(y))
        return float(disc[max(0, yi - 1) : yi + 2, max(0, xi - 1) : xi + 2].max())

    reference = float(np.median([peak_near(x, y) for x, y in points[:3]]))
    axis = (points[4] - points[3]) / max(float(np.linalg.norm(points[4] - points[3])), 1e-9)
    yy, xx = np.mgrid[0 : disc.shape[0], 0 : disc.shape[1]]
    dx, dy = xx - points[4][0], yy - points[4][1]
    along = (dx * axis[0] + dy * axis[1]) * spacing_mm
    across = np.abs(dx * axis[1] - dy * axis[0]) * spacing_mm
    region = (along >= 15.0) & (along <= 65.0) & (across <= 10.0)
    return float(disc[region].max()) / max(reference, 1e-6) if region.any() else 0.0


def measure(engine: LocalizerEngine, head: nn.Module, volume: SeriesVolume) -> float | None:
    """The local below-L5-S1 ratio on the slices the screen reads; None when not assessable."""
    result = engine.analyze(volume)
    if not (result.applicable and result.assessable):
        return None
    frames = slice_frames(volume)
    centre = result.levels[0].slice_index
    inputs = CanonicalSlices(volume, frames, engine.grid, engine.encode).inputs(
        engine.context(centre, len(frames))
    )
    with torch.inference_mode():
        _, skips = engine.model.encode(inputs)
        disc = torch.sigmoid(head(skips[1])).mean(0)[0].numpy()
    points = np.array(
        [
            frames[centre].patient_to_canonical(engine.grid, np.array(f.patient_xyz))
            for f in result.levels
        ]
    )
    return below_ratio(disc, points / 2.0, 2.0 * engine.grid.spacing_mm)


def report(name: str, ratios: dict[str, list[float]]) -> None:
    medians = "  ".join(f"{v} {np.median(r):.2f} (n {len(r)})" for v, r in ratios.items() if r)
    pair = ratios["normal"] + ratios["lumbarization"]
    labels = np.array([0] * len(ratios["normal"]) + [1] * len(ratios["lumbarization"]))
    area = auroc(np.array(pair), labels)
    print(f"{name}: median {medians}; AUROC lumbarization vs normal {area:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", nargs="*", type=Path, help="study folders with truth.json")
    parser.add_argument(
        "--heads", type=Path, required=True, help="head weights (written by --train)"
    )
    parser.add_argument("--train", nargs=2, type=int, metavar=("FIRST", "SECOND"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--own", type=int, default=0, help="held-out normals of the own generator")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    settings = Settings()
    engine = LocalizerEngine.from_settings(settings.model)
    if args.train:
        head = train_head(engine, *args.train, args.steps, args.kernel)
        torch.save({"kernel": args.kernel, "state_dict": head.state_dict()}, args.heads)
    saved = torch.load(args.heads, weights_only=True)
    head = LocalDiscHead(int(saved["kernel"]))
    head.load_state_dict(saved["state_dict"])
    head.eval()
    if args.own:
        ratios: dict[str, list[float]] = {v: [] for v in evaluate.VARIANTS}
        for variant in evaluate.VARIANTS:
            for i in range(args.own if variant == "normal" else args.own // 2):
                ph = evaluate.STRESS_ROWS["all combined (site-like)"](
                    variant, datasets.EVALUATION_SEED0 + i
                )
                ratio = measure(engine, head, datasets.phantom_series(ph))
                if ratio is not None:
                    ratios[variant].append(ratio)
        report("own generator, held-out", ratios)
    for root in args.roots:
        ratios = {v: [] for v in evaluate.VARIANTS}
        for folder in find_studies([root]):
            variant = json.loads((folder / "truth.json").read_text()).get("variant", "normal")
            volume = select_series(dicom_files(folder), settings.series, 1).volume
            ratio = None if volume is None else measure(engine, head, volume)
            if ratio is not None:
                ratios[variant].append(ratio)
        report(str(root), ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
