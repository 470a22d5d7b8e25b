"""The TID 1500 SR and the overlay SC: content, units, references, UIDs, and real validators."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from scp_node.config import ReportSettings
from scp_node.model.uncertainty import finding_evidence
from scp_node.phantom_dicom import write_phantom
from scp_node.report import build_reports, build_sr, uids, write_sr_for_result
from scp_node.report.sr import SCOORD_OFFSET
from scp_node.result import LevelFinding, ModelIdentity, StudyResult

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
MODEL = ModelIdentity(name="lstv-unet", version="1.2.0", weights_sha256="ab" * 32)


def phantom_study(out: Path, transfer_syntax: str = ExplicitVRLittleEndian, seed: int = 0):
    """(paths, truth) of a small phantom MR series written as real DICOM files."""
    paths = write_phantom(out, seed=seed, slices=5, size=128, transfer_syntax=transfer_syntax)
    return paths, json.loads((out / "truth.json").read_text())


def result_for(truth: dict, model: ModelIdentity = MODEL, **changes: object) -> StudyResult:
    """A hand-built StudyResult placing each level at its true disc centre."""
    levels = tuple(
        LevelFinding(
            level=d["level"],
            sop_instance_uid=d["sop_instance_uid"],
            slice_index=d["slice_index"],
            pixel_xy=(d["pixel_col_row"][0], d["pixel_col_row"][1]),
            patient_xyz=tuple(d["patient_mm"]),
            peak_confidence=0.95 - 0.1 * i,
            entropy=1.5 + 0.25 * i,
            spatial_entropy=0.5 + 0.1 * i,
            predictive_entropy=2.0 + 0.1 * i if i % 2 == 0 else None,
            mutual_information=0.02 * (i + 1) if i % 2 == 0 else None,
            frame_number=d.get("frame_number"),
        )
        for i, d in enumerate(truth["discs"])
    )
    base = StudyResult(
        study_instance_uid=truth["study_instance_uid"],
        applicable=True,
        series_instance_uid=truth["series_instance_uid"],
        levels=levels,
        lstv_score=0.72,
        lstv_threshold=0.5,
        lstv_suspected=True,
        needs_review=True,
        junction_gap_ratio=0.87,
        model=model,
        warnings=("slice gap of 1 slice",),
        evidence=finding_evidence(None, 0.87),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def read_all(paths: list[Path]) -> list[Dataset]:
    return [pydicom.dcmread(p) for p in paths]


def walk(items: object) -> Iterator[Dataset]:
    """Every content item below ``items`` (depth first)."""
    for item in items or []:  # type: ignore[attr-defined]
        yield item
        yield from walk(item.get("ContentSequence"))


def groups(sr: Dataset) -> dict[str, Dataset]:
    """Measurement group containers by their Tracking Identifier text."""
    found = {}
    for item in walk(sr.ContentSequence):
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "125007":
            for child in item.ContentSequence:
                if child.ConceptNameCodeSequence[0].CodeValue == "112039":
                    found[child.TextValue] = item
    return found


def nums(group: Dataset) -> dict[str, tuple[float, str]]:
    """Concept meaning → (value, UCUM unit) of a group's direct NUM children."""
    out = {}
    for child in group.ContentSequence:
        if child.ValueType == "NUM":
            mv = child.MeasuredValueSequence[0]
            unit = mv.MeasurementUnitsCodeSequence[0]
            assert unit.CodingSchemeDesignator == "UCUM"
            out[child.ConceptNameCodeSequence[0].CodeMeaning] = (
                float(mv.NumericValue),
                unit.CodeValue,
            )
    return out


def codes_of(group: Dataset) -> dict[str, str]:
    return {
        c.ConceptNameCodeSequence[0].CodeMeaning: c.ConceptCodeSequence[0].CodeMeaning
        for c in group.ContentSequence
        if c.ValueType == "CODE"
    }


def texts_of(group: Dataset) -> list[str]:
    return [c.TextValue for c in group.ContentSequence if c.ValueType == "TEXT"]


def dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture
def study(tmp_path: Path):
    paths, truth = phantom_study(tmp_path / "src")
    return paths, truth, read_all(paths)


def test_sr_content_levels_values_units_and_references(study) -> None:
    paths, truth, sources = study
    result = result_for(truth)
    sr = build_sr(result, sources, ReportSettings())
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR
    assert sr.StudyInstanceUID == truth["study_instance_uid"]
    assert sr.SeriesInstanceUID != truth["series_instance_uid"]
    assert sr.SeriesNumber == 9901 and "research" in sr.SeriesDescription.lower()
    assert sr.ContentQualification == "RESEARCH"
    assert sr.PatientID == sources[0].PatientID and sr.PatientName == sources[0].PatientName
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    schemes = {item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence}
    assert "99SCPNODE" in schemes

    found = groups(sr)
    assert set(found) == {d["level"] for d in truth["discs"]} | {"LSTV screen"}
    for i, disc in enumerate(truth["discs"]):
        group = found[disc["level"]]
        values = nums(group)
        level = result.levels[i]
        assert values["Peak confidence"] == (pytest.approx(100 * level.peak_confidence), "%")
        # the level's name is the group's first Comment: the first line OHIF draws
        assert texts_of(group)[0] == disc["level"]
        assert values["Entropy"] == (pytest.approx(level.entropy), "bit")
        assert values["Spatial entropy"] == (pytest.approx(level.spatial_entropy), "bit")
        if level.mutual_information is None:
            assert "Mutual information" not in values and "Predictive entropy" not in values
        else:
            assert values["Mutual information"] == (pytest.approx(level.mutual_information), "bit")
            assert values["Predictive entropy"][1] == "bit"
        # every NUM is INFERRED FROM the disc's POINT on the slice the model chose
        points = [
            c
            for num in group.ContentSequence
            if num.ValueType == "NUM"
            for c in num.ContentSequence
            if c.ValueType == "SCOORD"
        ]
        assert len(points) == len(values)
        col, row = disc["pixel_col_row"]
        for scoord in points:
            assert scoord.RelationshipType == "INFERRED FROM"
            assert scoord.GraphicType == "POINT"
            assert list(scoord.GraphicData) == pytest.approx(
                [col + SCOORD_OFFSET, row + SCOORD_OFFSET], abs=1e-3
            )
            ref = scoord.ContentSequence[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID == disc["sop_instance_uid"]
            assert ref.ReferencedSOPClassUID == sources[0].SOPClassUID
        uids = [c.UID for c in group.ContentSequence if c.ValueType == "UIDREF"]
        assert len(uids) == 1  # Tracking Unique Identifier
        # Algorithm identification on every measurement (TID 4019)
        for child in group.ContentSequence:
            if child.ValueType == "NUM":
                algo = {
                    c.ConceptNameCodeSequence[0].CodeMeaning: c.TextValue
                    for c in child.ContentSequence
                    if c.ValueType == "TEXT"
                }
                assert algo["Algorithm Name"] == "lstv-unet"
                assert algo["Algorithm Version"] == "1.2.0"
                assert MODEL.weights_sha256 in algo["Algorithm Parameters"]

    screen = found["LSTV screen"]
    assert nums(screen)["LSTV score"] == (pytest.approx(0.72), "1")
    assert nums(screen)["L4-L5 to L5-S1 distance ratio"] == (pytest.approx(0.87), "1")
    assert codes_of(screen)["LSTV suspected"] == "Yes"
    assert codes_of(screen)["Needs review"] == "Yes"
    assert codes_of(screen)["Screen applicable"] == "Yes"
    assert any("slice gap" in t for t in texts_of(screen))
    observer = {
        i.ConceptNameCodeSequence[0].CodeMeaning: getattr(i, "TextValue", None)
        for i in sr.ContentSequence
    }
    assert observer["Device Observer Name"] == "scp-node"
    assert observer["Device Observer Manufacturer"] == "scp-node project"


def test_uids_are_deterministic(study) -> None:
    _, truth, sources = study
    result = result_for(truth)
    first = build_sr(result, sources, ReportSettings())
    again = build_sr(result, list(reversed(sources)), ReportSettings())
    assert (first.SeriesInstanceUID, first.SOPInstanceUID) == (
        again.SeriesInstanceUID,
        again.SOPInstanceUID,
    )
    assert (
        groups(first)["L4-L5"].ContentSequence[1].UID
        == groups(again)["L4-L5"].ContentSequence[1].UID
    )
    other_weights = build_sr(
        result_for(truth, model=replace(MODEL, weights_sha256="cd" * 32)), sources, ReportSettings()
    )
    assert other_weights.SOPInstanceUID != first.SOPInstanceUID
    fewer_sources = build_sr(result, sources[1:4], ReportSettings())
    assert fewer_sources.SOPInstanceUID != first.SOPInstanceUID


def test_uids_of_different_sources_differ_where_their_texts_run_together() -> None:
    """pydicom hashes the concatenation of its entropy sources: two source sets whose UIDs
    concatenate to the same text must still give two SR instances (a re-sent study with other
    instances is another report, never an overwrite of the first)."""
    study_uid = "1.2.3.4"
    first = uids.instance_uid("sr", study_uid, ["1.2.31", "2.4"], MODEL)
    second = uids.instance_uid("sr", study_uid, ["1.2.3", "12.4"], MODEL)
    assert first != second
    assert uids.instance_uid("sr", study_uid, ["2.4", "1.2.31"], MODEL) == first  # order-free
    assert uids.tracking_uid("1.2.3", "4L4-L5") != uids.tracking_uid("1.2.34", "L4-L5")


def _write_and_validate(
    reports: list[Dataset], tmp_path: Path
) -> tuple[list[Path], subprocess.CompletedProcess[str]]:
    """Write SR and SC as files; both pass dciodvfy with 0 errors and dsrdump reads the SR."""
    written = []
    for i, ds in enumerate(reports):
        written.append(tmp_path / f"out{i}.dcm")
        ds.save_as(written[-1], enforce_file_format=True)
    assert dciodvfy_errors(written[0]) == []
    assert dciodvfy_errors(written[1]) == []
    dsrdump = subprocess.run(["/usr/bin/dsrdump", str(written[0])], capture_output=True, text=True)
    assert dsrdump.returncode == 0, dsrdump.stderr
    return written, dsrdump


@pytest.mark.parametrize(
    "syntax",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless],
    ids=["explicit", "implicit", "rle", "jpegls", "j2k"],
)
def test_validators_accept_sr_and_sc(tmp_path: Path, syntax: str) -> None:
    paths, truth = phantom_study(tmp_path / "src", syntax)
    sources = read_all(paths)
    assert str(sources[0].file_meta.TransferSyntaxUID) == syntax
    reports = build_reports(result_for(truth), sources, ReportSettings())
    assert [r.Modality for r in reports] == ["SR", "OT"]
    written, dsrdump = _write_and_validate(reports, tmp_path)
    assert "Peak confidence" in dsrdump.stdout and "L5-S1" in dsrdump.stdout
    entities = subprocess.run(
        ["dcentvfy", *map(str, written), *map(str, paths)], capture_output=True, text=True
    )
    assert entities.returncode == 0, entities.stderr
    assert "Error" not in entities.stdout + entities.stderr


def test_not_applicable_result_gives_a_valid_sr_with_the_reason(study, tmp_path: Path) -> None:
    _, truth, sources = study
    result = StudyResult(
        study_instance_uid=truth["study_instance_uid"],
        applicable=False,
        reason="no sagittal T2 series",
        needs_review=True,
        model=MODEL,
    )
    reports = build_reports(result, sources, ReportSettings())
    assert len(reports) == 1  # no overlay without levels
    sr = reports[0]
    found = groups(sr)
    assert set(found) == {"LSTV screen"}
    assert codes_of(found["LSTV screen"])["Screen applicable"] == "No"
    assert "LSTV suspected" not in codes_of(found["LSTV screen"])
    assert any("no sagittal T2 series" in t for t in texts_of(found["LSTV screen"]))
    path = tmp_path / "na.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    assert subprocess.run(["/usr/bin/dsrdump", str(path)], capture_output=True).returncode == 0


def test_secondary_capture_draws_markers_and_is_deterministic(study) -> None:
    _, truth, sources = study
    result = result_for(truth)
    sc = build_reports(result, sources, ReportSettings())[1]
    again = build_reports(result, sources, ReportSettings())[1]
    assert sc.SOPInstanceUID == again.SOPInstanceUID
    assert sc.StudyInstanceUID == truth["study_instance_uid"]
    assert sc.SeriesNumber == 9902 and sc.BurnedInAnnotation == "YES"
    rgb = sc.pixel_array
    assert rgb.ndim == 3 and rgb.shape[2] == 3
    coloured = np.count_nonzero((rgb[..., 0] != rgb[..., 1]) | (rgb[..., 1] != rgb[..., 2]))
    assert coloured > 500  # markers and labels drawn on a grey slice
    no_sc = build_reports(result, sources, ReportSettings(secondary_capture=False))
    assert len(no_sc) == 1


def test_write_sr_for_result_reads_headers_and_writes_a_file(study, tmp_path: Path) -> None:
    paths, truth, _ = study
    out = write_sr_for_result(
        result_for(truth), paths, tmp_path / "sr" / "out.dcm", ReportSettings()
    )
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR
    assert str(ds.file_meta.TransferSyntaxUID) == ExplicitVRLittleEndian
    assert ds.SOPClassUID != ComprehensiveSRStorage


def test_level_on_a_missing_source_is_refused(study) -> None:
    _, truth, sources = study
    with pytest.raises(ValueError, match="not among the source datasets"):
        build_sr(
            result_for(truth),
            sources[:1] if truth["discs"][0]["slice_index"] else sources[1:],
            ReportSettings(),
        )


def test_sources_from_another_study_are_refused(study) -> None:
    _, truth, sources = study
    other = sources[0].copy()
    other.StudyInstanceUID = "1.2.3.4"
    with pytest.raises(ValueError, match="not in study"):
        build_sr(result_for(truth), [*sources, other], ReportSettings())


# --- multi-frame sources (Legacy Converted Enhanced MR, PS3.3 A.36.4) ---------------------------


def scoord_references(sr: Dataset) -> list[Dataset]:
    """The IMAGE reference (ReferencedSOPSequence item) of every SCOORD in the SR."""
    return [
        item.ContentSequence[0].ReferencedSOPSequence[0]
        for item in walk(sr.ContentSequence)
        if item.ValueType == "SCOORD"
    ]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless], ids=["le", "j2k"])
def test_multiframe_source_sr_references_frames_and_validates(tmp_path: Path, syntax: str) -> None:
    paths = write_phantom(
        tmp_path / "mf", seed=3, slices=5, size=128, transfer_syntax=syntax, multiframe=True
    )
    truth = json.loads((tmp_path / "mf" / "truth.json").read_text())
    [source] = read_all(paths)
    assert str(source.file_meta.TransferSyntaxUID) == syntax and int(source.NumberOfFrames) == 5
    frame = truth["discs"][0]["frame_number"]
    assert {d["frame_number"] for d in truth["discs"]} == {frame}
    reports = build_reports(result_for(truth), [source], ReportSettings())
    sr, sc = reports
    refs = scoord_references(sr)
    assert len(refs) > 5  # every NUM of every level, plus the study-level anchor
    for ref in refs:
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ref.ReferencedSOPClassUID == source.SOPClassUID
        assert [int(ref.ReferencedFrameNumber)] == [frame]
    evidence = [
        ref
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    ]
    assert [e.ReferencedSOPInstanceUID for e in evidence] == [source.SOPInstanceUID]
    written, dsrdump = _write_and_validate(reports, tmp_path)
    assert f",{frame})>" in dsrdump.stdout  # IMAGE reference with its frame number
    entities = subprocess.run(
        ["dcentvfy", *map(str, written), *map(str, paths)], capture_output=True, text=True
    )
    assert entities.returncode == 0, entities.stderr


def test_multiframe_sc_draws_on_the_frame_and_names_it(tmp_path: Path) -> None:
    """The overlay of frame N of the multi-frame image is the overlay of the same slice written
    as single-frame images, and the SC says which frame it shows."""
    single_paths = write_phantom(tmp_path / "single", seed=5, slices=6, size=128)
    single_truth = json.loads((tmp_path / "single" / "truth.json").read_text())
    mf_paths = write_phantom(tmp_path / "mf", seed=5, slices=6, size=128, multiframe=True)
    mf_truth = json.loads((tmp_path / "mf" / "truth.json").read_text())
    [mf] = read_all(mf_paths)
    frame = mf_truth["discs"][0]["frame_number"]
    sc_mf = build_reports(result_for(mf_truth), [mf], ReportSettings())[1]
    sc_single = build_reports(result_for(single_truth), read_all(single_paths), ReportSettings())[1]
    assert np.array_equal(sc_mf.pixel_array, sc_single.pixel_array)
    assert frame != mf_truth["discs"][0]["slice_index"] + 1  # not the same frame by chance
    [ref] = sc_mf.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID == mf.SOPInstanceUID
    assert int(ref.ReferencedFrameNumber) == frame
    assert f"frame {frame} of 6" in sc_mf.DerivationDescription
    assert f"frame {frame} of 6" in sc_mf.ImageComments
    [single_ref] = sc_single.SourceImageSequence
    assert "ReferencedFrameNumber" not in single_ref
    assert single_ref.ReferencedSOPInstanceUID == single_truth["discs"][0]["sop_instance_uid"]
    assert "frame" not in sc_single.ImageComments


def test_frame_number_on_a_single_frame_source_is_refused(study) -> None:
    _, truth, sources = study
    result = result_for(truth)
    wrong = replace(result, levels=(replace(result.levels[0], frame_number=2), *result.levels[1:]))
    with pytest.raises(ValueError, match="not a multi-frame image"):
        build_sr(wrong, sources, ReportSettings())


def test_patient_attributes_come_from_the_analysed_series_and_conflicts_are_flagged(
    study,
) -> None:
    """Side finding of issue 13: an instance of another series with another Patient ID, listed
    first, must not give the SR its patient; the disagreement is flagged, never merged."""
    _paths, truth, sources = study
    stray = copy.deepcopy(sources[0])
    stray.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.99"
    stray.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.99.1"
    stray.PatientID = "OTHER-PATIENT"
    sr = build_sr(result_for(truth), [stray, *sources], ReportSettings())
    assert sr.PatientID == sources[0].PatientID != "OTHER-PATIENT"
    comments = texts_of(groups(sr)["LSTV screen"])
    assert any("2 different Patient IDs" in c and "OTHER-PATIENT" not in c for c in comments)
    assert not any(
        "Patient IDs" in c
        for c in texts_of(
            groups(build_sr(result_for(truth), sources, ReportSettings()))["LSTV screen"]
        )
    )


def test_negative_screen_states_that_it_does_not_exclude_lumbarization(study) -> None:
    _paths, truth, sources = study
    negative = build_sr(result_for(truth, lstv_suspected=False), sources, ReportSettings())
    assert any(
        "does not exclude lumbarization or sacralization" in t
        for t in texts_of(groups(negative)["LSTV screen"])
    )
    positive = build_sr(result_for(truth), sources, ReportSettings())
    assert not any("lumbarization" in t for t in texts_of(groups(positive)["LSTV screen"]))


def test_a_finding_names_its_evidence_and_what_else_gives_it(study) -> None:
    _paths, truth, sources = study
    positive = texts_of(
        groups(build_sr(result_for(truth), sources, ReportSettings()))["LSTV screen"]
    )
    assert "LSTV suspected, needs review" in positive
    said = [t for t in positive if t.startswith("Evidence: ")]
    assert said == [
        "Evidence: lowest lumbar segment 0.87x the segments above: short, as under a sacral-like "
        "L5; a narrowed degenerate L5-S1 disc shortens it too"
    ]
    negative = build_sr(
        result_for(truth, lstv_suspected=False, evidence=()), sources, ReportSettings()
    )
    assert not any(t.startswith("Evidence") for t in texts_of(groups(negative)["LSTV screen"]))


def test_numeric_values_are_written_without_float_noise(study) -> None:
    """100 x 0.950819 is 95.08189999999999 in binary floating point; the SR's Numeric Value
    must read "95.0819" (a DS of the number), not the 16 characters "95.0819000000000"."""
    paths, truth, sources = study
    result = result_for(truth)
    levels = tuple(replace(lv, peak_confidence=0.950819) for lv in result.levels)
    sr = build_sr(replace(result, levels=levels), sources, ReportSettings())
    written = [
        str(item.MeasuredValueSequence[0].NumericValue)
        for item in walk(sr.ContentSequence)
        if item.ValueType == "NUM"
        and item.ConceptNameCodeSequence[0].CodeMeaning.startswith("Peak")
    ]
    assert written and set(written) == {"95.0819"}


def test_overlay_labels_of_close_markers_do_not_overlap_and_stay_on_the_canvas() -> None:
    """A fused junction puts the L4-L5 and L5-S1 markers 5 px apart: their labels must be a
    line apart; a marker near the right edge gets its label on its left, inside the canvas."""
    from scp_node.report.overlay import LINE_HEIGHT, label_positions

    markers = [(100.0, 200.0, 20.0), (104.0, 205.0, 22.0), (100.0, 100.0, 20.0)]
    places = label_positions(markers, [150.0, 150.0, 150.0], canvas_width=512)
    tops = sorted(y for _, y in places)
    assert all(b - a >= LINE_HEIGHT for a, b in zip(tops, tops[1:], strict=False))
    assert places[2] == (124.0, 100.0 - LINE_HEIGHT / 2)  # alone: beside its marker
    [(x, _)] = label_positions([(480.0, 50.0, 20.0)], [150.0], canvas_width=512)
    assert x >= 0 and x + 150.0 <= 480.0 - 20.0


def test_overlay_banner_wraps_a_long_reason_into_lines_that_fit() -> None:
    from scp_node.report.overlay import wrapped

    reason = (
        "implausible localization: inter-disc distances inconsistent (1.89x the median; "
        "a level skipped or doubled)"
    )
    lines = wrapped(reason, lambda text: len(text) <= 40)
    assert all(len(line) <= 40 for line in lines) and len(lines) == 3
    assert " ".join(lines) == reason
    cut = wrapped(reason * 3, lambda text: len(text) <= 40)
    assert len(cut) == 3 and cut[-1].endswith("...") and all(len(x) <= 40 for x in cut)
    assert wrapped("x" * 100, lambda text: len(text) <= 40)[:2] == ["x" * 40, "x" * 40]
