"""StudyResult → Comprehensive 3D SR holding a TID 1500 Measurement Report (PS3.16 TID 1500).

Content tree (``docs/report.md`` lists every code):

- TID 1500 Imaging Measurement Report, observer = the node as a device (TID 1004)
- one TID 1501 group per disc level: tracking identifier (level name + deterministic UID),
  finding site (SCT disc level), a Comment with the level name, numeric measurements (TID 300)
  each with algorithm identification (TID 4019) and INFERRED FROM a POINT SCOORD on the source
  slice (the shape OHIF draws with readable labels, docs/viewer.md)
- one TID 1501 study-level group "LSTV screen": LSTV score and threshold, LSTV suspected /
  Needs review / Screen applicable / Screen assessable (SCT yes/no; LSTV suspected = SCT
  Indeterminate when not assessable, and no score), the threshold's calibration as a TID 4019
  Algorithm Parameters text, and Comment TEXT items (verdict or reason, the evidence behind
  "LSTV suspected", warnings)

Multi-frame sources (Enhanced / Legacy Converted Enhanced MR): a finding on a frame references
that frame, i.e. the SCOORD's IMAGE item carries Referenced Frame Number (PS3.3 C.18.3.1,
TID 320 row 3); the evidence lists the instance once, as for any source.

SCOORD convention: ``LevelFinding.pixel_xy`` has (0, 0) at the centre of the top-left pixel; DICOM
SCOORD Graphic Data has (0, 0) at the top-left corner of that pixel (PS3.3 C.18.6.1.2, the pixel's
centre is 0.5\\0.5), and highdicom stores Graphic Data as given, so the report adds 0.5 to both.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as std_codes
from pydicom.sr.coding import Code

from scp_node import __version__
from scp_node.config import ReportSettings
from scp_node.identity import stamp
from scp_node.multiframe import is_multiframe
from scp_node.report import codes
from scp_node.report.evidence import (
    analysed_series_first,
    copy_patient_study,
    patient_id_conflict,
    study_evidence,
)
from scp_node.report.uids import device_uid, instance_uid, series_uid, tracking_uid
from scp_node.result import LevelFinding, ModelIdentity, StudyResult

log = logging.getLogger(__name__)

#: SCOORD Graphic Data = pixel centre coordinates + this offset (see module docstring).
SCOORD_OFFSET = 0.5
MODEL_NAME = "scp-node"


def sr_uids(result: StudyResult, sources: Sequence[Dataset]) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SR (deterministic)."""
    sop_uids = [str(ds.SOPInstanceUID) for ds in sources]
    return (
        series_uid("sr", result.study_instance_uid, result.model),
        instance_uid("sr", result.study_instance_uid, sop_uids, result.model),
    )


def _algorithm(model: ModelIdentity | None) -> hd.sr.AlgorithmIdentification | None:
    if model is None:
        return None
    return hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        parameters=[f"weights sha256 {model.weights_sha256}"],
    )


def _observation_context(settings: ReportSettings) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(settings.device_name, __version__),
        name=settings.device_name,
        manufacturer_name=settings.manufacturer,
        model_name=f"{MODEL_NAME} {__version__}",
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=std_codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _measurement(
    name: Code,
    value: float | None,
    unit: Code,
    algorithm: hd.sr.AlgorithmIdentification | None,
) -> list[hd.sr.Measurement]:
    """A TID 300 numeric measurement, or nothing when the value is absent or not finite.

    The value keeps 10 significant digits, more than any figure of a result carries: a float
    such as 100 x 0.950819 = 95.08189999999999 would otherwise fill Numeric Value's 16
    characters (DS, PS3.5 6.2) as "95.0819000000000"."""
    if value is None or not math.isfinite(float(value)):
        return []
    shown = float(f"{float(value):.10g}")
    return [hd.sr.Measurement(name=name, value=shown, unit=unit, algorithm_id=algorithm)]


def _source_image(source: Dataset, frame_number: int | None) -> hd.sr.SourceImageForRegion:
    """The SCOORD's image reference; with the 1-based Referenced Frame Number (PS3.3 C.18.3.1)
    when the finding lies on a frame of a multi-frame source."""
    if frame_number is not None and not is_multiframe(source):
        raise ValueError(
            f"frame {frame_number} given for {source.SOPInstanceUID}, not a multi-frame image"
        )
    frames = [int(frame_number)] if frame_number is not None else None
    return hd.sr.SourceImageForRegion.from_source_image(source, referenced_frame_numbers=frames)


def _inferred_point(
    col: float, row: float, source: Dataset, frame_number: int | None = None
) -> hd.sr.ImageRegion:
    """POINT on ``source`` (frame ``frame_number`` of a multi-frame source) at pixel centre
    (col, row), as an INFERRED FROM SCOORD (TID 320)."""
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[col + SCOORD_OFFSET, row + SCOORD_OFFSET]], dtype=float),
        source_image=_source_image(source, frame_number),
    )
    region.RelationshipType = hd.sr.RelationshipTypeValues.INFERRED_FROM.value
    return region


def _infer_from(measurements: list[hd.sr.Measurement], point: hd.sr.ImageRegion) -> None:
    """Give each NUM an INFERRED FROM SCOORD child (TID 300 row 8 → TID 320)."""
    for measurement in measurements:
        num = measurement[0]
        if "ContentSequence" not in num:
            num.ContentSequence = hd.sr.ContentSequence(is_root=False)
        num.ContentSequence.append(copy.deepcopy(point))


def _level_group(
    finding: LevelFinding,
    source: Dataset,
    sr_sop_uid: str,
    algorithm: hd.sr.AlgorithmIdentification | None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group for one disc level: its uncertainty terms, each inferred from a POINT on
    the slice where the model placed the disc.

    The first Comment is the level's name and the NUMs come in order of importance: OHIF labels a
    TID 1501 annotation with its Comments, then at most 4 more lines of NUMs (docs/viewer.md).
    Peak confidence is in percent so that it reads "93.00 %" rather than "0.93 1".
    """
    point = _inferred_point(*finding.pixel_xy, source, finding.frame_number)
    site = codes.DISC_LEVEL_SITES.get(finding.level)
    confidence = None if finding.peak_confidence is None else 100.0 * finding.peak_confidence
    measurements = [
        *_measurement(codes.PEAK_CONFIDENCE, confidence, codes.UNIT_PERCENT, algorithm),
        *_measurement(codes.ENTROPY, finding.entropy, codes.UNIT_BIT, algorithm),
        *_measurement(
            codes.MUTUAL_INFORMATION, finding.mutual_information, codes.UNIT_BIT, algorithm
        ),
        *_measurement(codes.SPATIAL_ENTROPY, finding.spatial_entropy, codes.UNIT_BIT, algorithm),
        *_measurement(
            codes.PREDICTIVE_ENTROPY, finding.predictive_entropy, codes.UNIT_BIT, algorithm
        ),
    ]
    _infer_from(measurements, point)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(sr_sop_uid, finding.level), identifier=finding.level
        ),
        finding_type=codes.DISC_LOCALIZATION,
        finding_sites=[hd.sr.FindingSite(site)] if site is not None else None,
        algorithm_id=algorithm,
        measurements=measurements,
    )
    group[0].ContentSequence.append(_comment(finding.level))
    return group


def _comment(text: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=codes.COMMENT,
        value=text[:10000],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


#: What a negative screen cannot say (docs/model.md, "Third generator", "Two levels on one disc"):
#: without a counting anchor in a lumbar field, a lumbarized S1 is usually counted as a normal
#: spine one level lower, and a sacralized L5 fused to the sacrum can be taken for S1.
NEGATIVE_SCREEN_LIMITATION = (
    "Limitation: a negative screen does not exclude lumbarization or sacralization (on a "
    "lumbar-only field an S1 with a mobile disc below it can be counted as a normal spine one "
    "level lower, and an L5 fused to the sacrum taken for S1, one level higher)"
)


def _verdict(result: StudyResult) -> str:
    """The study-level outcome in words (the first line a viewer shows for the group)."""
    if not result.assessable:
        return _not_assessable_text(result)
    verdict = "LSTV suspected" if result.lstv_suspected else "No LSTV suspected"
    return f"{verdict}, needs review" if result.needs_review else verdict


def _study_anchor(result: StudyResult, by_uid: dict[str, Dataset]) -> hd.sr.ImageRegion | None:
    """POINT the study-level measurements are INFERRED FROM: the upper sacrum.

    One inter-disc step caudal to the lowest placed disc (or rows/10 below it when only one disc
    was placed), on that disc's slice, clipped to the image. Viewers such as OHIF draw a TID 1501
    group only when its measurements carry an image reference (docs/viewer.md).
    """
    if not result.applicable or not result.levels:
        return None
    ordered = sorted(result.levels, key=lambda f: f.pixel_xy[1])
    last = ordered[-1]
    source = by_uid.get(last.sop_instance_uid)
    if source is None:
        return None
    rows, cols = int(getattr(source, "Rows", 0) or 0), int(getattr(source, "Columns", 0) or 0)
    if len(ordered) > 1:
        prev = ordered[-2]
        step = (last.pixel_xy[0] - prev.pixel_xy[0], last.pixel_xy[1] - prev.pixel_xy[1])
    else:
        step = (0.0, rows / 10.0)
    col = min(max(last.pixel_xy[0] + step[0], 0.0), max(cols - 1.0, 0.0))
    row = min(max(last.pixel_xy[1] + step[1], 0.0), max(rows - 1.0, 0.0))
    return _inferred_point(col, row, source, last.frame_number)


# --- not assessable and calibration (issue 12): kept apart from the level groups -----------------
def _not_assessable_text(result: StudyResult) -> str:
    """'Not assessable: <reason>' (the verdict Comment of a not-assessable screen)."""
    return f"Not assessable: {result.not_assessable_reason or 'no reason given'}"


def _assessability_evaluations(result: StudyResult) -> list[hd.sr.QualitativeEvaluation]:
    """Screen assessable = Yes/No, then LSTV suspected = Yes/No, or = SCT Indeterminate when the
    screen is not assessable: never "LSTV suspected: Yes" on an untrusted result."""
    suspected = codes.yes_no(result.lstv_suspected) if result.assessable else codes.INDETERMINATE
    return [
        hd.sr.QualitativeEvaluation(codes.SCREEN_ASSESSABLE, codes.yes_no(result.assessable)),
        hd.sr.QualitativeEvaluation(codes.LSTV_SUSPECTED, suspected),
    ]


def _study_algorithm(result: StudyResult) -> hd.sr.AlgorithmIdentification | None:
    """The study group's TID 4019 algorithm identification: the model's, plus an Algorithm
    Parameters (111002, DCM) text naming the threshold's calibration (``result.calibration``)."""
    model = result.model
    if model is None:
        return None
    parameters = [f"weights sha256 {model.weights_sha256}"]
    if result.calibration:
        parameters.append(codes.CALIBRATION_PARAMETER_PREFIX + result.calibration)
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, parameters=parameters
    )


def _study_group(
    result: StudyResult,
    sr_sop_uid: str,
    algorithm: hd.sr.AlgorithmIdentification | None,
    anchor: hd.sr.ImageRegion | None = None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group with the study-level outcome (or, when not applicable, the reason).

    With an ``anchor`` each NUM gets an INFERRED FROM SCOORD (TID 300 → TID 320) and the verdict
    is repeated as the first Comment, so that a viewer can show it on the image.
    """
    evaluations = [
        hd.sr.QualitativeEvaluation(codes.SCREEN_APPLICABLE, codes.yes_no(result.applicable))
    ]
    measurements: list[hd.sr.Measurement] = []
    if result.applicable:
        evaluations += _assessability_evaluations(result)
        if result.assessable:  # an untrusted score is left out (the job record keeps it)
            measurements += _measurement(
                codes.LSTV_SCORE, result.lstv_score, codes.UNIT_ONE, algorithm
            )
        measurements += _measurement(
            codes.LSTV_THRESHOLD, result.lstv_threshold, codes.UNIT_ONE, algorithm
        )
        measurements += _measurement(
            codes.JUNCTION_DISC_SIGNAL, result.junction_disc_signal, codes.UNIT_ONE, algorithm
        )
        measurements += _measurement(
            codes.BELOW_DISC_SIGNAL, result.below_disc_signal, codes.UNIT_ONE, algorithm
        )
        measurements += _measurement(
            codes.JUNCTION_GAP_RATIO, result.junction_gap_ratio, codes.UNIT_ONE, algorithm
        )
    evaluations.append(
        hd.sr.QualitativeEvaluation(codes.NEEDS_REVIEW, codes.yes_no(result.needs_review))
    )
    if anchor is not None:
        _infer_from(measurements, anchor)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(sr_sop_uid, "LSTV screen"), identifier="LSTV screen"
        ),
        finding_type=codes.LSTV_SCREEN,
        finding_sites=[hd.sr.FindingSite(codes.LUMBOSACRAL_SPINE)],
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
    )
    texts = [_verdict(result)] if result.applicable else []
    if result.lstv_suspected:
        texts += [f"Evidence: {said}" for said in result.evidence]
    if result.held_back:
        texts.append(f"Finding held back: {result.held_back}")
    if result.applicable and result.assessable and not result.lstv_suspected:
        texts.append(NEGATIVE_SCREEN_LIMITATION)
    if not result.applicable:
        texts.append(f"Not applicable: {result.reason or 'no reason given'}")
    texts += [f"Warning: {w}" for w in result.warnings]
    container = group[0]
    for text in texts:
        container.ContentSequence.append(_comment(text))
    return group


def build_sr(
    result: StudyResult, source_datasets: Sequence[Dataset], settings: ReportSettings
) -> hd.sr.Comprehensive3DSR:
    """The SR for ``result``; ``source_datasets`` are the study's instances (headers suffice)."""
    evidence = study_evidence(result.study_instance_uid, source_datasets)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in evidence}
    series, sop = sr_uids(result, evidence)
    conflict = patient_id_conflict(evidence)
    if conflict:
        log.warning("study %s: %s", result.study_instance_uid, conflict)
        result = replace(result, warnings=(*result.warnings, conflict))
    evidence = analysed_series_first(evidence, result.series_instance_uid)
    algorithm = _algorithm(result.model)
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations] = []
    if result.applicable:
        for finding in result.levels:
            source = by_uid.get(finding.sop_instance_uid)
            if source is None:
                raise ValueError(
                    f"level {finding.level} references {finding.sop_instance_uid}, "
                    "which is not among the source datasets"
                )
            groups.append(_level_group(finding, source, sop, algorithm))
    groups.append(
        _study_group(result, sop, _study_algorithm(result), _study_anchor(result, by_uid))
    )
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(settings),
        procedure_reported=codes.PROCEDURE_MR,
        imaging_measurements=groups,
    )
    research = result.model is None or not result.model.clinical_use
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=series,
        series_number=settings.series_number,
        sop_instance_uid=sop,
        instance_number=1,
        manufacturer=settings.manufacturer,
        is_complete=True,
        is_final=False,
        is_verified=False,
        institution_name=settings.institution_name or None,
        series_description=settings.series_description,
        manufacturer_model_name=MODEL_NAME,
        software_versions=__version__,
        content_qualification="RESEARCH" if research else "PRODUCT",
        coding_schemes=[codes.private_coding_scheme()],
    )
    copy_patient_study(sr, evidence[0])
    return sr


def build_reports(
    result: StudyResult, source_datasets: list[Dataset], settings: ReportSettings
) -> list[Dataset]:
    """The SR, then (``settings.secondary_capture``, applicable results only) the overlay image."""
    from scp_node.report.sc import build_sc  # Pillow only when needed

    reports: list[Dataset] = [build_sr(result, source_datasets, settings)]
    if settings.secondary_capture:
        sc = build_sc(result, source_datasets, settings)
        if sc is not None:
            reports.append(sc)
    return reports


def write_dataset(ds: Dataset, out: Path) -> Path:
    """Write ``ds`` as a DICOM file (PS3.10) at ``out``: temp file, fsync, rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            stamp(ds).save_as(handle, enforce_file_format=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out


def write_sr_for_result(
    result: StudyResult, source_paths: list[Path], out: Path, settings: ReportSettings
) -> Path:
    """Build the SR for ``result`` from the source files (headers only) and write it to ``out``."""
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in source_paths]
    return write_dataset(build_sr(result, sources, settings), out)
