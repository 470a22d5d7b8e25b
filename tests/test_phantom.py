"""Phantom generator: determinism, truth, and DICOM validity (dciodvfy)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom.uid as uids
import pytest
from pydicom import dcmread

from scp_node.codecs import decode_pixels
from scp_node.model.phantom import Phantom, generate
from scp_node.phantom_dicom import write_phantom, write_phantom_series
from scp_node.result import DISC_LEVELS


def test_phantom_is_deterministic_per_seed() -> None:
    a = generate("normal", seed=11, slices=5, size=96)
    b = generate("normal", seed=11, slices=5, size=96)
    c = generate("normal", seed=12, slices=5, size=96)
    assert np.array_equal(a.volume, b.volume)
    assert a.discs == b.discs
    assert not np.array_equal(a.volume, c.volume)


def test_thin_slices_image_the_same_spine() -> None:
    """``slice_thickness_mm``: contiguous thin partitions (a 3-D acquisition) of the same spine
    (the series' placement is drawn after the slices' noise, so only the discs' positions
    relative to each other are compared)."""
    two_d = generate("normal", seed=5, slices=15, size=128)
    thin = generate("normal", seed=5, slices=41, size=128, slice_thickness_mm=1.0)
    assert (thin.slice_thickness, thin.slice_spacing) == (1.0, 1.0)
    assert two_d.slice_spacing >= 3.0

    def in_plane(ph: Phantom) -> np.ndarray:
        points = np.array([d.patient_xyz[1:] for d in ph.discs])
        return points - points[0]

    assert np.allclose(in_plane(two_d), in_plane(thin), atol=1e-6)


@pytest.mark.parametrize(
    "variant,n_discs", [("normal", 5), ("lumbarization", 6), ("sacralization", 5)]
)
def test_truth_levels_are_ordered_down_the_spine(variant: str, n_discs: int) -> None:
    ph = generate(variant, seed=3, slices=7, size=128)
    assert [d.level for d in ph.discs][:5] == list(DISC_LEVELS)
    assert len(ph.discs) == n_discs
    rows = [d.row for d in ph.discs]
    assert all(b > a for a, b in zip(rows, rows[1:], strict=False))
    assert all(0 <= d.col < 128 and 0 <= d.row < 128 for d in ph.discs)
    assert ph.volume.dtype == np.uint16 and ph.volume.max() > 100


def test_sacralization_has_a_rudimentary_l5_s1_disc() -> None:
    """The L5-S1 disc of a sacralized spine is much thinner than L4-L5 (mean over seeds)."""

    def gap(ph):  # distance between neighbouring disc centres, in mm
        d = {x.level: np.array([x.col, x.row]) * ph.pixel_spacing[0] for x in ph.discs}
        return float(np.linalg.norm(d["L5-S1"] - d["L4-L5"]))

    normal = np.mean([gap(generate("normal", s, 3, 96)) for s in range(4)])
    sacral = np.mean([gap(generate("sacralization", s, 3, 96)) for s in range(4)])
    assert sacral < normal  # the rudimentary disc adds less height below L5


def test_dicom_series_geometry_and_uids(tmp_path: Path) -> None:
    paths = write_phantom(tmp_path / "a", "lumbarization", seed=5, slices=4, size=64)
    again = write_phantom(tmp_path / "b", "lumbarization", seed=5, slices=4, size=64)
    first, second = dcmread(paths[0]), dcmread(again[0])
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert str(first.PatientName) == "PHANTOM^LUMBARIZATION"
    assert [float(v) for v in first.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    xs = [float(dcmread(p).ImagePositionPatient[0]) for p in paths]
    assert np.allclose(np.diff(xs), -float(first.SpacingBetweenSlices))
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert truth["variant"] == "lumbarization" and len(truth["discs"]) == 6
    sops = {str(dcmread(p).SOPInstanceUID) for p in paths}
    assert truth["discs"][0]["sop_instance_uid"] in sops


@pytest.mark.parametrize("syntax", [uids.JPEG2000Lossless, uids.JPEGLSLossless, uids.RLELossless])
def test_compressed_phantom_is_lossless_and_keeps_uids(tmp_path: Path, syntax: str) -> None:
    ph = generate("normal", seed=2, slices=2, size=64)
    plain = write_phantom_series(tmp_path / "plain", ph)
    packed = write_phantom_series(tmp_path / "packed", ph, syntax)
    a, b = dcmread(plain[1]), dcmread(packed[1])
    assert b.file_meta.TransferSyntaxUID == syntax
    assert b.SOPInstanceUID == a.SOPInstanceUID == b.file_meta.MediaStorageSOPInstanceUID
    assert np.array_equal(decode_pixels(b), ph.volume[1])


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not on PATH")
@pytest.mark.parametrize("syntax", [uids.ExplicitVRLittleEndian, uids.JPEG2000Lossless])
def test_dciodvfy_reports_no_errors(tmp_path: Path, syntax: str) -> None:
    paths = write_phantom(
        tmp_path, "sacralization", seed=1, slices=2, size=64, transfer_syntax=syntax
    )
    for path in paths:
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
        assert errors == [], errors
        assert proc.returncode == 0


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not on PATH")
def test_cli_multiframe_phantom_is_one_legacy_converted_enhanced_mr(tmp_path: Path) -> None:
    from scp_node.cli import main

    out = tmp_path / "mf"
    assert main(["phantom", str(out), "--multiframe", "--slices", "4", "--size", "64"]) == 0
    [path] = sorted(out.glob("*.dcm"))
    ds = dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.4" and int(ds.NumberOfFrames) == 4
    assert decode_pixels(ds).shape == (4, 64, 64)
    truth = json.loads((out / "truth.json").read_text())
    assert {d["sop_instance_uid"] for d in truth["discs"]} == {ds.SOPInstanceUID}
    assert all(1 <= d["frame_number"] <= 4 for d in truth["discs"])
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
    # dciodvfy does not count the per-frame Conversion Source Attributes Sequence (PS3.3
    # C.7.6.16.2.24) as a reference, so it flags highdicom's Common Instance Reference module
    assert [e for e in errors if "ReferencedSeriesSequence" not in e] == [], errors
