"""Which transfer syntaxes this install can *really* decode, and pixel decoding with logging.

pydicom 3 lists decoder plugins per syntax (``pydicom.pixels.get_decoder``), but "available" is not
"decodes": 12-bit JPEG Extended lists gdcm and pillow, yet only pylibjpeg decodes it. So every
(syntax, plugin) pair is proven by a self-test that decodes the tiny samples shipped in
``scp_node/data/codec_samples`` and compares them with :func:`reference_image`. Only proven
syntaxes are negotiated (PS3.5 §10 transfer syntaxes; PS3.8 §9.3.2.2 presentation context
negotiation).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pydicom.uid as uids
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from scp_node.codec_reference import reference_image

log = logging.getLogger(__name__)

#: Syntaxes with no compression of the pixel data: always accepted.
UNCOMPRESSED: tuple[UID, ...] = (
    uids.ExplicitVRLittleEndian,
    uids.ImplicitVRLittleEndian,
    uids.ExplicitVRBigEndian,
)

#: Compressed syntaxes the node knows about, in the order the node prefers them when proposing.
COMPRESSED: tuple[UID, ...] = (
    uids.JPEG2000Lossless,
    uids.JPEGLSLossless,
    uids.JPEGLosslessSV1,
    uids.JPEGLossless,
    uids.HTJ2KLossless,
    uids.HTJ2KLosslessRPCL,
    uids.RLELossless,
    uids.JPEG2000,
    uids.JPEGLSNearLossless,
    uids.HTJ2K,
    uids.JPEGBaseline8Bit,
    uids.JPEGExtended12Bit,
    uids.DeflatedExplicitVRLittleEndian,
)

LOSSY: frozenset[UID] = frozenset(
    {
        uids.JPEGBaseline8Bit,
        uids.JPEGExtended12Bit,
        uids.JPEG2000,
        uids.JPEGLSNearLossless,
        uids.HTJ2K,
    }
)

#: Decoder plugin preference: python-gdcm first, pylibjpeg as the fallback, then the rest.
PLUGIN_PREFERENCE: tuple[str, ...] = ("gdcm", "pylibjpeg", "pyjpegls", "pillow", "pydicom")

#: Sample files (in scp_node/data/codec_samples) that prove each syntax.
SAMPLES: dict[UID, tuple[str, ...]] = {
    uids.JPEGBaseline8Bit: ("jpeg_baseline_8.dcm",),
    uids.JPEGExtended12Bit: ("jpeg_extended_12.dcm",),
    uids.JPEGLossless: ("jpeg_lossless_12.dcm", "jpeg_lossless_16.dcm"),
    uids.JPEGLosslessSV1: ("jpeg_lossless_sv1_12.dcm", "jpeg_lossless_sv1_16.dcm"),
    uids.JPEGLSLossless: ("jpegls_lossless_12.dcm", "jpegls_lossless_16.dcm"),
    uids.JPEGLSNearLossless: ("jpegls_near_12.dcm", "jpegls_near_16.dcm"),
    uids.JPEG2000Lossless: ("j2k_lossless_12.dcm", "j2k_lossless_16.dcm"),
    uids.JPEG2000: ("j2k_12.dcm", "j2k_16.dcm"),
    uids.HTJ2KLossless: ("htj2k_lossless_12.dcm", "htj2k_lossless_16.dcm"),
    uids.HTJ2KLosslessRPCL: ("htj2k_rpcl_12.dcm", "htj2k_rpcl_16.dcm"),
    uids.HTJ2K: ("htj2k_12.dcm", "htj2k_16.dcm"),
    uids.RLELossless: ("rle_12.dcm", "rle_16.dcm"),
    uids.DeflatedExplicitVRLittleEndian: ("deflated_12.dcm", "deflated_16.dcm"),
}

#: Lossy samples pass when the mean absolute error is below this fraction of the full range.
LOSSY_TOLERANCE = 0.03


class DecodeError(RuntimeError):
    """Pixel data that no proven plugin could decode."""


@dataclass(frozen=True)
class PluginResult:
    """One plugin's self-test on one syntax."""

    plugin: str
    proven: bool
    detail: str = ""


@dataclass(frozen=True)
class SyntaxCapability:
    """What this install can do with one transfer syntax."""

    uid: UID
    installed: tuple[str, ...]
    results: tuple[PluginResult, ...] = ()
    note: str = ""

    @property
    def proven(self) -> tuple[str, ...]:
        """Plugins that decoded every sample correctly, in preference order."""
        return tuple(r.plugin for r in self.results if r.proven)

    @property
    def decodable(self) -> bool:
        return bool(self.proven)

    @property
    def preferred(self) -> str | None:
        return self.proven[0] if self.proven else None

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": str(self.uid),
            "name": self.uid.name,
            "lossy": self.uid in LOSSY,
            "installed_plugins": list(self.installed),
            "proven_plugins": list(self.proven),
            "preferred": self.preferred,
            "decodable": self.decodable,
            "failures": {r.plugin: r.detail for r in self.results if not r.proven},
            "note": self.note,
        }


@dataclass
class Capabilities:
    """The self-test result for every known compressed syntax."""

    syntaxes: dict[UID, SyntaxCapability] = field(default_factory=dict)

    @property
    def decodable(self) -> tuple[UID, ...]:
        return tuple(uid for uid, cap in self.syntaxes.items() if cap.decodable)

    def accepted_transfer_syntaxes(self) -> list[UID]:
        """Uncompressed + every compressed syntax proven to decode (pydicom inflates Deflated)."""
        return [*UNCOMPRESSED, *self.decodable]

    def plugins_for(self, uid: UID) -> tuple[str, ...]:
        cap = self.syntaxes.get(uid)
        return cap.proven if cap else ()


def _sample_path(name: str) -> Path:
    return Path(str(resources.files("scp_node") / "data" / "codec_samples" / name))


def _ordered(plugins: tuple[str, ...]) -> tuple[str, ...]:
    known = [p for p in PLUGIN_PREFERENCE if p in plugins]
    return (*known, *sorted(p for p in plugins if p not in PLUGIN_PREFERENCE))


def _check_sample(uid: UID, name: str, plugin: str | None) -> str:
    """Decode one sample with ``plugin``; return "" when right, else what went wrong."""
    ds = dcmread(_sample_path(name))
    expected = reference_image(int(ds.BitsStored)).astype(np.float64)
    try:
        if plugin is None:
            decoded = ds.pixel_array
        else:
            ds.pixel_array_options(decoding_plugin=plugin)
            decoded = ds.pixel_array
    except Exception as exc:  # any plugin failure means "not proven"
        return f"{name}: {type(exc).__name__}: {exc}"[:200]
    if decoded.shape != expected.shape:
        return f"{name}: shape {decoded.shape} != {expected.shape}"
    error = np.abs(decoded.astype(np.float64) - expected)
    if uid in LOSSY:
        full_range = float((1 << int(ds.BitsStored)) - 1)
        if error.mean() > LOSSY_TOLERANCE * full_range:
            return f"{name}: mean error {error.mean():.1f} above {LOSSY_TOLERANCE:.0%} of range"
    elif error.max() != 0:
        return f"{name}: lossless decode differs (max error {error.max():.0f})"
    return ""


def _test_syntax(uid: UID) -> SyntaxCapability:
    if uid == uids.DeflatedExplicitVRLittleEndian:
        # Deflate wraps the whole data set (PS3.5 §A.5); pydicom inflates it while reading.
        problems = [p for p in (_check_sample(uid, n, None) for n in SAMPLES[uid]) if p]
        result = PluginResult("pydicom (zlib)", not problems, "; ".join(problems))
        return SyntaxCapability(uid, ("pydicom (zlib)",), (result,), "inflated while reading")
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return SyntaxCapability(uid, (), (), "pydicom has no decoder for this syntax")
    installed = _ordered(tuple(decoder.available_plugins))
    results = []
    for plugin in installed:
        problems = [p for p in (_check_sample(uid, n, plugin) for n in SAMPLES[uid]) if p]
        results.append(PluginResult(plugin, not problems, "; ".join(problems)))
    missing = decoder.missing_dependencies if not installed else []
    note = "; ".join(missing) if missing else ""
    return SyntaxCapability(uid, installed, tuple(results), note)


@cache
def capabilities() -> Capabilities:
    """Run the self-test once per process (a few hundred milliseconds) and log its outcome."""
    started = time.perf_counter()
    pydicom_log = logging.getLogger("pydicom")
    level = pydicom_log.level
    pydicom_log.setLevel(logging.CRITICAL)  # expected plugin failures would log tracebacks
    try:
        caps = Capabilities({uid: _test_syntax(uid) for uid in COMPRESSED})
    finally:
        pydicom_log.setLevel(level)
    for cap in caps.syntaxes.values():
        if cap.decodable:
            log.info(
                "decoder self-test: %s (%s) proven: %s", cap.uid.name, cap.uid, ",".join(cap.proven)
            )
        else:
            log.warning(
                "decoder self-test: %s (%s) NOT decodable (installed: %s) - will not be negotiated",
                cap.uid.name,
                cap.uid,
                ",".join(cap.installed) or "none",
            )
    log.info("decoder self-test took %.0f ms", (time.perf_counter() - started) * 1000)
    return caps


def decode_pixels(ds: Dataset) -> np.ndarray:
    """The stored pixel values of ``ds`` (no rescale), decoded by the preferred proven plugin.

    Falls back to the other proven plugins in order; logs which plugin decoded the instance.
    Raises :class:`DecodeError` when none can.
    """
    uid = UID(ds.file_meta.TransferSyntaxUID)
    sop = str(ds.get("SOPInstanceUID", "?"))
    if uid in UNCOMPRESSED or uid == uids.DeflatedExplicitVRLittleEndian:
        return ds.pixel_array
    plugins = capabilities().plugins_for(uid)
    if not plugins:
        raise DecodeError(
            f"Unable to decode pixel data with a transfer syntax UID of {uid}: "
            "no proven decoder is installed"
        )
    failures = []
    for plugin in plugins:
        started = time.perf_counter()
        try:
            ds.pixel_array_options(decoding_plugin=plugin)
            pixels = ds.pixel_array
        except Exception as exc:
            failures.append(f"{plugin}: {type(exc).__name__}: {exc}"[:200])
            _count_decode_failure(plugin, uid)
            log.warning("decode failed sop=%s ts=%s plugin=%s: %s", sop, uid, plugin, exc)
            continue
        log.info(
            "decoded sop=%s ts=%s (%s) plugin=%s in %.1f ms",
            sop,
            uid,
            uid.name,
            plugin,
            (time.perf_counter() - started) * 1000,
        )
        return pixels
    raise DecodeError(f"no plugin decoded sop={sop} ts={uid}: " + "; ".join(failures))


def _count_decode_failure(plugin: str, uid: UID) -> None:
    try:
        from scp_node.observe import DECODE_FAILURES
    except ImportError:
        return
    DECODE_FAILURES.labels(plugin=plugin, transfer_syntax=str(uid)).inc()
