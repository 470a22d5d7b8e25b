"""Where the mid-sagittal slice is looked for (scp_node.model.midline), on hand-made stacks."""

from __future__ import annotations

import numpy as np
import pytest

from scp_node.model import midline

SPACING = 4.0


def _stack(count: int, first_mm: float = 0.0) -> np.ndarray:
    return first_mm + SPACING * np.arange(count, dtype=np.float64)


def _mirror_images(offsets: np.ndarray, centre_mm: float, seed: int = 0) -> np.ndarray:
    """One random picture per distance from ``centre_mm``: slices equally far to either side
    of it are identical, as a body is nearly symmetric about its midsagittal plane."""
    rng = np.random.default_rng(seed)
    pictures: dict[float, np.ndarray] = {}
    images = []
    for offset in offsets:
        distance = round(abs(offset - centre_mm), 3)
        if distance not in pictures:
            pictures[distance] = rng.random((16, 16))
        images.append(pictures[distance])
    return np.stack(images)


def test_symmetry_centre_is_where_mirror_pairs_are_alike() -> None:
    offsets = _stack(15)  # 0 .. 56 mm, the stack's centre at 28 mm
    images = _mirror_images(offsets, centre_mm=44.0)
    assert midline.symmetry_centre(images, offsets, 0.0, 56.0) == pytest.approx(44.0)
    # only positions inside the given span are candidates
    assert midline.symmetry_centre(images, offsets, 0.0, 30.0) != pytest.approx(44.0)


def test_symmetry_centre_between_two_slices() -> None:
    offsets = _stack(15)
    images = _mirror_images(offsets, centre_mm=18.0)  # half-way between slices 4 and 5
    assert midline.symmetry_centre(images, offsets, 0.0, 56.0) == pytest.approx(18.0)


def test_no_symmetry_centre_without_two_pairs() -> None:
    offsets = _stack(2)  # one pair only
    assert midline.symmetry_centre(np.zeros((2, 4, 4)), offsets, 0.0, 4.0) is None


def test_a_centred_stack_keeps_its_centre() -> None:
    offsets = _stack(15)
    images = _mirror_images(offsets, centre_mm=32.0)  # 4 mm from the stack's centre
    merit = {k: 0.9 for k in range(15)}
    assert midline.search_centre(merit, images, offsets) == (28.0, "")


def test_a_stack_beside_the_spine_is_searched_at_its_symmetry_centre() -> None:
    offsets = _stack(15)
    images = _mirror_images(offsets, centre_mm=48.0)  # 20 mm from the stack's centre
    merit = {k: 0.9 if offsets[k] >= 24.0 else 0.5 for k in range(15)}
    centre, note = midline.search_centre(merit, images, offsets)
    assert centre == pytest.approx(48.0)
    assert "20 mm from the stack's centre" in note
    # and the slice read is the one at the symmetry centre, not the sharpest near the middle
    merit[7] = 0.92  # the stack's middle slice, through the side of the vertebral bodies
    assert midline.best_slice(merit, offsets, centre) == 12


def test_the_pull_gives_ties_to_the_slice_nearest_the_centre() -> None:
    offsets = _stack(15)
    merit = {k: 0.9 for k in range(15)}
    assert midline.best_slice(merit, offsets, 28.0) == 7
    merit[9] = 0.9 + 0.5 * midline.PULL_PER_MM * 8  # 8 mm off: not sharp enough to win
    assert midline.best_slice(merit, offsets, 28.0) == 7
    merit[9] = 0.9 + 2 * midline.PULL_PER_MM * 8
    assert midline.best_slice(merit, offsets, 28.0) == 9


def test_window_is_the_slices_near_the_centre() -> None:
    offsets = _stack(15)
    assert midline.window(offsets, 28.0) == [4, 5, 6, 7, 8, 9, 10]
    assert midline.window(offsets, 200.0) == [14]  # none near: the nearest one


@pytest.mark.parametrize(
    ("sharp_mm", "end"),
    [
        ((0.0, 56.0), None),  # the band fills the window: a centred stack
        ((20.0, 36.0), None),  # the band inside the window
        ((0.0, 24.0), -1),  # it runs out of the window's low end
        ((32.0, 56.0), 1),  # and of its high end
    ],
)
def test_a_band_running_out_of_one_end_of_the_window_is_lopsided(
    sharp_mm: tuple[float, float], end: int | None
) -> None:
    offsets = _stack(15)
    near = midline.window(offsets, 28.0)  # slices 4 .. 10
    merit = {k: 0.9 if sharp_mm[0] <= offsets[k] <= sharp_mm[1] else 0.6 for k in near}
    assert midline.lopsided_end(merit, offsets, near) == end


def test_a_band_at_the_end_of_the_stack_is_not_lopsided() -> None:
    """Nothing lies beyond the window's end: reading more slices cannot help."""
    offsets = _stack(5)  # 0 .. 16 mm: the whole stack is the window
    near = midline.window(offsets, 8.0)
    merit = {k: 0.9 if k <= 1 else 0.6 for k in near}
    assert midline.lopsided_end(merit, offsets, near) is None


def test_slices_beyond_the_window_nearest_first() -> None:
    offsets = _stack(15)[::-1].copy()  # stored high to low: slice 0 at 56 mm
    near = midline.window(offsets, 28.0)  # slices 4 .. 10 (40 .. 16 mm)
    assert midline.beyond_window(offsets, near, -1) == [11, 12, 13, 14]
    assert midline.beyond_window(offsets, near, 1) == [3, 2, 1, 0]


def test_only_a_band_centred_far_from_the_stack_centre_is_off_centre() -> None:
    offsets = _stack(15)  # centre 28 mm
    near_the_centre = {k: 0.95 if 16.0 <= offsets[k] <= 36.0 else 0.5 for k in range(15)}
    assert not midline.band_off_centre(near_the_centre, offsets)  # middle 26 mm
    to_one_side = {k: 0.95 if offsets[k] <= 24.0 else 0.5 for k in range(15)}
    assert midline.band_off_centre(to_one_side, offsets)  # middle 12 mm: 16 mm off
