"""Series geometry -> the canonical picture the network sees, and network points -> source pixels.

Every sagittal slice is resampled onto one canonical grid, whatever the site's matrix, pixel
spacing or in-plane orientation: ``size x size`` pixels of ``spacing_mm`` each, centred on the
slice's own image centre, rows running to the patient's feet and columns running posterior
(anterior on the left, the usual sagittal display). The directions come from the DICOM header
alone (PS3.3 C.7.6.2.1.1): Image Orientation (Patient) gives the row and column direction
cosines, Image Position (Patient) the centre of the first pixel, Pixel Spacing the (row,
column) spacing. Canonical "down" is the patient's -z projected onto the slice plane, canonical
"posterior" the patient's +y projected onto it and made orthogonal to "down", so a series stored
with anterior on the right, transposed, or tilted a little is the same picture to the network.

The same functions build the training inputs and the inference inputs (``datasets`` and
``engine`` call nothing else), and map the network's points back to source (column, row) pixels
for the SR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scp_node.series import SeriesVolume

#: Patient axes (LPS): +y posterior, +z superior (head).
_POSTERIOR = np.array([0.0, 1.0, 0.0])
_SUPERIOR = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class CanonicalGrid:
    """The canonical picture: ``size`` x ``size`` pixels of ``spacing_mm``."""

    size: int = 160
    spacing_mm: float = 2.0

    @property
    def fov_mm(self) -> float:
        return self.size * self.spacing_mm


@dataclass(frozen=True)
class SliceFrame:
    """Where one source slice sits in the patient and how the canonical grid lies on it."""

    origin: np.ndarray  # Image Position (Patient): centre of source pixel (0, 0)
    row_dir: np.ndarray  # direction of increasing column index (first IOP triplet)
    col_dir: np.ndarray  # direction of increasing row index (second IOP triplet)
    spacing: tuple[float, float]  # (row spacing, column spacing) mm
    shape: tuple[int, int]  # (rows, columns)
    centre: np.ndarray  # patient point at the canonical grid centre
    down: np.ndarray  # canonical +row direction (towards the feet)
    posterior: np.ndarray  # canonical +column direction

    def canonical_to_patient(self, grid: CanonicalGrid, x: float, y: float) -> np.ndarray:
        """Patient mm of canonical pixel centre (x = column, y = row)."""
        half = (grid.size - 1) / 2.0
        return (
            self.centre
            + (x - half) * grid.spacing_mm * self.posterior
            + (y - half) * grid.spacing_mm * self.down
        )

    def patient_to_canonical(self, grid: CanonicalGrid, xyz: np.ndarray) -> tuple[float, float]:
        """Canonical (x, y) of a patient point (projected onto the slice plane)."""
        d = np.asarray(xyz, dtype=np.float64) - self.centre
        half = (grid.size - 1) / 2.0
        return (
            float(d @ self.posterior) / grid.spacing_mm + half,
            float(d @ self.down) / grid.spacing_mm + half,
        )

    def patient_to_source(self, xyz: np.ndarray) -> tuple[float, float]:
        """Source (column, row) pixel-centre coordinates of a patient point on this slice."""
        d = np.asarray(xyz, dtype=np.float64) - self.origin
        return float(d @ self.row_dir) / self.spacing[1], float(d @ self.col_dir) / self.spacing[0]

    def canonical_to_source(self, grid: CanonicalGrid, x: float, y: float) -> tuple[float, float]:
        return self.patient_to_source(self.canonical_to_patient(grid, x, y))

    def inside_source(self, col: float, row: float, margin_mm: float = 0.0) -> bool:
        """Whether source (col, row) lies within the imaged field, ``margin_mm`` inside its edge."""
        mc, mr = margin_mm / self.spacing[1], margin_mm / self.spacing[0]
        rows, cols = self.shape
        return bool(-0.5 + mc <= col <= cols - 0.5 - mc and -0.5 + mr <= row <= rows - 0.5 - mr)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < 1e-6:
        raise ValueError("degenerate direction")
    return v / n


def canonical_axes(
    row_dir: np.ndarray, col_dir: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(down, posterior, normal) unit vectors of the canonical frame on a slice plane."""
    normal = _unit(np.cross(row_dir, col_dir))
    down = -(_SUPERIOR - (_SUPERIOR @ normal) * normal)
    if float(np.linalg.norm(down)) < 0.3:
        raise ValueError("slice plane nearly axial: no head-feet direction in it")
    down = _unit(down)
    post = _POSTERIOR - (_POSTERIOR @ normal) * normal - (_POSTERIOR @ down) * down
    if float(np.linalg.norm(post)) < 0.3:
        raise ValueError("slice plane nearly coronal: no anterior-posterior direction in it")
    return down, _unit(post), normal


def slice_frames(volume: SeriesVolume) -> list[SliceFrame]:
    """The canonical frame of every slice; all share the in-plane centre of the middle slice."""
    row_dir = _unit(np.asarray(volume.row_direction, dtype=np.float64))
    col_dir = _unit(np.asarray(volume.column_direction, dtype=np.float64))
    down, post, normal = canonical_axes(row_dir, col_dir)
    rows, cols = volume.volume.shape[1:]
    ps = (float(volume.pixel_spacing[0]), float(volume.pixel_spacing[1]))

    def image_centre(k: int) -> np.ndarray:
        origin = np.asarray(volume.positions[k], dtype=np.float64)
        return origin + row_dir * ps[1] * (cols - 1) / 2 + col_dir * ps[0] * (rows - 1) / 2

    mid = image_centre(len(volume.positions) // 2)
    frames = []
    for k, pos in enumerate(volume.positions):
        origin = np.asarray(pos, dtype=np.float64)
        # the middle slice's centre, moved along the normal onto this slice's plane
        centre = mid + ((image_centre(k) - mid) @ normal) * normal
        frames.append(SliceFrame(origin, row_dir, col_dir, ps, (rows, cols), centre, down, post))
    return frames


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Scale so the 1st..99th percentile span is 0..1 and clip to [0, 1.5]."""
    img = image.astype(np.float32)
    hi = float(np.percentile(img, 99.0))
    lo = float(np.percentile(img, 1.0))
    if hi - lo <= 1e-6:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.5)


def _sample(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(image, coords, mode="bilinear", padding_mode="zeros", align_corners=False)


def _sampling_grid(frame: SliceFrame, grid: CanonicalGrid) -> torch.Tensor:
    """``grid_sample`` coordinates ([-1, 1], align_corners=False) of every canonical pixel in
    any image that covers the source field (the source or a resampled copy of it)."""
    half = (grid.size - 1) / 2.0
    idx = (np.arange(grid.size, dtype=np.float64) - half) * grid.spacing_mm
    yy, xx = np.meshgrid(idx, idx, indexing="ij")
    pts = (
        frame.centre[None, None, :]
        + xx[..., None] * frame.posterior[None, None, :]
        + yy[..., None] * frame.down[None, None, :]
    )
    d = pts - frame.origin
    col = (d @ frame.row_dir) / frame.spacing[1]
    row = (d @ frame.col_dir) / frame.spacing[0]
    rows, cols = frame.shape
    # source pixel-centre coordinate c spans [-0.5, n - 0.5]; normalised to [-1, 1]
    gx = (2.0 * col + 1.0) / cols - 1.0
    gy = (2.0 * row + 1.0) / rows - 1.0
    return torch.from_numpy(np.stack([gx, gy], axis=-1).astype(np.float32))


def to_canonical(
    slices: np.ndarray | Sequence[np.ndarray], frames: list[SliceFrame], grid: CanonicalGrid
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source slices ``[K, rows, cols]`` -> canonical inputs ``[K, 1, S, S]`` and a validity mask
    ``[K, 1, S, S]`` (1 where the canonical pixel lies inside the imaged field, else 0).

    Each slice is first low-pass resampled (antialiased) along its own axes to about the
    canonical spacing, then sampled bilinearly at the canonical pixel centres; outside the field
    the input is 0.
    """
    inputs, masks = [], []
    for img, frame in zip(slices, frames, strict=True):
        normed = torch.from_numpy(normalise_intensity(img))[None, None]
        rows, cols = frame.shape
        new_rows = max(2, round(rows * frame.spacing[0] / grid.spacing_mm))
        new_cols = max(2, round(cols * frame.spacing[1] / grid.spacing_mm))
        if (new_rows, new_cols) != (rows, cols):
            normed = F.interpolate(
                normed,
                size=(new_rows, new_cols),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        coords = _sampling_grid(frame, grid)[None]
        inputs.append(_sample(normed, coords))
        masks.append(_sample(torch.ones_like(normed), coords))
    return torch.cat(inputs), torch.cat(masks)
