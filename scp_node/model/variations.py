"""Site geometry applied to a rendered phantom: which side anterior is on, what the field covers.

Pure array and header bookkeeping (no re-rendering): the pixels move, Image Position (Patient)
and Image Orientation (Patient) move with them (PS3.3 C.7.6.2.1.1), and the truth follows, so the
same anatomy is presented the way another site's scanner would store it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scp_node.model.phantom import DiscTruth, Phantom


def flip_anterior_posterior(ph: Phantom) -> Phantom:
    """Columns reversed: anterior on the other side. The first pixel is the old last column."""
    cols = ph.volume.shape[2]
    r = np.asarray(ph.row_direction, dtype=np.float64)
    shift = r * ph.pixel_spacing[1] * (cols - 1)
    return dataclasses.replace(
        ph,
        volume=np.ascontiguousarray(ph.volume[:, :, ::-1]),
        positions=[tuple(float(v) for v in np.asarray(p) + shift) for p in ph.positions],  # type: ignore[misc]
        row_direction=tuple(float(-v) for v in r),  # type: ignore[arg-type]
        discs=[dataclasses.replace(d, col=cols - 1 - d.col) for d in ph.discs],
    )


def crop(ph: Phantom, row0: int, rows: int, col0: int, cols: int) -> Phantom:
    """The sub-field ``[row0:row0+rows, col0:col0+cols]`` (partial coverage, other matrix)."""
    r = np.asarray(ph.row_direction, dtype=np.float64)
    c = np.asarray(ph.column_direction, dtype=np.float64)
    shift = r * ph.pixel_spacing[1] * col0 + c * ph.pixel_spacing[0] * row0
    return dataclasses.replace(
        ph,
        volume=np.ascontiguousarray(ph.volume[:, row0 : row0 + rows, col0 : col0 + cols]),
        positions=[tuple(float(v) for v in np.asarray(p) + shift) for p in ph.positions],  # type: ignore[misc]
        discs=[dataclasses.replace(d, col=d.col - col0, row=d.row - row0) for d in ph.discs],
    )


def coverage_window(
    ph: Phantom,
    rng: np.random.Generator,
    above_mm: tuple[float, float] = (25.0, 60.0),
    below_mm: tuple[float, float] = (25.0, 70.0),
) -> Phantom:
    """A partial-coverage field: rows from some way above L1-L2 to some way below L5-S1 (about a
    T12-S2 window), all columns."""
    top: DiscTruth = ph.disc("L1-L2")
    bottom: DiscTruth = ph.disc("L5-S1")
    rs = ph.pixel_spacing[0]
    row0 = max(0, int(top.row - rng.uniform(*above_mm) / rs))
    row1 = min(ph.volume.shape[1], int(bottom.row + rng.uniform(*below_mm) / rs))
    return crop(ph, row0, row1 - row0, 0, ph.volume.shape[2])


def off_centre(ph: Phantom, rng: np.random.Generator, shift_mm: float = 40.0) -> Phantom:
    """A field whose centre is ``shift_mm`` away from the spine (the spine near an edge): cut a
    strip of that width off one side, anterior or posterior."""
    cols = ph.volume.shape[2]
    n = min(cols // 3, int(round(shift_mm / ph.pixel_spacing[1])))
    col0 = n if rng.random() < 0.5 else 0
    return crop(ph, 0, ph.volume.shape[1], col0, cols - n)
