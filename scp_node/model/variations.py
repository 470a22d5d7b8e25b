"""Site geometry applied to a rendered phantom: which side anterior is on, what the field covers,
and a saturation band the radiographer placed.

Pure array and header bookkeeping (no re-rendering): the pixels move, Image Position (Patient)
and Image Orientation (Patient) move with them (PS3.3 C.7.6.2.1.1), and the truth follows, so the
same anatomy is presented the way another site's scanner would store it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scp_node.model.phantom import DiscTruth, Phantom

#: Patient axes (LPS, PS3.3 C.7.6.2.1.1): +y is posterior.
_POSTERIOR = np.array([0.0, 1.0, 0.0])


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


@dataclasses.dataclass(frozen=True)
class SaturationBand:
    """A spatial saturation slab in patient space (LPS mm). ``normal`` points posterior; the slab
    holds the points whose signed distance ``(p - origin) . normal`` lies in ``[-thickness, 0]``,
    where only ``residual`` of the signal is left, with soft edges (a slab profile)."""

    origin: np.ndarray
    normal: np.ndarray
    thickness_mm: float
    residual: float
    edge_mm: float = 3.0

    def factor(self, points: np.ndarray) -> np.ndarray:
        """Signal multiplier at patient points ``(..., 3)``: 1 outside, ``residual`` inside."""
        d = (points - self.origin) @ self.normal
        scale = self.edge_mm / 4.0
        inside = _sigmoid(-d / scale) - _sigmoid(-(d + self.thickness_mm) / scale)
        return 1.0 - (1.0 - self.residual) * np.clip(inside, 0.0, 1.0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def place_saturation_band(discs: dict[str, np.ndarray], rng: np.random.Generator) -> SaturationBand:
    """An anterior saturation band placed as a radiographer places it on the localizer, against
    aortic and bowel motion: parallel to the L1-L2 -> L5-S1 line (in the y-z plane), its
    posterior face 12-30 mm in front of the most anterior disc centre (a disc is 35-45 mm deep:
    from a few mm into the vertebral bodies to ~10 mm in front of them), 30-70 mm thick, 5-25 %
    of the signal left. ``discs`` maps level names to patient mm."""
    top, bottom = discs["L1-L2"], discs["L5-S1"]
    along = np.array([0.0, *(top - bottom)[1:]])
    along /= np.linalg.norm(along)
    posterior = np.array([0.0, along[2], -along[1]])
    if posterior @ _POSTERIOR < 0:
        posterior = -posterior
    front = min(float((d - bottom) @ posterior) for d in discs.values())
    origin = bottom + posterior * (front - rng.uniform(12.0, 30.0))
    return SaturationBand(origin, posterior, rng.uniform(30.0, 70.0), rng.uniform(0.05, 0.25))


def pixel_points(
    position: np.ndarray,
    row_direction: np.ndarray,
    column_direction: np.ndarray,
    pixel_spacing: tuple[float, float],
    shape: tuple[int, int],
) -> np.ndarray:
    """Patient mm ``(rows, cols, 3)`` of every pixel of one slice (PS3.3 C.7.6.2.1.1):
    ``pixel_spacing`` is (row spacing, column spacing) as DICOM Pixel Spacing."""
    r = np.arange(shape[0])[:, None, None]
    c = np.arange(shape[1])[None, :, None]
    return (
        np.asarray(position, dtype=np.float64)
        + c * pixel_spacing[1] * np.asarray(row_direction)
        + r * pixel_spacing[0] * np.asarray(column_direction)
    )


def slice_points(ph: Phantom, k: int) -> np.ndarray:
    """Patient mm ``(rows, cols, 3)`` of every pixel of the phantom's slice ``k``."""
    return pixel_points(
        np.asarray(ph.positions[k]),
        np.asarray(ph.row_direction),
        np.asarray(ph.column_direction),
        ph.pixel_spacing,
        ph.volume.shape[1:],
    )


def saturation_band(ph: Phantom, rng: np.random.Generator) -> Phantom:
    """The phantom with an anterior saturation band (:func:`place_saturation_band`) over every
    slice (the slab is perpendicular to the sagittal slices)."""
    band = place_saturation_band({d.level: np.asarray(d.patient_xyz) for d in ph.discs}, rng)
    volume = np.empty_like(ph.volume)
    for k in range(len(ph.positions)):
        factor = band.factor(slice_points(ph, k))
        volume[k] = np.rint(ph.volume[k] * factor).astype(ph.volume.dtype)
    return dataclasses.replace(ph, volume=volume)
