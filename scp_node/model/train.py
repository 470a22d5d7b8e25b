"""Training of the reference localizer on normal phantoms, then the threshold on validation
phantoms.

Loss: cross-entropy between each level's spatial softmax and a normalised Gaussian target
(sigma 1.5 network pixels) at the true disc centre. Deterministic for a seed on one thread count.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scp_node.model import datasets, weights
from scp_node.model.engine import LocalizerEngine
from scp_node.model.metrics import auroc, best_threshold
from scp_node.model.network import HeatmapUNet, NetConfig
from scp_node.model.phantom import generate
from scp_node.result import DISC_LEVELS

log = logging.getLogger(__name__)

SIGMA = 1.5
SCORE_FORMULA = "mean over L4-L5, L5-S1 of 4 * MI + (1 - peak_confidence)"


@dataclass
class TrainConfig:
    out: Path
    seed: int = 0
    phantoms: int = 700
    steps: int = 1800
    batch: int = 16
    lr: float = 3e-3
    validation_per_variant: int = 24
    threads: int = 2


def gaussian_targets(xy: torch.Tensor, size: int, sigma: float = SIGMA) -> torch.Tensor:
    """``[N, L, 2]`` (x, y) -> ``[N, L, S, S]`` normalised Gaussian maps."""
    grid = torch.arange(size, dtype=torch.float32)
    gx = torch.exp(-((grid[None, None, :] - xy[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((grid[None, None, :] - xy[..., 1:2]) ** 2) / (2 * sigma**2))
    maps = gy[..., :, None] * gx[..., None, :]
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def _augment(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random gamma, gain and integer shift (zero fill) of a batch, moving the targets with it."""
    n, _, s, _ = x.shape
    gamma = torch.exp(torch.empty(n, 1, 1, 1).uniform_(-0.25, 0.25, generator=gen))
    gain = torch.empty(n, 1, 1, 1).uniform_(0.85, 1.15, generator=gen)
    x = (x.clamp_min(0) ** gamma) * gain
    out = torch.zeros_like(x)
    shifts = torch.randint(-10, 11, (n, 2), generator=gen)
    for i in range(n):
        dx, dy = int(shifts[i, 0]), int(shifts[i, 1])
        src_x = slice(max(0, -dx), s - max(0, dx))
        dst_x = slice(max(0, dx), s - max(0, -dx))
        src_y = slice(max(0, -dy), s - max(0, dy))
        dst_y = slice(max(0, dy), s - max(0, -dy))
        out[i, :, dst_y, dst_x] = x[i, :, src_y, src_x]
    y = y + shifts[:, None, :].float()
    return out, y


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, choose the threshold on validation phantoms, save; returns the metadata written."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net_cfg = NetConfig(base=8, depth=4, dropout=0.15, input_size=128)
    t0 = time.perf_counter()
    x_np, y_np = datasets.training_arrays(cfg.phantoms, net_cfg.input_size)
    t_data = time.perf_counter() - t0
    log.info("training data: %d samples in %.0f s", len(x_np), t_data)
    x_all, y_all = torch.from_numpy(x_np), torch.from_numpy(y_np)
    model = HeatmapUNet(net_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses = []
    for step in range(cfg.steps):
        idx = torch.randint(0, len(x_all), (cfg.batch,), generator=gen)
        xb, yb = _augment(x_all[idx], y_all[idx], gen)
        target = gaussian_targets(yb, net_cfg.input_size)
        logits = model(xb)
        logp = torch.log_softmax(logits.flatten(2), dim=-1)
        loss = -(target.flatten(2) * logp).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0 or step == cfg.steps - 1:
            log.info(
                "step %d/%d loss %.3f (%.0f s)",
                step,
                cfg.steps,
                float(np.mean(losses[-100:])),
                time.perf_counter() - t0,
            )
    t_train = time.perf_counter() - t0
    meta: dict[str, Any] = {
        "name": "lstv-localizer",
        "version": "1.0.0",
        "levels": list(DISC_LEVELS),
        "normalisation": "spatial-softmax",
        "input": "central sagittal slice, 1st-99th percentile scaled, clipped [0,1.5], "
        "bilinear antialiased resample to input_size x input_size",
        "training_seed": cfg.seed,
        "training": {
            "phantoms": cfg.phantoms,
            "variant": "normal",
            "seed0": datasets.TRAIN_SEED0,
            "steps": cfg.steps,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "sigma_px": SIGMA,
            "final_loss": float(np.mean(losses[-100:])),
            "seconds": round(t_train, 1),
        },
        "score": SCORE_FORMULA,
        "lstv_threshold": 0.0,
    }
    tmp = cfg.out.with_suffix(".unvalidated.pt")
    weights.save(tmp, model, meta)
    meta = calibrate(tmp, cfg.out, cfg.validation_per_variant)
    tmp.unlink(missing_ok=True)
    meta["training"]["total_seconds"] = round(time.perf_counter() - t0, 1)
    log.info("threshold %.4f; total %.0f s", meta["lstv_threshold"], time.perf_counter() - t0)
    return meta


def calibrate(src: Path, out: Path, per_variant: int) -> dict[str, Any]:
    """Choose the LSTV threshold on validation phantoms (disjoint seeds, all three variants) for
    the weights in ``src`` and write them with the threshold (and the score formula) to ``out``."""
    loaded = weights.load(src)
    meta = dict(loaded.metadata)
    engine = LocalizerEngine(loaded, device="cpu", lstv_threshold=0.0)
    scores, labels = validation_scores(engine, per_variant)
    thr = best_threshold(scores, labels)
    meta["score"] = SCORE_FORMULA
    meta["lstv_threshold"] = round(thr, 4)
    meta["validation"] = {
        "per_variant": per_variant,
        "normals": 2 * per_variant,
        "seed0": datasets.VALIDATION_SEED0,
        "rule": "max Youden J",
        "auroc": round(auroc(scores, labels), 4),
    }
    weights.save(out, loaded.build(), meta)
    return meta


def validation_scores(engine: LocalizerEngine, per_variant: int) -> tuple[np.ndarray, np.ndarray]:
    """LSTV scores and labels (1 = LSTV) on validation phantoms."""
    scores, labels = [], []
    for variant in ("normal", "lumbarization", "sacralization"):
        n = per_variant * (2 if variant == "normal" else 1)
        for i in range(n):
            ph = generate(variant, seed=datasets.VALIDATION_SEED0 + i, slices=15, size=256)
            res = engine.analyze(datasets.phantom_series(ph))
            scores.append(res.lstv_score)
            labels.append(0 if variant == "normal" else 1)
    return np.array(scores), np.array(labels)
