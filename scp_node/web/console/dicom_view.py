"""The node's result objects made readable: the SR content tree as nested items, the Secondary
Capture overlay as PNG (or, for a result made without one, the chosen slice with the disc points
drawn the same way), and the few header fields the study page shows."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset

from scp_node.codecs import decode_pixels
from scp_node.multiframe import frame_pixels, voi_window
from scp_node.report.overlay import draw_overlay, to_uint8
from scp_node.report.sc import chosen_image
from scp_node.result import StudyResult

#: SOP Classes of the node's results.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MAX_DEPTH = 12


@dataclass
class ContentNode:
    """One SR content item: ``relation`` ``name`` = ``value``, with its children."""

    relation: str
    value_type: str
    name: str
    value: str
    children: list[ContentNode] = field(default_factory=list)

    @property
    def label(self) -> str:
        """What names a container: its Tracking Identifier (a TID 1501 group's level name)."""
        return next((c.value for c in self.children if c.name == "Tracking Identifier"), "")


def _meaning(seq: object) -> str:
    items = list(seq) if seq is not None else []  # type: ignore[call-overload]
    return str(items[0].get("CodeMeaning", "")) if items else ""


def _value(item: Dataset) -> str:
    kind = str(item.get("ValueType", ""))
    if kind == "TEXT":
        return str(item.get("TextValue", ""))
    if kind == "CODE":
        return _meaning(item.get("ConceptCodeSequence"))
    if kind == "NUM":
        measured = item.get("MeasuredValueSequence")
        if not measured:
            return "(no value)"
        m = measured[0]
        units = m.get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue", "")) if units else ""
        return f"{m.get('NumericValue', '')} {'' if unit == '1' else unit}".strip()
    if kind == "UIDREF":
        return str(item.get("UID", ""))
    if kind in ("SCOORD", "SCOORD3D"):
        data = [f"{float(v):.1f}" for v in item.get("GraphicData", [])]
        return f"{item.get('GraphicType', '')} ({', '.join(data)})"
    if kind in ("IMAGE", "COMPOSITE"):
        refs = item.get("ReferencedSOPSequence")
        if not refs:
            return ""
        ref = refs[0]
        frame = ref.get("ReferencedFrameNumber")
        return str(ref.get("ReferencedSOPInstanceUID", "")) + (f" frame {frame}" if frame else "")
    if kind in ("DATETIME", "DATE", "TIME"):
        return str(item.get(kind.title() if kind != "DATETIME" else "DateTime", ""))
    return ""


def _nodes(items: object, depth: int) -> list[ContentNode]:
    if items is None or depth > MAX_DEPTH:
        return []
    out = []
    for item in items:  # type: ignore[attr-defined]
        out.append(
            ContentNode(
                relation=str(item.get("RelationshipType", "")),
                value_type=str(item.get("ValueType", "")),
                name=_meaning(item.get("ConceptNameCodeSequence")),
                value=_value(item),
                children=_nodes(item.get("ContentSequence"), depth + 1),
            )
        )
    return out


def content_tree(path: Path) -> ContentNode:
    """The SR document at ``path`` as a tree rooted at its title."""
    ds = pydicom.dcmread(path)
    return ContentNode(
        relation="",
        value_type=str(ds.get("ValueType", "CONTAINER")),
        name=_meaning(ds.get("ConceptNameCodeSequence")) or "Structured report",
        value="",
        children=_nodes(ds.get("ContentSequence"), 1),
    )


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def drawn_png(result: StudyResult, source: Path) -> bytes:
    """The chosen slice (``source``, the instance :func:`chosen_image` names) with the disc
    points drawn as the Secondary Capture draws them: for results made without an SC."""
    chosen = chosen_image(result)
    if chosen is None:
        raise LookupError("the result places no level")
    sop, frame_number = chosen
    ds = pydicom.dcmread(source)
    frame_index = None if frame_number is None else frame_number - 1
    pixels = decode_pixels(ds)
    if frame_number is not None:
        pixels = frame_pixels(ds, pixels, frame_number)
    elif pixels.ndim != 2:
        pixels = pixels[0] if pixels.ndim == 3 and "NumberOfFrames" in ds else pixels[..., 0]
    gray = to_uint8(pixels, *voi_window(ds, frame_index))
    levels = [
        f for f in result.levels if f.sop_instance_uid == sop and f.frame_number == frame_number
    ]
    return _png(Image.fromarray(draw_overlay(gray, result, levels), mode="RGB"))


def overlay_png(path: Path) -> bytes:
    """The Secondary Capture at ``path`` (RGB or monochrome, 8 bits) as PNG bytes."""
    ds = pydicom.dcmread(path)
    pixels = np.asarray(ds.pixel_array)
    if pixels.ndim == 4:  # multi-frame: the first frame
        pixels = pixels[0]
    if pixels.ndim == 2 or pixels.shape[-1] != 3:
        if pixels.ndim == 3:
            pixels = pixels[0]
        data = pixels.astype(np.float64)
        low, high = float(data.min()), float(data.max())
        pixels = ((data - low) / ((high - low) or 1.0) * 255).astype(np.uint8)
        image = Image.fromarray(pixels, mode="L")
    else:
        image = Image.fromarray(pixels.astype(np.uint8), mode="RGB")
    return _png(image)


@dataclass(frozen=True)
class StudyHeader:
    """Header fields of a study shown on its page (patient fields only when allowed)."""

    accession: str = ""
    study_date: str = ""
    description: str = ""
    patient_name: str = ""
    patient_id: str = ""


def study_header(ds: Dataset | None, show_patient: bool) -> StudyHeader:
    if ds is None:
        return StudyHeader()
    return StudyHeader(
        accession=str(ds.get("AccessionNumber", "") or ""),
        study_date=str(ds.get("StudyDate", "") or ""),
        description=str(ds.get("StudyDescription", "") or ""),
        patient_name=str(ds.get("PatientName", "") or "") if show_patient else "",
        patient_id=str(ds.get("PatientID", "") or "") if show_patient else "",
    )
