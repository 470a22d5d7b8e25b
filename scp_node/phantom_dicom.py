"""Write a phantom as a real DICOM MR Image series (PS3.3 A.4 MR Image IOD), one study per call.

UIDs come from :func:`pydicom.uid.generate_uid` with an entropy source derived from (variant,
seed), so
the same call writes the same UIDs. Compressed transfer syntaxes are produced by
``Dataset.compress``
(JPEG 2000 lossless, JPEG-LS lossless, RLE) with the SOP Instance UID kept, or by DCMTK ``dcmcjpeg``
for JPEG Lossless (.57/.70). ``truth.json`` beside the files records the true disc centres.

``multiframe=True`` writes the same series as one Legacy Converted Enhanced MR Image (PS3.3
A.36.4, made by highdicom's ``LegacyConvertedEnhancedMRImage``): every slice is a frame, with its
geometry in the Per-frame / Shared Functional Groups (PS3.3 C.7.6.16); ``truth.json`` then gives
each disc's frame number as well.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pydicom.uid as uids
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, generate_uid

from scp_node.model.phantom import Phantom, generate

MR_IMAGE_STORAGE = uids.MRImageStorage
LEGACY_CONVERTED_ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.4"
#: Transfer syntaxes highdicom can write a Legacy Converted Enhanced MR Image in (lossless ones).
MULTIFRAME_ENCODABLE = {
    uids.ExplicitVRLittleEndian,
    uids.ImplicitVRLittleEndian,
    uids.JPEG2000Lossless,
    uids.JPEGLSLossless,
    uids.RLELossless,
}
#: Transfer syntaxes this writer can produce, and how.
PYDICOM_ENCODABLE = {
    uids.JPEG2000Lossless,
    uids.JPEGLSLossless,
    uids.RLELossless,
}
DCMCJPEG_ENCODABLE = {uids.JPEGLosslessSV1: "+e1", uids.JPEGLossless: "+el"}
UNCOMPRESSED = {uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian}


def supported_syntaxes() -> list[UID]:
    out = [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian, *sorted(PYDICOM_ENCODABLE)]
    if shutil.which("dcmcjpeg"):
        out.extend(sorted(DCMCJPEG_ENCODABLE))
    return out


def _uid(variant: str, seed: int, *parts: object) -> UID:
    return generate_uid(entropy_srcs=["scp-node-phantom", variant, str(seed), *map(str, parts)])


def _base_dataset(ph: Phantom, k: int) -> Dataset:
    v, s = ph.variant, ph.seed
    ds = Dataset()
    # Patient module (PS3.3 C.7.1.1) - synthetic
    ds.PatientName = f"PHANTOM^{v.upper()}"
    ds.PatientID = f"PH-{v[:4].upper()}-{s}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = _uid(v, s, "study")
    ds.StudyDate = date(2024, 1, 1).strftime("%Y%m%d")
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = f"{s % 100000}"
    ds.AccessionNumber = f"ACC{s % 10**8:08d}"
    ds.StudyDescription = "MR LUMBAR SPINE (synthetic phantom)"
    # General Series (C.7.3.1) + MR series
    ds.Modality = "MR"
    ds.SeriesInstanceUID = _uid(v, s, "series")
    ds.SeriesNumber = 3
    ds.SeriesDescription = "T2 SAG"
    ds.ProtocolName = "T2_TSE_SAG"
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    # Frame of Reference (C.7.4.1)
    ds.FrameOfReferenceUID = _uid(v, s, "for")
    ds.PositionReferenceIndicator = ""
    # General Equipment (C.7.5.1)
    ds.Manufacturer = "scp-node phantom"
    ds.ManufacturerModelName = "synthetic"
    ds.SoftwareVersions = "1"
    # General Image (C.7.6.1)
    ds.InstanceNumber = k + 1
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.AcquisitionNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.BurnedInAnnotation = "NO"
    # Image Plane (C.7.6.2)
    ds.ImageOrientationPatient = [f"{x:g}" for x in ph.orientation]
    ds.ImagePositionPatient = [f"{x:.4f}" for x in ph.positions[k]]
    ds.PixelSpacing = [f"{ph.pixel_spacing[0]:.6f}", f"{ph.pixel_spacing[1]:.6f}"]
    ds.SliceThickness = f"{ph.slice_thickness:g}"
    ds.SpacingBetweenSlices = f"{ph.slice_spacing:g}"
    ds.SliceLocation = f"{-ph.positions[k][0]:.4f}"
    # Image Pixel (C.7.6.3) + MR Image (C.8.3.1)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ph.volume.shape[1:]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.ScanningSequence = ["SE"]
    ds.SequenceVariant = ["SK"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "tse2d1_15"
    ds.RepetitionTime = "3500"
    ds.EchoTime = "100"
    ds.EchoTrainLength = 15
    ds.NumberOfAverages = "2"
    ds.ImagingFrequency = "63.6"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "1.5"
    ds.FlipAngle = "150"
    ds.WindowCenter = str(int(ph.volume.max() // 2))
    ds.WindowWidth = str(int(max(ph.volume.max(), 2)))
    # SOP Common (C.12.1)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = _uid(v, s, "instance", k)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PixelData = ph.volume[k].tobytes()
    return ds


def _file_meta(ds: Dataset, syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.ImplementationVersionName = "SCPNODE_PH1"
    return meta


def write_phantom_series(
    out_dir: Path, phantom: Phantom, transfer_syntax: str | UID = uids.ExplicitVRLittleEndian
) -> list[Path]:
    """Write every slice as ``IM0001.dcm`` ... plus ``truth.json``; returns the image paths."""
    syntax = UID(str(transfer_syntax))
    if syntax not in UNCOMPRESSED | PYDICOM_ENCODABLE | set(DCMCJPEG_ENCODABLE):
        raise ValueError(f"cannot encode transfer syntax {syntax} ({syntax.name})")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    sops: list[str] = []
    for k in range(phantom.volume.shape[0]):
        ds = _base_dataset(phantom, k)
        sop = ds.SOPInstanceUID
        path = out_dir / f"IM{k + 1:04d}.dcm"
        if syntax in PYDICOM_ENCODABLE:
            ds.file_meta = _file_meta(ds, uids.ExplicitVRLittleEndian)
            ds.compress(syntax, generate_instance_uid=False)
            ds.SOPInstanceUID = sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
        else:
            ds.file_meta = _file_meta(
                ds, syntax if syntax in UNCOMPRESSED else uids.ExplicitVRLittleEndian
            )
        ds.save_as(path, enforce_file_format=True)
        if syntax in DCMCJPEG_ENCODABLE:
            _dcmcjpeg(path, DCMCJPEG_ENCODABLE[syntax])
        paths.append(path)
        sops.append(str(sop))
    _write_truth(out_dir, phantom, syntax, sops, [None] * len(sops))
    return paths


def _write_truth(
    out_dir: Path,
    phantom: Phantom,
    syntax: UID,
    sops: list[str],
    frames: list[int | None],
    series_uid: str | None = None,
) -> None:
    """``truth.json``: true disc centres with the instance (and frame) of their slice."""
    truth = {
        "variant": phantom.variant,
        "seed": phantom.seed,
        "transfer_syntax": str(syntax),
        "study_instance_uid": str(_uid(phantom.variant, phantom.seed, "study")),
        "series_instance_uid": series_uid or str(_uid(phantom.variant, phantom.seed, "series")),
        "pixel_spacing_mm": list(phantom.pixel_spacing),
        "slice_spacing_mm": phantom.slice_spacing,
        "params": phantom.params,
        "discs": [
            {
                "level": d.level,
                "pixel_col_row": [round(d.col, 3), round(d.row, 3)],
                "slice_index": d.slice_index,
                "sop_instance_uid": sops[d.slice_index],
                "frame_number": frames[d.slice_index],
                "patient_mm": [round(x, 3) for x in d.patient_xyz],
            }
            for d in phantom.discs
        ],
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2))


def write_phantom_multiframe(
    out_dir: Path, phantom: Phantom, transfer_syntax: str | UID = uids.ExplicitVRLittleEndian
) -> list[Path]:
    """Write the series as one Legacy Converted Enhanced MR Image ``MF0001.dcm`` (PS3.3 A.36.4)
    plus ``truth.json``; returns ``[path]``.

    highdicom orders the frames by their position along the slice normal, which need not be the
    phantom's slice order: the frame of each slice is read back from the written per-frame Plane
    Position (PS3.3 C.7.6.16.2.3) and recorded in ``truth.json``.
    """
    import highdicom as hd  # heavy import, only for this writer
    import numpy as np

    syntax = UID(str(transfer_syntax))
    if syntax not in MULTIFRAME_ENCODABLE:
        raise ValueError(f"cannot encode a multi-frame image in {syntax} ({syntax.name})")
    out_dir.mkdir(parents=True, exist_ok=True)
    legacy = []
    for k in range(phantom.volume.shape[0]):
        ds = _base_dataset(phantom, k)
        ds.file_meta = _file_meta(ds, uids.ExplicitVRLittleEndian)
        legacy.append(ds)
    v, s = phantom.variant, phantom.seed
    series = _uid(v, s, "series", "multiframe")
    sop = _uid(v, s, "instance", "multiframe")
    image = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=legacy,
        series_instance_uid=series,
        series_number=int(legacy[0].SeriesNumber),
        sop_instance_uid=sop,
        instance_number=1,
        transfer_syntax_uid=syntax,
    )
    image.file_meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    image.file_meta.ImplementationVersionName = "SCPNODE_PH1"
    path = out_dir / "MF0001.dcm"
    image.save_as(path, enforce_file_format=True)
    positions = np.asarray(
        [
            [float(x) for x in item.PlanePositionSequence[0].ImagePositionPatient]
            for item in image.PerFrameFunctionalGroupsSequence
        ]
    )
    frames: list[int | None] = []
    for k in range(phantom.volume.shape[0]):
        distance = np.linalg.norm(positions - np.asarray(phantom.positions[k]), axis=1)
        frames.append(int(np.argmin(distance)) + 1)
    _write_truth(out_dir, phantom, syntax, [str(sop)] * len(frames), frames, str(series))
    return [path]


def _dcmcjpeg(path: Path, option: str) -> None:
    tmp = path.with_suffix(".jpg.dcm")
    subprocess.run(["dcmcjpeg", option, str(path), str(tmp)], check=True, capture_output=True)
    tmp.replace(path)


def write_phantom(
    out_dir: Path,
    variant: str = "normal",
    seed: int = 0,
    slices: int = 15,
    size: int = 256,
    transfer_syntax: str | UID = uids.ExplicitVRLittleEndian,
    multiframe: bool = False,
) -> list[Path]:
    """Generate and write one phantom study (``multiframe``: as one multi-frame instance)."""
    phantom = generate(variant, seed, slices, size)
    if multiframe:
        return write_phantom_multiframe(out_dir, phantom, transfer_syntax)
    return write_phantom_series(out_dir, phantom, transfer_syntax)
