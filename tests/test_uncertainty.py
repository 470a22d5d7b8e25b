"""Uncertainty maths against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scp_node.model import uncertainty as unc
from scp_node.model.metrics import auroc, average_ranks, best_threshold, sens_spec


def test_uniform_map_has_maximal_entropy() -> None:
    p = unc.normalise(np.ones((16, 16)))
    assert unc.entropy_bits(p) == pytest.approx(math.log2(256))
    assert unc.spatial_entropy(p, grid=8) == pytest.approx(6.0)


def test_one_hot_map_has_zero_entropy_and_full_confidence() -> None:
    p = np.zeros((16, 16))
    p[5, 9] = 1.0
    assert unc.entropy_bits(p) == pytest.approx(0.0)
    assert unc.spatial_entropy(p) == pytest.approx(0.0)
    assert unc.peak_confidence(p) == pytest.approx(1.0)
    assert unc.peak_location(p) == pytest.approx((9.0, 5.0))


def test_two_equal_peaks_give_one_bit() -> None:
    p = np.zeros((16, 16))
    p[2, 2] = p[13, 13] = 0.5
    assert unc.entropy_bits(p) == pytest.approx(1.0)
    assert unc.spatial_entropy(p) == pytest.approx(1.0)  # distant cells
    assert unc.peak_confidence(p) == pytest.approx(0.5)


def test_mutual_information_of_identical_passes_is_zero() -> None:
    rng = np.random.default_rng(0)
    p = unc.normalise(rng.random((8, 8)))
    samples = np.stack([p, p, p])
    assert unc.mutual_information(samples) == pytest.approx(0.0, abs=1e-12)
    assert unc.predictive_entropy(samples) == pytest.approx(float(unc.entropy_bits(p)))


def test_mutual_information_hand_computed() -> None:
    # pass 1: [0.5, 0.5], pass 2: [1, 0] on a 1x2 map
    samples = np.array([[[0.5, 0.5]], [[1.0, 0.0]]])
    h_mean = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))  # 0.8113
    assert unc.predictive_entropy(samples) == pytest.approx(h_mean)
    assert unc.mutual_information(samples) == pytest.approx(h_mean - 0.5)
    # disagreeing one-hot passes: MI = 1 bit
    assert unc.mutual_information(np.array([[[1.0, 0.0]], [[0.0, 1.0]]])) == pytest.approx(1.0)


def test_normalise_handles_zero_and_negative_maps() -> None:
    assert unc.normalise(np.zeros((4, 4))).sum() == pytest.approx(1.0)
    m = unc.normalise(np.array([[-1.0, 1.0], [1.0, 2.0]]))
    assert m[0, 0] == 0.0 and m.sum() == pytest.approx(1.0)


def test_level_stats_and_score_rank_spread_maps_higher() -> None:
    sharp = np.zeros((4, 32, 32))
    sharp[:, 10, 10] = 1.0
    spread = np.zeros((4, 32, 32))
    spread[0, 10, 10] = spread[1, 25, 25] = spread[2, 10, 10] = spread[3, 25, 25] = 1.0
    s_sharp, s_spread = unc.level_stats(sharp), unc.level_stats(spread)
    assert s_sharp.mutual_information == pytest.approx(0.0)
    assert s_spread.mutual_information == pytest.approx(1.0)
    reference = {lv: s_sharp for lv in unc.REFERENCE_LEVELS}
    stats_a = {**reference, **{lv: s_sharp for lv in unc.JUNCTION_LEVELS}}
    stats_b = {**reference, **{lv: s_spread for lv in unc.JUNCTION_LEVELS}}
    assert unc.lstv_score(stats_b) > unc.lstv_score(stats_a)


def _stats(peak: float, mi: float) -> unc.LevelStats:
    return unc.LevelStats(0.0, 0.0, peak, 5.0, 1.0, 5.0, mi)


def test_score_is_self_normalised_hand_case() -> None:
    # u = 4 MI + (1 - peak): reference 4*0.05 + 0.1 = 0.3, junction 4*0.2 + 0.4 = 1.2
    stats = {lv: _stats(0.9, 0.05) for lv in unc.REFERENCE_LEVELS}
    stats.update({lv: _stats(0.6, 0.2) for lv in unc.JUNCTION_LEVELS})
    assert unc.lstv_score(stats) == pytest.approx(1.2 - 0.3)
    # a globally uncertain but uniform study (a scanner the model never saw) scores 0
    uniform = {lv: _stats(0.5, 0.3) for lv in unc.REFERENCE_LEVELS + unc.JUNCTION_LEVELS}
    assert unc.lstv_score(uniform) == pytest.approx(0.0)
    assert unc.reference_uncertainty(uniform) == pytest.approx(4 * 0.3 + 0.5)


GOOD_POINTS = [(0.0, 40.0 * i) for i in range(5)]


def test_quality_gate_hand_cases() -> None:
    limits = unc.QualityLimits(max_reference_uncertainty=0.6, min_coverage=0.8, min_slices=3)
    sharp = {lv: _stats(0.9, 0.02) for lv in unc.REFERENCE_LEVELS + unc.JUNCTION_LEVELS}
    full = {lv: 1.0 for lv in sharp}
    assert unc.not_assessable_reason(sharp, GOOD_POINTS, full, 15, limits) == ""
    assert "too few" in unc.not_assessable_reason(sharp, GOOD_POINTS, full, 2, limits)
    cut = {**full, "L5-S1": 0.3}
    assert "does not cover S1" in unc.not_assessable_reason(sharp, GOOD_POINTS, cut, 15, limits)
    blurry = {**sharp, **{lv: _stats(0.3, 0.1) for lv in unc.REFERENCE_LEVELS}}
    assert "reference levels uncertain" in unc.not_assessable_reason(
        blurry, GOOD_POINTS, full, 15, limits
    )
    swapped = [GOOD_POINTS[1], GOOD_POINTS[0], *GOOD_POINTS[2:]]
    assert "implausible" in unc.not_assessable_reason(sharp, swapped, full, 15, limits)
    # a short junction is not a gate: it is what a rudimentary L5-S1 disc can look like
    odd_junction = [*GOOD_POINTS[:4], (0.0, 125.0)]
    assert unc.not_assessable_reason(sharp, odd_junction, full, 15, limits) == ""
    # L5-S1 two segments under L4-L5 (1.75x the gaps above) is a sign, not a gate ...
    two_down = [*GOOD_POINTS[:4], (0.0, 190.0)]
    assert unc.not_assessable_reason(sharp, two_down, full, 15, limits) == ""
    # ... but three segments or more is a counting error
    for y in (230.0, 260.0):
        reason = unc.not_assessable_reason(sharp, [*GOOD_POINTS[:4], (0.0, y)], full, 15, limits)
        assert "lumbosacral junction" in reason and f"{y - 120:.0f} mm below L4-L5" in reason
    assert (
        unc.not_assessable_reason(sharp, [*GOOD_POINTS[:4], (0.0, 175.0)], full, 15, limits) == ""
    )
    assert "above L4-L5" in unc.not_assessable_reason(
        sharp, [*GOOD_POINTS[:4], (0.0, 110.0)], full, 15, limits
    )
    assert "distance" in unc.junction_implausible(odd_junction)
    assert unc.junction_implausible(GOOD_POINTS) == ""
    assert "above" in unc.junction_implausible([*GOOD_POINTS[:4], (0.0, 100.0)])


def test_quality_limits_from_weights_metadata() -> None:
    assert unc.QualityLimits.from_metadata(None) == unc.QualityLimits()
    limits = unc.QualityLimits.from_metadata({"max_reference_uncertainty": 0.42})
    assert limits.max_reference_uncertainty == 0.42 and limits.min_slices == 3


def test_junction_two_segments_is_l5s1_two_segments_under_a_consistent_chain() -> None:
    two_down = [*GOOD_POINTS[:4], (0.0, 190.0)]
    note = unc.junction_two_segments(two_down)
    assert note.startswith("L4-L5 to L5-S1 spans two segments (1.75x the median"), note
    assert unc.junction_miscounted(two_down) == ""
    assert unc.extra_segment(two_down) == ""  # the chain itself is regular
    assert unc.junction_two_segments(GOOD_POINTS) == ""
    assert unc.junction_two_segments([*GOOD_POINTS[:4], (0.0, 174.0)]) == ""  # 1.35x: one
    assert unc.junction_two_segments([*GOOD_POINTS[:4], (0.0, 230.0)]) == ""  # 2.75x: three
    assert unc.junction_two_segments([*GOOD_POINTS[:4], (0.0, 100.0)]) == ""  # above L4-L5
    # a doubled level in the chain above: no reference to measure the junction against
    doubled = [(0.0, 0.0), (0.0, 40.0), (0.0, 45.0), (0.0, 85.0), (0.0, 160.0)]
    assert unc.junction_two_segments(doubled) == ""
    assert unc.junction_two_segments(GOOD_POINTS[:4]) == ""  # no L5-S1


def test_implausible_order_and_spacing() -> None:
    good = [(0.0, 40.0 * i) for i in range(5)]
    assert unc.implausible(good) == ""
    assert "order" in unc.implausible(list(reversed(good)))
    doubled = [(0.0, 0.0), (0.0, 40.0), (0.0, 45.0), (0.0, 85.0), (0.0, 125.0)]
    assert "inconsistent" in unc.implausible(doubled)
    # a skipped disc: one gap 1.5x the others (a counting error seen on unfamiliar images)
    skipped = [(0.0, 0.0), (0.0, 35.0), (0.0, 87.5), (0.0, 122.5)]
    assert "1.50x the median" in unc.implausible(skipped)
    # real spines vary within ~0.85-1.17x: still plausible, slightly oblique too
    varied = [(0.0, 0.0), (2.0, 30.0), (4.0, 64.0), (6.0, 100.0)]
    assert unc.implausible(varied) == ""
    assert "outside 20-55 mm" in unc.implausible([(0.0, 12.0 * i) for i in range(4)])
    assert "outside 20-55 mm" in unc.implausible([(0.0, 60.0 * i) for i in range(4)])


def test_extra_segment_is_one_gap_of_two_segments_in_a_consistent_chain() -> None:
    # L2-L3 -> L3-L4 spans 76 mm where the others are 38-40 mm: one segment more
    six = [(0.0, 0.0), (0.0, 38.0), (0.0, 114.0), (0.0, 154.0), (0.0, 194.0)]
    note = unc.extra_segment(six)
    assert note.startswith("L2-L3 to L3-L4 spans two segments (1.90x the median")
    assert unc.extra_segment(GOOD_POINTS) == ""  # a plausible chain has none
    # 1.5x: a level misplaced, not a whole segment
    assert unc.extra_segment([(0.0, 0.0), (0.0, 35.0), (0.0, 87.5), (0.0, 122.5)]) == ""
    # three segments in one gap, or two long gaps, or a doubled level beside it: no
    assert unc.extra_segment([(0.0, 0.0), (0.0, 40.0), (0.0, 150.0), (0.0, 190.0)]) == ""
    assert unc.extra_segment([(0.0, 0.0), (0.0, 80.0), (0.0, 120.0), (0.0, 200.0)]) == ""
    assert unc.extra_segment([(0.0, 0.0), (0.0, 20.0), (0.0, 100.0), (0.0, 140.0)]) == ""
    assert unc.extra_segment(list(reversed(six[:4]))) == ""  # out of order
    assert unc.extra_segment([(0.0, 6.0 * y / 40.0) for _, y in six]) == ""  # a 6 mm median


def test_an_extra_segment_is_scored_and_not_a_gate() -> None:
    """The chain with an extra segment passes the gate, scores the segment instead of the
    uncertainty excess (its reference levels straddle two segments), and counts as evidence."""
    limits = unc.QualityLimits(max_reference_uncertainty=0.6, min_coverage=0.8, min_slices=3)
    stats = {lv: _stats(0.9, 0.02) for lv in unc.REFERENCE_LEVELS}
    stats.update({lv: _stats(0.95, 0.0) for lv in unc.JUNCTION_LEVELS})  # excess < 0
    full = {lv: 1.0 for lv in stats}
    six = [(0.0, 0.0), (0.0, 40.0), (0.0, 120.0), (0.0, 160.0), (0.0, 200.0)]
    assert unc.not_assessable_reason(stats, six, full, 15, limits) == ""
    three_segments = [(0.0, 0.0), (0.0, 40.0), (0.0, 150.0), (0.0, 190.0), (0.0, 230.0)]
    assert "inconsistent" in unc.not_assessable_reason(stats, three_segments, full, 15, limits)
    assert unc.lstv_score(stats) < 0
    assert unc.lstv_score(stats, extra_segment=True) == pytest.approx(unc.EXTRA_SEGMENT_TERM)
    lumbar_disc = unc.DiscEvidence(junction=1.0, below=0.0)
    assert unc.lstv_score(stats, lumbar_disc, extra_segment=True) == pytest.approx(1.0)
    assert unc.uncorroborated(lumbar_disc) != ""
    assert unc.uncorroborated(lumbar_disc, extra_segment=True) == ""


def test_average_ranks_share_ties() -> None:
    # sorted: 1.0 (rank 1), three 2.0 (ranks 2, 3, 4 -> 3), 5.0 (rank 5), two 7.0 (6, 7 -> 6.5)
    values = np.array([7.0, 2.0, 5.0, 2.0, 1.0, 7.0, 2.0])
    assert average_ranks(values).tolist() == [6.5, 3.0, 5.0, 3.0, 1.0, 6.5, 3.0]
    assert average_ranks(np.array([4.0, 4.0])).tolist() == [1.5, 1.5]
    assert average_ranks(np.array([3.0])).tolist() == [1.0]
    assert average_ranks(np.array([])).tolist() == []


def test_auroc_with_tied_scores_across_classes() -> None:
    # pairs (pos, neg): 0.4>0.2 win, 0.4=0.4 half, 0.6>0.2 win, 0.6>0.4 win: 3.5 of 4
    scores = np.array([0.2, 0.4, 0.4, 0.6])
    labels = np.array([0, 0, 1, 1])
    assert auroc(scores, labels) == pytest.approx(3.5 / 4)


def test_auroc_from_ranks() -> None:
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)
    # one swapped pair out of 4 pairs; a tie counts half
    assert auroc(np.array([0.1, 0.5, 0.4, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)


def test_threshold_and_sens_spec() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1])
    thr = best_threshold(scores, labels)
    assert 0.3 < thr < 0.7
    assert sens_spec(scores, labels, thr) == (1.0, 1.0)
    assert sens_spec(scores, labels, 0.75) == (0.5, 1.0)


def test_quality_gate_field_reach() -> None:
    limits = unc.QualityLimits()
    sharp = {lv: _stats(0.9, 0.02) for lv in unc.REFERENCE_LEVELS + unc.JUNCTION_LEVELS}
    full = {lv: 1.0 for lv in sharp}
    ok = unc.not_assessable_reason(sharp, GOOD_POINTS, full, 15, limits, (30.0, 40.0))
    assert ok == ""
    short = unc.not_assessable_reason(sharp, GOOD_POINTS, full, 15, limits, (30.0, 12.0))
    assert "does not cover S1" in short and "12 mm below" in short
    low = unc.not_assessable_reason(sharp, GOOD_POINTS, full, 15, limits, (5.0, 40.0))
    assert "does not cover L1" in low


def _disc_map(points: list[tuple[int, int]], weights: list[float]) -> np.ndarray:
    m = np.zeros((64, 64))
    for (x, y), w in zip(points, weights, strict=True):
        m[y, x] = w
    return m / m.sum()


def test_disc_evidence_hand_cases() -> None:
    levels = [(30, 10), (30, 18), (30, 26), (30, 34), (30, 42)]  # 8 px = 20 mm apart at 2.5 mm
    # normal: every level a disc, nothing below L5-S1
    normal = unc.disc_evidence(_disc_map(levels, [1.0] * 5), levels, 2.5)
    assert normal.junction == pytest.approx(1.0) and normal.below == pytest.approx(0.0)
    assert normal.missing == 0.0 and normal.extra == 0.0
    # sacralization: a rudimentary L5-S1 disc (a fifth of the signal)
    sacral = unc.disc_evidence(_disc_map(levels, [1.0, 1.0, 1.0, 1.0, 0.2]), levels, 2.5)
    assert sacral.missing == pytest.approx(0.8)
    # lumbarization: a well-formed disc 30 mm below L5-S1 on the spine's line
    lumbar = unc.disc_evidence(_disc_map([*levels, (30, 54)], [1.0] * 6), levels, 2.5)
    assert lumbar.below == pytest.approx(1.0) and lumbar.extra == pytest.approx(1.0)
    # something far off the spine's line (bowel, 40 mm anterior) is not counted
    off = unc.disc_evidence(_disc_map([*levels, (14, 54)], [1.0] * 6), levels, 2.5)
    assert off.below == pytest.approx(0.0)
    stats = {lv: _stats(0.9, 0.02) for lv in unc.REFERENCE_LEVELS + unc.JUNCTION_LEVELS}
    assert unc.lstv_score(stats, lumbar) == pytest.approx(unc.lstv_score(stats) + 1.0)


def test_uncorroborated_needs_a_normal_junction_disc_and_nothing_below() -> None:
    # a junction disc as disc-like as the discs above and no disc below: uncertainty alone
    assert "no anatomical evidence" in unc.uncorroborated(
        unc.DiscEvidence(junction=0.95, below=0.1)
    )
    assert unc.uncorroborated(unc.DiscEvidence(junction=unc.NORMAL_JUNCTION_DISC, below=0.0))
    # a weak (rudimentary) L5-S1 disc, or a well-formed disc below it, corroborates a finding
    assert unc.uncorroborated(unc.DiscEvidence(junction=0.4, below=0.0)) == ""
    assert unc.uncorroborated(unc.DiscEvidence(junction=0.95, below=unc.EXTRA_DISC_BELOW)) == ""
    # weights without the mobile-discs channel: nothing to ask, nothing vetoed
    assert unc.uncorroborated(None) == ""


def test_junction_gap_ratio_and_shortening_by_hand() -> None:
    # discs 30 mm apart, the lowest segment 25 mm: the junction is a sixth shorter
    short = [(0.0, 0.0), (0.0, 30.0), (0.0, 60.0), (0.0, 90.0), (0.0, 115.0)]
    assert unc.junction_gap_ratio(short) == pytest.approx(25 / 30)
    assert unc.junction_shortening(unc.junction_gap_ratio(short)) == pytest.approx(1 / 6)
    # a longer lowest segment is not "negative shortening"; distances are along the spine's line
    tilted = [(0.0, 0.0), (18.0, 24.0), (36.0, 48.0), (54.0, 72.0), (78.0, 104.0)]
    assert unc.junction_gap_ratio(tilted) == pytest.approx(40 / 30)
    assert unc.junction_shortening(unc.junction_gap_ratio(tilted)) == 0.0


def test_a_short_lowest_segment_corroborates_a_finding() -> None:
    normal_disc = unc.DiscEvidence(junction=0.95, below=0.0)
    assert unc.uncorroborated(normal_disc, shortening=0.05)  # within normal variation
    assert unc.uncorroborated(normal_disc, shortening=unc.SHORT_JUNCTION_EVIDENCE) == ""


def test_finding_evidence_names_each_sign_that_corroborates_a_finding() -> None:
    """The signs are those :func:`unc.uncorroborated` asks for, each with its look-alike."""
    weak = unc.finding_evidence(unc.DiscEvidence(junction=0.58, below=0.0), gap_ratio=1.0)
    assert len(weak) == 1
    assert weak[0].startswith("L5-S1 disc signal 0.58 of the discs above")
    assert "degenerate" in weak[0]
    below = unc.finding_evidence(unc.DiscEvidence(junction=0.95, below=0.9), gap_ratio=1.0)
    assert len(below) == 1 and "below L5-S1 (0.90 of the discs above)" in below[0]
    assert "whole-spine localizer" in below[0]
    short = unc.finding_evidence(unc.DiscEvidence(junction=0.95, below=0.0), gap_ratio=0.85)
    assert len(short) == 1 and short[0].startswith("lowest lumbar segment 0.85x")
    # all of them, the extra segment first; an unremarkable junction alone names none of them
    every = unc.finding_evidence(unc.DiscEvidence(junction=0.3, below=0.6), 0.8, "L2-L3 to L3-L4")
    assert [s.split()[0] for s in every] == ["one", "L5-S1", "a", "lowest"]
    normal = unc.finding_evidence(
        unc.DiscEvidence(junction=unc.NORMAL_JUNCTION_DISC, below=0.0), gap_ratio=0.95
    )
    assert len(normal) == 1 and "uncertainty at L4-L5 and L5-S1 alone" in normal[0]
    # weights without the mobile-discs channel: only the geometry can speak
    assert "uncertainty" in unc.finding_evidence(None, gap_ratio=1.0)[0]


def _two_peak_map(first: tuple[int, int], second: tuple[int, int], share: float) -> np.ndarray:
    """A 64 x 64 map with ``1 - share`` of its mass on ``first`` and ``share`` on ``second``."""
    p = np.zeros((64, 64))
    p[first[1], first[0]] = 1.0 - share
    p[second[1], second[0]] = share
    return p


def test_peaks_are_the_arg_max_then_the_next_separate_maximum() -> None:
    p = _two_peak_map((10, 20), (12, 40), 0.3)
    p[21, 10] = 0.05  # beside the first peak: part of its mass, not a peak of its own
    p /= p.sum()
    found = unc.peaks(p, count=3)
    assert len(found) == 2  # nothing else is left once the two windows are set aside
    assert (found[0].x, found[1].x, found[1].y) == (10.0, 12.0, 40.0)
    assert found[0].y == pytest.approx(unc.peak_location(p)[1])
    assert found[0].mass == pytest.approx(unc.peak_confidence(p))
    assert found[1].mass == pytest.approx(0.3 / 1.05)


def _chain(ys: list[float], seconds: dict[int, tuple[float, float]]) -> list[list[unc.Peak]]:
    """Level candidates on a vertical spine (x = 50 px): arg-max at ``ys``, and for the levels in
    ``seconds`` a second peak (y, mass)."""
    out = []
    for i, y in enumerate(ys):
        level = [unc.Peak(50.0, y, 0.6)]
        if i in seconds:
            level.append(unc.Peak(50.0, *seconds[i]))
        out.append(level)
    return out


def test_a_chain_is_repaired_by_the_one_second_peak_that_makes_it_plausible() -> None:
    # 2 mm pixels, discs 18 px (36 mm) apart; L1-L2's arg-max sits on T12-L1, one disc too high
    good = [20.0, 38.0, 56.0, 74.0]
    assert unc.repair_chain(_chain(good, {1: (10.0, 0.4)}), 2.0) is None  # plausible: untouched
    wrong = [2.0, *good[1:]]
    fix = unc.repair_chain(_chain(wrong, {0: (20.0, 0.35), 2: (90.0, 0.3)}), 2.0)
    assert fix is not None
    assert (fix.level, fix.peak.y, fix.replaced.y) == (0, 20.0, 2.0)


def test_a_chain_is_not_repaired_by_a_weak_or_an_ambiguous_second_peak() -> None:
    wrong = [2.0, 38.0, 56.0, 74.0]
    weak = unc.SECOND_PEAK_MIN_MASS - 0.01
    assert unc.repair_chain(_chain(wrong, {0: (20.0, weak)}), 2.0) is None
    assert unc.repair_chain(_chain(wrong, {1: (19.0, 0.4)}), 2.0) is None  # still a gap of 2
    # L4-L5 one disc too low, its second peak on the right disc
    one = unc.repair_chain(_chain([20.0, 38.0, 56.0, 92.0], {3: (74.0, 0.4)}), 2.0)
    assert one is not None and (one.level, one.peak.y) == (3, 74.0)
    # ... unless L5-S1 (never moved) would then lie a segment too low below it: the chain was
    # counted from both ends, the anatomy is ambiguous, the study stays as it was
    low_chain = _chain([20.0, 38.0, 56.0, 92.0], {3: (74.0, 0.4)})
    assert unc.repair_chain(low_chain, 2.0, junction=unc.Peak(50.0, 92.0, 0.7)) is not None
    assert unc.repair_chain(low_chain, 2.0, junction=unc.Peak(50.0, 110.0, 0.7)) is None
    # a plausible chain is left alone even when L5-S1 below it is a segment too low (that is
    # the junction gate's to judge) and another level's second peak would "fit" it
    fine = _chain([20.0, 38.0, 56.0, 74.0], {3: (80.0, 0.4)})
    assert unc.junction_two_segments([(100.0, 2 * y) for y in (20.0, 38.0, 56.0, 74.0, 104.0)])
    assert not unc.junction_miscounted([(100.0, 2 * y) for y in (20.0, 38.0, 56.0, 80.0, 104.0)])
    assert unc.repair_chain(fine, 2.0, junction=unc.Peak(50.0, 104.0, 0.7)) is None
    # L2-L3 too close to L1-L2: moving either L2-L3 down or L1-L2 up makes a plausible chain,
    # so which level is wrong is not known -> no repair
    close = [20.0, 30.0, 56.0, 74.0]
    assert unc.implausible([(100.0, 2 * y) for y in close])
    assert unc.repair_chain(_chain(close, {1: (38.0, 0.4)}), 2.0) is not None
    assert unc.repair_chain(_chain(close, {0: (8.0, 0.4)}), 2.0) is not None
    assert unc.repair_chain(_chain(close, {0: (8.0, 0.4), 1: (38.0, 0.4)}), 2.0) is None


def _map_on(points: dict[tuple[int, int], float], size: int = 128) -> np.ndarray:
    """A ``size``² map with the given mass on each (x, y) pixel, normalised."""
    p = np.zeros((size, size))
    for (x, y), mass in points.items():
        p[y, x] = mass
    return p / p.sum()


#: A vertical spine at x = 50 on 2 mm pixels: mobile discs 18 px (36 mm) apart, L5-S1 at y = 110.
DISCS_Y = [2, 20, 38, 56, 74, 92]  # T11-T12 .. L4-L5
L5S1 = unc.Peak(50.0, 110.0, 0.8)


def _disc_channel(ys: list[int] = DISCS_Y) -> np.ndarray:
    return _map_on({(50, y): 1.0 for y in [*ys, 110]})


def test_two_levels_on_one_disc_are_counted_up_from_l5s1_disc_by_disc() -> None:
    # seen on blind normals: L2-L3 and L3-L4 both on the L3-L4 disc, L1-L2 on L2-L3's
    maps = [
        _map_on({(50, 56): 0.7, (50, 38): 0.2, (50, 20): 0.1}),  # L1-L2 (its disc: y 38)
        _map_on({(50, 74): 0.45, (50, 56): 0.35, (50, 38): 0.2}),  # L2-L3 (56)
        _map_on({(50, 74): 0.8, (50, 92): 0.2}),  # L3-L4 (74)
        _map_on({(50, 92): 0.9, (50, 110): 0.1}),  # L4-L5 (92)
    ]
    points = unc.chain_mm([unc.peaks(m)[0] for m in maps], 2.0)
    assert unc.implausible(points)
    assert unc.repair_chain([unc.peaks(m) for m in maps], 2.0, junction=L5S1) is None
    recount = unc.count_up_chain(maps, _disc_channel(), L5S1, 2.0)
    assert recount is not None
    assert [q.y for q in recount.points] == [38.0, 56.0, 74.0, 92.0]
    assert recount.support == pytest.approx((0.2 + 0.35 + 0.8 + 0.9) / 4)
    assert recount.runner_up < recount.support / unc.COUNT_UP_MARGIN
    assert not unc.implausible(unc.chain_mm([*recount.points, L5S1], 2.0)[:4])
    # the same maps with their mass off the discs (between them): no support, no recount
    off = [_map_on({(50, int(q.y) + 9): 1.0}) for q in recount.points]
    assert unc.count_up_chain(off, _disc_channel(), L5S1, 2.0) is None


def test_counting_up_needs_consecutive_discs_and_a_clear_winner() -> None:
    maps = [
        _map_on({(50, 56): 0.7, (50, 38): 0.3}),
        _map_on({(50, 74): 0.5, (50, 56): 0.5}),
        _map_on({(50, 74): 1.0}),
        _map_on({(50, 92): 1.0}),
    ]
    assert unc.count_up_chain(maps, _disc_channel(), L5S1, 2.0) is not None
    # a disc the disc channel does not see (L3-L4, y 56): the run skips it -> a gap of two
    # segments -> not plausible; no other run has support
    assert unc.count_up_chain(maps, _disc_channel([2, 20, 38, 74, 92]), L5S1, 2.0) is None
    # too few discs in view for a run of four
    assert unc.count_up_chain(maps, _disc_channel([74, 92]), L5S1, 2.0) is None
    # two runs the maps support about equally (each level split over two discs): ambiguous
    split = [_map_on({(50, y): 0.5, (50, y + 18): 0.5}) for y in (20, 38, 56, 74)]
    assert unc.count_up_chain(split, _disc_channel(), L5S1, 2.0) is None
