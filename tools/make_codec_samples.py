"""Regenerate the tiny compressed samples in scp_node/data/codec_samples/ (run once, commit them).

Needs DCMTK (dcmcjpeg, dcmcjpls, dcmcrle), gdcmconv and ojph_compress (Debian openjph-tools). The
self-test in scp_node.codecs decodes these files with every installed plugin and compares the result
with scp_node.codec_reference.reference_image.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    HTJ2K,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    MRImageStorage,
    generate_uid,
)

from scp_node.codec_reference import reference_image

OUT = Path(__file__).resolve().parents[1] / "scp_node" / "data" / "codec_samples"


def source_dataset(bits: int) -> Dataset:
    pixels = reference_image(bits)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    uid = generate_uid(entropy_srcs=[f"scp-node codec sample {bits}"])
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["scp-node codec sample study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["scp-node codec sample series"])
    ds.Modality = "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True)


def htj2k(src: Dataset, bits: int, uid: str, out: Path, tmp: Path, *extra: str) -> None:
    pgm = tmp / f"src{bits}.pgm"
    pixels = reference_image(bits)
    header = f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n{(1 << bits) - 1}\n".encode()
    pgm.write_bytes(header + pixels.astype(">u2" if bits > 8 else "u1").tobytes())
    j2c = tmp / "out.j2c"
    # 5 decompositions (the default) on a 32-pixel image gave a broken lossy code stream.
    run("ojph_compress", "-i", pgm, "-o", j2c, "-num_decomps", "3", *extra)
    ds = src.copy()
    ds.file_meta = src.file_meta.copy()
    ds.file_meta.TransferSyntaxUID = uid
    ds.PixelData = encapsulate([j2c.read_bytes()])
    ds["PixelData"].VR = "OB"
    if uid == HTJ2K:
        ds.LossyImageCompression = "01"
    ds.save_as(out, enforce_file_format=True)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        sources = {}
        for bits in (8, 12, 16):
            sources[bits] = tmp / f"src{bits}.dcm"
            source_dataset(bits).save_as(sources[bits], enforce_file_format=True)
        run("dcmcjpeg", "+eb", sources[8], OUT / "jpeg_baseline_8.dcm")
        run("dcmcjpeg", "+ee", sources[12], OUT / "jpeg_extended_12.dcm")
        for bits in (12, 16):
            run("dcmcjpeg", "+el", "+sv", "1", sources[bits], OUT / f"jpeg_lossless_{bits}.dcm")
            run("dcmcjpeg", "+e1", sources[bits], OUT / f"jpeg_lossless_sv1_{bits}.dcm")
            run("dcmcjpls", "+el", sources[bits], OUT / f"jpegls_lossless_{bits}.dcm")
            run("dcmcjpls", "+en", "+md", "2", sources[bits], OUT / f"jpegls_near_{bits}.dcm")
            run("gdcmconv", "--j2k", sources[bits], OUT / f"j2k_lossless_{bits}.dcm")
            run("gdcmconv", "--j2k", "--lossy", "-r", "2", sources[bits], OUT / f"j2k_{bits}.dcm")
            run("dcmcrle", sources[bits], OUT / f"rle_{bits}.dcm")
            src = source_dataset(bits)
            htj2k(
                src,
                bits,
                HTJ2KLossless,
                OUT / f"htj2k_lossless_{bits}.dcm",
                tmp,
                "-reversible",
                "true",
                "-prog_order",
                "LRCP",
            )
            htj2k(
                src,
                bits,
                HTJ2KLosslessRPCL,
                OUT / f"htj2k_rpcl_{bits}.dcm",
                tmp,
                "-reversible",
                "true",
                "-prog_order",
                "RPCL",
            )
            htj2k(
                src,
                bits,
                HTJ2K,
                OUT / f"htj2k_{bits}.dcm",
                tmp,
                "-reversible",
                "false",
                "-qstep",
                "0.0001",
            )
            deflated = source_dataset(bits)
            deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
            deflated.save_as(OUT / f"deflated_{bits}.dcm", enforce_file_format=True)
    for path in sorted(OUT.glob("*.dcm")):
        ds = dcmread(path)
        print(f"{path.name:28s} {ds.file_meta.TransferSyntaxUID:28s} {path.stat().st_size:6d} B")
        assert np.asarray(ds.Rows) == 32
    return 0


if __name__ == "__main__":
    sys.exit(main())
