"""The "not assessable" outcome in the SR and the overlay, and the calibration the SR records."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from scp_node.config import ReportSettings
from scp_node.report import build_reports, build_sr
from scp_node.report.overlay import banner_lines
from tests.test_report import (
    codes_of,
    dciodvfy_errors,
    groups,
    nums,
    phantom_study,
    read_all,
    result_for,
    texts_of,
    walk,
)

CALIBRATION = "site calibration normals.json sha256 " + "e1" * 32 + " 2026-12-01T10:00:00Z"
REASON = "reference levels uncertain (L1-L2, L2-L3 peak confidence below 0.2)"


def algorithm_parameters(group) -> list[str]:
    """Algorithm Parameters (111002, DCM) texts of a group (TID 4019)."""
    return [
        item.TextValue
        for item in group.ContentSequence
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "111002"
    ]


def comments(group) -> list[str]:
    """Comment (121106, DCM) texts of a group, in order."""
    return [
        item.TextValue
        for item in group.ContentSequence
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121106"
    ]


@pytest.fixture
def study(tmp_path: Path):
    paths, truth = phantom_study(tmp_path / "src")
    return paths, truth, read_all(paths)


def test_not_assessable_sr_is_coded_valid_and_never_says_suspected(study, tmp_path: Path) -> None:
    paths, truth, sources = study
    result = result_for(
        truth,
        assessable=False,
        not_assessable_reason=REASON,
        lstv_suspected=False,
        lstv_score=2.7,
        needs_review=True,
        calibration=CALIBRATION,
    )
    reports = build_reports(result, sources, ReportSettings())
    assert [r.Modality for r in reports] == ["SR", "OT"]  # the overlay shows where it looked
    sr = reports[0]
    screen = groups(sr)["LSTV screen"]
    coded = codes_of(screen)
    assert coded["Screen applicable"] == "Yes"
    assert coded["Screen assessable"] == "No"
    assert coded["LSTV suspected"] == "Indeterminate"
    indeterminate = next(
        c.ConceptCodeSequence[0]
        for c in screen.ContentSequence
        if c.ValueType == "CODE" and c.ConceptNameCodeSequence[0].CodeMeaning == "LSTV suspected"
    )
    assert (indeterminate.CodeValue, indeterminate.CodingSchemeDesignator) == ("82334004", "SCT")
    assert comments(screen)[0] == f"Not assessable: {REASON}"
    assert f"Not assessable: {REASON}" in texts_of(screen)
    assert "LSTV score" not in nums(screen), "an untrusted score is not reported"
    assert nums(screen)["LSTV threshold"] == (pytest.approx(0.5), "1")
    assert any(f"threshold calibration: {CALIBRATION}" == p for p in algorithm_parameters(screen))
    # nowhere in the document does a "LSTV suspected" item say Yes
    for item in walk(sr.ContentSequence):
        if item.ValueType == "CODE" and "LSTV suspected" in str(
            item.ConceptNameCodeSequence[0].CodeMeaning
        ):
            assert item.ConceptCodeSequence[0].CodeMeaning != "Yes"

    path = tmp_path / "not-assessable.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    dump = subprocess.run(["/usr/bin/dsrdump", "+Pl", str(path)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert "Not assessable" in dump.stdout and "Indeterminate" in dump.stdout
    assert CALIBRATION in dump.stdout
    sc_path = tmp_path / "sc.dcm"
    reports[1].save_as(sc_path, enforce_file_format=True)
    assert dciodvfy_errors(sc_path) == []


def test_assessable_sr_says_assessable_and_records_the_calibration(study) -> None:
    _, truth, sources = study
    sr = build_sr(result_for(truth, calibration=CALIBRATION), sources, ReportSettings())
    screen = groups(sr)["LSTV screen"]
    assert codes_of(screen)["Screen assessable"] == "Yes"
    assert codes_of(screen)["LSTV suspected"] == "Yes"
    assert "LSTV score" in nums(screen)
    assert algorithm_parameters(screen)[-1] == f"threshold calibration: {CALIBRATION}"
    # the level groups keep the plain algorithm identification (localization is not calibrated)
    level = groups(sr)["L4-L5"]
    assert not any("calibration" in p for p in algorithm_parameters(level))


def test_overlay_banner_says_not_assessable() -> None:
    from scp_node.result import StudyResult

    base = StudyResult(study_instance_uid="1.2.3", applicable=True, lstv_suspected=False)
    lines = [text for text, _ in banner_lines(base)]
    assert any("not suspected" in t for t in lines)
    not_assessable = StudyResult(
        study_instance_uid="1.2.3",
        applicable=True,
        assessable=False,
        not_assessable_reason="S1 not covered",
        needs_review=True,
    )
    lines = [text for text, _ in banner_lines(not_assessable)]
    assert "LSTV screen NOT ASSESSABLE" in lines and "S1 not covered" in lines
    assert not any("SUSPECTED" in t or "not suspected" in t for t in lines)
    assert "NEEDS REVIEW" in lines


HELD_BACK = (
    "localizer uncertain at the lumbosacral junction, but its L5-S1 disc looks like the discs "
    "above (disc signal 0.97 of theirs, none below, lowest segment not short): no anatomical "
    "evidence of a transitional vertebra"
)


def test_a_held_back_finding_is_a_negative_for_review_that_says_why(study, tmp_path: Path) -> None:
    """A score over the threshold with no anatomical sign behind it (the evidence rule) is
    answered "No LSTV suspected, needs review" with the reason: assessable, the score reported,
    never "LSTV suspected" and never "not assessable"; the SR and SC stay valid, the banner says
    the score is over the threshold, and the held-back counter counts it."""
    from scp_node import observe

    _paths, truth, sources = study
    result = result_for(
        truth, lstv_suspected=False, lstv_score=0.9, needs_review=True, held_back=HELD_BACK
    )
    reports = build_reports(result, sources, ReportSettings())
    screen = groups(reports[0])["LSTV screen"]
    coded = codes_of(screen)
    assert (coded["Screen assessable"], coded["LSTV suspected"]) == ("Yes", "No")
    assert coded["Needs review"] == "Yes"
    said = comments(screen)
    assert said[0] == "No LSTV suspected, needs review"
    assert f"Finding held back: {HELD_BACK}" in said
    assert not any(t.startswith("Evidence: ") for t in said)
    assert nums(screen)["LSTV score"] == (pytest.approx(0.9), "1")
    for n, report in enumerate(reports):
        path = tmp_path / f"held-back-{n}.dcm"
        report.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []
    lines = [text for text, _ in banner_lines(result)]
    assert "score over the threshold, but no anatomical sign of LSTV" in lines
    assert "NEEDS REVIEW" in lines and not any("SUSPECTED" in t for t in lines)

    before = observe.FINDINGS_HELD_BACK._value.get()
    assert observe.record_screen(result) == "not_suspected"
    assert observe.FINDINGS_HELD_BACK._value.get() == before + 1
    observe.record_screen(result_for(truth))  # a finding is not held back
    assert observe.FINDINGS_HELD_BACK._value.get() == before + 1

    counted = observe.LEVELS_REPAIRED.labels(how="counted_up")
    repaired_before = counted._value.get()
    observe.record_screen(result)  # levels as the localizer found them
    assert counted._value.get() == repaired_before
    observe.record_screen(dataclasses.replace(result, levels_repaired="counted_up"))
    assert counted._value.get() == repaired_before + 1


def test_infer_prints_why_a_finding_was_held_back(
    study, capsys: pytest.CaptureFixture[str]
) -> None:
    from scp_node.commands.model import _print_result

    _paths, truth, _sources = study
    _print_result(
        result_for(
            truth, lstv_suspected=False, lstv_score=0.9, needs_review=True, held_back=HELD_BACK
        )
    )
    out = capsys.readouterr().out
    assert f"no LSTV suspected (finding held back: {HELD_BACK})  [NEEDS REVIEW]" in out
    assert "LSTV SUSPECTED" not in out and "NOT ASSESSABLE" not in out
