"""Frames of DICOM images and their plane geometry, single-frame and multi-frame alike.

A classic MR Image holds one frame with its geometry in the Image Plane module (PS3.3 C.7.6.2).
An Enhanced MR Image (PS3.3 A.36.2) or a Legacy Converted Enhanced MR Image (PS3.3 A.36.4) holds
many frames; their geometry and MR parameters are in the Multi-frame Functional Groups module
(PS3.3 C.7.6.16): the Per-frame Functional Groups Sequence has one item per frame, the Shared
Functional Groups Sequence one item for all frames, and each item holds functional group
macros (Plane Orientation, Plane Position, Pixel Measures, Pixel Value Transformation, Frame VOI
LUT, MR Echo, ...), each a sequence of one item. A value in the per-frame item wins over the
shared one (C.7.6.16.1.1: a macro is in one or the other, never both).

Pure pydicom; headers suffice (no pixel data is read here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

#: Multi-frame MR Storage SOP classes with functional groups (PS3.4 B.5).
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_CONVERTED_ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.4"
MULTIFRAME_MR_SOP_CLASSES = (ENHANCED_MR_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_MR_IMAGE_STORAGE)

#: Functional-group macros that may carry the Legacy Converted / MR attributes looked up here
#: (PS3.3 C.7.6.16.2.25 Unassigned Shared/Per-frame Converted Attributes; C.8.13.5 MR macros).
_UNASSIGNED = (
    "UnassignedPerFrameConvertedAttributesSequence",
    "UnassignedSharedConvertedAttributesSequence",
)


def number_of_frames(ds: Dataset) -> int:
    """Number of Frames (PS3.3 C.7.6.6), 1 when absent or unreadable."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def has_functional_groups(ds: Dataset) -> bool:
    """Whether ``ds`` carries the Multi-frame Functional Groups module (PS3.3 C.7.6.16)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def is_multiframe(ds: Dataset) -> bool:
    """A multi-frame image whose frames are addressed by Referenced Frame Number.

    True for the Enhanced / Legacy Converted Enhanced MR classes and for any image with the
    Multi-frame module (Number of Frames) and functional groups; such frames are referenced with
    a 1-based Referenced Frame Number (PS3.3 C.10.7.1.1 / C.18.3.1).
    """
    if str(ds.get("SOPClassUID", "")) in MULTIFRAME_MR_SOP_CLASSES:
        return True
    return "NumberOfFrames" in ds and has_functional_groups(ds)


def _group_items(ds: Dataset, frame_index: int | None) -> list[Dataset]:
    """The per-frame item of ``frame_index`` (0-based) then the shared item, those present."""
    items: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if frame_index is not None and per_frame is not None and 0 <= frame_index < len(per_frame):
        items.append(per_frame[frame_index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        items.append(shared[0])
    return items


def functional_group_value(
    ds: Dataset, frame_index: int | None, macro: str, keyword: str
) -> Any | None:
    """``keyword`` in functional group ``macro`` for a frame: per-frame first, then shared."""
    for item in _group_items(ds, frame_index):
        seq = item.get(macro)
        if seq and keyword in seq[0]:
            value = seq[0][keyword].value
            if value not in (None, ""):
                return value
    return None


def frame_value(ds: Dataset, frame_index: int | None, macro: str, keyword: str) -> Any | None:
    """A frame's value of ``keyword``: functional group ``macro``, else the top-level attribute.

    For single-frame images (``frame_index`` None and no functional groups) this is simply the
    top-level attribute, e.g. ``frame_value(ds, None, "PlaneOrientationSequence",
    "ImageOrientationPatient")`` is Image Orientation (Patient) of PS3.3 C.7.6.2.
    """
    value = functional_group_value(ds, frame_index, macro, keyword)
    if value is None:
        value = ds.get(keyword)
    return value if value not in (None, "") else None


def converted_value(ds: Dataset, frame_index: int | None, keyword: str) -> Any | None:
    """``keyword`` at top level or in the Unassigned Converted Attributes of a Legacy Converted
    image (PS3.3 C.7.6.16.2.25), per-frame first."""
    if keyword in ds and ds[keyword].value not in (None, ""):
        return ds[keyword].value
    for macro in _UNASSIGNED:
        value = functional_group_value(ds, frame_index, macro, keyword)
        if value is not None:
            return value
    return None


def echo_time_ms(ds: Dataset, frame_index: int | None = None) -> float | None:
    """Echo time in ms: MR Echo macro's Effective Echo Time (PS3.3 C.8.13.5.2) of a frame,
    or Echo Time (PS3.3 C.8.3.1; top level or Unassigned Converted Attributes)."""
    value = functional_group_value(ds, frame_index, "MREchoSequence", "EffectiveEchoTime")
    if value is None:
        value = converted_value(ds, frame_index, "EchoTime")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


@dataclass(frozen=True)
class ImageFrame:
    """One 2D image: a single-frame instance, or one frame of a multi-frame instance.

    ``frame_number`` is the 1-based Referenced Frame Number (None for single-frame instances);
    the geometry is that of PS3.3 C.7.6.2 (Image Plane) or of the frame's Plane Orientation,
    Plane Position and Pixel Measures functional groups (PS3.3 C.7.6.16.2.1-3); any part may be
    None when the header lacks it.
    """

    path: Path
    sop_instance_uid: str
    frame_number: int | None
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    spacing_between_slices: float | None
    slice_thickness: float | None
    echo_time: float | None = None
    rows: int | None = None
    columns: int | None = None
    acquisition: int | None = None  # Acquisition Number / Frame Acquisition Number
    stack: str | None = None  # Stack ID of the Frame Content macro (PS3.3 C.7.6.16.2.2)

    @property
    def label(self) -> str:
        """How warnings name this image: ``IM0003.dcm`` or ``frame 3 of MF0001.dcm``."""
        if self.frame_number is None:
            return self.path.name
        return f"frame {self.frame_number} of {self.path.name}"


def _one_float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _one_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def frame_geometry(ds: Dataset, path: Path, frame_index: int | None) -> ImageFrame:
    """The :class:`ImageFrame` of frame ``frame_index`` (0-based; None = single-frame)."""
    orientation = _floats(
        frame_value(ds, frame_index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
    )
    position = _floats(
        frame_value(ds, frame_index, "PlanePositionSequence", "ImagePositionPatient"), 3
    )
    spacing = _floats(frame_value(ds, frame_index, "PixelMeasuresSequence", "PixelSpacing"), 2)
    between = frame_value(ds, frame_index, "PixelMeasuresSequence", "SpacingBetweenSlices")
    if between is None:
        between = converted_value(ds, frame_index, "SpacingBetweenSlices")
    thickness = frame_value(ds, frame_index, "PixelMeasuresSequence", "SliceThickness")
    return ImageFrame(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        frame_number=None if frame_index is None else frame_index + 1,
        orientation=orientation,
        position=position,  # type: ignore[arg-type]
        pixel_spacing=spacing,  # type: ignore[arg-type]
        spacing_between_slices=_one_float(between),
        slice_thickness=_one_float(thickness),
        echo_time=echo_time_ms(ds, frame_index),
        rows=_one_int(ds.get("Rows")),
        columns=_one_int(ds.get("Columns")),
        acquisition=acquisition_number(ds, frame_index),
        stack=stack_id(ds, frame_index),
    )


def stack_id(ds: Dataset, frame_index: int | None) -> str | None:
    """Stack ID of the Frame Content macro (PS3.3 C.7.6.16.2.2): frames of one instance with
    different Stack IDs are different stacks (e.g. two stations, or two orientations)."""
    if frame_index is None:
        return None
    value = functional_group_value(ds, frame_index, "FrameContentSequence", "StackID")
    if value is None:
        return None
    return str(value).strip() or None


def acquisition_number(ds: Dataset, frame_index: int | None) -> int | None:
    """Frame Acquisition Number of the Frame Content macro (PS3.3 C.7.6.16.2.2) of a frame, else
    Acquisition Number (General Image, PS3.3 C.7.6.1; top level or Unassigned Converted)."""
    keyword = "FrameAcquisitionNumber"
    value = functional_group_value(ds, frame_index, "FrameContentSequence", keyword)
    if value is None:
        value = converted_value(ds, frame_index, "AcquisitionNumber")
    return _one_int(value)


def image_frames(ds: Dataset, path: Path) -> list[ImageFrame]:
    """Every frame of one image instance (headers suffice), in frame order."""
    if not is_multiframe(ds):
        return [frame_geometry(ds, path, None)]
    return [frame_geometry(ds, path, i) for i in range(number_of_frames(ds))]


def frame_pixels(ds: Dataset, stored: Any, frame_number: int | None) -> Any:
    """The 2D stored values of one frame from a decoded pixel array (``[frames, rows, cols]``,
    or ``[rows, cols]`` for one frame); ``frame_number`` is 1-based, None = single-frame."""
    if frame_number is None:
        return stored
    if stored.ndim == 2:
        if frame_number != 1:
            raise ValueError(f"frame {frame_number} requested, the instance decodes to one frame")
        return stored
    if not 1 <= frame_number <= stored.shape[0]:
        raise ValueError(f"frame {frame_number} is not among {stored.shape[0]} decoded frames")
    return stored[frame_number - 1]


def rescale(ds: Dataset, frame_index: int | None) -> tuple[float, float]:
    """(slope, intercept): Pixel Value Transformation macro (PS3.3 C.7.6.16.2.9) of a frame,
    else Rescale Slope / Intercept (C.11.1.1.2); (1, 0) when absent."""
    slope = frame_value(ds, frame_index, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = frame_value(ds, frame_index, "PixelValueTransformationSequence", "RescaleIntercept")
    return (_one_float(slope) or 1.0, _one_float(intercept) or 0.0)


def voi_window(ds: Dataset, frame_index: int | None) -> tuple[float | None, float | None]:
    """(Window Center, Window Width): Frame VOI LUT macro (PS3.3 C.7.6.16.2.10) of a frame, else
    the VOI LUT module (C.11.2); first value of multi-valued windows."""

    def first(value: Any) -> float | None:
        if isinstance(value, Sequence) and not isinstance(value, str):
            value = value[0] if len(value) else None
        return _one_float(value)

    centre = frame_value(ds, frame_index, "FrameVOILUTSequence", "WindowCenter")
    width = frame_value(ds, frame_index, "FrameVOILUTSequence", "WindowWidth")
    return first(centre), first(width)
