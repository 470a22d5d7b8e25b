"""Ninth phantom: synthetic lumbar-spine MR studies (DICOM + truth.json) for blind testing.

Model
-----
The anatomy is a set of analytic 3-D solids expressed in DICOM patient coordinates (LPS, mm).
There is no voxel volume: every slice is rendered point by point from the solids.

* Spinal chain.  Vertebral bodies are rounded super-elliptic prisms (waist, endplate
  concavity, lordotic wedge, trapezoidal taper) placed along a chain that starts at the top
  endplate of the fused sacrum (tilted by the sacral slope) and climbs through the discs; each
  disc carries part of the lumbar lordosis and optionally a listhesis step.  Below the sacral
  top the fused sacral segments and the coccyx follow a kyphotic curve.  A mild scoliosis adds
  a lateral sine offset with matching coronal tilt.
* Posterior elements (pedicles, laminae, spinous and transverse processes, articular
  processes) are boxes/ellipsoids joined to their body by a smooth union, so one cortex/marrow
  pair of layers covers the whole vertebra.  The fused sacrum (bodies, alae, lateral masses,
  dorsal wall) is one such union; remnant discs and sacral foramina are painted into it.
* Discs are the space between the two endplate surfaces inside a bulging footprint, with an
  annulus, a soft-edged nucleus, an optional intranuclear cleft, vacuum gas and herniation.
* Soft tissue: torso with skin and subcutaneous fat, abdominal wall, textured bowel, liver,
  kidneys, bladder, rectum, psoas, quadratus, paraspinal and gluteal muscles, aorta with its
  bifurcation and the iliac arteries, IVC, spinal canal fat, dural sac, cord ending in the
  conus, cauda equina, exiting roots, ligamenta flava, ribs (T8-T12), iliac bones.
* Lumbosacral transitional variants: lumbarisation (mobile, squared S1 with a real S1-S2
  disc and a four-segment sacrum), sacralisation (sacral-like L5, rudimentary or fused L5-S1,
  optional bony bridge and Castellvi-like transverse processes).  Confounders (degeneration,
  Modic, Schmorl nodes, bulges/herniations, listhesis, osteophytes, scoliosis, lordosis, size)
  are drawn from the same distributions for every variant.

Painting: solids are composited in a fixed order ("painter" model) with an anti-aliased
occupancy from an approximate signed distance.  Large smooth compartments are rendered once
per slice; the fine structures are averaged over several sub-planes across the slice
thickness (partial volume).

Signal: spin echo S = PD (1 - exp(-TR/T1)) exp(-TE/T2) with 1.5 T tissue values (3 T: longer
T1, shorter T2); fat uses an effective fast-spin-echo T2.  Then posterior-coil sensitivity and
a smooth bias, an optional anterior saturation band, complex Gaussian noise (Rician
magnitude), optional phase-direction motion ghosts, k-space apodisation and zero-filled
reconstruction from the acquired to the displayed matrix (truncation ringing included).

Every study has three MR series: sagittal T2 (target), sagittal T1 and axial T2 (decoys).
Everything is deterministic in (seed, index).

Parameter ranges (per study)
----------------------------
* Variant by index % 4: 0, 2 normal; 1 lumbarisation; 3 sacralisation.
* Patient: age 20-80, body size 0.8-1.2 (scales every dimension), sacral slope 30-50 deg,
  lumbar lordosis (L1 top to sacral top) slope-2 .. slope+18 deg, scoliosis in 30 %
  (3-9 mm sine, wavelength 220-420 mm), degenerative listhesis in 15 % (L4-L5 65 %,
  L3-L4 20 %, L5-S1 15 %; 3-9 mm).
* Discs: degeneration probability rises with age and is highest at L4-L5 and L5-S1; grades
  1-3 narrow the disc to 85-95 / 60-80 / 35-60 % and shorten the nucleus T2; bulges,
  herniations, vacuum, intranuclear clefts; Modic 1/2/3 in 40 % of grade >= 2 discs;
  Schmorl nodes 5 % per endplate; anterior osteophytes over 40 years.
* Landmarks: conus tip mid-T12 .. L2 lower endplate (mode L1-L2), aortic bifurcation L3 ..
  L5 (mode L4), kidneys T12-L2, ribs on T8-T12 (T12 rib 45-130 mm), iliac crest 30-55 mm
  above the sacral top, lung bases near T11-T12.
* Lumbarisation: squared mobile S1, S1-S2 disc 60-90 % of a normal L5-S1, four fused
  sacral segments, 30 % with an S1 process articulating with the S2 ala.
* Sacralisation: L5 height 82-95 %, wedge 6-11 deg, narrowing inferiorly; L5-S1 fused
  (35 %, 0.8-1.5 mm remnant) or rudimentary (1.5-4 mm, dark, 30 % with an anterior bony
  bridge); Castellvi-like processes none/I/II/III/IV = 20/20/30/20/10 %, uni- or bilateral,
  19-26 mm high.
* Sagittal T2: TR 2500-5000 ms, TE 80-120 ms; field of view 240-340 mm, matrix 256-640
  (non-square), pixel 0.4-1.2 mm; 9-25 slices, 3-5 mm thick, gap 0-1 mm; anterior on the
  left or right; in-plane rotation, yaw and roll up to 10 deg; stack centre up to 8 mm off the
  spine; coverage from about T10-coccyx to T12-S2; ascending or descending order.
* Sagittal T1: TR 400-800 ms, TE 8-20 ms, same slices.  Axial T2: TR 3000-6000 ms,
  TE 80-115 ms, 12-30 slices parallel to L4-L5 covering L3-L4 to L5-S1.
* Site: Siemens, GE, Philips or Canon; 1.5 or 3 T; 12- or 16-bit pixels; SNR, coil depth,
  bias, k-space apodisation, saturation band (35 %) and motion ghosts (35 %) vary.

CLI:  python bench/ninth_phantom.py OUT_DIR --count N --seed S
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

Array = np.ndarray
TRUTH_LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
VARIANTS = ("normal", "lumbarization", "normal", "sacralization")
MATRICES = (256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640)

# --------------------------------------------------------------------------------------
# Tissues and signal
# --------------------------------------------------------------------------------------

# (proton density, T1 ms, T2 ms) at 1.5 T; fat values are effective fast-spin-echo values.
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 1000.0, 1.0),
    "skin": (0.7, 800.0, 35.0),
    "fat": (0.95, 260.0, 135.0),
    "fat_marrow": (0.95, 290.0, 130.0),
    "red_marrow": (0.75, 750.0, 50.0),
    "edema": (0.88, 1250.0, 115.0),
    "sclerosis": (0.2, 700.0, 22.0),
    "cortex": (0.04, 1000.0, 4.0),
    "annulus": (0.7, 900.0, 42.0),
    "cartilage": (0.7, 1000.0, 40.0),
    "ligament": (0.3, 800.0, 16.0),
    "muscle": (0.8, 870.0, 45.0),
    "csf": (1.0, 4000.0, 1800.0),
    "cord": (0.75, 800.0, 85.0),
    "nerve": (0.75, 800.0, 72.0),
    "flow_void": (0.04, 1500.0, 50.0),
    "kidney_cortex": (0.85, 1000.0, 85.0),
    "kidney_medulla": (0.9, 1400.0, 110.0),
    "liver": (0.75, 580.0, 45.0),
    "bowel_wall": (0.75, 900.0, 65.0),
    "bowel_fluid": (0.95, 3000.0, 600.0),
    "bowel_content": (0.8, 1200.0, 90.0),
    "urine": (1.0, 3000.0, 1200.0),
    "vein": (0.85, 1200.0, 140.0),
    "interspinous": (0.55, 500.0, 60.0),
}

TissueSpec = Any  # str key of TISSUES, (pd, t1, t2) tuple, or an object with .value()


def spin_echo(pd: float, t1: float, t2: float, tr: float, te: float) -> float:
    """Spin-echo magnitude signal."""
    return pd * (1.0 - math.exp(-tr / t1)) * math.exp(-te / t2)


class SignalBook:
    """Signal of every tissue for one sequence (TR, TE, field strength)."""

    def __init__(self, tr: float, te: float, field_t: float) -> None:
        self.tr, self.te, self.field_t = tr, te, field_t
        self._cache: dict[Any, float] = {}

    def scalar(self, spec: str | tuple[float, float, float]) -> float:
        if spec not in self._cache:
            pd, t1, t2 = TISSUES[spec] if isinstance(spec, str) else spec
            if self.field_t > 2.0:
                t1 *= 1.08 if t1 > 2500.0 else 1.3
                t2 *= 0.92
            self._cache[spec] = spin_echo(pd, t1, t2, self.tr, self.te)
        return self._cache[spec]

    def value(self, spec: TissueSpec, pts: Points) -> float | Array:
        if hasattr(spec, "value"):
            return spec.value(self, pts)
        return self.scalar(spec)


@dataclass
class Points:
    """Sample points of a rectangular window of a slice grid.

    Pixel (i, j) of the window lies at origin + i*dv + j*du; x, y, z hold the coordinates.
    """

    x: Array
    y: Array
    z: Array
    origin: Array
    du: Array
    dv: Array

    @property
    def xyz(self) -> tuple[Array, Array, Array]:
        return self.x, self.y, self.z


class Noise3D:
    """Smooth band-limited 3-D texture: a sum of random plane waves (std about 0.5).

    On a slice grid each wave is separable in (row, column), so it is evaluated with two
    outer products instead of a cosine per pixel.
    """

    def __init__(self, rng: np.random.Generator, waves: int, lam_min: float, lam_max: float):
        dirs = rng.normal(size=(waves, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        lam = np.exp(rng.uniform(math.log(lam_min), math.log(lam_max), waves))
        self.k = dirs * (2.0 * math.pi / lam)[:, None]
        self.phase = rng.uniform(0.0, 2.0 * math.pi, waves)
        amp = np.sqrt(lam)
        self.amp = amp * (0.5 / math.sqrt(float(np.sum(amp**2)) / 2.0))

    def __call__(self, pts: Points) -> Array:
        ni, nj = pts.x.shape
        ii = np.arange(ni, dtype=np.float64)
        jj = np.arange(nj, dtype=np.float64)
        acc = np.zeros((ni, nj), dtype=np.float32)
        for k, ph, a in zip(self.k, self.phase, self.amp, strict=True):
            col = ph + float(k @ pts.origin) + float(k @ pts.dv) * ii
            row = float(k @ pts.du) * jj
            ca, sa = (a * np.cos(col)).astype(np.float32), (a * np.sin(col)).astype(np.float32)
            cb, sb = np.cos(row).astype(np.float32), np.sin(row).astype(np.float32)
            acc += np.multiply.outer(ca, cb)
            acc -= np.multiply.outer(sa, sb)
        return acc


@dataclass(eq=False)
class Marrow:
    """Bone marrow as a fat/red-marrow mixture with a patchy fat fraction."""

    fat_fraction: float
    coarse: Noise3D
    fine: Noise3D

    def value(self, book: SignalBook, pts: Points) -> Array:
        ff = self.fat_fraction + 0.16 * self.coarse(pts) + 0.07 * self.fine(pts)
        np.clip(ff, 0.03, 0.97, out=ff)
        red = book.scalar("red_marrow")
        return red + ff * (book.scalar("fat_marrow") - red)


@dataclass(eq=False)
class Bowel:
    """Bowel loops: walls, fluid, gas and mesenteric fat from two texture fields."""

    loops: Noise3D
    content: Noise3D

    def value(self, book: SignalBook, pts: Points) -> Array:
        n1 = self.loops(pts)
        n2 = self.content(pts)
        wall, fluid, fat = (book.scalar(k) for k in ("bowel_wall", "bowel_fluid", "fat"))
        chyme = book.scalar("bowel_content")
        out = chyme + (wall - chyme) * np.clip(1.0 - np.abs(n1) * 8.0, 0.0, 1.0) * 0.6
        out = out + (fluid - out) * np.clip((n2 - 0.6) * 5.0, 0.0, 1.0)
        out = out * (1.0 - 0.9 * np.clip((-0.78 - n2) * 6.0, 0.0, 1.0))
        return out + (fat - out) * np.clip((-0.42 - n1) * 3.0, 0.0, 1.0)


# --------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------


def rot_x(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Local prism orientations inside a vertebra frame (columns: prism axes e1, e2, e3).
PRISM_ALONG_V = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
PRISM_ALONG_U = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class Frame:
    """Rigid frame: origin and rotation whose columns are the local axes (u, v, w)."""

    __slots__ = ("origin", "rot")

    def __init__(self, origin: Sequence[float] | Array, rot: Array) -> None:
        self.origin = np.asarray(origin, dtype=float)
        self.rot = np.asarray(rot, dtype=float)

    def local(self, x: Array, y: Array, z: Array) -> tuple[Array, Array, Array]:
        dx, dy, dz = x - self.origin[0], y - self.origin[1], z - self.origin[2]
        r = self.rot
        return (
            dx * r[0, 0] + dy * r[1, 0] + dz * r[2, 0],
            dx * r[0, 1] + dy * r[1, 1] + dz * r[2, 1],
            dx * r[0, 2] + dy * r[1, 2] + dz * r[2, 2],
        )

    def point(self, local: Sequence[float]) -> Array:
        return self.origin + self.rot @ np.asarray(local, dtype=float)

    def sub(self, offset: Sequence[float], rot_local: Array | None = None) -> Frame:
        rot = self.rot if rot_local is None else self.rot @ rot_local
        return Frame(self.point(offset), rot)

    @property
    def u(self) -> Array:
        return self.rot[:, 0]

    @property
    def v(self) -> Array:
        return self.rot[:, 1]

    @property
    def w(self) -> Array:
        return self.rot[:, 2]


def _radius(du: Array, dv: Array, p: float) -> Array:
    if p == 2.0:
        return np.sqrt(du * du + dv * dv)
    du2, dv2 = du * du, dv * dv
    r4 = np.sqrt(np.sqrt(du2 * du2 + dv2 * dv2))
    if p == 4.0:
        return r4
    t = (p - 2.0) / 2.0  # blend of the p=2 and p=4 norms approximates 2 < p < 4
    return (1.0 - t) * np.sqrt(du2 + dv2) + t * r4


def _combine(d1: Array, d2: Array) -> Array:
    """Signed distance of the intersection of a prism side and its caps (box-like)."""
    o1, o2 = np.maximum(d1, 0.0), np.maximum(d2, 0.0)
    return np.sqrt(o1 * o1 + o2 * o2) + np.minimum(np.maximum(d1, d2), 0.0)


def smooth_min(a: Array, b: Array, k: float) -> Array:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _box_of_points(pts: Array, pad: float) -> Array:
    return np.array([pts.min(axis=0) - pad, pts.max(axis=0) + pad])


# --------------------------------------------------------------------------------------
# Solids
# --------------------------------------------------------------------------------------


class Shape:
    """A solid with an approximate signed distance and painting layers (offset, tissue)."""

    layers: list[tuple[float, TissueSpec]]
    soft: float = 0.0
    coarse: bool = False
    box_id: int = -1

    def set_paint(self, layers: list[tuple[float, TissueSpec]], soft: float, coarse: bool):
        self.layers, self.soft, self.coarse = layers, soft, coarse
        return self

    def aabb(self) -> Array:
        raise NotImplementedError

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        raise NotImplementedError


class Block(Shape):
    """Rounded super-elliptic prism along the local w axis (vertebral bodies, processes)."""

    def __init__(
        self,
        frame: Frame,
        a: float,
        b: float,
        h: float,
        *,
        p: float = 2.0,
        r: float = 1.0,
        taper: float = 0.0,
        wedge: float = 0.0,
        waist: float = 0.0,
        concave: float = 0.0,
    ) -> None:
        self.frame, self.a, self.b, self.h, self.p = frame, a, b, h, p
        self.r = min(r, 0.95 * min(a, b, h))
        self.taper, self.waist, self.concave = taper, waist, concave
        self.tan_wedge = math.tan(math.radians(wedge))

    def aabb(self) -> Array:
        grow = 1.0 + abs(self.taper) * 1.2
        a, b = self.a * grow, self.b * grow
        h = self.h + abs(self.tan_wedge) * b
        corners = np.array(
            [[su * a, sv * b, sw * h] for su in (-1, 1) for sv in (-1, 1) for sw in (-1, 1)]
        )
        return _box_of_points(self.frame.origin + corners @ self.frame.rot.T, 0.5)

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        u, v, w = self.frame.local(x, y, z)
        hh = self.h - self.r
        ae: Any = self.a - self.r
        be: Any = self.b - self.r
        if self.taper or self.waist:
            t = np.clip(w / self.h, -1.2, 1.2)
            s = 1.0 - self.taper * t
            if self.waist:
                s = s * (1.0 - self.waist * np.clip(1.0 - t * t, 0.0, 1.0))
            ae, be = ae * s, be * s
        rr = _radius(u / ae, v / be, self.p)
        dxy = (rr - 1.0) * np.minimum(ae, be)
        top = hh - v * self.tan_wedge if self.tan_wedge else hh
        bot: Any = -hh
        if self.concave:
            dip = self.concave * np.clip(1.0 - rr * rr, 0.0, 1.0)
            top, bot = top - dip, bot + dip
        dw = np.maximum(w - top, bot - w)
        return _combine(dxy, dw) - self.r


class Ellipsoid(Shape):
    def __init__(self, frame: Frame, sa: float, sb: float, sc: float) -> None:
        self.frame, self.s = frame, np.array([sa, sb, sc], dtype=float)

    def aabb(self) -> Array:
        half = np.sqrt(((self.frame.rot * self.s[None, :]) ** 2).sum(axis=1))
        return np.array([self.frame.origin - half - 0.5, self.frame.origin + half + 0.5])

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        u, v, w = self.frame.local(x, y, z)
        sa, sb, sc = self.s
        rr = np.sqrt((u / sa) ** 2 + (v / sb) ** 2 + (w / sc) ** 2)
        return (rr - 1.0) * float(self.s.min())


class Tube(Shape):
    """Polyline tube with linearly varying radius (ribs, iliac vessels, capsules)."""

    def __init__(self, points: Array, radii: Sequence[float] | float) -> None:
        self.pts = np.asarray(points, dtype=float)
        self.rad = np.broadcast_to(np.asarray(radii, dtype=float), (len(self.pts),)).copy()

    def aabb(self) -> Array:
        return _box_of_points(self.pts, float(self.rad.max()) + 0.5)

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        best: Array | None = None
        for i in range(len(self.pts) - 1):
            a, b = self.pts[i], self.pts[i + 1]
            ab = b - a
            den = float(ab @ ab)
            px, py, pz = x - a[0], y - a[1], z - a[2]
            t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / den, 0.0, 1.0)
            dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
            d = np.sqrt(dx * dx + dy * dy + dz * dz) - (
                self.rad[i] + t * (self.rad[i + 1] - self.rad[i])
            )
            best = d if best is None else np.minimum(best, d)
        assert best is not None
        return best


class Sweep(Shape):
    """Tube along z with a super-elliptic horizontal cross-section interpolated from tables."""

    def __init__(
        self,
        zt: Array,
        cx: Array,
        cy: Array,
        ax: Array,
        ay: Array,
        *,
        p: float = 2.0,
        zlim: tuple[float, float] | None = None,
        ymax: Array | None = None,
    ) -> None:
        order = np.argsort(zt)
        self.zt = np.asarray(zt, dtype=float)[order]
        self.cx, self.cy = np.asarray(cx, float)[order], np.asarray(cy, float)[order]
        self.ax = np.maximum(np.asarray(ax, float)[order], 0.05)
        self.ay = np.maximum(np.asarray(ay, float)[order], 0.05)
        self.ymax = None if ymax is None else np.asarray(ymax, float)[order]
        self.p = p
        lo, hi = (self.zt[0] - 400.0, self.zt[-1] + 400.0) if zlim is None else zlim
        self.zlim = (max(lo, self.zt[0] - 400.0), min(hi, self.zt[-1] + 400.0))

    def aabb(self) -> Array:
        lo = [float(np.min(self.cx - self.ax)), float(np.min(self.cy - self.ay)), self.zlim[0]]
        hi = [float(np.max(self.cx + self.ax)), float(np.max(self.cy + self.ay)), self.zlim[1]]
        return np.array([lo, hi]) + np.array([[-0.5], [0.5]])

    def _lookup(self) -> tuple[float, list[Array]]:
        """Tables resampled on a uniform 0.5 mm grid (built lazily, read by nearest sample)."""
        if not hasattr(self, "_uniform"):
            z0, z1 = float(self.zt[0]), float(self.zt[-1])
            zu = np.arange(z0, z1 + 0.5, 0.5)
            cols = [self.cx, self.cy, self.ax, self.ay]
            if self.ymax is not None:
                cols.append(self.ymax)
            self._uniform = (z0, [np.interp(zu, self.zt, c).astype(np.float32) for c in cols])
        return self._uniform

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        z0, tabs = self._lookup()
        i = np.clip((z - z0) * 2.0 + 0.5, 0.0, len(tabs[0]) - 1).astype(np.int32)
        cx, cy, ax, ay = (t[i] for t in tabs[:4])
        rr = _radius((x - cx) / ax, (y - cy) / ay, self.p)
        d = (rr - 1.0) * np.minimum(ax, ay)
        d = np.maximum(d, np.maximum(self.zlim[0] - z, z - self.zlim[1]))
        if self.ymax is not None:
            d = np.maximum(d, y - tabs[4][i])
        return d


class DiscShape(Shape):
    """Intervertebral disc: between two endplate surfaces, inside a bulging footprint."""

    def __init__(
        self,
        frame: Frame,
        a: float,
        b: float,
        half_h: float,
        bulge: float,
        lower: Block,
        upper: Block,
    ) -> None:
        self.frame, self.a, self.b, self.half_h, self.bulge = frame, a, b, half_h, bulge
        self.lower, self.upper = lower, upper

    def aabb(self) -> Array:
        a, b = self.a + self.bulge + 1.0, self.b + self.bulge + 1.0
        h = self.half_h + 4.0 + max(self.lower.concave, self.upper.concave)
        corners = np.array(
            [[su * a, sv * b, sw * h] for su in (-1, 1) for sv in (-1, 1) for sw in (-1, 1)]
        )
        return _box_of_points(self.frame.origin + corners @ self.frame.rot.T, 1.0)

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        u, v, w = self.frame.local(x, y, z)
        prof = np.clip(1.0 - (w / max(self.half_h, 0.5)) ** 2, 0.0, 1.0) * self.bulge
        ae, be = self.a + prof, self.b + prof
        rr = _radius(u / ae, v / be, 2.3)
        dxy = (rr - 1.0) * np.minimum(ae, be)
        lo, up = self.lower, self.upper
        _, vl, wl = lo.frame.local(x, y, z)
        d1 = (lo.h - vl * lo.tan_wedge - lo.concave) - wl
        wu = up.frame.local(x, y, z)[2]
        d2 = wu - (-up.h + up.concave)
        return _combine(dxy, np.maximum(d1, d2))


class Clipped(Shape):
    """Intersection of a solid with another solid (optionally inset)."""

    def __init__(self, main: Shape, clip: Shape, inset: float = 0.0) -> None:
        self.main, self.clip, self.inset = main, clip, inset

    def aabb(self) -> Array:
        return self.main.aabb()

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        return np.maximum(self.main.distance(x, y, z), self.clip.distance(x, y, z) + self.inset)


class Union(Shape):
    """Smooth union of solids; members are evaluated only inside their own windows."""

    def __init__(self, members: list[Shape], k: float = 2.0) -> None:
        self.members, self.k = members, k

    def aabb(self) -> Array:
        boxes = np.array([m.aabb() for m in self.members])
        return np.array([boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)])

    def distance(self, x: Array, y: Array, z: Array) -> Array:
        d = self.members[0].distance(x, y, z)
        for m in self.members[1:]:
            d = smooth_min(d, m.distance(x, y, z), self.k)
        return d


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


class Scene:
    """Shapes in painting order plus a flat table of bounding boxes for fast windowing."""

    def __init__(self, shapes: list[Shape]) -> None:
        self.coarse = [s for s in shapes if s.coarse]
        self.detail = [s for s in shapes if not s.coarse]
        if shapes.index(self.detail[0]) < len(self.coarse):
            raise ValueError("coarse shapes must be painted first")
        boxes, margins = [], []
        for s in shapes:
            lay = max([-o for o, _ in getattr(s, "layers", [(0.0, None)])] + [0.0])
            for m in ([s] + list(s.members)) if isinstance(s, Union) else [s]:
                m.box_id = len(boxes)
                boxes.append(m.aabb())
                margins.append(s.soft + lay + 1.0)
        box = np.array(boxes)
        lo, hi = box[:, 0], box[:, 1]
        self.corners = np.stack(
            [
                np.stack(
                    [
                        np.where(c[0], hi[:, 0], lo[:, 0]),
                        np.where(c[1], hi[:, 1], lo[:, 1]),
                        np.where(c[2], hi[:, 2], lo[:, 2]),
                    ],
                    axis=1,
                )
                for c in np.ndindex(2, 2, 2)
            ],
            axis=1,
        )
        self.margins = np.array(margins)


@dataclass
class Plane:
    """A sampling grid: pixel (i, j) lies at origin + j*du + i*dv."""

    origin: Array
    du: Array
    dv: Array
    normal: Array
    rows: int
    cols: int

    def shifted(self, offset: float) -> Plane:
        return Plane(
            self.origin + offset * self.normal, self.du, self.dv, self.normal, self.rows, self.cols
        )

    def windows(self, scene: Scene, pix: float) -> Array:
        """Pixel windows (i0, i1, j0, j1) of all boxes; i0 == i1 marks a miss."""
        rel = scene.corners - self.origin
        m = (scene.margins + pix)[:, None]
        sn = rel @ self.normal
        hit = (sn.min(axis=1) <= m[:, 0]) & (sn.max(axis=1) >= -m[:, 0])
        du2, dv2 = float(self.du @ self.du), float(self.dv @ self.dv)
        cj, ci = rel @ self.du / du2, rel @ self.dv / dv2
        mj, mi = m / math.sqrt(du2), m / math.sqrt(dv2)
        j0 = np.clip(np.floor(cj.min(axis=1, keepdims=True) - mj)[:, 0], 0, self.cols)
        j1 = np.clip(np.ceil(cj.max(axis=1, keepdims=True) + mj)[:, 0] + 1, 0, self.cols)
        i0 = np.clip(np.floor(ci.min(axis=1, keepdims=True) - mi)[:, 0], 0, self.rows)
        i1 = np.clip(np.ceil(ci.max(axis=1, keepdims=True) + mi)[:, 0] + 1, 0, self.rows)
        win = np.stack([i0, i1, j0, j1], axis=1).astype(int)
        miss = ~hit | (win[:, 1] <= win[:, 0]) | (win[:, 3] <= win[:, 2])
        win[miss, 1] = win[miss, 0]
        return win

    def points(self, i0: int, i1: int, j0: int, j1: int) -> Points:
        jj = np.arange(j0, j1, dtype=np.float32)[None, :]
        ii = np.arange(i0, i1, dtype=np.float32)[:, None]
        o, du, dv = self.origin, self.du, self.dv
        x, y, z = (
            (np.float32(o[k]) + jj * np.float32(du[k])) + ii * np.float32(dv[k]) for k in range(3)
        )
        return Points(x, y, z, o + i0 * dv + j0 * du, du, dv)


def _union_distance(shape: Union, win: Array, box: Array, xyz: tuple[Array, ...]) -> Array:
    i0, _, j0, _ = box
    d = np.full(xyz[0].shape, 1e6, dtype=np.float32)
    for m in shape.members:
        a0, a1, b0, b1 = win[m.box_id]
        if a1 <= a0:
            continue
        a0, a1 = max(a0, i0) - i0, min(a1, box[1]) - i0
        b0, b1 = max(b0, j0) - j0, min(b1, box[3]) - j0
        if a1 <= a0 or b1 <= b0:
            continue
        sl = (slice(a0, a1), slice(b0, b1))
        dm = m.distance(*(c[sl] for c in xyz))
        d[sl] = smooth_min(d[sl], dm, shape.k)
    return d


def paint(
    img: Array, shapes: list[Shape], plane: Plane, scene: Scene, book: SignalBook, pix: float
) -> None:
    """Composite shapes (in order) onto img, sampled on plane."""
    win = plane.windows(scene, pix)
    for shape in shapes:
        box = win[shape.box_id]
        i0, i1, j0, j1 = box
        if i1 <= i0:
            continue
        pts = plane.points(i0, i1, j0, j1)
        if isinstance(shape, Union):
            d = _union_distance(shape, win, box, pts.xyz)
        else:
            d = shape.distance(*pts.xyz)
        inv = 1.0 / max(shape.soft, pix)
        sub = img[i0:i1, j0:j1]
        for off, tissue in shape.layers:
            alpha = np.clip(0.5 - (d + off) * inv, 0.0, 1.0)
            if not alpha.any():
                continue
            sub += alpha * (book.value(tissue, pts) - sub)


def render_plane(
    scene: Scene, book: SignalBook, plane: Plane, thickness: float, subsamples: int
) -> Array:
    """Partial-volume rendering of one slice on its acquisition grid."""
    pix = max(math.sqrt(float(plane.du @ plane.du)), math.sqrt(float(plane.dv @ plane.dv)))
    base = np.zeros((plane.rows, plane.cols), dtype=np.float32)
    paint(base, scene.coarse, plane, scene, book, pix)
    if subsamples <= 1:
        paint(base, scene.detail, plane, scene, book, pix)
        return base
    acc = np.zeros_like(base)
    for k in range(subsamples):
        img = base.copy()
        off = thickness * ((k + 0.5) / subsamples - 0.5)
        paint(img, scene.detail, plane.shifted(off), scene, book, pix)
        acc += img
    return acc / subsamples


# --------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------

# Vertebral body height, AP depth and width (mm) at body size 1.
BODY_DIMS: dict[str, tuple[float, float, float]] = {
    "T8": (19.0, 24.0, 30.0),
    "T9": (19.5, 25.0, 31.0),
    "T10": (20.5, 26.0, 33.0),
    "T11": (21.5, 27.0, 35.0),
    "T12": (23.0, 28.5, 38.0),
    "L1": (25.0, 30.0, 41.0),
    "L2": (26.5, 31.5, 43.0),
    "L3": (27.5, 33.0, 46.0),
    "L4": (28.0, 34.0, 48.0),
    "L5": (27.0, 34.0, 50.0),
    "S1": (27.0, 36.0, 46.0),
    "S2": (22.0, 29.0, 38.0),
    "S3": (18.0, 23.0, 30.0),
    "S4": (15.0, 18.0, 24.0),
    "S5": (12.0, 14.0, 18.0),
    "Co1": (10.0, 12.0, 16.0),
    "Co2": (8.0, 10.0, 12.0),
    "Co3": (7.0, 8.0, 10.0),
    "Co4": (5.0, 6.0, 8.0),
}
# Canal AP depth and width (mm).
CANAL_DIMS: dict[str, tuple[float, float]] = {
    "T8": (14.0, 17.0),
    "T9": (14.0, 17.0),
    "T10": (14.0, 17.5),
    "T11": (14.5, 18.0),
    "T12": (15.0, 19.5),
    "L1": (16.0, 21.0),
    "L2": (16.0, 22.0),
    "L3": (15.5, 23.0),
    "L4": (15.5, 24.0),
    "L5": (16.0, 26.0),
    "S1": (12.0, 28.0),
    "S2": (10.0, 24.0),
    "S3": (8.0, 20.0),
    "S4": (6.0, 16.0),
    "S5": (5.0, 12.0),
}
# Disc height at the centre (mm), keyed "upper-lower".
DISC_HEIGHT: dict[str, float] = {
    "T8-T9": 4.5,
    "T9-T10": 5.0,
    "T10-T11": 5.5,
    "T11-T12": 6.0,
    "T12-L1": 7.0,
    "L1-L2": 8.5,
    "L2-L3": 9.5,
    "L3-L4": 10.5,
    "L4-L5": 11.5,
    "L5-S1": 10.5,
    "S1-S2": 9.0,
}
DEGEN_BASE = {
    "T": 0.1,
    "T12-L1": 0.15,
    "L1-L2": 0.2,
    "L2-L3": 0.3,
    "L3-L4": 0.4,
    "L4-L5": 0.7,
    "L5-S1": 0.7,
    "S1-S2": 0.35,
}
SACRAL_EXT = (50.0, 47.0, 38.0, 28.0, 16.0)  # half-width of the sacral lateral masses
SACRAL_KYPHOSIS = (6.0, 11.0, 14.0, 15.0)  # junction angles S1/2 .. S4/5 (deg)


def disc_label(upper: str, lower: str) -> str:
    return f"{upper}-{lower}"


@dataclass(eq=False)
class Vertebra:
    name: str
    kind: str  # thoracic | lumbar | sacral | coccygeal
    height: float
    depth: float
    width: float
    canal_ap: float
    canal_w: float
    wedge: float = 0.0  # lordotic wedge of the body (deg, anterior taller when > 0)
    taper: float = 0.0  # footprint scale 1 - taper * w/h (< 0: narrower inferiorly)
    theta: float = 0.0  # sagittal tilt of the body axis (deg, top anterior when > 0)
    tp_height: float = 0.0  # transverse-process height (mm), 0 for the default
    center2: Array = field(default_factory=lambda: np.zeros(2))
    frame: Frame | None = None
    body: Block | None = None
    marrow: Marrow | None = None

    @property
    def h(self) -> float:
        return self.height / 2.0

    @property
    def b(self) -> float:
        return self.depth / 2.0

    @property
    def a(self) -> float:
        return self.width / 2.0

    @property
    def f(self) -> Frame:
        assert self.frame is not None
        return self.frame


@dataclass(eq=False)
class Disc:
    upper: Vertebra
    lower: Vertebra
    height: float
    delta: float = 0.0  # lordotic angle carried by the disc (deg)
    slip: float = 0.0  # anterior translation of the upper vertebra (mm)
    state: dict = field(default_factory=dict)
    kind: str = "mobile"  # mobile | rudimentary | fused
    frame: Frame | None = None

    @property
    def name(self) -> str:
        return disc_label(self.upper.name, self.lower.name)

    @property
    def center(self) -> Array:
        assert self.frame is not None
        return self.frame.origin


def _axis2(theta: float) -> Array:
    t = math.radians(theta)
    return np.array([-math.sin(t), math.cos(t)])


def _post2(theta: float) -> Array:
    t = math.radians(theta)
    return np.array([math.cos(t), math.sin(t)])


class Anatomy:
    """Draws the anatomical parameters of one study and builds its solids."""

    def __init__(self, rng: np.random.Generator, variant: str) -> None:
        self.rng, self.variant = rng, variant
        self.p: dict[str, Any] = {"variant": variant}
        self._draw_globals()
        self._make_vertebrae()
        self._draw_discs()
        self._apply_variant()
        self._place_chain()
        self._place_3d()
        self._landmarks()

    # ---- parameter draws -------------------------------------------------------------

    def _draw_globals(self) -> None:
        rng, p = self.rng, self.p
        p["age"] = int(rng.integers(20, 81))
        p["sex"] = str(rng.choice(["F", "M"]))
        p["size"] = round(float(rng.uniform(0.8, 1.2)), 3)
        p["sacral_slope_deg"] = round(float(rng.uniform(30.0, 50.0)), 2)
        p["lordosis_deg"] = round(
            float(np.clip(p["sacral_slope_deg"] + rng.uniform(-2, 18), 25, 72)), 2
        )
        scol = rng.random() < 0.3
        p["scoliosis"] = {
            "present": bool(scol),
            "amplitude_mm": round(float(rng.uniform(3, 9) * rng.choice([-1, 1])), 2)
            if scol
            else 0.0,
            "wavelength_mm": round(float(rng.uniform(220, 420)), 1),
            "phase": round(float(rng.uniform(0, 2 * math.pi)), 3),
        }
        slip = rng.random() < 0.15
        p["listhesis"] = {
            "present": bool(slip),
            "level": str(rng.choice(["L4-L5", "L3-L4", "L5-S1"], p=[0.65, 0.2, 0.15])),
            "slip_mm": round(float(rng.uniform(3, 9)), 2) if slip else 0.0,
        }
        p["marrow_fat_fraction"] = round(
            float(np.clip(0.34 + 0.006 * (p["age"] - 20) + rng.normal(0, 0.05), 0.15, 0.8)), 3
        )
        p["cortex_mm"] = round(float(rng.uniform(0.9, 1.3)), 2)
        self.noise_coarse = Noise3D(rng, 7, 8.0, 30.0)
        self.noise_fine = Noise3D(rng, 6, 2.0, 5.0)

    def _dims(self, name: str) -> tuple[float, float, float]:
        s = self.p["size"]
        jit = self.rng.uniform(0.96, 1.04, 3)
        return tuple(float(v * s * j) for v, j in zip(BODY_DIMS[name], jit, strict=True))

    def _canal(self, name: str) -> tuple[float, float]:
        s = math.sqrt(self.p["size"])
        ap, w = CANAL_DIMS[name]
        return ap * s * float(self.rng.uniform(0.9, 1.1)), w * s * float(
            self.rng.uniform(0.92, 1.08)
        )

    def _make_vertebrae(self) -> None:
        lumb = self.variant == "lumbarization"
        mobile_names = ["T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
        if lumb:
            mobile_names.append("S1")
        sacral_names = ["S2", "S3", "S4", "S5"] if lumb else ["S1", "S2", "S3", "S4", "S5"]
        cocc = ["Co1", "Co2", "Co3"] + (["Co4"] if self.rng.random() < 0.5 else [])
        self.mobile: list[Vertebra] = []  # bottom to top
        for n in reversed(mobile_names):
            kind = "thoracic" if n.startswith("T") else "lumbar"
            dim_name = "L5" if n == "S1" else n
            hgt, dep, wid = self._dims(dim_name)
            cap, cw = self._canal(dim_name)
            self.mobile.append(Vertebra(n, kind, hgt, dep, wid, cap, cw))
        self.sacrum: list[Vertebra] = []
        for k, n in enumerate(sacral_names):
            dim_name = f"S{k + 1}"  # a 4-segment sacrum keeps the shape of a normal top
            hgt, dep, wid = self._dims(dim_name)
            cap, cw = self._canal(dim_name)
            shrink = 0.95 if lumb else 1.0
            v = Vertebra(n, "sacral", hgt * shrink, dep * shrink, wid * shrink, cap, cw)
            self.sacrum.append(v)
        self.coccyx = []
        for n in cocc:
            hgt, dep, wid = self._dims(n)
            self.coccyx.append(Vertebra(n, "coccygeal", hgt, dep, wid, 0.0, 0.0))
        rng = self.rng
        for v in self.mobile:
            if v.kind == "thoracic":
                v.wedge = -float(rng.uniform(1.0, 3.0))
            else:
                v.wedge = {"L1": -2.0, "L2": -1.0, "L3": 0.0, "L4": 1.5, "L5": 4.5, "S1": 1.0}[
                    v.name
                ] + float(rng.uniform(-1.5, 1.5))
                v.taper = float(rng.uniform(-0.03, 0.04))
        self._taper_sacrum()

    def _taper_sacrum(self) -> None:
        """Taper each fused segment so that its lower end matches the next segment's top."""
        segs = self.sacrum
        for v, nxt in zip(segs[:-1], segs[1:], strict=True):
            top, bottom = v.depth, nxt.depth
            v.depth = 0.5 * (top + bottom)
            v.taper = (bottom - top) / (top + bottom)
            v.width *= 1.0 - 0.5 * abs(v.taper)
        segs[-1].taper = -0.1

    def _draw_disc_state(self, name: str) -> dict:
        """Degeneration and related confounders of one disc (same law for every variant)."""
        rng, age = self.rng, self.p["age"]
        base = DEGEN_BASE.get(name, DEGEN_BASE["T"])
        a = (age - 20) / 60.0
        p_deg = float(np.clip(base * (0.3 + 1.0 * a), 0.0, 0.95))
        grade = 0
        if rng.random() < p_deg:
            grade = 1 + int(rng.random() < 0.35 + 0.35 * a) + int(rng.random() < 0.2 + 0.3 * a)
        height = [1.0, rng.uniform(0.85, 0.95), rng.uniform(0.6, 0.8), rng.uniform(0.35, 0.6)]
        t2 = [rng.uniform(120, 160), rng.uniform(85, 110), rng.uniform(60, 80), rng.uniform(40, 55)]
        bulge = [
            rng.uniform(0.3, 1.2),
            rng.uniform(0.8, 2.2),
            rng.uniform(1.5, 3.2),
            rng.uniform(2.0, 4.0),
        ]
        hern = rng.random() < [0.02, 0.1, 0.2, 0.25][grade]
        modic = grade >= 2 and rng.random() < 0.4
        state = {
            "grade": grade,
            "height_factor": round(float(height[grade]), 3),
            "nucleus_t2_ms": round(float(t2[grade]), 1),
            "bulge_mm": round(float(bulge[grade]), 2),
            "cleft": bool(grade == 0 and age > 30 and rng.random() < 0.6),
            "vacuum": bool(grade == 3 and rng.random() < 0.3),
            "herniation": {
                "extent_mm": round(float(rng.uniform(3, 8)), 2),
                "lateral_mm": round(float(rng.uniform(-9, 9)), 2),
                "migration_mm": round(float(rng.uniform(-4, 4)), 2),
            }
            if hern
            else None,
            "modic": {
                "type": int(rng.choice([1, 2, 3], p=[0.3, 0.6, 0.1])),
                "endplates": str(rng.choice(["upper", "lower", "both"])),
                "depth_mm": round(float(rng.uniform(4, 12)), 2),
                "anterior_only": bool(rng.random() < 0.5),
            }
            if modic
            else None,
            "osteophytes_mm": round(float(rng.uniform(2, 6)), 2)
            if grade >= 1 and age > 40 and rng.random() < 0.45
            else 0.0,
            "schmorl": [str(e) for e in ("upper", "lower") if rng.random() < 0.05],
        }
        return state

    def _draw_discs(self) -> None:
        """Discs of the mobile chain (below each mobile vertebra), bottom to top."""
        names = [v.name for v in self.mobile]
        below = [self.sacrum[0]] + self.mobile[:-1]
        std_names = [disc_label(n, b.name) for n, b in zip(names, below, strict=True)]
        extra_state = self._draw_disc_state("S1-S2")  # drawn always: same law everywhere
        states = {n: self._draw_disc_state(_degeneration_key(n)) for n in std_names}
        self.discs: list[Disc] = []
        s = self.p["size"]
        for v, low in zip(self.mobile, below, strict=True):
            key = disc_label(v.name, low.name)
            st = extra_state if key == "S1-S2" else states[key]
            nominal = DISC_HEIGHT.get(key, 9.0)
            hgt = nominal * s * float(self.rng.uniform(0.92, 1.08)) * st["height_factor"]
            self.discs.append(Disc(v, low, hgt, state=st))
        lis = self.p["listhesis"]
        if lis["present"]:
            self._disc(lis["level"]).slip = lis["slip_mm"]

    def _disc(self, name: str) -> Disc:
        return next(d for d in self.discs if d.name == name)

    def _apply_variant(self) -> None:
        rng, p = self.rng, self.p
        s = p["size"]
        lstv: dict[str, Any] = {"type": self.variant}
        remnant_first = float(rng.uniform(0.8, 2.2)) if rng.random() < 0.45 else 0.0
        remnants = [remnant_first] + [
            float(rng.uniform(0.5, 1.2)) if rng.random() < 0.3 else 0.0 for _ in range(3)
        ]
        self.remnants = remnants[: len(self.sacrum) - 1]
        lstv["sacral_remnants_mm"] = [round(r, 2) for r in self.remnants]
        self.castellvi: dict[str, Any] | None = None
        self.bridge = False
        if self.variant == "lumbarization":
            s1 = self.mobile[0]
            s1.height = self._dims("L5")[0] * float(rng.uniform(0.88, 0.98))
            s1.wedge, s1.taper = float(rng.uniform(0.0, 2.5)), 0.0
            d = self.discs[0]
            d.height = 10.5 * s * float(rng.uniform(0.6, 0.9)) * d.state["height_factor"]
            lstv["s1_s2_disc_mm"] = round(d.height, 2)
            if rng.random() < 0.3:
                self.castellvi = {"type": "II", "sides": str(rng.choice(["left", "right", "both"]))}
        elif self.variant == "sacralization":
            l5 = self.mobile[0]
            fused = rng.random() < 0.35
            l5.height *= float(rng.uniform(0.82, 0.95))
            l5.wedge = float(rng.uniform(6.0, 11.0))
            l5.taper = -float(rng.uniform(0.08, 0.18))  # narrows inferiorly, like an S1 segment
            d = self.discs[0]
            d.kind = "fused" if fused else "rudimentary"
            d.height = float(rng.uniform(0.8, 1.5)) if fused else float(rng.uniform(1.5, 4.0))
            d.state = dict(
                d.state,
                nucleus_t2_ms=round(float(rng.uniform(40, 65)), 1),
                cleft=False,
                herniation=None,
                vacuum=False,
            )
            if d.slip:  # a transitional L5 does not slip on S1: move the listhesis up
                self._disc("L4-L5").slip, d.slip = d.slip, 0.0
                p["listhesis"]["level"] = "L4-L5"
            self.bridge = (not fused) and rng.random() < 0.3
            ctype = str(rng.choice(["none", "I", "II", "III", "IV"], p=[0.2, 0.2, 0.3, 0.2, 0.1]))
            if ctype != "none":
                sides = "both" if ctype == "IV" else str(rng.choice(["left", "right", "both"]))
                self.castellvi = {"type": ctype, "sides": sides}
            lstv.update(
                l5_s1="fused" if fused else "rudimentary",
                disc_mm=round(d.height, 2),
                bony_bridge=self.bridge,
            )
        if self.variant != "sacralization":
            self.mobile[0].tp_height = float(rng.uniform(11.0, 17.0)) * s
        lstv["castellvi"] = self.castellvi
        p["lstv"] = lstv

    # ---- geometry ---------------------------------------------------------------------

    def _disc_angles(self) -> None:
        """Distribute the lordosis (L1 top endplate to sacral top) over the lumbar discs."""
        rng, p = self.rng, self.p
        lumbar = [d for d in self.discs if d.upper.kind == "lumbar"]
        weights = np.array(
            [0.32, 0.26, 0.19, 0.13, 0.10]
            if len(lumbar) == 5
            else [0.25, 0.24, 0.2, 0.14, 0.1, 0.07]
        )
        fixed = 0.0
        if self.variant == "sacralization":
            lumbar[0].delta = float(rng.uniform(0.0, 5.0))
            fixed = lumbar[0].delta
            weights[0] = 0.0
        wedges = sum(d.upper.wedge for d in lumbar)
        rest = p["lordosis_deg"] - wedges - fixed
        weights = weights / weights.sum()
        for d, w in zip(lumbar, weights, strict=True):
            if w > 0:
                d.delta = float(rest * w * rng.uniform(0.85, 1.15))
        for d in self.discs:
            if d.upper.kind == "thoracic" or d.lower.kind == "thoracic":
                d.delta = -float(rng.uniform(2.0, 5.0))

    def _record_discs(self) -> None:
        self.p["discs"] = {
            d.name: dict(
                d.state,
                kind=d.kind,
                height_mm=round(d.height, 2),
                lordosis_deg=round(d.delta, 2),
                slip_mm=round(d.slip, 2),
            )
            for d in self.discs
        }

    def _place_chain(self) -> None:
        """2-D (y, z) placement of all segments; the sacral top centre is the origin."""
        self._disc_angles()
        self._record_discs()
        top, theta_top = np.zeros(2), self.p["sacral_slope_deg"]
        for v, d in zip(self.mobile, self.discs, strict=True):
            theta = theta_top - d.delta
            mid = 0.5 * (theta_top + theta)
            bottom = top + d.height * _axis2(mid) - d.slip * _post2(mid)
            v.theta = theta
            v.center2 = bottom + v.h * _axis2(theta)
            top = v.center2 + v.h * _axis2(theta)
            theta_top = theta - v.wedge
        theta = self.p["sacral_slope_deg"]
        top = np.zeros(2)
        kyph = [k * float(self.rng.uniform(0.7, 1.3)) for k in SACRAL_KYPHOSIS]
        for k, v in enumerate(self.sacrum):
            if k > 0:
                v.wedge = -kyph[k - 1]
                theta = theta - kyph[k - 1]
            v.theta = theta
            v.center2 = top - v.h * _axis2(theta)
            top = v.center2 - v.h * _axis2(theta)
        self.cocc_gaps = []
        for v in self.coccyx:
            step = float(self.rng.uniform(10.0, 20.0))
            gap = float(self.rng.uniform(1.2, 2.5))
            mid = theta - step / 2
            theta = theta - step
            v.theta = theta
            v.center2 = top - gap * _axis2(mid) - v.h * _axis2(theta)
            top = v.center2 - v.h * _axis2(theta)
            self.cocc_gaps.append(gap)

    def _x_offset(self, z: float) -> tuple[float, float]:
        """Scoliosis: lateral offset (mm) and coronal tilt (deg) at height z (chain coords)."""
        sc = self.p["scoliosis"]
        if not sc["present"] or z <= 0:
            return 0.0, 0.0
        k = 2 * math.pi / sc["wavelength_mm"]
        amp, ph = sc["amplitude_mm"], sc["phase"]
        off = amp * (math.sin(k * z + ph) - math.sin(ph))
        slope = amp * k * math.cos(k * z + ph)
        ramp = min(z / 40.0, 1.0)
        return off * ramp, math.degrees(math.atan(slope * ramp))

    def _place_3d(self) -> None:
        rng = self.rng
        l3 = next(v for v in self.mobile if v.name == "L3")
        x0 = float(rng.uniform(-12, 12))
        y0 = float(rng.uniform(-20, 30)) - l3.center2[0]
        z0 = float(rng.uniform(-50, 50)) - l3.center2[1]
        self.p["midline_x"] = round(x0, 2)
        self.origin_shift = np.array([x0, y0, z0])
        for v in self.all_vertebrae():
            off, tilt = self._x_offset(float(v.center2[1]))
            centre = np.array([x0 + off, v.center2[0] + y0, v.center2[1] + z0])
            v.frame = Frame(centre, rot_y(tilt) @ rot_x(v.theta))
        for d in self.discs:
            lo, up = d.lower, d.upper
            p_lo = lo.f.point([0, 0, lo.h])
            p_up = up.f.point([0, 0, -up.h])
            off, tilt = self._x_offset(float(0.5 * (lo.center2[1] + up.center2[1])))
            theta = 0.5 * (lo.theta - lo.wedge + up.theta)
            d.frame = Frame(0.5 * (p_lo + p_up), rot_y(tilt) @ rot_x(theta))
        self.sacral_top = self.sacrum[0]

    def all_vertebrae(self) -> list[Vertebra]:
        return self.coccyx[::-1] + self.sacrum[::-1] + self.mobile

    def vertebra(self, name: str) -> Vertebra:
        return next(v for v in self.all_vertebrae() if v.name == name)

    def level_z(self, name: str, frac: float = 0.0) -> float:
        """Patient z of a vertebral body centre (+frac * height)."""
        v = self.vertebra(name)
        return float(v.f.point([0, 0, frac * v.height])[2])

    def _landmarks(self) -> None:
        rng, p = self.rng, self.p
        # conus tip between the middle of T12 and the lower endplate of L2, mode near L1-L2
        t = float(rng.triangular(0.0, 0.62, 1.0))
        z_hi, z_lo = self.level_z("T12"), self.level_z("L2", -0.5)
        self.z_conus = z_hi + t * (z_lo - z_hi)
        p["conus_tip"] = {"z_mm": round(self.z_conus, 2), "level": self.level_at(self.z_conus)}
        t = float(rng.triangular(0.0, 0.5, 1.0))
        z_hi, z_lo = self.level_z("L3", 0.2), self.level_z("L5", 0.2)
        self.z_bif = z_hi + t * (z_lo - z_hi)
        p["aortic_bifurcation"] = {"z_mm": round(self.z_bif, 2), "level": self.level_at(self.z_bif)}
        self.z_sac_end = self.level_z("S2", float(rng.uniform(-0.3, 0.4)))

    def level_at(self, z: float) -> str:
        """Name of the body or disc at height z (along the body centres)."""
        best, name = 1e9, "?"
        for v in self.all_vertebrae():
            for frac, label in (
                (0.0, v.name),
                (0.33, f"{v.name} upper third"),
                (-0.33, f"{v.name} lower third"),
            ):
                dz = abs(self.level_z(v.name, frac) - z)
                if dz < best:
                    best, name = dz, label
        for d in self.discs:
            if abs(float(d.center[2]) - z) < best:
                best, name = abs(float(d.center[2]) - z), d.name
        return name

    # ---- truth --------------------------------------------------------------------------

    def truth_discs(self) -> list[tuple[str, Array]]:
        out = []
        for level in TRUTH_LEVELS:
            up, lo = level.split("-")
            d = next(d for d in self.discs if d.upper.name == up and d.lower.name == lo)
            out.append((level, d.center.copy()))
        return out


def _degeneration_key(label: str) -> str:
    """Key of the degeneration law of a disc: thoracic discs share one law."""
    return label if label in DEGEN_BASE else "T"


# --------------------------------------------------------------------------------------
# Solids of the anatomy
# --------------------------------------------------------------------------------------


@dataclass
class Tables:
    """Spine samples sorted by height, used to build the swept soft tissues."""

    z: Array
    x: Array
    y: Array
    cos: Array
    a: Array
    b: Array
    y_ant: Array
    canal_z: Array
    canal_x: Array
    canal_y: Array
    canal_ap: Array
    canal_w: Array
    tip_z: Array
    tip_y: Array
    post_y: Array


def spine_tables(an: Anatomy) -> Tables:
    """Sample every body and disc: centre, size, canal and posterior reach."""
    rows = []
    size = an.p["size"]
    elements: list[tuple[Frame, float, float, float, float, float]] = []
    for v in an.all_vertebrae():
        elements.append((v.f, v.a, v.b, v.canal_ap, v.canal_w, _spinous_reach(v, size)))
    for d in an.discs:
        lo, up = d.lower, d.upper
        assert d.frame is not None
        elements.append(
            (
                d.frame,
                0.5 * (lo.a + up.a),
                0.5 * (lo.b + up.b),
                0.5 * (lo.canal_ap + up.canal_ap),
                0.5 * (lo.canal_w + up.canal_w),
                0.5 * (_spinous_reach(lo, size) + _spinous_reach(up, size)),
            )
        )
    for fr, a, b, cap, cw, reach in elements:
        cos = max(float(fr.w[2]), 0.3)
        c = fr.point([0, b + max(cap, 6.0) / 2, 0])
        tip = fr.point([0, b + reach, -reach * 0.25])
        rows.append(
            (
                fr.origin[2],
                fr.origin[0],
                fr.origin[1],
                cos,
                a,
                b,
                fr.origin[1] - b / cos,
                c[2],
                c[0],
                c[1],
                cap,
                cw,
                tip[2],
                tip[1],
                fr.origin[1] + (b + cap + 6.0) / cos,
            )
        )
    arr = np.array(sorted(rows, key=lambda r: r[0]))
    cz = np.argsort(arr[:, 7])
    tz = np.argsort(arr[:, 12])
    return Tables(
        z=arr[:, 0],
        x=arr[:, 1],
        y=arr[:, 2],
        cos=arr[:, 3],
        a=arr[:, 4],
        b=arr[:, 5],
        y_ant=arr[:, 6],
        canal_z=arr[cz, 7],
        canal_x=arr[cz, 8],
        canal_y=arr[cz, 9],
        canal_ap=arr[cz, 10],
        canal_w=arr[cz, 11],
        tip_z=arr[tz, 12],
        tip_y=arr[tz, 13],
        post_y=arr[:, 14],
    )


def _spinous_reach(v: Vertebra, s: float) -> float:
    """Distance from the posterior body wall to the spinous tip (or dorsal sacral wall)."""
    if v.kind == "thoracic":
        return v.canal_ap + 30.0 * s
    if v.kind == "lumbar":
        return v.canal_ap + (24.0 if v.name in ("L5", "S1") else 30.0) * s
    if v.kind == "sacral":
        return v.canal_ap + 9.0
    return 4.0


class AnatomyBuilder:
    """Builds the list of solids (in painting order) for an Anatomy."""

    def __init__(self, an: Anatomy) -> None:
        self.an, self.rng, self.p = an, an.rng, an.p
        self.s = an.p["size"]
        self.tab = spine_tables(an)
        self.bowel = Bowel(Noise3D(self.rng, 9, 18.0, 50.0), Noise3D(self.rng, 7, 12.0, 35.0))
        self.shapes: list[Shape] = []
        an.p["soft_tissue"] = self.soft = {
            "fat_posterior_mm": round(float(self.rng.uniform(6, 32) * self.s), 1),
            "fat_anterior_mm": round(float(self.rng.uniform(8, 45) * self.s), 1),
            "fat_lateral_mm": round(float(self.rng.uniform(8, 35) * self.s), 1),
            "half_width_mm": round(float(self.rng.uniform(135, 175) * self.s), 1),
            "anterior_depth_mm": round(float(self.rng.uniform(75, 160) * self.s), 1),
            "prevertebral_gap_mm": round(float(self.rng.uniform(22, 34) * self.s), 1),
        }
        z = self.tab.z
        self.zg = np.linspace(z.min() - 350.0, z.max() + 350.0, 90)

    def marrow(self, ff_shift: float = 0.0) -> Marrow:
        ff = self.p["marrow_fat_fraction"] + ff_shift + float(self.rng.normal(0, 0.04))
        return Marrow(float(np.clip(ff, 0.1, 0.9)), self.an.noise_coarse, self.an.noise_fine)

    def add(
        self,
        shape: Shape,
        layers: list[tuple[float, TissueSpec]],
        soft: float = 0.0,
        coarse: bool = False,
    ) -> Shape:
        self.shapes.append(shape.set_paint(layers, soft, coarse))
        return shape

    def build(self) -> list[Shape]:
        self.soft_tissue()
        self.organs()
        self.muscles()
        self.vessels()
        self.canal()
        self.discs()
        self.vertebrae()
        self.body_features()
        self.ribs()
        self.pelvis()
        return self.shapes

    # ---- soft tissue ---------------------------------------------------------------

    def _body_outline(self) -> dict[str, Any]:
        tab, zg, st, an = self.tab, self.zg, self.soft, self.an
        z_l3 = an.level_z("L3")
        lumbar = (tab.tip_z < an.level_z("T12")) & (tab.tip_z > an.level_z("S3"))
        y_table = float(tab.tip_y[lumbar].max()) + st["fat_posterior_mm"]
        y_ant_l3 = float(np.interp(z_l3, tab.z, tab.y_ant))
        belly = float(self.rng.uniform(0, 40) * self.s)
        y_front = y_ant_l3 - st["anterior_depth_mm"] - belly * np.exp(-(((zg - z_l3) / 160) ** 2))
        half_w = st["half_width_mm"] + 25.0 * np.clip((an.level_z("L5") - zg) / 60.0, 0, 1)
        return {"y_table": y_table, "y_front": y_front, "half_w": half_w}

    def soft_tissue(self) -> None:
        tab, zg, st = self.tab, self.zg, self.soft
        out = self._body_outline()
        self.y_table = out["y_table"]
        y_front, half_w = out["y_front"], out["half_w"]
        xm = np.full_like(zg, self.p["midline_x"])
        back = self.y_table + 40.0
        torso = Sweep(
            zg,
            xm,
            (y_front + back) / 2,
            half_w,
            (back - y_front) / 2,
            p=2.2,
            ymax=np.full_like(zg, self.y_table),
        )
        self.add(torso, [(0.0, "skin"), (1.8, "fat")], coarse=True)
        gap = st["prevertebral_gap_mm"] * np.where(zg < self.an.z_bif, 0.6, 1.0)
        v_back = np.interp(zg, tab.z, tab.y_ant) - gap
        wall_t = float(self.rng.uniform(8, 13) * self.s)
        v_front = y_front + st["fat_anterior_mm"] + wall_t
        v_front = np.minimum(v_front, v_back - 30.0)
        w_front = v_front - wall_t
        w_back = v_back - 2.0
        ax_v = half_w - st["fat_lateral_mm"] - wall_t
        self.add(
            Sweep(zg, xm, (w_front + w_back) / 2, ax_v + wall_t, (w_back - w_front) / 2, p=2.2),
            [(0.0, "muscle")],
            coarse=True,
        )
        self.viscera = Sweep(zg, xm, (v_front + v_back) / 2, ax_v, (v_back - v_front) / 2, p=2.2)
        self.add(self.viscera, [(0.0, self.bowel)], coarse=True)

    def organs(self) -> None:
        an, tab, s, rng = self.an, self.tab, self.s, self.rng
        xm = self.p["midline_x"]
        z_t12 = an.level_z("T12")
        liver_c = [
            xm - 75 * s,
            float(np.interp(z_t12, tab.z, tab.y_ant)) - 60 * s,
            an.level_z("T11") + float(rng.uniform(-15, 10)),
        ]
        liver = Ellipsoid(Frame(liver_c, rot_y(10)), 95 * s, 70 * s, 80 * s)
        self.add(Clipped(liver, self.viscera), [(0.0, "liver")], soft=1.5, coarse=True)
        t10 = an.vertebra("T10")
        dome = float(rng.uniform(-10, 25))
        for side in (1.0, -1.0):
            c = t10.f.origin + np.array([side * 72 * s, 8.0 * s, 40.0 + dome])
            lung = Ellipsoid(Frame(c, rot_x(-15.0)), 52 * s, 58 * s, 80 * s)
            self.add(lung, [(0.0, "ligament"), (1.5, "air")], soft=1.0, coarse=True)
        self.p["lung_base_z_mm"] = round(float(t10.f.origin[2] + 40.0 + dome - 80 * s), 1)
        z_l1 = an.level_z("L1")
        for side, dz in ((1.0, float(rng.uniform(-10, 10))), (-1.0, float(rng.uniform(-28, -8)))):
            zc = z_l1 + dz
            c = [
                float(np.interp(zc, tab.z, tab.x)) + side * float(rng.uniform(68, 85)) * s,
                float(np.interp(zc, tab.z, tab.y)) + float(rng.uniform(5, 20)) * s,
                zc,
            ]
            fr = Frame(c, rot_y(side * 15.0) @ rot_x(-12.0))
            self.add(
                Ellipsoid(fr, 27 * s, 30 * s, 55 * s),
                [(-6.0, "fat"), (0.0, "kidney_cortex"), (7.0 * s, "kidney_medulla")],
                soft=1.0,
                coarse=True,
            )
        co2 = an.coccyx[min(1, len(an.coccyx) - 1)]
        zb = float(co2.f.origin[2]) - 10.0
        fill = float(rng.uniform(0.6, 1.3))
        c = [xm, float(np.interp(zb, tab.z, tab.y_ant)) - 70 * s, zb]
        self.add(
            Ellipsoid(Frame(c, np.eye(3)), 45 * s * fill, 35 * s * fill, 35 * s * fill),
            [(0.0, "muscle"), (3.0, "urine")],
            coarse=True,
        )
        zr = self.zg[self.zg < an.level_z("S3")]
        yr = np.interp(zr, tab.z, tab.y_ant) - 22 * s
        rect = Sweep(
            zr,
            np.full_like(zr, xm + float(rng.uniform(-10, 10))),
            yr,
            np.full_like(zr, 18 * s),
            np.full_like(zr, 15 * s),
            zlim=(float(zr.min()), float(zr.max())),
        )
        self.add(
            rect,
            [
                (0.0, "bowel_wall"),
                (3.0, Bowel(Noise3D(rng, 6, 10.0, 30.0), Noise3D(rng, 5, 8.0, 25.0))),
            ],
            coarse=True,
        )

    def muscles(self) -> None:
        an, tab, zg, s, rng = self.an, self.tab, self.zg, self.s, self.rng
        xs = np.interp(zg, tab.z, tab.x)
        yb = np.interp(zg, tab.z, tab.y)
        a = np.interp(zg, tab.z, tab.a)
        b = np.interp(zg, tab.z, tab.b)
        z_top = an.level_z("T12", -0.2)
        z_s1 = an.level_z(an.sacral_top.name, 0.5)
        z_crest = z_s1 + float(rng.uniform(30, 55)) * s
        self.z_crest = z_crest
        self.p["iliac_crest_z_mm"] = round(z_crest, 2)
        # quadratus lumborum
        for side in (1.0, -1.0):
            sel = (zg < z_top + 10) & (zg > z_crest - 30)
            self.add(
                Sweep(
                    zg[sel],
                    xs[sel] + side * (a[sel] + 38 * s),
                    yb[sel] + b[sel] + 10 * s,
                    np.full(sel.sum(), 15 * s),
                    np.full(sel.sum(), 9 * s),
                    zlim=(z_crest - 25, z_top),
                ),
                [(0.0, "muscle")],
                coarse=True,
            )
        # psoas: grows from T12 to L5, then turns anterolaterally into the pelvis
        radius = 24 * s * float(rng.uniform(0.8, 1.15))
        grow = np.clip((z_top - zg) / max(z_top - an.level_z("L4"), 1.0), 0.0, 1.0) ** 0.7
        r = 2.0 + radius * grow
        below = np.clip(z_s1 - zg, 0.0, None)
        for side in (1.0, -1.0):
            self.add(
                Sweep(
                    zg,
                    xs + side * (a + 0.75 * r + 0.5 * below),
                    yb + 0.15 * b - 0.55 * below,
                    r,
                    0.9 * r,
                    zlim=(z_s1 - 110.0, z_top),
                ),
                [(0.0, "muscle")],
                soft=1.0,
                coarse=True,
            )
        # paraspinal muscles between the transverse processes and the skin
        front = np.interp(zg, tab.z, tab.post_y) - 16.0
        tip = np.interp(zg, tab.tip_z, tab.tip_y)
        fat_min = 6.0 * s
        back = np.minimum(tip + float(rng.uniform(4, 14)), self.y_table - fat_min)
        back = np.maximum(back, front + 20.0)
        sel = zg > an.level_z("S3")
        hw = float(rng.uniform(55, 72)) * s
        self.add(
            Sweep(
                zg[sel],
                xs[sel],
                (front[sel] + back[sel]) / 2,
                np.full(sel.sum(), hw),
                (back[sel] - front[sel]) / 2,
                p=2.6,
                zlim=(an.level_z("S3"), 1e4),
            ),
            [(-0.8, "ligament"), (0.0, "muscle")],
            coarse=True,
        )
        # gluteus maximus (lateral, below the crest)
        for side in (1.0, -1.0):
            sel = zg < z_crest
            ycen = self.y_table - 42 * s
            self.add(
                Sweep(
                    zg[sel],
                    xs[sel] + side * 85 * s,
                    np.full(sel.sum(), ycen),
                    np.full(sel.sum(), 62 * s),
                    np.full(sel.sum(), 40 * s),
                    p=2.2,
                    zlim=(-1e4, z_crest - 10),
                ),
                [(0.0, "muscle")],
                coarse=True,
            )

    def vessels(self) -> None:
        an, tab, zg, s, rng = self.an, self.tab, self.zg, self.s, self.rng
        xs = np.interp(zg, tab.z, tab.x)
        ya = np.interp(zg, tab.z, tab.y_ant)
        r_ao = float(rng.uniform(8.0, 11.0)) * s
        dx = float(rng.uniform(6, 16)) * s
        gap = float(rng.uniform(1.5, 6.0))
        sel = zg > an.z_bif - 5
        r = r_ao * np.where(zg[sel] > an.z_bif + 40, 1.0, 0.88)
        self.add(
            Sweep(zg[sel], xs[sel] + dx, ya[sel] - r - gap, r, r, zlim=(an.z_bif, 1e4)),
            [(0.0, "flow_void")],
            soft=1.0,
        )
        xb = float(np.interp(an.z_bif, tab.z, tab.x)) + dx
        yb = float(np.interp(an.z_bif, tab.z, tab.y_ant)) - 0.88 * r_ao - gap
        z_s2 = an.level_z("S2")
        for side in (1.0, -1.0):
            pts = np.array(
                [
                    [xb, yb, an.z_bif + 3],
                    [xb + side * 22 * s, yb - 4, an.z_bif - 35 * s],
                    [xb + side * 48 * s, float(np.interp(z_s2, tab.z, tab.y_ant)) - 20, z_s2],
                ]
            )
            self.add(Tube(pts, 5.5 * s), [(0.0, "flow_void")], soft=1.0)
        z_conf = an.z_bif - float(rng.uniform(8, 25))
        ivc = ("vein", "flow_void", (0.5, 1200.0, 90.0))[int(rng.integers(0, 3))]
        self.p["ivc_signal"] = ivc if isinstance(ivc, str) else "intermediate"
        sel = zg > z_conf - 5
        dxv = float(rng.uniform(16, 26)) * s
        self.add(
            Sweep(
                zg[sel],
                xs[sel] - dxv,
                ya[sel] - 10 * s,
                np.full(sel.sum(), 13 * s),
                np.full(sel.sum(), 8.5 * s),
                zlim=(z_conf, 1e4),
            ),
            [(0.0, ivc)],
            soft=1.0,
        )
        xc = float(np.interp(z_conf, tab.z, tab.x)) - dxv
        yc = float(np.interp(z_conf, tab.z, tab.y_ant)) - 10 * s
        for side in (1.0, -1.0):
            pts = np.array([[xc, yc, z_conf + 3], [xc + side * 40 * s, yc + 10, z_s2 - 5]])
            self.add(Tube(pts, 6.0 * s), [(0.0, ivc)], soft=1.0)

    # ---- canal --------------------------------------------------------------------------

    def canal(self) -> None:
        an, tab, rng = self.an, self.tab, self.rng
        cz, cx, cy = tab.canal_z, tab.canal_x, tab.canal_y
        cos = np.interp(cz, tab.z, tab.cos)
        cap, cw = tab.canal_ap / cos, tab.canal_w
        z_hiatus = an.level_z(an.sacrum[-1].name, 0.3)
        self.add(
            Sweep(cz, cx, cy, cw / 2 + 11.0, cap / 2, zlim=(z_hiatus + 20, 1e4)), [(0.0, "fat")]
        )
        self.add(Sweep(cz, cx, cy, cw / 2, cap / 2, p=2.4, zlim=(z_hiatus, 1e4)), [(0.0, "fat")])
        z_end = an.z_sac_end
        taper = np.clip((cz - z_end) / 25.0, 0.15, 1.0) ** 0.5
        lumbar = cz < an.level_z("T12")
        sx = cw * np.where(lumbar, 0.44, 0.42) * taper
        sy = cap * np.where(lumbar, 0.40, 0.42) * taper
        sac_y = cy - 0.08 * cap
        self.add(
            Sweep(cz, cx, sac_y, sx, sy, zlim=(z_end - 2.0, 1e4)), [(0.0, "ligament"), (0.7, "csf")]
        )
        zc = an.z_conus
        enl = 1.0 + 0.15 * np.exp(-(((cz - an.level_z("T11")) / 30.0) ** 2))
        tip = np.clip((cz - zc) / 22.0, 0.0, 1.0) ** 0.7
        rx, ry = 4.4 * enl * tip + 0.4, 3.5 * enl * tip + 0.4
        self.add(Sweep(cz, cx, sac_y + 0.12 * sy, rx, ry, zlim=(zc, 1e4)), [(0.0, "cord")])
        n_roots = int(rng.integers(5, 9))
        for k in range(n_roots):
            lat = (k / max(n_roots - 1, 1) - 0.5) * 1.1
            spread = np.clip((zc - cz) / 120.0, 0.0, 1.0)
            z_stop = an.level_z(an.sacrum[0].name, float(rng.uniform(-0.5, 0.5)))
            self.add(
                Sweep(
                    cz,
                    cx + lat * sx * (0.3 + 0.55 * spread),
                    sac_y + sy * (0.35 + 0.3 * (1 - abs(lat))),
                    np.full(cz.shape, 0.9),
                    np.full(cz.shape, 0.9),
                    zlim=(z_stop, zc + 2.0),
                ),
                [(0.0, "nerve")],
            )
        for v in an.mobile:
            if v.name in ("T8", "T9"):
                continue
            for side in (1.0, -1.0):
                fr = v.f.sub([side * (v.canal_w / 2 + 4.5), v.b + 3.5, -0.22 * v.height])
                self.add(Ellipsoid(fr, 2.8, 2.8, 3.6), [(0.0, "nerve")], soft=0.8)
        for d in an.discs:
            if d.kind == "fused":
                continue
            lo, up = d.lower, d.upper
            b = 0.5 * (lo.b + up.b)
            cap_d = 0.5 * (lo.canal_ap + up.canal_ap)
            thick = 1.4 + 0.5 * d.state["grade"]
            fr = d.frame.sub([0, b + cap_d - thick + 0.5, -1.0])
            hw = 0.5 * (lo.canal_w + up.canal_w) / 2 - 1.0
            self.add(
                Block(fr, hw, thick, d.height / 2 + 4.0, p=4.0, r=1.0),
                [(0.0, (0.5, 800.0, 30.0))],
                soft=0.8,
            )
        zs = self.zg[self.zg > an.level_z(an.sacral_top.name, 0.5)]
        front = np.interp(zs, tab.z, tab.post_y) + 2.0
        tipy = np.interp(zs, tab.tip_z, tab.tip_y) + 2.0
        back = np.maximum(tipy, front + 4.0)
        self.add(
            Sweep(
                zs,
                np.interp(zs, tab.z, tab.x),
                (front + back) / 2,
                np.full(zs.shape, 2.2),
                (back - front) / 2,
                zlim=(float(zs.min()), 1e4),
            ),
            [(0.0, "interspinous")],
        )

    # ---- discs ---------------------------------------------------------------------------

    def discs(self) -> None:
        an = self.an
        self.body_blocks(an)
        for d in an.discs:
            self._disc(d)

    def _disc(self, d: Disc) -> None:
        lo, up, st = d.lower, d.upper, d.state
        if d.kind == "fused":
            return
        a = 0.5 * (lo.a * (1 + 0.7 * abs(lo.taper)) + up.a) - 0.5
        b = 0.5 * (lo.b + up.b) - 0.5
        hh = d.height / 2
        bulge = st["bulge_mm"] if d.kind == "mobile" else 0.4
        annulus = "annulus" if d.kind == "mobile" else (0.6, 900.0, 35.0)
        self.add(DiscShape(d.frame, a, b, hh, bulge, lo.body, up.body), [(0.0, annulus)])
        conc = 0.5 * (lo.body.concave + up.body.concave)
        nuc_t2 = st["nucleus_t2_ms"]
        grade = st["grade"] if d.kind == "mobile" else 3
        soft_n = 1.2 + 0.8 * grade
        fr = d.frame.sub([0, 0.05 * b, 0])
        self.add(
            Ellipsoid(fr, 0.74 * a, 0.64 * b, max(hh + 0.8 * conc, 0.6)),
            [(0.0, (0.9, 1100.0, nuc_t2))],
            soft=soft_n,
        )
        if st["cleft"]:
            self.add(
                Ellipsoid(d.frame.sub([0, 0.05 * b, 0]), 0.5 * a, 0.42 * b, 0.6),
                [(0.0, "annulus")],
                soft=0.6,
            )
        if st["vacuum"]:
            self.add(
                Ellipsoid(d.frame.sub([0, -0.35 * b, 0]), 7.0, 4.0, min(1.3, hh)),
                [(0.0, "air")],
                soft=0.6,
            )
        hern = st["herniation"]
        if hern:
            ext = hern["extent_mm"]
            fr = d.frame.sub([hern["lateral_mm"], b + ext / 2 - 0.5, hern["migration_mm"]])
            self.add(
                Ellipsoid(fr, 7.0 * self.s, ext / 2 + 1.5, max(hh, 3.5) + 1.0),
                [(0.0, "annulus"), (1.3, (0.85, 1100.0, max(nuc_t2, 70.0)))],
                soft=0.8,
            )

    # ---- vertebrae ---------------------------------------------------------------------------

    def body_blocks(self, an: Anatomy) -> None:
        """Create (not paint) the body blocks; the discs need their endplate surfaces."""
        rng, s = self.rng, self.s
        for v in an.all_vertebrae():
            if v.kind == "coccygeal":
                v.body = Block(v.f, v.a, v.b, v.h, p=2.0, r=2.0 * s)
                continue
            sacral = v.kind == "sacral"
            # fused segments overlap their neighbours; the top endplate stays in place
            overlap = 0.8 if sacral and v is not an.sacral_top else 0.0
            v.body = Block(
                v.f,
                v.a,
                v.b,
                v.h + overlap,
                p=2.3,
                r=2.4 * s,
                taper=v.taper,
                wedge=v.wedge,
                waist=0.0 if sacral else 0.05,
                concave=0.0 if sacral else float(rng.uniform(0.8, 1.8)) * s,
            )

    def vertebrae(self) -> None:
        an, cort = self.an, self.p["cortex_mm"]
        for v in an.coccyx:
            v.marrow = self.marrow(0.05)
            self.add(Union([v.body]), [(0.0, "cortex"), (0.9, v.marrow)])
        fused_l5 = an.discs[0].kind == "fused"
        last = an.mobile[0]  # L5, or the lumbarised S1
        marrow = self.marrow(0.03)
        for v in an.sacrum:
            v.marrow = marrow
        last.marrow = marrow if fused_l5 else self.marrow()
        tps, joints, bridges = self.castellvi(last)
        sac_members = self.sacral_members()
        if fused_l5:
            sac_members += [last.body] + self.posterior_members(last) + tps
        self.add(Union(sac_members, k=2.5), [(0.0, "cortex"), (cort, marrow)])
        self.sacral_inserts(fused_l5)
        for sh, layers in joints:
            self.add(sh, layers, soft=0.8)
        for v in an.mobile:
            if v is last and fused_l5:
                continue
            if v.marrow is None:
                v.marrow = self.marrow()
            members = [v.body] + self.posterior_members(v) + self.osteophytes(v)
            if v is last:
                members += tps
                if an.bridge:
                    members.append(self.bridge_member(v))
            self.add(Union(members, k=2.0), [(0.0, "cortex"), (cort, v.marrow)])
        for sh, layers in bridges:
            self.add(sh, layers, soft=1.0)

    def posterior_members(self, v: Vertebra) -> list[Shape]:
        s, f = self.s, v.f
        b, h, cw, cap = v.b, v.h, v.canal_w, v.canal_ap
        thor = v.kind == "thoracic"
        pw = {"L4": 5.0, "L5": 6.5, "S1": 6.5}.get(v.name, 3.6 if thor else 4.3) * s
        ph = 0.27 * v.height
        plen = 0.7 * cap + 4.0
        out: list[Shape] = []
        for side in (1.0, -1.0):
            out.append(
                Block(
                    f.sub(
                        [side * (cw / 2 + pw), b + plen / 2 - 3.0, 0.12 * v.height], PRISM_ALONG_V
                    ),
                    pw,
                    ph,
                    plen / 2,
                    p=2.0,
                    r=0.6 * pw,
                )
            )
        out.append(
            Block(
                f.sub([0, b + cap + 3.0, -0.2 * v.height], rot_x(20.0)),
                cw / 2 + pw + 1.0,
                3.0 * s,
                0.3 * v.height,
                p=4.0,
                r=2.0,
            )
        )
        small = v.name in ("L5", "S1")
        tau = float(self.rng.uniform(40, 55)) if thor else float(self.rng.uniform(3, 15))
        sp_len = (34.0 if thor else (22.0 if small else 29.0)) * s
        sp_h = (9.0 if thor else (13.0 if small else 16.0)) * s
        if v.name == "S1":
            sp_len, sp_h = 16.0 * s, 11.0 * s
        start = np.array([0.0, b + cap + 3.0, -0.2 * v.height])
        direc = np.array([0.0, math.cos(math.radians(tau)), -math.sin(math.radians(tau))])
        out.append(
            Block(
                f.sub(start + direc * sp_len / 2, rot_x(-tau) @ PRISM_ALONG_V),
                3.5 * s,
                sp_h / 2,
                sp_len / 2,
                p=2.0,
                r=2.5 * s,
            )
        )
        tl = {
            "T8": 20.0,
            "T9": 20.0,
            "T10": 19.0,
            "T11": 16.0,
            "T12": 9.0,
            "L1": 16.0,
            "L2": 21.0,
            "L3": 27.0,
            "L4": 23.0,
            "L5": 20.0,
            "S1": 22.0,
        }[v.name] * s
        th = v.tp_height or (9.0 if thor else 10.0) * s
        for side in (1.0, -1.0):
            rot = (rot_z(side * 35.0) @ PRISM_ALONG_U) if thor else PRISM_ALONG_U
            c = [
                side * (cw / 2 + pw + tl / 2 - 3.0),
                b + 0.5 * cap + (8.0 if thor else 2.0),
                (0.2 if thor else 0.05) * v.height,
            ]
            out.append(Block(f.sub(c, rot), 4.0 * s, th / 2, tl / 2, p=2.0, r=2.0 * s))
            out.append(
                Ellipsoid(
                    f.sub([side * (cw / 2 + 5.5), b + 0.55 * cap, h + 3.0]),
                    5.0 * s,
                    6.0 * s,
                    9.0 * s,
                )
            )
            out.append(
                Ellipsoid(
                    f.sub([side * (cw / 2 + 7.5), b + 0.55 * cap + 8.0, -h - 3.0]),
                    5.0 * s,
                    6.0 * s,
                    9.0 * s,
                )
            )
        return out

    def osteophytes(self, v: Vertebra) -> list[Shape]:
        """Anterior marginal osteophytes: beaks from the endplate rim towards the disc."""
        out: list[Shape] = []
        for d in self.an.discs:
            size = d.state["osteophytes_mm"]
            if not size or d.kind != "mobile" or v not in (d.upper, d.lower):
                continue
            sign = -1.0 if v is d.upper else 1.0
            centre = [0.0, -v.b + 0.4 * size, sign * (v.h + 0.1 * size)]
            out.append(
                Ellipsoid(v.f.sub(centre, rot_x(sign * 25.0)), v.a * 0.55, 0.55 * size, 0.9 * size)
            )
        return out

    def bridge_member(self, l5: Vertebra) -> Shape:
        d = self.an.discs[0]
        fr = d.frame.sub([0, -d.lower.b * 0.92, 0])
        return Ellipsoid(fr, l5.a * 0.45, 3.0 * self.s, d.height / 2 + 5.0)

    def sacral_members(self) -> list[Shape]:
        an, s = self.an, self.s
        out: list[Shape] = []
        for k, v in enumerate(an.sacrum):
            f = v.f
            out.append(v.body)
            ext = SACRAL_EXT[k] * s
            half_ext = (ext - v.canal_w / 2 - 1.0) / 2
            v_lo, v_hi = -0.6 * v.b, v.b + v.canal_ap + 7.0
            for side in (1.0, -1.0):
                c = [
                    side * (v.canal_w / 2 + 1.0 + half_ext),
                    (v_lo + v_hi) / 2,
                    -1.5 if k == 0 else 0.0,
                ]
                hh = v.h + 0.8 - (1.5 if k == 0 else 0.0)
                hh += 0.5 * v_hi * abs(math.tan(math.radians(v.wedge)))
                if half_ext > 2.0:
                    out.append(
                        Block(
                            f.sub(c),
                            half_ext,
                            (v_hi - v_lo) / 2,
                            hh,
                            p=4.0,
                            r=3.5 * s,
                            taper=0.5 * v.taper,
                        )
                    )
            reach = v.b + v.canal_ap + 3.5
            grow = reach * abs(math.tan(math.radians(v.wedge))) + 1.5
            if k < len(an.sacrum) - 1:
                out.append(
                    Block(f.sub([0, reach, 0]), v.canal_w / 2 + 3.0, 3.5, v.h + grow, p=4.0, r=1.5)
                )
                out.append(Ellipsoid(f.sub([0, reach + 4.0, 0]), 3.0, 3.5, v.h + grow))
            if k == 0:
                for side in (1.0, -1.0):
                    out.append(
                        Ellipsoid(
                            f.sub(
                                [
                                    side * (v.canal_w / 2 + 3.0),
                                    v.b + 0.55 * v.canal_ap + 2.0,
                                    v.h + 4.0,
                                ]
                            ),
                            5.0 * s,
                            6.0 * s,
                            9.0 * s,
                        )
                    )
        return out

    def sacral_inserts(self, fused_l5: bool) -> None:
        """Remnant discs inside the fused sacrum and the sacral foramina."""
        an, s = self.an, self.s
        for k, (v, t) in enumerate(zip(an.sacrum[:-1], an.remnants, strict=False)):
            if t <= 0:
                continue
            fr = v.f.sub([0, 0.05 * v.b, -v.h])
            scale = 1.0 if k == 0 else 0.75
            self.add(
                Ellipsoid(fr, 0.6 * v.a * scale, 0.55 * v.b * scale, t / 2),
                [(0.0, (0.75, 1000.0, 75.0))],
                soft=0.8,
            )
        if fused_l5:
            d = an.discs[0]
            self.add(
                Ellipsoid(d.frame, 0.55 * d.lower.a, 0.5 * d.lower.b, d.height / 2),
                [(0.0, (0.75, 1000.0, 60.0))],
                soft=0.8,
            )
        for v in an.sacrum[:-1]:
            for side in (1.0, -1.0):
                fr = v.f.sub([side * (v.canal_w / 2 + 6.0 * s), 0.25 * v.b, -v.h])
                self.add(
                    Ellipsoid(fr, 4.2 * s, 0.95 * v.b + 0.3 * v.canal_ap, 4.0 * s),
                    [(0.0, "fat"), (2.2, "nerve")],
                    soft=0.8,
                )
        for k, v in enumerate(an.coccyx):
            above = an.sacrum[-1] if k == 0 else an.coccyx[k - 1]
            fr = Frame(0.5 * (above.f.point([0, 0, -above.h]) + v.f.point([0, 0, v.h])), v.f.rot)
            self.add(
                Ellipsoid(fr, 0.6 * v.a, 0.6 * v.b, an.cocc_gaps[k] / 2 + 0.2),
                [(0.0, "cartilage")],
                soft=0.6,
            )

    def castellvi(self, v: Vertebra) -> tuple[list[Shape], list, list]:
        """Enlarged transverse processes of v reaching the sacral ala (Castellvi-like).

        Returns the process solids (members of v), joint cartilage and bony bridges.
        """
        an, s, rng = self.an, self.s, self.rng
        cv = an.castellvi
        tps: list[Shape] = []
        joints: list = []
        bridges: list = []
        if not cv:
            return tps, joints, bridges
        top = an.sacral_top
        sides = {"left": [1.0], "right": [-1.0], "both": [1.0, -1.0]}[cv["sides"]]
        ext = SACRAL_EXT[0] * s
        cv["tp_height_mm"] = []
        for i, side in enumerate(sides):
            ctype = cv["type"]
            if ctype == "IV":
                ctype = "II" if i == 0 else "III"
            r = float(rng.uniform(9.7, 13.0))  # process height >= 19 mm
            cv["tp_height_mm"].append(round(2 * r, 1))
            a = v.f.point([side * (v.canal_w / 2 + 8.0 * s), v.b + 5.0, -0.1 * v.height])
            gap = {"I": float(rng.uniform(6, 14)), "II": 1.8, "III": -3.0}[ctype]
            contact = top.f.point([side * 0.72 * ext, 0.35 * top.b, top.h])
            b = contact + top.f.w * (gap + r)
            mid = 0.5 * (a + b) + np.array([side * 4.0, 0.0, 2.0])
            tps.append(Tube(np.array([a, mid, b]), [0.7 * r, 0.95 * r, r]))
            if ctype == "II":
                joints.append(
                    (
                        Ellipsoid(Frame(contact + top.f.w * 0.9, top.f.rot), 0.9 * r, 0.9 * r, 1.6),
                        [(0.0, "cartilage")],
                    )
                )
            if ctype == "III":
                bridges.append(
                    (
                        Ellipsoid(Frame(contact + top.f.w * 1.0, top.f.rot), 0.8 * r, 0.8 * r, 3.5),
                        [(0.0, v.marrow)],
                    )
                )
        return tps, joints, bridges

    def body_features(self) -> None:
        an, s, rng = self.an, self.s, self.rng
        for v in an.mobile + an.sacrum[:1]:
            if v.kind != "sacral":
                self.add(
                    Ellipsoid(v.f.sub([0, v.b - 2.5, 0]), 2.6, 3.5, 1.8), [(0.0, "vein")], soft=0.8
                )
            if rng.random() < 0.04:
                c = [
                    float(rng.uniform(-0.4, 0.4)) * v.a,
                    float(rng.uniform(-0.4, 0.3)) * v.b,
                    float(rng.uniform(-0.3, 0.3)) * v.h,
                ]
                r = float(rng.uniform(4, 9)) * s
                self.p.setdefault("hemangiomas", []).append(v.name)
                self.add(
                    Clipped(Ellipsoid(v.f.sub(c), r, r, r * 0.9), v.body, 1.0),
                    [(0.0, (0.92, 380.0, 160.0))],
                    soft=1.5,
                )
        for d in an.discs:
            st = d.state
            if d.kind != "mobile":
                continue
            m = st["modic"]
            if m:
                tissue = {1: "edema", 2: "fat_marrow", 3: "sclerosis"}[m["type"]]
                ends = {"upper": [d.upper], "lower": [d.lower], "both": [d.upper, d.lower]}
                for v in ends[m["endplates"]]:
                    sign = -1.0 if v is d.upper else 1.0
                    dep = m["depth_mm"]
                    vc, bb = (-0.45 * v.b, 0.55 * v.b) if m["anterior_only"] else (0.0, v.b)
                    band = Block(
                        v.f.sub([0, vc, sign * (v.h - dep / 2)]), v.a, bb, dep / 2, p=2.3, r=1.0
                    )
                    self.add(Clipped(band, v.body, self.p["cortex_mm"]), [(0.0, tissue)], soft=2.0)
            for end in st["schmorl"]:
                v = d.upper if end == "upper" else d.lower
                sign = -1.0 if v is d.upper else 1.0
                dep = float(rng.uniform(3, 7)) * s
                c = [
                    float(rng.uniform(-0.3, 0.3)) * v.a,
                    float(rng.uniform(-0.3, 0.3)) * v.b,
                    sign * (v.h - v.body.concave),
                ]
                self.add(
                    Clipped(Ellipsoid(v.f.sub(c), 4.0 * s, 4.0 * s, dep), v.body),
                    [(0.0, "sclerosis"), (1.2, (0.85, 1100.0, 95.0))],
                    soft=0.8,
                )

    def ribs(self) -> None:
        an, s, rng = self.an, self.s, self.rng
        lengths = {}
        for v in an.mobile:
            if v.kind != "thoracic":
                continue
            length = {"T12": float(rng.uniform(45, 130)), "T11": float(rng.uniform(150, 220))}.get(
                v.name, 300.0
            ) * s
            lengths[v.name] = round(length, 1)
            for side in (1.0, -1.0):
                w0 = v.a
                loc = np.array(
                    [
                        [w0 - 2, v.b - 5, 0.35 * v.height],
                        [w0 + 14 * s, v.b + 13 * s, 0.3 * v.height],
                        [w0 + 38 * s, v.b + 27 * s, 0.1 * v.height - 8 * s],
                        [w0 + 62 * s, v.b + 25 * s, -0.2 * v.height - 20 * s],
                        [w0 + 86 * s, v.b + 8 * s, -40 * s],
                        [w0 + 102 * s, v.b - 20 * s, -60 * s],
                        [w0 + 112 * s, v.b - 55 * s, -80 * s],
                    ]
                )
                loc[:, 0] *= side
                pts = _truncate_polyline(np.array([v.f.point(p) for p in loc]), length)
                self.add(Tube(pts, 4.2 * s), [(0.0, "cortex"), (1.1, self.marrow(0.05))])
        self.p["rib_lengths_mm"] = lengths

    def pelvis(self) -> None:
        an, s = self.an, self.s
        top = an.sacral_top
        second = an.sacrum[1]
        ext = SACRAL_EXT[0] * s
        z_prom = float(top.f.point([0, 0, top.h])[2])
        marrow = self.marrow(0.08)
        for side in (1.0, -1.0):
            post = Block(
                second.f.sub(
                    [side * (ext + 2.0 + 11.0 * s), 0.3 * second.b + 8.0, 0.6 * second.height],
                    rot_x(-10.0),
                ),
                11.0 * s,
                28.0 * s,
                34.0 * s,
                p=2.5,
                r=5.0,
            )
            c = top.f.point([side * (ext + 25.0 * s), 0.0, 0.0])
            c[2] = 0.5 * (z_prom - 30 * s + self.z_crest)
            half_h = 0.5 * (self.z_crest - z_prom + 30 * s)
            wing = Block(
                Frame(c, rot_z(-side * 25.0) @ rot_y(side * 12.0)),
                7.5 * s,
                42.0 * s,
                half_h,
                p=2.0,
                r=6.0 * s,
            )
            self.add(
                Union([post, wing], k=6.0), [(-1.6, "cartilage"), (0.0, "cortex"), (1.3, marrow)]
            )


def _truncate_polyline(pts: Array, length: float) -> Array:
    out = [pts[0]]
    left = length
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        seg = float(np.linalg.norm(b - a))
        if seg >= left:
            out.append(a + (b - a) * (left / seg))
            break
        out.append(b)
        left -= seg
    return np.array(out)


# --------------------------------------------------------------------------------------
# Site, protocol and slice geometry
# --------------------------------------------------------------------------------------

VENDORS: dict[str, dict[str, Any]] = {
    "SIEMENS": {
        "manufacturer": "SIEMENS",
        "models": [
            ("Avanto", 1.5),
            ("Aera", 1.5),
            ("Skyra", 3.0),
            ("Prisma", 3.0),
            ("MAGNETOM Vida", 3.0),
        ],
        "t2": ["t2_tse_sag_{m}", "t2_tse_sag"],
        "t1": ["t1_tse_sag", "t1_tse_sag_{m}"],
        "ax": ["t2_tse_tra", "t2_tse_tra_{m}"],
        "bits": (12, 12, 16),
        "image_type": ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
    },
    "GE": {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "models": [
            ("SIGNA Explorer", 1.5),
            ("Optima MR450w", 1.5),
            ("DISCOVERY MR750", 3.0),
            ("SIGNA Premier", 3.0),
        ],
        "t2": ["Sag T2 FRFSE", "SAG T2 FSE"],
        "t1": ["SAG T1 FSE", "Sag T1 FSE"],
        "ax": ["AX T2 FSE", "Ax T2 FRFSE"],
        "bits": (16, 16, 12),
        "image_type": ["ORIGINAL", "PRIMARY", "OTHER"],
    },
    "PHILIPS": {
        "manufacturer": "Philips Medical Systems",
        "models": [("Ingenia", 1.5), ("Achieva", 1.5), ("Ingenia Elition X", 3.0)],
        "t2": ["T2W_TSE_SAG", "sT2W_TSE"],
        "t1": ["T1W_TSE_SAG", "sT1W_TSE"],
        "ax": ["T2W_TSE_TRA", "aT2W_TSE"],
        "bits": (12, 12, 16),
        "image_type": ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
    },
    "CANON": {
        "manufacturer": "CANON_MEC",
        "models": [("Vantage Orian", 1.5), ("Vantage Elan", 1.5), ("Vantage Galan 3T", 3.0)],
        "t2": ["T2WI_SAG_FSE", "Sag T2 FSE"],
        "t1": ["T1WI_SAG_FSE", "Sag T1 FSE"],
        "ax": ["T2WI_AX_FSE", "AX T2 FSE"],
        "bits": (16, 12, 16),
        "image_type": ["ORIGINAL", "PRIMARY", "OTHER"],
    },
}


@dataclass
class Site:
    vendor: str
    manufacturer: str
    model: str
    field_t: float
    bits: int
    image_type: list[str]
    names: dict[str, list[str]]


def draw_site(rng: np.random.Generator) -> Site:
    vendor = str(rng.choice(list(VENDORS)))
    spec = VENDORS[vendor]
    model, field_t = spec["models"][int(rng.integers(0, len(spec["models"])))]
    bits = int(spec["bits"][int(rng.integers(0, 3))])
    names = {k: spec[k] for k in ("t2", "t1", "ax")}
    return Site(
        vendor, spec["manufacturer"], model, float(field_t), bits, list(spec["image_type"]), names
    )


@dataclass
class SeriesPlan:
    """Everything needed to acquire and store one series."""

    key: str  # t2_sag | t1_sag | t2_ax
    description: str
    tr: float
    te: float
    etl: int
    rows: int
    cols: int
    pixel: float
    acq_rows: int
    acq_cols: int
    thickness: float
    spacing: float
    center: Array
    row: Array
    col: Array
    normal: Array
    offsets: list[float]  # slice centres along the normal, in instance order
    subsamples: int
    phase_dir: str  # ROW | COL
    snr: float
    filter_alpha: float
    ghost: float
    sat_band: bool
    series_number: int = 0
    info: dict = field(default_factory=dict)

    @property
    def fov(self) -> tuple[float, float]:
        """(extent along the column direction, extent along the row direction) in mm."""
        return self.rows * self.pixel, self.cols * self.pixel

    def slice_center(self, offset: float) -> Array:
        return self.center + offset * self.normal

    def image_position(self, offset: float) -> Array:
        return (
            self.slice_center(offset)
            - (self.cols / 2) * self.pixel * self.row
            - (self.rows / 2) * self.pixel * self.col
        )


def _even(n: float) -> int:
    return max(2, int(round(n / 2.0)) * 2)


def sagittal_axes(s_ap: float, psi: float, yaw: float, roll: float) -> tuple[Array, ...]:
    """Row/column/normal cosines of a sagittal plane: head up, anterior left (s_ap=+1)."""
    row0, col0 = np.array([0.0, s_ap, 0.0]), np.array([0.0, 0.0, -1.0])
    c, s = math.cos(math.radians(psi)), math.sin(math.radians(psi))
    row, col = c * row0 + s * col0, -s * row0 + c * col0
    rot = rot_z(yaw) @ rot_y(roll)
    row, col = rot @ row, rot @ col
    return row, col, np.cross(row, col)


def _pick_matrix(rng: np.random.Generator, fov: float, lo: int = 256, hi: int = 640) -> int:
    ok = [m for m in MATRICES if lo <= m <= hi and 0.4 <= fov / m <= 1.2]
    return int(rng.choice(ok))


def _acq_size(
    rng: np.random.Generator,
    fov_r: float,
    fov_c: float,
    rows: int,
    cols: int,
    res: float,
    phase_dir: str,
    cap: int,
) -> tuple[int, int]:
    phase = float(rng.uniform(0.72, 1.0))
    res_r = res / (phase if phase_dir == "COL" else 1.0)
    res_c = res / (phase if phase_dir == "ROW" else 1.0)
    ar, ac = min(rows, _even(fov_r / res_r)), min(cols, _even(fov_c / res_c))
    while ar * ac > cap:
        ar, ac = _even(ar * 0.95), _even(ac * 0.95)
    return ar, ac


def _stack_fits(discs: Array, normal: Array, s_c: float, n: int, spacing: float) -> bool:
    return bool(np.all(np.abs(discs @ normal - s_c) <= (n - 1) / 2 * spacing - 1.0))


def _coverage_window(an: Anatomy, mid: Array, col: Array, fov_r: float) -> tuple[float, float]:
    """Field-centre range (along the column direction) for a field that starts no higher
    than about T10 and no lower than T12, and ends between S2 and the coccyx tip."""
    t10 = an.vertebra("T10")
    tip = an.coccyx[-1]
    a_t10 = float((t10.f.point([0, 0, t10.h]) - mid) @ col)
    a_t12 = float((an.vertebra("T12").f.origin - mid) @ col)
    a_s2 = float((an.vertebra("S2").f.origin - mid) @ col)
    a_tip = float((tip.f.point([0, 0, -tip.h]) - mid) @ col)
    lo = max(a_t10 - 10.0 + fov_r / 2, a_s2 - fov_r / 2)
    hi = min(a_t12 + fov_r / 2, a_tip + 15.0 - fov_r / 2)
    return lo, hi


def plan_t2_sagittal(rng: np.random.Generator, an: Anatomy, site: Site) -> SeriesPlan:
    discs = np.array([c for _, c in an.truth_discs()])
    mid = discs.mean(axis=0)
    n = int(rng.integers(9, 26))
    thickness = float(rng.choice([3.0, 3.0, 3.5, 4.0, 4.0, 4.5, 5.0]))
    gap = 0.0 if rng.random() < 0.25 else round(float(rng.uniform(0.2, 1.0)), 1)
    spacing = thickness + gap
    s_ap = float(rng.choice([-1.0, 1.0]))
    scale = 1.0
    for attempt in range(40):
        psi, yaw, roll = (float(rng.uniform(-10, 10)) * scale for _ in range(3))
        lat = float(rng.uniform(-8, 8)) * scale
        row, col, normal = sagittal_axes(s_ap, psi, yaw, roll)
        s_c = float(mid @ normal) + lat * float(np.sign(normal[0]) or 1.0)
        if _stack_fits(discs, normal, s_c, n, spacing):
            break
        scale *= 0.8
        if attempt > 20 and n < 25:
            n += 1
    else:
        psi = yaw = roll = lat = 0.0
        row, col, normal = sagittal_axes(s_ap, 0.0, 0.0, 0.0)
        s_c = float(0.5 * ((discs @ normal).max() + (discs @ normal).min()))
        while not _stack_fits(discs, normal, s_c, n, spacing) and n < 25:
            n += 1
    fov_si = float(rng.uniform(240, 340))
    rows = _pick_matrix(rng, fov_si)
    pixel = fov_si / rows
    cols = int(np.clip(_even(fov_si * rng.uniform(0.72, 1.0) / pixel), 256, 640))
    fov_r, fov_c = rows * pixel, cols * pixel
    rel = discs - mid
    a_c, a_r = rel @ col, rel @ row
    m_si, m_ap = 25.0, 35.0
    lo_c, hi_c = a_c.max() - fov_r / 2 + m_si, a_c.min() + fov_r / 2 - m_si
    lo_r, hi_r = a_r.max() - fov_c / 2 + m_ap, a_r.min() + fov_c / 2 - m_ap
    cov_lo, cov_hi = _coverage_window(an, mid, col, fov_r)
    if max(lo_c, cov_lo) < min(hi_c, cov_hi):
        lo_c, hi_c = max(lo_c, cov_lo), min(hi_c, cov_hi)
    t_c = float(rng.uniform(lo_c, hi_c)) if hi_c > lo_c else 0.5 * (lo_c + hi_c)
    post = float(np.sign(row[1]) or 1.0)  # +row points posterior when row[1] > 0
    want = float(a_r.mean()) - post * float(rng.uniform(0.0, 0.22)) * fov_c
    t_r = float(np.clip(want, lo_r, hi_r)) if hi_r > lo_r else 0.5 * (lo_r + hi_r)
    f = mid + t_c * col + t_r * row
    center = f + (s_c - float(f @ normal)) * normal
    ascending = bool(rng.random() < 0.5)
    order = range(n) if ascending else range(n - 1, -1, -1)
    offsets = [(k - (n - 1) / 2) * spacing for k in order]
    phase_dir = str(rng.choice(["ROW", "COL"]))
    acq_r, acq_c = _acq_size(
        rng, fov_r, fov_c, rows, cols, float(rng.uniform(0.85, 1.15)), phase_dir, 100_000
    )
    m = rows if rng.random() < 0.6 else int(rng.choice([320, 384, 448]))
    desc = str(rng.choice(site.names["t2"])).format(m=m)
    info = {
        "in_plane_rotation_deg": round(psi, 2),
        "yaw_deg": round(yaw, 2),
        "roll_deg": round(roll, 2),
        "stack_offset_mm": round(lat, 2),
        "anterior_on": "left" if s_ap > 0 else "right",
        "slice_order": "ascending" if ascending else "descending",
    }
    return SeriesPlan(
        "t2_sag",
        desc,
        round(float(rng.uniform(2500, 5000)), 1),
        round(float(rng.uniform(80, 120)), 1),
        int(rng.integers(12, 33)),
        rows,
        cols,
        pixel,
        acq_r,
        acq_c,
        thickness,
        spacing,
        center,
        row,
        col,
        normal,
        offsets,
        3,
        phase_dir,
        float(rng.uniform(18, 45)) * site.field_t**0.5,
        float(rng.uniform(0.1, 0.35)),
        float(rng.uniform(0.08, 0.35)) if rng.random() < 0.35 else 0.0,
        bool(rng.random() < 0.35),
        info=info,
    )


def plan_t1_sagittal(rng: np.random.Generator, t2: SeriesPlan, site: Site) -> SeriesPlan:
    fov_r, fov_c = t2.fov
    ok = [m for m in MATRICES if 0.4 <= fov_r / m <= 1.2 and 256 <= _even(fov_c * m / fov_r) <= 640]
    rows = int(rng.choice(ok)) if ok else t2.rows
    pixel = fov_r / rows
    cols = _even(fov_c / pixel)
    phase_dir = t2.phase_dir
    acq_r, acq_c = _acq_size(
        rng, fov_r, cols * pixel, rows, cols, float(rng.uniform(1.05, 1.35)), phase_dir, 60_000
    )
    desc = str(rng.choice(site.names["t1"])).format(m=rows)
    return SeriesPlan(
        "t1_sag",
        desc,
        round(float(rng.uniform(400, 800)), 1),
        round(float(rng.uniform(8, 20)), 1),
        int(rng.integers(2, 6)),
        rows,
        cols,
        pixel,
        acq_r,
        acq_c,
        t2.thickness,
        t2.spacing,
        t2.center.copy(),
        t2.row.copy(),
        t2.col.copy(),
        t2.normal.copy(),
        list(t2.offsets),
        1,
        phase_dir,
        float(rng.uniform(15, 35)) * site.field_t**0.5,
        float(rng.uniform(0.1, 0.35)),
        0.0,
        t2.sat_band,
        info=dict(t2.info),
    )


def plan_t2_axial(rng: np.random.Generator, an: Anatomy, site: Site) -> SeriesPlan:
    d45 = next(d for d in an.discs if d.name == "L4-L5")
    theta = math.degrees(math.atan2(-d45.frame.w[1], d45.frame.w[2]))
    theta += float(rng.uniform(-6, 6))
    yaw = float(rng.uniform(-6, 6))
    rot = rot_z(yaw) @ rot_x(theta)
    row, col = rot @ np.array([1.0, 0.0, 0.0]), rot @ np.array([0.0, 1.0, 0.0])
    normal = np.cross(row, col)
    thickness = float(rng.choice([3.5, 4.0, 4.0, 5.0]))
    spacing = thickness + round(float(rng.uniform(0.0, 1.0)), 1)
    levels = [d.center for d in an.discs if d.name in ("L3-L4", "L4-L5", "L5-S1")]
    proj = np.array([c @ normal for c in levels])
    lo, hi = proj.min() - 12.0, proj.max() + 12.0
    n = int(np.clip(math.ceil((hi - lo) / spacing) + 1, 12, 30))
    canal = d45.frame.point([0, d45.lower.b, 0])
    fov = float(rng.uniform(180, 240))
    rows = _pick_matrix(rng, fov, 256, 512)
    pixel = fov / rows
    center = canal + float(rng.uniform(-20, 0)) * col + float(rng.uniform(-10, 10)) * row
    center = center + (0.5 * (lo + hi) - float(center @ normal)) * normal
    ascending = bool(rng.random() < 0.5)
    order = range(n) if ascending else range(n - 1, -1, -1)
    offsets = [(k - (n - 1) / 2) * spacing for k in order]
    phase_dir = str(rng.choice(["ROW", "COL"]))
    acq_r, acq_c = _acq_size(
        rng, fov, fov, rows, rows, float(rng.uniform(0.95, 1.3)), phase_dir, 40_000
    )
    desc = str(rng.choice(site.names["ax"])).format(m=rows)
    info = {
        "tilt_deg": round(theta, 2),
        "yaw_deg": round(yaw, 2),
        "slice_order": "ascending" if ascending else "descending",
    }
    return SeriesPlan(
        "t2_ax",
        desc,
        round(float(rng.uniform(3000, 6000)), 1),
        round(float(rng.uniform(80, 115)), 1),
        int(rng.integers(12, 25)),
        rows,
        rows,
        pixel,
        acq_r,
        acq_c,
        thickness,
        spacing,
        center,
        row,
        col,
        normal,
        offsets,
        1,
        phase_dir,
        float(rng.uniform(15, 35)) * site.field_t**0.5,
        float(rng.uniform(0.1, 0.35)),
        0.0,
        False,
        info=info,
    )


# --------------------------------------------------------------------------------------
# Acquisition: rendering, receive chain, reconstruction
# --------------------------------------------------------------------------------------


@dataclass
class ReceiveChain:
    """Posterior coil falloff, smooth bias and the optional anterior saturation band."""

    y_table: float
    depth_mm: float
    gamma: float
    ripple: float
    ripple_lam: float
    ripple_phase: float
    bias: Noise3D
    band_point: Array
    band_dir: Array
    band_depth: float

    def gain(self, pts: Points, sat_band: bool) -> Array:
        x, y, z = pts.xyz
        depth = np.clip(self.y_table - y, 0.0, None)
        g = np.exp(-depth / self.depth_mm) ** self.gamma
        g = g * (1.0 + self.ripple * np.sin(2 * math.pi * z / self.ripple_lam + self.ripple_phase))
        g = g * (1.0 + 0.12 * self.bias(pts))
        if sat_band:
            s = (
                (x - self.band_point[0]) * self.band_dir[0]
                + (y - self.band_point[1]) * self.band_dir[1]
                + (z - self.band_point[2]) * self.band_dir[2]
            )
            g = g * (
                1.0
                - self.band_depth
                * np.clip(s / 4.0 + 0.5, 0.0, 1.0)
                * np.clip((70.0 - s) / 4.0 + 0.5, 0.0, 1.0)
            )
        return g


def make_receive_chain(rng: np.random.Generator, an: Anatomy, y_table: float) -> ReceiveChain:
    l3 = an.vertebra("L3")
    gap = float(rng.uniform(8, 25))
    return ReceiveChain(
        y_table + float(rng.uniform(5, 15)),
        float(rng.uniform(90, 180)),
        float(rng.uniform(0.35, 0.9)),
        float(rng.uniform(0.0, 0.1)),
        float(rng.uniform(120, 250)),
        float(rng.uniform(0, 2 * math.pi)),
        Noise3D(rng, 4, 250.0, 600.0),
        l3.f.point([0, -l3.b - gap, 0]),
        -l3.f.v,
        float(rng.uniform(0.7, 0.92)),
    )


def _kspace_window(n: int, alpha: float, floor: float) -> Array:
    k = np.abs((np.arange(n) - n / 2) / (n / 2))
    edge = 1.0 - alpha
    w = np.where(k < edge, 1.0, 0.5 * (1.0 + np.cos(math.pi * np.clip((k - edge) / alpha, 0, 1))))
    return floor + (1.0 - floor) * w


def reconstruct(
    sig: Array, plan: SeriesPlan, rng: np.random.Generator, sigma: float, ghost_mask: Array | None
) -> Array:
    """Noise, k-space apodisation, motion ghosts and zero-filled reconstruction."""
    ar, ac = sig.shape
    noisy = sig + sigma * (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape))
    k = np.fft.fftshift(np.fft.fft2(noisy))
    if plan.ghost > 0 and ghost_mask is not None:
        g = np.fft.fftshift(np.fft.fft2(sig * ghost_mask))
        axis = 1 if plan.phase_dir == "ROW" else 0
        n = g.shape[axis]
        line = np.arange(n) - n / 2
        period = float(rng.uniform(3.0, 7.0))
        phi = plan.ghost * np.sin(2 * math.pi * line / period + float(rng.uniform(0, 6.3)))
        mod = np.exp(1j * phi) - 1.0
        k += g * (mod[None, :] if axis == 1 else mod[:, None])
    floor = 0.3
    k *= _kspace_window(ar, plan.filter_alpha, floor)[:, None]
    k *= _kspace_window(ac, plan.filter_alpha, floor)[None, :]
    pad = np.zeros((plan.rows, plan.cols), dtype=complex)
    r0, c0 = (plan.rows - ar) // 2, (plan.cols - ac) // 2
    pad[r0 : r0 + ar, c0 : c0 + ac] = k
    img = np.fft.ifft2(np.fft.ifftshift(pad)) * (plan.rows * plan.cols / (ar * ac))
    return np.abs(img).astype(np.float32)


def acquire_series(
    plan: SeriesPlan,
    scene: Scene,
    chain: ReceiveChain,
    an: Anatomy,
    field_t: float,
    rng: np.random.Generator,
) -> list[Array]:
    """Render, weight, add noise and reconstruct every slice of a series (float images)."""
    book = SignalBook(plan.tr, plan.te, field_t)
    fov_r, fov_c = plan.fov
    dr, dc = fov_r / plan.acq_rows, fov_c / plan.acq_cols
    l3 = an.vertebra("L3")
    canal = l3.f.point([0, l3.b + l3.canal_ap / 2, 0])
    ref_gain = math.exp(-(chain.y_table - canal[1]) / chain.depth_mm) ** chain.gamma
    ref = book.scalar("csf" if plan.te > 50 else "fat") * ref_gain
    sigma = ref / plan.snr
    y_ghost = float(l3.f.point([0, -l3.b, 0])[1]) - 25.0
    out = []
    for off in plan.offsets:
        c = plan.slice_center(off)
        origin = c - (plan.acq_cols / 2) * dc * plan.row - (plan.acq_rows / 2) * dr * plan.col
        plane = Plane(
            origin, dc * plan.row, dr * plan.col, plan.normal, plan.acq_rows, plan.acq_cols
        )
        img = render_plane(scene, book, plane, plan.thickness, plan.subsamples)
        pts = plane.points(0, plan.acq_rows, 0, plan.acq_cols)
        sig = img * chain.gain(pts, plan.sat_band)
        mask = np.clip((y_ghost - pts.y) / 20.0, 0.0, 1.0) if plan.ghost > 0 else None
        out.append(reconstruct(sig, plan, rng, sigma, mask))
    return out


def to_uint16(images: list[Array], bits: int, rng: np.random.Generator) -> list[Array]:
    """Scale a series with one vendor-like gain into unsigned integers of `bits` bits."""
    top = float(np.percentile(np.stack(images[:: max(1, len(images) // 6)]), 99.7))
    target = float(rng.uniform(800, 3800)) if bits == 12 else float(rng.uniform(1500, 30000))
    scale = target / max(top, 1e-9)
    vmax = 2**bits - 1
    return [np.clip(np.rint(im * scale), 0, vmax).astype(np.uint16) for im in images]


# --------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------


def make_uid(*parts: object) -> str:
    """Deterministic UID from its parts (joined with a separator so parts cannot merge)."""
    return str(generate_uid(entropy_srcs=["|".join(["ninth-phantom", *map(str, parts)])]))


def _ds(v: float) -> str:
    """Decimal String of at most 16 characters."""
    for digits in range(10, 2, -1):
        s = f"{v:.{digits}g}"
        if len(s) <= 16:
            return "0" if s in ("-0", "0") else s
    return f"{v:.3g}"


@dataclass
class StudyInfo:
    seed: int
    index: int
    study_uid: str
    frame_uid: str
    date: str
    time: str
    age: int
    sex: str
    site: Site


def write_series(
    folder: pathlib.Path, plan: SeriesPlan, pixels: list[Array], study: StudyInfo, series_uid: str
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    site = study.site
    for k, (off, arr) in enumerate(zip(plan.offsets, pixels, strict=True)):
        sop_uid = make_uid("instance", study.seed, study.index, plan.key, k + 1)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = site.image_type
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.date
        ds.StudyTime = study.time
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = _series_time(
            study.time, plan.series_number
        )
        ds.AccessionNumber = f"N{study.seed % 100000:05d}{study.index:05d}"
        ds.Modality = "MR"
        ds.Manufacturer = site.manufacturer
        ds.InstitutionName = "NINTH PHANTOM SITE"
        ds.ReferringPhysicianName = ""
        ds.StationName = f"NINTH{study.index % 7:02d}"
        ds.StudyDescription = "MR LUMBAR SPINE"
        ds.SeriesDescription = plan.description
        ds.ManufacturerModelName = site.model
        ds.PatientName = f"NINTH^{study.index}"
        ds.PatientID = f"NINTH{study.seed}-{study.index}"
        ds.PatientBirthDate = ""
        ds.PatientSex = study.sex
        ds.PatientAge = f"{study.age:03d}Y"
        ds.BodyPartExamined = "LSPINE"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = ["SK", "SP"]
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = _ds(plan.thickness)
        ds.RepetitionTime = _ds(plan.tr)
        ds.EchoTime = _ds(plan.te)
        ds.NumberOfAverages = "1"
        ds.ImagingFrequency = _ds(42.577478 * site.field_t)
        ds.ImagedNucleus = "1H"
        ds.MagneticFieldStrength = _ds(site.field_t)
        ds.SpacingBetweenSlices = _ds(plan.spacing)
        ds.EchoTrainLength = str(plan.etl)
        ds.ProtocolName = plan.description
        ds.AcquisitionMatrix = (
            [0, plan.acq_cols, plan.acq_rows, 0]
            if plan.phase_dir == "COL"
            else [plan.acq_rows, 0, 0, plan.acq_cols]
        )
        ds.InPlanePhaseEncodingDirection = plan.phase_dir
        ds.FlipAngle = "90"
        ds.SequenceName = _sequence_name(site.vendor, plan.etl)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = f"{study.index + 1}"
        ds.SeriesNumber = str(plan.series_number)
        ds.AcquisitionNumber = "1"
        ds.InstanceNumber = str(k + 1)
        pos = plan.image_position(off)
        ds.ImagePositionPatient = [_ds(float(v)) for v in pos]
        ds.ImageOrientationPatient = [_ds(float(v)) for v in (*plan.row, *plan.col)]
        ds.FrameOfReferenceUID = study.frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(plan.slice_center(off) @ plan.normal))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
        ds.PixelSpacing = [_ds(plan.pixel), _ds(plan.pixel)]
        ds.BitsAllocated = 16
        ds.BitsStored = site.bits
        ds.HighBit = site.bits - 1
        ds.PixelRepresentation = 0
        hi = float(np.percentile(arr, 99.5))
        ds.WindowCenter = _ds(round(hi * 0.5, 1))
        ds.WindowWidth = _ds(round(max(hi, 1.0), 1))
        ds.PixelData = np.ascontiguousarray(arr, dtype="<u2").tobytes()
        ds.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)


def _sequence_name(vendor: str, etl: int) -> str:
    return {"SIEMENS": f"*tse2d1_{etl}", "GE": "fse-xl", "PHILIPS": "TSE", "CANON": "FSE"}[vendor]


def _series_time(study_time: str, series_number: int) -> str:
    h, m = int(study_time[:2]), int(study_time[2:4]) + 3 * series_number
    return f"{(h + m // 60) % 24:02d}{m % 60:02d}00"


# --------------------------------------------------------------------------------------
# Study
# --------------------------------------------------------------------------------------


def coverage(plan: SeriesPlan, an: Anatomy) -> dict[str, Any]:
    """Vertebral bodies whose centres project inside the sagittal T2 field."""
    names = []
    fov_r, fov_c = plan.fov
    for v in an.all_vertebrae():
        rel = v.f.origin - plan.center
        if abs(rel @ plan.col) <= fov_r / 2 and abs(rel @ plan.row) <= fov_c / 2:
            names.append(v.name)
    return {
        "bodies_in_field": names,
        "top": names[-1] if names else None,
        "bottom": names[0] if names else None,
    }


def truth_check(plan: SeriesPlan, discs: list[tuple[str, Array]]) -> None:
    """Every truth disc centre must lie inside the stack and inside its nearest slice."""
    pos = np.array([plan.slice_center(o) @ plan.normal for o in plan.offsets])
    for name, c in discs:
        s = float(c @ plan.normal)
        if not pos.min() <= s <= pos.max():
            raise RuntimeError(f"{name} outside the stack")
        k = int(np.argmin(np.abs(pos - s)))
        ipp = plan.image_position(plan.offsets[k])
        j = float((c - ipp) @ plan.row) / plan.pixel
        i = float((c - ipp) @ plan.col) / plan.pixel
        if not (0 <= i <= plan.rows - 1 and 0 <= j <= plan.cols - 1):
            raise RuntimeError(f"{name} outside the image")


def _study_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % (2**63), index, 0x9A7]))


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_round(x) for x in v]
    if isinstance(v, np.generic):
        return _round(v.item())
    return v


def _plan_info(plan: SeriesPlan) -> dict[str, Any]:
    return dict(
        plan.info,
        description=plan.description,
        series_number=plan.series_number,
        tr_ms=plan.tr,
        te_ms=plan.te,
        echo_train=plan.etl,
        rows=plan.rows,
        cols=plan.cols,
        pixel_spacing_mm=plan.pixel,
        slices=len(plan.offsets),
        slice_thickness_mm=plan.thickness,
        spacing_between_slices_mm=plan.spacing,
        acquired_matrix=[plan.acq_rows, plan.acq_cols],
        phase_direction=plan.phase_dir,
        snr=plan.snr,
        motion_ghost_rad=plan.ghost,
        saturation_band=plan.sat_band,
        row_cosines=[float(v) for v in plan.row],
        col_cosines=[float(v) for v in plan.col],
    )


def write_study(out: pathlib.Path, seed: int, index: int) -> pathlib.Path:
    """Generate study `index` of set `seed` under out/ninth-NNN and return its folder."""
    variant = VARIANTS[index % 4]
    rng = _study_rng(seed, index)
    an = Anatomy(rng, variant)
    builder = AnatomyBuilder(an)
    scene = Scene(builder.build())
    site = draw_site(rng)
    t2 = plan_t2_sagittal(rng, an, site)
    t1 = plan_t1_sagittal(rng, t2, site)
    ax = plan_t2_axial(rng, an, site)
    numbers = sorted(int(n) for n in rng.choice(np.arange(2, 12), 3, replace=False))
    order = [t2, t1, ax]
    rng.shuffle(order)  # type: ignore[arg-type]
    for plan, num in zip(order, numbers, strict=True):
        plan.series_number = num
    discs = an.truth_discs()
    truth_check(t2, discs)
    chain = make_receive_chain(rng, an, builder.y_table)
    date = datetime.date(2019, 1, 1) + datetime.timedelta(days=(seed * 7919 + index * 37) % 1800)
    study = StudyInfo(
        seed,
        index,
        make_uid("study", seed, index),
        make_uid("for", seed, index),
        date.strftime("%Y%m%d"),
        f"{8 + index % 10:02d}{(index * 7) % 60:02d}00",
        an.p["age"],
        an.p["sex"],
        site,
    )
    folder = out / f"ninth-{index:03d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    series_uids = {}
    for plan in (t2, t1, ax):
        series_uids[plan.key] = make_uid("series", seed, index, plan.key)
        images = acquire_series(plan, scene, chain, an, site.field_t, rng)
        pixels = to_uint16(images, site.bits, rng)
        write_series(
            folder / f"S{plan.series_number:02d}", plan, pixels, study, series_uids[plan.key]
        )
    truth = {
        "set": "ninth",
        "variation": "ninth",
        "variant": variant,
        "lstv": variant != "normal",
        "seed": seed,
        "index": index,
        "study_instance_uid": study.study_uid,
        "t2_series_instance_uid": series_uids["t2_sag"],
        "slice_normal": [round(float(v), 6) for v in t2.normal],
        "discs": [{"level": n, "patient_xyz": [round(float(v), 3) for v in c]} for n, c in discs],
        "acquisition": _round(
            {
                "vendor": site.vendor,
                "manufacturer": site.manufacturer,
                "model": site.model,
                "field_strength_t": site.field_t,
                "bits_stored": site.bits,
                "t2_sagittal": dict(_plan_info(t2), coverage=coverage(t2, an)),
                "t1_sagittal": _plan_info(t1),
                "t2_axial": _plan_info(ax),
                "receive": {"coil_depth_mm": chain.depth_mm, "coil_gamma": chain.gamma},
                "anatomy": an.p,
            }
        ),
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path, help="output folder")
    ap.add_argument("--count", type=int, default=4, help="number of studies")
    ap.add_argument("--seed", type=int, default=1, help="set seed")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        write_study(args.out, args.seed, i)
        print(f"ninth-{i:03d} {VARIANTS[i % 4]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
