"""Cheap checks of the independent phantom generator and the screen bench (bench/, no model)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from scp_node.model import phantom3d as gen

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


bench = _load("bench_screen")


def test_auroc_hand_cases() -> None:
    assert bench.auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert bench.auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert bench.auroc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    # one tie across classes counts a half: pairs (pos, neg) = 2x2, wins 3.5
    assert bench.auroc([0.1, 0.5, 0.5, 0.9], [False, False, True, True]) == pytest.approx(0.875)
    assert bench.auroc([0.1, 0.2], [True, True]) is None


def test_average_ranks_ties() -> None:
    ranks = bench.average_ranks(np.array([3.0, 1.0, 3.0, 2.0]))
    assert ranks.tolist() == [3.5, 1.0, 3.5, 2.0]


def test_sagittal_error_ignores_the_slice_normal() -> None:
    normal = np.array([1.0, 0.0, 0.0])
    err = bench.sagittal_error(np.array([10.0, 3.0, 4.0]), np.zeros(3), normal)
    assert err == pytest.approx(5.0)


@pytest.mark.parametrize("variant", ["normal", "lumbarization", "sacralization"])
def test_truth_discs_in_order_and_in_view(variant: str) -> None:
    rng = np.random.default_rng(3)
    anat = gen.draw_anatomy(variant, rng)
    spine = gen.layout_spine(anat, rng)
    discs = gen.truth_discs(spine)
    names = [d["level"] for d in discs]
    expected = {
        "normal": ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"],
        "lumbarization": ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-L6", "L6-S1"],
        "sacralization": ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"],
    }[variant]
    assert names == expected
    z = [d["patient_xyz"][2] for d in discs]
    assert all(a > b for a, b in zip(z, z[1:], strict=False))  # head (+z) to feet
    planes = gen.sagittal_planes(spine, gen.draw_acquisition("standard", rng))
    assert all(gen.in_fov(planes, d["patient_xyz"], 10.0) for d in discs)
    normal = planes[0].normal
    assert abs(abs(normal[0]) - 1.0) < 1e-9  # standard set: true sagittal


def test_flip_set_puts_anterior_on_the_right() -> None:
    rng = np.random.default_rng(4)
    acq = gen.draw_acquisition("flip", rng)
    spine = gen.layout_spine(gen.draw_anatomy("normal", rng), rng)
    plane = gen.sagittal_planes(spine, acq)[0]
    assert plane.row_dir[1] == pytest.approx(-1.0)  # columns run anterior (-y in LPS)


def test_mid_disc_renders_as_disc_tissue() -> None:
    rng = np.random.default_rng(5)
    anat = gen.draw_anatomy("normal", rng)
    spine = gen.layout_spine(anat, rng)
    disc = next(d for d in spine.discs if d.name == "L2-L3")
    x, y, z = spine.at(disc.s_mid)
    grid = gen.build_grid(spine, (y - 10, y + 10), (z - 10, z + 10))
    s, d = grid.lookup(np.array([y]), np.array([z]))
    assert s[0] == pytest.approx(disc.s_mid, abs=0.5) and abs(d[0]) < 0.5
    pts = gen.Points(np.array([x]), np.array([y]), np.array([z]), s, d, np.zeros(1))
    label = gen.tissue_map(pts, spine, anat, 0)
    assert gen.TISSUE_NAMES[label[0]] in ("nucleus", "annulus", "nucleus_degen")


def test_tiny_study_is_valid_dicom_and_the_node_picks_its_t2(tmp_path: Path) -> None:
    from pydicom import dcmread

    from scp_node.config import SeriesRules
    from scp_node.series import select_and_load

    acq = gen.Acquisition(pixel_spacing=3.6, rows=96, cols=80, slices=5, anterior_left=False)
    truth = gen.make_study(tmp_path, "standard", 3, 11, acquisition=acq)
    folder = tmp_path / "standard-003"
    files = sorted(folder.rglob("*.dcm"))
    headers = [dcmread(f, stop_before_pixels=True) for f in files]
    assert {h.StudyInstanceUID for h in headers} == {truth["study_instance_uid"]}
    assert len({h.SeriesInstanceUID for h in headers}) == 3
    t2 = [h for h in headers if h.SeriesInstanceUID == truth["t2_series_instance_uid"]]
    assert len(t2) == 5 and float(t2[0].EchoTime) >= 60 and t2[0].Rows == 96
    assert t2[0].file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    selection = select_and_load(files, SeriesRules())
    assert selection.volume is not None
    assert selection.volume.series_instance_uid == truth["t2_series_instance_uid"]
    assert truth["variant"] == "sacralization" and truth["lstv"] is True


def test_lossless_bench_finds_lossless_syntaxes_equal_and_a_lossy_one_different(
    tmp_path: Path,
) -> None:
    """bench/lossless_agreement.py on one phantom study: JPEG-LS and RLE lossless give the
    stored result exactly; lossy JPEG 2000 (the check's failing case) changes it."""
    from scp_node.phantom_dicom import write_phantom

    write_phantom(tmp_path / "sets" / "study", "normal", seed=5, slices=7, size=256)
    lossless = _load("lossless_agreement")
    report = tmp_path / "report.json"
    syntaxes = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5"]
    assert (
        lossless.main([str(tmp_path / "sets"), "--syntax", *syntaxes, "--json", str(report)]) == 0
    )
    rows = json.loads(report.read_text())["syntaxes"]
    assert [rows[s]["agree"] for s in syntaxes] == [1, 1]
    assert any("1.2.840.10008.1.2.4.80" in key for key in rows[syntaxes[0]]["decoded_by"])
    lossy = "1.2.840.10008.1.2.4.91"
    assert lossless.main([str(tmp_path / "sets"), "--syntax", lossy, "--json", str(report)]) == 1
    assert json.loads(report.read_text())["syntaxes"][lossy]["agree"] == 0


def test_lossless_bench_measures_how_far_a_lossy_copy_moved() -> None:
    lossless = _load("lossless_agreement")

    def result(score: float, suspected: bool, x: float, sop: str) -> dict:
        return {"series": "1.2", "applicable": True, "assessable": True, "score": score,
                "suspected": suspected, "points": [("L5-S1", sop, (x, 10.0))]}  # fmt: skip

    pairs = [
        (result(0.10, False, 5.0, "1.1"), result(0.15, False, 8.0, "1.9")),  # new SOP UID
        (result(0.60, True, 5.0, "1.1"), result(0.40, False, 5.0, "1.1")),  # verdict lost
        (result(0.30, False, 5.0, "1.1"), result(0.30, False, 5.0, "1.1")),
    ]
    moved = lossless.changes(pairs)
    assert moved["verdicts_kept"] == 2
    assert moved["score_change_median"] == pytest.approx(0.05)
    assert moved["score_change_max"] == pytest.approx(0.2)
    assert moved["point_move_max_px"] == pytest.approx(3.0)


def test_artefact_probe_darkens_the_t2_in_front_of_the_spine_only(tmp_path: Path) -> None:
    """bench/artefact_probe.py: the saturation band lowers T2 pixels in front of the discs
    (patient -y, LPS), leaves those behind the discs and every other series as they were."""
    from pydicom import dcmread

    probe = _load("artefact_probe")
    acq = gen.Acquisition(pixel_spacing=3.6, rows=96, cols=80, slices=5, anterior_left=False)
    truth = gen.make_study(tmp_path, "standard", 3, 11, acquisition=acq)
    study, copy = tmp_path / "standard-003", tmp_path / "banded"
    assert probe.with_band(study, copy, np.random.default_rng(0)) == 5
    discs = np.array([d["patient_xyz"] for d in truth["discs"]])
    front_y, back_y = discs[:, 1].min() - 40.0, discs[:, 1].max() + 15.0
    darker = unchanged = 0
    for path in sorted(study.rglob("*.dcm")):
        before, after = dcmread(path), dcmread(copy / path.relative_to(study))
        if before.SeriesInstanceUID != truth["t2_series_instance_uid"]:
            assert np.array_equal(before.pixel_array, after.pixel_array)
            continue
        points = probe._pixel_points(before)
        in_span = (points[..., 2] > discs[:, 2].min()) & (points[..., 2] < discs[:, 2].max())
        ahead = in_span & (points[..., 1] < front_y) & (before.pixel_array > 50)
        behind = points[..., 1] > back_y
        ratio = after.pixel_array[ahead] / before.pixel_array[ahead]
        darker += int((ratio < 0.5).sum())
        unchanged += int(np.array_equal(before.pixel_array[behind], after.pixel_array[behind]))
    assert darker > 0 and unchanged == 5
    assert [probe.outcome({"assessable": a, "suspected": s}, lstv) for a, s, lstv in
            [(False, True, True), (True, True, True), (True, True, False), (True, False, True)]
            ] == ["na", "right", "fa", "miss"]  # fmt: skip


def test_chain_top_compares_spines_counted_low_with_normals_localized_right(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chain_top = _load("chain_top")

    def study(variant: str, l1l2_error: float, l1l2_peak: float, assessable: bool = True) -> dict:
        figures = {lv: {"peak": 0.9, "mi": 0.05, "entropy": 5.0} for lv in ("L2-L3", "L3-L4")}
        figures["L1-L2"] = {"peak": l1l2_peak, "mi": 0.05, "entropy": 5.0}
        return {"set": "x", "variant": variant, "assessable": assessable,
                "disc_errors_mm": {"L1-L2": l1l2_error}, "level_figures": figures}  # fmt: skip

    studies = [
        study("lumbarization", 33.0, 0.5),  # counted from the sacrum: L1-L2 a segment low
        study("lumbarization", 34.0, 0.6),
        study("lumbarization", 1.0, 0.1),  # counted right: not in either group
        study("normal", 1.0, 0.9),
        study("normal", 2.0, 0.8),
        study("normal", 31.0, 0.1),  # a normal localized a segment off: left out
        study("normal", 1.0, 0.1, assessable=False),
    ]
    groups = chain_top.groups(studies, 15.0)["x"]
    assert len(groups["counted low"]) == 2 and len(groups["normal"]) == 2
    path = tmp_path / "screen.json"
    path.write_text(json.dumps({"studies": studies}))
    assert chain_top.main([str(path)]) == 0
    table = capsys.readouterr().out
    assert "| figure | x (2) |" in table
    assert "| 1 - L1-L2 peak confidence | 1.00 |" in table  # lower peaks, all of them
