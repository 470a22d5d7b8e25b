"""Uncertainty maths on normalised heatmaps (pure numpy; entropies in bits).

A heatmap here is a probability map ``p[H, W]`` (non-negative, sums to 1), as produced by the
spatial
softmax of the localizer. With ``T`` Monte-Carlo dropout passes ``p_t``:

* Shannon entropy ``H(p) = -sum p log2 p``; uniform over N pixels gives ``log2 N``, one-hot gives 0.
* Spatial entropy: the entropy of the mass summed into a coarse ``grid x grid`` cell layout
  (insensitive to the peak's width, sensitive to mass spread over distant places).
* Predictive entropy ``H(mean_t p_t)``; mutual information (epistemic part, BALD)
  ``MI = H(mean_t p_t) - mean_t H(p_t)`` which is >= 0 and 0 when all passes agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

_EPS = 1e-12


def normalise(heatmap: np.ndarray) -> np.ndarray:
    """Clip to >= 0 and scale to sum 1 over the last two axes (uniform if all zero)."""
    m = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, None)
    total = m.sum(axis=(-2, -1), keepdims=True)
    uniform = np.full_like(m, 1.0 / (m.shape[-1] * m.shape[-2]))
    return np.where(total > 0, m / np.where(total > 0, total, 1.0), uniform)


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits over the last two axes of normalised maps."""
    p = np.asarray(p, dtype=np.float64)
    terms = np.where(p > 0, -p * np.log2(np.maximum(p, _EPS)), 0.0)
    return terms.sum(axis=(-2, -1))


def spatial_entropy(p: np.ndarray, grid: int = 8) -> np.ndarray:
    """Entropy in bits of the mass pooled into ``grid x grid`` cells (max ``log2(grid**2)``)."""
    p = np.asarray(p, dtype=np.float64)
    h, w = p.shape[-2:]
    rows = np.array_split(np.arange(h), grid)
    cols = np.array_split(np.arange(w), grid)
    cells = np.stack(
        [
            np.stack(
                [p[..., r[0] : r[-1] + 1, c[0] : c[-1] + 1].sum(axis=(-2, -1)) for c in cols], -1
            )
            for r in rows
        ],
        -2,
    )
    return entropy_bits(cells)


def _centre_of_mass(p: np.ndarray, x0: int, y0: int, radius: int) -> tuple[float, float, float]:
    """(x, y, mass) of ``p`` within ``radius`` pixels (Chebyshev) of pixel (x0, y0); the pixel
    itself when that window holds no mass."""
    h, w = p.shape
    ys = slice(max(y0 - radius, 0), min(y0 + radius + 1, h))
    xs = slice(max(x0 - radius, 0), min(x0 + radius + 1, w))
    win = p[ys, xs]
    total = float(win.sum())
    if total <= 0:
        return float(x0), float(y0), total
    yy, xx = np.mgrid[ys, xs]
    return float((win * xx).sum() / total), float((win * yy).sum() / total), total


def peak_location(p: np.ndarray, radius: int = 3) -> tuple[float, float]:
    """Sub-pixel (x, y) of the peak: centre of mass within ``radius`` pixels of the arg-max."""
    p = np.asarray(p, dtype=np.float64)
    y0, x0 = np.unravel_index(int(np.argmax(p)), p.shape)
    x, y, _mass = _centre_of_mass(p, int(x0), int(y0), radius)
    return x, y


@dataclass(frozen=True)
class Peak:
    """A local peak of a level's mean map: sub-pixel (x, y) and the mass within its window."""

    x: float
    y: float
    mass: float


def peaks(p: np.ndarray, count: int = 3, radius: int = 3, separation: int = 6) -> list[Peak]:
    """The ``count`` strongest peaks of ``p``, strongest first: the arg-max (the point
    :func:`peak_location` gives), then the arg-max of what is left once ``separation`` px (a
    disc's half-distance on the canonical grid) around each earlier peak is set aside. Each
    peak's mass is the probability within ``radius`` px of it."""
    p = np.asarray(p, dtype=np.float64)
    left = p.copy()
    found: list[Peak] = []
    total = max(p.sum(), _EPS)
    for _ in range(count):
        if left.max() <= 0:
            break
        y0, x0 = np.unravel_index(int(np.argmax(left)), left.shape)
        x, y, mass = _centre_of_mass(p, int(x0), int(y0), radius)
        found.append(Peak(x, y, mass / total))
        left[
            max(y0 - separation, 0) : y0 + separation + 1,
            max(x0 - separation, 0) : x0 + separation + 1,
        ] = 0.0
    return found


def peak_confidence(p: np.ndarray, radius: int = 3) -> float:
    """Probability mass within ``radius`` px (Chebyshev) of the arg-max; 1 = all at the peak."""
    p = np.asarray(p, dtype=np.float64)
    y0, x0 = np.unravel_index(int(np.argmax(p)), p.shape)
    win = p[max(y0 - radius, 0) : y0 + radius + 1, max(x0 - radius, 0) : x0 + radius + 1]
    return float(win.sum() / max(p.sum(), _EPS))


def predictive_entropy(samples: np.ndarray) -> float:
    """Entropy (bits) of the mean of ``T`` normalised maps ``[T, H, W]``."""
    return float(entropy_bits(np.asarray(samples, dtype=np.float64).mean(axis=0)))


def mutual_information(samples: np.ndarray) -> float:
    """BALD mutual information (bits): predictive entropy minus the mean per-pass entropy."""
    s = np.asarray(samples, dtype=np.float64)
    return max(0.0, predictive_entropy(s) - float(entropy_bits(s).mean()))


@dataclass(frozen=True)
class LevelStats:
    """Per level figures from T sampled maps of one level."""

    x: float
    y: float
    peak_confidence: float
    entropy: float
    spatial_entropy: float
    predictive_entropy: float
    mutual_information: float


def level_stats(samples: np.ndarray, grid: int = 8, radius: int = 3) -> LevelStats:
    """All figures for one level from ``[T, H, W]`` normalised maps (single pass: T = 1).

    ``entropy`` and ``spatial_entropy`` are those of the mean map (for T = 1, the map itself), so
    ``entropy`` equals the predictive entropy; MI is 0 for T = 1.
    """
    s = np.asarray(samples, dtype=np.float64)
    mean = s.mean(axis=0)
    x, y = peak_location(mean, radius)
    return LevelStats(
        x=x,
        y=y,
        peak_confidence=peak_confidence(mean, radius),
        entropy=float(entropy_bits(mean)),
        spatial_entropy=float(spatial_entropy(mean, grid)),
        predictive_entropy=predictive_entropy(s),
        mutual_information=mutual_information(s) if s.shape[0] > 1 else 0.0,
    )


#: The levels the LSTV score looks at, and the reference (upper) levels it is compared with.
JUNCTION_LEVELS: tuple[str, ...] = ("L4-L5", "L5-S1")
REFERENCE_LEVELS: tuple[str, ...] = ("L1-L2", "L2-L3", "L3-L4")


class LevelFigures(Protocol):
    """What a level's uncertainty is made of: :class:`LevelStats`, or the
    :class:`~scp_node.result.LevelFinding` a result reports (MI None: counted as 0)."""

    @property
    def mutual_information(self) -> float | None: ...

    @property
    def peak_confidence(self) -> float: ...


def level_uncertainty(st: LevelFigures) -> float:
    """One level's uncertainty: ``4 * MI + (1 - peak_confidence)``.

    MI (bits) is the epistemic disagreement between dropout passes (and neighbouring slices); on
    confident levels it is ~0.05-0.1 bits, hence the weight 4. ``1 - peak_confidence`` is the
    probability mass *not* within 3 network pixels of the peak (aleatoric spread, e.g. a map
    split between two candidate discs).
    """
    return 4.0 * (st.mutual_information or 0.0) + (1.0 - st.peak_confidence)


def uncertainty_excess(stats: Mapping[str, LevelFigures]) -> float:
    """Junction uncertainty in excess of the study's own reference levels:

    ``mean_{L4-L5, L5-S1} u - mean_{L1-L2, L2-L3, L3-L4} u`` with ``u`` from
    :func:`level_uncertainty`.

    A model trained on normal spines localizes the junction about as sharply as the levels above
    it; a transitional junction makes it hesitate there and only there. Subtracting the same
    study's reference levels removes what the whole study shares (a scanner, noise level or
    contrast the model never saw), so a globally uncertain but normal spine does not look like
    LSTV. Whether the reference levels are sharp enough to compare with is the quality gate's
    question (:func:`not_assessable_reason`).
    """
    junction = np.mean([level_uncertainty(stats[lv]) for lv in JUNCTION_LEVELS])
    reference = np.mean([level_uncertainty(stats[lv]) for lv in REFERENCE_LEVELS])
    return float(junction - reference)


#: The score term of an extra segment in the chain (:func:`extra_segment`): one whole extra
#: mobile disc, as the disc signal below L5-S1 counts one (:attr:`DiscEvidence.extra` ~1).
EXTRA_SEGMENT_TERM = 1.0


def lstv_score(
    stats: Mapping[str, LevelFigures],
    evidence: DiscEvidence | None = None,
    extra_segment: bool = False,
) -> float:
    """LSTV suspicion (higher = more suspicious): :func:`uncertainty_excess`, plus, for weights
    with the mobile-discs channel, the disc signal missing at L5-S1 and the extra disc signal
    below it (:class:`DiscEvidence`), each relative to the same study's upper discs.

    When the chain L1-L2 .. L4-L5 holds an extra segment (:func:`extra_segment`), that counts as
    :data:`EXTRA_SEGMENT_TERM` and the uncertainty excess is left out: its reference levels then
    straddle a gap of two segments and are no reference for the junction.

    The shortening of the lowest lumbar segment (:func:`junction_shortening`) is *not* a score
    term: in the project's own phantoms normal spines with a narrowed, degenerate L5-S1 disc
    shorten it as much as a rudimentary disc does (docs/model.md, "Tried and rejected"). It
    only corroborates a score that is over the threshold anyway (:func:`uncorroborated`)."""
    score = EXTRA_SEGMENT_TERM if extra_segment else uncertainty_excess(stats)
    if evidence is not None:
        score += evidence.missing + evidence.extra
    return float(score)


def junction_gap_ratio(points_mm: Sequence[tuple[float, float]]) -> float:
    """The L4-L5 -> L5-S1 distance over the median distance between the levels above it (L1-L2
    .. L4-L5), points in mm in level order. About 1 in a normal spine (5th percentile 0.92 on the
    validation phantoms of both training generators); a rudimentary L5-S1 disc under a
    sacral-like L5 makes the lowest segment shorter (sacralization median 0.87-0.90), and so
    does a narrowed, degenerate L5-S1 disc in a normal spine."""
    gaps = _junction_gap(points_mm)
    if gaps is None:
        return 1.0
    junction, above = gaps
    return junction / above if above > 1e-9 else 1.0


def _junction_gap(points_mm: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(L4-L5 -> L5-S1 distance, median distance between the levels above), or None with fewer
    than three points."""
    pts = np.asarray(points_mm, dtype=np.float64)
    if len(pts) < 3:
        return None
    gaps = np.hypot(*np.diff(pts, axis=0).T)
    return float(gaps[-1]), float(np.median(gaps[:-1]))


def _l5s1_above_l4l5(points_mm: Sequence[tuple[float, float]]) -> bool:
    """L5-S1 placed at or above L4-L5 (y grows towards the feet)."""
    return bool(points_mm[-1][1] <= points_mm[-2][1])


def junction_shortening(ratio: float) -> float:
    """How much shorter the lowest lumbar segment is than those above (0 = not shorter; 0.15 =
    15 % shorter), from :func:`junction_gap_ratio`. A distance between localized points in mm,
    so it does not depend on the picture's contrast, only on the localization."""
    return float(max(0.0, 1.0 - ratio))


@dataclass(frozen=True)
class DiscEvidence:
    """What the auxiliary "mobile discs" channel sees at the junction, relative to the same study's
    upper discs (each a ratio of probability mass; ~1 = as disc-like as L1-L2 .. L3-L4).

    ``junction``: disc signal at the L5-S1 point (a rudimentary or fused L5-S1 disc: low).
    ``below``: disc signal 15-65 mm below L5-S1 along the spine (a well-formed S1-S2 disc under a
    lumbarized S1: about 1; the thin sacral remnants of a normal sacrum: about 0).
    """

    junction: float
    below: float

    @property
    def missing(self) -> float:
        """How much of a normal L5-S1 disc signal is missing (0 .. 1)."""
        return float(min(1.0, max(0.0, 1.0 - self.junction)))

    @property
    def extra(self) -> float:
        """How much extra disc signal there is below L5-S1 (0 .. 2)."""
        return float(min(2.0, max(0.0, self.below)))


def _mass_near(p: np.ndarray, x: float, y: float, radius: int) -> float:
    h, w = p.shape
    xi, yi = int(round(x)), int(round(y))
    return float(
        p[
            max(0, yi - radius) : min(h, yi + radius + 1),
            max(0, xi - radius) : min(w, xi + radius + 1),
        ].sum()
    )


def disc_evidence(
    disc_map: np.ndarray,
    points_px: Sequence[tuple[float, float]],
    spacing_mm: float,
    radius_px: int = 3,
) -> DiscEvidence:
    """:class:`DiscEvidence` from a normalised mobile-disc map ``[S, S]`` and the level points
    (x, y canonical px, L1-L2 .. L5-S1). The region below L5-S1 runs along the L4-L5 -> L5-S1
    direction, 15-65 mm on, within 25 mm of that line."""
    p = np.asarray(disc_map, dtype=np.float64)
    pts = np.asarray(points_px, dtype=np.float64)
    reference = float(np.median([_mass_near(p, x, y, radius_px) for x, y in pts[:3]]))
    if reference <= 1e-9:
        return DiscEvidence(junction=0.0, below=0.0)
    junction = _mass_near(p, float(pts[4][0]), float(pts[4][1]), radius_px) / reference
    axis = pts[4] - pts[3]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
    yy, xx = np.mgrid[0 : p.shape[0], 0 : p.shape[1]]
    dx, dy = xx - pts[4][0], yy - pts[4][1]
    along = (dx * axis[0] + dy * axis[1]) * spacing_mm
    across = np.abs(dx * axis[1] - dy * axis[0]) * spacing_mm
    region = (along >= 15.0) & (along <= 65.0) & (across <= 25.0)
    return DiscEvidence(junction=float(junction), below=float(p[region].sum() / reference))


def reference_uncertainty(stats: Mapping[str, LevelFigures]) -> float:
    """Mean uncertainty of the reference levels (the quality gate's yardstick)."""
    return float(np.mean([level_uncertainty(stats[lv]) for lv in REFERENCE_LEVELS]))


@dataclass(frozen=True)
class QualityLimits:
    """When the screen is not assessable (defaults; the weights metadata may set them).

    ``max_reference_uncertainty``: the reference levels themselves are too uncertain to compare
    the junction with (an image the model cannot read). ``min_coverage``: the fraction of a
    level's probability mass that must lie inside the imaged field (the top and bottom levels:
    a field that does not reach S1 cannot show the lumbosacral junction); ``min_field_below_mm``
    and ``min_field_above_mm``: how much imaged field there must be below the L5-S1 point (the S1
    body) and above the L1-L2 point: a localizer that cannot see the sacrum may count the levels
    from the wrong end. ``min_slices``: fewer sagittal slices than this cannot give a
    mid-sagittal plane with neighbours.
    """

    max_reference_uncertainty: float = 0.6
    min_coverage: float = 0.8
    min_slices: int = 3
    min_field_above_mm: float = 10.0
    min_field_below_mm: float = 20.0

    @classmethod
    def from_metadata(cls, meta: dict[str, float] | None) -> QualityLimits:
        meta = meta or {}
        return cls(
            max_reference_uncertainty=float(
                meta.get("max_reference_uncertainty", cls.max_reference_uncertainty)
            ),
            min_coverage=float(meta.get("min_coverage", cls.min_coverage)),
            min_slices=int(meta.get("min_slices", cls.min_slices)),
            min_field_above_mm=float(meta.get("min_field_above_mm", cls.min_field_above_mm)),
            min_field_below_mm=float(meta.get("min_field_below_mm", cls.min_field_below_mm)),
        )


def not_assessable_reason(
    stats: dict[str, LevelStats],
    points_mm: Sequence[tuple[float, float]],
    coverage: dict[str, float],
    n_slices: int,
    limits: QualityLimits,
    field_mm: tuple[float, float] = (float("inf"), float("inf")),
) -> str:
    """Why the screen cannot be trusted on this study, or "" when it can.

    ``points_mm`` are the level centres (x, y) in mm on the canonical grid (y towards the feet),
    in level order L1-L2 .. L5-S1; ``coverage`` the probability mass of each level inside the
    imaged field; ``field_mm`` how far the imaged field reaches above the L1-L2 point and below
    the L5-S1 point. The chain L1-L2 .. L4-L5 must be plausible; the junction below is what the
    screen judges, so its geometry is not a gate (see :func:`junction_implausible`).
    """
    if n_slices < limits.min_slices:
        return f"too few sagittal slices ({n_slices} < {limits.min_slices})"
    for level in ("L1-L2", "L5-S1"):
        if coverage.get(level, 1.0) < limits.min_coverage:
            where = "S1" if level == "L5-S1" else "L1"
            inside = coverage[level]
            return f"field of view does not cover {where} ({level} mass inside {inside:.2f})"
    above, below = field_mm
    if below < limits.min_field_below_mm:
        return f"field of view does not cover S1 (ends {below:.0f} mm below L5-S1)"
    if above < limits.min_field_above_mm:
        return f"field of view does not cover L1 (starts {above:.0f} mm above L1-L2)"
    ref = reference_uncertainty(stats)
    if ref > limits.max_reference_uncertainty:
        return (
            f"reference levels uncertain (mean uncertainty {ref:.2f} > "
            f"{limits.max_reference_uncertainty:.2f})"
        )
    problem = implausible(points_mm[:4])
    if problem and not extra_segment(points_mm):
        return f"implausible localization: {problem}"
    problem = junction_miscounted(points_mm)
    if problem:
        return f"implausible localization at the lumbosacral junction: {problem}"
    return ""


#: Disc-channel signal at the L5-S1 point, relative to the same study's upper discs, at or above
#: which the junction disc looks like the discs above it (normals: median ~0.8 in the first
#: generator, 0.83-1.2 in the third; sacralization 0.18-0.73), and the extra disc signal below
#: L5-S1 at or above which a well-formed disc sits under it (:class:`DiscEvidence`).
NORMAL_JUNCTION_DISC = 0.8
EXTRA_DISC_BELOW = 0.5
#: A lowest lumbar segment at least this much shorter than those above (:func:`junction_shortening`;
#: a gap ratio under 0.9, below the normals' 5th percentile of 0.92) is anatomical evidence too.
SHORT_JUNCTION_EVIDENCE = 0.1


def _anatomical_signs(
    evidence: DiscEvidence | None, shortening: float, extra_segment: bool
) -> list[str]:
    """Which anatomical signs of a transitional vertebra hold, in reporting order: an extra
    segment in the chain, a weak L5-S1 disc signal, a disc-like signal below L5-S1, a short
    lowest segment (``shortening``, :func:`junction_shortening`)."""
    signs = ["extra segment"] if extra_segment else []
    if evidence is not None and evidence.junction < NORMAL_JUNCTION_DISC:
        signs.append("weak L5-S1 disc")
    if evidence is not None and evidence.below >= EXTRA_DISC_BELOW:
        signs.append("disc below L5-S1")
    if shortening >= SHORT_JUNCTION_EVIDENCE:
        signs.append("short lowest segment")
    return signs


def uncorroborated(
    evidence: DiscEvidence | None, shortening: float = 0.0, extra_segment: bool = False
) -> str:
    """A reason when a score over the threshold has no anatomical evidence behind it: the L5-S1
    disc is as disc-like as the upper discs, no well-formed disc lies below it and the lowest
    lumbar segment is not short (``shortening``, :func:`junction_shortening`). The localizer
    then hesitates at a junction that looks normal, which is what an unfamiliar scanner or
    contrast does to it too: the finding is held back (the verdict is "No LSTV suspected", needs
    review, with this reason), never "LSTV suspected" on uncertainty alone. Until 2026-12-04 the
    answer was "not assessable"; on the third to seventh generators 21 of the 24 studies it held
    back were normal, a negative more often right than the screen's other negatives (docs/model.md,
    "A finding held back"). Empty string when the evidence supports the finding (or there is no
    mobile-discs channel to ask). An extra segment in the chain (:func:`extra_segment`) is
    anatomical evidence too."""
    if evidence is None or _anatomical_signs(evidence, shortening, extra_segment):
        return ""
    return (
        "localizer uncertain at the lumbosacral junction, but its L5-S1 disc looks like the "
        f"discs above (disc signal {evidence.junction:.2f} of theirs, none below, lowest "
        "segment not short): "
        "no anatomical evidence of a transitional vertebra"
    )


def finding_evidence(
    evidence: DiscEvidence | None, gap_ratio: float, extra_segment: str = ""
) -> tuple[str, ...]:
    """The anatomical evidence behind an "LSTV suspected" finding, in words, each with what else
    gives the same sign, so the reader knows what to check: the signs :func:`uncorroborated`
    asks for that hold. On blind generators most false alarms were normal spines with a dark,
    narrowed (degenerate) L5-S1 disc (docs/model.md, "Sixth and seventh generators").
    ``gap_ratio``: :func:`junction_gap_ratio`."""
    signs = _anatomical_signs(evidence, junction_shortening(gap_ratio), bool(extra_segment))
    if not signs:
        return (
            "no anatomical sign measured (weights without the mobile-discs channel, or the "
            "evidence rule switched off): the finding rests on the localizer's uncertainty at "
            "L4-L5 and L5-S1 alone",
        )
    junction, below = (evidence.junction, evidence.below) if evidence else (0.0, 0.0)
    words = {
        "extra segment": "one gap of the levels spans two segments: an extra lumbar-type "
        "segment, or under L4-L5 an absent (fused) L5-S1 disc; a disc the localizer did not "
        "see (a collapsed, degenerate one) gives the same sign: count the discs on the images",
        "weak L5-S1 disc": f"L5-S1 disc signal {junction:.2f} of the discs above: a rudimentary "
        "or absent disc, as in sacralization; a narrowed, dark degenerate disc gives the same "
        "sign: judge the L5-S1 disc and the shape of L5 on the images",
        "disc below L5-S1": f"a disc-like signal below L5-S1 ({below:.2f} of the discs above): a "
        "mobile disc under S1, as in lumbarization; a well-hydrated S1-S2 remnant gives the "
        "same sign: count the segments from a whole-spine localizer",
        "short lowest segment": f"lowest lumbar segment {gap_ratio:.2f}x the segments above: "
        "short, as under a sacral-like L5; a narrowed degenerate L5-S1 disc shortens it too",
    }
    return tuple(words[sign] for sign in signs)


#: The L4-L5 -> L5-S1 gap of a spine is at most ~1.12x the median gap above it in both phantom
#: generators (normal and transitional anatomy alike, 0.77-1.06x as localized on held-out
#: phantoms). Longer, L5-S1 is not one segment under L4-L5: two segments is a sign
#: (:func:`junction_two_segments`), more is a counting error (:func:`junction_miscounted`).
JUNCTION_MAX_RATIO = 1.4


def junction_miscounted(points_mm: Sequence[tuple[float, float]]) -> str:
    """A reason when the junction cannot be judged: L5-S1 placed above L4-L5, or further below
    it than :data:`JUNCTION_MAX_RATIO` times the median gap above without fitting two segments
    (:func:`junction_two_segments`, a sign, not a gate): a counting error the score would read
    as transitional anatomy (a confident wrong answer). Empty string = plausible."""
    problem = _junction_off(points_mm)
    return problem if problem and not junction_two_segments(points_mm) else ""


def _junction_off(points_mm: Sequence[tuple[float, float]]) -> str:
    """L5-S1 above L4-L5, or more than :data:`JUNCTION_MAX_RATIO` times the median gap above it
    further down (not one segment under L4-L5), in words; "" when neither."""
    gaps = _junction_gap(points_mm)
    if gaps is None:
        return ""
    if _l5s1_above_l4l5(points_mm):
        return "L5-S1 found above L4-L5"
    junction, med = gaps
    if junction > JUNCTION_MAX_RATIO * med:
        return (
            f"L5-S1 {junction:.0f} mm below L4-L5 against {med:.0f} mm between the levels above "
            "(a segment too low?)"
        )
    return ""


def junction_two_segments(points_mm: Sequence[tuple[float, float]]) -> str:
    """A sign when L5-S1 lies two segments below L4-L5, not one: the junction gap is more than
    :data:`JUNCTION_MAX_RATIO` and at most the upper :data:`EXTRA_SEGMENT_RATIO` times the median
    gap of a plausible chain L1-L2 .. L4-L5. The localizer found no mobile-looking disc one
    segment under L4-L5 and took the next one down: an L5-S1 disc that is absent or fused (as
    in sacralization), one mobile lumbar-type segment more above the sacrum (lumbarization), or
    a degenerate L5-S1 disc the localizer did not see. Like an extra segment in the chain
    (:func:`extra_segment`) it is a sign for review, not a counting error to hide: on the third
    to eighth generators 9 of the 11 studies it fits were transitional (docs/model.md,
    "L5-S1 two segments under L4-L5"). Empty string otherwise."""
    if len(points_mm) < 5 or _l5s1_above_l4l5(points_mm) or implausible(points_mm[:4]):
        return ""
    ratio = junction_gap_ratio(points_mm)
    if not JUNCTION_MAX_RATIO < ratio <= EXTRA_SEGMENT_RATIO[1]:
        return ""
    return (
        f"L4-L5 to L5-S1 spans two segments ({ratio:.2f}x the median distance between the "
        "levels above): no mobile disc where L5-S1 should be (absent or fused), one "
        "lumbar-type segment more, or a disc the localizer did not see"
    )


def junction_implausible(points_mm: Sequence[tuple[float, float]]) -> str:
    """A note when the lowest gap (L4-L5 to L5-S1) does not fit the chain above it: below the
    L4-L5 level, or shorter than half / longer than twice the median gap above. A short junction
    is a reason for review, not a gate: it is what a rudimentary L5-S1 disc can look like (a long
    one is also a gate, :func:`junction_miscounted`)."""
    gaps = _junction_gap(points_mm)
    if gaps is None:
        return ""
    if _l5s1_above_l4l5(points_mm):
        return "L5-S1 found above L4-L5"
    junction, med = gaps
    if junction < 0.5 * med or junction > 2.0 * med:
        return f"L4-L5 to L5-S1 distance {junction:.0f} mm against {med:.0f} mm above"
    return ""


#: Lumbar disc-to-disc distances of one spine differ little: in both phantom generators the gaps
#: L1-L2 .. L4-L5 lie within 0.85-1.17x their median, and adult medians are 28-44 mm. The limits
#: leave room for localization error; outside them a level was skipped, doubled or placed on a
#: vertebral body (a counting error the screen must not report as a finding).
GAP_RATIO_LIMITS: tuple[float, float] = (0.7, 1.35)
MEDIAN_GAP_MM_LIMITS: tuple[float, float] = (20.0, 55.0)


def implausible(points: Sequence[tuple[float, float]]) -> str:
    """A reason string when the predicted disc centres (x, y in mm, top->bottom) are implausible.

    Checks: order along the spine (each level below the previous one), the median gap between
    neighbours within :data:`MEDIAN_GAP_MM_LIMITS` and each gap within :data:`GAP_RATIO_LIMITS`
    of the median. Empty string = plausible.
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 2:
        return ""
    gaps = np.hypot(*np.diff(pts, axis=0).T)
    if np.any(np.diff(pts[:, 1]) <= 0):
        return "levels out of order along the spine"
    med = float(np.median(gaps))
    low_mm, high_mm = MEDIAN_GAP_MM_LIMITS
    if not low_mm <= med <= high_mm:
        return f"median inter-disc distance {med:.1f} mm outside {low_mm:.0f}-{high_mm:.0f} mm"
    low, high = GAP_RATIO_LIMITS
    ratios = gaps / med
    if np.any(ratios < low) or np.any(ratios > high):
        worst = float(ratios[np.argmax(np.abs(np.log(ratios)))])
        return (
            f"inter-disc distances inconsistent ({worst:.2f}x the median; "
            "a level skipped or doubled)"
        )
    return ""


#: A gap of the chain L1-L2 .. L4-L5 this many times the median (the others within
#: :data:`GAP_RATIO_LIMITS`) spans two segments, not one: 1.6-2.5x. Seen on phantoms of five
#: generators (docs/model.md, "An extra segment in the chain"): in none of 620 normal studies
#: (260 distinct spines), in 29 of 620 transitional ones, all "not assessable" before.
EXTRA_SEGMENT_RATIO: tuple[float, float] = (1.6, 2.5)
#: The levels of the chain whose gaps :func:`extra_segment` reads.
_CHAIN_LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5")


def extra_segment(points_mm: Sequence[tuple[float, float]]) -> str:
    """Which gap of the chain L1-L2 .. L4-L5 spans two segments, when exactly one does: the
    chain is in order along the spine, its median gap is that of an adult lumbar spine, one gap
    is :data:`EXTRA_SEGMENT_RATIO` times the median and the others are consistent with it. The
    localizer's five levels then hold one mobile segment more than a normal lumbar spine has:
    an extra lumbar-type segment (lumbarization, or a thoracolumbar transition), or a disc that
    the localizer did not see. Empty string otherwise (points in mm, level order, y towards the
    feet; only the first four are read)."""
    pts = np.asarray(points_mm[:4], dtype=np.float64)
    if len(pts) < 4 or np.any(np.diff(pts[:, 1]) <= 0):
        return ""
    gaps = np.hypot(*np.diff(pts, axis=0).T)
    med = float(np.median(gaps))
    if not MEDIAN_GAP_MM_LIMITS[0] <= med <= MEDIAN_GAP_MM_LIMITS[1]:
        return ""
    ratios = gaps / med
    long = int(np.argmax(ratios))
    others = np.delete(ratios, long)
    low, high = GAP_RATIO_LIMITS
    if np.any(others < low) or np.any(others > high):
        return ""
    if not EXTRA_SEGMENT_RATIO[0] <= ratios[long] <= EXTRA_SEGMENT_RATIO[1]:
        return ""
    return (
        f"{_CHAIN_LEVELS[long]} to {_CHAIN_LEVELS[long + 1]} spans two segments "
        f"({ratios[long]:.2f}x the median distance between the levels): one lumbar-type segment "
        "more than a normal lumbar spine, or a disc the localizer did not see"
    )


#: A level's second peak may stand in for its arg-max only when it holds at least this much of
#: the level's probability: a map split between two discs, not a faint echo of a neighbour.
SECOND_PEAK_MIN_MASS = 0.25


@dataclass(frozen=True)
class ChainRepair:
    """One level of the chain L1-L2 .. L4-L5 moved to its second peak (index into the levels)."""

    level: int
    peak: Peak
    replaced: Peak


def repair_chain(
    candidates: Sequence[Sequence[Peak]], mm_per_px: float, junction: Peak | None = None
) -> ChainRepair | None:
    """When the arg-max chain L1-L2 .. L4-L5 is implausible (:func:`implausible`), the one level
    whose second peak makes it plausible, or None.

    ``candidates`` are each level's peaks (:func:`peaks`, arg-max first) in level order;
    ``junction`` is the L5-S1 point, which is never moved. A level whose map is split between
    two discs can have its arg-max on the wrong one (typically L1-L2 on T12-L1, a gap of two
    segments below it). The chain is repaired only when exactly one level has a second peak of
    at least :data:`SECOND_PEAK_MIN_MASS` that makes the whole localization plausible: the chain,
    and the junction one segment below it (:func:`junction_miscounted`). None or several such
    repairs leave it as it was (the study is not assessable, as before). The uncertainty
    figures are not touched: they are the maps', not the points'.
    """
    chain = [c[0] for c in candidates]
    if not implausible(chain_mm(chain, mm_per_px)):
        return None  # a plausible chain is never touched, whatever the junction below it
    repairs = [
        ChainRepair(i, alt, chain[i])
        for i, options in enumerate(candidates)
        for alt in options[1:]
        if alt.mass >= SECOND_PEAK_MIN_MASS
        and _plausible_with([*chain[:i], alt, *chain[i + 1 :]], junction, mm_per_px)
    ]
    return repairs[0] if len(repairs) == 1 else None


def chain_mm(points: Sequence[Peak], mm_per_px: float) -> list[tuple[float, float]]:
    """The points (canonical px) in mm, as :func:`implausible` takes them."""
    return [(q.x * mm_per_px, q.y * mm_per_px) for q in points]


def _plausible_with(chain: Sequence[Peak], junction: Peak | None, mm_per_px: float) -> bool:
    """The chain L1-L2 .. L4-L5 is plausible and, given, L5-S1 lies one segment under it."""
    mm = chain_mm([*chain, *([] if junction is None else [junction])], mm_per_px)
    return not implausible(mm[:4]) and not (junction is not None and _junction_off(mm))


#: Counting up along the discs (:func:`count_up_chain`): a disc candidate needs at least this
#: share of the median mass of the five strongest disc-map peaks; the chosen run needs this mean
#: support from the level maps and this margin over every other run.
COUNT_UP_MIN_DISC = 0.25
COUNT_UP_MIN_SUPPORT = 0.25
COUNT_UP_MARGIN = 2.0


@dataclass(frozen=True)
class ChainRecount:
    """L1-L2 .. L4-L5 counted up from L5-S1 along the discs: their new points (level order),
    the run's mean support from the level maps and the best other run's."""

    points: tuple[Peak, ...]
    support: float
    runner_up: float


def count_up_chain(
    level_maps: Sequence[np.ndarray],
    disc_map: np.ndarray,
    junction: Peak,
    mm_per_px: float,
    radius_px: int = 3,
) -> ChainRecount | None:
    """L1-L2 .. L4-L5 placed on the four consecutive discs above L5-S1 that their maps support
    best, or None: how a reader counts, disc by disc up from the sacrum.

    For an implausible chain that :func:`repair_chain` cannot mend (two levels on one disc, or
    two levels one disc off): the discs are the peaks of the mobile-disc map ``disc_map``
    (:func:`peaks`, at least :data:`COUNT_UP_MIN_DISC` of the median of the five strongest) more
    than 10 mm above ``junction``, nearest first; a run of four consecutive ones gets L4-L5,
    L3-L4, L2-L3, L1-L2 in that order, and its support is the mean mass the four ``level_maps``
    (L1-L2 .. L4-L5, normalised) put within ``radius_px`` of their discs. The best run is taken
    only when the chain is then plausible with L5-S1 one segment under L4-L5, its support is at
    least :data:`COUNT_UP_MIN_SUPPORT` and at least :data:`COUNT_UP_MARGIN` times every other
    run's. L5-S1, the point the screen judges, is never moved.
    """
    found = peaks(disc_map, count=12, radius=radius_px)
    if len(found) < 5:
        return None
    floor = COUNT_UP_MIN_DISC * float(np.median(sorted(q.mass for q in found)[-5:]))
    above = sorted(
        (q for q in found if q.mass >= floor and (junction.y - q.y) * mm_per_px > 10.0),
        key=lambda q: junction.y - q.y,
    )
    maps = [normalise(np.asarray(m, dtype=np.float64)) for m in level_maps]
    runs: list[tuple[float, tuple[Peak, ...]]] = []
    for k in range(len(above) - 3):
        discs = tuple(reversed(above[k : k + 4]))  # L1-L2 .. L4-L5
        masses = [_mass_near(m, q.x, q.y, radius_px) for m, q in zip(maps, discs, strict=True)]
        runs.append((float(np.mean(masses)), discs))
    if not runs:
        return None
    runs.sort(key=lambda r: -r[0])
    support, discs = runs[0]
    runner_up = runs[1][0] if len(runs) > 1 else 0.0
    if support < COUNT_UP_MIN_SUPPORT or support < COUNT_UP_MARGIN * runner_up:
        return None
    if not _plausible_with(discs, junction, mm_per_px):
        return None
    return ChainRecount(discs, support, runner_up)
