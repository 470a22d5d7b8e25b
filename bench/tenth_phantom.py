"""Tenth phantom: an independent synthetic lumbar-spine MR study generator.

Purpose
-------
Blind test studies for a lumbosacral-transitional-vertebra (LSTV) screen.  Every study is a
folder ``OUT/tenth-{index:03d}/`` with three or four MR series stored as DICOM Part-10 files
(MR Image Storage, Explicit VR Little Endian, MONOCHROME2, 16-bit unsigned) and a
``truth.json`` holding the variant label and the patient-space (LPS, mm) centres of the
L1-L2 ... L5-S1 discs.  Everything is deterministic in ``(seed, index)``.

Anatomical model
----------------
The spine is a kinematic chain of *slabs* (vertebral bodies and the junctions between them),
each bounded by two endplate frames (origin + orthonormal left/posterior/superior axes).  The
chain is anchored at the superior endplate of the uppermost fused sacral segment, whose normal
is tilted forward by the sacral slope, and is grown upward (lordotic/kyphotic sagittal wedges,
coronal wedges following a C-shaped scoliosis profile, small axial rotations, listhesis shifts)
and downward (kyphotic sacral and coccygeal wedges).  Levels run T10 ... L5, S1 ... S5,
Co1 ... Co3.  Shapes are implicit signed-distance functions evaluated per pixel in patient
coordinates (no voxel volume):

* bodies: bean-shaped footprint (elliptical front, squarish back with a concave posterior
  wall, waisted at mid height) lofted between the two endplate planes, with a parabolic
  endplate concavity, a cortical shell and marrow whose fat fraction rises with age;
  basivertebral vein; optional haemangioma, Schmorl nodes, Modic type 1/2/3 endplate zones;
* discs: the lens between adjacent endplates (it fills both concavities), dark annulus and a
  soft-edged nucleus whose T2, PD and height fall with degeneration; intranuclear cleft,
  vacuum, posterior bulge and focal protrusion; sacral junctions are fused bone with a faint
  residual line or a thin remnant disc;
* posterior elements from morphometric landmarks in the vertebral frame (pedicles, laminae,
  spinous process, superior/inferior articular processes, transverse processes) as bony
  capsules; sacral alae, dorsal sacral plate and median crest; ribs on T10-T12 (12th rib
  sometimes short); iliac wings as curved plates next to the sacro-iliac joints;
* a canal polyline through the posterior body margins carrying the bony canal (epidural fat),
  the thecal sac (CSF, ending at S2), the cord with a conus ending between T12 and L2, filum
  and dorsally layering cauda-equina roots; foraminal fat with root ganglia;
* soft tissues in patient coordinates following the spine profile: skin, subcutaneous fat,
  body wall, bowel with procedural texture and gas, retroperitoneal fat, liver, lung bases,
  kidneys (cortex, medulla, sinus fat, perirenal fat), aorta with bifurcation (L3-L5) and
  common iliac arteries, IVC, psoas, quadratus lumborum, paraspinal muscles with age-related
  fatty infiltration, gluteal muscles, rectum and bladder.

Variants (``index % 4``): 0 and 2 normal; 1 lumbarization (S1 is lumbar-type and mobile, a
real S1-S2 disc, a four-segment sacrum; 35 % partial forms with a thinner S1-S2 disc and a
unilateral transverse-process/ala joint); 3 sacralization (short, wedged L5; L5-S1 junction
hypoplastic 3.5-6 mm, rudimentary 1.5-3 mm or fused; enlarged L5 transverse processes that
stay free, form a pseudo-joint or fuse with the ala, uni- or bilaterally, Castellvi-like).
Confounders drawn identically for all variants: age 20-85, disc degeneration rising with age
and highest at the two lowest lumbar levels, Modic changes, Schmorl nodes, bulges and
protrusions, degenerative listhesis/retrolisthesis, scoliosis (0-9 deg coronal tilt), lumbar
lordosis 25-70 deg, sacral slope 22-58 deg, body size 0.88-1.12, habitus, an S1-S2 (or first
fused sacral) remnant disc in about 30 %, variable L5 transverse-process size.

MR physics
----------
Tissues carry PD, T1 and T2 at 1.5 T or 3 T.  Spin echo: ``S = PD (1 - exp(-TR/T1))
exp(-TE/T2)``; STIR: ``S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)`` with TI nulling
fat; marrow is a fat/red-marrow mixture.  Each slice averages three (axial: two) sub-planes
(partial volume); images are multiplied by a posterior surface-coil profile and a smooth bias
field, optionally by an anterior saturation band and respiratory ghosting of the abdomen along
the phase direction, Fourier transformed, cropped to the acquired matrix (phase resolution
60-95 %, mild apodisation), given complex Gaussian noise (Rician magnitude, SNR 5-50) and
zero-filled to the display matrix.

Series: sagittal T2 TSE/FSE target (TE 80-120 ms, TR 2500-6000 ms), sagittal T1 decoy (TE 8-20,
TR 400-800), axial T2 decoy parallel to L4-L5 or L5-S1 (12-30 slices) and, in 40 %, a sagittal
STIR decoy (TE 40-70, TI set).  Sagittal geometry: FOV 240-360 mm per axis, matrices 256-640,
pixel spacing 0.4-1.2 mm, 9-25 slices of 3-5 mm with 0-1 mm gap, anterior left or right, mostly
head-up (some feet-up or transposed layouts), in-plane rotation and yaw/roll up to 10 deg,
stack centre up to 8 mm off the midline (widened so every L1-L2 ... L5-S1 centre lies inside
the stack), slices stored ascending or descending; axial FOV 190-270 mm; Siemens, GE, Philips
and Canon naming conventions; three file layouts (series folders, DICOM tree, flat).

CLI
---
``python bench/tenth_phantom.py OUT --count N --seed S [--preview]`` writes indices
0 .. N-1; ``--preview`` also writes 8-bit PGM images of the middle slices to
``OUT/_preview/`` (outside the study folders).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import pathlib
import time
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

F32 = np.float32
TRUTH_LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
VARIANTS = ("normal", "lumbarization", "normal", "sacralization")


def make_uid(*parts: object) -> str:
    """Deterministic DICOM UID from the given parts (joined with a separator)."""
    key = "|".join(str(p) for p in parts)
    return generate_uid(entropy_srcs=["tenth-phantom-v1", key])


# ----------------------------------------------------------------------------------------------
# small geometry helpers
# ----------------------------------------------------------------------------------------------


def _rx(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _ry(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def _rz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _rot_about(axis: np.ndarray, deg: float) -> np.ndarray:
    """Rodrigues rotation matrix about a unit axis."""
    a = _unit(np.asarray(axis, float))
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = math.radians(deg)
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)


# ----------------------------------------------------------------------------------------------
# tissues and MR signal
# ----------------------------------------------------------------------------------------------

# name: (PD, T1 1.5 T, T2 1.5 T, T1 3 T, T2 3 T), times in ms; fat T2 is the FSE-effective value.
TISSUE: dict[str, tuple[float, float, float, float, float]] = {
    "fat": (1.00, 260.0, 150.0, 380.0, 130.0),
    "red": (0.82, 820.0, 48.0, 1150.0, 42.0),
    "muscle": (0.78, 880.0, 45.0, 1400.0, 32.0),
    "csf": (1.00, 4000.0, 2000.0, 4300.0, 1700.0),
    "annulus": (0.66, 950.0, 28.0, 1150.0, 24.0),
    "cortex": (0.05, 1000.0, 3.0, 1200.0, 3.0),
    "cord": (0.76, 750.0, 80.0, 1000.0, 72.0),
    "nerve": (0.74, 800.0, 70.0, 1050.0, 62.0),
    "ligament": (0.30, 800.0, 20.0, 1000.0, 16.0),
    "blood": (0.05, 1400.0, 150.0, 1900.0, 120.0),
    "liver": (0.72, 520.0, 45.0, 800.0, 36.0),
    "kidney_c": (0.86, 700.0, 85.0, 1100.0, 75.0),
    "kidney_m": (0.92, 1150.0, 120.0, 1550.0, 105.0),
    "bowel": (0.82, 1000.0, 90.0, 1300.0, 80.0),
    "fluid": (1.00, 3000.0, 800.0, 3300.0, 650.0),
    "air": (0.01, 1000.0, 1.0, 1000.0, 1.0),
    "skin": (0.70, 700.0, 40.0, 1000.0, 35.0),
    "edema": (0.90, 1250.0, 95.0, 1500.0, 85.0),
    "sclerosis": (0.25, 900.0, 25.0, 1100.0, 22.0),
    "hemangioma": (0.95, 350.0, 160.0, 500.0, 140.0),
}


@dataclass
class Seq:
    """One MR series' contrast parameters."""

    role: str
    tr: float
    te: float
    ti: float | None
    etl: int


def _signal(pd: float, t1: float, t2: float, seq: Seq) -> float:
    e2 = math.exp(-seq.te / max(t2, 1e-3))
    if seq.ti:
        return pd * abs(1 - 2 * math.exp(-seq.ti / t1) + math.exp(-seq.tr / t1)) * e2
    return pd * (1 - math.exp(-seq.tr / t1)) * e2


def _nucleus_params(hyd: float, field_t: float) -> tuple[float, float, float]:
    """PD, T1, T2 of a nucleus with hydration 0 (desiccated) .. 1 (healthy)."""
    h = min(max(hyd, 0.0), 1.0)
    t2 = 38.0 + 105.0 * h**1.3
    t1 = 900.0 + 300.0 * h
    if field_t > 2:
        t2 *= 0.88
        t1 *= 1.2
    return 0.68 + 0.26 * h, t1, t2


# ----------------------------------------------------------------------------------------------
# renderer: implicit shapes painted on oblique slice grids
# ----------------------------------------------------------------------------------------------


class Canvas:
    """Stack of oblique planes (slices x sub-planes) holding K contrast images."""

    def __init__(
        self,
        center: np.ndarray,
        cdir: np.ndarray,
        rdir: np.ndarray,
        shape: tuple[int, int],
        spacing: tuple[float, float],
        slice_off: np.ndarray,
        sub_off: np.ndarray,
        seqs: list[Seq],
        field_t: float,
    ) -> None:
        self.nr, self.nc = shape
        self.dr, self.dc = spacing
        self.cdir, self.rdir = np.asarray(cdir, float), np.asarray(rdir, float)
        self.ndir = np.cross(self.cdir, self.rdir)
        self.origin = (
            center - (self.nc // 2) * self.dc * self.cdir - (self.nr // 2) * self.dr * self.rdir
        )
        self.slice_off = np.asarray(slice_off, float)
        self.sub_off = np.asarray(sub_off, float)
        self.sub_half = float(np.max(np.abs(self.sub_off)))
        self.seqs, self.field_t = seqs, field_t
        self.K = len(seqs)
        # sub-planes start collapsed (smooth tissues painted first) and are expanded on demand
        self.S = np.zeros((self.K, len(self.slice_off), 1, self.nr, self.nc), F32)
        self.edge = 0.6 * min(self.dr, self.dc)
        self._cache: dict[str, np.ndarray] = {}

    # -- contrast vectors --
    def params(self, pd: float, t1: float, t2: float) -> np.ndarray:
        return np.array([_signal(pd, t1, t2, s) for s in self.seqs], F32)

    def tissue(self, name: str) -> np.ndarray:
        if name not in self._cache:
            pd, a1, a2, b1, b2 = TISSUE[name]
            t1, t2 = (b1, b2) if self.field_t > 2 else (a1, a2)
            self._cache[name] = self.params(pd, t1, t2)
        return self._cache[name]

    def marrow(self, ff: float) -> np.ndarray:
        ff = min(max(ff, 0.0), 1.0)
        return ff * self.tissue("fat") + (1 - ff) * self.tissue("red")

    def nucleus(self, hyd: float) -> np.ndarray:
        return self.params(*_nucleus_params(hyd, self.field_t))

    # -- windows --
    def window(self, c: np.ndarray, rad: float, smooth: bool = False) -> Win | None:
        d = np.asarray(c, float) - self.origin
        u, v, w = d @ self.cdir / self.dc, d @ self.rdir / self.dr, d @ self.ndir
        c0, c1 = (
            max(0, math.floor(u - rad / self.dc)),
            min(self.nc, math.ceil(u + rad / self.dc) + 1),
        )
        r0, r1 = (
            max(0, math.floor(v - rad / self.dr)),
            min(self.nr, math.ceil(v + rad / self.dr) + 1),
        )
        if c0 >= c1 or r0 >= r1:
            return None
        lo = int(np.searchsorted(self.slice_off, w - rad - self.sub_half, "left"))
        hi = int(np.searchsorted(self.slice_off, w + rad + self.sub_half, "right"))
        if lo >= hi:
            return None
        return Win(self, lo, hi, r0, r1, c0, c1, smooth)

    def full(self, smooth: bool = True) -> Win:
        return Win(self, 0, len(self.slice_off), 0, self.nr, 0, self.nc, smooth)


class Win:
    """Rectangular window of a canvas; coordinates are affine in (plane, row, column)."""

    def __init__(
        self, cv: Canvas, s0: int, s1: int, r0: int, r1: int, c0: int, c1: int, smooth: bool
    ):
        self.cv = cv
        self.sl = (slice(s0, s1), slice(r0, r1), slice(c0, c1))
        sub = np.zeros(1) if smooth else cv.sub_off
        if not smooth and cv.S.shape[2] != len(cv.sub_off):
            cv.S = np.repeat(cv.S, len(cv.sub_off), axis=2)
        self.off = (cv.slice_off[s0:s1, None] + sub[None, :]).astype(F32)[:, :, None, None]
        self.rr = (np.arange(r0, r1, dtype=F32) * F32(cv.dr))[:, None]
        self.cc = (np.arange(c0, c1, dtype=F32) * F32(cv.dc))[None, :]

    def coord(self, a: np.ndarray, axis: np.ndarray) -> np.ndarray:
        """Signed coordinate (q - a) . axis for every point of the window."""
        cv = self.cv
        plane = self.rr * F32(cv.rdir @ axis) + (
            self.cc * F32(cv.cdir @ axis) + F32((cv.origin - a) @ axis)
        )
        return plane + self.off * F32(cv.ndir @ axis)

    def local(self, a: np.ndarray, rot: np.ndarray) -> list[np.ndarray]:
        return [self.coord(a, rot[:, j]) for j in range(3)]

    def paint(self, d: np.ndarray, val: np.ndarray, edge: float | None = None, scale: float = 1.0):
        """Alpha-composite a material over the canvas; alpha from the signed distance d (mm)."""
        e = edge if edge else self.cv.edge
        a = np.clip(F32(0.5) - d * F32(1.0 / e), F32(0), F32(1))
        if scale != 1.0:
            a *= F32(scale)
        if not a.any():
            return
        s, r, c = self.sl
        view = self.cv.S[:, s, :, r, c]
        v = np.asarray(val, F32)
        if v.ndim == 1:
            v = v.reshape(-1, 1, 1, 1, 1)
        view += (v - view) * a

    def paint_bone(self, d: np.ndarray, marrow: np.ndarray, t: float = 1.2) -> None:
        self.paint(d, self.cv.tissue("cortex"))
        self.paint(d + F32(t), marrow)


def _texture(win: Win, rng_vals: np.ndarray) -> np.ndarray:
    """Sum of random plane waves in patient coordinates (rng_vals: (n, 5) k-vector, phase)."""
    x, y, z = win.local(np.zeros(3), np.eye(3))
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), F32)
    for kx, ky, kz, ph, amp in rng_vals:
        out += F32(amp) * np.cos(x * F32(kx) + y * F32(ky) + z * F32(kz) + F32(ph))
    return out


def _rand_waves(
    rng: np.random.Generator, n: int, lam: tuple[float, float], zs: float = 1.0
) -> np.ndarray:
    dirs = rng.normal(size=(n, 3)) * np.array([1.0, 1.0, zs])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = 2 * np.pi / rng.uniform(*lam, size=n)
    return np.column_stack(
        [dirs * k[:, None], rng.uniform(0, 2 * np.pi, n), np.ones(n) / math.sqrt(n)]
    )


def _capsule_d(win: Win, p0, p1, r0: float, r1: float, lat=None, kx: float = 1.0) -> np.ndarray:
    ax = np.asarray(p1, float) - np.asarray(p0, float)
    length = float(np.linalg.norm(ax))
    z = ax / length if length > 1e-6 else np.array([0.0, 0.0, 1.0])
    length = max(length, 1e-6)
    if lat is None:
        lat = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = lat - (lat @ z) * z
    x = _unit(x) if np.linalg.norm(x) > 1e-6 else _unit(np.cross(z, [0, 1.0, 0]))
    y = np.cross(z, x)
    lx, ly, lz = win.coord(p0, x), win.coord(p0, y), win.coord(p0, z)
    t = np.clip(lz * F32(1.0 / length), F32(0), F32(1))
    dz = lz - t * F32(length)
    if kx != 1.0:
        lx = lx * F32(kx)
    r = F32(r0) + t * F32(r1 - r0) if r1 != r0 else F32(r0)
    return np.sqrt(lx * lx + ly * ly + dz * dz) - r


def capsule(cv: Canvas, p0, p1, r0: float, val=None, r1: float | None = None, bone=None, **kw):
    """Paint a (tapered, optionally elliptical) capsule; bone=marrow vector paints cortex+marrow."""
    r1 = r0 if r1 is None else r1
    smooth = kw.pop("smooth", False)
    scale = kw.pop("scale", 1.0)
    tex = kw.pop("tex", None)
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    kx = kw.get("kx", 1.0)
    rad = 0.5 * float(np.linalg.norm(p1 - p0)) + max(r0, r1) / min(1.0, kx) + 1.5
    win = cv.window(0.5 * (p0 + p1), rad, smooth)
    if win is None:
        return
    d = _capsule_d(win, p0, p1, r0, r1, **kw)
    if bone is not None:
        win.paint_bone(d, bone)
    elif tex is not None:
        win.paint(d, tex(win, val), scale=scale)
    else:
        win.paint(d, val, scale=scale)


def ellipsoid(
    cv: Canvas,
    c,
    rot,
    half,
    val=None,
    bone=None,
    smooth=False,
    p4=False,
    edge=None,
    scale=1.0,
    tex=None,
):
    """Paint an ellipsoid (p4: squarer superellipsoid) given centre, frame and half axes."""
    c = np.asarray(c, float)
    win = cv.window(c, max(half) + 1.5, smooth)
    if win is None:
        return
    lx, ly, lz = win.local(c, rot)
    qx, qy, qz = (
        (lx * F32(1 / half[0])) ** 2,
        (ly * F32(1 / half[1])) ** 2,
        (lz * F32(1 / half[2])) ** 2,
    )
    f = np.sqrt(np.sqrt(qx * qx + qy * qy + qz * qz)) if p4 else np.sqrt(qx + qy + qz)
    d = (f - F32(1)) * F32(min(half))
    if bone is not None:
        win.paint_bone(d, bone)
    else:
        win.paint(d, tex(win, val) if tex else val, edge=edge, scale=scale)


def tube(cv: Canvas, pts, lats, rx, ry, val, **kw) -> None:
    """Paint a polyline tube with elliptical cross-section (rx lateral, ry the other axis)."""
    for i in range(len(pts) - 1):
        if max(ry[i], ry[i + 1]) <= 0.05:
            continue
        k = (ry[i] + ry[i + 1]) / max(rx[i] + rx[i + 1], 1e-3)
        capsule(
            cv,
            pts[i],
            pts[i + 1],
            max(ry[i], 0.0),
            val,
            r1=max(ry[i + 1], 0.0),
            lat=lats[i],
            kx=k,
            **kw,
        )


# ----------------------------------------------------------------------------------------------
# anatomy: spine chain
# ----------------------------------------------------------------------------------------------

NAMES = [
    "T10",
    "T11",
    "T12",
    "L1",
    "L2",
    "L3",
    "L4",
    "L5",
    "S1",
    "S2",
    "S3",
    "S4",
    "S5",
    "Co1",
    "Co2",
    "Co3",
]
BODY_DIMS = {  # height, width, depth (mm) of an average adult
    "T10": (21.5, 36, 28),
    "T11": (22.5, 38, 29),
    "T12": (24, 40, 30),
    "L1": (25, 42, 31),
    "L2": (26, 44, 32),
    "L3": (27, 46, 33),
    "L4": (27, 48, 34),
    "L5": (26, 50, 34),
    "S1": (27, 50, 35),
    "S2": (22, 40, 27),
    "S3": (19, 31, 21),
    "S4": (15, 24, 16),
    "S5": (12, 18, 12),
    "Co1": (11, 16, 11),
    "Co2": (9, 12, 9),
    "Co3": (7, 9, 7),
}
DISC_BASE = {  # height (mm), lordotic wedge (deg)
    "T10-T11": (5.5, -1.5),
    "T11-T12": (6.0, -1.0),
    "T12-L1": (7.0, 0.5),
    "L1-L2": (8.5, 2.5),
    "L2-L3": (9.5, 4.5),
    "L3-L4": (10.5, 6.5),
    "L4-L5": (11.0, 9.0),
    "L5-S1": (10.5, 12.0),
    "S1-S2": (9.5, 11.0),
}
BODY_WEDGE = {
    "T10": -3.0,
    "T11": -3.0,
    "T12": -2.0,
    "L1": -1.5,
    "L2": -0.5,
    "L3": 0.0,
    "L4": 1.0,
    "L5": 3.5,
}
DEG_WEIGHT = {
    "T10-T11": 0.35,
    "T11-T12": 0.38,
    "T12-L1": 0.42,
    "L1-L2": 0.48,
    "L2-L3": 0.55,
    "L3-L4": 0.65,
    "L4-L5": 0.85,
    "L5-S1": 0.85,
    "S1-S2": 0.75,
}
TP_LEN = {"L1": 14.0, "L2": 19.0, "L3": 25.0, "L4": 22.0, "L5": 18.0, "S1": 15.0}


@dataclass
class Element:
    """A slab of the spinal chain: a vertebral body or the junction below/above it."""

    name: str
    disc: bool
    kind: str
    h: float
    W: float
    D: float
    wedge: float = 0.0
    cor: float = 0.0
    rot: float = 0.0
    shift: float = 0.0
    x: dict = field(default_factory=dict)
    o_inf: np.ndarray = field(default_factory=lambda: np.zeros(3))
    R_inf: np.ndarray = field(default_factory=lambda: np.eye(3))
    o_sup: np.ndarray = field(default_factory=lambda: np.zeros(3))
    R_sup: np.ndarray = field(default_factory=lambda: np.eye(3))
    o_mid: np.ndarray = field(default_factory=lambda: np.zeros(3))
    R_mid: np.ndarray = field(default_factory=lambda: np.eye(3))

    def w(self, x: float, y: float, z: float) -> np.ndarray:
        """Local (left, posterior, superior) mm in the mid frame -> patient LPS."""
        return self.o_mid + self.R_mid @ np.array([x, y, z], float)


@dataclass
class Patient:
    """All anatomy parameters of one study."""

    variant: str
    age: float
    sex: str
    sc: float
    bmi: float
    els: list[Element]
    by: dict[str, Element]
    top: str
    ff: float
    p: dict


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _build_spine(
    rng: np.random.Generator, variant: str, age: float, sc: float
) -> tuple[list[Element], dict]:
    lumb, sacr = variant == "lumbarization", variant == "sacralization"
    dims = dict(BODY_DIMS)
    if lumb:
        dims.update(
            {
                "S1": (25.5, 48, 33),
                "S2": (25, 46, 31),
                "S3": (20, 34, 24),
                "S4": (16, 26, 18),
                "S5": (13, 19, 13),
            }
        )
    top = "S2" if lumb else "S1"
    info: dict = {"sacral_top": top}
    susc = rng.normal(0, 0.12)
    els: list[Element] = []
    for i, nm in enumerate(NAMES):
        h, wd, dp = dims[nm]
        kind = "T" if nm[0] == "T" else "C" if nm.startswith("Co") else "L" if nm[0] == "L" else "S"
        if lumb and nm == "S1":
            kind = "L"
        b = Element(
            nm,
            False,
            kind,
            h * sc * rng.normal(1, 0.035),
            wd * sc * rng.normal(1, 0.03),
            dp * sc * rng.normal(1, 0.03),
        )
        b.wedge = BODY_WEDGE.get(nm, 0.0) + (rng.normal(0, 1.0) if kind in "TL" else 0.0)
        if lumb and nm == "S1":
            b.wedge = rng.uniform(1.0, 4.0)
        b.rot = rng.normal(0, 0.8)
        els.append(b)
        if i + 1 < len(NAMES):
            nxt = NAMES[i + 1]
            els.append(Element(f"{nm}-{nxt}", True, "disc", 1.0, 0.0, 0.0))
    by = {e.name: e for e in els}
    for i, e in enumerate(els):
        if e.disc:
            e.W = 0.5 * (els[i - 1].W + els[i + 1].W)
            e.D = 0.5 * (els[i - 1].D + els[i + 1].D)

    # ---- junction kinds, heights, hydration ----
    remnant_p = 0.30
    for e in els:
        if not e.disc:
            continue
        upper, lower = e.name.split("-")
        x = e.x
        x["hyd"], x["bulge"], x["deg"] = 1.0, 0.0, 0.0
        mobile = by[lower].kind in "TL" or (lower == top and not lumb) or (lumb and lower == "S2")
        if lower.startswith("Co") or upper.startswith("Co"):
            e.kind, e.h = "cocc", rng.uniform(1.5, 2.6) * sc
            x["hyd"] = rng.uniform(0.1, 0.5)
        elif mobile:
            e.kind = "disc"
            base_h, wedge = DISC_BASE[e.name]
            if lumb and e.name == "L5-S1":
                base_h, wedge = 10.5, 9.0
            deg = DEG_WEIGHT[e.name] * _sig((age - 45.0) / 10.0) * 1.1 + susc + rng.normal(0, 0.12)
            deg += 0.1 * (age - 20) / 65
            deg = float(np.clip(deg, 0, 1))
            x["deg"], x["hyd"] = deg, float(np.clip(1 - deg + rng.normal(0, 0.05), 0.02, 1))
            e.h = base_h * sc * rng.normal(1, 0.06) * (1 - 0.55 * deg**1.2)
            e.wedge = wedge + rng.normal(0, 1.5)
            x["bulge"] = 3.5 * deg * rng.uniform(0.3, 1.0)
            if lumb and e.name == "S1-S2":
                if info.get("partial") is None:
                    info["partial"] = bool(rng.random() < 0.35)
                if info["partial"]:
                    e.h = rng.uniform(4.0, 7.0) * sc
                    x["hyd"] = float(np.clip(x["hyd"] * rng.uniform(0.4, 0.9), 0.05, 1))
            if sacr and e.name == "L5-S1":
                form = rng.choice(["hypo", "rud", "fused"], p=[0.35, 0.35, 0.30])
                info["l5s1_form"] = str(form)
                e.kind = str(form)
                if form == "hypo":
                    e.h = rng.uniform(3.5, 6.0) * sc
                    x["hyd"] = float(np.clip(min(x["hyd"], rng.uniform(0.1, 0.5)), 0.02, 1))
                elif form == "rud":
                    e.h = rng.uniform(1.5, 3.0) * sc
                    x["hyd"] = rng.uniform(0.0, 0.2)
                else:
                    e.h = rng.uniform(1.0, 1.8) * sc
                    x["hyd"] = 0.0
                e.wedge = rng.uniform(2.0, 8.0)
                x["bulge"] = 0.0
        else:  # fused sacral junction
            first = (upper == top) or (upper == "L5" and sacr and False)
            p_rem = remnant_p if first else 0.06
            if rng.random() < p_rem:
                e.kind, e.h = "remnant", rng.uniform(1.5, 3.2) * sc
                x["hyd"] = float(np.clip(rng.uniform(0.1, 0.8) * (1.2 - age / 100), 0.02, 0.9))
            else:
                e.kind, e.h = "fused", rng.uniform(1.0, 1.8) * sc
                x["line"] = rng.uniform(0.15, 0.6)
    if sacr:
        form = info["l5s1_form"]
        l5 = by["L5"]
        l5.h *= {
            "hypo": rng.uniform(0.88, 1.0),
            "rud": rng.uniform(0.8, 0.95),
            "fused": rng.uniform(0.75, 0.9),
        }[form]
        l5.wedge += rng.uniform(3.0, 9.0)
        if form == "fused":
            tp = [3, 3] if rng.random() < 0.6 else [3, int(rng.choice([1, 2]))]
        elif form == "rud":
            tp = [int(rng.choice([2, 3])), int(rng.choice([1, 2, 3]))]
        else:
            tp = [int(rng.choice([1, 2])), int(rng.choice([0, 1, 2]))]
        if rng.random() < 0.5:
            tp.reverse()
        l5.x["tp"] = tp
        l5.x["tp_r"] = rng.uniform(8.0, 11.0) * sc
    elif lumb:
        s1 = by["S1"]
        s1.x["tp"] = [0, 0]
        if info["partial"]:
            s1.x["tp"][int(rng.integers(2))] = int(rng.choice([2, 3]))
        s1.x["tp_r"] = rng.uniform(5.5, 8.0) * sc
        by["L5"].x["tp"] = [0, 0]
        by["L5"].x["tp_r"] = rng.uniform(4.5, 7.0) * sc
    else:
        by["L5"].x["tp"] = [0, 0]
        by["L5"].x["tp_r"] = rng.uniform(4.5, 7.5) * sc

    # ---- lordosis target ----
    ll = rng.uniform(25, 70)
    ss = float(np.clip(0.6 * ll + 10 + rng.normal(0, 5), 22, 58))
    last = "S1" if lumb else "L5"
    i0, i1 = els.index(by["L1"]), els.index(by[last]) + 1  # up to the last mobile junction
    region = els[i0 : i1 + 1]
    cur = sum(e.wedge for e in region)
    adj = [e for e in region if e.kind in ("disc", "hypo")]
    tot_h = sum(e.h for e in adj)
    for e in adj:
        e.wedge += (ll - cur) * e.h / tot_h
    # sacral and coccygeal kyphosis
    ks, kc = rng.uniform(35, 65), rng.uniform(15, 45)
    it = els.index(by[top])
    sac = [e for e in els[it:] if not e.name.startswith("Co") and "Co" not in e.name]
    cox = [e for e in els[it:] if e not in sac]
    for grp, tot in ((sac, ks), (cox, kc)):
        hs = sum(e.h for e in grp)
        for e in grp:
            e.wedge = -tot * e.h / hs
    info.update(lordosis=ll, sacral_slope=ss, sacral_kyphosis=ks)

    # ---- listhesis, scoliosis ----
    if age > 45 and rng.random() < 0.14:
        lv = str(rng.choice(["L4-L5", "L4-L5", "L3-L4", "L5-S1"]))
        by[lv].shift = rng.uniform(3.0, 9.0) * sc
        info["listhesis"] = [lv, round(by[lv].shift, 1)]
    elif rng.random() < 0.08:
        lv = str(rng.choice(["L2-L3", "L3-L4"]))
        by[lv].shift = -rng.uniform(2.0, 4.0)
        info["listhesis"] = [lv, round(by[lv].shift, 1)]
    b_sc = rng.uniform(2.5, 9.0) if rng.random() < 0.35 else rng.uniform(0, 2.0)
    b_sc *= rng.choice([-1, 1])
    kk = rng.uniform(0.8, 1.25)
    up = els[:it][::-1]
    lens = np.cumsum([0.0] + [e.h for e in up])
    tt = lens / lens[-1]
    beta = b_sc * np.cos(np.pi * kk * tt)
    for j, e in enumerate(up):
        e.cor = float(beta[j + 1] - beta[j])
        e.rot += 0.3 * e.cor * 3
    info.update(scoliosis_deg=round(float(b_sc), 2))

    # ---- chain: anchor at sacral top superior endplate ----
    R = _ry(float(beta[0])) @ _rx(ss)
    o = np.zeros(3)
    for e in up:  # upward
        e.o_inf, e.R_inf = o.copy(), R.copy()
        rh = R @ _rx(-e.wedge / 2) @ _ry(e.cor / 2) @ _rz(e.rot / 2)
        o = o + e.h * rh[:, 2] - e.shift * rh[:, 1]
        R = rh @ _rx(-e.wedge / 2) @ _ry(e.cor / 2) @ _rz(e.rot / 2)
        e.o_sup, e.R_sup, e.R_mid = o.copy(), R.copy(), rh
        e.o_mid = 0.5 * (e.o_inf + e.o_sup)
    R = _ry(float(beta[0])) @ _rx(ss)
    o = np.zeros(3)
    for e in els[it:]:  # downward
        e.o_sup, e.R_sup = o.copy(), R.copy()
        rh = R @ _rx(e.wedge / 2)
        o = o - e.h * rh[:, 2]
        R = rh @ _rx(e.wedge / 2)
        e.o_inf, e.R_inf, e.R_mid = o.copy(), R.copy(), rh
        e.o_mid = 0.5 * (e.o_inf + e.o_sup)
    return els, info


def _pathology(rng: np.random.Generator, pt: Patient) -> None:
    """Modic changes, Schmorl nodes, protrusions, vacuum, haemangiomas (all variants alike)."""
    for e in pt.els:
        if e.disc and e.kind == "disc":
            deg = e.x["deg"]
            if rng.random() < 0.6 * deg**2 and e.name[0] == "L":
                e.x["modic"] = int(rng.choice([1, 2, 3], p=[0.3, 0.6, 0.1]))
                e.x["modic_side"] = int(rng.choice([0, 1, 2]))  # 0 both, 1 upper, 2 lower
                e.x["modic_depth"] = rng.uniform(3, 10)
            if deg > 0.75 and rng.random() < 0.25:
                e.x["vacuum"] = True
            if deg > 0.4 and rng.random() < 0.12:
                e.x["protrusion"] = (rng.choice([-1, 1]) * rng.uniform(0, 8), rng.uniform(3, 6))
            e.x["cleft"] = pt.age > 32 and e.x["hyd"] < 0.85
            for side in ("upper", "lower"):
                if rng.random() < 0.06:
                    e.x.setdefault("schmorl", []).append(
                        (side, rng.uniform(-8, 8), rng.uniform(-6, 4), rng.uniform(2.5, 5))
                    )
        elif not e.disc and e.kind in "TL" and rng.random() < 0.06:
            e.x["hemangioma"] = (
                rng.uniform(-0.4, 0.4),
                rng.uniform(-0.3, 0.3),
                rng.uniform(-0.2, 0.2),
                rng.uniform(3, 8),
            )
        if not e.disc:
            e.x["ff"] = float(
                np.clip(pt.ff + rng.normal(0, 0.04) + (0.08 if e.kind in "SC" else 0), 0.05, 0.92)
            )


def make_patient(rng: np.random.Generator, variant: str) -> Patient:
    """Draw one patient: demographics, spine chain, pathology, placement in the scanner."""
    age = float(rng.uniform(20, 85))
    sex = str(rng.choice(["M", "F"]))
    sc = float(np.clip(rng.normal(1.0 if sex == "M" else 0.94, 0.045), 0.88, 1.12))
    bmi = float(np.clip(rng.normal(26, 4.5), 17, 42))
    els, info = _build_spine(rng, variant, age, sc)
    by = {e.name: e for e in els}
    ff = float(np.clip(0.22 + 0.006 * (age - 20) + rng.normal(0, 0.07), 0.1, 0.8))
    # global placement: patient yaw/roll, table position
    g = _rz(rng.normal(0, 1.5)) @ _ry(rng.normal(0, 1.5))
    tgt = np.array([rng.uniform(-12, 12), rng.uniform(-30, 50), rng.uniform(-120, 120)])
    ref = by["L3"].o_mid.copy()
    for e in els:
        for a in ("o_inf", "o_sup", "o_mid"):
            setattr(e, a, g @ (getattr(e, a) - ref) + tgt)
        for a in ("R_inf", "R_sup", "R_mid"):
            setattr(e, a, g @ getattr(e, a))
    p = dict(info)
    p["conus_level"] = str(
        rng.choice(["T12", "T12-L1", "L1", "L1-L2", "L2"], p=[0.1, 0.2, 0.4, 0.22, 0.08])
    )
    p["conus_frac"] = rng.uniform(-0.4, 0.4)
    p["bif_level"] = str(
        rng.choice(["L3", "L3-L4", "L4", "L4-L5", "L5"], p=[0.1, 0.2, 0.45, 0.15, 0.1])
    )
    pt = Patient(variant, age, sex, sc, bmi, els, by, info["sacral_top"], ff, p)
    _pathology(rng, pt)
    p["fat_back"] = 8 + 1.6 * (bmi - 18) * rng.uniform(0.6, 1.3)
    p["fat_front"] = 8 + 2.6 * (bmi - 18) * rng.uniform(0.6, 1.3)
    p["front_depth"] = 95 + 5.0 * (bmi - 18) + rng.uniform(-10, 25)
    p["half_width"] = 125 + 4.0 * (bmi - 18) + rng.uniform(-10, 15)
    p["muscle"] = rng.uniform(0.8, 1.15) * (1.0 if sex == "M" else 0.88)
    p["fatty_muscle"] = float(np.clip((age - 30) / 80 + rng.normal(0, 0.1), 0, 0.6))
    p["aorta_r"] = (9.5 + 0.04 * (age - 20)) * rng.uniform(0.9, 1.15)
    p["rib12"] = rng.uniform(25, 140) if rng.random() < 0.6 else rng.uniform(100, 170)
    p["rib11"] = rng.uniform(120, 220)
    p["kidney_dz"] = rng.uniform(-15, 15)
    p["bowel_waves"] = _rand_waves(rng, 6, (18, 60))
    p["muscle_waves"] = _rand_waves(rng, 4, (5, 14), zs=0.12)
    p["marrow_waves"] = _rand_waves(rng, 3, (6, 20))
    return pt


# ----------------------------------------------------------------------------------------------
# scene painting
# ----------------------------------------------------------------------------------------------


def _profile(pt: Patient) -> dict[str, np.ndarray]:
    """Spine profile as a function of patient z (for soft tissues)."""
    es = [e for e in pt.els if not e.name.startswith("Co")]
    z = np.array([e.o_mid[2] for e in es])
    order = np.argsort(z)
    arr = {
        "z": z[order],
        "x": np.array([e.o_mid[0] for e in es])[order],
        "y": np.array([e.o_mid[1] for e in es])[order],
        "d": np.array([e.D for e in es])[order],
    }
    return arr


def _paint_torso(cv: Canvas, pt: Patient) -> None:
    prof, p = _profile(pt), pt.p
    win = cv.full(smooth=True)
    x, y, z = win.local(np.zeros(3), np.eye(3))
    zf = z.ravel()
    shp = z.shape
    ys = np.interp(zf, prof["z"], prof["y"]).astype(F32).reshape(shp)
    xs = np.interp(zf, prof["z"], prof["x"]).astype(F32).reshape(shp)
    dh = np.interp(zf, prof["z"], prof["d"]).astype(F32).reshape(shp) * F32(0.5)
    yb = ys + dh + F32(58 * pt.sc * p["muscle"] + p["fat_back"])
    yf = ys - dh - F32(p["front_depth"] + p["fat_front"])
    hx = F32(p["half_width"])

    def shell(back, front, half):
        cy, hy = (back + front) * F32(0.5), (back - front) * F32(0.5)
        u, v = (x - xs) / F32(half), (y - cy) / hy
        u2, v2 = u * u, v * v
        f = np.where(v > 0, np.sqrt(np.sqrt(u2 * u2 + v2 * v2)), np.sqrt(u2 + v2))
        return (f - F32(1)) * np.minimum(hy, F32(half))

    d_out = shell(yb, yf, hx)
    win.paint(d_out, cv.tissue("skin"))
    win.paint(d_out + F32(1.8), cv.tissue("fat"))
    tb, tf, tl = p["fat_back"], p["fat_front"], 0.7 * p["fat_front"]
    d_in = shell(yb - F32(tb), yf + F32(tf), hx - tl)
    win.paint(d_in, cv.tissue("muscle"))
    d_cav = shell(yb - F32(tb), yf + F32(tf + 12), hx - tl - 14)
    lat = np.abs(x - xs) - (dh * F32(1.4) + F32(40))
    win.paint(np.maximum(np.maximum(d_cav, y - (ys + F32(8))), lat), cv.tissue("fat"), edge=2.0)
    d_bow = np.maximum(d_cav, y - (ys - dh - F32(24)))
    tex = _texture(win, p["bowel_waves"])
    bow = (
        cv.tissue("bowel")[:, None, None, None, None]
        * np.clip(F32(0.75) + F32(0.55) * tex, F32(0.05), F32(1.4))[None]
    )
    fl = np.clip(tex - F32(0.6), 0, 1)[None] * F32(1.5)
    bow = bow * (1 - fl) + cv.tissue("fluid")[:, None, None, None, None] * fl
    gas = (tex < F32(-0.95))[None]
    bow = np.where(gas, cv.tissue("air")[:, None, None, None, None], bow)
    win.paint(d_bow, bow, edge=2.5)


def _paint_organs(cv: Canvas, pt: Patient) -> None:
    by, p, sc = pt.by, pt.p, pt.sc
    eye = np.eye(3)
    t10, t11, l1, l3 = by["T10"], by["T11"], by["L1"], by["L3"]
    xc, yc = l3.o_mid[0], l3.o_mid[1]
    # liver (right = -x), lung bases
    ellipsoid(
        cv,
        [xc - 75 * sc, yc - 60, t11.o_mid[2] + 15],
        eye,
        (85 * sc, 75, 85),
        cv.tissue("liver"),
        smooth=True,
        edge=2.5,
    )
    for s in (-1, 1):
        ellipsoid(
            cv,
            [xc + s * 80 * sc, yc + 25, t10.o_mid[2] + 75],
            eye,
            (55 * sc, 60, 100),
            cv.tissue("air"),
            smooth=True,
            edge=2.5,
        )
    # kidneys with perirenal fat
    for s in (-1, 1):
        dz = 5 if s > 0 else -12
        c = np.array([xc + s * 72 * sc, yc + 18, l1.o_mid[2] + dz + p["kidney_dz"]])
        rot = _rx(15) @ _ry(-s * 12)
        kw = {"smooth": True}
        ellipsoid(cv, c, rot, (38 * sc, 33, 68 * sc), cv.tissue("fat"), edge=2.0, **kw)
        ellipsoid(cv, c, rot, (27 * sc, 23, 55 * sc), cv.tissue("kidney_c"), edge=1.5, **kw)
        ellipsoid(
            cv,
            c + s * np.array([-4, 0, 0]),
            rot,
            (18 * sc, 16, 42 * sc),
            cv.tissue("kidney_m"),
            edge=2.0,
            **kw,
        )
        ellipsoid(
            cv,
            c + s * np.array([-14, 0, 0]),
            rot,
            (8, 9, 20 * sc),
            cv.tissue("fat"),
            edge=1.5,
            **kw,
        )
    # pelvis: rectum and bladder in front of the lower sacrum / coccyx
    s4, co = by["S4"], by["Co2"]
    ant = -s4.R_mid[:, 1]
    ellipsoid(
        cv,
        s4.o_mid + ant * 35 + np.array([0, 0, 5]),
        eye,
        (22, 18, 35),
        cv.tissue("bowel"),
        edge=2.0,
        scale=0.9,
        smooth=True,
    )
    ellipsoid(
        cv,
        co.o_mid + np.array([0, -85, 25]),
        eye,
        (45, 35, 35),
        cv.tissue("fluid"),
        smooth=True,
        edge=2.0,
    )
    # gluteal muscles
    s3 = by["S3"]
    for s in (-1, 1):
        ellipsoid(
            cv,
            s3.o_mid + np.array([s * 78 * sc, 45, -15]),
            eye,
            (52 * sc, 32, 75),
            cv.tissue("muscle"),
            smooth=True,
            edge=2.0,
        )


def _spine_nodes(pt: Patient, first: str, last: str, local: tuple[float, float, float]):
    """Nodes along the elements first..last at local offsets scaled by element width/depth."""
    i0, i1 = pt.els.index(pt.by[first]), pt.els.index(pt.by[last])
    pts, lats = [], []
    for e in pt.els[i0 : i1 + 1]:
        pts.append(e.w(*local))
        lats.append(e.R_mid[:, 0])
    return np.array(pts), np.array(lats)


def _paint_muscles_vessels(cv: Canvas, pt: Patient) -> None:
    by, p, sc, m = pt.by, pt.p, pt.sc, pt.p["muscle"]
    fat_inf = p["fatty_muscle"]
    mus, fat = cv.tissue("muscle"), cv.tissue("fat")

    def mtex(win: Win, val):
        t = _texture(win, p["muscle_waves"])
        f = (F32(0.5 * fat_inf) * np.clip(t - F32(0.35), 0, 1) ** 2)[None]
        return mus[:, None, None, None, None] * (1 - f) + fat[:, None, None, None, None] * f

    lumbar = ["T12", "L1", "L2", "L3", "L4", "L5"] + (
        ["S1"] if pt.variant == "lumbarization" else []
    )
    for s in (-1, 1):
        # psoas
        pts, lats, rr = [], [], []
        for k, nm in enumerate(lumbar):
            e = by[nm]
            r = (5 + 16 * k / (len(lumbar) - 1)) * sc * m
            pts.append(e.w(s * (e.W / 2 + 0.8 * r), -0.1 * e.D, 0))
            lats.append(e.R_mid[:, 0])
            rr.append(r)
        e = by[pt.top]
        pts.append(e.w(s * (e.W / 2 + 28), -e.D / 2 - 12, -5))
        lats.append(e.R_mid[:, 0])
        rr.append(rr[-1])
        pts.append(e.w(s * (e.W / 2 + 45), -e.D / 2 - 40, -45))
        lats.append(e.R_mid[:, 0])
        rr.append(rr[-1] * 0.9)
        rr_a = np.array(rr)
        tube(cv, pts, lats, rr_a * 1.1, rr_a, mus)
        # quadratus lumborum
        pts, lats = _spine_nodes(pt, "T12", "L4", (s * 48 * sc, 22, 0))
        r = np.full(len(pts), 9.0 * m)
        tube(cv, pts, lats, r * 1.4, r, mus)
        # paraspinal muscles
        pts, lats = _spine_nodes(pt, "T10", "S3", (0, 0, 0))
        offs, rxs, rys = [], [], []
        i0 = pt.els.index(by["T10"])
        for e in pt.els[i0 : i0 + len(pts)]:
            sac = e.name[0] == "S"
            rx = (16 if sac else 29) * sc * m
            ry = (12 if sac else 23) * sc * m
            offs.append(e.w(s * (3 + rx * 0.9), e.D / 2 + (16 if sac else 16) + ry, 0))
            rxs.append(rx)
            rys.append(ry)
        tube(cv, np.array(offs), lats, np.array(rxs), np.array(rys), None, tex=mtex)
    # aorta / common iliac arteries, IVC / iliac veins
    ra = p["aorta_r"]
    bif = by[p["bif_level"]]
    pts, lats = [], []
    for e in pt.els[pt.els.index(by["T10"]) : pt.els.index(bif) + 1]:
        pts.append(e.w(10 + 0.25 * e.W, -e.D / 2 - ra - 3, 0))
        lats.append(e.R_mid[:, 0])
    blood = cv.tissue("blood")
    tube(cv, pts, lats, np.full(len(pts), ra), np.full(len(pts), ra), cv.tissue("muscle"))
    tube(cv, pts, lats, np.full(len(pts), ra - 1.5), np.full(len(pts), ra - 1.5), blood)
    b0 = pts[-1]
    for s in (-1, 1):
        b1 = b0 + np.array([s * 45, -15, -70])
        capsule(cv, b0, b1, ra * 0.65, blood)
    ivc_sig = cv.params(0.5, 1400, 150) * np.float32(0.3) + blood
    pts, lats = [], []
    for e in pt.els[pt.els.index(by["T11"]) : pt.els.index(by["L5"]) + 1]:
        pts.append(e.w(-8 - 0.3 * e.W, -e.D / 2 - 10, 0))
        lats.append(e.R_mid[:, 0])
    tube(cv, pts, lats, np.full(len(pts), 12.0), np.full(len(pts), 8.0), ivc_sig)
    for s in (-1, 1):
        capsule(cv, pts[-1], pts[-1] + np.array([s * 40, -5, -60]), 7.0, ivc_sig)


def _post_capsules(e: Element, pt: Patient) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Posterior-element landmarks of one vertebra as capsules (world p0, p1, radius)."""
    sc, D, H = pt.sc, e.D, e.h
    y0 = D / 2
    caps: list[tuple[np.ndarray, np.ndarray, float]] = []
    if e.kind == "C":
        return caps
    lvl = {"T10": 0, "T11": 1, "T12": 2, "L1": 3, "L2": 4, "L3": 5, "L4": 6, "L5": 7}.get(e.name, 7)
    if e.kind in "TL":
        ipd = (17 + 1.6 * lvl) * sc
        rp = (3.8 + 0.35 * lvl) * sc
        px = ipd / 2 + rp
        zp = H / 2 - 7 * sc
        for s in (-1, 1):
            caps.append((e.w(s * px, y0 - 4, zp + 1.5), e.w(s * px, y0 + 9, zp + 1.5), rp))
            caps.append((e.w(s * px, y0 - 4, zp - 2.5), e.w(s * px, y0 + 9, zp - 2.5), rp - 0.8))
            caps.append((e.w(s * px, y0 + 10, zp - 1), e.w(s * 4, y0 + 19, zp - 6), 3.5))
            caps.append((e.w(s * 4, y0 + 19, zp - 6), e.w(s * 5, y0 + 20, -H / 2 - 3), 3.5))
            caps.append((e.w(s * px, y0 + 9, zp + 2), e.w(s * (px + 3), y0 + 12, H / 2 + 9), 4.0))
            caps.append(
                (e.w(s * (px - 3), y0 + 17, zp - 6), e.w(s * (px - 3), y0 + 19.5, -H / 2 - 6), 4.0)
            )
            if e.kind == "T":
                caps.append((e.w(s * px, y0 + 8, zp), e.w(s * (px + 18), y0 + 22, zp + 3), 4.5))
        if e.kind == "T":
            caps.append((e.w(0, y0 + 17, zp - 5), e.w(0, y0 + 42 * sc, zp - 32), 4.0))
        else:
            caps.append((e.w(0, y0 + 19, zp - 6), e.w(0, y0 + 48 * sc, zp - 8), 5.0))
            caps.append((e.w(0, y0 + 20, -H / 2 + 3), e.w(0, y0 + 45 * sc, zp - 16), 4.0))
    return caps


def _paint_bones(cv: Canvas, pt: Patient) -> None:
    by, p, sc = pt.by, pt.p, pt.sc
    top = by[pt.top]
    pel = cv.marrow(min(pt.ff + 0.12, 0.9))
    # iliac wings: curved plates, posterior-medial end next to the sacral ala
    for s in (-1, 1):
        ang = math.radians(40)
        v = np.array([s * math.sin(ang), -math.cos(ang), 0.0])
        nrm = np.array([s * math.cos(ang), math.sin(ang), 0.0])
        post = top.o_mid + np.array([s * (top.W / 2 + 30), 14, -5])
        for k, (ofs, bend) in enumerate(((35, 0.0), (70, 6.0), (100, 14.0))):
            c = post + v * ofs + nrm * bend
            rot = np.column_stack([nrm, v, [0, 0, 1.0]])
            hz = (60 if k else 45) * sc
            ellipsoid(cv, c + np.array([0, 0, 10 if k else -5]), rot, (7.0, 38.0, hz), bone=pel)
    # ribs
    for nm, length in (("T10", 260.0), ("T11", p["rib11"]), ("T12", p["rib12"])):
        e = by[nm]
        W, D, H = e.W, e.D, e.h
        for s in (-1, 1):
            loc = [
                (s * (W / 2 - 2), D / 2 - 4, H / 2 - 4),
                (s * (W / 2 + 18), D / 2 + 18, H / 2 - 8),
                (s * (W / 2 + 50), D / 2 + 26, H / 2 - 25),
                (s * (W / 2 + 95), D / 2 + 2, H / 2 - 55),
                (s * (W / 2 + 125), D / 2 - 50, H / 2 - 85),
            ]
            pts = [e.w(*q) for q in loc]
            left = length
            for a, b in zip(pts[:-1], pts[1:], strict=True):
                seg = float(np.linalg.norm(b - a))
                if left <= 0:
                    break
                if seg > left:
                    b = a + (b - a) * (left / seg)
                capsule(cv, a, b, 4.5 if left > 20 else 3.5, bone=pel)
                left -= seg
    # vertebral posterior elements, transverse processes, sacral masses
    for e in pt.els:
        if e.disc:
            continue
        mar = cv.marrow(e.x.get("ff", pt.ff) + 0.05)
        for a, b, r in _post_capsules(e, pt):
            capsule(cv, a, b, r, bone=mar)
        if e.kind == "L":
            _paint_tp(cv, pt, e, mar)
        if e.kind == "S":
            i = [x.name for x in pt.els if not x.disc and x.kind == "S"].index(e.name)
            W, D, H = e.W, e.D, e.h
            y0 = D / 2
            if i <= 1:
                hw, hd = (19 * sc, 17) if i == 0 else (13 * sc, 13)
                for s in (-1, 1):
                    ellipsoid(
                        cv,
                        e.w(s * (W / 2 + hw * 0.45), y0 - 6, 0),
                        e.R_mid,
                        (hw, hd, 0.55 * H + 2),
                        bone=mar,
                    )
            if i == 0:
                px = 16 * sc
                for s in (-1, 1):
                    capsule(
                        cv,
                        e.w(s * px, y0 + 9, H / 2 - 5),
                        e.w(s * (px + 3), y0 + 12, H / 2 + 9),
                        4.0,
                        bone=mar,
                    )
            px = max(6.0, (14 - 2.5 * i) * sc)
            for s in (-1, 1):
                capsule(
                    cv,
                    e.w(s * px, y0 - 2, 0),
                    e.w(s * px, y0 + 12, 0),
                    max(2.5, 5 - 0.6 * i),
                    bone=mar,
                )
                capsule(
                    cv,
                    e.w(s * (px + 4), y0 + 12, 0),
                    e.w(0, y0 + 14 - i, 0),
                    max(2.5, 4.5 - 0.4 * i),
                    bone=mar,
                )
                capsule(
                    cv,
                    e.w(s * (px + 4), y0 + 12, H / 2),
                    e.w(s * (px + 4), y0 + 12, -H / 2),
                    3.0,
                    bone=mar,
                )
            if i < 4:
                capsule(
                    cv, e.w(0, y0 + 14 - i, 2), e.w(0, y0 + 20 - i, -3), 3.5 - 0.4 * i, bone=mar
                )


def _paint_tp(cv: Canvas, pt: Patient, e: Element, mar: np.ndarray) -> None:
    """Transverse processes; on a transitional vertebra they may meet the sacral ala."""
    sc, H, D = pt.sc, e.h, e.D
    y0 = D / 2
    lvl = {"L1": 3, "L2": 4, "L3": 5, "L4": 6, "L5": 7}.get(e.name, 7)
    px = (17 + 1.6 * lvl) * sc / 2 + (3.8 + 0.35 * lvl) * sc
    zp = H / 2 - 7 * sc
    types = e.x.get("tp", [0, 0])
    top = pt.by[pt.top]
    for k, s in enumerate((-1, 1)):
        t = types[k]
        root = e.w(s * px, y0 + 6, zp - 1)
        if t == 0:
            r = e.x.get("tp_r", (3.5 + 0.2 * lvl) * sc)
            tip = e.w(s * (px + TP_LEN.get(e.name, 18) * sc), y0 + 4, zp - 3)
            capsule(cv, root, tip, r, bone=mar)
            continue
        r = e.x.get("tp_r", 9.0)
        ala = top.w(s * (top.W / 2 + 9 * sc), top.D / 2 - 6, 0.55 * top.h)
        root_b = e.w(s * px, y0 + 3, zp - 4)
        u = _unit(ala - root_b)
        gap = {1: 6.0, 2: 1.6, 3: -3.0}[t]
        end = ala - u * (r * 0.6 + gap)
        capsule(cv, root_b, end, r * 0.7, r1=r, bone=mar)


def _canal_nodes(pt: Patient) -> dict[str, np.ndarray]:
    """Canal centre line from T10 to S4 resampled every 5 mm with radii and frames."""
    by = pt.by
    i0, i1 = pt.els.index(by["T10"]), pt.els.index(by["S4"])
    pts, lats, ant, rca, rcl, sap, sal = [], [], [], [], [], [], []
    sacral = [x.name for x in pt.els if not x.disc and x.kind == "S"]
    for e in pt.els[i0 : i1 + 1]:
        nm = e.name.split("-")[0] if e.disc else e.name
        reg = "S" if nm in sacral else ("T" if nm[0] == "T" else "L")
        k = sacral.index(nm) if reg == "S" else 0
        a_ap = {"T": 7.5, "L": 9.0, "S": max(3.0, 7.5 - 1.4 * k)}[reg] * pt.sc
        a_lat = {"T": 8.5, "L": 12.0, "S": max(5.0, 13.0 - 2.0 * k)}[reg] * pt.sc
        pts.append(e.w(0, e.D / 2 + a_ap + 0.5, 0))
        lats.append(e.R_mid[:, 0])
        ant.append(-e.R_mid[:, 1])
        rca.append(a_ap)
        rcl.append(a_lat)
        sap.append(6.5 * pt.sc if reg != "S" else 5.5 * pt.sc)
        sal.append(8.0 * pt.sc if reg == "T" else 9.0 * pt.sc)
    pts = np.array(pts)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    sn = np.arange(0.0, s[-1] + 1e-6, 5.0)

    def itp(a):
        a = np.asarray(a, float)
        return (
            np.column_stack([np.interp(sn, s, a[:, j]) for j in range(a.shape[1])])
            if a.ndim == 2
            else np.interp(sn, s, a)
        )

    # arclength positions of named elements
    marks = {e.name: s[j] for j, e in enumerate(pt.els[i0 : i1 + 1])}
    return {
        "s": sn,
        "p": itp(pts),
        "lat": itp(lats),
        "ant": itp(ant),
        "rca": itp(rca),
        "rcl": itp(rcl),
        "sap": itp(sap),
        "sal": itp(sal),
        "marks": marks,
    }


def _paint_canal(cv: Canvas, pt: Patient) -> None:
    cn = _canal_nodes(pt)
    s, p, lat, ant = cn["s"], cn["p"], cn["lat"], cn["ant"]
    marks = pt.p
    # foraminal fat and root ganglia at each mobile level
    for e in pt.els:
        if (
            e.disc
            and e.kind in ("disc", "hypo")
            and e.name[0] in "TLS"
            and not e.name.startswith("T10")
        ):
            for sd in (-1, 1):
                ellipsoid(
                    cv,
                    e.w(sd * 17 * pt.sc, e.D / 2 + 6, 3),
                    e.R_mid,
                    (5.0, 6.0, 9.0),
                    cv.tissue("fat"),
                )
                ellipsoid(
                    cv,
                    e.w(sd * 17 * pt.sc, e.D / 2 + 5, 5),
                    e.R_mid,
                    (2.6, 2.6, 3.5),
                    cv.tissue("nerve"),
                )
    # bony canal = epidural fat
    tube(cv, p, lat, cn["rcl"], cn["rca"], cv.tissue("fat"))
    # ligamentum flavum at disc levels
    for e in pt.els:
        if e.disc and e.kind == "disc" and e.name[0] in "TL":
            for sd in (-1, 1):
                capsule(
                    cv,
                    e.w(sd * 8, e.D / 2 + 17.5, 6),
                    e.w(sd * 3, e.D / 2 + 18.5, -7),
                    2.2,
                    cv.tissue("ligament"),
                )
    # thecal sac ending at S2
    s_end = cn["marks"].get("S2", s[-1])
    s_s1 = cn["marks"].get(pt.top, s_end - 20)
    taper = np.clip((s_end - s) / max(s_end - s_s1, 5.0), 0, 1) ** 0.5
    sc_ = p + ant * 1.5
    tube(cv, sc_, lat, cn["sal"] * taper, cn["sap"] * taper, cv.tissue("csf"))
    # cord and conus
    nm = marks["conus_level"]
    s_tip = cn["marks"][nm] + marks["conus_frac"] * 0.5 * pt.by[nm].h
    rc = np.where(s < s_tip - 22, 1.0, np.sqrt(np.clip((s_tip - s) / 22.0, 0, 1)))
    enl = 1 + 0.15 * np.exp(-(((s - (s_tip - 55)) / 20.0) ** 2))
    cord_p = p + ant * 2.5
    tube(cv, cord_p, lat, 4.4 * rc * enl, 3.4 * rc * enl, cv.tissue("cord"))
    # filum and cauda equina (roots layer dorsally)
    below = (s >= s_tip - 12) & (s <= s_end)
    if below.sum() >= 2:
        q = np.nonzero(below)[0]
        post = -ant[q]
        ones = np.ones(len(q))
        tube(cv, cord_p[q], lat[q], 0.7 * ones, 0.7 * ones, cv.tissue("nerve"))
        for dx, dy in ((-2.5, 2.0), (2.5, 2.0), (-5.0, 1.0), (5.0, 1.0)):
            frac = np.clip((s[q] - s_tip) / 60.0, 0, 1)[:, None]
            rp = p[q] + lat[q] * dx * (0.6 + 0.6 * frac) + post * (dy + 1.5 * frac)
            tube(cv, rp, lat[q], 0.85 * ones, 0.85 * ones, cv.tissue("nerve"))


def _body_d(win: Win, e: Element, conc_i: float, conc_s: float, ti: float, ts: float, t: float):
    """Signed distances of a vertebral body: outer surface and marrow surface."""
    x, y, z = win.local(e.o_mid, e.R_mid)
    zi = win.coord(e.o_inf, e.R_inf[:, 2])
    zs = win.coord(e.o_sup, e.R_sup[:, 2])
    a, b = e.W / 2, e.D / 2
    waist = F32(1) - F32(0.06) * np.clip(F32(1) - (z * F32(2 / e.h)) ** 2, 0, 1)
    ax, ay = x / (F32(a) * waist), y / (F32(b) * waist)
    ax2, ay2 = ax * ax, ay * ay
    f = np.where(y < 0, np.sqrt(ax2 + ay2), np.sqrt(np.sqrt(ax2 * ax2 + ay2 * ay2)))
    d_fp = (f - F32(1)) * F32(min(a, b))
    d_fp = np.maximum(d_fp, y - F32(b) * waist + F32(1.5) * np.clip(F32(1) - ax2, 0, 1))
    g = np.clip(F32(1) - np.minimum(f, F32(1)) ** 2, 0, 1)
    d_i = F32(conc_i) * g - zi
    d_s = zs + F32(conc_s) * g
    d = np.maximum(d_fp, np.maximum(d_i, d_s))
    dm = np.maximum(d_fp + F32(t), np.maximum(d_i + F32(ti), d_s + F32(ts)))
    return d, dm, (x, y, z, f)


def _disc_d(win: Win, e: Element, conc_b: float, conc_a: float):
    x, y, z = win.local(e.o_mid, e.R_mid)
    zi = win.coord(e.o_inf, e.R_inf[:, 2])
    zs = win.coord(e.o_sup, e.R_sup[:, 2])
    a = e.W / 2 * (1.02 + 0.02 * e.x.get("bulge", 0))
    b = e.D / 2 * 1.02
    bp = b + e.x.get("bulge", 0)
    ax, ay = x / F32(a), y / np.where(y > 0, F32(bp), F32(b))
    ax2, ay2 = ax * ax, ay * ay
    f = np.where(y < 0, np.sqrt(ax2 + ay2), np.sqrt(np.sqrt(ax2 * ax2 + ay2 * ay2)))
    d_fp = (f - F32(1)) * F32(min(a, b))
    g = np.clip(F32(1) - np.minimum(f * F32(1.03), F32(1)) ** 2, 0, 1)
    d = np.maximum(d_fp, np.maximum(-zi - F32(conc_b) * g, zs - F32(conc_a) * g))
    return d, (x, y, z)


def _conc(e: Element, nb: Element | None) -> tuple[float, float]:
    """Endplate concavity depth (mm) and cortical thickness toward a neighbouring junction."""
    if nb is None or nb.kind == "fused":
        return 0.0, 0.0
    base = {"T": 1.0, "L": 1.6, "S": 1.0, "C": 0.4}[e.kind]
    return base, 1.1


def _paint_discs_bodies(cv: Canvas, pt: Patient) -> None:
    els = pt.els
    # discs / junctions first (bodies overwrite their rims)
    for i, e in enumerate(els):
        if not e.disc:
            continue
        above, below = els[i - 1], els[i + 1]
        rad = math.sqrt((e.W / 2) ** 2 + (e.D / 2 + 5) ** 2 + (e.h / 2 + 4) ** 2) + 2
        win = cv.window(e.o_mid, rad)
        if win is None:
            continue
        if e.kind == "fused":
            d, (x, y, z) = _disc_d(win, e, 0.0, 0.0)
            win.paint(d, cv.marrow(below.x.get("ff", pt.ff)))
            line = np.maximum(d + F32(2.0), np.abs(z) - F32(0.5))
            win.paint(line, cv.tissue("cortex"), scale=e.x.get("line", 0.4))
            continue
        d, (x, y, z) = _disc_d(win, e, _conc(below, e)[0], _conc(above, e)[0])
        hyd = e.x.get("hyd", 1.0)
        win.paint(d, cv.tissue("annulus"))
        hn = max(0.45, 0.33 * e.h * (0.55 + 0.45 * hyd))
        sz = 0.62 if e.kind in ("disc", "hypo") else 0.45
        a, b = e.W / 2, e.D / 2
        xn, yn = x * F32(1 / (sz * a)), (y - F32(0.1 * b)) * F32(1 / (0.55 * b))
        dn = (np.sqrt(xn * xn + yn * yn + (z * F32(1 / hn)) ** 2) - F32(1)) * F32(hn)
        win.paint(np.maximum(dn, d + F32(1.0)), cv.nucleus(hyd), edge=1.6)
        if e.x.get("cleft"):
            win.paint(
                np.maximum(dn + F32(1.5), np.abs(z) - F32(0.5)), cv.tissue("annulus"), scale=0.55
            )
        if e.x.get("vacuum"):
            dv = np.sqrt(
                (x * F32(1 / (0.3 * a))) ** 2
                + ((y + F32(0.2 * b)) * F32(1 / (0.3 * b))) ** 2
                + (z * F32(1 / 0.9)) ** 2
            )
            win.paint((dv - F32(1)) * F32(0.9), cv.tissue("air"), scale=0.85)
        if "protrusion" in e.x:
            px, pr = e.x["protrusion"]
            ellipsoid(
                cv,
                e.w(px, e.D / 2 + e.x["bulge"] + 1.0, 0),
                e.R_mid,
                (pr, pr * 0.7, max(1.5, 0.4 * e.h)),
                cv.nucleus(hyd * 0.8),
            )
    # vertebral bodies
    for i, e in enumerate(els):
        if e.disc:
            continue
        nb_i = els[i + 1] if i + 1 < len(els) else None
        nb_s = els[i - 1] if i > 0 else None
        ci, ti = _conc(e, nb_i)
        cs, ts = _conc(e, nb_s)
        rad = math.sqrt((e.W / 2) ** 2 + (e.D / 2) ** 2 + (e.h / 2 + 3) ** 2) + 2
        win = cv.window(e.o_mid, rad)
        if win is None:
            continue
        d, dm, (x, y, z, f) = _body_d(win, e, ci, cs, ti, ts, 1.0)
        win.paint(d, cv.tissue("cortex"))
        mv = cv.marrow(e.x.get("ff", pt.ff))
        tex = _texture(win, pt.p["marrow_waves"])
        win.paint(dm, mv[:, None, None, None, None] * (F32(1) + F32(0.07) * tex)[None])
        if e.kind in "TLS":  # basivertebral vein
            capsule(
                cv,
                e.w(0, e.D / 2 - 1, 0),
                e.w(0, e.D / 2 - 7, 0.5),
                1.3,
                cv.tissue("fluid"),
                scale=0.8,
            )
        if "hemangioma" in e.x:
            u, v, w, r = e.x["hemangioma"]
            ellipsoid(
                cv,
                e.w(u * e.W / 2, v * e.D / 2, w * e.h / 2),
                e.R_mid,
                (r, r, r * 0.9),
                cv.tissue("hemangioma"),
                edge=1.2,
            )
    # Modic zones and Schmorl nodes next to discs
    for i, e in enumerate(els):
        if not e.disc:
            continue
        above, below = els[i - 1], els[i + 1]
        if "modic" in e.x:
            typ, side, dep = e.x["modic"], e.x["modic_side"], e.x["modic_depth"]
            val = {1: cv.tissue("edema"), 2: cv.marrow(0.93), 3: cv.tissue("sclerosis")}[typ]
            for sgn, frame_o, frame_r, ok in (
                (1, e.o_sup, e.R_sup, side in (0, 1)),
                (-1, e.o_inf, e.R_inf, side in (0, 2)),
            ):
                if ok:
                    c = frame_o + frame_r[:, 2] * sgn * (dep / 2 + 2.2)
                    ellipsoid(
                        cv,
                        c - frame_r[:, 1] * 3,
                        frame_r,
                        (0.38 * e.W, 0.36 * e.D, dep / 2 + 0.8),
                        val,
                        edge=1.5,
                        scale=0.9,
                    )
        for side, ox, oy, r in e.x.get("schmorl", []):
            o_, rf, sgn = (e.o_sup, e.R_sup, 1) if side == "upper" else (e.o_inf, e.R_inf, -1)
            c = o_ + rf @ np.array([ox, oy, sgn * r * 0.6])
            ellipsoid(cv, c, rf, (r + 1.0, r + 1.0, r * 0.8 + 1.0), cv.tissue("cortex"))
            ellipsoid(cv, c, rf, (r, r, r * 0.8), cv.nucleus(0.45))
        del above, below


def render(cv: Canvas, pt: Patient) -> None:
    """Paint the whole scene (painter's order) onto a canvas."""
    _paint_torso(cv, pt)
    _paint_organs(cv, pt)
    _paint_muscles_vessels(cv, pt)
    _paint_bones(cv, pt)
    _paint_canal(cv, pt)
    _paint_discs_bodies(cv, pt)


# ----------------------------------------------------------------------------------------------
# protocols and vendors
# ----------------------------------------------------------------------------------------------

VENDORS: dict[str, dict] = {
    "SIEMENS": {
        "manufacturer": ["SIEMENS", "Siemens Healthineers"],
        "models": {
            1.5: ["Avanto", "Aera", "MAGNETOM Sola", "Avanto_fit", "Espree"],
            3.0: ["Skyra", "Prisma_fit", "MAGNETOM Vida", "Verio"],
        },
        "T2": [
            "t2_tse_sag_384",
            "t2_tse_sag_320_p2",
            "t2_tse_sag",
            "T2_TSE_SAG_LWS",
            "t2_tse_sag_448",
        ],
        "T1": ["t1_tse_sag_320", "t1_tse_sag", "T1_TSE_SAG_LWS", "t1_tse_sag_p2"],
        "STIR": ["t2_tirm_sag", "t2_tse_stir_sag", "STIR_SAG_LWS", "t2_tirm_sag_p2"],
        "AX": ["t2_tse_tra_320", "t2_tse_tra_L4-S1", "T2_TSE_TRA_LWS", "t2_tse_tra_p2"],
        "itype": ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
        "coil": ["SP1-4", "Spine_32", "BO1,2;SP3-6", "HEA;HEP;SP"],
        "sw": ["syngo MR E11", "syngo MR XA20", "syngo MR D13", "syngo MR XA31"],
    },
    "GE": {
        "manufacturer": ["GE MEDICAL SYSTEMS"],
        "models": {
            1.5: ["Signa HDxt", "Optima MR450w", "SIGNA Artist", "SIGNA Explorer"],
            3.0: ["DISCOVERY MR750w", "SIGNA Premier", "SIGNA Architect", "Signa HDxt"],
        },
        "T2": ["Sag T2 FSE", "SAG T2 FRFSE", "Sag T2", "SAG FSE T2", "Sag T2 FSE 512"],
        "T1": ["Sag T1 FSE", "SAG T1", "SAG FSE T1", "Sag T1"],
        "STIR": ["Sag STIR", "SAG FSE-IR", "Sag T2 STIR", "SAG STIR"],
        "AX": ["Ax T2 FSE", "AX T2 FRFSE", "Ax T2 L3-S1", "AX FSE T2"],
        "itype": ["ORIGINAL", "PRIMARY", "OTHER"],
        "coil": ["CTL456", "Spine Array", "GEM PA", "CTL 345"],
        "sw": [
            "24\\LX\\MR Software release:DV24.0_R01",
            "27\\LX\\MR29.1",
            "16\\LX\\MR Software release:15.0_M4",
        ],
    },
    "PHILIPS": {
        "manufacturer": ["Philips Medical Systems", "Philips Healthcare", "Philips"],
        "models": {
            1.5: ["Ingenia", "Achieva", "Intera", "Ingenia Ambition X"],
            3.0: ["Ingenia", "Achieva dStream", "Ingenia Elition X"],
        },
        "T2": ["T2W_TSE SAG", "sT2W_TSE", "T2W_TSE_SAG", "SAG T2W TSE"],
        "T1": ["T1W_TSE SAG", "sT1W_TSE", "T1W_TSE_SAG", "SAG T1W TSE"],
        "STIR": ["STIR_TSE SAG", "sSTIR_TSE", "STIR SAG", "SAG STIR"],
        "AX": ["T2W_TSE TRA", "T2W_TSE_AX", "tT2W_TSE L4-S1", "AX T2W TSE"],
        "itype": ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
        "coil": ["SENSE-Spine", "dS Posterior", "MULTI COIL"],
        "sw": ["5.3.1\\5.3.1.2", "5.6.1\\5.6.1.0", "3.2.3\\3.2.3.1"],
    },
    "CANON": {
        "manufacturer": ["CANON_MEC", "TOSHIBA_MEC"],
        "models": {
            1.5: ["Vantage Titan", "Vantage Orian", "Vantage Elan"],
            3.0: ["Vantage Titan 3T", "Vantage Galan 3T"],
        },
        "T2": ["T2 FSE SAG", "Sag T2WI", "SAG_T2_FSE", "T2W SAG"],
        "T1": ["T1 FSE SAG", "Sag T1WI", "SAG_T1_FSE", "T1W SAG"],
        "STIR": ["STIR SAG", "Sag STIR", "SAG_STIR_FSE"],
        "AX": ["T2 FSE AX", "Ax T2WI", "AX_T2_FSE", "T2W AX L4-S1"],
        "itype": ["ORIGINAL", "PRIMARY", "OTHER"],
        "coil": ["Spine SPEEDER", "Atlas Spine", "SPINE"],
        "sw": ["V6.0", "V7.0*R003", "V4.5SP0001"],
    },
}
STUDY_DESCR = [
    "MR LUMBAR SPINE",
    "LWS",
    "L-SPINE W/O",
    "MRI LUMBAR SPINE WITHOUT CONTRAST",
    "Lumbar spine",
    "LSPINE",
]
GE_PROTO = ["LSPINE ROUTINE", "L-SPINE", "LSPINE W/O", "LUMBAR"]


def _protocol(rng: np.random.Generator) -> dict:
    """Vendor, scanner and the sequence parameters of every series."""
    vendor = str(rng.choice(list(VENDORS), p=[0.35, 0.3, 0.22, 0.13]))
    v = VENDORS[vendor]
    field_t = 3.0 if rng.random() < 0.4 else 1.5
    pick = lambda a: str(a[int(rng.integers(len(a)))])  # noqa: E731
    pr = {
        "vendor": vendor,
        "manufacturer": pick(v["manufacturer"]),
        "model": pick(v["models"][field_t]),
        "field": field_t,
        "itype": v["itype"],
        "coil": pick(v["coil"]),
        "sw": pick(v["sw"]),
    }
    series = {
        "T2": Seq(
            "T2",
            rng.uniform(2500, 6000),
            rng.uniform(80, 120),
            None,
            int(rng.choice([12, 15, 17, 20, 24])),
        ),
        "T1": Seq(
            "T1", rng.uniform(400, 800), rng.uniform(8, 20), None, int(rng.choice([3, 4, 5, 7]))
        ),
        "AX": Seq(
            "AX", rng.uniform(3000, 6000), rng.uniform(80, 115), None, int(rng.choice([12, 16, 20]))
        ),
    }
    if rng.random() < 0.4:
        t1fat = TISSUE["fat"][3 if field_t > 2 else 1]
        series["STIR"] = Seq(
            "STIR",
            rng.uniform(3000, 6000),
            rng.uniform(40, 70),
            round(t1fat * math.log(2) * rng.uniform(0.95, 1.05)),
            int(rng.choice([7, 9, 12])),
        )
    pr["seqs"] = series
    pr["descr"] = {k: pick(v[k]) for k in series}
    for s in series.values():
        s.tr, s.te = round(s.tr, 1 if vendor != "GE" else 3), round(s.te, 2)
    return pr


# ----------------------------------------------------------------------------------------------
# acquisition geometry
# ----------------------------------------------------------------------------------------------


@dataclass
class Geom:
    """One series' slice geometry (display grid) and the render grid."""

    center: np.ndarray
    cdir: np.ndarray
    rdir: np.ndarray
    disp: tuple[int, int]
    rend: tuple[int, int]
    fov: tuple[float, float]  # along rows (rdir), along columns (cdir)
    slice_off: np.ndarray
    thick: float
    spacing: float
    descending: bool
    phase_axis: int
    layout: str = "headup"

    @property
    def ndir(self) -> np.ndarray:
        return np.cross(self.cdir, self.rdir)

    def ipp(self, k: int, disp: tuple[int, int] | None = None) -> np.ndarray:
        nr, nc = disp or self.disp
        dr, dc = self.fov[0] / nr, self.fov[1] / nc
        return (
            self.center
            + self.slice_off[k] * self.ndir
            - (nc // 2) * dc * self.cdir
            - (nr // 2) * dr * self.rdir
        )


def _even(x: float) -> int:
    return int(2 * round(x / 2))


def _fit_range(
    lo_pts: float, hi_pts: float, fov: float, margin: float, rng: np.random.Generator
) -> float:
    lo, hi = hi_pts + margin - fov / 2, lo_pts - margin + fov / 2
    return rng.uniform(lo, hi) if hi > lo else 0.5 * (lo + hi)


def _truth_centres(pt: Patient) -> dict[str, np.ndarray]:
    return {nm: 0.5 * (pt.by[nm].o_inf + pt.by[nm].o_sup) for nm in TRUTH_LEVELS}


def _sag_geometry(rng: np.random.Generator, pt: Patient) -> Geom:
    ant_left = rng.random() < 0.6
    e_ap = np.array([0, 1.0, 0]) if ant_left else np.array([0, -1.0, 0])
    layout = str(rng.choice(["headup", "feetup", "transposed"], p=[0.86, 0.07, 0.07]))
    zz = np.array([0, 0, 1.0])
    c0, r0 = {"headup": (e_ap, -zz), "feetup": (e_ap, zz), "transposed": (-zz, e_ap)}[layout]
    n0 = np.cross(c0, r0)
    inplane = rng.uniform(-10, 10) if rng.random() < 0.5 else rng.normal(0, 2)
    yaw, roll = (float(np.clip(rng.normal(0, 3.5), -10, 10)) for _ in range(2))
    rm = _rz(yaw) @ _ry(roll) @ _rot_about(n0, inplane)
    cdir, rdir = rm @ c0, rm @ r0
    ndir = np.cross(cdir, rdir)
    tc = _truth_centres(pt)
    req = list(tc.values())
    for nm in ("L1", "L2", "L3", "L4", "L5", "S1"):
        e = pt.by[nm]
        for o, R in ((e.o_inf, e.R_inf), (e.o_sup, e.R_sup)):
            req += [o + R[:, 1] * e.D / 2, o - R[:, 1] * e.D / 2]
        req.append(e.w(0, e.D / 2 + 22, 0))
    if rng.random() < 0.8:  # most sites keep the back skin in the field
        req.append(
            pt.by["L3"].w(0, pt.by["L3"].D / 2 + 58 * pt.sc * pt.p["muscle"] + pt.p["fat_back"], 0)
        )
    req = np.array(req)
    m0 = req.mean(axis=0)
    u, v = (req - m0) @ cdir, (req - m0) @ rdir
    cc_is_row = layout != "transposed"
    span_cc = np.ptp(v) if cc_is_row else np.ptp(u)
    span_ap = np.ptp(u) if cc_is_row else np.ptp(v)
    fov_cc = float(np.clip(rng.uniform(max(240, span_cc + 30), 360), 240, 360))
    opts = [n for n in (256, 288, 320, 384, 448, 512, 576, 640) if 0.42 <= fov_cc / n <= 1.15]
    n_cc = int(rng.choice(opts))
    ps = fov_cc / n_cc
    fov_ap = max(fov_cc * rng.uniform(0.75, 1.0), span_ap + 40, 256 * ps, 240.0)
    n_ap = int(np.clip(2 * math.ceil(fov_ap / ps / 2), 256, min(640, 2 * int(180 / ps))))
    fov_ap = n_ap * ps
    if cc_is_row:
        disp, fov = (n_cc, n_ap), (fov_cc, fov_ap)
    else:
        disp, fov = (n_ap, n_cc), (fov_ap, fov_cc)
    sc_ = _fit_range(u.min(), u.max(), fov[1], 8, rng)
    sr_ = _fit_range(v.min(), v.max(), fov[0], 8, rng)
    center = m0 + sc_ * cdir + sr_ * rdir
    rs = float(np.clip(ps * rng.uniform(1.0, 1.8), 0.9, 1.3))
    rend = (_even(fov[0] / rs), _even(fov[1] / rs))
    # slices
    thick = round(rng.uniform(3.0, 5.0) * 2) / 2
    gap = round(rng.uniform(0.0, 1.0), 1) if rng.random() < 0.8 else 0.0
    sp = thick + gap
    n = int(rng.integers(9, 20)) if rng.random() < 0.8 else int(rng.integers(15, 26))
    w_disc = np.array([(c - center) @ ndir for c in tc.values()])
    w_mid = float(w_disc.mean())
    w_c = w_mid + rng.uniform(-8, 8)
    need = float(np.max(np.abs(w_disc - w_c))) + 0.5
    n = max(n, 2 * math.ceil(need / sp) + 1)
    if n > 25:
        n = 25
        half = 12 * sp - 0.5
        w_c = float(np.clip(w_c, w_disc.max() - half, w_disc.min() + half))
    off = w_c + (np.arange(n) - (n - 1) / 2) * sp
    return Geom(
        center,
        cdir,
        rdir,
        disp,
        rend,
        fov,
        off,
        thick,
        sp,
        bool(rng.random() < 0.5),
        int(rng.integers(2)),
        layout,
    )


def _ax_geometry(rng: np.random.Generator, pt: Patient) -> Geom:
    lvl = "L4-L5" if rng.random() < 0.5 else "L5-S1"
    e = pt.by[lvl]
    nrm = _unit(_rx(rng.normal(0, 2)) @ _ry(rng.normal(0, 2)) @ e.R_mid[:, 2])
    xh = np.array([1.0, 0, 0])
    cdir = _unit(xh - (xh @ nrm) * nrm)
    rdir = np.cross(nrm, cdir)
    fov = round(rng.uniform(190, 270))
    opts = [n for n in (256, 320, 384, 448, 512) if 0.42 <= fov / n <= 1.0]
    nd = int(rng.choice(opts))
    fov_r = fov * (1.0 if rng.random() < 0.6 else rng.uniform(0.8, 0.95))
    ps = fov / nd
    nr_ = max(256, _even(fov_r / ps))
    fovs = (nr_ * ps, fov)
    center = (
        0.5 * (e.o_inf + e.o_sup) + e.R_mid[:, 1] * rng.uniform(12, 35) + cdir * rng.uniform(-6, 6)
    )
    center = center - ((center - e.o_mid) @ nrm) * nrm
    rs = float(np.clip(ps * rng.uniform(1.1, 1.8), 0.95, 1.35))
    rend = (_even(fovs[0] / rs), _even(fovs[1] / rs))
    thick = round(rng.uniform(3.0, 5.0) * 2) / 2
    sp = thick + round(rng.uniform(0, 1.5), 1)
    n = int(rng.integers(12, 31))
    off = rng.uniform(-6, 6) + (np.arange(n) - (n - 1) / 2) * sp
    g = Geom(
        center,
        cdir,
        rdir,
        (nr_, nd),
        rend,
        fovs,
        off,
        thick,
        sp,
        bool(rng.random() < 0.3),
        int(rng.integers(2)),
        "axial",
    )
    g.level = lvl  # type: ignore[attr-defined]
    return g


# ----------------------------------------------------------------------------------------------
# image formation
# ----------------------------------------------------------------------------------------------


def _world(cv: Canvas) -> list[np.ndarray]:
    win = cv.full(smooth=True)
    return [a[:, 0] for a in win.local(np.zeros(3), np.eye(3))]


def _coil_maps(
    cv: Canvas, pt: Patient, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receive-coil sensitivity x bias field, abdominal motion weight, anterior-band coordinate."""
    x, y, z = _world(cv)
    prof = _profile(pt)
    ys = np.interp(z.ravel(), prof["z"], prof["y"]).astype(F32).reshape(z.shape)
    dh = np.interp(z.ravel(), prof["z"], prof["d"]).astype(F32).reshape(z.shape) * F32(0.5)
    xs = np.interp(z.ravel(), prof["z"], prof["x"]).astype(F32).reshape(z.shape)
    yb = ys + dh + F32(58 * pt.sc * pt.p["muscle"] + pt.p["fat_back"])
    dist = np.clip(yb - y, 0, None)
    d0 = F32(rng.uniform(70, 150))
    coil = (F32(1) + (dist / d0) ** 2) ** F32(-0.6)
    coil *= F32(1) + F32(rng.uniform(0, 0.1)) * np.cos(
        z * F32(2 * np.pi / rng.uniform(90, 150)) + F32(rng.uniform(0, 6.3))
    )
    coil *= (F32(1) + ((x - xs) / F32(220)) ** 2) ** F32(-0.5)
    a = rng.normal(0, 0.1, 4)
    xn, yn, zn = (
        (x - xs) / F32(150),
        (y - ys) / F32(150),
        (z - F32(pt.by["L3"].o_mid[2])) / F32(150),
    )
    coil *= np.exp(F32(a[0]) * xn + F32(a[1]) * yn + F32(a[2]) * zn + F32(a[3]) * xn * zn)
    w_mov = np.clip((ys - dh - F32(15) - y) / F32(30), 0, 1)
    p1, p2 = pt.by["L1"].w(0, -pt.by["L1"].D / 2, 0), pt.by["L5"].w(0, -pt.by["L5"].D / 2, 0)
    t = _unit(p2 - p1)
    nb = np.array([0, -1.0, 0])
    nb = _unit(nb - (nb @ t) * t)
    band = (
        (x - F32(p1[0])) * F32(nb[0])
        + (y - F32(p1[1])) * F32(nb[1])
        + (z - F32(p1[2])) * F32(nb[2])
    )
    return coil, w_mov, band


def _crop_pad(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop or zero-pad the last two axes of a centred k-space array."""
    out = np.zeros(k.shape[:-2] + shape, k.dtype)
    src, dst = [], []
    for n_in, n_out in zip(k.shape[-2:], shape, strict=True):
        m = min(n_in, n_out)
        src.append(slice(n_in // 2 - m // 2, n_in // 2 - m // 2 + m))
        dst.append(slice(n_out // 2 - m // 2, n_out // 2 - m // 2 + m))
    out[..., dst[0], dst[1]] = k[..., src[0], src[1]]
    return out


def acquire(
    obj: np.ndarray, g: Geom, maps, rng: np.random.Generator, disp: tuple[int, int]
) -> tuple[np.ndarray, dict]:
    """Object (ns, nr, nc) -> magnitude images at the display matrix; returns acquisition info."""
    coil, w_mov, band = maps
    img = obj * coil
    info: dict = {}
    if rng.random() < 0.5:
        gap, thick, res = rng.uniform(3, 25), rng.uniform(40, 90), rng.uniform(0.05, 0.3)
        inb = np.clip((band - F32(gap)) / F32(3), 0, 1) * np.clip(
            (F32(gap + thick) - band) / F32(3), 0, 1
        )
        img = img * (F32(1) - F32(1 - res) * inb)
        info["sat_band"] = True
    ax = (-2, -1)
    ft = lambda a: np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a, axes=ax), norm="ortho"), axes=ax)  # noqa: E731
    k = ft(img.astype(np.complex64))
    pa = g.phase_axis
    n_ph = img.shape[-2 + pa]
    if rng.random() < 0.3:
        period = rng.uniform(5, 24)
        amp = rng.uniform(0.08, 0.45)
        phi = amp * np.sin(2 * np.pi * np.arange(n_ph) / period + rng.uniform(0, 6.3))
        fac = (np.exp(1j * phi) - 1).astype(np.complex64)
        fac = fac[:, None] if pa == 0 else fac[None, :]
        k = k + ft((img * w_mov).astype(np.complex64)) * fac
        info["ghosting"] = round(float(amp), 3)
    nr, nc = img.shape[-2:]
    pf, ff = rng.uniform(0.6, 0.95), rng.uniform(0.85, 1.0)
    m = [_even(nr * (pf if pa == 0 else ff)), _even(nc * (pf if pa == 1 else ff))]
    m = [min(m[0], nr), min(m[1], nc)]
    k = _crop_pad(k, (m[0], m[1]))
    alpha = rng.uniform(0.0, 0.5)
    wr = 1 - alpha * np.linspace(-1, 1, m[0]) ** 2
    wc = 1 - alpha * np.linspace(-1, 1, m[1]) ** 2
    k *= (wr[:, None] * wc[None, :]).astype(F32)
    ref = (
        float(np.percentile(obj[:, nr // 4 : 3 * nr // 4 : 2, nc // 4 : 3 * nc // 4 : 2], 90))
        + 1e-6
    )
    snr = float(np.exp(rng.uniform(math.log(5), math.log(50))))
    sigma = ref / snr * math.sqrt(nr * nc / (m[0] * m[1]))
    k += (rng.normal(0, sigma, k.shape) + 1j * rng.normal(0, sigma, k.shape)).astype(np.complex64)
    k = _crop_pad(k, disp)
    out = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax))
    out *= math.sqrt(disp[0] * disp[1] / (nr * nc))
    info.update(snr=round(snr, 2), acq_matrix=m, apodization=round(float(alpha), 3))
    return out.astype(F32), info


def _quantise(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, tuple[int, int]]:
    bits = 12 if rng.random() < 0.7 else 16
    top = rng.uniform(1200, 3600) if bits == 12 else rng.uniform(2500, 30000)
    p = float(np.percentile(img[:, ::3, ::3], 99.7)) + 1e-9
    arr = np.clip(np.round(img * (top / p)), 0, 2**bits - 1).astype(np.uint16)
    lo, hi = np.percentile(arr[:, ::3, ::3], [1, 99.5])
    wc, ww = int(round((lo + hi) / 2)), max(int(round((hi - lo) * 1.1)), 1)
    return arr, bits, (wc, ww)


# ----------------------------------------------------------------------------------------------
# DICOM output
# ----------------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_")


def _write_series(
    folder: pathlib.Path,
    layout: str,
    base: Dataset,
    g: Geom,
    images: np.ndarray,
    meta: dict,
    uid_parts: tuple,
    rng: np.random.Generator,
) -> None:
    """Write one series, one Part-10 file per slice."""
    nr, nc = images.shape[1:]
    dr, dc = g.fov[0] / nr, g.fov[1] / nc
    n = len(g.slice_off)
    order = list(range(n))[::-1] if g.descending else list(range(n))
    arr, bits, (wcen, wwid) = _quantise(images, rng)
    nrm = g.ndir
    iop = [_fmt(v) for v in list(g.cdir) + list(g.rdir)]
    for inst, k in enumerate(order, start=1):
        ds = Dataset()
        ds.update(base)
        sop = make_uid(*uid_parts, "slice", inst)
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = MRImageStorage
        fm.MediaStorageSOPInstanceUID = sop
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = fm
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        for key, val in meta.items():
            setattr(ds, key, val)
        ds.InstanceNumber = inst
        pos = g.ipp(k, (nr, nc))
        ds.ImagePositionPatient = [_fmt(v) for v in pos]
        ds.ImageOrientationPatient = iop
        ds.SliceLocation = _fmt(float(pos @ nrm))
        ds.Rows, ds.Columns = nr, nc
        ds.PixelSpacing = [_fmt(dr), _fmt(dc)]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        ds.WindowCenter = str(wcen)
        ds.WindowWidth = str(wwid)
        ds.PixelData = np.ascontiguousarray(arr[k]).tobytes()
        if layout == "series":
            path = (
                folder
                / f"{int(meta['SeriesNumber']):03d}_{_slug(meta['SeriesDescription'])}"
                / f"IM{inst:04d}.dcm"
            )
        elif layout == "tree":
            path = folder / "DICOM" / f"S{int(meta['SeriesNumber']):04d}" / f"I{inst:05d}"
        else:
            path = folder / f"MR.{sop}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)


def _base_dataset(
    pt: Patient,
    pr: dict,
    seed: int,
    index: int,
    study_uid: str,
    for_uid: str,
    when: dt.datetime,
    rng,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality = "MR"
    ds.PatientName = f"TENTH^PHANTOM{seed:02d}{index:03d}"
    ds.PatientID = f"TENTH-{seed}-{index:03d}"
    ds.PatientSex = pt.sex
    ds.PatientAge = f"{int(pt.age):03d}Y"
    ds.PatientBirthDate = f"{when.year - int(pt.age):04d}0101"
    ds.PatientWeight = _fmt(round(pt.bmi * (1.75 * pt.sc) ** 2, 1))
    ds.PatientSize = _fmt(round(1.75 * pt.sc, 2))
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.StudyID = str(1000 + index)
    ds.AccessionNumber = f"T{seed:03d}{index:05d}"
    ds.StudyDescription = str(rng.choice(STUDY_DESCR))
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = pr["manufacturer"]
    ds.ManufacturerModelName = pr["model"]
    ds.SoftwareVersions = pr["sw"]
    ds.InstitutionName = "Tenth Synthetic Imaging"
    ds.StationName = f"MR{int(rng.integers(1, 9))}"
    ds.MagneticFieldStrength = _fmt(pr["field"])
    ds.ImagingFrequency = _fmt(42.577478 * pr["field"] * (1 + rng.normal(0, 1e-4)))
    ds.ImagedNucleus = "1H"
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    ds.MRAcquisitionType = "2D"
    ds.ReceiveCoilName = pr["coil"]
    ds.TransmitCoilName = "Body"
    return ds


def _series_meta(
    pr: dict, role: str, g: Geom, acq: dict, number: int, uid: str, when: dt.datetime, rng
) -> dict:
    s: Seq = pr["seqs"][role]
    descr = pr["descr"][role]
    vendor = pr["vendor"]
    proto = descr if vendor in ("SIEMENS", "PHILIPS", "CANON") else str(rng.choice(GE_PROTO))
    if vendor == "PHILIPS" and rng.random() < 0.3:
        proto = "WIP " + descr
    m = acq["acq_matrix"]
    ph = "COL" if g.phase_axis == 0 else "ROW"
    am = [0, m[1], m[0], 0] if ph == "COL" else [m[0], 0, 0, m[1]]
    t = when.strftime("%H%M%S")
    meta = {
        "SeriesInstanceUID": uid,
        "SeriesNumber": number,
        "SeriesDescription": descr,
        "ProtocolName": proto,
        "SeriesDate": when.strftime("%Y%m%d"),
        "SeriesTime": t,
        "AcquisitionDate": when.strftime("%Y%m%d"),
        "AcquisitionTime": t,
        "ContentDate": when.strftime("%Y%m%d"),
        "ContentTime": t,
        "AcquisitionNumber": 1,
        "ImageType": list(pr["itype"]),
        "ScanningSequence": ["SE", "IR"] if s.ti else "SE",
        "SequenceVariant": ["SK", "SP", "MP"] if s.ti else ["SK", "SP"],
        "ScanOptions": "PFP" if rng.random() < 0.5 else "",
        "SequenceName": f"*tir2d1_{s.etl}" if s.ti else f"*tse2d1_{s.etl}",
        "RepetitionTime": _fmt(s.tr),
        "EchoTime": _fmt(s.te),
        "EchoTrainLength": s.etl,
        "NumberOfAverages": _fmt(float(rng.choice([1, 2, 2, 3]))),
        "FlipAngle": _fmt(float(rng.choice([90, 150, 160]) if s.role != "T1" else 90)),
        "SliceThickness": _fmt(g.thick),
        "SpacingBetweenSlices": _fmt(g.spacing),
        "PixelBandwidth": _fmt(round(float(rng.uniform(130, 300)), 1)),
        "AcquisitionMatrix": am,
        "InPlanePhaseEncodingDirection": ph,
        "PercentPhaseFieldOfView": _fmt(round(100 * min(g.fov) / max(g.fov), 2)),
        "PercentSampling": _fmt(100.0),
    }
    if s.ti:
        meta["InversionTime"] = _fmt(s.ti)
    return meta


# ----------------------------------------------------------------------------------------------
# study
# ----------------------------------------------------------------------------------------------


def _pgm(path: pathlib.Path, img: np.ndarray) -> None:
    a = img.astype(float)
    a = np.clip(a / (np.percentile(a, 99.5) + 1e-9) * 255, 0, 255).astype(np.uint8)
    path.write_bytes(f"P5 {a.shape[1]} {a.shape[0]} 255\n".encode() + a.tobytes())


def _jsonable(v):
    if isinstance(v, (np.floating, float)):
        return round(float(v), 3)
    if isinstance(v, (np.integer, int, bool, np.bool_)):
        return v if isinstance(v, (bool, int)) else v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(a) for a in v]
    if isinstance(v, str):
        return v
    return None


def write_study(out: pathlib.Path, seed: int, index: int, preview: bool = False) -> pathlib.Path:
    """Generate and write one study; returns ``out / f"tenth-{index:03d}"``."""
    rng = np.random.default_rng([int(seed), int(index), 0x7E47])
    variant = VARIANTS[index % 4]
    folder = pathlib.Path(out) / f"tenth-{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    pt = make_patient(rng, variant)
    pr = _protocol(rng)
    sag = _sag_geometry(rng, pt)
    ax = _ax_geometry(rng, pt)
    roles = [r for r in ("T2", "T1", "STIR") if r in pr["seqs"]]
    third = np.array([-1.0, 0.0, 1.0]) * sag.thick / 3
    cv = Canvas(
        sag.center,
        sag.cdir,
        sag.rdir,
        sag.rend,
        (sag.fov[0] / sag.rend[0], sag.fov[1] / sag.rend[1]),
        sag.slice_off,
        third,
        [pr["seqs"][r] for r in roles],
        pr["field"],
    )
    render(cv, pt)
    obj = cv.S.mean(axis=2)
    maps = _coil_maps(cv, pt, rng)
    images: dict[str, tuple[np.ndarray, Geom, dict]] = {}
    for i, r in enumerate(roles):
        disp = sag.disp
        if r != "T2" and rng.random() < 0.6:  # decoys may be reconstructed on another matrix
            f = float(rng.choice([0.75, 0.8, 1.25]))
            disp = tuple(int(np.clip(_even(d * f), 256, 640)) for d in sag.disp)  # type: ignore[assignment]
        img, info = acquire(obj[i], sag, maps, rng, disp)
        images[r] = (img, sag, info)
    half = np.array([-0.25, 0.25]) * ax.thick
    cva = Canvas(
        ax.center,
        ax.cdir,
        ax.rdir,
        ax.rend,
        (ax.fov[0] / ax.rend[0], ax.fov[1] / ax.rend[1]),
        ax.slice_off,
        half,
        [pr["seqs"]["AX"]],
        pr["field"],
    )
    render(cva, pt)
    img, info = acquire(cva.S.mean(axis=2)[0], ax, _coil_maps(cva, pt, rng), rng, ax.disp)
    images["AX"] = (img, ax, info)

    # ---- DICOM ----
    when = dt.datetime(2015, 1, 5, 7, 30) + dt.timedelta(
        days=int(rng.integers(0, 3600)), minutes=int(rng.integers(0, 660))
    )
    study_uid = make_uid("tenth", seed, index, "study")
    for_uid = make_uid("tenth", seed, index, "frame")
    base = _base_dataset(pt, pr, seed, index, study_uid, for_uid, when, rng)
    layout = str(rng.choice(["series", "tree", "flat"], p=[0.45, 0.35, 0.2]))
    order = list(images)
    if rng.random() < 0.5:
        order = ["T1"] + [r for r in order if r != "T1"]
    step, start = (100, 301) if pr["vendor"] == "PHILIPS" else (1, int(rng.integers(2, 5)))
    uids, series_info = {}, []
    for j, r in enumerate(order):
        img, g, info = images[r]
        number = start + j * step
        uid = make_uid("tenth", seed, index, "series", r)
        uids[r] = uid
        t = when + dt.timedelta(minutes=4 * j + 2)
        meta = _series_meta(pr, r, g, info, number, uid, t, rng)
        _write_series(folder, layout, base, g, img, meta, ("tenth", seed, index, "series", r), rng)
        series_info.append(
            {
                "role": r,
                "series_number": number,
                "description": meta["SeriesDescription"],
                "series_instance_uid": uid,
                "n_slices": int(img.shape[0]),
                "rows": int(img.shape[1]),
                "columns": int(img.shape[2]),
                **{k: _jsonable(v) for k, v in info.items()},
            }
        )
        if preview:
            pdir = pathlib.Path(out) / "_preview"
            pdir.mkdir(exist_ok=True)
            _pgm(pdir / f"tenth-{index:03d}_{r}.pgm", img[img.shape[0] // 2])

    # ---- truth ----
    tc = _truth_centres(pt)
    extra_p = {k: _jsonable(v) for k, v in pt.p.items() if _jsonable(v) is not None}
    lt = pt.by["S1"] if variant == "lumbarization" else pt.by["L5"]
    truth = {
        "set": "tenth",
        "variation": "tenth",
        "variant": variant,
        "lstv": variant != "normal",
        "seed": int(seed),
        "index": int(index),
        "study_instance_uid": study_uid,
        "t2_series_instance_uid": uids["T2"],
        "slice_normal": [round(float(v), 6) for v in sag.ndir],
        "discs": [
            {"level": nm, "patient_xyz": [round(float(v), 3) for v in tc[nm]]}
            for nm in TRUTH_LEVELS
        ],
        "lumbar_type_vertebrae": 6 if variant == "lumbarization" else 5,
        "transitional_tp_types": lt.x.get("tp", [0, 0]),
        "junctions": {
            e.name: {
                "kind": e.kind,
                "height_mm": round(e.h, 2),
                "hydration": round(e.x.get("hyd", 0.0), 3),
            }
            for e in pt.els
            if e.disc and e.name[0] in "TLS"
        },
        "patient": {
            "age": round(pt.age, 1),
            "sex": pt.sex,
            "size_scale": round(pt.sc, 3),
            "bmi": round(pt.bmi, 1),
        },
        "anatomy": extra_p,
        "scanner": {k: pr[k] for k in ("vendor", "manufacturer", "model", "field")},
        "sequences": {
            r: {"TR": s.tr, "TE": s.te, "TI": s.ti, "ETL": s.etl} for r, s in pr["seqs"].items()
        },
        "t2_geometry": {
            "layout": sag.layout,
            "n_slices": len(sag.slice_off),
            "thickness": sag.thick,
            "spacing": sag.spacing,
            "fov_mm": [round(v, 2) for v in sag.fov],
            "descending": sag.descending,
        },
        "axial_level": getattr(ax, "level", None),
        "file_layout": layout,
        "series": series_info,
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))
    return folder


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preview", action="store_true", help="write PGM previews to OUT/_preview")
    a = ap.parse_args(argv)
    for i in range(a.count):
        t0 = time.perf_counter()
        f = write_study(a.out, a.seed, i, preview=a.preview)
        print(f"{f}  {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
