"""Phantom data sets with disjoint seed ranges, and phantoms as in-memory series volumes.

Seed ranges (the phantom seed; the variant is mixed into each phantom's RNG too):
training 100000 + i, validation (threshold choice) 200000 + i, evaluation 300000 + i.
"""

from __future__ import annotations

import numpy as np

from scp_node.model.phantom import COLUMN_DIRECTION, ROW_DIRECTION, Phantom, generate
from scp_node.model.preprocess import to_input, to_network_xy
from scp_node.result import DISC_LEVELS
from scp_node.series import SeriesVolume

TRAIN_SEED0 = 100_000
VALIDATION_SEED0 = 200_000
EVALUATION_SEED0 = 300_000


def phantom_series(ph: Phantom) -> SeriesVolume:
    """A phantom as the loader would return it after reading its DICOM files (no files written)."""
    uid = f"2.25.{ph.seed}{len(ph.variant)}"
    return SeriesVolume(
        study_instance_uid=uid + ".1",
        series_instance_uid=uid + ".2",
        volume=ph.volume.astype(np.float32),
        sop_instance_uids=[f"{uid}.3.{k}" for k in range(ph.volume.shape[0])],
        positions=list(ph.positions),
        row_direction=ROW_DIRECTION,
        column_direction=COLUMN_DIRECTION,
        pixel_spacing=ph.pixel_spacing,
        slice_spacing=ph.slice_spacing,
    )


def training_arrays(
    count: int, input_size: int, seed0: int = TRAIN_SEED0, context: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Normal phantoms -> inputs ``[N, 1, S, S]`` float32 and targets ``[N, 5, 2]`` (x, y net px).

    Each phantom gives its ``context`` central slices, all sharing the midline disc centres.
    Native sizes and slice counts vary like real series.
    """
    xs, ys = [], []
    for i in range(count):
        rng = np.random.default_rng(seed0 + i)
        size = int(rng.choice([192, 256, 320, 384]))
        slices = int(rng.integers(12, 21))
        centre = slices // 2
        idx = tuple(range(centre - context // 2, centre - context // 2 + context))
        ph = generate("normal", seed=seed0 + i, slices=slices, size=size, only_slices=idx)
        x = to_input(ph.volume[list(idx)].astype(np.float32), input_size).numpy()
        target = np.array(
            [
                to_network_xy(ph.disc(lv).col, ph.disc(lv).row, size, size, input_size)
                for lv in DISC_LEVELS
            ],
            dtype=np.float32,
        )
        xs.append(x)
        ys.extend([target] * len(idx))
    return np.concatenate(xs).astype(np.float32), np.stack(ys)
