"""The optional Secondary Capture overlay (PS3.3 A.8.1, SC Image IOD) in the same study as the SR.

The slice chosen is the one most disc levels were placed on (ties: the lowest level's slice).
Its UIDs are deterministic like the SR's (:mod:`scp_node.report.uids`, kind "sc").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from scp_node import __version__
from scp_node.codecs import decode_pixels
from scp_node.config import ReportSettings
from scp_node.report.evidence import copy_patient_study, study_evidence
from scp_node.report.overlay import draw_overlay, scale_for, to_uint8
from scp_node.report.uids import instance_uid, series_uid
from scp_node.result import StudyResult

log = logging.getLogger(__name__)


def chosen_slice(result: StudyResult) -> str | None:
    """SOP Instance UID of the slice to draw on (most levels; ties go to the lowest level)."""
    if not result.levels:
        return None
    counts = Counter(f.sop_instance_uid for f in result.levels)
    best = max(counts.values())
    for finding in reversed(result.levels):
        if counts[finding.sop_instance_uid] == best:
            return finding.sop_instance_uid
    return None


def _orientation_letter(vector: Sequence[float]) -> str:
    """Patient Orientation letters of a direction (PS3.3 C.7.6.1.1.1), main axis first."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    order = sorted(range(3), key=lambda i: -abs(vector[i]))
    text = "".join(
        letters[i][0] if vector[i] > 0 else letters[i][1] for i in order if abs(vector[i]) > 0.25
    )
    return text or "L"


def _first_float(value: object) -> float | None:
    """The first value of a DS/multi-valued DS element as a float, or None."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _window(ds: Dataset) -> tuple[float | None, float | None]:
    """VOI LUT window (PS3.3 C.11.2) of ``ds``, when it has one."""
    return _first_float(ds.get("WindowCenter")), _first_float(ds.get("WindowWidth"))


def build_sc(
    result: StudyResult, source_datasets: Sequence[Dataset], settings: ReportSettings
) -> Dataset | None:
    """The overlay image, or None (not applicable, no levels, slice or geometry missing)."""
    sop = chosen_slice(result) if result.applicable else None
    if sop is None:
        return None
    source = next((ds for ds in source_datasets if str(ds.SOPInstanceUID) == sop), None)
    if source is None or "PixelData" not in source:
        log.warning("secondary capture skipped: slice %s or its pixels are not available", sop)
        return None
    orientation = source.get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        log.warning("secondary capture skipped: slice %s has no Image Orientation (Patient)", sop)
        return None
    study_evidence(result.study_instance_uid, [source])  # same-study check
    pixels = decode_pixels(source)  # logs which plugin decoded it
    if pixels.ndim != 2:
        pixels = pixels[0] if pixels.ndim == 3 and "NumberOfFrames" in source else pixels[..., 0]
    gray = to_uint8(pixels, *_window(source))
    levels = [f for f in result.levels if f.sop_instance_uid == sop]
    rgb = draw_overlay(gray, result, levels)
    scale = scale_for(*gray.shape)
    spacing = source.get("PixelSpacing")
    sop_uids = [str(ds.SOPInstanceUID) for ds in source_datasets]
    # highdicom's hint says tuple[int, int]; Pixel Spacing is DS (decimal), so Any here.
    sc_spacing: Any = (float(spacing[0]) / scale, float(spacing[1]) / scale) if spacing else None
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid("sc", result.study_instance_uid, result.model),
        series_number=settings.sc_series_number,
        sop_instance_uid=instance_uid("sc", result.study_instance_uid, sop_uids, result.model),
        instance_number=1,
        manufacturer=settings.manufacturer,
        pixel_spacing=sc_spacing,
        patient_orientation=(
            _orientation_letter([float(v) for v in orientation[:3]]),
            _orientation_letter([float(v) for v in orientation[3:]]),
        ),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=settings.sc_series_description,
        manufacturer_model_name="scp-node",
        software_versions=__version__,
        content_qualification="RESEARCH",
    )
    sc.BurnedInAnnotation = "YES"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    if settings.institution_name:
        sc.InstitutionName = settings.institution_name
    if "Laterality" not in sc:
        sc.Laterality = ""  # General Series, Type 2C: the spine is not a paired structure
    copy_patient_study(sc, source)
    return sc
