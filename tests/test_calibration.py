"""Site calibration: the threshold rule, the file, the precedence, and the whole path end to end
(``scp-node model calibrate --normals`` on generated normals, then ``scp-node infer`` with it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from scp_node.cli import main
from scp_node.config import load_settings
from scp_node.model.calibration import (
    WEIGHTS_DEFAULT_LABEL,
    Calibration,
    CalibrationError,
    choose_threshold,
    load_calibration,
    preflight,
    resolve_threshold,
    specificity_lower_bound,
)
from scp_node.phantom_dicom import write_phantom
from tests.conftest import node_settings
from tests.node_process import write_toml
from tests.test_report import groups, nums

SIZE, SLICES = 128, 5


def test_threshold_rule_on_hand_cases() -> None:
    scores = [float(i) for i in range(100)]  # 0 .. 99
    # 95 normals must fall below: midpoint of the 95th and 96th smallest
    assert choose_threshold(scores, 0.95) == 94.5
    assert sum(s < 94.5 for s in scores) == 95
    assert choose_threshold(scores, 0.9) == 89.5
    # k = n: just above the largest normal (every normal below, nothing extrapolated)
    few = [0.1, 0.4, 0.2]
    t = choose_threshold(few, 0.95)
    assert t > 0.4 and t == math.nextafter(0.4, math.inf)
    # ties at the cut: all tied normals stay below
    assert choose_threshold([1.0, 2.0, 2.0, 3.0], 0.5) == math.nextafter(2.0, math.inf)
    # negative scores (the self-normalised score can be below 0)
    assert choose_threshold([-0.8, -0.2, 0.0, 0.3], 0.75) == pytest.approx(0.15)
    with pytest.raises(CalibrationError):
        choose_threshold([], 0.95)
    with pytest.raises(CalibrationError):
        choose_threshold([1.0], 1.0)


def test_specificity_lower_bound_is_clopper_pearson() -> None:
    # all n below: the exact lower bound is (alpha/2)^(1/n)
    assert specificity_lower_bound(20, 20) == pytest.approx(0.025 ** (1 / 20), abs=1e-9)
    assert specificity_lower_bound(95, 100) == pytest.approx(0.8872, abs=5e-4)
    assert specificity_lower_bound(0, 10) == 0.0


def _calibration(weights_sha: str, threshold: float = 0.7) -> Calibration:
    return Calibration(
        path=Path("/site/normals.json"),
        sha256="f" * 64,
        threshold=threshold,
        target_specificity=0.95,
        weights_sha256=weights_sha,
        created="2026-12-01T10:00:00Z",
        count=40,
        data={},
    )


def test_precedence_configured_over_calibration_over_weights() -> None:
    cal = _calibration("a" * 64)
    assert resolve_threshold(0.43, None, None, "a" * 64) == (0.43, WEIGHTS_DEFAULT_LABEL)
    threshold, label = resolve_threshold(0.43, None, cal, "a" * 64)
    assert threshold == 0.7 and label.startswith("site calibration normals.json sha256 fff")
    threshold, label = resolve_threshold(0.43, 0.5, cal, "a" * 64)
    assert threshold == 0.5 and "lstv_threshold" in label and "normals.json" in label
    with pytest.raises(CalibrationError, match="made for weights sha256 aaaa"):
        resolve_threshold(0.43, None, cal, "b" * 64)
    with pytest.raises(CalibrationError):  # wrong weights are refused even when overridden
        resolve_threshold(0.43, 0.5, cal, "b" * 64)


def test_bad_calibration_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not readable JSON"):
        load_calibration(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CalibrationError, match="not an scp-node-calibration file"):
        load_calibration(tmp_path / "y.json")


def _retag(paths: list[Path], out: Path, description: str, study_uid: str | None = None) -> None:
    """Copy a phantom series as another series (new UIDs, description), optionally another study."""
    out.mkdir(parents=True)
    series = generate_uid()
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series
        ds.SeriesDescription = description
        ds.SeriesNumber = 7
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if study_uid:
            ds.StudyInstanceUID = study_uid
        ds.save_as(out / path.name, enforce_file_format=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two folders of a site's normals: 5 normal studies (one with a T1 decoy series in the other
    folder), a T1-only study (not applicable) and a stray text file."""
    root = tmp_path_factory.mktemp("site")
    first, second = root / "pacs-export-1", root / "pacs-export-2"
    for i in range(5):
        folder = (first if i < 3 else second) / f"study{i}" / "t2"
        paths = write_phantom(folder, "normal", seed=910 + i, slices=SLICES, size=SIZE)
        if i == 0:  # same study, another series, in the other folder
            _retag(paths, second / "study0-more" / "t1", "T1 SAG")
        if i == 1:  # a T1-only study: not applicable
            _retag(paths, first / "t1-only", "T1 SAG", study_uid=generate_uid())
    (first / "notes.txt").write_text("not DICOM")
    return root


def test_calibrate_on_site_normals_then_screen_with_it(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = [str(site / "pacs-export-1"), str(site / "pacs-export-2")]
    out = tmp_path / "site-calibration.json"
    config = tmp_path / "node.toml"
    write_toml(config, {"model": {"device": "cpu"}})

    # fewer normals than the minimum: refused, nothing written
    code = main(["model", "calibrate", "--normals", *folders, "--out", str(out),
                 "--config", str(config)])  # fmt: skip
    assert code == 1 and not out.exists()
    assert "only 5 usable normal studies (minimum 20)" in capsys.readouterr().out

    code = main(["model", "calibrate", "--normals", *folders, "--out", str(out), "--force",
                 "--specificity", "0.8", "--config", str(config)])  # fmt: skip
    assert code == 0, capsys.readouterr()
    data = json.loads(out.read_text())
    assert data["format"] == "scp-node-calibration" and data["forced"] is True
    assert data["studies"] == {
        "found": 6,
        "used": 5,
        "not_applicable": 1,
        "not_assessable": 0,
        "files_skipped": 6,  # 5 truth.json files and notes.txt
    }
    scores = data["scores"]["values"]
    assert len(scores) == data["scores"]["count"] == 5 and scores == sorted(scores)
    assert data["scores"]["min"] == scores[0] and data["scores"]["max"] == scores[-1]
    # the score's terms on the same normals, described like the scores (their per-study sum is
    # checked in test_site_calibration_scores_normals_the_evidence_rule_would_hold_back)
    terms = data["score_terms"]
    assert set(terms) == {"uncertainty_excess", "extra_segment", "disc_missing", "disc_below"}
    assert all(t["count"] == 5 and t["min"] <= t["quantiles"]["0.5"] <= t["max"]
               for t in terms.values())  # fmt: skip
    assert terms["disc_missing"]["min"] >= 0.0 and terms["disc_missing"]["max"] <= 1.0
    printed = capsys.readouterr().out
    assert "score terms, median / 90th percentile: uncertainty excess" in printed
    # what the node would answer at that threshold: one normal of five at or over it, either
    # held back by the evidence rule or a false alarm
    point = data["operating_point"]
    assert point["over_threshold"] == 1
    assert point["held_back"] + point["false_alarms"] == 1
    assert point["false_alarm_rate"] == point["false_alarms"] / 5
    assert f"{point['held_back']} of them held back by the evidence rule" in printed
    # k = ceil(0.8 * 5) = 4 normals below: midpoint of the 4th and 5th smallest
    assert data["threshold"] == pytest.approx((scores[3] + scores[4]) / 2)
    assert data["achieved_specificity"] == 0.8
    assert 0 < data["specificity_lower_95"] < 0.8
    from scp_node.model.weights import reference_path, sha256_file

    assert data["model"]["weights_sha256"] == sha256_file(reference_path())
    assert data["created"].endswith("Z") and data["node_version"]
    assert "UID" not in out.read_text() and "PHANTOM" not in out.read_text()

    # screen a study with that calibration configured
    calibrated = tmp_path / "calibrated.toml"
    write_toml(calibrated, {"model": {"device": "cpu", "calibration": str(out)}})
    study = tmp_path / "patient"
    write_phantom(study, "lumbarization", seed=931, slices=SLICES, size=SIZE)
    sr_path = tmp_path / "sr.dcm"
    capsys.readouterr()
    code = main(["infer", str(study), "--json", "--sr", str(sr_path), "--config", str(calibrated)])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[: printed.rindex("}") + 1])
    cal = load_calibration(out)
    assert result["lstv_threshold"] == data["threshold"]
    assert result["calibration"] == cal.label
    assert cal.label == (
        f"site calibration site-calibration.json sha256 {cal.sha256} {data['created']}"
    )
    sr = pydicom.dcmread(sr_path)
    screen = groups(sr)["LSTV screen"]
    parameters = [
        item.TextValue
        for item in screen.ContentSequence
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "111002"
    ]
    assert f"threshold calibration: {cal.label}" in parameters
    assert nums(screen)["LSTV threshold"][0] == pytest.approx(data["threshold"], rel=1e-9)

    # an explicit [model] lstv_threshold still wins, and says so
    override = tmp_path / "override.toml"
    write_toml(override, {"model": {"device": "cpu", "calibration": str(out),
                                    "lstv_threshold": 9.5}})  # fmt: skip
    capsys.readouterr()
    assert main(["infer", str(study), "--json", "--config", str(override)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lstv_threshold"] == 9.5 and result["lstv_suspected"] is False
    assert "overriding site calibration site-calibration.json" in result["calibration"]

    # a calibration made for other weights is refused before anything runs
    other = tmp_path / "other-weights.json"
    other.write_text(json.dumps({**data, "model": {**data["model"], "weights_sha256": "0" * 64}}))
    settings = load_settings(model={"calibration": str(other)})
    with pytest.raises(CalibrationError, match="made for weights sha256 0000"):
        preflight(settings.model)
    from scp_node.model.engine import LocalizerEngine

    with pytest.raises(CalibrationError, match="run `scp-node model calibrate"):
        LocalizerEngine.from_settings(settings.model)
    from scp_node.node import Node

    with pytest.raises(CalibrationError, match="made for weights sha256 0000"):
        Node(
            node_settings(
                tmp_path / "refused", pipeline={"enabled": True}, model={"calibration": str(other)}
            )
        )


def test_site_calibration_scores_normals_the_evidence_rule_would_hold_back(site: Path) -> None:
    """The evidence rule (a score over the threshold with a normal-looking L5-S1 is held back:
    "No LSTV suspected", needs review) depends on the threshold, so calibration must not apply
    it: it would drop exactly the high-scoring normals the new threshold has to stay above."""
    from scp_node.analysis import analyze_study
    from scp_node.model.calibration import calibrate_site, find_studies
    from scp_node.model.engine import LocalizerEngine

    settings = load_settings(model={"device": "cpu", "lstv_threshold": -100.0})
    engine = LocalizerEngine.from_settings(settings.model)
    studies, _ = find_studies([site])
    results = [analyze_study(paths, settings, engine) for paths in studies.values()]
    held_back = [result for result in results if result.held_back]
    assert held_back, "no normal here trips the evidence rule: the test would prove nothing"
    for result in held_back:  # a negative for review, never a finding nor "not assessable"
        assert "no anatomical evidence" in result.held_back
        assert result.assessable and not result.not_assessable_reason
        assert not result.lstv_suspected and result.needs_review
        assert result.lstv_score >= result.lstv_threshold and result.evidence == ()
    assert all(not r.held_back for r in results if r.lstv_suspected or not r.assessable)
    # the terms the calibration file records add up to each study's score (to the rounding of
    # the reported per-level figures), and none of them is missing for these 6-channel weights
    from scp_node.model.calibration import score_terms

    for result in (r for r in results if r.applicable):
        terms = score_terms(result)
        assert None not in terms.values()
        assert sum(v for v in terms.values() if v is not None) == pytest.approx(
            result.lstv_score, abs=1e-4
        )
    # the calibration file's operating point counts them as the node answers them
    from scp_node.model.calibration import operating_point

    point = operating_point([r for r in results if r.applicable], -100.0)
    assert point["over_threshold"] == 5 and point["held_back"] == len(held_back)
    assert point["false_alarms"] == 5 - len(held_back)
    data = calibrate_site([site], settings, engine, force=True)
    assert data["studies"]["not_assessable"] == 0 and data["studies"]["used"] == 5
    assert engine.require_evidence, "the engine is handed back as it came"


def test_a_threshold_is_refused_under_other_monte_carlo_settings(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The threshold belongs to the dropout passes and context slices it was chosen with (other
    mask sets put the 95 % specificity threshold anywhere in 0.04-0.87): a site that changes
    `mc_samples` or `context_slices` must calibrate again or set the threshold itself. Before, the
    weights' (or a calibration's) threshold was silently applied to other scores."""
    from scp_node.model.engine import LocalizerEngine
    from scp_node.node import Node

    # the weights' own threshold: chosen by the training command with 8 passes, 3 context slices
    for changed in ({"mc_samples": 4}, {"context_slices": 5}):
        settings = load_settings(model={"device": "cpu", **changed})
        key, value = next(iter(changed.items()))
        wanted = (
            f"the weights .* chosen with {key} {8 if key == 'mc_samples' else 3} \\(now {value}\\)"
        )
        with pytest.raises(CalibrationError, match=wanted):
            preflight(settings.model)
        with pytest.raises(CalibrationError, match=wanted):
            LocalizerEngine.from_settings(settings.model)
        with pytest.raises(CalibrationError, match=wanted):
            Node(
                node_settings(
                    tmp_path / f"refused-{key}", pipeline={"enabled": True}, model=changed
                )
            )
        given = load_settings(model={"device": "cpu", "lstv_threshold": 0.6, **changed})
        assert preflight(given.model) is None  # a threshold set by hand is the site's own choice
        assert LocalizerEngine.from_settings(given.model).threshold == 0.6

    # a site calibration made with 4 passes holds for 4 passes, and only for them
    config = tmp_path / "four.toml"
    write_toml(config, {"model": {"device": "cpu", "mc_samples": 4}})
    out = tmp_path / "four-passes.json"
    folders = [str(site / "pacs-export-1"), str(site / "pacs-export-2")]
    code = main(["model", "calibrate", "--normals", *folders, "--out", str(out), "--force",
                 "--config", str(config)])  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert json.loads(out.read_text())["engine"] == {"mc_samples": 4, "context_slices": 3}
    four = load_settings(model={"device": "cpu", "mc_samples": 4, "calibration": str(out)})
    assert preflight(four.model) is not None
    assert LocalizerEngine.from_settings(four.model).threshold == load_calibration(out).threshold
    eight = load_settings(model={"device": "cpu", "calibration": str(out)})
    with pytest.raises(CalibrationError, match="four-passes.json was chosen with mc_samples 4"):
        preflight(eight.model)
