"""Series selection and loading: geometry, non-sagittal/non-image studies, corrupt slices,
multi-frame MR."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scp_node.config import SeriesRules
from scp_node.model.phantom import generate
from scp_node.phantom_dicom import write_phantom, write_phantom_multiframe, write_phantom_series
from scp_node.series import deviation_from_sagittal_deg, select_and_load, t2_score

RULES = SeriesRules()
LEGACY_CONVERTED_MR = "1.2.840.10008.5.1.4.1.1.4.4"


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
    assert "usable slices" in res.reason


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


# --- multi-frame MR (Enhanced / Legacy Converted Enhanced MR, PS3.3 C.7.6.16) -----------------


def _copy_series(folder: Path, out: Path, prefix: str, **changes: object) -> list[Path]:
    """Single-frame copies of the phantom slices as another series (new UIDs, ``changes``; a
    change to None deletes the attribute)."""
    series = generate_uid()
    written = []
    for p in _files(folder):
        ds = dcmread(p)
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for key, value in changes.items():
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)
        written.append(out / f"{prefix}_{p.name}")
        ds.save_as(written[-1])
    return written


@pytest.fixture(scope="module")
def multiframe(tmp_path_factory: pytest.TempPathFactory, phantom_dir) -> tuple[Path, Dataset]:
    """The phantom's slices as one Legacy Converted Enhanced MR Image (highdicom)."""
    _, ph = phantom_dir
    out = tmp_path_factory.mktemp("mf")
    [path] = write_phantom_multiframe(out, ph)
    return path, dcmread(path)


def _frame_positions(ds: Dataset) -> list[list[float]]:
    return [
        [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        for item in ds.PerFrameFunctionalGroupsSequence
    ]


def test_multiframe_series_is_selected_among_t1_and_axial_decoys(
    tmp_path: Path, phantom_dir, multiframe
) -> None:
    folder, ph = phantom_dir
    mf_path, mf = multiframe
    assert mf.SOPClassUID == LEGACY_CONVERTED_MR and int(mf.NumberOfFrames) == 6
    assert "ImageOrientationPatient" not in mf  # geometry only in the functional groups
    decoys = _copy_series(folder, tmp_path, "t1", SeriesDescription="T1 SAG", ProtocolName="T1")
    decoys += _copy_series(
        folder,
        tmp_path,
        "ax",
        SeriesDescription="T2 AX",
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
    )
    res = select_and_load([*decoys, mf_path], RULES)
    vol = res.volume
    assert vol is not None, res.reason
    assert vol.series_instance_uid == mf.SeriesInstanceUID
    assert vol.sop_instance_uids == [mf.SOPInstanceUID] * 6
    # frames sorted by geometry: slice k of the volume is the phantom's slice k
    assert np.array_equal(vol.volume, ph.volume.astype(np.float32))
    assert sorted(vol.frame_numbers) == [1, 2, 3, 4, 5, 6]
    assert vol.frame_numbers != [1, 2, 3, 4, 5, 6], "highdicom ordered the frames otherwise"
    positions = _frame_positions(mf)
    for k, frame in enumerate(vol.frame_numbers):
        assert positions[frame - 1] == pytest.approx(ph.positions[k], abs=1e-3)
    assert vol.warnings == []
    # the same geometry as the single-frame original
    single = select_and_load(_files(folder), RULES).volume
    assert single is not None and single.frame_numbers == [None] * 6
    assert np.allclose(vol.positions, single.positions)
    assert vol.pixel_spacing == pytest.approx(single.pixel_spacing)
    assert vol.slice_spacing == pytest.approx(single.slice_spacing)
    assert (vol.row_direction, vol.column_direction) == (
        single.row_direction,
        single.column_direction,
    )
    disc = ph.disc("L4-L5")
    xyz = vol.pixel_to_patient(disc.slice_index, disc.col, disc.row)
    assert xyz == pytest.approx(disc.patient_xyz, abs=1e-3)
    assert xyz == pytest.approx(single.pixel_to_patient(disc.slice_index, disc.col, disc.row))


def _subset(mf: Dataset, frames: list[int]) -> Dataset:
    """A multi-frame instance holding ``frames`` (1-based, in this order) of ``mf``."""
    part = copy.deepcopy(mf)
    pixels = mf.pixel_array
    part.PerFrameFunctionalGroupsSequence = [
        mf.PerFrameFunctionalGroupsSequence[f - 1] for f in frames
    ]
    part.NumberOfFrames = len(frames)
    part.PixelData = np.ascontiguousarray(pixels[[f - 1 for f in frames]]).tobytes()
    part.SOPInstanceUID = generate_uid()
    part.file_meta.MediaStorageSOPInstanceUID = part.SOPInstanceUID
    return part


def test_frames_of_several_instances_in_any_order_are_sorted_together(
    tmp_path: Path, phantom_dir, multiframe
) -> None:
    _, ph = phantom_dir
    _, mf = multiframe
    first, second = _subset(mf, [5, 1, 3]), _subset(mf, [6, 2, 4])
    first.save_as(tmp_path / "a.dcm")
    second.save_as(tmp_path / "b.dcm")
    res = select_and_load([tmp_path / "b.dcm", tmp_path / "a.dcm"], RULES)
    vol = res.volume
    assert vol is not None and vol.warnings == []
    assert np.array_equal(vol.volume, ph.volume.astype(np.float32))
    positions = {
        uid: _frame_positions(ds)
        for uid, ds in ((first.SOPInstanceUID, first), (second.SOPInstanceUID, second))
    }
    assert set(vol.sop_instance_uids) == set(positions)
    for k, (uid, frame) in enumerate(zip(vol.sop_instance_uids, vol.frame_numbers, strict=True)):
        assert frame is not None and 1 <= frame <= 3
        assert positions[uid][frame - 1] == pytest.approx(ph.positions[k], abs=1e-3)


def test_frames_with_other_geometry_are_dropped_with_warnings(
    tmp_path: Path, phantom_dir, multiframe
) -> None:
    _, ph = phantom_dir
    _, mf = multiframe
    ds = copy.deepcopy(mf)
    k_tilted, k_coarse = 2, 4  # phantom slices whose frames get another geometry
    positions = _frame_positions(ds)
    frame_of = {
        k: 1
        + min(range(6), key=lambda i: np.linalg.norm(np.subtract(positions[i], ph.positions[k])))
        for k in (k_tilted, k_coarse)
    }
    tilted = Dataset()
    tilted.ImageOrientationPatient = [0, 0.9848, 0.1736, 0, 0.1736, -0.9848]  # 10 deg about x
    ds.PerFrameFunctionalGroupsSequence[frame_of[k_tilted] - 1].PlaneOrientationSequence = [tilted]
    coarse = copy.deepcopy(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0])
    coarse.PixelSpacing = [2 * float(v) for v in coarse.PixelSpacing]
    ds.PerFrameFunctionalGroupsSequence[frame_of[k_coarse] - 1].PixelMeasuresSequence = [coarse]
    ds.save_as(tmp_path / "mf.dcm")
    res = select_and_load([tmp_path / "mf.dcm"], RULES)
    vol = res.volume
    assert vol is not None
    assert vol.volume.shape[0] == 4
    keep = [k for k in range(6) if k not in frame_of]
    assert np.array_equal(vol.volume, ph.volume[keep].astype(np.float32))
    assert any(
        w.startswith(f"frame {frame_of[k_tilted]} of mf.dcm dropped: orientation")
        for w in vol.warnings
    ), vol.warnings
    assert any(
        w.startswith(f"frame {frame_of[k_coarse]} of mf.dcm dropped: PixelSpacing")
        for w in vol.warnings
    ), vol.warnings
    assert "unevenly spaced slices" in vol.warnings


def test_t2_from_the_mr_echo_functional_group(tmp_path: Path, multiframe) -> None:
    """Neutral names: the Effective Echo Time (MR Echo macro, PS3.3 C.8.13.5.2) decides."""
    _, mf = multiframe
    paths = {}
    for name, echo in (("short", 12.0), ("long", 100.0)):
        ds = copy.deepcopy(mf)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription, ds.ProtocolName = "SAG TSE", "SPINE SAG"
        shared = ds.SharedFunctionalGroupsSequence[0]
        del shared.UnassignedSharedConvertedAttributesSequence[0].EchoTime
        mr_echo = Dataset()
        mr_echo.EffectiveEchoTime = echo
        shared.MREchoSequence = [mr_echo]
        paths[name] = tmp_path / f"{name}.dcm"
        ds.save_as(paths[name])
    headers = {name: dcmread(p, stop_before_pixels=True) for name, p in paths.items()}
    assert t2_score(headers["long"], RULES) == 1 and t2_score(headers["short"], RULES) == 0
    res = select_and_load([paths["short"], paths["long"]], RULES)
    assert res.volume is not None
    assert res.volume.series_instance_uid == headers["long"].SeriesInstanceUID


def test_phantom_multiframe_truth_names_the_frames(tmp_path: Path) -> None:
    [path] = write_phantom(tmp_path, "sacralization", seed=7, slices=5, size=64, multiframe=True)
    truth = json.loads((tmp_path / "truth.json").read_text())
    vol = select_and_load([path], RULES).volume
    assert vol is not None
    for disc in truth["discs"]:
        k = disc["slice_index"]
        assert disc["sop_instance_uid"] == vol.sop_instance_uids[k]
        assert disc["frame_number"] == vol.frame_numbers[k]


def test_dual_echo_multiframe_keeps_the_longest_echo(
    tmp_path: Path, phantom_dir, multiframe
) -> None:
    """PD and T2 frames at the same positions in one instance: the T2 (longest TE) frames."""
    _, ph = phantom_dir
    _, mf = multiframe
    ds = copy.deepcopy(mf)
    pixels = mf.pixel_array
    items, frames = [], []
    for f in range(1, 7):
        for echo in (20.0, 100.0):  # interleaved: PD then T2 at each position
            item = copy.deepcopy(mf.PerFrameFunctionalGroupsSequence[f - 1])
            mr_echo = Dataset()
            mr_echo.EffectiveEchoTime = echo
            item.MREchoSequence = [mr_echo]
            items.append(item)
            frames.append(pixels[f - 1] if echo == 100.0 else pixels[f - 1] // 3)
    ds.PerFrameFunctionalGroupsSequence = items
    ds.NumberOfFrames = 12
    ds.PixelData = np.stack(frames).astype(pixels.dtype).tobytes()
    ds.SeriesDescription, ds.ProtocolName = "SAG DUAL ECHO", "SPINE"
    del ds.SharedFunctionalGroupsSequence[0].UnassignedSharedConvertedAttributesSequence[0].EchoTime
    ds.save_as(tmp_path / "dual.dcm")
    header = dcmread(tmp_path / "dual.dcm", stop_before_pixels=True)
    assert t2_score(header, RULES) == 1  # the long echo of some frames counts
    vol = select_and_load([tmp_path / "dual.dcm"], RULES).volume
    assert vol is not None
    assert np.array_equal(vol.volume, ph.volume.astype(np.float32))
    assert all(f is not None and f % 2 == 0 for f in vol.frame_numbers), vol.frame_numbers
    assert vol.warnings == [
        "6 image(s) with shorter echo times (20 ms) left out; kept echo time 100 ms"
    ]


@pytest.mark.parametrize(
    ("plain", "suppressed", "options"),
    [
        ("t2_tse_sag_384", "t2_tse_sag_fs", ""),
        ("Sag T2 FRFSE", "Sag T2 FRFSE", "FS"),  # Scan Options FS (PS3.3 C.8.3.1.1.4)
        ("T2W_TSE SAG", "T2W_TSE_SPAIR sag", ""),
        ("t2_tse_sag", "t2_tse_dixon_sag_W", ""),
    ],
)
def test_plain_t2_is_chosen_over_a_fat_suppressed_one(
    tmp_path: Path, phantom_dir, plain: str, suppressed: str, options: str
) -> None:
    """Whichever comes first, the plain T2 wins; GE's "FRFSE" alone is not "FS"; a STIR-like
    Siemens TIRM is never a candidate."""
    folder, _ = phantom_dir
    extra = {"ScanOptions": options} if options else {}
    fat = _copy_series(folder, tmp_path, "fs", SeriesDescription=suppressed, **extra)
    tirm = _copy_series(folder, tmp_path, "ir", SeriesDescription="t2_tirm_sag")
    want = _copy_series(folder, tmp_path, "t2", SeriesDescription=plain)
    headers = {name: dcmread(files[0]) for name, files in (("fs", fat), ("t2", want))}
    assert t2_score(headers["t2"], RULES) > t2_score(headers["fs"], RULES) > 0
    for order in ([*fat, *tirm, *want], [*want, *tirm, *fat]):
        vol = select_and_load(order, RULES).volume
        assert vol is not None and vol.series_instance_uid == headers["t2"].SeriesInstanceUID
    only_fat = select_and_load([*tirm, *fat], RULES).volume  # no plain T2: the FS one
    assert only_fat is not None and only_fat.series_instance_uid == headers["fs"].SeriesInstanceUID


EXAM_PROTOCOL = "L-SPINE T1 T2 STIR"  # the exam's protocol, written into every series (GE does)


@pytest.mark.parametrize(
    ("t2_name", "t1_name", "stir_name"),
    [
        ("Sag T2 FRFSE", "Sag T1 FSE", "Sag STIR"),  # the descriptions say which is which
        ("SAG FSE", "SAG FSE", "SAG IR"),  # they do not: the echo time does
    ],
)
def test_an_exam_protocol_name_in_every_series_does_not_hide_the_t2(
    tmp_path: Path, phantom_dir, t2_name: str, t1_name: str, stir_name: str
) -> None:
    """Protocol Name holding the exam's protocol ("... T1 T2 STIR") in every series said "T1"
    and "STIR" of the T2 too, and excluded it: the study was "no sagittal T2 series"."""
    folder, _ = phantom_dir
    exam = {"ProtocolName": EXAM_PROTOCOL}
    t1 = _copy_series(folder, tmp_path, "t1", SeriesDescription=t1_name, EchoTime="12", **exam)
    stir = _copy_series(folder, tmp_path, "ir", SeriesDescription=stir_name, EchoTime="40", **exam)
    axial = _copy_series(
        folder, tmp_path, "ax", SeriesDescription="Ax T2 FRFSE",
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0], **exam,
    )  # fmt: skip
    t2 = _copy_series(folder, tmp_path, "t2", SeriesDescription=t2_name, EchoTime="102", **exam)
    wanted = dcmread(t2[0]).SeriesInstanceUID
    for order in ([*t1, *stir, *axial, *t2], [*t2, *axial, *stir, *t1]):
        res = select_and_load(order, RULES)
        assert res.volume is not None, res.reason
        assert res.volume.series_instance_uid == wanted
    assert t2_score(dcmread(t2[0]), RULES) > t2_score(dcmread(t1[0]), RULES)


@pytest.mark.parametrize(
    ("description", "protocol", "expected"),
    [
        ("t2_tse_sag", "t2_tse_sag", 3),  # Siemens: both names the series'
        ("t2_tirm_sag", "t2_tirm_sag", -1),  # a T2 inversion recovery is not the localizer's T2
        ("T1 SAG", "L-SPINE T1 T2", -1),  # the description decides
        ("", "t2_tse_sag", 3),  # no description: the protocol speaks
        ("", "L-SPINE T1 T2", 1),  # an exam's name says nothing; TE 100 ms does
        ("SAG T2", "T1", 3),  # a protocol name never overrules the description
    ],
)
def test_t2_score_reads_the_description_before_the_protocol(
    phantom_dir, description: str, protocol: str, expected: int
) -> None:
    folder, _ = phantom_dir
    ds = dcmread(_files(folder)[0])  # Echo Time 100 ms
    ds.SeriesDescription, ds.ProtocolName = description, protocol
    assert t2_score(ds, RULES) == expected


def _acquisition(folder: Path, out: Path, prefix: str, number: int) -> list[Path]:
    """The phantom's slices again in the *same* series as acquisition ``number`` (new SOP
    Instance UIDs, pixels shifted 7 rows as after the patient moved)."""
    written = []
    for p in _files(folder):
        ds = dcmread(p)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.AcquisitionNumber = number
        ds.PixelData = np.roll(ds.pixel_array, 7, axis=0).tobytes()
        written.append(out / f"{prefix}_{p.name}")
        ds.save_as(written[-1])
    return written


def test_a_rescan_kept_in_the_series_is_read_alone(tmp_path: Path, phantom_dir) -> None:
    """A second acquisition at the same positions (Acquisition Number 2) in the same series:
    the rescan is read, not both interleaved (which mixed two positions of the anatomy)."""
    folder, ph = phantom_dir
    rescan = _acquisition(folder, tmp_path, "rescan", 2)
    res = select_and_load([*_files(folder), *rescan], RULES)
    vol = res.volume
    assert vol is not None, res.reason
    wanted = {str(dcmread(p).SOPInstanceUID) for p in rescan}
    assert set(vol.sop_instance_uids) == wanted and len(vol.sop_instance_uids) == 6
    assert np.array_equal(vol.volume, np.roll(ph.volume, 7, axis=1).astype(np.float32))
    assert any("only acquisition 2 is read" in w for w in vol.warnings), vol.warnings
    assert not any("duplicate" in w for w in vol.warnings), vol.warnings


def test_a_partial_rescan_does_not_replace_the_complete_acquisition(
    tmp_path: Path, phantom_dir
) -> None:
    folder, _ = phantom_dir
    partial = _acquisition(folder, tmp_path, "rescan", 2)[2:5]
    vol = select_and_load([*_files(folder), *partial], RULES).volume
    assert vol is not None
    originals = [str(dcmread(p).SOPInstanceUID) for p in _files(folder)]
    assert sorted(vol.sop_instance_uids) == sorted(originals)
    assert any("only acquisition 1 is read" in w for w in vol.warnings), vol.warnings


def test_acquisitions_at_different_positions_are_one_stack(tmp_path: Path, phantom_dir) -> None:
    """Two packages of one stack (odd and even slices acquired apart, numbered 1 and 2) are
    not a rescan: every slice is read."""
    folder, ph = phantom_dir
    files = []
    for k, p in enumerate(_files(folder)):
        ds = dcmread(p)
        ds.AcquisitionNumber = 1 + k % 2
        files.append(tmp_path / p.name)
        ds.save_as(files[-1])
    vol = select_and_load(files, RULES).volume
    assert vol is not None and len(vol.sop_instance_uids) == 6
    assert np.array_equal(vol.volume, ph.volume.astype(np.float32))
    assert vol.warnings == []


def _station(folder: Path, out: Path, prefix: str, up_mm: float, **changes: object) -> list[Path]:
    """The phantom series as another station of a multi-station spine exam: ``up_mm`` higher
    (head-ward, patient +z) in the same frame of reference."""
    files = _copy_series(folder, out, prefix, **changes)
    for path in files:
        ds = dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + up_mm]
        ds.save_as(path)
    return files


def test_the_lumbar_station_of_a_whole_spine_exam_is_read(tmp_path: Path, phantom_dir) -> None:
    """Cervical, thoracic and lumbar sagittal T2 with the same names and slice counts: the
    lowest station is the lumbar one, whatever order the files come in."""
    folder, _ = phantom_dir
    cervical = _station(folder, tmp_path, "c", 620.0, SeriesDescription="SAG T2 TSE")
    thoracic = _station(folder, tmp_path, "t", 310.0, SeriesDescription="SAG T2 TSE")
    lumbar = _station(folder, tmp_path, "l", 0.0, SeriesDescription="SAG T2 TSE")
    wanted = dcmread(lumbar[0]).SeriesInstanceUID
    for order in ([*cervical, *thoracic, *lumbar], [*lumbar, *thoracic, *cervical]):
        vol = select_and_load(order, RULES).volume
        assert vol is not None and vol.series_instance_uid == wanted


@pytest.mark.parametrize(
    "upper",
    [
        {"SeriesDescription": "SAG T2 C-SPINE"},
        {"SeriesDescription": "t2_tse_sag_HWS"},
        {"SeriesDescription": "SAG T2 TSE", "BodyPartExamined": "TSPINE"},
    ],
)
def test_a_series_named_as_an_upper_station_is_not_read_as_the_lumbar_spine(
    tmp_path: Path, phantom_dir, upper: dict[str, str]
) -> None:
    """Named cervical or thoracic (description or Body Part Examined) and placed like the
    lumbar series (no geometric cue), even with a plainer T2 than the lumbar fat-saturated one."""
    folder, _ = phantom_dir
    other = _copy_series(folder, tmp_path, "up", FrameOfReferenceUID=generate_uid(), **upper)
    lumbar = _copy_series(folder, tmp_path, "l", SeriesDescription="SAG T2 FS L-SPINE")
    wanted = dcmread(lumbar[0]).SeriesInstanceUID
    assert t2_score(dcmread(other[0]), RULES) > t2_score(dcmread(lumbar[0]), RULES)
    for order in ([*other, *lumbar], [*lumbar, *other]):
        vol = select_and_load(order, RULES).volume
        assert vol is not None and vol.series_instance_uid == wanted
    alone = select_and_load(other, RULES).volume  # the only sagittal T2: still read
    assert alone is not None


def _dixon_set(folder: Path, out: Path, images: list[str], **changes: object) -> dict[str, str]:
    """The phantom as the images of a Siemens-style Dixon set ("t2_tse_dixon_sag_W", Image Type
    DERIVED\\PRIMARY\\DIXON\\WATER): Series Instance UID of each image, by its suffix."""
    image_type = {"W": "WATER", "F": "FAT", "in": "IN_PHASE", "opp": "OPP_PHASE"}
    uids = {}
    for suffix in images:
        files = _copy_series(
            folder,
            out,
            f"dixon_{suffix}",
            SeriesDescription=f"t2_tse_dixon_sag_{suffix}",
            ImageType=["DERIVED", "PRIMARY", "DIXON", image_type[suffix]],
            **changes,
        )
        uids[suffix] = str(dcmread(files[0]).SeriesInstanceUID)
    return uids


@pytest.mark.parametrize(
    ("images", "wanted"),
    [
        (["F", "opp", "W", "in"], "in"),  # the in-phase image is a plain T2
        (["F", "opp", "W"], "W"),  # then the water image (fat-suppressed T2)
        (["F", "opp"], "opp"),
    ],
)
def test_the_dixon_image_read_is_never_the_fat_image(
    tmp_path: Path, phantom_dir, images: list[str], wanted: str
) -> None:
    """A Dixon set as the only sagittal T2: every image got the same Dixon penalty, so the
    first in file order was read, the fat-only image as often as any."""
    folder, _ = phantom_dir
    uids = _dixon_set(folder, tmp_path, images)
    files = sorted(tmp_path.glob("*.dcm"))
    for order in (files, files[::-1]):
        res = select_and_load(order, RULES)
        assert res.volume is not None and res.volume.series_instance_uid == uids[wanted]


def test_a_fat_only_dixon_image_is_not_read(tmp_path: Path, phantom_dir) -> None:
    """Said by the name alone (GE FLEX "FAT: ..."), or by Image Type alone (Philips mDIXON F; the
    derived pixel contrast FAT, value 4, of an Enhanced MR image, PS3.3 C.8.16.1)."""
    folder, _ = phantom_dir
    by_name = _copy_series(folder, tmp_path, "ge", SeriesDescription="FAT: Sag T2 FLEX")
    by_type = _copy_series(
        folder,
        tmp_path,
        "ph",
        SeriesDescription="sT2W mDIXON",
        ImageType=["ORIGINAL", "PRIMARY", "F", "F"],
    )
    enhanced = _copy_series(
        folder,
        tmp_path,
        "en",
        SeriesDescription="SAG T2",
        ImageType=["DERIVED", "PRIMARY", "SPINE", "FAT"],
    )
    for files in (by_name, by_type, enhanced):
        res = select_and_load(files, RULES)
        assert res.volume is None and "the fat image of a Dixon set" in res.reason


def test_the_acquired_series_is_read_before_a_reformat_of_it(tmp_path: Path, phantom_dir) -> None:
    """A sagittal MPR (Image Type DERIVED) with more, thinner slices came first on slice count."""
    folder, _ = phantom_dir
    original = _copy_series(folder, tmp_path, "orig", SeriesDescription="SAG T2 TSE")
    mpr = _copy_series(
        folder,
        tmp_path,
        "mpr",
        SeriesDescription="SAG T2 TSE MPR",
        ImageType=["DERIVED", "SECONDARY", "MPR"],
    )
    for k, path in enumerate(list(mpr)):  # twice the slices: each copied half-way to the next
        ds = dcmread(path)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient[0] = float(ds.ImagePositionPatient[0]) + 0.5 * float(
            ds.SpacingBetweenSlices or ds.SliceThickness
        )
        mpr.append(tmp_path / f"mpr_half_{k}.dcm")
        ds.save_as(mpr[-1])
    wanted = dcmread(original[0]).SeriesInstanceUID
    for order in ([*mpr, *original], [*original, *mpr]):
        vol = select_and_load(order, RULES).volume
        assert vol is not None and vol.series_instance_uid == wanted
    alone = select_and_load(mpr, RULES).volume  # the only sagittal T2: still read
    assert alone is not None and len(alone.sop_instance_uids) == 12


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        (
            {"SeriesDescription": "3-plane loc", "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"]},
            "a localizer",
        ),
        (
            {"SeriesDescription": "SAG", "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
            "a localizer",
        ),
        ({"SeriesDescription": "SmartSurvey", "ProtocolName": ""}, "a localizer"),
        ({"SeriesDescription": "SAG FSE", "ProtocolName": "", "EchoTime": "12"}, "echo time 12 ms"),
    ],
)
def test_a_localizer_or_a_short_echo_series_is_not_read_as_the_t2(
    tmp_path: Path, phantom_dir, changes: dict[str, object], why: str
) -> None:
    """A study whose only sagittal images are a scout, or a series with a short echo and names
    that say nothing of its weighting, beside an axial T2: these were screened as the T2."""
    folder, _ = phantom_dir
    sagittal = _copy_series(folder, tmp_path, "sag", **changes)
    axial = _copy_series(
        folder,
        tmp_path,
        "ax",
        SeriesDescription="T2 AX",
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
    )
    res = select_and_load([*sagittal, *axial], RULES)
    assert res.volume is None and "no sagittal T2 series" in res.reason and why in res.reason
    named = _copy_series(folder, tmp_path, "t2", SeriesDescription="SAG T2 TSE", EchoTime="12")
    res = select_and_load([*sagittal, *axial, *named], RULES)  # a name saying T2 still decides
    assert res.volume is not None
    assert res.volume.series_instance_uid == dcmread(named[0]).SeriesInstanceUID


def test_the_stack_grid_is_the_one_most_slices_share(tmp_path: Path, phantom_dir) -> None:
    """Two slices at half the matrix (twice the pixel spacing) that come first: the other four
    were dropped as misfits and the two read as the series."""
    folder, ph = phantom_dir
    files = []
    for k, path in enumerate(_files(folder)):
        ds = dcmread(path)
        if k in (1, 4):
            small = ds.pixel_array[::2, ::2]
            ds.Rows, ds.Columns = small.shape
            ds.PixelSpacing = [2 * float(v) for v in ds.PixelSpacing]
            ds.PixelData = np.ascontiguousarray(small).tobytes()
        files.append(tmp_path / (f"a_{k}.dcm" if k in (1, 4) else f"b_{k}.dcm"))
        ds.save_as(files[-1])
    vol = select_and_load(sorted(files), RULES).volume
    assert vol is not None
    assert np.array_equal(vol.volume, ph.volume[[0, 2, 3, 5]].astype(np.float32))
    assert sum("dropped" in w for w in vol.warnings) == 2, vol.warnings


def test_slices_that_all_share_one_position_are_not_a_stack(tmp_path: Path, phantom_dir) -> None:
    """Image Position (Patient) copied into every slice (a broken converter): the series was read
    with a "duplicate slice positions" warning and screened."""
    folder, _ = phantom_dir
    first = dcmread(_files(folder)[0]).ImagePositionPatient
    files = _copy_series(folder, tmp_path, "same", ImagePositionPatient=first)
    res = select_and_load(files, RULES)
    assert res.volume is None and "lie at 1 position(s)" in res.reason


def test_an_instance_received_twice_is_read_once(tmp_path: Path, phantom_dir) -> None:
    folder, ph = phantom_dir
    files = _files(folder)
    again = tmp_path / "again.dcm"
    again.write_bytes(files[2].read_bytes())
    vol = select_and_load([*files, again], RULES).volume
    assert vol is not None and np.array_equal(vol.volume, ph.volume.astype(np.float32))
    assert "duplicate slice positions" not in vol.warnings
    assert "1 repeated instance(s) read once" in vol.warnings


def test_two_stacks_in_one_multiframe_instance_are_two_candidates(
    tmp_path: Path, phantom_dir, multiframe
) -> None:
    """Stack ID 1 the lumbar stack, Stack ID 2 the same frames 300 mm higher: the two were merged
    into one 12-slice "stack" with duplicate positions."""
    _, ph = phantom_dir
    _, mf = multiframe
    ds = _subset(mf, [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6])
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        item = copy.deepcopy(item)
        content = item.FrameContentSequence[0] if "FrameContentSequence" in item else Dataset()
        content.StackID = "1" if i < 6 else "2"
        item.FrameContentSequence = [content]
        if i >= 6:
            position = item.PlanePositionSequence[0]
            x, y, z = (float(v) for v in position.ImagePositionPatient)
            position.ImagePositionPatient = [x, y, z + 300.0]
        ds.PerFrameFunctionalGroupsSequence[i] = item
    ds.save_as(tmp_path / "stacks.dcm")
    vol = select_and_load([tmp_path / "stacks.dcm"], RULES).volume
    assert vol is not None and len(vol.frame_numbers) == 6
    assert sorted(vol.frame_numbers) == [1, 2, 3, 4, 5, 6]  # stack 1's frames
    assert np.array_equal(vol.volume, ph.volume.astype(np.float32))
    assert "duplicate slice positions" not in vol.warnings
    assert any("stack 1 of 2" in w for w in vol.warnings), vol.warnings


def test_images_without_orientation_are_named_in_the_reason(tmp_path: Path, phantom_dir) -> None:
    """Image Orientation (Patient) missing from every slice: the reason said "no image series"."""
    folder, _ = phantom_dir
    files = _copy_series(folder, tmp_path, "noiop", ImageOrientationPatient=None)
    res = select_and_load(files, RULES)
    uid = dcmread(files[0]).SeriesInstanceUID
    assert res.volume is None
    assert res.reason == f"no sagittal T2 series (series {uid}: no ImageOrientationPatient)"


def test_slices_without_pixel_spacing_are_not_read(tmp_path: Path, phantom_dir) -> None:
    """Pixel Spacing is Type 1 in MR (PS3.3 C.7.6.2): without it there is no physical size, and
    the screen (gaps in mm, a canonical grid in mm) was run on an assumed 1 mm."""
    folder, _ = phantom_dir
    files = _copy_series(folder, tmp_path, "nops", PixelSpacing=None)
    res = select_and_load(files, RULES)
    assert res.volume is None and "only 0 usable slices" in res.reason
    assert any("no PixelSpacing" in w for w in res.warnings), res.warnings


def test_lossy_compressed_series_is_read_with_a_warning(tmp_path: Path, phantom_dir) -> None:
    """Lossy Image Compression "01" (PS3.3 C.7.6.1.1.5) on the T2's images: the series is
    still read, and the result says the screen was measured on losslessly stored images."""
    folder, _ = phantom_dir
    files = []
    for path in _files(folder):
        ds = dcmread(path)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = [10.03]
        ds.LossyImageCompressionMethod = "ISO_15444_1"
        files.append(tmp_path / path.name)
        ds.save_as(files[-1], enforce_file_format=True)
    res = select_and_load(files, RULES)
    assert res.volume is not None
    assert [w for w in res.warnings if "lossy" in w] == [
        "images lossy compressed (10:1, ISO_15444_1): the screen was made and measured on "
        "losslessly stored images (docs/ingest.md)"
    ]
    plain = select_and_load(_files(folder), RULES)
    assert not any("lossy" in w for w in plain.warnings)


def test_colour_series_is_not_read_and_the_reason_says_why(tmp_path: Path, phantom_dir) -> None:
    """Samples per Pixel 3 (an RGB picture, PS3.3 C.7.6.3.1.1) is not a grayscale MR series:
    it is left out with a note, not decoded slice by slice."""
    folder, _ = phantom_dir
    files = []
    for path in _files(folder):
        ds = dcmread(path)
        gray = ds.pixel_array.astype(np.float32) / max(1, int(ds.pixel_array.max())) * 255
        ds.PixelData = np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2).tobytes()
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        files.append(tmp_path / path.name)
        ds.save_as(files[-1], enforce_file_format=True)
    res = select_and_load(files, RULES)
    assert res.volume is None
    assert "3 samples per pixel" in res.reason and "no sagittal T2 series" in res.reason


def test_lossy_note_bounds_and_cleans_what_the_header_says() -> None:
    """Ratio and method come from the sender: at most three of each, an absurd ratio left out,
    a method kept to CS characters and 16 of them."""
    from scp_node.series import lossy_note

    ds = Dataset()
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [1e300, 10, 20, 30, 40]
    ds.add_new("LossyImageCompressionMethod", "CS", ["ISO_15444_1<b>x", "A" * 40, "B", "C"])
    note = lossy_note([ds])
    assert note.startswith(
        "images lossy compressed (10:1, 20:1, ISO_15444_1?B?X, " + "A" * 16 + ", B)"
    )
    assert "<" not in note and "30:1" not in note and "C)" not in note
