"""Pick a study's sagittal T2 series and load it as a geometry-sorted float volume.

Orientation comes from Image Orientation (Patient) (PS3.3 C.7.6.2.1.1): the slice normal is the
cross product of the row and column direction cosines; a sagittal slice has its normal along the
patient L-R (x) axis. Slices are sorted by the projection of Image Position (Patient) on that
normal. Pixel data are decoded only through :func:`scp_node.codecs.decode_pixels` and rescaled
with Rescale Slope / Intercept (PS3.3 C.11.1.1.2); MONOCHROME1 is inverted (PS3.3 C.7.6.3.1.2).

Multi-frame MR (Enhanced MR, Legacy Converted Enhanced MR, any image with functional groups) is a
candidate like any series: each frame is one slice, with its geometry, rescale and echo time from
the Per-frame / Shared Functional Groups (PS3.3 C.7.6.16, :mod:`scp_node.multiframe`). A series
may mix single-frame and multi-frame instances; all its frames are sorted together, and
``SeriesVolume.frame_numbers`` keeps each slice's Referenced Frame Number.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from scp_node.config import SeriesRules
from scp_node.multiframe import (
    ImageFrame,
    converted_value,
    echo_time_ms,
    has_functional_groups,
    image_frames,
    is_multiframe,
    number_of_frames,
)
from scp_node.slices import SliceDecodeError, SliceStack, named

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
    Slice ``k`` is instance ``sop_instance_uids[k]``, frame ``frame_numbers[k]`` (1-based
    Referenced Frame Number of a multi-frame instance, None for a single-frame instance; all None
    when not given).
    """

    study_instance_uid: str
    series_instance_uid: str
    volume: np.ndarray | SliceStack
    sop_instance_uids: list[str]
    positions: list[tuple[float, float, float]]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    series_description: str = ""
    warnings: list[str] = field(default_factory=list)
    frame_numbers: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.frame_numbers:
            self.frame_numbers = [None] * len(self.sop_instance_uids)
        if len(self.frame_numbers) != len(self.sop_instance_uids):
            raise ValueError("frame_numbers and sop_instance_uids differ in length")

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
    retry: Callable[[int, str], SelectionResult] | None = field(
        default=None, repr=False, compare=False
    )

    def without_slice(self, index: int, message: str) -> SelectionResult:
        """The selection made again as if slice ``index`` of the volume (undecodable:
        ``message``) had been dropped from the start; a lazily planned selection only."""
        if self.retry is None:
            raise ValueError("only a selection from select_series can drop a slice")
        return self.retry(index, message)


@dataclass
class _Candidate:
    series_uid: str
    frames: list[ImageFrame]
    description: str
    orientation: tuple[float, ...]
    normal: np.ndarray
    deviation_deg: float
    t2_score: int
    notes: list[str] = field(default_factory=list)
    other_region: bool = False  # named, or placed, as another station of the spine
    derived: bool = False  # Image Type DERIVED: a reformat or computed image
    dixon_rank: int = 0  # 0 not Dixon or its in-phase image, then water, opposed-phase


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


def _words(text: str) -> set[str]:
    """The lower-cased whole words of a name (split at anything not a letter or digit)."""
    return set(re.split(r"[^a-z0-9]+", text.lower())) - {""}


def _names(ds: Dataset) -> tuple[str, str]:
    """(Series Description, the other names: Protocol, Sequence, Pulse Sequence Name)."""
    description = str(converted_value(ds, 0, "SeriesDescription") or "")
    others = ("ProtocolName", "SequenceName", "PulseSequenceName")
    return description, " ".join(str(converted_value(ds, 0, key) or "") for key in others)


def _image_type(ds: Dataset) -> list[str]:
    """Image Type (PS3.3 C.7.6.1.1.2) values, upper-case; [] when absent."""
    return [str(v).strip().upper() for v in _values(converted_value(ds, 0, "ImageType"))]


def fat_suppressed(ds: Dataset, lowered_text: str, rules: SeriesRules) -> bool:
    """Whether a series says it is fat-suppressed or a Dixon image: Scan Options FS (fat
    saturation, PS3.3 C.8.3.1.1.4) or a whole word of ``rules.description_deprefer`` in its
    lower-cased names (whole words: "fs" is not the "FS" inside GE's "FRFSE")."""
    if any(str(option).strip().upper() == "FS" for option in _values(ds.get("ScanOptions"))):
        return True
    words = _words(lowered_text)
    return any(word.lower() in words for word in rules.description_deprefer)


#: Words (of a name or of Image Type) marking one image of a Dixon set: Siemens "..._dixon_W"
#: (Image Type DERIVED\PRIMARY\DIXON\WATER), GE FLEX ("WATER: Sag T2 FLEX"), GE IDEAL, Philips
#: mDIXON (Image Type ...\W, \F, \IP, \OP), Enhanced MR (Image Type value 4, the derived pixel
#: contrast, WATER or FAT; PS3.3 C.8.16.1).
_DIXON_MARKS = {"dixon", "mdixon", "flex", "ideal"}
_DIXON_TYPES = {"dixon", "w", "f", "ip", "op", "water", "fat", "in_phase", "out_phase", "opp_phase"}
#: The image of a Dixon set each word names, best first for a localizer trained on plain T2: the
#: in-phase image is a plain T2, the water image a fat-suppressed one, the opposed-phase image
#: has dark fat-water boundaries, and the fat image shows no T2 anatomy worth reading.
DIXON_IMAGES: dict[str, tuple[str, ...]] = {
    "in-phase": ("in", "ip", "inphase", "in_phase"),
    "water": ("w", "water"),
    "opposed-phase": (
        *("opp", "op", "out", "outphase", "oop", "opposed"),
        *("out_phase", "opp_phase", "out_of_phase"),
    ),
    "fat": ("f", "fat"),
}


def dixon_image(ds: Dataset) -> str | None:
    """Which image of a Dixon set a series is (a key of :data:`DIXON_IMAGES`), or None when it
    is not marked as a Dixon image (by a name or by Image Type)."""
    description, others = _names(ds)
    words = _words(f"{description} {others}")
    image_type = [v.lower() for v in _image_type(ds)]
    types = set(image_type[2:])  # values 3 on: value 1-2 are ORIGINAL/DERIVED, PRIMARY/SECONDARY
    marked_by_type = bool(types & _DIXON_TYPES)
    if not (words & _DIXON_MARKS or marked_by_type):
        return None
    for said in (types, words):  # Image Type first: it is written by the scanner
        for image, names in DIXON_IMAGES.items():
            if said & set(names):
                return image
    return None


def is_localizer(ds: Dataset, rules: SeriesRules) -> bool:
    """A scout/localizer series: Image Type value 3 LOCALIZER (PS3.3 C.7.6.1.1.2, C.8.13.1.1.1)
    or a whole word of ``rules.localizer_words`` in its names ("3-plane loc", "Survey")."""
    if "LOCALIZER" in _image_type(ds)[2:]:
        return True
    description, others = _names(ds)
    words = _words(f"{description} {others}")
    return any(word.lower() in words for word in rules.localizer_words)


def lossy_note(headers: Sequence[Dataset]) -> str:
    """A warning when a series' images were lossy compressed: Lossy Image Compression "01"
    (PS3.3 C.7.6.1.1.5, with its ratio and method when given; the value stays "01" through any
    later conversion). The screen was made and measured on losslessly stored images."""
    for ds in headers:
        if str(ds.get("LossyImageCompression", "")).strip() != "01":
            continue
        # peer-supplied values: at most three of each, methods as CS characters, 16 at most
        ratios = _values(ds.get("LossyImageCompressionRatio"))[:3]
        details = [f"{float(r):.0f}:1" for r in ratios if _plausible_ratio(r)]
        methods = _values(ds.get("LossyImageCompressionMethod"))[:3]
        details += [re.sub(r"[^A-Z0-9_ ]", "?", str(m).upper())[:16] for m in methods]
        detail = f" ({', '.join(details)})" if details else ""
        return (
            f"images lossy compressed{detail}: the screen was made and measured on losslessly "
            "stored images (docs/ingest.md)"
        )
    return ""


def _values(value: Any) -> list[Any]:
    """A DICOM value as a list ([] when absent)."""
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) or not isinstance(value, Sequence) else list(value)


def _plausible_ratio(value: Any) -> bool:
    """A compression ratio worth printing: a number from 1 to a million (a header's nonsense,
    1e300 say, would print 300 digits)."""
    try:
        return 1.0 <= float(value) <= 1e6
    except (TypeError, ValueError):
        return False


def is_derived(ds: Dataset) -> bool:
    """Image Type value 1 DERIVED (PS3.3 C.7.6.1.1.2): a reformat (MPR) or another image computed
    from the acquired ones; read only when no original acquisition is there."""
    image_type = _image_type(ds)
    return bool(image_type) and image_type[0] == "DERIVED"


#: Echo time (ms) from which an MR image is T2-weighted; a series whose names say nothing of
#: its weighting and whose echo is shorter (T1, proton density, a gradient-echo scout) is not
#: read as the T2.
T2_MIN_ECHO_MS = 60.0


def series_echo_ms(ds: Dataset) -> float | None:
    """Echo Time, or the longest Effective Echo Time of the frames of a multi-frame image."""
    if is_multiframe(ds):
        echoes = [echo_time_ms(ds, i) for i in range(number_of_frames(ds))]
        return max((e for e in echoes if e is not None), default=None)
    return echo_time_ms(ds)


def why_not_t2(ds: Dataset, rules: SeriesRules) -> str:
    """Why a series is never read as the sagittal T2 ("" when it may be): a localizer, a name
    that excludes it (:func:`t2_score`), the fat image of a Dixon set, or a short echo time with
    names that say nothing of the weighting."""
    if is_localizer(ds, rules):
        return "a localizer"
    if t2_score(ds, rules) < 0:
        return "excluded by description rules"
    if dixon_image(ds) == "fat":
        return "the fat image of a Dixon set"
    description, others = _names(ds)
    echo = series_echo_ms(ds)
    named = _names_t2(description, rules) or _names_t2(others, rules)
    if not named and echo is not None and echo < T2_MIN_ECHO_MS:
        return f"echo time {echo:g} ms and no name saying T2: not T2-weighted"
    return ""


#: Weightings whose names together mark a name as the exam's, not one series' ("L-SPINE T1 T2").
_EXAM_WEIGHTINGS = ("t1", "t2")


def _names_t2(text: str, rules: SeriesRules) -> int | None:
    """What one name says of a series: 1 a T2, -1 excluded (T1, STIR, TIRM, ...), 0 nothing
    decisive (it names both T1 and T2: an exam's protocol), None nothing at all."""
    lowered = text.lower()
    if all(weighting in lowered for weighting in _EXAM_WEIGHTINGS):
        return 0
    if any(word.lower() in lowered for word in rules.description_exclude):
        return -1
    if any(word.lower() in lowered for word in rules.description_include):
        return 1
    return None


def t2_score(ds: Dataset, rules: SeriesRules) -> int:
    """How T2-like a series looks: -1 excluded, 0 unknown, >0 matched (text or echo time), one
    less for a fat-suppressed or Dixon series (:func:`fat_suppressed`), so a plain T2 is chosen
    first.

    Text: Series Description decides when it names a weighting; only when it is silent do the
    Protocol Name and the Sequence Name (Pulse Sequence Name of Enhanced MR, PS3.3 C.8.13.4)
    speak. Some scanners write the exam's protocol ("L-SPINE T1 T2") into Protocol Name of every
    series, so a name that says both T1 and T2 decides nothing. Echo time: Echo Time, or the
    longest Effective Echo Time of the frames (MR Echo macro, PS3.3 C.8.13.5.2) of a multi-frame
    image.
    """
    description, other_text = _names(ds)
    said = _names_t2(description, rules)
    if not said:  # silent, or naming the exam: the other names may say more
        said = _names_t2(other_text, rules)
    if said == -1:
        return -1
    score = 2 if said == 1 else 0
    if fat_suppressed(ds, f"{description} {other_text}".lower(), rules):
        score -= 1
    echo = series_echo_ms(ds)
    if echo is not None and echo >= T2_MIN_ECHO_MS:  # T2 weighting: long TE (ms)
        score += 1
    return score


#: Body Part Examined values (PS3.16 CID 4031) of the spine above the lumbar region.
_UPPER_BODY_PARTS = {"CSPINE", "TSPINE", "NECK", "CTSPINE"}
#: Whole words of a name of a spine station above the lumbar one (English and German).
_UPPER_REGION = re.compile(
    r"(?<![a-z])([ct][\s_-]?spine|cervical|thoracic|dorsal|hws|bws)(?![a-z])"
)
#: A sagittal series centred this far above the study's lowest one is an upper station (mm).
STATION_SEPARATION_MM = 150.0


def names_upper_region(ds: Dataset) -> bool:
    """Whether a series says it images the cervical or thoracic spine: Body Part Examined
    (PS3.3 C.7.3.1) or its Series Description ("SAG T2 C-SPINE", "t2_tse_sag_HWS")."""
    if str(ds.get("BodyPartExamined", "")).strip().upper() in _UPPER_BODY_PARTS:
        return True
    return bool(_UPPER_REGION.search(str(ds.get("SeriesDescription", "")).lower()))


def _centre_z(frames: list[ImageFrame]) -> float | None:
    """Mean head-foot coordinate (patient z, mm) of the frames' image centres."""
    zs = []
    for f in frames:
        if f.position is None or f.orientation is None or f.pixel_spacing is None:
            continue
        half_cols = ((f.columns or 1) - 1) / 2.0 * f.pixel_spacing[1]
        half_rows = ((f.rows or 1) - 1) / 2.0 * f.pixel_spacing[0]
        zs.append(f.position[2] + f.orientation[2] * half_cols + f.orientation[5] * half_rows)
    return float(np.mean(zs)) if zs else None


def _mark_upper_stations(found: list[_Candidate], frames_of_reference: dict[int, str]) -> None:
    """A multi-station spine exam (cervical, thoracic, lumbar sagittal T2 in one frame of
    reference, PS3.3 C.7.4.1): a candidate centred more than :data:`STATION_SEPARATION_MM`
    above the lowest one of its frame of reference is an upper station, not the lumbar spine.
    ``frames_of_reference``: each candidate's (by ``id``) Frame of Reference UID."""
    centres = {id(c): _centre_z(c.frames) for c in found}
    lowest: dict[str, float] = {}
    for c in found:
        z, ref = centres[id(c)], frames_of_reference.get(id(c), "")
        if z is not None and ref:
            lowest[ref] = min(lowest.get(ref, z), z)
    for c in found:
        z, ref = centres[id(c)], frames_of_reference.get(id(c), "")
        if z is not None and ref in lowest and z - lowest[ref] > STATION_SEPARATION_MM:
            c.other_region = True
            c.notes.append(f"{z - lowest[ref]:.0f} mm above the lowest sagittal series")


def _read_header(path: Path) -> Dataset | None:
    try:
        return dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - unreadable files are reported, not raised
        log.warning("unreadable DICOM file %s: %s", path.name, exc)
        return None


def _is_image(ds: Dataset, orientation: bool = True) -> bool:
    """An image (not an SR, KO, PR, ...) with rows and columns and, with ``orientation``, a plane
    (Image Orientation (Patient), or functional groups that may hold it)."""
    sop_class = str(ds.get("SOPClassUID", ""))
    if any(sop_class.startswith(p) for p in _NON_IMAGE_PREFIXES):
        return False
    if "Rows" not in ds or "Columns" not in ds:
        return False
    return not orientation or "ImageOrientationPatient" in ds or has_functional_groups(ds)


#: Frames whose slice normals differ by more than this are not one stack (degrees).
ORIENTATION_TOLERANCE_DEG = 1.0
#: Frames whose Pixel Spacing differs by more than this fraction are not one stack.
SPACING_TOLERANCE = 0.01


def _angle_deg(a: Sequence[float], b: Sequence[float]) -> float:
    """Largest angle between the row, column directions of two orientations (degrees)."""
    worst = 0.0
    for i in (0, 3):
        u, v = (
            np.asarray(a[i : i + 3], dtype=np.float64),
            np.asarray(b[i : i + 3], dtype=np.float64),
        )
        cos = float(u @ v) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-12)
        worst = max(worst, math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    return worst


def _longest_echo(frames: list[ImageFrame]) -> tuple[list[ImageFrame], list[str]]:
    """Of a series with several echo times (e.g. a dual-echo PD/T2 acquisition, PS3.3
    C.8.13.5.2), the frames of the longest echo (the T2-weighted ones), and a note."""
    echoes = sorted({round(f.echo_time, 3) for f in frames if f.echo_time is not None})
    if len(echoes) < 2:
        return frames, []
    longest = echoes[-1]
    kept = [f for f in frames if f.echo_time is None or round(f.echo_time, 3) == longest]
    note = (
        f"{len(frames) - len(kept)} image(s) with shorter echo times "
        f"({', '.join(f'{e:g}' for e in echoes[:-1])} ms) left out; "
        f"kept echo time {longest:g} ms"
    )
    return kept, [note]


def _main_orientation(frames: Sequence[ImageFrame]) -> tuple[float, ...] | None:
    """The orientation most frames share (within :data:`ORIENTATION_TOLERANCE_DEG`)."""
    groups: list[tuple[tuple[float, ...], int]] = []
    for frame in frames:
        if frame.orientation is None:
            continue
        for i, (orientation, count) in enumerate(groups):
            if _angle_deg(orientation, frame.orientation) <= ORIENTATION_TOLERANCE_DEG:
                groups[i] = (orientation, count + 1)
                break
        else:
            groups.append((frame.orientation, 1))
    if not groups:
        return None
    return max(groups, key=lambda g: g[1])[0]


def _stacks(frames: list[ImageFrame]) -> list[tuple[str, list[ImageFrame]]]:
    """A series' frames split by Stack ID (PS3.3 C.7.6.16.2.2) when its multi-frame images hold
    several stacks, each with a note naming it; otherwise ``[("", frames)]``."""
    ids = list(dict.fromkeys(f.stack for f in frames))
    if len(ids) < 2:
        return [("", frames)]
    return [
        (
            f" (stack {sid or 'without Stack ID'} of {len(ids)})",
            [f for f in frames if f.stack == sid],
        )
        for sid in ids
    ]


def _without_repeats(frames: list[ImageFrame]) -> tuple[list[ImageFrame], list[str]]:
    """The frames with each instance frame once (the same SOP Instance UID received twice, e.g.
    sent again under another file name), and a note when some were repeats."""
    seen: set[tuple[str, int | None]] = set()
    unique: list[ImageFrame] = []
    for frame in frames:
        key = (frame.sop_instance_uid, frame.frame_number)
        if key not in seen:
            seen.add(key)
            unique.append(frame)
    if len(unique) == len(frames):
        return frames, []
    return unique, [f"{len(frames) - len(unique)} repeated instance(s) read once"]


def candidates(
    paths: Iterable[Path], rules: SeriesRules
) -> tuple[list[_Candidate], str, list[str]]:
    """Sagittal candidate series, best first; plus the study UID and notes on what was skipped.

    Only headers are read. A multi-frame instance contributes one slice per frame; the series'
    orientation is the one most of its frames share.
    """
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
            if _is_image(ds, orientation=False):  # pixels without a plane: say so, once a series
                note = f"series {ds.get('SeriesInstanceUID', '')}: no ImageOrientationPatient"
                if note not in notes:
                    notes.append(note)
            continue
        samples = ds.get("SamplesPerPixel", 1)
        if samples not in (None, "", 1):  # colour (a fused or derived picture), not grayscale MR
            note = f"series {ds.get('SeriesInstanceUID', '')}: {samples} samples per pixel"
            if note not in notes:
                notes.append(note)
            continue
        by_series[str(ds.get("SeriesInstanceUID", ""))].append((Path(path), ds))
    found: list[_Candidate] = []
    frames_of_reference: dict[int, str] = {}
    for uid, headers in by_series.items():
        first = headers[0][1]
        desc = str(first.get("SeriesDescription", ""))
        frames = [frame for path, ds in headers for frame in image_frames(ds, path)]
        frames, repeat_note = _without_repeats(frames)
        frames, echo_note = _longest_echo(frames)
        echo_note = repeat_note + echo_note
        orientation = _main_orientation(frames)
        try:
            if orientation is None:
                raise ValueError("no ImageOrientationPatient")
            dev = deviation_from_sagittal_deg(orientation)
            normal = slice_normal(orientation)
        except (ValueError, TypeError):
            notes.append(f"series {uid}: invalid ImageOrientationPatient")
            continue
        if dev > rules.max_normal_deviation_deg:
            notes.append(f"series {uid} ({desc}): not sagittal ({dev:.0f} deg from L-R normal)")
            continue
        why = why_not_t2(first, rules)
        if why:
            notes.append(f"series {uid} ({desc}): {why}")
            continue
        score = t2_score(first, rules)
        dixon = dixon_image(first)
        lossy = lossy_note([ds for _, ds in headers])
        if lossy:
            echo_note = [*echo_note, lossy]
        for stack_note, stack in _stacks(frames):
            if len(stack) < rules.min_slices:
                notes.append(f"series {uid} ({desc}): only {len(stack)} slices{stack_note}")
                continue
            cand = _Candidate(uid, stack, desc, orientation, normal, dev, score, list(echo_note))
            if stack_note:
                cand.notes.append(f"read{stack_note}")
            cand.other_region = names_upper_region(first)
            cand.derived = is_derived(first)
            cand.dixon_rank = list(DIXON_IMAGES).index(dixon) if dixon else 0
            frames_of_reference[id(cand)] = str(first.get("FrameOfReferenceUID", ""))
            found.append(cand)
    _mark_upper_stations(found, frames_of_reference)
    # a T2 of the lumbar station before a plainer T2 of another station: anatomy first; an
    # acquired series before a reformat of it, a Dixon set's in-phase image before its water image
    found.sort(
        key=lambda c: (
            c.t2_score <= 0,
            c.other_region,
            -c.t2_score,
            c.derived,
            c.dixon_rank,
            c.deviation_deg,
            -len(c.frames),
        )
    )
    return found, study_uid, notes


def _check_frame(frame: ImageFrame, cand: _Candidate, spacing: tuple[float, float] | None) -> str:
    """Why ``frame`` does not fit the candidate's stack ("" when it fits)."""
    if frame.orientation is None:
        return "no ImageOrientationPatient"
    angle = _angle_deg(frame.orientation, cand.orientation)
    if angle > ORIENTATION_TOLERANCE_DEG:
        return f"orientation differs from the series by {angle:.1f} deg"
    if frame.position is None:
        return "no ImagePositionPatient"
    if frame.pixel_spacing is None:  # Type 1 in MR (PS3.3 C.7.6.2): no physical size without it
        return "no PixelSpacing"
    if spacing is not None and frame.pixel_spacing is not None:
        ratio = np.asarray(frame.pixel_spacing) / np.maximum(np.asarray(spacing), 1e-9)
        if np.any(np.abs(ratio - 1.0) > SPACING_TOLERANCE):
            return f"PixelSpacing {list(frame.pixel_spacing)} differs from {list(spacing)}"
    return ""


def _common_grid(
    cand: _Candidate,
) -> tuple[tuple[float, float] | None, tuple[int, int] | None]:
    """The (Pixel Spacing, (Rows, Columns)) most of the candidate's well-oriented frames share,
    the first frame's of equals: the stack's grid, whatever frame comes first."""
    counts: dict[tuple[tuple[float, float] | None, tuple[int, int]], int] = {}
    for frame in cand.frames:
        if _check_frame(frame, cand, None):
            continue
        spacing = frame.pixel_spacing
        key = (
            None if spacing is None else (round(spacing[0], 4), round(spacing[1], 4)),
            (frame.rows or 0, frame.columns or 0),
        )
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None, None
    return max(counts, key=lambda k: counts[k])  # the first of equal counts


def _plan(cand: _Candidate) -> tuple[list[ImageFrame], tuple[int, int] | None, list[str]]:
    """Header checks: the frames that fit the candidate's stack (in its order), the image size
    (Rows, Columns most frames share), and a warning for each frame left out."""
    warnings: list[str] = list(cand.notes)
    fit: list[ImageFrame] = []
    spacing, shape = _common_grid(cand)
    for frame in cand.frames:
        problem = _check_frame(frame, cand, spacing)
        size = (frame.rows or 0, frame.columns or 0)
        if not problem and shape is not None and size != shape:
            problem = f"size {size} differs from {shape}"
        if problem:
            warnings.append(f"{named(frame)} dropped: {problem}"[:300])
            continue
        fit.append(frame)
    fit, repeats = _one_acquisition(fit, cand.normal)
    return fit, shape, warnings + repeats


#: Slices closer than this along the slice normal are at the same position (mm).
SAME_POSITION_MM = 1e-3


def along_normal(frame: ImageFrame, normal: np.ndarray) -> float:
    """Where a frame lies along the stack: Image Position (Patient) projected on the normal."""
    return float(np.asarray(frame.position, dtype=np.float64) @ normal)


def _one_acquisition(
    frames: list[ImageFrame], normal: np.ndarray
) -> tuple[list[ImageFrame], list[str]]:
    """Of a series that holds a repeated acquisition at the same slice positions (a rescan after
    the patient moved, kept in the series), the frames of one acquisition: the one with the most
    frames, the later (higher Acquisition Number) of equals, so a complete rescan is read. A series
    whose acquisitions do not repeat positions (several packages of one stack), or whose repeats
    carry no distinct numbers, is left as it is (:func:`_assemble` warns of duplicates)."""
    numbers = {f.acquisition for f in frames if f.acquisition is not None}
    if len(numbers) < 2 or any(f.acquisition is None for f in frames):
        return frames, []
    offsets = np.sort([along_normal(f, normal) for f in frames])
    if not np.any(np.diff(offsets) < SAME_POSITION_MM):
        return frames, []
    counts = {n: sum(f.acquisition == n for f in frames) for n in numbers}
    kept_number = max(numbers, key=lambda n: (counts[n], n))
    kept = [f for f in frames if f.acquisition == kept_number]
    others = ", ".join(str(n) for n in sorted(numbers - {kept_number}))
    note = (
        f"{len(frames) - len(kept)} image(s) of acquisition(s) {others} repeat the positions of "
        f"acquisition {kept_number}; only acquisition {kept_number} is read"
    )
    return kept, [note]


def _assemble(
    cand: _Candidate,
    study_uid: str,
    rules: SeriesRules,
    frames: list[ImageFrame],
    pixels: Callable[[list[ImageFrame]], np.ndarray | SliceStack],
    warnings: list[str],
) -> SelectionResult:
    """Sort ``frames`` along the slice normal, check the spacing, and make the volume."""
    if len(frames) < rules.min_slices:
        return SelectionResult(
            None,
            f"series {cand.series_uid}: only {len(frames)} usable slices (need {rules.min_slices})",
            study_uid,
            warnings,
        )
    entries = sorted(
        ((along_normal(f, cand.normal), f) for f in frames),
        key=lambda e: e[0],
    )
    dists = np.array([e[0] for e in entries])
    steps = np.diff(dists)
    positions = 1 + int(np.sum(steps >= SAME_POSITION_MM))
    if positions < rules.min_slices:
        return SelectionResult(
            None,
            f"series {cand.series_uid}: its {len(frames)} slices lie at {positions} "
            f"position(s) along the slice normal (need {rules.min_slices}; Image Position "
            "(Patient) repeated?)",
            study_uid,
            warnings,
        )
    first = entries[0][1]
    thickness = first.spacing_between_slices or first.slice_thickness or 0.0
    spacing_mm = float(np.median(steps)) if len(steps) else thickness
    if np.any(steps < SAME_POSITION_MM):
        warnings.append("duplicate slice positions")
    elif spacing_mm > 0 and np.any(np.abs(steps - spacing_mm) > 0.1 * spacing_mm):
        gaps = int(np.sum(steps > 1.5 * spacing_mm))
        msg = "unevenly spaced slices"
        if gaps:
            msg += f" ({gaps} gap(s): missing slices?)"
        warnings.append(msg)
    iop = cand.orientation
    ps = first.pixel_spacing
    if ps is None:  # not after _plan, which leaves such frames out
        return SelectionResult(None, f"series {cand.series_uid}: no PixelSpacing", study_uid)
    ordered = [e[1] for e in entries]
    vol = SeriesVolume(
        study_instance_uid=study_uid,
        series_instance_uid=cand.series_uid,
        volume=pixels(ordered),
        sop_instance_uids=[f.sop_instance_uid for f in ordered],
        positions=[f.position for f in ordered],  # type: ignore[misc]
        row_direction=(iop[0], iop[1], iop[2]),
        column_direction=(iop[3], iop[4], iop[5]),
        pixel_spacing=(ps[0], ps[1]),
        slice_spacing=spacing_mm,
        series_description=cand.description,
        warnings=warnings,
        frame_numbers=[f.frame_number for f in ordered],
    )
    return SelectionResult(vol, "", study_uid, warnings)


def load_series(
    cand: _Candidate, study_uid: str, rules: SeriesRules, threads: int = 0
) -> SelectionResult:
    """Decode and sort one candidate series; drop undecodable or misfit slices with a warning.

    Every slice is decoded here (``threads`` at a time; each instance file read once, whatever
    number of frames it holds); only the rescaled float32 frames are kept. Frames whose
    orientation or pixel spacing differs from the series' (PS3.3 C.7.6.16.2.1-2), or whose size
    differs, are dropped with a warning. The analysis uses :func:`plan_series` instead.
    """
    frames, shape, warnings = _plan(cand)
    images: dict[int, np.ndarray] = {}
    if frames and shape is not None:
        stack = SliceStack(frames, shape, threads)
        with contextlib.suppress(SliceDecodeError):  # every failure is in stack.failed
            stack.load(range(len(frames)))
        warnings += [stack.failed[k] for k in sorted(stack.failed)]
        images = {id(frames[k]): stack[k] for k in range(len(frames)) if k not in stack.failed}
        frames = [f for f in frames if id(f) in images]

    def stacked(ordered: list[ImageFrame]) -> np.ndarray:
        return np.stack([images[id(f)] for f in ordered]).astype(np.float32, copy=False)

    return _assemble(cand, study_uid, rules, frames, stacked, warnings)


def plan_series(
    cand: _Candidate,
    study_uid: str,
    rules: SeriesRules,
    threads: int = 0,
    dropped: Mapping[tuple[Path, int | None], str] | None = None,
) -> SelectionResult:
    """One candidate series from its headers alone: its volume is a :class:`SliceStack` that
    decodes a slice when the model first asks for it. ``dropped``: (file, frame) -> warning of
    slices already found undecodable, left out."""
    frames, shape, warnings = _plan(cand)
    dropped = dropped or {}
    warnings += [msg for f in frames if (msg := dropped.get((f.path, f.frame_number)))]
    frames = [f for f in frames if (f.path, f.frame_number) not in dropped]
    size = shape or (0, 0)
    return _assemble(
        cand, study_uid, rules, frames, lambda ordered: SliceStack(ordered, size, threads), warnings
    )


def _first_plan(
    found: list[_Candidate],
    study_uid: str,
    notes: list[str],
    rules: SeriesRules,
    threads: int,
    dropped: dict[tuple[Path, int | None], str],
) -> SelectionResult:
    """The first candidate with enough usable slices, planned; it knows how to drop a slice."""
    last = SelectionResult(None, "no loadable series", study_uid, notes)
    for i, cand in enumerate(found):
        result = plan_series(cand, study_uid, rules, threads, dropped)
        if result.volume is not None:
            stack = result.volume.volume
            assert isinstance(stack, SliceStack)

            def retry(index: int, message: str, stack: SliceStack = stack, i: int = i) -> Any:
                frame = stack.frames[index]
                more = {**dropped, (frame.path, frame.frame_number): message}
                return _first_plan(found[i:], study_uid, notes, rules, threads, more)

            result.retry = retry
            return result
        last = SelectionResult(None, result.reason, study_uid, notes + result.warnings)
    return last


def _candidates_or_reason(
    paths: Iterable[Path], rules: SeriesRules
) -> tuple[list[_Candidate], str, list[str]] | SelectionResult:
    """(candidates best first, study UID, notes), or the not-applicable result when no series
    can be a candidate (or reading the headers failed)."""
    try:
        found, study_uid, notes = candidates(paths, rules)
    except Exception as exc:  # noqa: BLE001
        return SelectionResult(None, f"series selection failed: {type(exc).__name__}: {exc}")
    if not found:
        detail = "; ".join(notes[:5]) if notes else "no image series"
        return SelectionResult(None, f"no sagittal T2 series ({detail})", study_uid, notes)
    return found, study_uid, notes


def select_series(paths: Iterable[Path], rules: SeriesRules, threads: int = 0) -> SelectionResult:
    """Like :func:`select_and_load`, from headers alone: the volume decodes its slices on demand
    (:class:`SliceStack`). When a slice turns out undecodable, ``result.without_slice(k, why)``
    gives the selection made as if it had been dropped from the start. Never raises."""
    found = _candidates_or_reason(paths, rules)
    if isinstance(found, SelectionResult):
        return found
    cands, study_uid, notes = found
    return _first_plan(cands, study_uid, notes, rules, threads, {})


def select_and_load(paths: Iterable[Path], rules: SeriesRules, threads: int = 0) -> SelectionResult:
    """The best usable sagittal T2 series of a study, or a not-applicable reason. Never raises."""
    found = _candidates_or_reason(paths, rules)
    if isinstance(found, SelectionResult):
        return found
    cands, study_uid, notes = found
    last = SelectionResult(None, "no loadable series", study_uid, notes)
    for cand in cands:
        result = load_series(cand, study_uid, rules, threads)
        if result.volume is not None:
            return result
        last = SelectionResult(None, result.reason, study_uid, notes + result.warnings)
    return last
