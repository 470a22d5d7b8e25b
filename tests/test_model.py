"""The shipped reference weights: localization, LSTV ranking, determinism, end-to-end on DICOM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scp_node.analysis import analyze_study
from scp_node.cli import main
from scp_node.config import ModelSettings, Settings
from scp_node.model import datasets, variations
from scp_node.model import train as train_module
from scp_node.model import uncertainty as unc
from scp_node.model.engine import LocalizerEngine
from scp_node.model.evaluate import in_plane_errors
from scp_node.model.geometry import CanonicalGrid
from scp_node.model.phantom import generate
from scp_node.model.train import TrainConfig, calibrate, train, validation_results
from scp_node.model.weights import WeightsError, load, reference_path, save
from scp_node.phantom_dicom import write_phantom
from scp_node.result import DISC_LEVELS
from scp_node.series import SeriesVolume
from tests.conftest import SHIPPED_THRESHOLD

SEEDS = (900_001, 900_002, 900_003, 900_004)  # outside training/validation/evaluation ranges
#: Fewer Monte-Carlo passes for speed; they make other scores than the shipped threshold was
#: chosen with, so it is given explicitly (an engine refuses the weights' own threshold otherwise).
FAST = ModelSettings(device="cpu", mc_samples=4, lstv_threshold=SHIPPED_THRESHOLD)


@pytest.fixture(scope="module")
def engine() -> LocalizerEngine:
    # fewer passes for speed; the shipped threshold given, since 4 passes make other scores
    return LocalizerEngine.from_settings(FAST)


def test_reference_weights_metadata() -> None:
    w = load()
    assert reference_path().stat().st_size < 20 * 1024 * 1024
    assert w.metadata["levels"] == list(DISC_LEVELS)
    assert w.metadata["normalisation"] == "spatial-softmax"
    assert w.metadata["training"]["variant"] == "normal"
    assert isinstance(w.metadata["lstv_threshold"], float)
    assert w.metadata["canonical"] == {"size": 128, "spacing_mm": 2.5}
    assert 0 < w.metadata["quality"]["max_reference_uncertainty"] < 5
    assert len(w.sha256) == 64


def test_localizes_normal_phantoms(engine: LocalizerEngine) -> None:
    errors = []
    for seed in SEEDS[:3]:
        ph = generate("normal", seed=seed, slices=9, size=256)
        volume = datasets.phantom_series(ph)
        res = engine.analyze(volume)
        errors.extend(in_plane_errors(res, ph, volume).values())
    assert float(np.median(errors)) <= 5.0, errors


@pytest.mark.parametrize("lateral_mm", [20.0, -20.0])
def test_a_stack_beside_the_spine_is_read_on_its_midline(
    engine: LocalizerEngine, lateral_mm: float
) -> None:
    """A stack of 15 slices 4 mm apart centred 20 mm to one side of the spine (the stress row
    "stack 20 mm off the midline"): the search window around the stack's centre holds only
    slices through the side of the vertebral bodies, so the engine reads the rest of the stack
    and finds the midline where the slices are mirror-symmetric, and says so."""
    ph = generate(
        "normal", seed=300_000, slices=15, size=256, acquisition={"lateral_offset_mm": lateral_mm}
    )
    volume = datasets.phantom_series(ph)
    res = engine.analyze(volume)
    normal = np.cross(volume.row_direction, volume.column_direction)
    read = np.asarray(res.levels[0].patient_xyz)
    off_midline = [abs(float((read - np.asarray(d.patient_xyz)) @ normal)) for d in ph.discs]
    assert max(off_midline) <= volume.slice_spacing + 0.5, off_midline  # a slice or less
    assert any("not centred on the spine" in w for w in res.warnings), res.warnings
    assert max(in_plane_errors(res, ph, volume).values()) < 5.0


def test_a_centred_stack_is_read_near_its_centre_without_a_note(engine: LocalizerEngine) -> None:
    ph = generate("normal", seed=300_000, slices=15, size=256)
    volume = datasets.phantom_series(ph)
    res = engine.analyze(volume)
    normal = np.cross(volume.row_direction, volume.column_direction)
    read = np.asarray(res.levels[0].patient_xyz)
    off_midline = abs(float((read - np.asarray(ph.discs[0].patient_xyz)) @ normal))
    assert off_midline <= volume.slice_spacing + 0.5, off_midline
    assert not any("not centred" in w for w in res.warnings), res.warnings


def test_a_chain_with_an_extra_segment_is_a_finding_for_review(engine: LocalizerEngine) -> None:
    """Held-out sacralization phantom (stress-table seed 300001): the localizer's L3-L4 and
    L4-L5 lie two segments apart, the other gaps consistent. That used to be "not assessable"
    (inter-disc distances inconsistent); over five generators such a chain was seen in no
    normal spine (since then in 1 of the 80 normals of the sixth, docs/model.md), so it is
    scored as an extra segment, reported with its evidence, and marked for review."""
    ph = generate("sacralization", seed=300_001, slices=15, size=256)
    res = engine.analyze(datasets.phantom_series(ph))
    assert res.extra_segment.startswith("L3-L4 to L4-L5 spans two segments"), res.extra_segment
    assert res.assessable and res.lstv_suspected and res.needs_review
    assert res.lstv_score >= unc.EXTRA_SEGMENT_TERM
    assert any(w.startswith("extra segment: L3-L4 to L4-L5") for w in res.warnings)
    assert res.evidence and res.evidence[0].startswith("one gap of the levels spans two segments")
    assert res.evidence == unc.finding_evidence(
        unc.DiscEvidence(res.junction_disc_signal, res.below_disc_signal),
        res.junction_gap_ratio,
        res.extra_segment,
    )


def test_a_level_map_split_between_two_discs_is_read_on_the_one_that_fits_the_chain(
    engine: LocalizerEngine,
) -> None:
    """Held-out sacralization phantom (stress-table seed 300002): L1-L2's map is split between
    T12-L1 (its arg-max, 36 mm too high, so the gaps were inconsistent and the study "not
    assessable") and L1-L2. The second peak is taken because it alone makes the chain plausible;
    the result says so and asks for review."""
    ph = generate("sacralization", seed=300_002, slices=15, size=256)
    volume = datasets.phantom_series(ph)
    res = engine.analyze(volume)
    assert res.assessable, res.not_assessable_reason
    assert max(in_plane_errors(res, ph, volume).values()) < 10.0
    (note,) = [w for w in res.warnings if "second peak" in w]
    assert note.startswith("L1-L2 placed on the second peak") and "36 mm away" in note
    assert res.needs_review and res.lstv_suspected and res.levels_repaired == "second_peak"


def test_flipped_series_gives_the_same_discs_mirrored_back(engine: LocalizerEngine) -> None:
    """Anterior on the right instead of the left: the same disc centres in patient space, and
    in source pixels the mirror image of the unflipped ones."""
    ph = generate("normal", seed=SEEDS[3], slices=9, size=256)
    flipped = variations.flip_anterior_posterior(ph)
    a = engine.analyze(datasets.phantom_series(ph))
    b = engine.analyze(datasets.phantom_series(flipped))
    cols = ph.volume.shape[2]
    for fa, fb in zip(a.levels, b.levels, strict=True):
        assert fa.slice_index == fb.slice_index
        assert abs((cols - 1 - fb.pixel_xy[0]) - fa.pixel_xy[0]) < 2.0, (fa, fb)
        assert abs(fb.pixel_xy[1] - fa.pixel_xy[1]) < 2.0, (fa, fb)
        assert np.linalg.norm(np.subtract(fa.patient_xyz, fb.patient_xyz)) < 2.5
    assert abs(a.lstv_score - b.lstv_score) < 0.1


def test_transposed_storage_gives_the_same_result(engine: LocalizerEngine) -> None:
    """Rows running posterior and columns to the feet (Image Orientation (Patient) triplets and
    Pixel Spacing swapped, pixels transposed): the same score and disc centres, and each point's
    source pixel (column, row) transposed too."""
    ph = generate("normal", seed=SEEDS[1], slices=9, size=256)
    stored = datasets.phantom_series(ph)
    transposed = datasets.phantom_series(ph)
    transposed.volume = np.ascontiguousarray(np.transpose(np.asarray(stored.volume), (0, 2, 1)))
    transposed.row_direction = stored.column_direction
    transposed.column_direction = stored.row_direction
    transposed.pixel_spacing = (stored.pixel_spacing[1], stored.pixel_spacing[0])
    a, b = engine.analyze(stored), engine.analyze(transposed)
    assert b.lstv_score == pytest.approx(a.lstv_score, abs=1e-4)
    for fa, fb in zip(a.levels, b.levels, strict=True):
        assert np.linalg.norm(np.subtract(fa.patient_xyz, fb.patient_xyz)) < 0.05
        assert fb.pixel_xy == pytest.approx(fa.pixel_xy[::-1], abs=0.05)


def _sorted_along_normal(volume: SeriesVolume) -> bool:
    normal = np.cross(volume.row_direction, volume.column_direction)
    return bool(np.all(np.diff([np.dot(p, normal) for p in volume.positions]) > 0))


def test_the_stack_sorted_the_other_way_gives_the_same_result(engine: LocalizerEngine) -> None:
    """The same slices with the columns stored in reverse (row direction negated, Image Position
    (Patient) moved to the new first pixel): the slice normal, row x column, points the other
    way, so the stack is sorted the other way round. The dropout masks followed the order of the
    context slices in the batch, so the score moved by up to 0.18 with the storage direction."""
    for variant in ("normal", "lumbarization"):
        ph = generate(variant, seed=SEEDS[2], slices=9, size=256)
        stored = datasets.phantom_series(ph)
        other = datasets.phantom_series(ph)
        cols = np.asarray(stored.volume).shape[2]
        width = np.asarray(stored.row_direction) * stored.pixel_spacing[1] * (cols - 1)
        other.volume = np.ascontiguousarray(np.asarray(stored.volume)[::-1, :, ::-1])
        other.row_direction = tuple(-np.asarray(stored.row_direction))
        other.positions = [tuple(np.asarray(p) + width) for p in stored.positions[::-1]]
        other.sop_instance_uids = stored.sop_instance_uids[::-1]
        assert _sorted_along_normal(other)  # as the loader sorts it
        a, b = engine.analyze(stored), engine.analyze(other)
        assert b.lstv_score == pytest.approx(a.lstv_score, abs=1e-4)
        for fa, fb in zip(a.levels, b.levels, strict=True):
            assert np.linalg.norm(np.subtract(fa.patient_xyz, fb.patient_xyz)) < 0.05
            assert fb.pixel_xy == pytest.approx(
                (cols - 1 - fa.pixel_xy[0], fa.pixel_xy[1]), abs=0.05
            )


@pytest.mark.parametrize("degrees", [18.0, -18.0])
def test_an_oblique_series_gives_the_same_result_turned(
    engine: LocalizerEngine, degrees: float
) -> None:
    """The whole series turned about the patient's head-foot axis (a sagittal-oblique stack
    18 deg off, inside the 20 deg limit): the same score and source pixels, and the disc centres
    turned with it."""
    ph = generate("normal", seed=SEEDS[1], slices=9, size=256)
    straight = datasets.phantom_series(ph)
    turn = np.array(
        [
            [np.cos(np.radians(degrees)), -np.sin(np.radians(degrees)), 0.0],
            [np.sin(np.radians(degrees)), np.cos(np.radians(degrees)), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    oblique = datasets.phantom_series(ph)
    oblique.row_direction = tuple(turn @ np.asarray(straight.row_direction))
    oblique.column_direction = tuple(turn @ np.asarray(straight.column_direction))
    oblique.positions = [tuple(turn @ np.asarray(p)) for p in straight.positions]
    a, b = engine.analyze(straight), engine.analyze(oblique)
    assert b.lstv_score == pytest.approx(a.lstv_score, abs=1e-4)
    for fa, fb in zip(a.levels, b.levels, strict=True):
        assert fb.pixel_xy == pytest.approx(fa.pixel_xy, abs=0.05)
        assert np.linalg.norm(turn @ np.asarray(fa.patient_xyz) - fb.patient_xyz) < 0.05


def test_non_square_pixels_give_the_same_discs(engine: LocalizerEngine) -> None:
    """The same series resampled to 1.6 x 1.0 and 1.0 x 1.6 times coarser rows x columns (a
    rectangular matrix of non-square pixels, Pixel Spacing changed to match): the same disc
    centres in patient space and the same verdict."""
    ph = generate("normal", seed=SEEDS[0], slices=9, size=256)
    volume = datasets.phantom_series(ph)
    reference = engine.analyze(volume)
    stack = torch.from_numpy(np.asarray(volume.volume, np.float32))[:, None]
    for coarser_rows, coarser_cols in ((1.6, 1.0), (1.0, 1.6)):
        size = (round(256 / coarser_rows), round(256 / coarser_cols))
        resampled = torch.nn.functional.interpolate(
            stack, size=size, mode="bilinear", align_corners=True
        )  # the first and last pixel centres stay where they were
        other = datasets.phantom_series(ph)
        other.volume = resampled[:, 0].numpy()
        other.pixel_spacing = (
            volume.pixel_spacing[0] * 255 / (size[0] - 1),
            volume.pixel_spacing[1] * 255 / (size[1] - 1),
        )
        res = engine.analyze(other)
        assert res.assessable == reference.assessable
        assert res.lstv_suspected == reference.lstv_suspected
        for a, b in zip(reference.levels, res.levels, strict=True):
            assert np.linalg.norm(np.subtract(a.patient_xyz, b.patient_xyz)) < 2.5, (a, b)


def test_context_slices_are_about_4_mm_apart(engine: LocalizerEngine) -> None:
    """The network was trained on neighbouring slices 3-5 mm apart: a 2-D series gives its
    consecutive slices (as before), thin 3-D partitions every n-th one; the mid-sagittal slice
    is always among them and all lie inside the series."""
    assert engine.context_slices == 3
    assert engine.context(7, 15, 4.0) == [6, 7, 8]
    assert engine.context(0, 15, 3.0) == [0, 1, 2]
    assert engine.context(14, 15, 5.5) == [12, 13, 14]
    assert engine.context(20, 41, 1.0) == [16, 20, 24]
    assert engine.context(4, 9, 2.0) == [2, 4, 6]
    assert engine.context(1, 41, 1.0) == [1, 5, 9]
    assert engine.context(40, 41, 1.0) == [32, 36, 40]
    assert engine.context(1, 3, 1.0) == [0, 1, 2]  # too few partitions for 4 mm: closer
    assert engine.context(0, 2, 1.0) == [0, 1]


def test_dropout_masks_do_not_depend_on_the_batch_size() -> None:
    """The Monte-Carlo passes are fixed subnetworks drawn from the seed on the CPU: the score,
    and so the threshold chosen with them, holds for any ``max_batch`` (and any device). The
    dropout layers drew their masks batch by batch from the global stream (and on CUDA from the
    GPU's generator): with 5 rows a batch instead of all 24 at once, the normal phantom here
    scored -0.024 instead of -0.004; another set of masks is another ensemble, whose 95 %
    specificity threshold lay anywhere in 0.04-0.87 (docs/model.md, "The Monte-Carlo seed")."""
    whole = LocalizerEngine.from_settings(ModelSettings(device="cpu"))
    small = LocalizerEngine.from_settings(ModelSettings(device="cpu", max_batch=5))
    for variant in ("normal", "sacralization"):
        volume = datasets.phantom_series(generate(variant, seed=SEEDS[0], slices=9, size=256))
        a, b = whole.analyze(volume), small.analyze(volume)
        assert b.lstv_score == pytest.approx(a.lstv_score, abs=1e-5)
        assert [f.mutual_information for f in b.levels] == pytest.approx(
            [f.mutual_information for f in a.levels], abs=1e-5
        )
    masks = whole.dropout_masks(24)
    assert masks is not None and all(m.device.type == "cpu" for m in masks)
    assert [tuple(m.shape) for m in masks] == [(24, c, 1, 1) for c in whole.model.dropout_channels]
    keep = 1.0 - whole.model.drop.p
    for m in masks:  # Bernoulli(1 - p) / (1 - p), as torch's Dropout2d
        values = torch.unique(m).tolist()
        assert values == pytest.approx([0.0, 1.0 / keep]), values


def test_field_without_s1_is_not_assessable(engine: LocalizerEngine) -> None:
    """A field that stops above the sacrum cannot show the junction: not assessable, never
    'LSTV suspected'."""
    ph = generate("normal", seed=SEEDS[0], slices=9, size=256)
    stop = int(ph.disc("L4-L5").row + 0.5 * (ph.disc("L5-S1").row - ph.disc("L4-L5").row))
    short = variations.crop(ph, 0, stop, 0, ph.volume.shape[2])
    res = engine.analyze(datasets.phantom_series(short))
    assert not res.assessable and not res.lstv_suspected and res.needs_review
    assert res.not_assessable_reason


def test_lstv_phantoms_score_higher_than_normals(engine: LocalizerEngine) -> None:
    def score(variant: str, seed: int) -> float:
        ph = generate(variant, seed=seed, slices=5, size=256)
        return engine.analyze(datasets.phantom_series(ph)).lstv_score

    normal = [score("normal", s) for s in SEEDS]
    lstv = [score(v, s) for v in ("lumbarization", "sacralization") for s in SEEDS]
    # The separation is weak on the project's own phantoms too (AUROC ~0.65, docs/model.md):
    # normals score in a narrow band, LSTV phantoms spread upward. So the check is that band:
    # on average LSTV scores higher, and some LSTV phantom scores above every normal.
    assert np.mean(lstv) > np.mean(normal), (normal, lstv)
    assert max(lstv) > max(normal), (normal, lstv)


def test_cpu_inference_is_deterministic(engine: LocalizerEngine) -> None:
    vol = datasets.phantom_series(generate("sacralization", seed=SEEDS[0], slices=5, size=128))
    torch.manual_seed(123)  # global RNG state must not matter
    a = engine.analyze(vol)
    torch.rand(10)
    b = engine.analyze(vol)
    assert a.levels == b.levels and a.lstv_score == b.lstv_score
    assert a.model is not None and a.model.weights_sha256 == load().sha256
    assert a.device.startswith("cpu") and a.inference_ms > 0


def test_threshold_override_and_review_flag() -> None:
    vol = datasets.phantom_series(generate("normal", seed=SEEDS[1], slices=3, size=128))
    base = LocalizerEngine.from_settings(FAST)
    score = base.analyze(vol).lstv_score
    low = LocalizerEngine.from_settings(
        ModelSettings(device="cpu", mc_samples=4, lstv_threshold=score - 1.0, review_margin=0.1)
    ).analyze(vol)
    near = LocalizerEngine.from_settings(
        ModelSettings(device="cpu", mc_samples=4, lstv_threshold=score + 0.01, review_margin=0.1)
    ).analyze(vol)
    assert low.lstv_suspected == low.assessable
    assert low.lstv_threshold == pytest.approx(score - 1.0)
    assert not near.lstv_suspected and near.needs_review


def test_own_checkpoint_round_trip_and_bad_file(tmp_path: Path) -> None:
    ref = load()
    path = tmp_path / "mine.pt"
    sha = save(path, ref.build(), {**ref.metadata, "version": "9.9"})
    mine = load(path)
    assert mine.sha256 == sha != ref.sha256
    assert mine.metadata["version"] == "9.9"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(WeightsError):
        load(bad)


def test_analyze_study_from_dicom_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = write_phantom(tmp_path / "study", "normal", seed=SEEDS[2], slices=5, size=256)
    settings = Settings()
    settings.model.device = "cpu"
    eng = LocalizerEngine.from_settings(settings.model)
    res = analyze_study(paths, settings, eng)
    truth = json.loads((tmp_path / "study" / "truth.json").read_text())
    assert res.applicable and res.study_instance_uid == truth["study_instance_uid"]
    assert [f.level for f in res.levels] == list(DISC_LEVELS)
    mid = res.levels[0].slice_index
    assert res.levels[0].sop_instance_uid == truth["discs"][0]["sop_instance_uid"] or mid >= 0
    empty = analyze_study([], settings, eng)
    assert not empty.applicable and "no sagittal T2 series" in empty.reason
    assert res.evidence == () or res.lstv_suspected  # evidence is said of a finding only
    assert main(["infer", str(tmp_path / "study"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["applicable"] is True and len(out["levels"]) == 5
    assert out["evidence"] == list(res.evidence)


def test_evaluate_counts_verdicts_and_says_how_many_were_held_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`model evaluate` reports the verdicts' sensitivity and specificity (a finding held back
    for want of an anatomical sign is a negative) and how many were held back. On the stress
    table's baseline row two lumbarizations (seeds 300004 and 300006, scores 0.55 and 1.6) are
    over the threshold and held back (docs/model.md, "Stress test"): the sensitivity is the
    scores' less them (at least the one far over the threshold, whatever the CPU)."""
    from scp_node.model.evaluate import STRESS_ROWS, evaluate_row

    shipped = LocalizerEngine.from_settings(ModelSettings(device="cpu"))  # the passes of the table
    row = evaluate_row(shipped, STRESS_ROWS["baseline (256 px, 15 slices)"], 1, 7)
    lstv = row["scores"]["lumbarization"] + row["scores"]["sacralization"]
    over = sum(score >= row["threshold"] for score in lstv)
    assert row["held_back"] >= 1
    assert row["sensitivity"] == pytest.approx((over - row["held_back"]) / len(lstv))
    assert main(["model", "evaluate", "--normals", "1", "--lstv", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert isinstance(report["held_back"], int) and report["held_back"] >= 0
    assert main(["model", "evaluate", "--normals", "1", "--lstv", "1"]) == 0
    text = capsys.readouterr().out
    assert "verdicts at threshold" in text
    assert f"({report['held_back']} findings held back" in text


def test_multiframe_study_findings_name_their_frame(
    engine: LocalizerEngine, tmp_path: Path
) -> None:
    """On a multi-frame series each finding names the instance and its 1-based frame."""
    from pydicom import dcmread

    from scp_node.series import select_and_load

    settings = Settings()
    [path] = write_phantom(
        tmp_path / "mf", "normal", seed=SEEDS[3], slices=7, size=256, multiframe=True
    )
    volume = select_and_load([path], settings.series).volume
    assert volume is not None
    res = engine.analyze(volume)
    truth = json.loads((tmp_path / "mf" / "truth.json").read_text())
    mf = dcmread(path, stop_before_pixels=True)
    assert res.applicable and len(res.levels) == len(DISC_LEVELS)
    for finding in res.levels:
        assert finding.sop_instance_uid == truth["discs"][0]["sop_instance_uid"]
        assert finding.frame_number == volume.frame_numbers[finding.slice_index]
        assert finding.frame_number is not None
        frame = mf.PerFrameFunctionalGroupsSequence[finding.frame_number - 1]
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx(volume.positions[finding.slice_index])


def test_junction_gap_ratio_is_measured_in_patient_mm(engine: LocalizerEngine) -> None:
    """The reported ratio is the patient-space one (canonical mm map to patient mm affinely), on
    a flipped series as on the original."""
    ph = generate("sacralization", seed=SEEDS[1], slices=5, size=128)
    for volume in (
        datasets.phantom_series(ph),
        datasets.phantom_series(variations.flip_anterior_posterior(ph)),
    ):
        res = engine.analyze(volume)
        pts = np.array([f.patient_xyz for f in res.levels])
        gaps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        assert res.junction_gap_ratio == pytest.approx(gaps[-1] / np.median(gaps[:-1]), abs=2e-3)


def test_training_arrays_do_not_depend_on_the_worker_count() -> None:
    """Training data from two processes is the same as from one (bit for bit), for both
    generators: a training run's result must not depend on ``--workers``."""
    grid = CanonicalGrid(size=64, spacing_mm=5.0)
    one = datasets.training_arrays(2, grid, context=3)
    two = datasets.training_arrays(2, grid, context=3, workers=2)
    assert one[0].shape[0] == 6 and one[0].any()
    for a, b in zip(one, two, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    empty = datasets.training_arrays(0, grid)
    assert [a.shape[0] for a in empty] == [0, 0, 0]


def test_validation_volumes_do_not_depend_on_the_worker_count() -> None:
    """The threshold's validation series rendered by two processes are the ones one process
    renders (bit for bit), for each generator: ``model calibrate --workers`` must not change it."""
    jobs = [
        ("first", datasets.VALIDATION_SEED0, "sacralization"),
        ("spin-echo", datasets.SPIN_ECHO_VALIDATION_SEED0, "normal"),
        ("rigid", datasets.RIGID_VALIDATION_SEED0, "lumbarization"),
    ]
    one = list(datasets.validation_volumes(jobs, workers=1))
    two = list(datasets.validation_volumes(jobs, workers=2))
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert a.volume.any() and np.array_equal(a.volume, b.volume)
        assert a.positions == b.positions and a.pixel_spacing == b.pixel_spacing
    assert one[0].volume.shape != one[1].volume.shape  # a whole study, then a midline series


def test_validation_render_started_early_gives_the_same_series_in_order() -> None:
    """Training starts rendering the validation series before its steps (on the core one torch
    thread leaves free); taken later they are those :func:`validation_volumes` gives, in job
    order, and a render of other jobs is refused rather than paired with the wrong labels."""
    jobs = [
        ("spin-echo", datasets.SPIN_ECHO_VALIDATION_SEED0 + 1000, "lumbarization"),
        ("first", datasets.VALIDATION_SEED0 + 1, "normal"),
    ]
    with datasets.ValidationRender(jobs, processes=1) as render:
        early = list(render)
        assert list(render) == []  # each series is handed out once, then let go
    later = list(datasets.validation_volumes(jobs, workers=1))
    assert [v.volume.shape for v in early] == [v.volume.shape for v in later]
    for a, b in zip(early, later, strict=True):
        assert np.array_equal(a.volume, b.volume) and a.positions == b.positions
    engine = LocalizerEngine.from_settings(FAST)
    with (
        datasets.ValidationRender(jobs) as other,
        pytest.raises(ValueError, match="not this validation set"),
    ):
        validation_results(engine, 1, render=other)


def test_training_command_end_to_end_at_tiny_scale(tmp_path: Path) -> None:
    """`model train` at a tiny scale: data from both generators, steps, then the threshold on
    validation series rendered in the background during the steps; re-choosing the threshold
    of the saved weights afterwards (series rendered afresh, in this process) gives the same
    threshold, quality limit and validation figures."""
    out = tmp_path / "tiny.pt"
    cfg = TrainConfig(
        out=out, phantoms=2, phantoms_3d=1, steps=3, validation_per_variant=1, workers=2
    )
    meta = train(cfg)
    saved = load(out).metadata
    assert meta["training"]["steps"] == 3 and meta["validation"]["normals"] == 2
    numerics = saved["training"]["numerics"]  # what the floating-point results depend on
    assert numerics["torch"] == torch.__version__
    assert numerics["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(numerics["env"]) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"}
    assert not out.with_suffix(".unvalidated.pt").exists()
    again = calibrate(out, tmp_path / "again.pt", 1, workers=1)
    for key in ("lstv_threshold", "quality", "validation"):
        assert again[key] == saved[key] == meta[key], key


def test_l5s1_two_segments_under_l4l5_is_a_finding_for_review(
    engine: LocalizerEngine, tmp_path: Path
) -> None:
    """A sacralization of the third generator (seed 3, study 7, as in docs/model.md): the
    localizer finds no mobile disc one segment under L4-L5 (the L5-S1 disc is fused) and puts
    L5-S1 on the next disc-like level down. That used to be "not assessable (a segment too
    low?)"; it is a sign like an extra segment in the chain, reported and marked for review."""
    from scp_node.model import phantom_rigid

    phantom_rigid.generate_study(tmp_path, 7, seed=3)
    folder = tmp_path / "third-007"
    assert json.loads((folder / "truth.json").read_text())["variant"] == "sacralization"
    res = analyze_study(sorted(folder.rglob("*.dcm")), Settings(), engine)
    assert res.extra_segment.startswith("L4-L5 to L5-S1 spans two segments"), res
    assert res.assessable and res.lstv_suspected and res.needs_review
    assert res.lstv_score >= unc.EXTRA_SEGMENT_TERM
    assert any(w.startswith("extra segment: L4-L5 to L5-S1") for w in res.warnings)
    assert res.evidence[0].startswith("one gap of the levels spans two segments")


def test_two_levels_on_one_disc_are_counted_up_from_l5s1(
    engine: LocalizerEngine, tmp_path: Path
) -> None:
    """A normal spine of the fourth generator (seed 4, study 30, as in docs/model.md): L2-L3's
    map is split and both L2-L3 and L3-L4 peak on the L3-L4 disc, L1-L2 on L2-L3's. That was
    "not assessable (a level skipped or doubled)"; counted up from L5-S1 along the discs the
    disc channel finds, every level lands on its own disc, and the study is screened (negative)
    and marked for review with a warning that says so."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench" / "fourth_phantom.py"
    spec = importlib.util.spec_from_file_location("fourth_phantom", bench)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fourth_phantom"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    module.make_study(tmp_path, 4, 30)
    folder = tmp_path / "fourth-030"
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["variant"] == "normal"
    res = analyze_study(
        sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"),
        Settings(),
        engine,
    )
    assert res.assessable and not res.lstv_suspected and res.needs_review, res
    assert any("counted up from L5-S1 disc by disc" in w for w in res.warnings), res.warnings
    assert res.levels_repaired == "counted_up"
    where = {d["level"]: np.asarray(d["patient_xyz"]) for d in truth["discs"]}
    normal = np.asarray(truth["slice_normal"], dtype=float)
    for finding in res.levels:  # each on its own disc: within 6 mm in the sagittal plane
        d = np.asarray(finding.patient_xyz) - where[finding.level]
        assert np.linalg.norm(d - (d @ normal) * normal) < 6.0, finding.level


def test_batches_made_ahead_on_a_second_thread_are_the_batches_made_inline() -> None:
    """The training batches come from a second thread (augmentation beside the network's
    steps); bit for bit and in order they are the ones one generator draws inline, so the
    trained weights do not change. An error while making them reaches the training loop."""
    gen = torch.Generator().manual_seed(7)
    size = 32
    x = torch.rand(6, 1, size, size, generator=gen)
    m = torch.ones(6, 2, size, size, dtype=torch.float16)
    y = 8.0 + 16.0 * torch.rand(6, len(DISC_LEVELS), 2, generator=gen)
    data = (x, m, y)
    inline_gen = torch.Generator().manual_seed(3)
    inline = [train_module.training_batch(data, 4, size, inline_gen) for _ in range(5)]
    ahead = list(train_module.AugmentedBatches(data, 5, 4, 3, size, ahead=2))
    assert len(ahead) == 5
    for (xa, ta), (xb, tb) in zip(inline, ahead, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    assert not torch.equal(inline[0][0], inline[1][0])  # the draws do move on
    broken = (x[:, 0], m, y)  # inputs without their channel axis
    with pytest.raises(ValueError):
        list(train_module.AugmentedBatches(broken, 5, 4, 3, size))
    # a loop that stops early lets the second thread go
    batches = train_module.AugmentedBatches(data, 1000, 4, 3, size, ahead=2)
    for _ in zip(range(2), batches, strict=False):
        pass
