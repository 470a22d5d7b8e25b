"""bench/fourth_phantom.py writes valid, self-consistent and reproducible studies."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "fourth_phantom", ROOT / "bench" / "fourth_phantom.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fourth_phantom"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    gen = _load()
    first = tmp_path_factory.mktemp("fourth_a")
    second = tmp_path_factory.mktemp("fourth_b")
    assert gen.main([str(first), "--count", "2", "--seed", "11"]) == 0
    assert gen.main([str(second), "--count", "1", "--seed", "11"]) == 0
    return first, second


def _series(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        out.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return out


def test_studies_are_consistent(generated: tuple[Path, Path]) -> None:
    first, _ = generated
    studies = sorted(p for p in first.iterdir() if p.is_dir())
    assert [p.name for p in studies] == ["fourth-000", "fourth-001"]
    for study in studies:
        truth = json.loads((study / "truth.json").read_text())
        assert truth["set"] == truth["variation"] == "fourth"
        assert truth["variant"] in ("normal", "sacralization", "lumbarization")
        assert truth["lstv"] == (truth["variant"] != "normal")
        assert [d["level"] for d in truth["discs"]] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
        series = _series(study)
        assert len(series) == 3
        assert truth["t2_series_instance_uid"] in series
        for datasets in series.values():
            for ds in datasets:
                assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
                assert ds.StudyInstanceUID == truth["study_instance_uid"]
                assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
                assert int(ds.pixel_array.max()) <= 4095
        t2 = sorted(series[truth["t2_series_instance_uid"]], key=lambda d: int(d.InstanceNumber))
        assert 80.0 <= float(t2[0].EchoTime) <= 120.0
        assert "T2" in str(t2[0].SeriesDescription).upper()
        iop = np.array([float(v) for v in t2[0].ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        assert np.allclose(normal, truth["slice_normal"], atol=1e-4)
        assert abs(normal[0]) > 0.95  # sagittal
        others = [s for uid, s in series.items() if uid != truth["t2_series_instance_uid"]]
        tes = sorted(float(s[0].EchoTime) for s in others)
        assert tes[0] < 20.0  # the T1 decoy
        axial = [s for s in others if abs(_normal(s[0])[2]) > 0.8]
        assert len(axial) == 1
        # every disc lies inside the T2 field of view, near the slab of slices
        positions = [np.array([float(v) for v in d.ImagePositionPatient]) for d in t2]
        offsets = [float(p @ normal) for p in positions]
        ds = t2[0]
        ps = [float(v) for v in ds.PixelSpacing]
        for disc in truth["discs"]:
            p = np.array(disc["patient_xyz"])
            assert min(offsets) - 1 <= float(p @ normal) <= max(offsets) + 1
            q = p - positions[0]
            col = q @ iop[:3] / ps[1]
            row = q @ iop[3:] / ps[0]
            assert 0 <= col < ds.Columns and 0 <= row < ds.Rows


def _normal(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def test_same_seed_same_files(generated: tuple[Path, Path]) -> None:
    first, second = generated
    a, b = first / "fourth-000", second / "fourth-000"
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
