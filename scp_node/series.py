"""Pick a study's sagittal T2 series and load it as a geometry-sorted float volume.

Orientation comes from Image Orientation (Patient) (PS3.3 C.7.6.2.1.1): the slice normal is the
cross
product of the row and column direction cosines; a sagittal slice has its normal along the patient
L-R (x) axis. Slices are sorted by the projection of Image Position (Patient) on that normal.
Pixel data
are decoded only through :func:`scp_node.codecs.decode_pixels` and rescaled with Rescale Slope /
Intercept (PS3.3 C.11.1.1.2); MONOCHROME1 is inverted (PS3.3 C.7.6.3.1.2).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from scp_node.config import SeriesRules

log = logging.getLogger(__name__)

#: Storage SOP classes that never hold a usable image (SR, KO, PR, ...): PS3.4 Annex B.5.
_NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # Structured Reports, Key Object Selection
    "1.2.840.10008.5.1.4.1.1.11.",  # Presentation States
    "1.2.840.10008.5.1.4.1.1.104.",  # Encapsulated documents
    "1.2.840.10008.5.1.4.1.1.66",  # Raw data, spatial registration, segmentation
)


@dataclass
class SeriesVolume:
    """A sorted sagittal series: ``volume[slice, row, col]`` in rescaled float32 values.

    ``positions[k]`` is Image Position (Patient) of slice ``k`` (centre of its first pixel);
    ``row_direction``/``column_direction`` are the two direction cosines of Image Orientation
    (Patient); ``pixel_spacing`` is (row spacing, column spacing) in mm as in Pixel Spacing.
    """

    study_instance_uid: str
    series_instance_uid: str
    volume: np.ndarray
    sop_instance_uids: list[str]
    positions: list[tuple[float, float, float]]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    series_description: str = ""
    warnings: list[str] = field(default_factory=list)

    def pixel_to_patient(
        self, slice_index: int, col: float, row: float
    ) -> tuple[float, float, float]:
        """Patient mm of pixel (col, row) on a slice (PS3.3 C.7.6.2.1.1 equation)."""
        origin = np.asarray(self.positions[slice_index], dtype=np.float64)
        r = np.asarray(self.row_direction) * self.pixel_spacing[1] * col
        c = np.asarray(self.column_direction) * self.pixel_spacing[0] * row
        x, y, z = origin + r + c
        return float(x), float(y), float(z)


@dataclass
class SelectionResult:
    """The loaded volume, or the reason there is none."""

    volume: SeriesVolume | None
    reason: str = ""
    study_instance_uid: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    series_uid: str
    headers: list[tuple[Path, Dataset]]
    description: str
    normal: np.ndarray
    deviation_deg: float
    t2_score: int


def decode_stored_pixels(ds: Dataset) -> np.ndarray:
    """Stored pixel values of one instance, through the node's codec layer."""
    from scp_node.codecs import decode_pixels

    return np.asarray(decode_pixels(ds))


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal (row x column) of an Image Orientation (Patient) value."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    n = np.cross(row, col)
    norm = float(np.linalg.norm(n))
    if norm < 1e-6:
        raise ValueError("degenerate ImageOrientationPatient")
    return n / norm


def deviation_from_sagittal_deg(orientation: Sequence[float]) -> float:
    """Angle between the slice normal and the patient L-R axis, in degrees (0 = true sagittal)."""
    n = slice_normal(orientation)
    return math.degrees(math.acos(min(1.0, abs(float(n[0])))))


def t2_score(ds: Dataset, rules: SeriesRules) -> int:
    """How T2-like a series looks: -1 excluded, 0 unknown, >0 matched (text or echo time)."""
    text = " ".join(
        str(ds.get(key, "")) for key in ("SeriesDescription", "SequenceName", "ProtocolName")
    )
    lowered = text.lower()
    if any(word.lower() in lowered for word in rules.description_exclude):
        return -1
    score = 0
    if any(word.lower() in lowered for word in rules.description_include):
        score += 2
    echo = ds.get("EchoTime")
    try:
        if echo is not None and float(echo) >= 60.0:  # T2 weighting: long TE (ms)
            score += 1
    except (TypeError, ValueError):
        pass
    return score


def _read_header(path: Path) -> Dataset | None:
    try:
        return dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - unreadable files are reported, not raised
        log.warning("unreadable DICOM file %s: %s", path.name, exc)
        return None


def _is_image(ds: Dataset) -> bool:
    sop_class = str(ds.get("SOPClassUID", ""))
    if any(sop_class.startswith(p) for p in _NON_IMAGE_PREFIXES):
        return False
    return "Rows" in ds and "Columns" in ds and "ImageOrientationPatient" in ds


def candidates(
    paths: Iterable[Path], rules: SeriesRules
) -> tuple[list[_Candidate], str, list[str]]:
    """Sagittal candidate series, best first; plus the study UID and notes on what was skipped."""
    by_series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    notes: list[str] = []
    study_uid = ""
    for path in paths:
        ds = _read_header(Path(path))
        if ds is None:
            notes.append(f"unreadable file {Path(path).name}")
            continue
        study_uid = study_uid or str(ds.get("StudyInstanceUID", ""))
        if not _is_image(ds):
            continue
        by_series[str(ds.get("SeriesInstanceUID", ""))].append((Path(path), ds))
    found: list[_Candidate] = []
    for uid, headers in by_series.items():
        first = headers[0][1]
        try:
            dev = deviation_from_sagittal_deg([float(v) for v in first.ImageOrientationPatient])
            normal = slice_normal([float(v) for v in first.ImageOrientationPatient])
        except (ValueError, TypeError):
            notes.append(f"series {uid}: invalid ImageOrientationPatient")
            continue
        desc = str(first.get("SeriesDescription", ""))
        if dev > rules.max_normal_deviation_deg:
            notes.append(f"series {uid} ({desc}): not sagittal ({dev:.0f} deg from L-R normal)")
            continue
        score = t2_score(first, rules)
        if score < 0:
            notes.append(f"series {uid} ({desc}): excluded by description rules")
            continue
        if len(headers) < rules.min_slices:
            notes.append(f"series {uid} ({desc}): only {len(headers)} slices")
            continue
        found.append(_Candidate(uid, headers, desc, normal, dev, score))
    found.sort(key=lambda c: (-c.t2_score, c.deviation_deg, -len(c.headers)))
    return found, study_uid, notes


def _rescaled(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    img = stored.astype(np.float32) * slope + intercept
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        img = img.max() + img.min() - img
    return img


def load_series(cand: _Candidate, study_uid: str, rules: SeriesRules) -> SelectionResult:
    """Decode and sort one candidate series; drop undecodable slices with a warning."""
    warnings: list[str] = []
    entries: list[tuple[float, Dataset, np.ndarray]] = []
    shape: tuple[int, int] | None = None
    for path, _header in cand.headers:
        try:
            ds = dcmread(path)
            stored = decode_stored_pixels(ds)
            if stored.ndim != 2:
                raise ValueError(f"expected one frame, got shape {stored.shape}")
            img = _rescaled(ds, stored)
            pos = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - a bad slice is dropped, never raised
            warnings.append(f"slice {path.name} dropped: {type(exc).__name__}: {exc}"[:300])
            continue
        if shape is None:
            shape = img.shape
        if img.shape != shape:
            warnings.append(f"slice {path.name} dropped: size {img.shape} differs from {shape}")
            continue
        entries.append((float(pos @ cand.normal), ds, img))
    if len(entries) < rules.min_slices:
        return SelectionResult(
            None,
            f"series {cand.series_uid}: only {len(entries)} decodable slices "
            f"(need {rules.min_slices})",
            study_uid,
            warnings,
        )
    entries.sort(key=lambda e: e[0])
    dists = np.array([e[0] for e in entries])
    steps = np.diff(dists)
    first = entries[0][1]
    thickness = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 0)) or 0)
    spacing = float(np.median(steps)) if len(steps) else thickness
    if np.any(steps < 1e-3):
        warnings.append("duplicate slice positions")
    elif spacing > 0 and np.any(np.abs(steps - spacing) > 0.1 * spacing):
        gaps = int(np.sum(steps > 1.5 * spacing))
        msg = "unevenly spaced slices"
        if gaps:
            msg += f" ({gaps} gap(s): missing slices?)"
        warnings.append(msg)
    iop = [float(v) for v in first.ImageOrientationPatient]
    ps = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]
    if "PixelSpacing" not in first:
        warnings.append("no PixelSpacing: assuming 1 mm")
    vol = SeriesVolume(
        study_instance_uid=study_uid,
        series_instance_uid=cand.series_uid,
        volume=np.stack([e[2] for e in entries]).astype(np.float32),
        sop_instance_uids=[str(e[1].SOPInstanceUID) for e in entries],
        positions=[tuple(float(v) for v in e[1].ImagePositionPatient) for e in entries],  # type: ignore[misc]
        row_direction=(iop[0], iop[1], iop[2]),
        column_direction=(iop[3], iop[4], iop[5]),
        pixel_spacing=(ps[0], ps[1]),
        slice_spacing=spacing,
        series_description=cand.description,
        warnings=warnings,
    )
    return SelectionResult(vol, "", study_uid, warnings)


def select_and_load(paths: Iterable[Path], rules: SeriesRules) -> SelectionResult:
    """The best usable sagittal T2 series of a study, or a not-applicable reason. Never raises."""
    try:
        found, study_uid, notes = candidates(paths, rules)
    except Exception as exc:  # noqa: BLE001
        return SelectionResult(None, f"series selection failed: {type(exc).__name__}: {exc}")
    if not found:
        detail = "; ".join(notes[:5]) if notes else "no image series"
        return SelectionResult(None, f"no sagittal T2 series ({detail})", study_uid, notes)
    last = SelectionResult(None, "no loadable series", study_uid, notes)
    for cand in found:
        result = load_series(cand, study_uid, rules)
        if result.volume is not None:
            return result
        last = SelectionResult(None, result.reason, study_uid, notes + result.warnings)
    return last
