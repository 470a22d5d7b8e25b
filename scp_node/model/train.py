"""Training of the reference localizer on normal phantoms, then the threshold on validation
phantoms.

Loss: cross-entropy between each level's spatial softmax and a normalised Gaussian target
(sigma 1.5 network pixels) at the true disc centre. Deterministic for a seed on one thread count.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from scp_node.model import datasets, weights
from scp_node.model import uncertainty as unc
from scp_node.model.calibration import TRAINING_ENSEMBLE, choose_threshold
from scp_node.model.engine import LocalizerEngine
from scp_node.model.geometry import CanonicalGrid
from scp_node.model.metrics import auroc, sens_spec
from scp_node.model.network import HeatmapUNet, NetConfig
from scp_node.model.uncertainty import QualityLimits
from scp_node.result import DISC_LEVELS, StudyResult

log = logging.getLogger(__name__)

SIGMA = 1.5
#: Specificity the shipped threshold is chosen for on validation normals.
TARGET_SPECIFICITY = 0.95
#: The canonical picture of every sagittal slice (2.5 mm pixels, 320 mm field).
GRID = CanonicalGrid(size=128, spacing_mm=2.5)
#: What the recorded threshold was chosen on (:func:`.uncertainty.lstv_score`).
SCORE_FORMULA = (
    "mean over L4-L5, L5-S1 minus mean over L1-L2, L2-L3, L3-L4 of 4 * MI + (1 - peak_confidence)"
    "; plus, with the mobile-discs channel, clip(1 - L5-S1 disc signal, 0, 1) + clip(disc signal"
    " 15-65 mm below L5-S1, 0, 2), both relative to the L1-L2 .. L3-L4 discs; when one gap of"
    " L1-L2 .. L4-L5 spans two segments (1.6-2.5x the median), or L4-L5 to L5-S1 does (1.4-2.5x"
    " the median above), 1 in place of the first term"
)


@dataclass
class TrainConfig:
    out: Path
    seed: int = 0
    phantoms: int = 1000
    #: normal phantoms of the second, 3-D spin-echo generator (:mod:`.phantom3d`)
    phantoms_3d: int = 600
    #: normal phantoms of the third, rigid-body generator (:mod:`.phantom_rigid`)
    phantoms_rigid: int = 0
    steps: int = 3500
    batch: int = 16
    lr: float = 3e-3
    validation_per_variant: int = 20
    threads: int = 1
    #: processes that render the phantoms (the arrays do not depend on it)
    workers: int = 2


def gaussian_targets(xy: torch.Tensor, size: int, sigma: float = SIGMA) -> torch.Tensor:
    """``[N, L, 2]`` (x, y) -> ``[N, L, S, S]`` normalised Gaussian maps."""
    grid = torch.arange(size, dtype=torch.float32)
    gx = torch.exp(-((grid[None, None, :] - xy[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((grid[None, None, :] - xy[..., 1:2]) ** 2) / (2 * sigma**2))
    maps = gy[..., :, None] * gx[..., None, :]
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def _affine(
    x: torch.Tensor, m: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random rotation (+-15 deg), scale (0.8-1.25) and shift (+-16 px) of images, maps (every
    channel of ``m``) and targets together (a patient tilted, larger or smaller, placed elsewhere
    in the field)."""
    n, _, s, _ = x.shape
    angle = torch.empty(n).uniform_(-15.0, 15.0, generator=gen) * torch.pi / 180.0
    scale = torch.exp(torch.empty(n).uniform_(np.log(0.8), np.log(1.25), generator=gen))
    shift = torch.empty(n, 2).uniform_(-16.0, 16.0, generator=gen) * 2.0 / s
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # theta maps output normalised coordinates to input ones: q = A p + b
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    theta = torch.cat([a, shift[..., None]], -1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    q = (2.0 * y + 1.0) / s - 1.0  # [N, L, 2] normalised input coordinates
    p = torch.linalg.solve(a[:, None], (q - shift[:, None, :])[..., None])[..., 0]
    return x, m, (p + 1.0) * s / 2.0 - 0.5


def _coverage(
    x: torch.Tensor, m: torch.Tensor, y: torch.Tensor, gen: torch.Generator, p: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial coverage: for a fraction ``p`` of the batch, blank rows some way above the top
    disc and below the lowest one (a T12-S2 field), as a site with a short field would send."""
    n, _, s, _ = x.shape
    x, m = x.clone(), m.clone()
    for i in range(n):
        if float(torch.rand(1, generator=gen)) >= p:
            continue
        top = float(y[i, :, 1].min()) - 8.0
        bottom = float(y[i, :, 1].max()) + 12.0
        r0 = int(float(torch.rand(1, generator=gen)) * max(top, 0.0))
        r1 = int(bottom + float(torch.rand(1, generator=gen)) * max(s - bottom, 0.0))
        x[i, :, :r0] = 0
        m[i, :, :r0] = 0
        x[i, :, r1:] = 0
        m[i, :, r1:] = 0
    return x, m


def _intensity(x: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Contrast curve, gain, smooth bias field, blur and Gaussian or Rician noise; nothing outside
    the imaged field (where the inference input is exactly 0)."""
    n, _, s, _ = x.shape
    gamma = torch.exp(torch.empty(n, 1, 1, 1).uniform_(-0.4, 0.4, generator=gen))
    gain = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    x = (x.clamp_min(0) ** gamma) * gain
    x = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, _contrast_curve(x, gen), x)
    coords = torch.linspace(-1.0, 1.0, s)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    c = torch.empty(n, 5, 1, 1).uniform_(-0.25, 0.25, generator=gen)
    bias = 1.0 + c[:, 0] * xx + c[:, 1] * yy + c[:, 2] * xx**2 + c[:, 3] * yy**2 + c[:, 4] * xx * yy
    x = x * bias.clamp(0.4, 1.8)[:, None]
    blur = torch.rand(n, 1, 1, 1, generator=gen) < 0.3
    x = torch.where(blur, F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False), x)
    sigma = torch.empty(n, 1, 1, 1).uniform_(0.0, 0.08, generator=gen)
    n1 = torch.randn(x.shape, generator=gen) * sigma
    n2 = torch.randn(x.shape, generator=gen) * sigma
    rician = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    x = torch.where(rician, torch.sqrt((x + n1) ** 2 + n2**2), x + n1)
    return x.clamp(0.0, 1.5) * (m > 0.5)


def _contrast_curve(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random monotonic piecewise-linear intensity curve per image (knots every 0.3 up to 1.5):
    another scanner's, sequence's or window's idea of how bright each tissue is."""
    n = x.shape[0]
    steps = torch.empty(n, 5).uniform_(0.05, 1.0, generator=gen)
    values = torch.cat([torch.zeros(n, 1), torch.cumsum(steps, dim=1)], dim=1)
    values = values / values[:, -1:] * 1.5
    pos = (x.clamp(0.0, 1.5) / 0.3).clamp(max=4.999)
    lo = pos.floor().long()
    frac = pos - lo
    v = values[:, None, None, None, :].expand(*x.shape, 6)
    v_lo = torch.gather(v, -1, lo[..., None])[..., 0]
    v_hi = torch.gather(v, -1, (lo + 1)[..., None])[..., 0]
    return v_lo + frac * (v_hi - v_lo)


def _normalised(maps: torch.Tensor) -> torch.Tensor:
    """Each ``[N, 1, S, S]`` map scaled to sum 1 (a uniform map where it is all zero)."""
    total = maps.sum(dim=(-2, -1), keepdim=True)
    uniform = torch.full_like(maps, 1.0 / (maps.shape[-1] * maps.shape[-2]))
    return torch.where(total > 1e-6, maps / total.clamp_min(1e-6), uniform)


def augment(
    x: torch.Tensor, m: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical-space augmentation of a batch: geometry, coverage, then intensity. ``m`` holds
    the validity mask (channel 0) and any label maps warped with it; returns (x, m, y)."""
    x, m, y = _affine(x, m, y, gen)
    x, m = _coverage(x, m, y, gen)
    return _intensity(x, m[:, :1], gen), m, y


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, choose the threshold on validation phantoms, save; returns the metadata written."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net_cfg = NetConfig(
        base=8, depth=4, dropout=0.15, input_size=GRID.size, levels=len(DISC_LEVELS) + 1
    )
    t0 = time.perf_counter()
    first = datasets.training_arrays(cfg.phantoms, GRID, workers=cfg.workers)
    second = datasets.spin_echo_training_arrays(cfg.phantoms_3d, GRID, workers=cfg.workers)
    third = datasets.rigid_training_arrays(cfg.phantoms_rigid, GRID, workers=cfg.workers)
    x_np, m_np, y_np = (np.concatenate(parts) for parts in zip(first, second, third, strict=True))
    t_data = time.perf_counter() - t0
    log.info(
        "training data: %d + %d + %d samples (three generators) in %.0f s",
        len(first[0]),
        len(second[0]),
        len(third[0]),
        t_data,
    )
    x_all, y_all = torch.from_numpy(x_np), torch.from_numpy(y_np)
    m_all = torch.from_numpy(m_np.astype(np.float16))
    model = HeatmapUNet(net_cfg)
    # the validation phantoms are rendered on the cores the training threads leave free, so
    # that they are ready when the trained model is (same series as rendering them afterwards)
    background = cfg.workers - cfg.threads
    jobs = validation_jobs(cfg.validation_per_variant, rigid=cfg.phantoms_rigid > 0)
    with datasets.ValidationRender(jobs, max(background, 0)) as render:
        losses = _fit(model, (x_all, m_all, y_all), cfg, t0)
        tmp = cfg.out.with_suffix(".unvalidated.pt")
        weights.save(tmp, model, _metadata(cfg, losses, time.perf_counter() - t0))
        meta = calibrate(
            tmp,
            cfg.out,
            cfg.validation_per_variant,
            cfg.workers,
            render if background > 0 else None,
        )
    tmp.unlink(missing_ok=True)
    meta["training"]["total_seconds"] = round(time.perf_counter() - t0, 1)
    log.info("threshold %.4f; total %.0f s", meta["lstv_threshold"], time.perf_counter() - t0)
    return meta


#: Environment variables that choose which CPU kernels torch, oneDNN and MKL run (and so the
#: order of floating-point sums): a training run is bit-identical only where these agree.
NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def numerics() -> dict[str, Any]:
    """What decides the floating-point results of a CPU training run besides the code and the
    seed: torch version, the CPU kernel level torch dispatches to, and :data:`NUMERICS_ENV`."""
    return {
        "torch": str(torch.__version__),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "env": {name: os.environ.get(name, "") for name in NUMERICS_ENV},
    }


def _metadata(cfg: TrainConfig, losses: list[float], seconds: float) -> dict[str, Any]:
    """The weights metadata of a training run (threshold and quality limits come later)."""
    return {
        "name": "lstv-localizer",
        "version": "1.0.0",
        "levels": list(DISC_LEVELS),
        "auxiliary": ["mobile-discs"],
        "normalisation": "spatial-softmax",
        "input": "sagittal slices around the midline, 1st-99th percentile scaled, clipped "
        "[0,1.5], resampled from the DICOM geometry onto the canonical grid (head up, anterior "
        "left; scp_node.model.geometry)",
        "canonical": {"size": GRID.size, "spacing_mm": GRID.spacing_mm},
        "training_seed": cfg.seed,
        "training": {
            "phantoms": cfg.phantoms,
            "variant": "normal",
            "seed0": datasets.TRAIN_SEED0,
            "phantoms_3d": cfg.phantoms_3d,
            "seed0_3d": datasets.SPIN_ECHO_TRAIN_SEED0,
            "phantoms_rigid": cfg.phantoms_rigid,
            "seed0_rigid": datasets.RIGID_TRAIN_SEED0,
            "steps": cfg.steps,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "sigma_px": SIGMA,
            "threads": cfg.threads,
            "final_loss": float(np.mean(losses[-100:])),
            "seconds": round(seconds, 1),
            "numerics": numerics(),
        },
        "score": SCORE_FORMULA,
        "lstv_threshold": 0.0,
    }


def training_batch(
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batch: int,
    size: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented batch drawn with ``gen``: inputs ``[B, 1, S, S]`` and the targets (a
    Gaussian per level, then the normalised mobile-discs map) ``[B, L + 1, S, S]``."""
    x_all, m_all, y_all = data
    idx = torch.randint(0, len(x_all), (batch,), generator=gen)
    xb, mb, yb = augment(x_all[idx], m_all[idx].float(), y_all[idx], gen)
    return xb, torch.cat([gaussian_targets(yb, size), _normalised(mb[:, 1:])], 1)


class AugmentedBatches:
    """The ``steps`` training batches, made ahead on a second thread while the training thread
    runs the network (torch releases the GIL inside its kernels, so the augmentation runs on
    the core the training thread leaves free). One generator, seeded with ``seed``, draws
    them in order, and the model's own random draws (dropout) never touch it, so the batches
    and the trained weights are bit-identical to making each batch inside the loop. An error
    on the second thread is raised on the training thread."""

    _END = object()

    def __init__(
        self,
        data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        steps: int,
        batch: int,
        seed: int,
        size: int,
        ahead: int = 4,
    ):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._make, args=(data, steps, batch, seed, size), daemon=True
        )
        self._thread.start()

    def _make(self, data: Any, steps: int, batch: int, seed: int, size: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        try:
            for _ in range(steps):
                if self._stop.is_set():
                    return
                self._put(training_batch(data, batch, size, gen))
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self._put(exc)
            return
        self._put(self._END)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._thread.join()


def _fit(
    model: HeatmapUNet,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    t0: float,
) -> list[float]:
    """``cfg.steps`` AdamW steps (one-cycle lr) on augmented batches of (inputs, maps, level
    targets): cross-entropy of each output's spatial softmax against its normalised target."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15
    )
    model.train()
    losses: list[float] = []
    batches = AugmentedBatches(data, cfg.steps, cfg.batch, cfg.seed, model.config.input_size)
    for step, (xb, target) in enumerate(batches):
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
    return losses


def calibrate(
    src: Path,
    out: Path,
    per_variant: int,
    workers: int = 1,
    render: datasets.ValidationRender | None = None,
) -> dict[str, Any]:
    """Choose the LSTV threshold and the quality gate's limit on validation phantoms (disjoint
    seeds, all three variants, site-like geometry and acquisition, from the three generators)
    for the weights in ``src``, and write them with the threshold, the limits and the score
    formula to ``out``.

    The reference-uncertainty limit is 1.5 x the 99th percentile seen on validation studies (at
    least 0.3): images the model reads as well as its own data pass with room to spare. The
    threshold follows the site-calibration rule (:func:`.calibration.choose_threshold`) for a
    specificity of :data:`TARGET_SPECIFICITY` on the assessable validation normals: a screen that
    sends a false alarm into the PACS for many patients is worse than none. ``render``: the
    validation series already being rendered (see :func:`train`).
    """
    loaded = weights.load(src)
    meta = dict(loaded.metadata)
    engine = LocalizerEngine(
        loaded,
        device="cpu",
        lstv_threshold=0.0,
        mc_samples=TRAINING_ENSEMBLE["mc_samples"],
        context_slices=TRAINING_ENSEMBLE["context_slices"],
    )
    engine.quality = QualityLimits(max_reference_uncertainty=float("inf"))
    engine.require_evidence = False  # the threshold is chosen here: quality gate only
    rigid = int(meta.get("training", {}).get("phantoms_rigid", 0)) > 0
    results, labels = validation_results(engine, per_variant, workers, rigid, render)
    ref = np.array([_reference_uncertainty(r) for r in results])
    limit = max(0.3, 1.5 * float(np.percentile(ref, 99)))
    engine.quality = QualityLimits(max_reference_uncertainty=limit)
    assessable = np.array([r.assessable for r in results]) & (ref <= limit)
    if assessable.sum() < 4 or len(set(labels[assessable])) < 2:
        log.warning("too few assessable validation studies: threshold from all of them")
        assessable = np.ones(len(results), dtype=bool)
    scores = np.array([r.lstv_score for r in results])
    normals = scores[assessable & (labels == 0)]
    thr = choose_threshold(normals.tolist(), TARGET_SPECIFICITY)
    sens, spec = sens_spec(scores[assessable], labels[assessable], thr)
    meta["score"] = SCORE_FORMULA
    meta["lstv_threshold"] = round(thr, 6)
    meta["quality"] = {
        "max_reference_uncertainty": round(limit, 4),
        "min_coverage": engine.quality.min_coverage,
        "min_slices": engine.quality.min_slices,
    }
    meta["validation"] = {
        "per_variant": per_variant,
        "normals": 2 * per_variant,
        "seed0": datasets.VALIDATION_SEED0,
        "seed0_3d": datasets.SPIN_ECHO_VALIDATION_SEED0,
        **({"seed0_rigid": datasets.RIGID_VALIDATION_SEED0} if rigid else {}),
        "rule": f"specificity {TARGET_SPECIFICITY} on assessable normals; reference 1.5 x p99",
        "auroc": round(auroc(scores[assessable], labels[assessable]), 4),
        "sensitivity": round(sens, 4),
        "specificity": round(spec, 4),
        "not_assessable": int((~assessable).sum()),
    }
    weights.save(out, loaded.build(), meta)
    return meta


def _reference_uncertainty(result: StudyResult) -> float:
    """The quality gate's reference uncertainty, from a result's reported level figures."""
    return unc.reference_uncertainty({f.level: f for f in result.levels})


def validation_jobs(per_variant: int, rigid: bool = False) -> list[datasets.ValidationJob]:
    """The validation phantoms of the generators the weights were trained on: ``per_variant`` of
    each LSTV variant and twice as many normals from each (the rigid-body generator only when
    ``rigid``, so weights trained without it keep the threshold their training command chose)."""
    variants = ("normal", "lumbarization", "sacralization")
    # (generator, first seed, seed stride per variant): the first generator mixes the variant
    # into each phantom's RNG, so its variants share seeds
    generators = [
        ("first", datasets.VALIDATION_SEED0, 0),
        ("spin-echo", datasets.SPIN_ECHO_VALIDATION_SEED0, 1000),
    ]
    if rigid:
        generators.append(("rigid", datasets.RIGID_VALIDATION_SEED0, 1000))
    return [
        (generator, seed0 + stride * variants.index(v) + i, v)
        for generator, seed0, stride in generators
        for v in variants
        for i in range(per_variant * (2 if v == "normal" else 1))
    ]


def validation_results(
    engine: LocalizerEngine,
    per_variant: int,
    workers: int = 1,
    rigid: bool = False,
    render: datasets.ValidationRender | None = None,
) -> tuple[list[StudyResult], np.ndarray]:
    """Results and labels (1 = LSTV) on the site-like phantoms of :func:`validation_jobs`,
    rendered by ``workers`` processes, or taken from ``render`` (started earlier, same jobs)."""
    jobs = validation_jobs(per_variant, rigid)
    if render is None:
        volumes = datasets.validation_volumes(jobs, workers)
    elif render.jobs == jobs:
        volumes = iter(render)
    else:
        raise ValueError("the pre-rendered validation series are not this validation set")
    results = [engine.analyze(v) for v in volumes]
    labels = [0 if variant == "normal" else 1 for _, _, variant in jobs]
    return results, np.array(labels)
