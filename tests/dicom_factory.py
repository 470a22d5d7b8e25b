"""Small, valid DICOM test objects made at test time (no downloads, no PHI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def mr_dataset(
    size: int = 64, bits: int = 12, seed: int = 0, study_uid: str | None = None
) -> Dataset:
    """A minimal MR Image with random-but-smooth pixels of ``bits`` stored bits."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    base = (rows * 7 + cols * 3) % 97 + rng.integers(0, 40, (size, size))
    pixels = (base / base.max() * ((1 << bits) - 1)).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "TEST^SYNTHETIC"
    ds.PatientID = "SYN0001"
    ds.Modality = "MR"
    ds.SeriesDescription = "T2 SAG"
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def write_mr(path: Path, **kwargs: object) -> Path:
    mr_dataset(**kwargs).save_as(path, enforce_file_format=True)  # type: ignore[arg-type]
    return path


#: How each compressed syntax is made at test time: a command taking (source, destination).
ENCODERS: dict[str, list[str]] = {
    "1.2.840.10008.1.2.4.50": ["dcmcjpeg", "+eb"],
    "1.2.840.10008.1.2.4.51": ["dcmcjpeg", "+ee"],
    "1.2.840.10008.1.2.4.57": ["dcmcjpeg", "+el", "+sv", "1"],
    "1.2.840.10008.1.2.4.70": ["dcmcjpeg", "+e1"],
    "1.2.840.10008.1.2.4.80": ["dcmcjpls", "+el"],
    "1.2.840.10008.1.2.4.81": ["dcmcjpls", "+en", "+md", "2"],
    "1.2.840.10008.1.2.4.90": ["gdcmconv", "--j2k"],
    "1.2.840.10008.1.2.4.91": ["gdcmconv", "--j2k", "--lossy", "-r", "2"],
    "1.2.840.10008.1.2.5": ["dcmcrle"],
    "1.2.840.10008.1.2.1.99": ["dcmconv", "+td"],
}


def encode(source: Path, destination: Path, transfer_syntax: str) -> Path:
    """Encode ``source`` into ``transfer_syntax`` with the DCMTK / GDCM command line tools."""
    tool, *options = ENCODERS[transfer_syntax]
    subprocess.run(
        [f"/usr/bin/{tool}", *options, str(source), str(destination)],
        check=True,
        capture_output=True,
    )
    return destination


def encode_htj2k(source: Path, destination: Path, transfer_syntax: str) -> Path:
    """HTJ2K (.201 lossless, .202 lossless RPCL, .203 lossy) with OpenJPH's ``ojph_compress``."""
    from pydicom import dcmread
    from pydicom.encaps import encapsulate

    ds = dcmread(source)
    pixels = ds.pixel_array
    bits = int(ds.BitsStored)
    pgm = destination.with_suffix(".pgm")
    header = f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n{(1 << bits) - 1}\n".encode()
    pgm.write_bytes(header + pixels.astype(">u2").tobytes())
    j2c = destination.with_suffix(".j2c")
    lossless = transfer_syntax != "1.2.840.10008.1.2.4.203"
    order = "RPCL" if transfer_syntax == "1.2.840.10008.1.2.4.202" else "LRCP"
    options = ["-reversible", "true"] if lossless else ["-reversible", "false", "-qstep", "0.0001"]
    subprocess.run(
        ["ojph_compress", "-i", str(pgm), "-o", str(j2c), "-prog_order", order, *options],
        check=True,
        capture_output=True,
    )
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = encapsulate([j2c.read_bytes()])
    pgm.unlink()
    j2c.unlink()
    ds["PixelData"].VR = "OB"
    if not lossless:
        ds.LossyImageCompression = "01"
    ds.save_as(destination, enforce_file_format=True)
    return destination
