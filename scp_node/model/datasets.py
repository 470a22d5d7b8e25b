"""Phantom data sets with disjoint seed ranges, and phantoms as in-memory series volumes.

Two generators, two seed ranges each. The first (:mod:`scp_node.model.phantom`; the variant is
mixed into each phantom's RNG too): training 100000 + i, validation (threshold choice)
200000 + i, evaluation 300000 + i. The second, 3-D spin-echo generator
(:mod:`scp_node.model.phantom3d`): training 400000000 + i, validation 410000000 + i; its
evaluation sets (``bench/indep_phantom.py --seed B``) use B x 1000000 + set x 100000 + i, so any
``--seed`` other than 400-410 is disjoint from both.

Training phantoms are presented the way different sites store them (matrix, pixel spacing,
anterior on either side, partial coverage, spine off the field's centre) and pass through the
same canonical geometry as inference (:mod:`scp_node.model.geometry`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from scp_node.model import phantom3d, phantom_rigid, variations
from scp_node.model.geometry import CanonicalGrid, slice_frames, to_canonical
from scp_node.model.phantom import Phantom, generate
from scp_node.result import DISC_LEVELS
from scp_node.series import SeriesVolume

TRAIN_SEED0 = 100_000
VALIDATION_SEED0 = 200_000
EVALUATION_SEED0 = 300_000
SPIN_ECHO_TRAIN_SEED0 = 400_000_000
SPIN_ECHO_VALIDATION_SEED0 = 410_000_000
RIGID_TRAIN_SEED0 = 420_000_000
RIGID_VALIDATION_SEED0 = 430_000_000

#: Native matrices drawn for site-like phantoms (field of view 260-340 mm: 0.5-1.3 mm pixels).
SITE_MATRICES = (256, 320, 384, 448, 512)


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started fresh ("spawn"): a forked child of a process whose OpenMP
    thread pool (torch) is already running can hang in its first torch operation."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


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
    points = [frame.patient_to_canonical(grid, np.asarray(xyz)) for xyz in ph.mobile_discs]
    return _points_map(points, grid, sigma)


def _site_sample(
    seed: int, grid: CanonicalGrid, context: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One normal phantom of the first generator: its ``context`` slices around the midline on
    the canonical grid, their maps (validity mask, mobile-disc target) and level targets."""
    rng = np.random.default_rng(seed)
    ph = site_phantom("normal", seed, rng, midline_context=context)
    series = phantom_series(ph)
    idx = [k for k in range(ph.volume.shape[0]) if ph.volume[k].any()]
    frames = slice_frames(series)
    x, m = to_canonical(series.volume[idx], [frames[k] for k in idx], grid)
    target = canonical_targets(ph, series, grid)
    discs = np.broadcast_to(mobile_disc_map(ph, series, grid), m.shape[1:])
    maps = np.concatenate([m.numpy(), np.stack([discs] * len(idx))], axis=1)
    return x.numpy(), maps, np.stack([target] * len(idx))


def training_arrays(
    count: int,
    grid: CanonicalGrid,
    seed0: int = TRAIN_SEED0,
    context: int = 5,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal phantoms -> canonical inputs ``[N, 1, S, S]``, maps ``[N, 2, S, S]`` (validity mask,
    mobile-disc target) and level targets ``[N, 5, 2]`` (x, y canonical px).

    Each phantom gives the ``context`` slices around the midline, all sharing its disc centres;
    each depends on its seed only, so ``workers`` processes give the same arrays as one.
    """
    return _sample_arrays(_site_sample, count, grid, seed0, context, workers)


def _sample_arrays(
    sample: Callable[[int, CanonicalGrid, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    count: int,
    grid: CanonicalGrid,
    seed0: int,
    context: int,
    workers: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sample`` for seeds ``seed0 .. seed0 + count - 1``, in order, stacked."""
    if count == 0:
        size = grid.size
        return (
            np.zeros((0, 1, size, size), np.float32),
            np.zeros((0, 2, size, size), np.float32),
            np.zeros((0, len(DISC_LEVELS), 2), np.float32),
        )
    seeds = [seed0 + i for i in range(count)]
    if workers > 1:
        with _pool(workers) as pool:
            parts = list(pool.map(sample, seeds, [grid] * count, [context] * count))
    else:
        parts = [sample(s, grid, context) for s in seeds]
    return (
        np.concatenate([p[0] for p in parts]).astype(np.float32),
        np.concatenate([p[1] for p in parts]).astype(np.float32),
        np.concatenate([p[2] for p in parts]).astype(np.float32),
    )


def midline_volume(ms: phantom3d.MidlineSeries) -> SeriesVolume:
    """A second-generator phantom as the loader would return its series (no files written)."""
    uid = f"2.25.{ms.seed}{len(ms.variant)}"
    first = ms.planes[0]
    row = first.row_dir.astype(float)
    col = first.col_dir.astype(float)
    return SeriesVolume(
        study_instance_uid=uid + ".1",
        series_instance_uid=uid + ".2",
        volume=ms.images,
        sop_instance_uids=[f"{uid}.3.{k}" for k in range(len(ms.planes))],
        positions=[(float(p.origin[0]), float(p.origin[1]), float(p.origin[2])) for p in ms.planes],
        row_direction=(row[0], row[1], row[2]),
        column_direction=(col[0], col[1], col[2]),
        pixel_spacing=(first.spacing, first.spacing),
        slice_spacing=ms.slice_step,
    )


def _points_map(
    points: list[tuple[float, float]], grid: CanonicalGrid, sigma: float = 1.5
) -> np.ndarray:
    """``[S, S]`` sum of Gaussians (peak 1) at canonical (x, y) points."""
    idx = np.arange(grid.size, dtype=np.float32)
    out = np.zeros((grid.size, grid.size), dtype=np.float32)
    for x, y in points:
        out += (
            np.exp(-((idx - y) ** 2) / (2 * sigma**2))[:, None]
            * np.exp(-((idx - x) ** 2) / (2 * sigma**2))[None, :]
        )
    return out


def rigid_midline(seed: int, variant: str = "normal", slices: int = 5) -> phantom3d.MidlineSeries:
    """A third-generator phantom (:func:`.phantom_rigid.midline_t2`) in the second generator's
    midline format, so that both go through one path to the canonical grid."""
    t2 = phantom_rigid.midline_t2(seed, variant, slices=slices)
    rows, cols = t2.images.shape[1:]
    planes = [
        phantom3d.Plane(p, t2.row_dir, t2.col_dir, t2.spacing, rows, cols) for p in t2.positions
    ]
    return phantom3d.MidlineSeries(
        variant=variant,
        seed=seed,
        images=t2.images,
        planes=planes,
        slice_step=t2.slice_step,
        discs=t2.discs,
        mobile_discs=t2.mobile_discs,
    )


def _spin_echo_sample(
    seed: int, grid: CanonicalGrid, context: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _midline_sample(phantom3d.midline_series(seed, "normal", slices=context), grid)


def _rigid_sample(
    seed: int, grid: CanonicalGrid, context: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _midline_sample(rigid_midline(seed, "normal", slices=context), grid)


def _midline_sample(
    ms: phantom3d.MidlineSeries, grid: CanonicalGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One midline series as training samples: canonical inputs, maps and level targets."""
    series = midline_volume(ms)
    frames = slice_frames(series)
    x, m = to_canonical(ms.images, frames, grid)
    frame = frames[len(frames) // 2]
    target = np.array(
        [frame.patient_to_canonical(grid, np.asarray(d["patient_xyz"])) for d in ms.discs[:5]],
        dtype=np.float32,
    )
    mobile = [frame.patient_to_canonical(grid, np.asarray(p)) for p in ms.mobile_discs]
    discs = np.broadcast_to(_points_map(mobile, grid), m.shape[1:])
    maps = np.concatenate([m.numpy(), np.stack([discs] * len(frames))], axis=1)
    return x.numpy(), maps, np.stack([target] * len(frames))


def spin_echo_training_arrays(
    count: int,
    grid: CanonicalGrid,
    seed0: int = SPIN_ECHO_TRAIN_SEED0,
    context: int = 5,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal phantoms of the second generator in :func:`training_arrays`' format; each depends
    on its seed only, so ``workers`` processes give the same arrays as one."""
    return _sample_arrays(_spin_echo_sample, count, grid, seed0, context, workers)


def rigid_training_arrays(
    count: int,
    grid: CanonicalGrid,
    seed0: int = RIGID_TRAIN_SEED0,
    context: int = 5,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal phantoms of the third, rigid-body generator in :func:`training_arrays`' format."""
    return _sample_arrays(_rigid_sample, count, grid, seed0, context, workers)


#: A validation job: (generator, seed, variant).
ValidationJob = tuple[str, int, str]


#: Slices of a second-generator validation series: enough for the engine's mid-sagittal search.
VALIDATION_SLICES = 9


def _validation_volume(job: ValidationJob) -> SeriesVolume:
    generator, seed, variant = job
    if generator == "first":
        return phantom_series(site_phantom(variant, seed, np.random.default_rng([seed, 1])))
    if generator == "rigid":
        return midline_volume(rigid_midline(seed, variant, slices=VALIDATION_SLICES))
    return midline_volume(phantom3d.midline_series(seed, variant, slices=VALIDATION_SLICES))


class ValidationRender:
    """Validation series for :data:`ValidationJob` s, handed out in job order by iterating.

    With ``processes`` >= 1, worker processes start rendering them when the context is entered
    (for instance on the core that one-thread training leaves idle, so they are ready when the
    trained model is); with 0 each is rendered in this process when it is asked for. Each
    series depends on its job only, so both give the same series."""

    def __init__(self, jobs: list[ValidationJob], processes: int = 0) -> None:
        self.jobs = list(jobs)
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future[SeriesVolume]] = []

    def __enter__(self) -> ValidationRender:
        if self.processes >= 1:
            self._pool = _pool(self.processes)
            self._futures = [self._pool.submit(_validation_volume, job) for job in self.jobs]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __iter__(self) -> Iterator[SeriesVolume]:
        if self._pool is None:
            yield from map(_validation_volume, self.jobs)
        else:
            while self._futures:  # each series let go once handed out
                yield self._futures.pop(0).result()


def validation_volumes(jobs: list[ValidationJob], workers: int = 1) -> Iterator[SeriesVolume]:
    """Validation series for (generator, seed, variant) jobs, in order: ``"first"`` (a whole
    site-like study of :mod:`.phantom`), ``"spin-echo"`` or ``"rigid"`` (midline series of the
    second and third generators). With ``workers`` > 1, that many processes render them while
    the caller analyses the ones before, with the same result as one process."""
    with ValidationRender(jobs, workers if workers > 1 else 0) as render:
        yield from render
