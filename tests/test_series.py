"""Series selection and loading: geometry, non-sagittal/non-image studies, corrupt slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scp_node.config import SeriesRules
from scp_node.model.phantom import generate
from scp_node.phantom_dicom import write_phantom_series
from scp_node.series import deviation_from_sagittal_deg, select_and_load

RULES = SeriesRules()


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    ph = generate("normal", seed=4, slices=6, size=96)
    out = tmp_path_factory.mktemp("ph")
    write_phantom_series(out, ph)
    return out, ph


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def test_loads_sorted_volume_and_maps_pixels_to_patient(phantom_dir) -> None:
    folder, ph = phantom_dir
    files = _files(folder)
    res = select_and_load(list(reversed(files)), RULES)  # order of files must not matter
    vol = res.volume
    assert vol is not None and res.reason == ""
    assert np.array_equal(vol.volume, ph.volume.astype(np.float32))
    assert vol.slice_spacing == pytest.approx(ph.slice_spacing)
    assert vol.warnings == []
    disc = ph.disc("L3-L4")
    xyz = vol.pixel_to_patient(disc.slice_index, disc.col, disc.row)
    assert xyz == pytest.approx(disc.patient_xyz, abs=1e-3)


def test_axial_series_is_not_applicable(tmp_path: Path, phantom_dir) -> None:
    folder, _ = phantom_dir
    for p in _files(folder):
        ds = dcmread(p)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]  # axial
        ds.save_as(tmp_path / p.name)
    res = select_and_load(_files(tmp_path), RULES)
    assert res.volume is None
    assert "no sagittal T2 series" in res.reason and "not sagittal" in res.reason
    assert deviation_from_sagittal_deg([1, 0, 0, 0, 1, 0]) == pytest.approx(90.0)


def test_sr_only_study_is_not_applicable(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    res = select_and_load(_files(tmp_path), RULES)
    assert res.volume is None
    assert res.study_instance_uid == "1.2.3.4"
    assert "no sagittal T2 series" in res.reason


def test_corrupt_slice_is_dropped_with_warning(tmp_path: Path, phantom_dir) -> None:
    folder, ph = phantom_dir
    files = []
    for p in _files(folder):
        target = tmp_path / p.name
        target.write_bytes(p.read_bytes())
        files.append(target)
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 5000])  # truncated pixel data
    res = select_and_load(files, RULES)
    assert res.volume is not None
    assert res.volume.volume.shape[0] == ph.volume.shape[0] - 1
    assert any("dropped" in w for w in res.volume.warnings)
    assert any("missing slices" in w for w in res.volume.warnings)


def test_too_few_decodable_slices_is_not_applicable(tmp_path: Path, phantom_dir) -> None:
    folder, _ = phantom_dir
    files = []
    for i, p in enumerate(_files(folder)):
        target = tmp_path / p.name
        data = p.read_bytes()
        target.write_bytes(data if i < 2 else data[:-4000])
        files.append(target)
    res = select_and_load(files, RULES)
    assert res.volume is None
    assert "decodable slices" in res.reason


def test_t1_excluded_monochrome1_inverted_and_rescaled(tmp_path: Path, phantom_dir) -> None:
    folder, ph = phantom_dir
    t1_series, t2_series = generate_uid(), generate_uid()
    for p in _files(folder):
        ds = dcmread(p)
        ds.SeriesInstanceUID = t1_series
        ds.SeriesDescription = "T1 SAG"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(tmp_path / ("t1_" + p.name))
        ds = dcmread(p)
        ds.SeriesInstanceUID = t2_series
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.RescaleSlope = 2
        ds.RescaleIntercept = -10
        ds.save_as(tmp_path / ("t2_" + p.name))
    res = select_and_load(sorted(tmp_path.glob("*.dcm")), RULES)
    assert res.volume is not None
    assert res.volume.series_instance_uid == t2_series
    k = 3
    raw = ph.volume[k].astype(np.float32) * 2 - 10
    expected = raw.max() + raw.min() - raw
    assert np.allclose(res.volume.volume[k], expected)
