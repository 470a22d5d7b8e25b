"""Canonical geometry from the DICOM header: hand-made series, flips, spacing, obliquity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scp_node.model import datasets, variations
from scp_node.model.geometry import CanonicalGrid, canonical_axes, slice_frames, to_canonical
from scp_node.model.phantom import generate
from scp_node.series import SeriesVolume

GRID = CanonicalGrid(size=128, spacing_mm=2.5)


def _series(
    image: np.ndarray,
    row_dir: tuple[float, float, float],
    col_dir: tuple[float, float, float],
    spacing: tuple[float, float],
    origin: tuple[float, float, float],
) -> SeriesVolume:
    normal = np.cross(row_dir, col_dir)
    positions = [tuple(float(v) for v in np.asarray(origin) + k * 4.0 * normal) for k in range(3)]
    return SeriesVolume(
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.4",
        volume=np.stack([image] * 3).astype(np.float32),
        sop_instance_uids=[f"1.2.3.4.{k}" for k in range(3)],
        positions=positions,  # type: ignore[arg-type]
        row_direction=row_dir,
        column_direction=col_dir,
        pixel_spacing=spacing,
        slice_spacing=4.0,
    )


def _bright_spot(rows: int, cols: int, row: float, col: float, half: int = 2) -> np.ndarray:
    """A bright 5 x 5 spot on a smooth background (so the percentile scaling is defined)."""
    rr, cc = np.mgrid[0:rows, 0:cols]
    img = (100.0 + 100.0 * (rr + cc) / (rows + cols)).astype(np.float32)
    img[
        int(row - half + 0.5) : int(row + half + 1.5), int(col - half + 0.5) : int(col + half + 1.5)
    ] = 5000.0
    return img


def _canonical_peak(series: SeriesVolume) -> tuple[float, float]:
    frames = slice_frames(series)
    x, _mask = to_canonical(series.volume, frames, GRID)
    img = x[1, 0].numpy()
    weights = np.where(img > 1.2, img, 0.0)
    rr, cc = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return float((weights * cc).sum() / weights.sum()), float((weights * rr).sum() / weights.sum())


def test_canonical_axes_point_to_feet_and_back() -> None:
    # the phantom convention: columns run posterior (+y), rows run to the feet (-z)
    down, post, _ = canonical_axes(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]))
    assert np.allclose(down, [0, 0, -1]) and np.allclose(post, [0, 1, 0])
    # anterior on the right: columns run anterior; canonical posterior is still +y
    down, post, _ = canonical_axes(np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0]))
    assert np.allclose(down, [0, 0, -1]) and np.allclose(post, [0, 1, 0])


def test_axial_plane_is_refused() -> None:
    with pytest.raises(ValueError, match="axial"):
        canonical_axes(np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))


def test_a_point_lands_in_the_same_canonical_place_whatever_the_storage() -> None:
    """A spot 40 mm posterior and 30 mm below the field centre, stored five ways: anterior on
    the left, anterior on the right, transposed, at 0.5 mm instead of 1 mm pixels, and as a
    rectangular matrix of non-square pixels."""
    # 1 mm pixels, 200 x 200, anterior left: centre pixel (99.5, 99.5)
    a = _series(
        _bright_spot(200, 200, 130, 140), (0, 1, 0), (0, 0, -1), (1.0, 1.0), (0, -99.5, 99.5)
    )
    # anterior right: columns mirrored, the first pixel is the most posterior one
    b = _series(
        _bright_spot(200, 200, 130, 59), (0, -1, 0), (0, 0, -1), (1.0, 1.0), (0, 99.5, 99.5)
    )
    # transposed: rows run posterior, columns run to the feet
    c = _series(
        _bright_spot(200, 200, 140, 130), (0, 0, -1), (0, 1, 0), (1.0, 1.0), (0, -99.5, 99.5)
    )
    # 0.5 mm pixels, 400 x 400 over the same field
    d = _series(
        _bright_spot(400, 400, 260.5, 280.5, half=5),
        (0, 1, 0),
        (0, 0, -1),
        (0.5, 0.5),
        (0, -99.75, 99.75),
    )
    # a rectangular matrix of non-square pixels: 250 rows of 0.8 mm, 400 columns of 0.5 mm
    e = _series(
        _bright_spot(250, 400, 124.5 + 30.5 / 0.8, 199.5 + 40.5 / 0.5, half=3),
        (0, 1, 0),
        (0, 0, -1),
        (0.8, 0.5),  # Pixel Spacing: (between rows, between columns)
        (0, -199.5 * 0.5, 124.5 * 0.8),
    )
    peaks = [_canonical_peak(s) for s in (a, b, c, d, e)]
    half = (GRID.size - 1) / 2
    expected = (half + 40.5 / GRID.spacing_mm, half + 30.5 / GRID.spacing_mm)
    for x, y in peaks:
        assert abs(x - expected[0]) <= 1.0 and abs(y - expected[1]) <= 1.0, peaks


def test_points_map_back_to_source_pixels() -> None:
    ph = generate("normal", seed=3, slices=9, size=256)
    for candidate in (ph, variations.flip_anterior_posterior(ph)):
        series = datasets.phantom_series(candidate)
        frames = slice_frames(series)
        for disc in candidate.discs:
            frame = frames[disc.slice_index]
            x, y = frame.patient_to_canonical(GRID, np.asarray(disc.patient_xyz))
            col, row = frame.canonical_to_source(GRID, x, y)
            assert math.isclose(col, disc.col, abs_tol=1e-6)
            assert math.isclose(row, disc.row, abs_tol=1e-6)


def test_non_square_pixels_map_back_to_the_same_source_pixel() -> None:
    """Source pixel -> patient (PS3.3 C.7.6.2.1.1) -> canonical -> source, on a rectangular
    matrix of 0.8 x 0.5 mm pixels stored anterior on the right."""
    series = _series(
        np.ones((250, 400), np.float32), (0, -1, 0), (0, 0, -1), (0.8, 0.5), (0, 99.75, 99.6)
    )
    frame = slice_frames(series)[1]
    for col, row in ((0.0, 0.0), (399.0, 249.0), (280.5, 162.6), (12.25, 200.0)):
        xyz = np.asarray(series.pixel_to_patient(1, col, row))
        back = frame.canonical_to_source(GRID, *frame.patient_to_canonical(GRID, xyz))
        assert back == pytest.approx((col, row), abs=1e-6)


def test_flipped_series_gives_the_same_canonical_targets() -> None:
    ph = generate("normal", seed=4, slices=9, size=256)
    flipped = variations.flip_anterior_posterior(ph)
    t1 = datasets.canonical_targets(ph, datasets.phantom_series(ph), GRID)
    t2 = datasets.canonical_targets(flipped, datasets.phantom_series(flipped), GRID)
    assert np.allclose(t1, t2, atol=1e-6)
    # and the pictures agree (the flip is exact, resampling differs by at most rounding)
    k = ph.discs[0].slice_index
    x1, _ = to_canonical(
        ph.volume[k : k + 1].astype(np.float32),
        [slice_frames(datasets.phantom_series(ph))[k]],
        GRID,
    )
    x2, _ = to_canonical(
        flipped.volume[k : k + 1].astype(np.float32),
        [slice_frames(datasets.phantom_series(flipped))[k]],
        GRID,
    )
    assert float((x1 - x2).abs().mean()) < 0.01


def test_oblique_slices_keep_head_up() -> None:
    tilt = math.radians(10)
    row_dir = (0.0, math.cos(tilt), math.sin(tilt))  # columns posterior, tilted 10 deg
    col_dir = (0.0, 0.0, -1.0)
    down, post, normal = canonical_axes(np.asarray(row_dir), np.asarray(col_dir))
    assert down[2] < -0.98 and post[1] > 0.98
    assert abs(float(down @ normal)) < 1e-9 and abs(float(post @ down)) < 1e-9


def test_mask_marks_the_imaged_field() -> None:
    series = _series(
        _bright_spot(100, 100, 50, 50), (0, 1, 0), (0, 0, -1), (1.0, 1.0), (0, -49.5, 49.5)
    )
    _x, mask = to_canonical(series.volume, slice_frames(series), GRID)
    inside = float(mask[1, 0].sum()) * GRID.spacing_mm**2
    assert abs(inside - 100.0 * 100.0) < 0.05 * 100.0 * 100.0  # the 100 x 100 mm field


def test_saturation_band_is_placed_in_front_of_the_spine_whichever_side_anterior_is() -> None:
    """The stress row's band is placed in patient space: the same pixels darken whether the
    series is stored with anterior on the left or on the right, nothing behind the discs
    changes, and the truth is kept."""
    ph = generate("normal", seed=4, slices=5, size=128)
    flipped = variations.flip_anterior_posterior(ph)
    banded = variations.saturation_band(ph, np.random.default_rng(3))
    banded_flipped = variations.saturation_band(flipped, np.random.default_rng(3))
    assert np.array_equal(banded.volume, banded_flipped.volume[:, :, ::-1])
    assert banded.discs == ph.discs
    k = ph.disc("L3-L4").slice_index
    points = variations.slice_points(ph, k)
    disc_y = [d.patient_xyz[1] for d in ph.discs]
    z = sorted(d.patient_xyz[2] for d in ph.discs)
    behind = points[..., 1] > max(disc_y)
    # 34-40 mm in front of the most anterior disc centre, between L4-L5 and L2-L3: inside any
    # band drawn (its face 12-30 mm in front, 30-70 mm thick)
    ahead = (points[..., 1] < min(disc_y) - 34.0) & (points[..., 1] > min(disc_y) - 40.0)
    ahead &= (points[..., 2] > z[1]) & (points[..., 2] < z[3])
    before, after = ph.volume[k].astype(float), banded.volume[k].astype(float)
    assert np.array_equal(before[behind], after[behind])
    lit = ahead & (before > 100)
    assert lit.sum() > 20 and float(np.median(after[lit] / before[lit])) < 0.3
