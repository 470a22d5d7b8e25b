"""The optional Secondary Capture overlay (PS3.3 A.8.1, SC Image IOD) in the same study as the SR.

The image chosen is the slice (the instance, and its frame for a multi-frame source) most disc
levels were placed on (ties: the lowest level's slice). The SC names it: Source Image Sequence
(General Reference module, PS3.3 C.12.4) with Referenced Frame Number for a frame of a
multi-frame image, and Derivation Description / Image Comments in words (PS3.3 C.7.6.1).
Its UIDs are deterministic like the SR's (:mod:`scp_node.report.uids`, kind "sc").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from scp_node import __version__
from scp_node.codecs import decode_pixels
from scp_node.config import ReportSettings
from scp_node.multiframe import frame_pixels, frame_value, number_of_frames, voi_window
from scp_node.report.evidence import copy_patient_study, study_evidence
from scp_node.report.overlay import draw_overlay, scale_for, to_uint8
from scp_node.report.uids import instance_uid, series_uid
from scp_node.result import StudyResult

log = logging.getLogger(__name__)


def chosen_image(result: StudyResult) -> tuple[str, int | None] | None:
    """(SOP Instance UID, frame number or None) of the image to draw on: the one with most
    levels; ties go to the lowest level's image."""
    if not result.levels:
        return None
    counts = Counter((f.sop_instance_uid, f.frame_number) for f in result.levels)
    best = max(counts.values())
    for finding in reversed(result.levels):
        key = (finding.sop_instance_uid, finding.frame_number)
        if counts[key] == best:
            return key
    return None


def chosen_slice(result: StudyResult) -> str | None:
    """SOP Instance UID of the instance to draw on (see :func:`chosen_image`)."""
    chosen = chosen_image(result)
    return chosen[0] if chosen else None


def _orientation_letter(vector: Sequence[float]) -> str:
    """Patient Orientation letters of a direction (PS3.3 C.7.6.1.1.1), main axis first."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    order = sorted(range(3), key=lambda i: -abs(vector[i]))
    text = "".join(
        letters[i][0] if vector[i] > 0 else letters[i][1] for i in order if abs(vector[i]) > 0.25
    )
    return text or "L"


#: DCM 121322 "Source image for image processing operation" (CID 7202), the purpose of reference.
_SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")


def _source_reference(source: Dataset, frame_number: int | None) -> DicomSequence:
    """Source Image Sequence (PS3.3 C.12.4) naming the drawn image (and its frame)."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_number is not None:
        item.ReferencedFrameNumber = frame_number
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_FOR_PROCESSING
    item.PurposeOfReferenceCodeSequence = [purpose]
    return DicomSequence([item])


def _shown_image(source: Dataset, frame_number: int | None) -> str:
    """The drawn image in words: series, instance and frame numbers of the source."""
    parts = [f"series {source.get('SeriesNumber', '?')}"]
    parts.append(f"instance {source.get('InstanceNumber', '?')}")
    if frame_number is not None:
        parts.append(f"frame {frame_number} of {number_of_frames(source)}")
    text = ", ".join(parts)
    description = str(source.get("SeriesDescription", "") or "")
    return f"{text} ({description})" if description else text


def build_sc(
    result: StudyResult, source_datasets: Sequence[Dataset], settings: ReportSettings
) -> Dataset | None:
    """The overlay image, or None (not applicable, no levels, slice or geometry missing)."""
    chosen = chosen_image(result) if result.applicable else None
    if chosen is None:
        return None
    sop, frame_number = chosen
    source = next((ds for ds in source_datasets if str(ds.SOPInstanceUID) == sop), None)
    if source is None or "PixelData" not in source:
        log.warning("secondary capture skipped: slice %s or its pixels are not available", sop)
        return None
    frame_index = None if frame_number is None else frame_number - 1
    orientation = frame_value(
        source, frame_index, "PlaneOrientationSequence", "ImageOrientationPatient"
    )
    if orientation is None or len(orientation) != 6:
        log.warning("secondary capture skipped: slice %s has no Image Orientation (Patient)", sop)
        return None
    study_evidence(result.study_instance_uid, [source])  # same-study check
    pixels = decode_pixels(source)  # logs which plugin decoded it
    if frame_number is not None:
        pixels = frame_pixels(source, pixels, frame_number)
    elif pixels.ndim != 2:
        pixels = pixels[0] if pixels.ndim == 3 and "NumberOfFrames" in source else pixels[..., 0]
    gray = to_uint8(pixels, *voi_window(source, frame_index))
    levels = [
        f for f in result.levels if f.sop_instance_uid == sop and f.frame_number == frame_number
    ]
    rgb = draw_overlay(gray, result, levels)
    scale = scale_for(*gray.shape)
    spacing = frame_value(source, frame_index, "PixelMeasuresSequence", "PixelSpacing")
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
    shown = _shown_image(source, frame_number)
    sc.SourceImageSequence = _source_reference(source, frame_number)
    sc.DerivationDescription = f"AI LSTV screen markers drawn on {shown}"[:1024]
    sc.ImageComments = f"Overlay of {shown}"[:10240]
    if settings.institution_name:
        sc.InstitutionName = settings.institution_name
    if "Laterality" not in sc:
        sc.Laterality = ""  # General Series, Type 2C: the spine is not a paired structure
    copy_patient_study(sc, source)
    return sc
