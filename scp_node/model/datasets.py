"""Phantom data sets with disjoint seed ranges, and phantoms as in-memory series volumes.

Seed ranges (the phantom seed; the variant is mixed into each phantom's RNG too):
training 100000 + i, validation (threshold choice) 200000 + i, evaluation 300000 + i.

Training phantoms are presented the way different sites store them (matrix, pixel spacing,
anterior on either side, partial coverage, spine off the field's centre) and pass through the
same canonical geometry as inference (:mod:`scp_node.model.geometry`).
"""

from __future__ import annotations

import numpy as np

from scp_node.model import variations
from scp_node.model.geometry import CanonicalGrid, slice_frames, to_canonical
from scp_node.model.phantom import Phantom, generate
from scp_node.result import DISC_LEVELS
from scp_node.series import SeriesVolume

TRAIN_SEED0 = 100_000
VALIDATION_SEED0 = 200_000
EVALUATION_SEED0 = 300_000

#: Native matrices drawn for site-like phantoms (field of view 260-340 mm: 0.5-1.3 mm pixels).
SITE_MATRICES = (256, 320, 384, 448, 512)


def phantom_series(ph: Phantom) -> SeriesVolume:
    """A phantom as the loader would return it after reading its DICOM files (no files written)."""
    uid = f"2.25.{ph.seed}{len(ph.variant)}"
    return SeriesVolume(
        study_instance_uid=uid + ".1",
        series_instance_uid=uid + ".2",
        volume=ph.volume.astype(np.float32),
        sop_instance_uids=[f"{uid}.3.{k}" for k in range(ph.volume.shape[0])],
        positions=list(ph.positions),
        row_direction=ph.row_direction,
        column_direction=ph.column_direction,
        pixel_spacing=ph.pixel_spacing,
        slice_spacing=ph.slice_spacing,
    )


def site_phantom(
    variant: str, seed: int, rng: np.random.Generator, midline_context: int = 0
) -> Phantom:
    """A phantom with a site-like matrix, slice count, side and coverage drawn from ``rng``."""
    size = int(rng.choice(SITE_MATRICES))
    slices = int(rng.integers(9, 22))
    ph = generate(variant, seed=seed, slices=slices, size=size, midline_context=midline_context)
    if rng.random() < 0.5:
        ph = variations.flip_anterior_posterior(ph)
    roll = rng.random()
    if roll < 0.25:
        ph = variations.coverage_window(ph, rng)
    elif roll < 0.4:
        ph = variations.off_centre(ph, rng, float(rng.uniform(15.0, 50.0)))
    return ph


def canonical_targets(ph: Phantom, series: SeriesVolume, grid: CanonicalGrid) -> np.ndarray:
    """``[levels, 2]`` canonical (x, y) of the true disc centres."""
    frame = slice_frames(series)[ph.disc(DISC_LEVELS[0]).slice_index]
    points = [np.asarray(ph.disc(lv).patient_xyz) for lv in DISC_LEVELS]
    return np.array([frame.patient_to_canonical(grid, p) for p in points], dtype=np.float32)


def mobile_disc_map(
    ph: Phantom, series: SeriesVolume, grid: CanonicalGrid, sigma: float = 1.5
) -> np.ndarray:
    """``[S, S]`` sum of Gaussians (peak 1) at every mobile disc of the phantom on the canonical
    grid: the target of the auxiliary "mobile discs" channel."""
    frame = slice_frames(series)[ph.disc(DISC_LEVELS[0]).slice_index]
    idx = np.arange(grid.size, dtype=np.float32)
    out = np.zeros((grid.size, grid.size), dtype=np.float32)
    for xyz in ph.mobile_discs:
        x, y = frame.patient_to_canonical(grid, np.asarray(xyz))
        gx = np.exp(-((idx - x) ** 2) / (2 * sigma**2))
        gy = np.exp(-((idx - y) ** 2) / (2 * sigma**2))
        out += gy[:, None] * gx[None, :]
    return out


def training_arrays(
    count: int, grid: CanonicalGrid, seed0: int = TRAIN_SEED0, context: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal phantoms -> canonical inputs ``[N, 1, S, S]``, maps ``[N, 2, S, S]`` (validity mask,
    mobile-disc target) and level targets ``[N, 5, 2]`` (x, y canonical px).

    Each phantom gives the ``context`` slices around the midline, all sharing its disc centres.
    """
    xs, ms, ys = [], [], []
    for i in range(count):
        rng = np.random.default_rng(seed0 + i)
        ph = site_phantom("normal", seed0 + i, rng, midline_context=context)
        series = phantom_series(ph)
        idx = [k for k in range(ph.volume.shape[0]) if ph.volume[k].any()]
        frames = slice_frames(series)
        x, m = to_canonical(series.volume[idx], [frames[k] for k in idx], grid)
        target = canonical_targets(ph, series, grid)
        discs = np.broadcast_to(mobile_disc_map(ph, series, grid), m.shape[1:])
        xs.append(x.numpy())
        ms.append(np.concatenate([m.numpy(), np.stack([discs] * len(idx))], axis=1))
        ys.extend([target] * len(idx))
    return (
        np.concatenate(xs).astype(np.float32),
        np.concatenate(ms).astype(np.float32),
        np.stack(ys),
    )
