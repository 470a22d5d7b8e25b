"""Header-convention sweep: real-vendor DICOM header conventions through the node's analysis path.

Baselines are phantom studies written by ``scp_node.phantom_dicom.write_phantom`` (seed 0 of
normal, lumbarization and sacralization and seed 1 of normal; ``--quick``: the first two), each
as a single-frame series and as one multi-frame instance. Every variant rewrites a copy of a
baseline with pydicom (a header convention, a vendor's series naming, a broken or mixed series),
screens it with ``scp_node.analysis.analyze_study`` (``Settings()`` defaults, the shipped weights,
CPU) and compares it with the unmodified single-frame baseline.

Each variant states what the node should do with it:

- ``same``: read the expected series (the baseline's unless named) and give the baseline's
  result. OK when score, disc centres (in-plane) and verdict agree; CHANGED when the right series
  is read but the result moves; PROBLEM when another series is read or the study is refused.
- ``series``: read the expected series; the result is reported, not graded (OK, else PROBLEM).
- ``refused``: not applicable, with a reason that contains the expected text. OK when so;
  CHANGED when refused for another reason or screened without a verdict (not assessable);
  PROBLEM when screened with a verdict.

An exception or a failed rewrite is a PROBLEM. Per-study results go to ``OUT/results.json`` and
``OUT/results.md``; the per-variant summary (the worst status over the baselines) is printed at
the end. The exit code is 0 whatever the outcome: this is a benchmark, not a test. About 2.5 min
on one CPU thread (``--quick``: half of it).

    python bench/header_sweep.py --out /tmp/hs [--quick] [--only dixon] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import build_engine, dicom_files, sagittal_error  # noqa: E402
from scp_node.analysis import analyze_study  # noqa: E402
from scp_node.phantom_dicom import write_phantom  # noqa: E402

BASES_FULL = [("normal", 0), ("lumbarization", 0), ("sacralization", 0), ("normal", 1)]
BASES_QUICK = [("normal", 0), ("lumbarization", 0)]

#: A variant of a ``same`` expectation differs from its baseline beyond these.
MAX_DSCORE = 1e-3
MAX_DISC_MM = 1.0

#: The phantoms' slice normal (patient x): disc errors are measured in the sagittal plane.
NORMAL = np.array([1.0, 0.0, 0.0])

Items = list[tuple[str, Dataset]]  # (file name, dataset) of every instance of a study


# ------------------------------------------------------------------------------------------------
# Expectations and the variant registry
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """What the node should do with a variant (see the module docstring)."""

    kind: str  # "same" | "series" | "refused"
    series: str | None = None  # the Series Instance UID to read; None: the baseline's
    reason: str = ""  # refused: text the not-applicable reason contains
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # series UID -> name, for the report


def same(note: str = "", series: str | None = None, labels: dict[str, str] | None = None) -> Expect:
    """The baseline's result, read from ``series`` (default: the baseline's series)."""
    return Expect("same", series=series, note=note, labels=labels or {})


def reads(series: str | None = None, note: str = "") -> Expect:
    """``series`` is read; the result may differ from the baseline."""
    return Expect("series", series=series, note=note)


def refused(reason: str, note: str = "") -> Expect:
    """Not applicable, with a reason containing ``reason``."""
    return Expect("refused", reason=reason, note=note)


Transform = Callable[[Items, np.random.Generator], tuple[Items, Expect]]


@dataclass(frozen=True)
class Variant:
    name: str
    group: str
    transform: Transform
    multiframe: bool = False


VARIANTS: dict[str, Variant] = {}


def variant(
    group: str, multiframe: bool = False, name: str | None = None
) -> Callable[[Transform], Transform]:
    """Register a transform under ``name`` (default: the function's name)."""

    def register(fn: Transform) -> Transform:
        key = name or fn.__name__
        VARIANTS[key] = Variant(key, group, fn, multiframe)
        return fn

    return register


# ------------------------------------------------------------------------------------------------
# Study I/O and dataset helpers
# ------------------------------------------------------------------------------------------------
def base_dir(root: Path, kind: str, seed: int, multiframe: bool = False) -> Path:
    """The baseline study folder, written on first use."""
    folder = root / f"{kind}{seed}{'_mf' if multiframe else ''}"
    if not (folder / "truth.json").exists():
        write_phantom(folder, kind, seed, multiframe=multiframe)
    return folder


def load(folder: Path) -> Items:
    """Every instance of a study folder (pixels included), in file-name order."""
    return [(p.name, dcmread(p)) for p in dicom_files(folder)]


def save(items: Items, dst: Path, src: Path) -> None:
    """Write ``items`` as a study folder ``dst`` (with ``src``'s truth.json)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copy(src / "truth.json", dst / "truth.json")
    for name, ds in items:
        ds.save_as(dst / name, enforce_file_format=False)


def renew(ds: Dataset, series: str | None = None) -> Dataset:
    """A new SOP Instance UID (and Series Instance UID when given)."""
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if series is not None:
        ds.SeriesInstanceUID = series
    return ds


def set_pixels(ds: Dataset, arr: np.ndarray) -> None:
    """Replace Pixel Data (and Rows, Columns) with ``arr``."""
    arr = np.ascontiguousarray(arr)
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.PixelData = arr.tobytes()


def px(ds: Dataset) -> np.ndarray:
    return ds.pixel_array.copy()


def halve(ds: Dataset) -> None:
    """Store a slice at half its matrix and twice its pixel size."""
    a = px(ds)
    set_pixels(ds, ((a[0::2, 0::2].astype(np.uint32) + a[1::2, 1::2]) // 2).astype(np.uint16))
    ds.PixelSpacing = [f"{2 * float(v):.6f}" for v in ds.PixelSpacing]


def copy_series(
    items: Items, description: str, prefix: str | None = None, **changes: Any
) -> tuple[Items, str]:
    """A copy of every image as a new series (file names: ``prefix`` or description + name)."""
    series = generate_uid()
    prefix = prefix or description.replace("/", "_").replace(" ", "_")
    out: Items = []
    for name, ds in items:
        d = renew(copy.deepcopy(ds), series)
        d.SeriesDescription = description
        for key, value in changes.items():
            setattr(d, key, value)
        out.append((f"{prefix}_{name}", d))
    return out, series


def axial(items: Items) -> Items:
    for _, ds in items:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    return items


def by_position(items: Items) -> Items:
    """Sorted along the slice normal as the phantom writes it (x decreasing)."""
    return sorted(items, key=lambda it: -float(it[1].ImagePositionPatient[0]))


def series_of(items: Items) -> str:
    return str(items[0][1].SeriesInstanceUID)


def only_instance(items: Items) -> Dataset:
    """The one multi-frame instance of a multi-frame baseline."""
    if len(items) != 1:
        raise ValueError(f"expected one multi-frame instance, got {len(items)}")
    return items[0][1]


# ------------------------------------------------------------------------------------------------
# 1 Instance Number and file names
# ------------------------------------------------------------------------------------------------
@variant("1 InstanceNumber")
def in_shuffled(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    perm = rng.permutation(len(items))
    for (_, ds), n in zip(items, perm, strict=True):
        ds.InstanceNumber = int(n) + 1
    return items, same()


@variant("1 InstanceNumber")
def in_reversed(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for i, (_, ds) in enumerate(items):
        ds.InstanceNumber = len(items) - i
    return items, same()


@variant("1 InstanceNumber")
def in_all_equal(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.InstanceNumber = 1
    return items, same()


@variant("1 InstanceNumber")
def files_named_by_uid_shuffled(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    perm = rng.permutation(len(items))
    renamed = [
        (f"{int(perm[i]):03d}_{ds.SOPInstanceUID}.dcm", ds) for i, (_, ds) in enumerate(items)
    ]
    return renamed, same()


# ------------------------------------------------------------------------------------------------
# 2 Missing and repeated slices
# ------------------------------------------------------------------------------------------------
@variant("2 slices")
def drop_middle_slice(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    del items[len(items) // 2]
    return items, same("the baseline's mid-sagittal slice is gone: a neighbour is read")


@variant("2 slices")
def drop_slice_3(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    del items[3]
    return items, same("an off-centre slice is gone")


@variant("2 slices")
def nonuniform_gap(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    for _, ds in items[len(items) // 2 + 2 :]:  # the slices beyond the middle 1.5 mm further
        p = [float(v) for v in ds.ImagePositionPatient]
        p[0] -= 1.5
        ds.ImagePositionPatient = [f"{v:.4f}" for v in p]
        ds.SliceLocation = f"{-p[0]:.4f}"
    return items, same("an 'unevenly spaced' warning")


@variant("2 slices")
def dup_same_sop_uid(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    name, ds = items[5]
    items.append((f"copy_of_{name}", copy.deepcopy(ds)))
    return items, same("an off-centre instance received twice (same SOP Instance UID)")


@variant("2 slices")
def dup_same_sop_uid_midline(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    name, ds = items[len(items) // 2]
    items.append((f"copy_of_{name}", copy.deepcopy(ds)))
    return items, same("the mid instance received twice (same SOP Instance UID): read once")


@variant("2 slices")
def dup_position_new_uid_midline(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    name, ds = items[len(items) // 2]
    items.append((f"dup_{name}", renew(copy.deepcopy(ds))))
    return items, same("the mid position twice under two SOP Instance UIDs")


@variant("2 slices")
def dup_whole_series_new_uids(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    extra = [(f"dup_{n}", renew(copy.deepcopy(ds))) for n, ds in items]
    return items + extra, same("every slice twice (re-sent with new UIDs, same acquisition)")


# ------------------------------------------------------------------------------------------------
# 3 Series names and character sets
# ------------------------------------------------------------------------------------------------
@variant("3 names")
def desc_latin1(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SeriesDescription = "LWS sag T2 Wirbelsäule"
    return items, same()


@variant("3 names")
def desc_utf8(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SeriesDescription = "LWS sag T2 Wirbelsäule"
        ds.ProtocolName = "LWS_sag_T2_Wirbelsäule"
    return items, same()


@variant("3 names")
def desc_utf8_without_charset(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        del ds.SpecificCharacterSet
        ds["SeriesDescription"] = DataElement(0x0008103E, "LO", "LWS sag T2 Wirbelsäule".encode())
    return items, same("UTF-8 bytes, no Specific Character Set (default repertoire)")


@variant("3 names")
def desc_latin1_bytes_declared_utf8(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds["SeriesDescription"] = DataElement(
            0x0008103E, "LO", "LWS T2 Wirbelsäule".encode("latin1")
        )
    return items, same("latin-1 bytes, ISO_IR 192 declared (invalid UTF-8)")


#: Series names of vendors' lumbar protocols: sagittal T2, T1, STIR and axial T2.
VENDOR_SETS = {
    "siemens": ("t2_tse_sag_384", "t1_tse_sag_320", "t2_tirm_sag", "t2_tse_tra_384"),
    "ge": ("Sag T2 FRFSE", "Sag T1 FSE", "Sag STIR", "Ax T2 FRFSE"),
    "ge2": ("SAG T2 FSE", "SAG T1 FLAIR", "SAG T2 STIR", "AX T2 FSE"),
    "philips": ("T2W_TSE SAG", "T1W_TSE SAG", "STIR SAG", "T2W_TSE TRA"),
    "philips2": ("sT2W/TSE", "sT1W/TSE", "sSTIR", "aT2W/TSE"),
    "canon": ("T2WI_SAG", "T1WI_SAG", "STIR_SAG", "T2WI_AX"),
    "german": ("LWS T2 sag", "LWS T1 sag", "LWS STIR sag", "LWS T2 tra"),
    "ge_fs_and_stir": ("Sag T2 FSE FS", "Sag T1 FSE", "Sag STIR", "Ax T2 FRFSE"),
}


def vendor_set(names: tuple[str, str, str, str]) -> Transform:
    """The baseline renamed as the vendor's T2, with T1, STIR and axial T2 decoys written first."""

    def transform(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
        t2, t1, stir, ax = names
        for _, ds in items:
            ds.SeriesDescription = t2
            ds.ProtocolName = t2
        decoys: Items = []
        for desc, te, tr, is_axial in (
            (t1, "12", "600", False),
            (stir, "60", "4000", False),
            (ax, "100", "4000", True),
        ):
            s, _ = copy_series(items, desc, EchoTime=te, RepetitionTime=tr, ProtocolName=desc)
            decoys += axial(s) if is_axial else s
        return decoys + items, same(f"'{t2}' among decoys", series=series_of(items))

    return transform


for _label, _names in VENDOR_SETS.items():
    variant("3 names", name=f"vendor_{_label}")(vendor_set(_names))


def dixon_set(suffixes: tuple[str, ...], with_plain: bool = False) -> Transform:
    """A Siemens Dixon set ``t2_tse_dixon_sag_<suffix>`` in the given file order, and the plain
    T2 named ``t2_tse_sag`` after it when ``with_plain``: the in-phase image (the plain T2) is
    read."""

    def transform(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
        out: Items = []
        labels: dict[str, str] = {}
        for i, suffix in enumerate(suffixes):
            s, uid = copy_series(items, f"t2_tse_dixon_sag_{suffix}", prefix=f"{i}_dixon_{suffix}")
            labels[uid] = f"Dixon {suffix}"
            out += s
        want = next(uid for uid, label in labels.items() if label == "Dixon in")
        if with_plain:
            want = series_of(items)
            labels[want] = "plain T2"
            for _, ds in items:
                ds.SeriesDescription = "t2_tse_sag"
            out += items
        return out, same("the in-phase image, never F (fat only)", want, labels)

    return transform


variant("3 names", name="dixon_F_first")(dixon_set(("F", "W", "in", "opp")))
variant("3 names", name="dixon_opp_first")(dixon_set(("opp", "in", "W", "F")))
variant("3 names", name="dixon_W_first")(dixon_set(("W", "F", "in", "opp")))
variant("3 names", name="dixon_in_first")(dixon_set(("in", "opp", "W", "F")))
variant("3 names", name="dixon_with_plain")(dixon_set(("F", "W", "in", "opp"), with_plain=True))


@variant("3 names")
def philips_mdixon_same_description(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    out: Items = []
    labels: dict[str, str] = {}
    for i, image in enumerate(("F", "W", "IP", "OP")):
        s, uid = copy_series(
            items,
            "T2W_TSE_mDIXON SAG",
            prefix=f"{i}_mdixon_{image}",
            ImageType=["ORIGINAL", "PRIMARY", image, image],
        )
        labels[uid] = f"mDIXON {image}"
        out += s
    want = next(uid for uid, label in labels.items() if label == "mDIXON IP")
    return out, same("Philips: the Dixon image only in Image Type; IP is read", want, labels)


@variant("3 names")
def t2_fs_only_plus_stir(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.SeriesDescription = "T2 SPAIR SAG"
    stir, _ = copy_series(items, "STIR SAG", EchoTime="60")
    return stir + items, same("the fat-suppressed T2, not the STIR", series=series_of(items))


# ------------------------------------------------------------------------------------------------
# 4 Pixel values
# ------------------------------------------------------------------------------------------------
@variant("4 pixels")
def signed16_offset(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        a = px(ds).astype(np.int32) - 2048
        ds.PixelRepresentation = 1
        set_pixels(ds, a.astype(np.int16))
    return items, same("an affine change of the values")


@variant("4 pixels")
def signed16_offset_intercept(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        a = px(ds).astype(np.int32) - 2048
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "2048"
        ds.RescaleSlope = "1"
        set_pixels(ds, a.astype(np.int16))
    return items, same()


@variant("4 pixels")
def bits12(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.BitsStored, ds.HighBit = 12, 11
    return items, same()


@variant("4 pixels")
def bits12_garbage_high_bits(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        a = px(ds).astype(np.uint16)
        a |= (rng.integers(0, 2, a.shape) * 0xF000).astype(np.uint16)
        ds.BitsStored, ds.HighBit = 12, 11
        set_pixels(ds, a)
    return items, same("bits 12-15 are not pixel data (PS3.5 8.1.1); artificial")


@variant("4 pixels")
def rescale_philips(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.RescaleSlope, ds.RescaleIntercept = "2.5", "-100"
    return items, same()


@variant("4 pixels")
def rescale_per_slice_differs(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for i, (_, ds) in enumerate(items):
        a = px(ds).astype(np.float64)
        slope = 1.0 + 0.25 * (i % 3)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope}", "0"
        set_pixels(ds, np.round(a / slope).astype(np.uint16))
    return items, same("a slope per slice (Philips per-image scaling)")


@variant("4 pixels")
def monochrome1(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    top = max(int(px(ds).max()) for _, ds in items)
    for _, ds in items:
        ds.PhotometricInterpretation = "MONOCHROME1"
        set_pixels(ds, (top - px(ds).astype(np.int32)).astype(np.uint16))
    return items, same()


@variant("4 pixels")
def bits8(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    top = max(int(px(ds).max()) for _, ds in items)
    for _, ds in items:
        a = np.round(px(ds).astype(np.float64) * 255.0 / top).astype(np.uint8)
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.WindowCenter, ds.WindowWidth = "128", "256"
        set_pixels(ds, a)
    return items, same("quantised to 8 bits: a small score change is expected")


@variant("4 pixels")
def window_multivalued(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.WindowCenter = ["1600", "800"]
        ds.WindowWidth = ["3200", "1600"]
        ds.WindowCenterWidthExplanation = ["NORMAL", "NARROW"]
    return items, same()


# ------------------------------------------------------------------------------------------------
# 5 Geometry
# ------------------------------------------------------------------------------------------------
@variant("5 geometry")
def iop_float_noise(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.ImageOrientationPatient = ["1e-06", "0.999999", "-1e-06", "2e-06", "1e-06", "-1"]
    return items, same()


@variant("5 geometry")
def iop_many_digits(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.ImageOrientationPatient = [
            "6.1232340e-017",
            "0.99999999999999",
            "-2.081668e-016",
            "-1.110223e-016",
            "1.2246468e-016",
            "-0.9999999999999",
        ]
        ds.ImagePositionPatient = [f"{float(v):.10f}"[:16] for v in ds.ImagePositionPatient]
    return items, same()


@variant("5 geometry")
def transposed_storage(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        iop = [float(v) for v in ds.ImageOrientationPatient]
        ds.ImageOrientationPatient = [f"{v:g}" for v in iop[3:] + iop[:3]]
        ps = list(ds.PixelSpacing)
        ds.PixelSpacing = [ps[1], ps[0]]
        set_pixels(ds, px(ds).T)
    return items, same("rows and columns swapped: the slice normal points the other way")


def store_reversed(ds: Dataset, along_rows: bool) -> None:
    """Store the pixels reversed along a row (``along_rows``) or a column, with Image Orientation
    and Image Position (Patient) rewritten so that the patient geometry stays the same."""
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    ps = [float(v) for v in ds.PixelSpacing]
    if along_rows:  # columns run the other way: the row direction flips
        ipp = ipp + iop[:3] * ps[1] * (ds.Columns - 1)
        iop = np.r_[-iop[:3], iop[3:]]
        set_pixels(ds, px(ds)[:, ::-1])
    else:  # rows run the other way: the column direction flips
        ipp = ipp + iop[3:] * ps[0] * (ds.Rows - 1)
        iop = np.r_[iop[:3], -iop[3:]]
        set_pixels(ds, px(ds)[::-1, :])
    ds.ImageOrientationPatient = [f"{v:g}" for v in iop]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]


@variant("5 geometry")
def flipped_anterior_right(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        store_reversed(ds, along_rows=True)
    return items, same("stored mirrored left-right, geometry to match")


@variant("5 geometry")
def stored_upside_down(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        store_reversed(ds, along_rows=False)
    return items, same("stored upside down, geometry to match")


@variant("5 geometry")
def sliceloc_inconsistent(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    for _, ds in items:
        ds.SliceLocation = f"{rng.uniform(-100, 100):.3f}"
    return items, same()


@variant("5 geometry")
def ipp_identical_all(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    p0 = items[0][1].ImagePositionPatient
    for _, ds in items:
        ds.ImagePositionPatient = list(p0)
    return items, refused("position(s) along the slice normal", "every slice at one position")


@variant("5 geometry")
def ipp_missing_one(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    del items[2][1].ImagePositionPatient
    return items, same("one off-centre slice without a position is left out")


# Conventions that set (or, with None, delete) attributes of every slice, and what they should give.
ON_EVERY_SLICE: dict[str, tuple[str, dict[str, object], Expect]] = {
    "in_missing": ("1 InstanceNumber", {"InstanceNumber": None}, same()),
    "desc_missing": ("3 names", {"SeriesDescription": None}, same()),
    "desc_empty": ("3 names", {"SeriesDescription": ""}, same()),
    "desc_and_protocol_missing": (
        "3 names",
        {"SeriesDescription": None, "ProtocolName": None},
        same("only the echo time (100 ms) says T2"),
    ),
    "patient_position_ffs": (
        "5 geometry",
        {"PatientPosition": "FFS"},
        same("patient coordinates unchanged (as a scanner writes them)"),
    ),
    "sbs_negative": ("5 geometry", {"SpacingBetweenSlices": "-4.8"}, same()),
    "sbs_absent": ("5 geometry", {"SpacingBetweenSlices": None}, same()),
    "sbs_and_thickness_absent": (
        "5 geometry",
        {"SpacingBetweenSlices": None, "SliceThickness": None},
        same(),
    ),
    "sliceloc_absent": ("5 geometry", {"SliceLocation": None}, same()),
    "ipp_missing_all": (
        "5 geometry",
        {"ImagePositionPatient": None},
        refused("usable slices", "no slice has a position"),
    ),
    "pixel_spacing_missing": (
        "5 geometry",
        {"PixelSpacing": None},
        refused("usable slices", "no pixel size (Type 1 in MR); artificial"),
    ),
    "iop_missing_all": (
        "5 geometry",
        {"ImageOrientationPatient": None},
        refused("no ImageOrientationPatient", "no orientation: named in the reason"),
    ),
}


def _on_every_slice(changes: dict[str, object], expect: Expect) -> Transform:
    def transform(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
        for _, ds in items:
            for keyword, value in changes.items():
                if value is None:
                    delattr(ds, keyword)
                else:
                    setattr(ds, keyword, value)
        return items, expect

    return transform


for _name, (_group, _changes, _expect) in ON_EVERY_SLICE.items():
    variant(_group, name=_name)(_on_every_slice(_changes, _expect))


# ------------------------------------------------------------------------------------------------
# 6 Mixed series
# ------------------------------------------------------------------------------------------------
def localizers(
    items: Items,
    orientation: list[int],
    size: int,
    spacing: float,
    xs: list[float],
    prefix: str,
) -> Items:
    """3 localizer images (TE 4 ms) in the T2's own series, at another matrix and pixel size."""
    src = by_position(items)[len(items) // 2][1]
    out: Items = []
    for i, x in enumerate(xs):
        d = renew(copy.deepcopy(src))
        a = px(src)[:: max(1, src.Rows // size), :: max(1, src.Columns // size)][:size, :size]
        set_pixels(d, a)
        d.PixelSpacing = [f"{spacing:g}", f"{spacing:g}"]
        d.ImageOrientationPatient = orientation
        p = [float(v) for v in src.ImagePositionPatient]
        p[0] = x
        d.ImagePositionPatient = [f"{v:.4f}" for v in p]
        d.EchoTime = "4"
        d.InstanceNumber = i + 1
        out.append((f"{prefix}{i}.dcm", d))
    return out


@variant("6 mixed")
def localizers_axial_in_series(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    loc = localizers(items, [1, 0, 0, 0, 1, 0], 128, 2.5, [0.0, 0.0, 0.0], "AAA_loc")
    return loc + items, same("left out by the longest-echo rule")


@variant("6 mixed")
def localizers_sag_in_series_first(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    loc = localizers(items, [0, 1, 0, 0, 0, -1], 128, 2.5, [-20.0, 0.0, 20.0], "AAA_loc")
    return loc + items, same("another matrix and pixel size, first in file order")


@variant("6 mixed")
def localizers_sag_in_series_last(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    loc = localizers(items, [0, 1, 0, 0, 0, -1], 128, 2.5, [-20.0, 0.0, 20.0], "ZZZ_loc")
    return items + loc, same("another matrix and pixel size, last in file order")


@variant("6 mixed")
def two_matrix_sizes_in_series(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    for i, (_, ds) in enumerate(items):
        if i % 2 == 0:
            halve(ds)
    return items, reads(note="8 of 15 slices at half matrix: that majority grid is read")


def minority_grid(items: Items) -> tuple[Items, Items]:
    """3 of 15 slices (both ends and the middle) at half matrix: (those 3, the other 12)."""
    items = by_position(items)
    minority = (0, 7, 14)
    for i in minority:
        halve(items[i][1])
    return [it for i, it in enumerate(items) if i in minority], [
        it for i, it in enumerate(items) if i not in minority
    ]


@variant("6 mixed")
def other_matrix_minority_first(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    few, rest = minority_grid(items)
    few = [("AAA_" + name, ds) for name, ds in few]
    return few + rest, same("3 of 15 at half matrix (same TE) first in file order: 12 read")


@variant("6 mixed")
def other_matrix_minority_last(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    few, rest = minority_grid(items)
    few = [("ZZZ_" + name, ds) for name, ds in few]
    return rest + few, same("3 of 15 at half matrix (same TE) last in file order: 12 read")


@variant("6 mixed")
def derived_mpr_beside_original(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    items = by_position(items)
    mpr_uid = generate_uid()
    mpr: Items = []
    for i in range(len(items) - 1):
        for frac in (0.0, 0.5):
            a, b = items[i][1], items[i + 1][1]
            d = renew(copy.deepcopy(a), mpr_uid)
            pa = np.array([float(v) for v in a.ImagePositionPatient])
            pb = np.array([float(v) for v in b.ImagePositionPatient])
            d.ImagePositionPatient = [f"{v:.4f}" for v in pa + frac * (pb - pa)]
            img = (1 - frac) * px(a).astype(np.float64) + frac * px(b)
            set_pixels(d, np.round(img).astype(np.uint16))
            d.ImageType = ["DERIVED", "SECONDARY", "MPR"]
            d.SeriesDescription = "T2 SAG MPR"
            mpr.append((f"mpr_{len(mpr):03d}.dcm", d))
    expect = same("an MPR of 28 slices beside it: the original is read", series=series_of(items))
    return mpr + items, expect


@variant("6 mixed")
def only_localizer_3plane_plus_axial_t2(
    items: Items, rng: np.random.Generator
) -> tuple[Items, Expect]:
    items = by_position(items)
    loc_uid = generate_uid()
    c = len(items) // 2
    sag, cor, tra = [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1], [1, 0, 0, 0, 1, 0]
    plan = [(c - 3, sag), (c, sag), (c + 3, sag)] + [(c, cor)] * 3 + [(c, tra)] * 3
    loc: Items = []
    for j, (k, iop) in enumerate(plan):
        d = renew(copy.deepcopy(items[k][1]), loc_uid)
        d.ImageOrientationPatient = iop
        d.SeriesDescription = "localizer"
        d.ProtocolName = "AAHead_Scout"
        d.EchoTime, d.RepetitionTime = "4", "8"
        d.ScanningSequence = ["GR"]
        loc.append((f"loc{j}.dcm", d))
    ax, _ = copy_series(items, "t2_tse_tra")
    return loc + axial(ax), refused("no sagittal T2 series", "a 3-plane scout and an axial T2")


@variant("6 mixed")
def only_sag_t1_neutral_name_plus_axial_t2(
    items: Items, rng: np.random.Generator
) -> tuple[Items, Expect]:
    sag, _ = copy_series(
        items, "SAG FSE", EchoTime="12", RepetitionTime="550", ProtocolName="LSPINE"
    )
    ax, _ = copy_series(items, "AX FSE", ProtocolName="LSPINE")
    note = "a sagittal 'SAG FSE' with TE 12 ms (a T1) and an axial T2"
    return sag + axial(ax), refused("no sagittal T2 series", note)


# ------------------------------------------------------------------------------------------------
# 7 Multi-frame (Legacy Converted Enhanced MR)
# ------------------------------------------------------------------------------------------------
@variant("7 multiframe", multiframe=True)
def mf_as_written(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    return items, same("as the single-frame series")


@variant("7 multiframe", multiframe=True)
def mf_frames_shuffled(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    ds = only_instance(items)
    frames = ds.pixel_array.copy()
    perm = rng.permutation(frames.shape[0])
    per_frame = ds.PerFrameFunctionalGroupsSequence
    ds.PerFrameFunctionalGroupsSequence = [per_frame[int(i)] for i in perm]
    ds.PixelData = np.ascontiguousarray(frames[perm]).tobytes()
    return items, same()


@variant("7 multiframe", multiframe=True)
def mf_geometry_per_frame(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    ds = only_instance(items)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for key in (
        "PixelMeasuresSequence",
        "PlaneOrientationSequence",
        "PixelValueTransformationSequence",
    ):
        value = shared[key].value
        for item in ds.PerFrameFunctionalGroupsSequence:
            setattr(item, key, copy.deepcopy(value))
        del shared[key]
    return items, same("geometry per frame instead of shared")


@variant("7 multiframe", multiframe=True)
def mf_no_frame_content(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    ds = only_instance(items)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.FrameContentSequence
    return items, same()


def second_stack(ds: Dataset, frames: np.ndarray, dz_mm: float) -> None:
    """Append a copy of every frame as Stack ID 2, ``dz_mm`` higher, with ``frames`` as pixels."""
    n = int(ds.NumberOfFrames)
    current = ds.pixel_array.copy()
    extra = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        e = copy.deepcopy(item)
        plane = e.PlanePositionSequence[0]
        p = [float(v) for v in plane.ImagePositionPatient]
        p[2] += dz_mm
        plane.ImagePositionPatient = [f"{v:.4f}" for v in p]
        e.FrameContentSequence[0].StackID = "2"
        extra.append(e)
    ds.PerFrameFunctionalGroupsSequence = list(ds.PerFrameFunctionalGroupsSequence) + extra
    ds.NumberOfFrames = 2 * n
    ds.PixelData = np.ascontiguousarray(np.concatenate([current, frames])).tobytes()


@variant("7 multiframe", multiframe=True)
def mf_two_stacks_upper_station(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    ds = only_instance(items)
    second_stack(ds, ds.pixel_array.copy(), 250.0)
    return items, same("stack 2: the same frames 250 mm higher (a thoracic station)")


@variant("7 multiframe", multiframe=True)
def mf_two_stacks_same_positions(items: Items, rng: np.random.Generator) -> tuple[Items, Expect]:
    ds = only_instance(items)
    second_stack(ds, np.zeros_like(ds.pixel_array), 0.0)
    return items, same("stack 2: blank frames at the same positions; artificial")


# ------------------------------------------------------------------------------------------------
# Screening and comparison
# ------------------------------------------------------------------------------------------------
def screen(folder: Path, settings: Any, engine: Any) -> dict[str, Any]:
    """``analyze_study`` on a study folder, flattened (or the traceback of an exception)."""
    t0 = time.perf_counter()
    try:
        r = analyze_study(dicom_files(folder), settings, engine)
    except Exception:  # noqa: BLE001 - recorded as a PROBLEM
        return {"exception": traceback.format_exc()}
    out: dict[str, Any] = {
        "applicable": r.applicable,
        "reason": r.reason,
        "series": r.series_instance_uid,
        "warnings": list(r.warnings),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if r.applicable:
        out.update(
            assessable=r.assessable,
            not_assessable_reason=r.not_assessable_reason,
            score=r.lstv_score,
            suspected=r.lstv_suspected,
            discs={f.level: list(f.patient_xyz) for f in r.levels},
            slices={f.level: f.slice_index for f in r.levels},
        )
    return out


def brief(text: str, limit: int = 90) -> str:
    """``text`` with UIDs shortened, cut at ``limit`` characters."""
    return re.sub(r"\b\d+(\.\d+){5,}\b", "<uid>", text)[:limit]


def verdict(res: dict[str, Any]) -> str:
    if not res.get("assessable"):
        return f"not assessable ({res.get('not_assessable_reason', '')})"
    flag = "suspected" if res["suspected"] else "not suspected"
    return f"score {res['score']:.3f}, {flag}"


def differences(base: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """Score change, largest in-plane disc-centre change (mm), and whether the verdict holds."""
    levels = [lv for lv in base.get("discs", {}) if lv in res.get("discs", {})]
    moved = [
        sagittal_error(np.array(res["discs"][lv]), np.array(base["discs"][lv]), NORMAL)
        for lv in levels
    ]
    return {
        "dscore": round(res["score"] - base["score"], 4),
        "disc_mm": round(max(moved), 3) if moved else None,
        "levels_missing": sorted(set(base.get("discs", {})) - set(levels)),
        "verdict_same": res["suspected"] == base["suspected"]
        and res["assessable"] == base["assessable"],
    }


def compare(
    base: dict[str, Any], res: dict[str, Any], expect: Expect, base_series: str
) -> tuple[str, str, dict[str, Any]]:
    """(status, one-line detail, numbers) of one variant study against its baseline."""
    if "exception" in res:
        return "PROBLEM", "exception: " + res["exception"].strip().splitlines()[-1], {}
    if expect.kind == "refused":
        if not res["applicable"]:
            if expect.reason in res["reason"]:
                return "OK", f"refused: {brief(res['reason'])}", {}
            return "CHANGED", f"refused for another reason: {brief(res['reason'])}", {}
        if not res["assessable"]:
            return "CHANGED", f"screened instead of refused, {verdict(res)}", {}
        return "PROBLEM", f"screened instead of refused: {verdict(res)}", {}
    if not res["applicable"]:
        return "PROBLEM", f"not applicable: {brief(res['reason'])}", {}
    want = expect.series or base_series
    if res["series"] != want:
        got = expect.labels.get(res["series"], res["series"])
        return "PROBLEM", f"another series read: {got}; {verdict(res)}", {}
    info = differences(base, res)
    text = f"dscore {info['dscore']:+.4f}, disc {info['disc_mm']} mm"
    if not info["verdict_same"]:
        text += f", verdict changed: {verdict(res)}"
    if info["levels_missing"]:
        text += f", levels missing: {','.join(info['levels_missing'])}"
    if expect.kind == "series":
        return "OK", text, info
    changed = (
        not info["verdict_same"]
        or info["levels_missing"]
        or abs(info["dscore"]) > MAX_DSCORE
        or (info["disc_mm"] or 0.0) > MAX_DISC_MM
    )
    if changed:
        if res["warnings"]:
            text += f"; warning: {brief(res['warnings'][0], 60)}"
        return "CHANGED", text, info
    return "OK", "", info


RANK = {"OK": 0, "CHANGED": 1, "PROBLEM": 2}


def summarize(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Per variant: (name, the worst status over its studies, a one-line detail)."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        status = max((r["status"] for r in mine), key=RANK.__getitem__)
        bad = [r for r in mine if r["status"] == status]
        detail = ""
        if status != "OK":
            nums = [r["info"] for r in bad if r["info"]]
            if len(nums) == len(bad):
                dscore = max(abs(n["dscore"]) for n in nums)
                disc = max(n["disc_mm"] or 0.0 for n in nums)
                flips = sum(not n["verdict_same"] for n in nums)
                detail = f"|dscore| <= {dscore:.4f}, disc <= {disc:.2f} mm"
                detail += f", verdict changed in {flips}" if flips else ", verdicts same"
            else:
                detail = f"{bad[0]['base']}: {bad[0]['detail']}"
            detail = f"{len(bad)}/{len(mine)}: {detail}"
        out.append((name, status, detail))
    return out


def markdown(rows: list[dict[str, Any]], summary: list[tuple[str, str, str]]) -> str:
    lines = ["# Header-convention sweep", "", "| variant | status | detail |", "|---|---|---|"]
    lines += [f"| {name} | {status} | {detail} |" for name, status, detail in summary]
    lines += ["", "| group | variant | base | expected | status | detail |", "|" + "---|" * 6]
    for r in rows:
        exp = r["expect"]
        expected = exp.get("kind", "-") + (f" ({exp['reason']})" if exp.get("reason") else "")
        lines.append(
            f"| {r['group']} | {r['variant']} | {r['base']} | {expected} | {r['status']} "
            f"| {r['detail'] or exp.get('note', '')} |"
        )
    return "\n".join(lines) + "\n"


def run_variant(
    v: Variant,
    bases: list[tuple[str, int]],
    out: Path,
    baseline: dict[str, dict[str, Any]],
    settings: Any,
    engine: Any,
) -> list[dict[str, Any]]:
    """Rewrite, screen and compare one variant of every baseline; its rows."""
    rows = []
    for kind, seed in bases:
        src = base_dir(out / "base", kind, seed, v.multiframe)
        ref = baseline[base_dir(out / "base", kind, seed).name]  # always the single-frame one
        base_series = json.loads((src / "truth.json").read_text())["series_instance_uid"]
        dst = out / "work" / f"{v.name}__{src.name}"
        row: dict[str, Any] = {"variant": v.name, "group": v.group, "base": src.name}
        try:
            items, expect = v.transform(load(src), np.random.default_rng(1234))
            save(items, dst, src)
        except Exception:  # noqa: BLE001 - a broken rewrite is reported, the sweep goes on
            tb = traceback.format_exc()
            row.update(status="PROBLEM", detail="rewrite failed: " + tb.strip().splitlines()[-1])
            row.update(info={}, result={"exception": tb}, expect={})
        else:
            res = screen(dst, settings, engine)
            status, detail, info = compare(ref, res, expect, base_series)
            exp = {k: val for k, val in asdict(expect).items() if k != "labels"}
            row.update(status=status, detail=detail, info=info, result=res, expect=exp)
        shutil.rmtree(dst, ignore_errors=True)
        line = f"{row['status']:<8} {v.name:<40} {src.name:<18} {row['detail']}"
        print(line.rstrip(), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="baselines, copies and results")
    parser.add_argument("--quick", action="store_true", help="2 baselines instead of 4")
    parser.add_argument("--only", default="", help="only the variants whose name contains this")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    # invalid UTF-8 in a header is one of the variants: pydicom's warning about it is expected
    warnings.filterwarnings("ignore", message="Failed to decode byte string", category=UserWarning)
    bases = BASES_QUICK if args.quick else BASES_FULL
    chosen = [v for name, v in VARIANTS.items() if args.only in name]
    if not chosen:
        parser.error(f"no variant name contains {args.only!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    settings, engine = build_engine(None, args.threads)
    baseline: dict[str, dict[str, Any]] = {}
    for kind, seed in bases:
        for multiframe in (False, True):
            folder = base_dir(args.out / "base", kind, seed, multiframe)
            res = baseline[folder.name] = screen(folder, settings, engine)
            if "exception" in res or not res["applicable"]:
                print(f"baseline {folder.name} failed: {res}", file=sys.stderr)
                return 0
            print(f"baseline {folder.name:<18} {verdict(res)}", flush=True)
    rows: list[dict[str, Any]] = []
    for v in chosen:
        rows += run_variant(v, bases, args.out, baseline, settings, engine)
    summary = summarize(rows)
    payload = {"baseline": baseline, "summary": summary, "rows": rows}
    (args.out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    (args.out / "results.md").write_text(markdown(rows, summary))
    counts = {s: sum(status == s for _, status, _ in summary) for s in RANK}
    print(
        f"\n{len(summary)} variants x {len(bases)} baselines: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
    )
    width = max(len(name) for name, _, _ in summary)
    for name, status, detail in summary:
        print(f"{name:<{width}}  {status:<8} {detail}".rstrip())
    print(f"results: {args.out / 'results.md'}, {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
