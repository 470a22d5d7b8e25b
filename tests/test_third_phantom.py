"""The third generator (scp_node.model.phantom_rigid, bench/third_phantom.py): DICOM geometry
and truth consistency on tiny studies (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom

from scp_node.model import datasets, phantom3d, phantom_rigid
from scp_node.model.geometry import CanonicalGrid


def _load():
    return phantom_rigid


def _series(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        out.setdefault(ds.SeriesInstanceUID, []).append(ds)
    return out


def test_tiny_studies_geometry_and_truth(tmp_path: Path) -> None:
    tp = _load()
    expected = {
        0: ("normal", ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]),
        1: ("lumbarization", ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1", "S1-S2"]),
        3: ("sacralization", ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]),
    }
    for index, (variant, levels) in expected.items():
        truth = tp.generate_study(tmp_path, index, seed=7, tiny=True)
        folder = tmp_path / f"third-{index:03d}"
        on_disk = json.loads((folder / "truth.json").read_text())
        assert on_disk["discs"] == truth["discs"]
        assert on_disk["set"] == on_disk["variation"] == "third"
        assert on_disk["variant"] == variant
        assert on_disk["lstv"] is (variant != "normal")
        assert [d["level"] for d in on_disk["discs"]] == levels
        states = {d["level"]: d["disc"] for d in on_disk["discs"]}
        if variant == "lumbarization":
            assert states["S1-S2"] == "extra"
        if variant == "sacralization":
            assert states["L5-S1"] in ("rudimentary", "fused")

        series = _series(folder)
        assert len(series) == 3
        study_uids = {ds.StudyInstanceUID for dss in series.values() for ds in dss}
        assert study_uids == {on_disk["study_instance_uid"]}
        sops = [ds.SOPInstanceUID for dss in series.values() for ds in dss]
        assert len(set(sops)) == len(sops)
        t2 = series[on_disk["t2_series_instance_uid"]]
        for dss in series.values():
            for ds in dss:
                assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
                assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == tp.MR_STORAGE
                assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
                assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
                assert ds.PhotometricInterpretation == "MONOCHROME2"
                assert ds.BodyPartExamined == "LSPINE" and ds.ScanningSequence == "SE"
                assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
                assert ds.pixel_array.max() <= (1 << ds.BitsStored) - 1
        # sagittal T2: orthonormal orientation, normal as in the truth, slices along the normal
        iop = np.array([float(v) for v in t2[0].ImageOrientationPatient])
        row, col = iop[:3], iop[3:]
        assert abs(row @ col) < 1e-5 and abs(np.linalg.norm(row) - 1) < 1e-5
        normal = np.cross(row, col)
        assert np.allclose(normal, on_disk["slice_normal"], atol=1e-5)
        assert abs(normal[0]) > 0.98  # sagittal
        t2.sort(key=lambda ds: int(ds.InstanceNumber))
        pos = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in t2]) @ normal
        steps = np.diff(pos)
        assert np.allclose(np.abs(steps), float(t2[0].SpacingBetweenSlices), atol=1e-3)
        assert np.all(steps > 0) or np.all(steps < 0)
        # every truth disc projects inside the T2 field and near the middle of the stack
        ps = float(t2[0].PixelSpacing[0])
        ipp0 = np.array([float(v) for v in t2[0].ImagePositionPatient])
        for d in on_disk["discs"]:
            rel = np.asarray(d["patient_xyz"]) - ipp0
            c, r = rel @ row / ps, rel @ col / ps
            assert 0 <= c < t2[0].Columns and 0 <= r < t2[0].Rows
            assert min(pos) - 8 <= float(np.asarray(d["patient_xyz"]) @ normal) <= max(pos) + 8
        # discs run caudally from L1-L2 (z decreases, LPS: +z is head)
        zs = [d["patient_xyz"][2] for d in on_disk["discs"]]
        assert all(a > b for a, b in zip(zs[:-1], zs[1:], strict=False))

    # deterministic from the seed
    again = tp.generate_study(tmp_path / "again", 0, seed=7, tiny=True)
    first = json.loads((tmp_path / "third-000" / "truth.json").read_text())
    assert again["t2_series_instance_uid"] == first["t2_series_instance_uid"]
    assert again["discs"] == first["discs"]


def test_midline_t2_truth_lands_on_the_discs() -> None:
    """The third generator's training adapter: the truth discs are on the picture it renders.
    On T2 a disc centre is brighter than the vertebral body centres beside it (nucleus T2 ~125 ms
    against marrow ~85 ms); judged by the median over the five levels, so one or two degenerate
    discs (dark) do not decide it. Lumbar truth discs are also mobile discs of the auxiliary map."""
    for seed in (11, 12, 13):
        ms = datasets.rigid_midline(seed, "normal", slices=3)
        plane = ms.planes[1]
        image = ms.images[1]
        assert image.shape == (plane.rows, plane.cols) and plane.spacing >= 1.8 - 1e-9

        def value(xyz: np.ndarray, plane: phantom3d.Plane = plane, image: np.ndarray = image):
            rel = xyz - plane.origin
            col = rel @ plane.row_dir / plane.spacing
            row = rel @ plane.col_dir / plane.spacing
            r, c = int(round(row)), int(round(col))
            return float(image[r - 1 : r + 2, c - 1 : c + 2].mean())

        discs = [np.asarray(d["patient_xyz"]) for d in ms.discs[:5]]
        assert [d["level"] for d in ms.discs] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
        gaps = np.linalg.norm(np.diff(discs, axis=0), axis=1)
        assert np.all((gaps > 20) & (gaps < 55)), gaps
        assert all(b[2] < a[2] for a, b in zip(discs, discs[1:], strict=False))  # feet down: -z
        contrast = [
            value(discs[k])
            - 0.5 * (value((discs[k] + discs[k - 1]) / 2) + value((discs[k] + discs[k + 1]) / 2))
            for k in range(1, 4)
        ]
        assert np.median(contrast) > 0, contrast
        mobile = np.asarray(ms.mobile_discs)
        for d in discs:
            assert np.min(np.linalg.norm(mobile - d, axis=1)) < 1.0


def test_rigid_training_arrays_do_not_depend_on_the_worker_count() -> None:
    grid = CanonicalGrid(size=64, spacing_mm=5.0)
    one = datasets.rigid_training_arrays(2, grid, context=3)
    two = datasets.rigid_training_arrays(2, grid, context=3, workers=2)
    assert one[0].shape == (6, 1, 64, 64) and one[0].any()
    for a, b in zip(one, two, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # every target lies inside the imaged field (validity mask)
    for k in range(6):
        for x, y in one[2][k]:
            assert one[1][k, 0, int(round(y)), int(round(x))] > 0.5


def test_uids_of_studies_whose_numbers_run_together_differ() -> None:
    """Seed 3, study 3, series 4, image 21 and seed 3, study 34, series 2, image 1 concatenate to
    the same digits; before the parts were joined with a separator the two images shared a SOP
    Instance UID, and a node rightly refused the second as a duplicate (0x0111)."""
    assert phantom_rigid.uid(3, 3, 4, 21) != phantom_rigid.uid(3, 34, 2, 1)
    assert phantom_rigid.uid(3, 3, 4, 21) == phantom_rigid.uid(3, 3, 4, 21)
