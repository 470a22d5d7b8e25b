"""Where the mid-sagittal slice of a sagittal stack lies.

A technologist centres the sagittal stack on the spinal canal, so the localizer first looks within
:data:`SEARCH_MM` of the stack's centre (along the slice normal, from Image Position (Patient),
PS3.3 C.7.6.2.1.1) for the slice on which it finds the reference levels most sharply. When the
stack is not centred on the spine (a mis-planned stack, the lumbar curve of a scoliosis), the
slices through the side of the vertebral bodies look as sharp as the midline, and that window may
not hold the midline at all. The body is nearly mirror-symmetric about the midsagittal plane, so
slices equally far to either side of it look alike: the **symmetry centre** of the stack is the
position about which mirror pairs of slices differ least. It replaces the stack's centre only
when it lies more than :data:`SYMMETRY_GUARD_MM` from it, so a centred stack is read as before.
Slices are read (decoded) only as needed: those beyond the window only when the sharp slices run
out of one end of it (:func:`lopsided_end`), the whole stack only when the sharp band so found is
centred far from the stack's centre (:func:`band_off_centre`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from scp_node.model.geometry import SliceFrame

#: How far from the search centre the mid-sagittal slice is looked for (mm).
SEARCH_MM = 12.0
#: Merit taken off per mm from the search centre (ties go to the slice nearest it).
PULL_PER_MM = 0.002
#: Slices whose merit is within this of the best are "confident": the band around the midline.
BAND = 0.02
#: Mirror pairs of slices this far apart (mm) vote for their middle as the symmetry centre.
PAIR_MM = (3.0, 26.0)
#: The symmetry centre is used only this far (mm) or further from the stack's centre.
SYMMETRY_GUARD_MM = 10.0


def offsets_mm(frames: Sequence[SliceFrame]) -> np.ndarray:
    """Each slice's position along the stack's slice normal (mm; row x column direction)."""
    normal = np.cross(frames[0].row_dir, frames[0].col_dir)
    return np.array([float(f.origin @ normal) for f in frames])


def stack_centre(offsets: np.ndarray) -> float:
    """The middle of the stack along its normal (mm)."""
    return float((offsets.min() + offsets.max()) / 2.0)


def window(offsets: np.ndarray, centre_mm: float) -> list[int]:
    """Slices within :data:`SEARCH_MM` of ``centre_mm`` (else the nearest one), stack order."""
    distance = np.abs(offsets - centre_mm)
    near = [k for k in range(len(offsets)) if distance[k] <= SEARCH_MM]
    return near or [int(np.argmin(distance))]


def best_slice(merit: dict[int, float], offsets: np.ndarray, centre_mm: float) -> int:
    """Among the :func:`window` slices around ``centre_mm``, the one of highest merit less
    :data:`PULL_PER_MM` per mm from ``centre_mm``. ``merit``: slice index -> merit (every
    window slice must be there)."""
    near = window(offsets, centre_mm)
    scores = [merit[k] - PULL_PER_MM * abs(offsets[k] - centre_mm) for k in near]
    return near[int(np.argmax(scores))]


def lopsided_end(merit: dict[int, float], offsets: np.ndarray, near: list[int]) -> int | None:
    """The end of the window ``near`` (-1 its low end, +1 its high end, along the normal) that
    the window's confident band runs into with more slices of the stack beyond, when the band
    reaches exactly one such end: the band, and with it the midline, may go on outside the
    window. None when the band fills the window (a centred stack) or sits inside it."""
    best = max(merit[k] for k in near)
    ends = (min(near, key=lambda k: offsets[k]), max(near, key=lambda k: offsets[k]))
    outside = bool((offsets < offsets[ends[0]]).any()), bool((offsets > offsets[ends[1]]).any())
    low, high = (
        beyond and merit[end] >= best - BAND for end, beyond in zip(ends, outside, strict=True)
    )
    if low == high:
        return None
    return -1 if low else 1


def beyond_window(offsets: np.ndarray, near: list[int], end: int) -> list[int]:
    """The slices beyond the window's ``end`` (:func:`lopsided_end`), nearest first."""
    edge = max(end * offsets[k] for k in near)
    return sorted(
        (k for k in range(len(offsets)) if end * offsets[k] > edge), key=lambda k: end * offsets[k]
    )


def band_off_centre(merit: dict[int, float], offsets: np.ndarray) -> bool:
    """Whether the middle of the confident band of the slices read so far lies more than
    :data:`SYMMETRY_GUARD_MM` from the stack's centre: only then can the symmetry centre move
    the search."""
    lo, hi = confident_span(merit, offsets)
    return abs((lo + hi) / 2.0 - stack_centre(offsets)) > SYMMETRY_GUARD_MM


def symmetry_centre(
    images: np.ndarray, offsets: np.ndarray, lo_mm: float, hi_mm: float
) -> float | None:
    """The position (mm along the normal, within ``lo_mm``..``hi_mm``) about which the slices'
    mirror pairs differ least, or None when no position has two pairs.

    ``images[k]``: slice ``k`` on one in-plane grid (the canonical inputs). A pair's difference
    is the mean absolute difference of its two images divided by the mean difference of all
    pairs the same number of slices apart (slices further apart differ more anyway). Candidate
    centres lie on a half-slice grid; each is scored by the mean normalised difference of the
    pairs (:data:`PAIR_MM` apart) centred on it."""
    spacing = float(np.median(np.abs(np.diff(np.sort(offsets))))) or 1.0
    pairs: list[tuple[float, int, float]] = []  # (difference, slices apart, middle mm)
    for a in range(len(offsets)):
        for b in range(a + 1, len(offsets)):
            apart = abs(offsets[a] - offsets[b])
            if PAIR_MM[0] <= apart <= PAIR_MM[1]:
                difference = float(np.abs(images[a] - images[b]).mean())
                pairs.append((difference, round(apart / spacing), (offsets[a] + offsets[b]) / 2))
    by_separation: dict[int, list[float]] = defaultdict(list)
    for difference, steps, _middle in pairs:
        by_separation[steps].append(difference)
    typical = {steps: float(np.mean(d)) or 1.0 for steps, d in by_separation.items()}
    half = spacing / 2.0
    near_grid: dict[int, list[int]] = defaultdict(list)  # grid step -> pairs centred near it
    for i, (_d, _s, middle) in enumerate(pairs):
        near_grid[round(middle / half)].append(i)
    best, found = np.inf, None
    for step in sorted(near_grid):
        centre = step * half
        if not lo_mm <= centre <= hi_mm:
            continue
        # a pair votes within a quarter slice of the centre: it sits on this grid step or,
        # by float rounding, a neighbouring one
        nearby = sorted(i for k in (step - 1, step, step + 1) for i in near_grid.get(k, ()))
        votes = [
            pairs[i][0] / typical[pairs[i][1]]
            for i in nearby
            if abs(pairs[i][2] - centre) < spacing / 4
        ]
        if len(votes) >= 2 and float(np.mean(votes)) < best:
            best, found = float(np.mean(votes)), centre
    return found


def confident_span(merit: dict[int, float], offsets: np.ndarray) -> tuple[float, float]:
    """The extent (mm) of the slices whose merit is within :data:`BAND` of the best."""
    best = max(merit.values())
    inside = [offsets[k] for k, m in merit.items() if m >= best - BAND]
    return float(min(inside)), float(max(inside))


def search_centre(
    merit: dict[int, float], images: np.ndarray, offsets: np.ndarray
) -> tuple[float, str]:
    """Where to look for the mid-sagittal slice when every slice's merit and image are known:
    the symmetry centre, searched inside the confident band, when it lies more than
    :data:`SYMMETRY_GUARD_MM` from the stack's centre, else the stack's centre; and a note
    saying so ("" when the stack's centre stands)."""
    centre = stack_centre(offsets)
    lo, hi = confident_span(merit, offsets)
    symmetric = symmetry_centre(images, offsets, lo, hi)
    if symmetric is None or abs(symmetric - centre) <= SYMMETRY_GUARD_MM:
        return centre, ""
    return symmetric, (
        f"sagittal stack not centred on the spine: mid-sagittal slice looked for "
        f"{abs(symmetric - centre):.0f} mm from the stack's centre, where the slices are "
        "mirror-symmetric"
    )
