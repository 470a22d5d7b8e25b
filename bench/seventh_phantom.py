"""Seventh phantom: synthetic lumbar-spine MR studies (DICOM) with known LSTV truth.

The anatomy is a set of implicit (signed-distance) shapes placed along a smooth 3-D spine curve
(lumbar lordosis, thoracic kyphosis above, sacral kyphosis below, a mild scoliosis in some
studies):

* superelliptic vertebral bodies with a waist, concave endplates, wedging and AP taper;
* discs defined as the space between two endplates (anulus, nucleus, intranuclear cleft,
  degeneration = loss of height and hydration, posterior bulge);
* a posterior arch (pedicles, laminae, articular pillars with facet joints, transverse and
  spinous processes, ligamenta flava) and ribs at thoracic levels;
* a canal with epidural fat, thecal sac (CSF), cord with conus, filum and cauda-equina roots
  running to the foramina (foraminal fat, ganglia);
* a sacrum built from fused tapering segments (bony bridging, rudimentary disc remnants,
  alae, ilia, anterior foramina) and a coccyx;
* soft tissue: skin, subcutaneous fat, muscles, retroperitoneal fat, viscera, lungs, organs,
  vessels.

Each tissue has (PD, T1, T2) depending on field strength, varied per study.  A series renders
the spin-echo signal S = PD (1 - exp(-TR/T1)) exp(-TE/T2) with its own TR/TE, supersampled
through the slice thickness, then applies a posterior-coil sensitivity field, a k-space window
(blur and ringing) and complex Gaussian noise (Rician magnitude).

Variants (by index % 4): 0, 2 normal; 1 lumbarization (mobile S1 with a real S1-S2 disc,
four fused sacral segments); 3 sacralization (L5 trapezoidal, tilted with the sacrum, L5-S1
disc rudimentary or absent, enlarged transverse processes fused to the ala).

Usage::

    python bench/seventh_phantom.py OUT_DIR --count N --seed S

writes OUT_DIR/seventh-000, ... each with three series (sagittal T2 = target, sagittal T1 and
a short axial T2 stack = decoys) as Part-10 MR Image Storage files and a truth.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

F32 = np.float32
AX_X = np.array([1.0, 0.0, 0.0])
AX_Y = np.array([0.0, 1.0, 0.0])
AX_Z = np.array([0.0, 0.0, 1.0])
VARIANTS = ("normal", "lumbarization", "normal", "sacralization")
LUMBAR_DISCS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")

# (PD, T1 ms, T2 ms) at 1.5 T; T2 of fat-rich tissue is the TSE effective value (J-coupling).
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 1000.0, 1.0),
    "skin": (0.65, 700.0, 35.0),
    "fat": (0.95, 280.0, 140.0),
    "marrow": (0.72, 520.0, 88.0),
    "cortex": (0.05, 1000.0, 6.0),
    "muscle": (0.75, 1000.0, 40.0),
    "nucleus": (1.0, 1000.0, 170.0),
    "anulus": (0.7, 950.0, 50.0),
    "csf": (1.0, 4200.0, 1800.0),
    "cord": (0.78, 850.0, 85.0),
    "nerve": (0.75, 900.0, 70.0),
    "ligament": (0.3, 800.0, 15.0),
    "flavum": (0.55, 850.0, 32.0),
    "void": (0.03, 1400.0, 150.0),
    "venous": (0.85, 1400.0, 200.0),
    "bowel": (0.8, 900.0, 65.0),
    "fluid": (0.95, 3000.0, 600.0),
    "liver": (0.72, 580.0, 45.0),
    "spleen": (0.8, 1050.0, 75.0),
    "kidney": (0.85, 1000.0, 85.0),
    "lung": (0.04, 1200.0, 30.0),
    "heart": (0.55, 1000.0, 50.0),
    "urine": (1.0, 3500.0, 1500.0),
    "edema": (0.85, 1100.0, 110.0),
    "joint": (0.95, 3000.0, 500.0),
    "fibrofat": (0.7, 500.0, 55.0),
}
# T1 lengthening from 1.5 T to 3 T (default for tissues not listed).
T1_AT_3T = {"fat": 1.08, "csf": 1.05, "fluid": 1.05, "urine": 1.05, "marrow": 1.12}
T1_AT_3T_DEFAULT = 1.25


def unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / float(np.linalg.norm(v))


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix about ``axis`` by ``angle`` radians."""
    x, y, z = unit(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


# ----------------------------------------------------------------------------- frames, planes


@dataclass
class Frame:
    """Orthonormal local frame: rows of ``r`` are ex (left), ey (posterior), ez (axis)."""

    o: np.ndarray
    r: np.ndarray

    def world(self, p: list[float] | np.ndarray) -> np.ndarray:
        return self.o + self.r.T @ np.asarray(p, dtype=float)

    def moved(self, p: list[float]) -> Frame:
        return Frame(self.world(p), self.r)

    def spun(self, axis_index: int, angle: float) -> Frame:
        return Frame(self.o, self.r @ rotation(self.r[axis_index], angle).T)


def make_frame(o: np.ndarray, ez: np.ndarray, ref: np.ndarray = AX_X, spin: float = 0.0) -> Frame:
    ez = unit(ez)
    ex = unit(ref - (ref @ ez) * ez)
    if spin:
        ex = rotation(ez, spin) @ ex
    return Frame(np.asarray(o, dtype=float), np.stack([ex, np.cross(ez, ex), ez]))


IDENT = Frame(np.zeros(3), np.eye(3))


class Plane:
    """An image plane: pixel (i, j) lies at origin + i*dr*col + j*dc*row (DICOM convention)."""

    def __init__(self, origin, row, col, dr: float, dc: float, rows: int, cols: int) -> None:
        self.origin = np.asarray(origin, dtype=float)
        self.row, self.col = unit(row), unit(col)
        self.normal = np.cross(self.row, self.col)
        self.dr, self.dc, self.rows, self.cols = dr, dc, rows, cols
        self.ii = np.arange(rows, dtype=F32)[:, None]
        self.jj = np.arange(cols, dtype=F32)[None, :]

    def shifted(self, off: float) -> Plane:
        o = self.origin + off * self.normal
        return Plane(o, self.row, self.col, self.dr, self.dc, self.rows, self.cols)

    def full(self) -> Win:
        return Win(self, 0, self.rows, 0, self.cols)

    def window(self, c: np.ndarray, rad: float) -> Win | None:
        off = c - self.origin
        dist = float(off @ self.normal)
        if abs(dist) >= rad:
            return None
        rr = math.sqrt(rad * rad - dist * dist)
        ic, jc = float(off @ self.col) / self.dr, float(off @ self.row) / self.dc
        i0, i1 = (
            max(0, math.floor(ic - rr / self.dr)),
            min(self.rows, math.ceil(ic + rr / self.dr) + 1),
        )
        j0, j1 = (
            max(0, math.floor(jc - rr / self.dc)),
            min(self.cols, math.ceil(jc + rr / self.dc) + 1),
        )
        if i0 >= i1 or j0 >= j1:
            return None
        return Win(self, i0, i1, j0, j1)


class Win:
    """A rectangular pixel window of a plane."""

    __slots__ = ("plane", "i0", "i1", "j0", "j1")

    def __init__(self, plane: Plane, i0: int, i1: int, j0: int, j1: int) -> None:
        self.plane, self.i0, self.i1, self.j0, self.j1 = plane, i0, i1, j0, j1

    @property
    def sl(self) -> tuple[slice, slice]:
        return slice(self.i0, self.i1), slice(self.j0, self.j1)

    def rel(self, outer: Win) -> tuple[slice, slice]:
        return (
            slice(self.i0 - outer.i0, self.i1 - outer.i0),
            slice(self.j0 - outer.j0, self.j1 - outer.j0),
        )

    def coords(self, fr: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local coordinates (float32 arrays) of the window's pixels in frame ``fr``."""
        p = self.plane
        p0 = p.origin + self.i0 * p.dr * p.col + self.j0 * p.dc * p.row
        base = fr.r @ (p0 - fr.o)
        du, dv = fr.r @ (p.col * p.dr), fr.r @ (p.row * p.dc)
        ii, jj = p.ii[: self.i1 - self.i0], p.jj[:, : self.j1 - self.j0]
        out = [(ii * F32(du[k]) + F32(base[k])) + jj * F32(dv[k]) for k in range(3)]
        return out[0], out[1], out[2]

    def linear(self, k: np.ndarray, ph: float) -> tuple[np.ndarray, np.ndarray]:
        """k . p + ph split into a row part and a column part (for separable fields)."""
        p = self.plane
        p0 = p.origin + self.i0 * p.dr * p.col + self.j0 * p.dc * p.row
        a = float(k @ p0) + ph + np.arange(self.i1 - self.i0) * float(k @ p.col) * p.dr
        b = np.arange(self.j1 - self.j0) * float(k @ p.row) * p.dc
        return a, b

    @staticmethod
    def union(wins: list[Win]) -> Win:
        return Win(
            wins[0].plane,
            min(w.i0 for w in wins),
            max(w.i1 for w in wins),
            min(w.j0 for w in wins),
            max(w.j1 for w in wins),
        )


class Canvas:
    """Per-channel signal image; tissues are alpha-composited (painter's algorithm)."""

    def __init__(self, sig: dict[str, np.ndarray], rows: int, cols: int, px: float) -> None:
        self.sig = sig
        nch = len(next(iter(sig.values())))
        self.img = np.zeros((nch, rows, cols), dtype=F32)
        self.k = F32(1.0 / px)

    def copy(self) -> Canvas:
        c = Canvas.__new__(Canvas)
        c.sig, c.img, c.k = self.sig, self.img.copy(), self.k
        return c

    def alpha(self, d: np.ndarray) -> np.ndarray:
        a = F32(0.5) - d * self.k
        np.clip(a, 0.0, 1.0, out=a)
        return a

    def blend(
        self, sl: tuple[slice, slice], a: np.ndarray, tissue: str, scale: float = 1.0
    ) -> None:
        v = self.sig[tissue] * scale
        for c in range(self.img.shape[0]):
            sub = self.img[c][sl]
            sub += a * (F32(v[c]) - sub)


# ----------------------------------------------------------------------------- primitives


class Ellipsoid:
    def __init__(self, frame: Frame, radii: tuple[float, float, float]) -> None:
        self.frame, self.radii = frame, np.asarray(radii, dtype=float)
        self.center, self.radius = frame.o, float(self.radii.max())

    def sdf(self, win: Win) -> np.ndarray:
        x, y, z = win.coords(self.frame)
        rx, ry, rz = (F32(v) for v in self.radii)
        k0 = np.sqrt((x / rx) ** 2 + (y / ry) ** 2 + (z / rz) ** 2)
        k1 = np.sqrt((x / (rx * rx)) ** 2 + (y / (ry * ry)) ** 2 + (z / (rz * rz)) ** 2)
        near = (k0 - 1) * F32(self.radii.min())
        return np.where(k0 < 0.5, near, k0 * (k0 - 1) / np.maximum(k1, F32(1e-6)))


class Capsule:
    """Segment A-B swept by an elliptic section (radius r along ``ref``, r*flat across)."""

    def __init__(
        self,
        a: np.ndarray,
        b: np.ndarray,
        ra: float,
        rb: float,
        flat: float = 1.0,
        ref: np.ndarray = AX_X,
    ) -> None:
        axis = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
        self.length = float(np.linalg.norm(axis))
        if abs(unit(axis) @ unit(ref)) > 0.98:
            ref = np.cross(axis, AX_Y) if abs(unit(axis) @ AX_Y) < 0.9 else AX_X
        self.frame = make_frame(a, axis, ref=unit(ref))
        self.ra, self.rb, self.flat = ra, rb, flat
        self.center = 0.5 * (np.asarray(a, dtype=float) + np.asarray(b, dtype=float))
        self.radius = 0.5 * self.length + max(ra, rb)

    def sdf(self, win: Win) -> np.ndarray:
        x, y, z = win.coords(self.frame)
        t = np.clip(z * F32(1.0 / self.length), 0.0, 1.0)
        r = F32(self.ra) + F32(self.rb - self.ra) * t
        q = np.sqrt(x * x + (y * F32(1.0 / self.flat)) ** 2 + (z - t * F32(self.length)) ** 2)
        return (q - r) * F32(min(1.0, self.flat))


class Body:
    """Vertebral body: superellipse section, waist, AP taper, wedge and concave endplates."""

    def __init__(self, frame: Frame, lv: Level) -> None:
        self.frame, self.h, self.a, self.b, self.n = frame, lv.h, lv.a, lv.b, lv.n
        self.cs, self.ci, self.taper, self.waist = lv.cs, lv.ci, lv.taper, lv.waist
        self.tw = math.tan(0.5 * lv.wedge)
        self.center = frame.o
        self.radius = math.hypot(0.5 * self.h + 3.0, max(self.a, self.b) * (1 + abs(self.taper)))

    def radial(self, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        hh = 0.5 * self.h
        zc = np.clip(z, -hh, hh) * F32(1.0 / hh)
        sc = 1 - F32(self.waist) * (1 - zc * zc)
        az, bz = F32(self.a) * sc, F32(self.b) * sc
        if self.taper:
            bz = np.where(y < 0, bz * (1 + F32(0.5 * self.taper) * zc), bz)
        n = F32(self.n)
        rho = (np.abs(x / az) ** n + np.abs(y / bz) ** n) ** F32(1.0 / self.n)
        return rho, np.minimum(az, bz)

    def z_sup(self, y: np.ndarray, rho: np.ndarray) -> np.ndarray:
        r1 = np.minimum(rho, 1.0)
        return F32(0.5 * self.h) - y * F32(self.tw) - F32(self.cs) * (1 - r1 * r1)

    def z_inf(self, y: np.ndarray, rho: np.ndarray) -> np.ndarray:
        r1 = np.minimum(rho, 1.0)
        return F32(-0.5 * self.h) + y * F32(self.tw) + F32(self.ci) * (1 - r1 * r1)

    def sdf(self, win: Win) -> np.ndarray:
        x, y, z = win.coords(self.frame)
        rho, m = self.radial(x, y, z)
        d = np.maximum((rho - 1) * m, z - self.z_sup(y, rho))
        return np.maximum(d, self.z_inf(y, rho) - z)

    def endplate(self, top: bool) -> np.ndarray:
        return self.frame.world([0.0, 0.0, 0.5 * self.h if top else -0.5 * self.h])


# ----------------------------------------------------------------------------- drawables


class Solid:
    """Union of primitives painted as one tissue, optionally with a cortical shell."""

    def __init__(
        self,
        parts: list,
        tissue: str,
        shell: float = 0.0,
        shell_tissue: str = "cortex",
        scale: float = 1.0,
        opacity: float = 1.0,
    ) -> None:
        self.parts, self.tissue, self.shell = parts, tissue, shell
        self.shell_tissue, self.scale, self.opacity = shell_tissue, scale, opacity

    def draw(self, plane: Plane, cv: Canvas) -> None:
        pad = max(plane.dr, plane.dc) + 0.5
        hits = [(p, w) for p in self.parts if (w := plane.window(p.center, p.radius + pad))]
        if not hits:
            return
        if len(hits) == 1:
            win, d = hits[0][1], hits[0][0].sdf(hits[0][1])
        else:
            win = Win.union([w for _, w in hits])
            d = np.full((win.i1 - win.i0, win.j1 - win.j0), 1e3, dtype=F32)
            for p, w in hits:
                sub = d[w.rel(win)]
                np.minimum(sub, p.sdf(w), out=sub)
        a = cv.alpha(d)
        if not a.any():
            return
        if self.opacity < 1.0:
            a *= F32(self.opacity)
        if self.shell > 0:
            cv.blend(win.sl, a, self.shell_tissue)
            a = cv.alpha(d + F32(self.shell)) * F32(self.opacity)
        cv.blend(win.sl, a, self.tissue, self.scale)


class Disc:
    """The space between two endplates: anulus, nucleus, optional cleft."""

    def __init__(self, up: Body, lo: Body, jt: Joint) -> None:
        self.up, self.lo, self.jt = up, lo, jt
        e_up, e_lo = up.endplate(False), lo.endplate(True)
        self.center = 0.5 * (e_up + e_lo)
        self.frame = make_frame(self.center, up.frame.r[2] + lo.frame.r[2])
        bul = jt.bulge
        self.ad = 0.5 * (up.a + lo.a) + 0.5 * bul
        self.bp = 0.5 * (up.b + lo.b) + bul
        self.ba = 0.5 * (up.b * (1 - 0.5 * up.taper) + lo.b * (1 + 0.5 * lo.taper)) + 0.4 * bul
        self.n = 0.5 * (up.n + lo.n)
        gap = float(np.linalg.norm(e_up - e_lo))
        self.radius = max(self.ad, self.bp, self.ba) + 0.5 * gap + up.ci + lo.cs + 6.0

    def geometry(self, win: Win) -> tuple[np.ndarray, ...]:
        xu, yu, zu = win.coords(self.up.frame)
        du = self.up.z_inf(yu, self.up.radial(xu, yu, zu)[0]) - zu
        xl, yl, zl = win.coords(self.lo.frame)
        dl = zl - self.lo.z_sup(yl, self.lo.radial(xl, yl, zl)[0])
        x, y, _ = win.coords(self.frame)
        return du, dl, x, y

    def outline(self, x: np.ndarray, y: np.ndarray, ad: float, ba: float, bp: float) -> np.ndarray:
        bd = np.where(y < 0, F32(ba), F32(bp))
        n = F32(self.n)
        rho = (np.abs(x / F32(ad)) ** n + np.abs(y / bd) ** n) ** F32(1.0 / self.n)
        return (rho - 1) * np.minimum(bd, F32(ad))

    def draw(self, plane: Plane, cv: Canvas) -> None:
        win = plane.window(self.center, self.radius)
        if win is None:
            return
        du, dl, x, y = self.geometry(win)
        d = np.maximum(self.outline(x, y, self.ad, self.ba, self.bp), -np.minimum(du, dl))
        a = cv.alpha(d)
        if not a.any():
            return
        cv.blend(win.sl, a, "anulus")
        t = np.clip((du - dl) / np.maximum(du + dl, F32(0.5)), -1.0, 1.0)
        bn = 0.5 * (self.ba + self.bp) * 0.68
        rn = np.sqrt(
            (x / F32(0.7 * self.ad)) ** 2
            + ((y - F32(0.08 * self.bp)) / F32(bn)) ** 2
            + (t / 0.9) ** 2
        )
        core = np.clip((1 - rn) / F32(0.22), 0.0, 1.0) * a
        cv.blend(win.sl, core * F32(self.jt.hydration), "nucleus")
        if self.jt.cleft > 0:
            band = np.clip(1 - np.abs(t) / F32(0.16), 0.0, 1.0) * (rn < 0.85) * core
            cv.blend(win.sl, band * F32(self.jt.cleft), "anulus")


class Fusion(Disc):
    """Bony bridge between two segments with an optional rudimentary disc remnant (lens)."""

    def __init__(self, up: Body, lo: Body, jt: Joint, shell: float, marrow: float) -> None:
        super().__init__(up, lo, jt)
        self.shell, self.marrow = shell, marrow
        self.ad0 = 0.5 * (up.a + lo.a)
        self.bp0 = 0.5 * (up.b + lo.b)
        self.ba0 = 0.5 * (up.b * (1 - 0.5 * up.taper) + lo.b * (1 + 0.5 * lo.taper))

    def draw(self, plane: Plane, cv: Canvas) -> None:
        win = plane.window(self.center, self.radius)
        if win is None:
            return
        du, dl, x, y = self.geometry(win)
        d_out = np.maximum(self.outline(x, y, self.ad0, self.ba0, self.bp0), -np.minimum(du, dl))
        a = cv.alpha(d_out)
        if not a.any():
            return
        sh = self.shell
        cv.blend(win.sl, a, "cortex")
        inner = self.outline(x, y, self.ad0 - sh, self.ba0 - sh, self.bp0 - sh)
        d_in = np.maximum(inner, -np.minimum(du, dl) - F32(sh + 0.6))
        cv.blend(win.sl, cv.alpha(d_in), "marrow", self.marrow)
        if self.jt.lens is None:
            return
        x0, y0, fa, fb = self.jt.lens
        ra, rb = fa * self.ad0, fb * 0.5 * (self.ba0 + self.bp0)
        rl = np.sqrt(
            ((x - F32(x0 * self.ad0)) / F32(ra)) ** 2 + ((y - F32(y0 * self.bp0)) / F32(rb)) ** 2
        )
        ring = (rl - 1) * F32(min(ra, rb))
        d_line = np.maximum(ring, -np.minimum(du, dl) - F32(1.0))
        cv.blend(win.sl, cv.alpha(d_line) * F32(self.jt.sclerosis), "cortex")
        a_rem = cv.alpha(np.maximum(ring, -np.minimum(du, dl)))
        cv.blend(win.sl, a_rem, "anulus")
        cv.blend(win.sl, a_rem * F32(self.jt.hydration), "nucleus")


# ----------------------------------------------------------------------------- anatomy model


@dataclass
class Level:
    name: str
    kind: str  # thoracic | lumbar | sacral | coccyx
    h: float
    a: float
    b: float
    n: float = 2.5
    cs: float = 1.2
    ci: float = 1.2
    wedge: float = 0.0  # rad, anterior taller when > 0
    taper: float = 0.0  # anterior AP larger at the top when > 0
    waist: float = 0.05
    rx: float = 10.0  # thecal sac / sacral canal half-width
    ry: float = 7.5  # ... half-depth
    arch: str = "lumbar"
    s_c: float = 0.0
    phi: float = 0.0
    body: Body | None = None

    @property
    def frame(self) -> Frame:
        assert self.body is not None
        return self.body.frame

    @property
    def dc(self) -> float:
        """Distance from the body centre to the canal centre along ey."""
        return self.b + (1.0 if self.kind == "sacral" else 1.5) + self.ry


@dataclass
class Joint:
    kind: str  # disc | fused | cocc
    gap: float
    bend: float  # deg; phi(upper) - phi(lower): > 0 kyphotic, < 0 lordotic
    hydration: float = 0.92
    grade: int = 0
    bulge: float = 0.8
    cleft: float = 0.0
    lens: tuple[float, float, float, float] | None = None
    sclerosis: float = 0.5
    tp_fusion: str = ""


@dataclass
class Curve:
    s: np.ndarray
    p: np.ndarray
    t: np.ndarray

    def point(self, s: float) -> np.ndarray:
        return np.array([np.interp(s, self.s, self.p[:, k]) for k in range(3)])

    def frame(self, s: float, spin: float = 0.0) -> Frame:
        t = np.array([np.interp(s, self.s, self.t[:, k]) for k in range(3)])
        return make_frame(self.point(s), t, spin=spin)


@dataclass
class SoftTissue:
    z0: float
    dz: float
    tab: dict[str, np.ndarray]
    waves: list[tuple[np.ndarray, np.ndarray]]
    z_dome: float
    gluteal: tuple[float, float, float, float]  # x offset, z, x radius, z radius
    gap_rp: float
    gas: float


@dataclass
class Anatomy:
    variant: str
    levels: list[Level]
    joints: list[Joint]
    curve: Curve
    local: list = field(default_factory=list)
    organs: list = field(default_factory=list)
    late: list = field(default_factory=list)
    soft: SoftTissue | None = None
    info: dict = field(default_factory=dict)

    def level(self, name: str) -> Level:
        return next(lv for lv in self.levels if lv.name == name)

    def index(self, name: str) -> int:
        return next(i for i, lv in enumerate(self.levels) if lv.name == name)

    def disc_center(self, upper: str) -> np.ndarray:
        i = self.index(upper)
        up, lo = self.levels[i].body, self.levels[i + 1].body
        assert up is not None and lo is not None
        return 0.5 * (up.endplate(False) + lo.endplate(True))


def hermite(xk: np.ndarray, yk: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation with finite-difference slopes, constant outside."""
    m = np.gradient(yk, xk)
    i = np.clip(np.searchsorted(xk, x) - 1, 0, len(xk) - 2)
    h = xk[i + 1] - xk[i]
    t = np.clip((x - xk[i]) / h, 0.0, 1.0)
    y = (
        (2 * t**3 - 3 * t**2 + 1) * yk[i]
        + (t**3 - 2 * t**2 + t) * h * m[i]
        + (-2 * t**3 + 3 * t**2) * yk[i + 1]
        + (t**3 - t**2) * h * m[i + 1]
    )
    y = np.where(x < xk[0], yk[0], y)
    return np.where(x > xk[-1], yk[-1], y)


def degeneration(rng: np.random.Generator, jt: Joint, p: float) -> float:
    """Randomly degenerate a mobile disc; returns the height factor."""
    if rng.random() >= p:
        jt.hydration = rng.uniform(0.82, 1.0)
        jt.bulge = rng.uniform(0.3, 1.2)
        jt.cleft = rng.uniform(0.3, 0.8) if rng.random() < 0.4 else 0.0
        return 1.0
    jt.grade = int(rng.integers(1, 4))
    jt.hydration = (0.45, 0.22, 0.06)[jt.grade - 1] + rng.uniform(0.0, 0.1)
    jt.bulge = (1.5, 2.5, 3.5)[jt.grade - 1] + rng.uniform(0.0, 1.0)
    return (0.85, 0.65, 0.48)[jt.grade - 1] * rng.uniform(0.92, 1.08)


def thoracic_levels(rng: np.random.Generator, g: float, p_deg: float, canal: tuple) -> list:
    """T5..T12 with the discs below them (kyphotic bends)."""
    u, nrm = rng.uniform, rng.normal
    out = []
    for k in range(5, 13):
        lv = Level(
            f"T{k}",
            "thoracic",
            h=(17.5 + 0.75 * (k - 5) + nrm(0, 0.6)) * g,
            a=(15.0 + 1.0 * (k - 5) + nrm(0, 0.7)) * g,
            b=(12.5 + 0.5 * (k - 5) + nrm(0, 0.5)) * g,
            n=2.2,
            cs=u(0.4, 1.1),
            ci=u(0.4, 1.1),
            wedge=math.radians(-u(1.0, 4.0)),
            rx=7.5 * canal[0] * g,
            ry=6.3 * canal[1] * g,
            arch="thoracic",
        )
        bend = u(3.5, 6.0) if k <= 9 else (u(2.0, 4.5), u(0.5, 3.0), u(-2.0, 1.5))[k - 10]
        jt = Joint("disc", 0.0, bend)
        f = degeneration(rng, jt, 0.3 * p_deg)
        jt.gap = max(2.0, (3.8 + 0.3 * (k - 5) + nrm(0, 0.35)) * g * f)
        out.append((lv, jt))
    return out


def lumbar_levels(
    rng: np.random.Generator, variant: str, g: float, p_deg: float, canal: tuple
) -> list:
    """L1..L5 (and a lumbarized S1) with the joints below them (bends set later)."""
    u, nrm = rng.uniform, rng.normal
    disc_target = (8.5, 9.5, 10.5, 11.0, u(7.5, 12.0))
    deg_weight = (0.5, 0.7, 0.9, 1.3, 1.5)
    out = []
    for k in range(1, 6):
        lv = Level(
            f"L{k}",
            "lumbar",
            h=float(np.clip(25.0 + 0.7 * (k - 1) + nrm(0, 1.0), 23.5, 31.0)) * g,
            a=(20.5 + 1.2 * (k - 1) + nrm(0, 1.0)) * g,
            b=(15.5 + 0.8 * (k - 1) + nrm(0, 0.8)) * g,
            n=u(2.3, 2.8),
            cs=u(0.8, 2.0),
            ci=u(0.8, 2.0),
            wedge=math.radians((-2.0, -1.0, 0.0, 1.0, 4.0)[k - 1] + nrm(0, 1.3)),
            taper=nrm(0, 0.05),
            waist=u(0.03, 0.08),
            rx=(10.0 + 0.35 * (k - 1)) * canal[0] * g,
            ry=u(7.2, 8.6) * canal[1] * g,
        )
        if variant == "sacralization" and k == 5:
            # transitional L5: lower, trapezoidal (inferior AP longer), wedged, tilted with S1
            lv.h, lv.ci = u(21.5, 26.5) * g, u(0.3, 1.0)
            lv.wedge, lv.taper = math.radians(u(6.0, 12.0)), -u(0.15, 0.35)
            out.append((lv, sacralized_joint(rng, g)))
            continue
        jt = Joint("disc", 0.0, 0.0)
        f = degeneration(rng, jt, p_deg * deg_weight[k - 1])
        jt.gap = max(1.5, (disc_target[k - 1] + nrm(0, 0.8)) * g * f - 0.5 * (lv.ci + 1.4))
        out.append((lv, jt))
    if variant == "lumbarization":
        # mobile, squared S1 (no anterior taper) over a well-formed S1-S2 disc
        s1 = Level(
            "S1",
            "lumbar",
            h=u(23.0, 27.0) * g,
            a=u(24.0, 26.5) * g,
            b=u(17.5, 19.5) * g,
            n=u(2.4, 3.0),
            cs=u(0.8, 1.8),
            ci=u(0.8, 1.8),
            wedge=math.radians(u(0.0, 3.0)),
            taper=nrm(0, 0.04),
            waist=u(0.02, 0.05),
            rx=11.5 * canal[0] * g,
            ry=u(6.8, 8.0) * canal[1] * g,
        )
        jt = Joint("disc", 0.0, 0.0)
        f = degeneration(rng, jt, p_deg * 0.9)
        jt.gap = max(1.5, u(6.5, 10.0) * g * f - 0.5 * (s1.ci + 1.2))
        out.append((s1, jt))
    return out


# (height, half-width, half-depth, anterior taper) of fused sacral segments, top first
SACRAL_DIMS = ((30.0, 25.0, 21.0, 0.35), (25.0, 21.0, 15.5, 0.15), (21.0, 16.5, 12.0, 0.15))
SACRAL_DIMS += ((17.0, 12.5, 9.0, 0.1), (13.0, 9.0, 7.0, 0.1))
LUMBARIZED_SACRUM = ((26.0, 22.5, 17.5, 0.3), (21.0, 17.0, 12.5, 0.15), (17.0, 13.0, 9.5, 0.15))
LUMBARIZED_SACRUM += ((13.0, 9.5, 7.0, 0.1),)
SACRAL_CANAL = ((10.0, 5.5), (8.0, 4.5), (6.0, 3.5), (4.5, 2.8), (3.5, 2.2))
COCCYX_DIMS = ((10.0, 9.0, 6.5), (8.0, 7.0, 5.0), (6.5, 5.5, 4.0), (5.0, 4.0, 3.0))


def sacral_levels(rng: np.random.Generator, variant: str, g: float) -> list:
    """Fused sacral segments (five, or four below a lumbarized S1) and the coccyx."""
    u = rng.uniform
    lumb = variant == "lumbarization"
    dims = LUMBARIZED_SACRUM if lumb else SACRAL_DIMS
    names = ["S2", "S3", "S4", "S5"] if lumb else ["S1", "S2", "S3", "S4", "S5"]
    offset = 5 - len(names)
    out = []
    for i, (name, (h, a, b, tp)) in enumerate(zip(names, dims, strict=True)):
        q = u(0.95, 1.05) * g
        rx, ry = SACRAL_CANAL[i + offset]
        lv = Level(
            name,
            "sacral",
            h=h * q,
            a=a * q,
            b=b * q,
            n=2.2,
            cs=u(0.5, 1.2),
            ci=u(0.3, 0.8),
            taper=tp,
            waist=0.03,
            rx=rx * g,
            ry=ry * g,
            arch="sacral",
        )
        if i < len(names) - 1:
            out.append((lv, fused_joint(rng, i + offset, g)))
        else:  # sacrococcygeal joint
            jt = Joint("cocc", u(1.8, 3.0) * g, u(8.0, 14.0), hydration=u(0.1, 0.4), bulge=0.3)
            out.append((lv, jt))
    n_co = 4 if rng.random() < 0.5 else 3
    for i in range(n_co):
        h, a, b = (v * g for v in COCCYX_DIMS[i])
        lv = Level(f"Co{i + 1}", "coccyx", h, a, b, n=2.0, cs=0.3, ci=0.3, arch="none")
        jt = Joint("cocc", u(1.2, 2.2) * g, u(5.0, 11.0), hydration=u(0.0, 0.3), bulge=0.2)
        out.append((lv, jt))
    return out


def make_levels(
    rng: np.random.Generator, variant: str, g: float
) -> tuple[list[Level], list[Joint], int]:
    """Vertebrae (top to bottom), the joints between them and the sacral-top index."""
    p_deg = rng.uniform(0.08, 0.3)
    canal = (rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15))
    upper = thoracic_levels(rng, g, p_deg, canal) + lumbar_levels(rng, variant, g, p_deg, canal)
    pairs = upper + sacral_levels(rng, variant, g)
    levels = [lv for lv, _ in pairs]
    joints = [jt for _, jt in pairs[:-1]]
    return levels, joints, len(upper)


def fused_joint(rng: np.random.Generator, k: int, g: float) -> Joint:
    """Fused sacral junction S(k+1)-S(k+2) with a rudimentary remnant."""
    u = rng.uniform
    gap = (u(2.0, 4.5), u(1.5, 3.0), u(1.2, 2.5), u(1.0, 2.0))[k] * g
    bend = (u(5.0, 10.0), u(8.0, 13.0), u(9.0, 15.0), u(8.0, 13.0))[k]
    jt = Joint("fused", gap, bend, sclerosis=u(0.2, 0.9))
    big = k == 0
    if rng.random() < (0.85 if big else 0.6):
        fa = u(0.4, 0.9) if big else u(0.2, 0.7)
        jt.lens = (u(-0.05, 0.05), u(-0.1, 0.1), fa, fa * u(0.8, 1.1))
        jt.hydration = u(0.1, 0.7) if big else u(0.0, 0.4)
    return jt


def sacralized_joint(rng: np.random.Generator, g: float) -> Joint:
    """L5-S1 in sacralization: rudimentary (thin, partly bridged) or absent (fused)."""
    u = rng.uniform
    side = "bilateral" if rng.random() < 0.5 else ("left" if rng.random() < 0.5 else "right")
    if rng.random() < 0.6:
        shift = u(0.1, 0.25) * (1 if rng.random() < 0.5 else -1)
        fa = u(0.5, 0.85)
        jt = Joint("fused", u(1.8, 4.0) * g, -u(0.0, 6.0), hydration=u(0.15, 0.6))
        jt.lens = (u(-0.05, 0.05), shift, fa, fa * u(0.85, 1.05))
        jt.sclerosis = u(0.6, 1.0)
        jt.tp_fusion = side
        return jt
    jt = Joint("fused", u(0.8, 1.8) * g, -u(0.0, 5.0), hydration=u(0.0, 0.3), sclerosis=u(0.2, 0.8))
    if rng.random() < 0.6:
        fa = u(0.15, 0.5)
        jt.lens = (0.0, u(-0.1, 0.1), fa, fa)
    jt.tp_fusion = side
    return jt


def assign_lordosis(
    rng: np.random.Generator, variant: str, joints: list[Joint], levels: list[Level], ll: float
) -> None:
    """Distribute the lumbar lordosis (deg) over the mobile lumbosacral joints."""
    first = next(i for i, lv in enumerate(levels) if lv.name == "L1")
    fr = {
        "normal": (0.09, 0.13, 0.18, 0.26, 0.34),
        "lumbarization": (0.07, 0.1, 0.14, 0.21, 0.27, 0.21),
        "sacralization": (0.15, 0.2, 0.27, 0.38),
    }[variant]
    w = np.array(fr) * rng.uniform(0.8, 1.2, len(fr))
    w = w / w.sum()
    extra = 0.0 if variant != "sacralization" else -joints[first + 4].bend
    for i, wi in enumerate(w):
        joints[first + i].bend = -float(wi) * (ll - extra)


def build_curve(
    rng: np.random.Generator, levels: list[Level], joints: list[Joint], top: int, ss: float
) -> tuple[Curve, np.ndarray, float]:
    """Arc-length positions, sagittal angle phi and the integrated 3-D centre line."""
    n = len(levels)
    s_sup, s_inf = np.zeros(n), np.zeros(n)
    s_sup[top] = 0.0
    s_inf[top] = -levels[top].h
    for k in range(top - 1, -1, -1):
        s_inf[k] = s_sup[k + 1] + joints[k].gap
        s_sup[k] = s_inf[k] + levels[k].h
    for k in range(top + 1, n):
        s_sup[k] = s_inf[k - 1] - joints[k - 1].gap
        s_inf[k] = s_sup[k] - levels[k].h
    s_c = 0.5 * (s_sup + s_inf)
    phi = np.zeros(n)
    phi[top] = ss
    for k in range(top - 1, -1, -1):
        phi[k] = phi[k + 1] + joints[k].bend
    for k in range(top + 1, n):
        phi[k] = phi[k - 1] - joints[k - 1].bend
    for lv, sc, ph in zip(levels, s_c, phi, strict=True):
        lv.s_c, lv.phi = float(sc), float(ph)
    s = np.arange(s_inf[-1] - 60.0, s_sup[0] + 60.0, 0.5)
    ph = np.radians(np.clip(hermite(s_c[::-1], phi[::-1], s), -75.0, 80.0))
    lat = np.zeros_like(s)
    scol = 0.0
    if rng.random() < 0.3:
        scol = rng.uniform(5.0, 14.0) * (1 if rng.random() < 0.5 else -1)
        apex = rng.uniform(s_c[top - 4], s_c[top - 9] if top >= 9 else s_c[0])
        lat = scol * np.exp(-(((s - apex) / rng.uniform(50.0, 90.0)) ** 2))
    lat = lat + rng.normal(0, 1.5) * s / 200.0
    dxds = np.gradient(lat, s)
    t = np.stack([dxds, -np.sin(ph), np.cos(ph)], axis=1)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    p = np.concatenate([np.zeros((1, 3)), np.cumsum(0.5 * (t[1:] + t[:-1]) * 0.5, axis=0)])
    p -= np.array([np.interp(0.0, s, p[:, k]) for k in range(3)])
    return Curve(s, p, t), lat, scol


def build_anatomy(rng: np.random.Generator, variant: str) -> Anatomy:
    """Draw one patient's spine, canal, posterior elements and soft tissue for ``variant``."""
    u = rng.uniform
    sex = "F" if rng.random() < 0.5 else "M"
    g = u(0.95, 1.06) * (0.97 if sex == "F" else 1.0)
    levels, joints, top = make_levels(rng, variant, g)
    ss = u(30.0, 50.0)
    ll = ss + u(5.0, 20.0)
    assign_lordosis(rng, variant, joints, levels, ll)
    curve, lat, scol = build_curve(rng, levels, joints, top, ss)
    # place the patient: L3 centre near the magnet isocentre
    l3 = curve.point(next(lv.s_c for lv in levels if lv.name == "L3"))
    shift = np.array([u(-6, 6), u(-25, 15), u(-40, 40)]) - l3
    curve.p += shift
    for lv in levels:
        spin = -float(np.interp(lv.s_c, curve.s, lat)) / 80.0 + math.radians(rng.normal(0, 1.0))
        lv.body = Body(curve.frame(lv.s_c, spin), lv)
    anat = Anatomy(variant, levels, joints, curve)
    anat.info = {
        "sex": sex,
        "scale": round(g, 3),
        "sacral_slope_deg": round(ss, 1),
        "lumbar_lordosis_deg": round(ll, 1),
        "scoliosis_mm": round(scol, 1),
        "degenerated": [
            f"{levels[i].name}-{levels[i + 1].name}"
            for i, jt in enumerate(joints)
            if jt.kind == "disc" and jt.grade > 0
        ],
    }
    build_spine_drawables(rng, anat, top)
    build_soft_tissue(rng, anat, top)
    return anat


# ----------------------------------------------------------------------------- spine parts


def canal_arrays(levels: list[Level]) -> tuple[np.ndarray, ...]:
    """Per-level (s, canal offset, sac half-width, sac half-depth), ascending in s."""
    order = np.argsort([lv.s_c for lv in levels])
    lv = [levels[i] for i in order if levels[i].kind != "coccyx"]
    return (
        np.array([v.s_c for v in lv]),
        np.array([v.dc for v in lv]),
        np.array([v.rx for v in lv]),
        np.array([v.ry for v in lv]),
    )


def canal_point(anat: Anatomy, s: float, lat: float = 0.0, ap: float = 0.0) -> np.ndarray:
    """World point in the canal at arc length ``s`` (lateral / AP offsets in mm)."""
    sc, dc, _, _ = canal_arrays(anat.levels)
    return anat.curve.frame(s).world([lat, float(np.interp(s, sc, dc)) + ap, 0.0])


def tube(anat: Anatomy, s0: float, s1: float, rfun, ap: float, step: float = 10.0) -> list[Capsule]:
    """Chain of elliptic capsules along the canal from s0 down to s1; rfun(s) -> (rx, ry)."""
    ss = list(np.arange(s0, s1, -step)) + [s1]
    pts = [canal_point(anat, s, 0.0, ap) for s in ss]
    rr = [rfun(s) for s in ss]
    parts = []
    for i in range(len(ss) - 1):
        (rxa, rya), (rxb, ryb) = rr[i], rr[i + 1]
        ref = anat.curve.frame(ss[i]).r[0]
        flat = 0.5 * (rya / rxa + ryb / rxb)
        parts.append(Capsule(pts[i], pts[i + 1], rxa, rxb, flat, ref))
    return parts


def canal_contents(rng: np.random.Generator, anat: Anatomy, top: int) -> list:
    """Epidural fat, foraminal fat, thecal sac, cord with conus, filum and roots."""
    u = rng.uniform
    lv = anat.levels
    sc, _, rxs, rys = canal_arrays(lv)
    s_top = lv[0].s_c + 0.5 * lv[0].h + 30.0
    s_sac_end = lv[top].s_c - 0.5 * lv[top].h - u(0.0, 18.0)
    s_epi_end = lv[top + 3].s_c
    l1, l2 = anat.level("L1"), anat.level("L2")
    s_conus = u(l2.s_c + 0.2 * l2.h, l1.s_c - 0.2 * l1.h)

    def sac(s: float) -> tuple[float, float]:
        f = float(np.clip((s - s_sac_end) / 12.0, 0.12, 1.0))
        return float(np.interp(s, sc, rxs)) * f, float(np.interp(s, sc, rys)) * f

    def epi(s: float) -> tuple[float, float]:
        f = float(np.clip((s - s_epi_end) / 15.0, 0.3, 1.0))
        return (float(np.interp(s, sc, rxs)) + 2.5) * f, (float(np.interp(s, sc, rys)) + 3.0) * f

    def cord(s: float) -> tuple[float, float]:
        f = float(np.clip((s - s_conus) / 24.0, 0.2, 1.0))
        return 4.6 * f, 3.8 * f

    out: list = [Solid(tube(anat, s_top, s_epi_end, epi, 1.8), "fat")]
    out += foramina(anat, top)
    out.append(Solid(tube(anat, s_top, s_sac_end, sac, 0.0), "csf"))
    ry_l = float(np.interp(s_conus, sc, rys))
    out.append(Solid(tube(anat, s_top, s_conus, cord, 0.15 * ry_l), "cord"))
    filum = Capsule(
        canal_point(anat, s_conus, 0, 0.3 * ry_l), canal_point(anat, s_sac_end + 3, 0, 0), 0.7, 0.6
    )
    out.append(Solid([filum], "nerve"))
    out += roots(rng, anat, top, s_conus)
    anat.info["conus_s_mm"] = round(s_conus, 1)
    return out


def foramina(anat: Anatomy, top: int) -> list:
    """Foraminal fat at every mobile level (drawn before the roots)."""
    parts = []
    for i in range(top):
        lv = anat.levels[i]
        if lv.kind not in ("thoracic", "lumbar"):
            continue
        rcx = lv.rx + 3.5
        for sx in (-1, 1):
            c = lv.frame.world([sx * (rcx + 5.0), lv.b + 5.0, -0.32 * lv.h])
            parts.append(Ellipsoid(Frame(c, lv.frame.r), (6.0, 6.5, 0.3 * lv.h + 3.0)))
    return [Solid(parts, "fat")]


def roots(rng: np.random.Generator, anat: Anatomy, top: int, s_conus: float) -> list:
    """Cauda-equina roots: dependent in the sac, leaving through their foramina."""
    lv = anat.levels
    first = anat.index("L1")
    exits = [k for k in range(first, top)]
    strands, ganglia = [], []
    sc, _, rxs, rys = canal_arrays(lv)
    for order, k in enumerate(exits):
        v = lv[k]
        s_leave = v.s_c + 0.5 * v.h + 3.0
        rx, ry = float(np.interp(s_leave, sc, rxs)), float(np.interp(s_leave, sc, rys))
        for sx in (-1, 1):
            x_in = max(1.5, 0.75 * rx - 1.3 * order)
            s0 = max(s_conus, s_leave + 25.0)
            pts = [
                canal_point(anat, s0 + 4.0, sx * 2.0, 0.2 * ry),
                canal_point(anat, s_leave + 14.0, sx * x_in, (0.35 + 0.04 * order) * ry),
                canal_point(anat, s_leave - 3.0, sx * (rx - 1.0), -0.2 * ry),
                v.frame.world([sx * (v.rx + 8.5), v.b + 5.0, -0.32 * v.h]),
                v.frame.world([sx * (v.rx + 26.0), v.b - 4.0, -0.6 * v.h]),
            ]
            r = rng.uniform(0.9, 1.3)
            strands += [Capsule(pts[j], pts[j + 1], r, r if j < 2 else 1.6) for j in range(4)]
            ganglia.append(Ellipsoid(Frame(pts[3], v.frame.r), (3.2, 3.0, 3.8)))
    for sx in (-1, 1):  # sacral roots stay in the sac to its end
        for j in range(2):
            p0 = canal_point(anat, s_conus + 2.0, sx * 1.5, 0.3 * 7.0)
            p1 = canal_point(anat, lv[top].s_c, sx * (2.0 + 2.5 * j), 0.4 * 6.0)
            p2 = canal_point(anat, lv[top + 1].s_c, sx * (3.0 + 2.0 * j), 0.0)
            strands += [Capsule(p0, p1, 1.0, 1.0), Capsule(p1, p2, 1.0, 0.9)]
    return [Solid(strands, "nerve"), Solid(ganglia, "nerve")]


def arch_parts(anat: Anatomy, i: int, rng: np.random.Generator) -> tuple[list, list]:
    """Posterior arch of a thoracic or lumbar-type level; returns (parts, posterior tips)."""
    lv, u = anat.levels[i], rng.uniform
    F, h, b, dc = lv.frame, lv.h, lv.b, lv.dc
    rcx, ryc = lv.rx + 3.5, lv.ry + 3.0
    W, ez, ex = F.world, F.r[2], F.r[0]
    g_up = anat.joints[i - 1].gap if i > 0 else 5.0
    g_dn = anat.joints[i].gap
    thor = lv.kind == "thoracic"
    xf, yf = rcx + 3.0, dc + 0.35 * ryc + 1.0
    parts: list = []
    rp = 6.0 if thor else 7.5
    for sx in (-1, 1):
        parts.append(
            Capsule(
                W([sx * (rcx + 2.5), b - 6, 0.12 * h]),
                W([sx * (rcx + 2.5), dc + 2, 0.12 * h]),
                rp,
                rp,
                0.6,
                ez,
            )
        )
        parts.append(
            Capsule(
                W([sx * (rcx + 3.5), dc + 2, 0.05 * h]),
                W([0, dc + ryc + 3.5, -0.12 * h]),
                rp + 1,
                rp + 1,
                0.42,
                ez,
            )
        )
        rf = 4.0 if thor else 5.0
        parts.append(
            Capsule(
                W([sx * xf, yf - 2.5, 0.2 * h]),
                W([sx * (xf + 1), yf - 3.5, 0.5 * h + 0.5 * g_up + 5]),
                rf,
                rf * 0.9,
                0.85,
                ex,
            )
        )
        parts.append(
            Capsule(
                W([sx * (xf - 1), yf + 2.5, -0.05 * h]),
                W([sx * (xf - 1.5), yf + 3.5, -0.5 * h - 0.5 * g_dn - 5]),
                rf,
                rf * 0.9,
                0.85,
                ex,
            )
        )
        if thor:
            tp_a, tp_b = (
                W([sx * (rcx + 3), dc - 2, 0.15 * h]),
                W([sx * (rcx + 22), dc + 10, 0.1 * h]),
            )
            parts.append(Capsule(tp_a, tp_b, 5.0, 4.5, 0.8, ez))
        else:
            num = int(lv.name[1]) if lv.name[0] == "L" else 6
            tl = {1: 15.0, 2: 20.0, 3: 25.0, 4: 21.0, 5: 15.0, 6: 18.0}[num] * u(0.85, 1.15)
            tr = 7.0 if num >= 5 else 5.0
            parts.append(
                Capsule(
                    W([sx * (rcx + 3), dc - 3, 0.12 * h]),
                    W([sx * (rcx + 3 + tl), dc - 1, 0.18 * h]),
                    tr,
                    tr * 0.8,
                    0.65,
                    ez,
                )
            )
    if thor:
        tip = W([0, dc + ryc + 38, -1.3 * h])
        parts.append(Capsule(W([0, dc + ryc + 2, -0.05 * h]), tip, 5.5, 5.0, 0.55, ez))
    else:
        length = u(24.0, 32.0) if lv.name != "S1" else u(20.0, 26.0)
        tip = W([0, dc + ryc + length, -0.25 * h])
        parts.append(Capsule(W([0, dc + ryc + 2, -0.02 * h]), tip, 6.5, 8.5, 0.42, ez))
    return parts, [tip]


def chain(points: list[np.ndarray], radii: list[float], flats: list[float], ref) -> list:
    """Capsules through consecutive points (radius along ``ref``, r*flat across)."""
    return [
        Capsule(
            points[j], points[j + 1], radii[j], radii[j + 1], 0.5 * (flats[j] + flats[j + 1]), ref
        )
        for j in range(len(points) - 1)
    ]


def sacrum_parts(anat: Anatomy, top: int) -> tuple[list, list]:
    """Fused dorsal laminae, median crest, lateral masses (alae) and the top facets."""
    sac = [anat.levels[i] for i in range(top, len(anat.levels)) if anat.levels[i].kind == "sacral"]
    ala = ((13.0, 20.0, 6.0), (9.0, 14.0, 4.0), (6.0, 9.0, 2.0), (3.0, 5.0, 0.0))
    dorsal, d_r, d_f, crest, lat, l_r, l_f, mid, m_r, m_f = ([] for _ in range(10))
    for k, lv in enumerate(sac):
        F, b, dc = lv.frame, lv.b, lv.dc
        rcx, ryc = lv.rx + 3.5, lv.ry + 3.0
        dz = [0.5 * lv.h] if k == 0 else []
        dz += [0.0] + ([-0.5 * lv.h] if k == len(sac) - 1 else [])
        for z in dz:
            dorsal.append(F.world([0, dc + ryc + 1.5, z]))
            d_r.append(rcx + 5.0)
            d_f.append(3.2 / (rcx + 5.0))
        if k < 4:
            crest.append(F.world([0, dc + ryc + 5.5, 0]))
            off, rx, db = ala[k]
            lat.append(np.array([F.world([sx * (lv.a + off), 0.2 * b, 0]) for sx in (-1, 1)]))
            l_r.append(rx)
            l_f.append((b + db) / rx)
            mid.append(np.array([F.world([sx * (rcx + 6.0), dc, 0]) for sx in (-1, 1)]))
            m_r.append(9.0)
            m_f.append((ryc + 4.0) / 9.0)
    ex = sac[0].frame.r[0]
    parts = chain(dorsal, d_r, d_f, ex)
    parts += chain(crest, [3.0] * len(crest), [1.6] * len(crest), ex)
    for side in (0, 1):
        parts += chain([p[side] for p in lat], l_r, l_f, ex)
        parts += chain([p[side] for p in mid], m_r, m_f, ex)
    first = sac[0]
    F, h = first.frame, first.h
    rcx, ryc = first.rx + 3.5, first.ry + 3.0
    xf, yf = rcx + 3.0, first.dc + 0.35 * ryc + 1.0
    g_up = anat.joints[top - 1].gap
    for sx in (-1, 1):
        a = F.world([sx * xf, yf - 2.5, 0.2 * h])
        c = F.world([sx * (xf + 1), yf - 3.5, 0.5 * h + 0.5 * g_up + 5])
        parts.append(Capsule(a, c, 5.5, 5.0, 0.85, F.r[0]))
    tips = [p + 4.8 * sac[0].frame.r[1] for p in crest] + dorsal[-1:]
    return parts, tips


def ribs(lv: Level) -> list:
    """Posterior rib arcs of a thoracic level (shorter for T11, T12)."""
    F, h, a, b, dc = lv.frame, lv.h, lv.a, lv.b, lv.dc
    rcx = lv.rx + 3.5
    num = int(lv.name[1:])
    out = []
    for sx in (-1, 1):
        pts = [
            F.world([sx * 0.85 * a, 0.45 * b, 0.45 * h]),
            F.world([sx * (rcx + 26), dc + 12, 0.1 * h]),
            F.world([sx * (a + 80), dc - 5, -1.2 * h]),
            F.world([sx * (a + 115), dc - 55, -2.8 * h]),
        ]
        n_seg = 3 if num <= 10 else (2 if num == 11 else 1)
        out += [Capsule(pts[j], pts[j + 1], 5.0, 4.6, 0.6, F.r[2]) for j in range(n_seg)]
    return out


def arch_drawables(
    rng: np.random.Generator, anat: Anatomy, marrow: float, shell: float
) -> tuple[list, Solid, list, list]:
    """Posterior arches and ribs, ligamenta flava, facet-joint fluid and posterior tips."""
    u = rng.uniform
    bones, flava, facets, tips = [], [], [], []
    for i, v in enumerate(anat.levels):
        if v.arch not in ("thoracic", "lumbar"):
            continue
        parts, tp = arch_parts(anat, i, rng)
        bones.append(Solid(parts, "marrow", 0.8 * shell, scale=0.85 * marrow))
        tips += tp
        if v.arch == "thoracic" and int(v.name[1:]) >= 8:
            bones.append(Solid(ribs(v), "marrow", shell, scale=marrow))
        jt = anat.joints[i]
        z_joint = -0.5 * v.h - 0.5 * jt.gap
        thick = 1.6 + 0.9 * jt.grade + u(0.0, 0.8)
        fl = v.frame.moved([0.0, v.dc + v.ry + 2.5, z_joint + 1.0])
        flava.append(Ellipsoid(fl, (v.rx + 3.5, thick, 0.5 * jt.gap + 7.0)))
        xf, yf = v.rx + 6.5, v.dc + 0.35 * (v.ry + 3.0) + 1.0
        for sx in (-1, 1):
            fr = v.frame.moved([sx * xf, yf, z_joint]).spun(0, math.radians(u(-20, 20)))
            facets.append(Solid([Ellipsoid(fr, (4.0, 0.7, 7.0))], "joint", scale=u(0.4, 1.0)))
    return bones, Solid(flava, "flavum"), facets, tips


def build_spine_drawables(rng: np.random.Generator, anat: Anatomy, top: int) -> None:
    """All spine shapes in painting order (later shapes cover earlier ones)."""
    marrow, shell = rng.uniform(0.85, 1.15), rng.uniform(0.8, 1.2)
    local: list = canal_contents(rng, anat, top)
    bones, flava, facets, tips = arch_drawables(rng, anat, marrow, shell)
    parts, tp = sacrum_parts(anat, top)
    bones.append(Solid(parts, "marrow", shell, scale=marrow))
    local.append(flava)
    local += ilium_and_tp(rng, anat, top, marrow, shell)
    local += bones
    local += bodies_and_lesions(rng, anat, marrow, shell)
    local += joints_drawables(anat, marrow, shell)
    local += facets
    local += sacral_foramina(anat, top)
    anat.local = local
    anat.info["tips"] = tips + tp


def ilium_and_tp(
    rng: np.random.Generator, anat: Anatomy, top: int, marrow: float, shell: float
) -> list:
    """Iliac blades and, in sacralization, enlarged L5 transverse processes reaching the ala."""
    u = rng.uniform
    s1 = anat.levels[top]
    out = []
    for sx in (-1, 1):
        fr = s1.frame.moved([sx * (s1.a + 47.0), 0.35 * s1.b + 8.0, -0.1 * s1.h])
        fr = fr.spun(2, sx * math.radians(u(20.0, 35.0)))
        out.append(Solid([Ellipsoid(fr, (7.5, 42.0, 68.0))], "marrow", 1.6, scale=marrow))
    if anat.variant != "sacralization":
        return out
    l5 = anat.level("L5")
    jt = anat.joints[anat.index("L5")]
    sides = {"bilateral": (-1, 1), "left": (1,), "right": (-1,)}[jt.tp_fusion]
    parts = []
    for sx in sides:
        a = l5.frame.world([sx * (l5.rx + 6.5), l5.dc - 3.0, 0.1 * l5.h])
        c = s1.frame.world([sx * (s1.a + 13.0), 0.2 * s1.b, 0.5 * s1.h + u(-2.0, 2.0)])
        parts.append(Capsule(a, c, u(8.0, 10.0), 9.0, 0.75, l5.frame.r[2]))
    out.append(Solid(parts, "marrow", shell, scale=marrow))
    anat.info["tp_fusion"] = jt.tp_fusion
    return out


def bodies_and_lesions(
    rng: np.random.Generator, anat: Anatomy, marrow: float, shell: float
) -> list:
    """Vertebral bodies, basivertebral veins, an occasional haemangioma and Modic changes."""
    u = rng.uniform
    out: list = []
    lesions: list = []
    for v in anat.levels:
        assert v.body is not None
        out.append(Solid([v.body], "marrow", shell, scale=marrow * u(0.92, 1.08)))
        if v.kind in ("thoracic", "lumbar"):
            vein = Ellipsoid(v.frame.moved([0, 0.7 * v.b, 0]), (2.0, 0.3 * v.b, 1.6))
            lesions.append(Solid([vein], "venous", opacity=u(0.4, 0.9)))
    spine = [v for v in anat.levels if v.kind in ("thoracic", "lumbar")]
    if rng.random() < 0.3:
        v = spine[int(rng.integers(len(spine)))]
        c = [u(-0.5, 0.5) * v.a, u(-0.5, 0.4) * v.b, u(-0.3, 0.3) * v.h]
        r = u(3.0, 8.0)
        lesions.append(Solid([Ellipsoid(v.frame.moved(c), (r, r, r * 0.9))], "fat", scale=0.85))
    for i, jt in enumerate(anat.joints):
        if jt.grade >= 2 and rng.random() < 0.4:
            tissue = "edema" if rng.random() < 0.5 else "fat"
            for v, sgn in ((anat.levels[i], -1), (anat.levels[i + 1], 1)):
                rz = u(3.0, 6.0)
                c = [0, -0.1 * v.b, sgn * (0.5 * v.h - 0.6 * rz)]
                e = Ellipsoid(v.frame.moved(c), (0.75 * v.a, 0.75 * v.b, rz))
                lesions.append(Solid([e], tissue, opacity=u(0.5, 0.9)))
    return out + lesions


def joints_drawables(anat: Anatomy, marrow: float, shell: float) -> list:
    """Discs (mobile and coccygeal) and fused junctions between consecutive segments."""
    out: list = []
    for i, jt in enumerate(anat.joints):
        up, lo = anat.levels[i].body, anat.levels[i + 1].body
        assert up is not None and lo is not None
        out.append(Fusion(up, lo, jt, shell, marrow) if jt.kind == "fused" else Disc(up, lo, jt))
    return out


def sacral_foramina(anat: Anatomy, top: int) -> list:
    """Anterior sacral foramina (fat with a nerve) at the fused junctions."""
    fat, nerve = [], []
    for i in range(top, len(anat.levels) - 1):
        v = anat.levels[i]
        if v.kind != "sacral" or anat.levels[i + 1].kind != "sacral":
            continue
        gap = anat.joints[i].gap
        for sx in (-1, 1):
            c = [sx * (0.62 * v.a + 3.0), -0.25 * v.b, -0.5 * v.h - 0.5 * gap]
            fat.append(Ellipsoid(v.frame.moved(c), (4.5, 6.5, 4.5)))
            nerve.append(Ellipsoid(v.frame.moved(c), (1.8, 2.2, 1.8)))
    return [Solid(fat, "fat"), Solid(nerve, "nerve")]


# ----------------------------------------------------------------------------- soft tissue


def running_max(v: np.ndarray, half: int) -> np.ndarray:
    """Moving maximum over a window of 2*half+1 samples."""
    pad = np.pad(v, half, mode="edge")
    return np.max(np.stack([pad[i : i + len(v)] for i in range(2 * half + 1)]), axis=0)


def smooth(v: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (sigma in samples) with edge padding."""
    k = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
    half = len(k) // 2
    return np.convolve(np.pad(v, half, mode="edge"), k / k.sum(), mode="valid")


def build_soft_tissue(rng: np.random.Generator, anat: Anatomy, top: int) -> None:
    """Per-height lookup tables of the body outline, fat, muscles; viscera texture; organs."""
    u = rng.uniform
    g = anat.info["scale"]
    cv, lv = anat.curve, anat.levels
    zc = cv.p[:, 2]
    assert np.all(np.diff(zc) > 0), "spine curve must be monotonic in z"
    z0, dz = float(zc[0]) - 250.0, 1.0
    zg = np.arange(z0, float(zc[-1]) + 250.0, dz)
    s_z = np.interp(zg, zc, cv.s)
    xc, yc = np.interp(s_z, cv.s, cv.p[:, 0]), np.interp(s_z, cv.s, cv.p[:, 1])
    sc, dcs, _, rys = canal_arrays(lv)
    bs = np.array([v.b for v in sorted(lv, key=lambda v: v.s_c) if v.kind != "coccyx"])
    b_z = np.interp(s_z, sc, bs)
    isp0 = np.interp(s_z, sc, dcs + rys + 3.0)
    tips = np.array(anat.info.pop("tips"))
    off = tips[:, 1] - np.interp(tips[:, 2], zc, cv.p[:, 1])
    order = np.argsort(tips[:, 2])
    dtip = smooth(running_max(np.interp(zg, tips[order, 2], off[order]), 15), 10.0)
    anchors = [
        lv[-1].s_c,
        lv[top + 2].s_c,
        lv[top].s_c,
        anat.level("L3").s_c,
        anat.level("T10").s_c,
    ]

    def zone(vals: tuple[float, ...]) -> np.ndarray:
        return np.interp(s_z, anchors, vals)

    fat_post, fat_ant, fat_lat = u(6.0, 40.0) * g, u(10.0, 50.0) * g, u(10.0, 40.0) * g
    fpost = fat_post * zone((1.2, 1.2, 1.0, 1.0, 0.6))
    dpost = dtip + u(3.0, 8.0) + fpost
    abd, chest, pelvis = u(80.0, 200.0) * g, u(110.0, 150.0) * g, u(110.0, 160.0) * g
    dant = yc - smooth(yc - b_z - zone((pelvis, pelvis, 0.9 * abd, abd, chest)), 40.0)
    waist, hip, chest_w = u(125.0, 170.0) * g, u(160.0, 195.0) * g, u(140.0, 165.0) * g
    halfw = zone((hip, hip, 0.95 * hip, waist, chest_w))
    mw = zone((0.5, 15.0, 50.0, 68.0, 48.0)) * u(0.85, 1.15) * g
    tab = {
        "xc": xc,
        "yc": yc,
        "b": b_z,
        "isp0": isp0,
        "dpost": dpost,
        "dant": dant,
        "halfw": halfw,
        "fpost": fpost,
        "fant": fat_ant * zone((1.1, 1.1, 1.0, 1.0, 0.7)),
        "flat": np.full_like(zg, fat_lat),
        "mw": mw,
    }
    waves = []
    for _ in range(2):
        lam = np.exp(u(math.log(12.0), math.log(80.0), 8))
        dirs = rng.normal(size=(8, 3))
        k = dirs / np.linalg.norm(dirs, axis=1, keepdims=True) * (2 * np.pi / lam)[:, None]
        waves.append((k, u(0, 2 * np.pi, 8)))
    z_at = float(np.interp(anat.level("T10").s_c, cv.s, zc))
    s3 = lv[top + 2]
    z_g = float(s3.frame.o[2]) - 20.0
    anat.soft = SoftTissue(
        z0,
        dz,
        {k: v.astype(F32) for k, v in tab.items()},
        waves,
        z_dome=z_at + u(-15.0, 25.0),
        gluteal=(u(50.0, 70.0), z_g, u(45.0, 60.0) * g, u(70.0, 95.0) * g),
        gap_rp=u(10.0, 25.0),
        gas=u(0.2, 1.0),
    )
    anat.info.update(
        {
            "fat_post_mm": round(fat_post, 1),
            "abdomen_mm": round(abd, 1),
            "waist_mm": round(waist, 1),
        }
    )
    build_organs(rng, anat, top)


def build_organs(rng: np.random.Generator, anat: Anatomy, top: int) -> None:
    """Organs (before the lungs) and muscles/vessels drawn after the back muscles."""
    u = rng.uniform
    lv = anat.levels
    L = anat.level
    organs: list = []
    t12, l1, l2 = L("T12"), L("L1"), L("L2")
    liver = L("T11").frame.moved([-(t12.a + 45.0), -(t12.b + 45.0), 0.0])
    organs.append(Solid([Ellipsoid(liver, (75.0, 80.0, 125.0))], "liver"))
    spleen = L("T11").frame.moved([L("T11").a + 60.0, 5.0, 0.0])
    organs.append(Solid([Ellipsoid(spleen, (30.0, 40.0, 50.0))], "spleen"))
    for sx, v, dzk in ((1, l1, -0.5), (-1, l2, 0.2)):
        fr = v.frame.moved([sx * (v.a + 48.0), 0.15 * v.b + 8.0, dzk * v.h]).spun(
            2, sx * math.radians(20)
        )
        fr = fr.spun(1, -sx * math.radians(12))
        q = u(0.9, 1.1)
        organs.append(Solid([Ellipsoid(fr, (24.0 * q, 27.0 * q, 52.0 * q))], "kidney"))
        organs.append(
            Solid([Ellipsoid(fr.moved([-sx * 8.0, -4.0, 0.0]), (9.0, 10.0, 26.0))], "fat")
        )
    co = lv[-1]
    fill = u(0.5, 1.2)
    bl = Frame(co.frame.o + np.array([0.0, -u(95.0, 125.0), u(10.0, 35.0)]), np.eye(3))
    organs.append(Solid([Ellipsoid(bl, (42.0 * fill, 32.0 * fill, 34.0 * fill))], "urine"))
    late: list = []
    pso = {"T12": 5.0, "L1": 8.0, "L2": 11.0, "L3": 14.0, "L4": 17.0, "L5": 19.0}
    q = u(0.8, 1.2)
    s_top = lv[top]
    for sx in (-1, 1):
        pts, rad = [], []
        for name, r in pso.items():
            v = L(name)
            pts.append(v.frame.world([sx * (v.a + 0.6 * r * q), -0.15 * v.b, 0.0]))
            rad.append(r * q)
        pts.append(s_top.frame.world([sx * (s_top.a + 18.0), -s_top.b - 8.0, 0.0]))
        rad.append(20.0 * q)
        pts.append(
            lv[top + 1].frame.world([sx * (s_top.a + 38.0), -s_top.b - 35.0, -lv[top + 1].h])
        )
        rad.append(16.0 * q)
        caps = [Capsule(pts[j], pts[j + 1], rad[j], rad[j + 1], 0.85) for j in range(len(pts) - 1)]
        late.append(Solid(caps, "muscle"))
    late += vessels(rng, anat, top)
    anat.organs, anat.late = organs, late


def vessels(rng: np.random.Generator, anat: Anatomy, top: int) -> list:
    """Aorta with iliac arteries (flow void) and the IVC with iliac veins."""
    u = rng.uniform
    L = anat.level
    names = [v.name for v in anat.levels if v.kind == "thoracic"] + ["L1", "L2", "L3", "L4"]
    ra = u(0.85, 1.2)
    pts, rad = [], []
    for name in names:
        v = L(name)
        r = (11.0 if v.kind == "thoracic" else 9.0) * ra
        x = 0.6 * v.a + 5.0 if v.kind == "thoracic" else 0.35 * v.a + 4.0
        pts.append(v.frame.world([x, -(v.b + r + 1.5), 0.0]))
        rad.append(r)
    out = [
        Solid(
            [Capsule(pts[j], pts[j + 1], rad[j], rad[j + 1]) for j in range(len(pts) - 1)], "void"
        )
    ]
    l5, s1 = L("L5"), anat.levels[top]
    ili = []
    for sx in (-1, 1):
        q = [
            pts[-1],
            l5.frame.world([sx * (0.6 * l5.a + 10.0), -(l5.b + 8.0), -0.5 * l5.h]),
            s1.frame.world([sx * (s1.a + 22.0), -(s1.b + 12.0), -0.3 * s1.h]),
            anat.levels[top + 1].frame.world([sx * (s1.a + 35.0), -(s1.b + 20.0), -20.0]),
        ]
        ili += [Capsule(q[j], q[j + 1], 6.5 if j == 0 else 5.5, 5.5) for j in range(3)]
    out.append(Solid(ili, "void"))
    cava = []
    vnames = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    cp = [L(n).frame.world([-(0.45 * L(n).a + 6.0), -(L(n).b + 7.5), 0.0]) for n in vnames]
    cava += [Capsule(cp[j], cp[j + 1], 11.0, 11.0, 0.6) for j in range(len(cp) - 1)]
    for sx in (-1, 1):
        cava.append(
            Capsule(cp[-1], s1.frame.world([sx * (s1.a + 15.0), -(s1.b + 6.0), 0.0]), 8.0, 7.0)
        )
    out.append(Solid(cava, "venous", scale=u(0.1, 0.9)))
    return out


# ----------------------------------------------------------------------------- rendering


def superellipse(dx, dy, ax, ay, p: float) -> np.ndarray:
    """Approximate signed distance to a superellipse of half-axes (ax, ay), exponent p."""
    pp = F32(p)
    rho = (np.abs(dx / ax) ** pp + np.abs(dy / ay) ** pp) ** F32(1.0 / p)
    return (rho - 1) * np.minimum(ax, ay)


class Background:
    """Soft-tissue layers evaluated on the whole image from per-height lookup tables."""

    def __init__(self, plane: Plane, st: SoftTissue) -> None:
        self.win = plane.full()
        self.X, self.Y, self.Z = self.win.coords(IDENT)
        idx = np.clip(
            ((self.Z - F32(st.z0)) * F32(1.0 / st.dz)).astype(np.int32), 0, len(st.tab["yc"]) - 1
        )
        self.t = {k: v[idx] for k, v in st.tab.items()}
        self.st = st

    def torso(self, cv: Canvas) -> None:
        t, X, Y, sl = self.t, self.X, self.Y, self.win.sl
        yc, b = t["yc"], t["b"]
        post, ant = t["dpost"], t["dant"]
        d0 = superellipse(X, Y - (yc + 0.5 * (post - ant)), t["halfw"], 0.5 * (post + ant), 2.6)
        cv.blend(sl, cv.alpha(d0), "skin")
        cv.blend(sl, cv.alpha(d0 + F32(2.0)), "fat")
        post2, ant2 = post - t["fpost"], ant - t["fant"]
        self.inner = superellipse(
            X, Y - (yc + 0.5 * (post2 - ant2)), t["halfw"] - t["flat"], 0.5 * (post2 + ant2), 2.6
        )
        cv.blend(sl, cv.alpha(self.inner), "muscle")
        gap = F32(self.st.gap_rp)
        d_rp = superellipse(
            X - t["xc"], Y - (yc - 0.5 * (gap + 10)), F32(80.0), b + 10 + 0.5 * gap, 2.4
        )
        cv.blend(sl, cv.alpha(d_rp), "fat")
        d_v = np.maximum(self.inner + F32(12.0), Y - (yc - b - gap))
        a = cv.alpha(d_v)
        if a.any():
            self.viscera(cv, a)

    def field(self, k: np.ndarray, ph: np.ndarray) -> np.ndarray:
        """Unit-variance sum of plane waves cos(k.p + ph), separable in rows and columns."""
        out = np.zeros((self.win.i1, self.win.j1), dtype=F32)
        for kk, pp in zip(k, ph, strict=True):
            a, b = self.win.linear(kk, float(pp))
            out += np.outer(np.cos(a).astype(F32), np.cos(b).astype(F32))
            out -= np.outer(np.sin(a).astype(F32), np.sin(b).astype(F32))
        return out * F32(1 / math.sqrt(0.5 * len(k)))

    def viscera(self, cv: Canvas, a: np.ndarray) -> None:
        f1 = self.field(*self.st.waves[0])
        f2 = self.field(*self.st.waves[1])
        sl = self.win.sl
        cv.blend(sl, a, "bowel")
        cv.blend(sl, a * np.clip(f2 / 1.6 + 0.2, 0, 0.8), "fat")
        cv.blend(sl, a * np.clip((f1 - 0.9) / 0.6, 0, 0.9), "fluid")
        cv.blend(sl, a * np.clip((-f1 - 1.6) / 0.4, 0, 1) * F32(self.st.gas), "air")

    def thorax(self, cv: Canvas) -> None:
        t, X, Y, Z, sl = self.t, self.X, self.Y, self.Z, self.win.sl
        yc, xc = t["yc"], t["xc"]
        zd = F32(self.st.z_dome) - F32(0.0035) * (Y - (yc - 70)) ** 2 - F32(0.0015) * (X - xc) ** 2
        d_l = np.maximum(self.inner + F32(6.0), zd - Z)
        a = cv.alpha(d_l)
        if not a.any():
            return
        cv.blend(sl, a, "lung")
        d_m = np.maximum(d_l, np.maximum(np.abs(X - xc) - 35, Y - (yc - t["b"] - 8)))
        cv.blend(sl, cv.alpha(d_m), "heart")

    def back(self, cv: Canvas) -> None:
        t, X, Y, Z, sl = self.t, self.X, self.Y, self.Z, self.win.sl
        yc, xc, b = t["yc"], t["xc"], t["b"]
        y0, y1 = yc + b + 4, yc + t["dpost"] - t["fpost"] - 1.5
        half = np.maximum(0.5 * (y1 - y0), F32(1.0))
        d = superellipse(X - xc, Y - 0.5 * (y0 + y1), np.maximum(t["mw"], F32(0.5)), half, 3.0)
        cv.blend(sl, cv.alpha(d - F32(1.2)), "ligament")
        cv.blend(sl, cv.alpha(d), "muscle")
        gx, gz, rx, rz = self.st.gluteal
        dx = np.abs(X - xc) - F32(gx)
        dg = (np.sqrt((dx / F32(rx)) ** 2 + ((Z - F32(gz)) / F32(rz)) ** 2) - 1) * F32(rx)
        dg = np.maximum(dg, np.maximum(yc - 10 - Y, Y - (yc + t["dpost"] - 0.8 * t["fpost"])))
        cv.blend(sl, cv.alpha(dg), "muscle")
        d_is = np.maximum(np.abs(X - xc) - 2.5, np.maximum(yc + t["isp0"] - Y, Y - y1))
        cv.blend(sl, cv.alpha(d_is), "fibrofat")


def render_background(plane: Plane, anat: Anatomy, sig: dict[str, np.ndarray]) -> Canvas:
    """Soft tissue, organs, muscles and vessels on one plane (painted before the spine)."""
    cv = Canvas(sig, plane.rows, plane.cols, 0.5 * (plane.dr + plane.dc))
    assert anat.soft is not None
    bg = Background(plane, anat.soft)
    bg.torso(cv)
    for d in anat.organs:
        d.draw(plane, cv)
    bg.thorax(cv)
    bg.back(cv)
    for d in anat.late:
        d.draw(plane, cv)
    return cv


def render_slice(plane: Plane, thickness: float, anat: Anatomy, sig, n_sub: int) -> np.ndarray:
    """Signal of one slice: background on the centre plane, spine supersampled through the slab."""
    base = render_background(plane, anat, sig)
    offs = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    wts = np.cos(offs * np.pi * 0.8)
    wts = wts / wts.sum()
    acc = np.zeros_like(base.img)
    for off, w in zip(offs, wts, strict=True):
        sub_plane = plane.shifted(float(off) * thickness)
        cv = base.copy()
        for d in anat.local:
            d.draw(sub_plane, cv)
        acc += F32(w) * cv.img
    return acc


def kspace_window(n: int, frac: float, roll: float) -> np.ndarray:
    """1-D k-space window: truncation at ``frac`` of Nyquist with a raised-cosine roll-off."""
    k = np.abs(np.fft.fftfreq(n)) / 0.5
    k0 = frac * (1.0 - roll)
    w = np.ones(n)
    m = k > k0
    w[m] = 0.5 * (1 + np.cos(np.pi * np.clip((k[m] - k0) / max(frac - k0, 1e-6), 0.0, 1.0)))
    return w


def acquire(
    img: np.ndarray, bias: np.ndarray, acq: dict, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Coil sensitivity, k-space truncation/filter and complex noise -> magnitude image."""
    x = img * bias
    rows, cols = x.shape
    ph = acq["phase_dir"] == "COL"
    fr, fc = (acq["phase_frac"], acq["read_frac"]) if ph else (acq["read_frac"], acq["phase_frac"])
    spec = np.fft.rfft2(x)
    spec *= (
        kspace_window(rows, fr, acq["roll"])[:, None]
        * kspace_window(cols, fc, acq["roll"])[None, : cols // 2 + 1]
    ).astype(spec.real.dtype)
    x = np.fft.irfft2(spec, s=(rows, cols))
    n1 = rng.standard_normal((rows, cols), dtype=np.float32)
    n2 = rng.standard_normal((rows, cols), dtype=np.float32)
    return np.sqrt((x + F32(sigma) * n1) ** 2 + (F32(sigma) * n2) ** 2)


def coil_bias(plane: Plane, acq: dict) -> np.ndarray:
    """Posterior surface-coil sensitivity: decay with depth from the table, SI fall-off."""
    _, Y, Z = plane.full().coords(IDENT)
    d = np.maximum(F32(acq["coil_y"]) - Y, 0.0)
    f = F32(acq["coil_floor"]) + F32(1 - acq["coil_floor"]) * np.exp(-d / F32(acq["coil_len"]))
    zz = (Z - F32(acq["coil_z"])) / F32(acq["coil_si"])
    return (f * np.clip(1 - 0.5 * zz * zz, 0.55, 1.0)).astype(F32)


# ----------------------------------------------------------------------------- acquisition


VENDORS = [
    {
        "manufacturer": "SIEMENS",
        "models": [
            ("Avanto", 1.5),
            ("Aera", 1.5),
            ("MAGNETOM Sola", 1.5),
            ("Skyra", 3.0),
            ("Prisma", 3.0),
            ("MAGNETOM Vida", 3.0),
        ],
        "t2": ["t2_tse_sag_p2", "t2_tse_sag_384", "t2_tse_sag"],
        "t1": ["t1_tse_sag", "t1_tse_sag_p2"],
        "ax": ["t2_tse_tra", "t2_tse_tra_p2"],
        "software": "syngo MR E11",
        "bits": 12,
        "rescale": 0.0,
        "image_type": ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
        "coil": "Spine_32",
        "variant": ["SK", "SP", "OSP"],
        "weight": 0.3,
    },
    {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "models": [
            ("SIGNA Explorer", 1.5),
            ("Optima MR450w", 1.5),
            ("DISCOVERY MR750w", 3.0),
            ("SIGNA Architect", 3.0),
            ("SIGNA Premier", 3.0),
        ],
        "t2": ["Sag T2 FSE", "SAG FRFSE T2", "SAG T2"],
        "t1": ["Sag T1", "SAG T1 FSE"],
        "ax": ["Ax T2", "AX T2 FSE"],
        "software": "27\\LX\\MR Software release:RX27.0_R02_1831.a",
        "bits": 16,
        "rescale": 0.0,
        "image_type": ["ORIGINAL", "PRIMARY", "OTHER"],
        "coil": "CTL456",
        "variant": ["SK", "OSP"],
        "weight": 0.25,
    },
    {
        "manufacturer": "Philips Medical Systems",
        "models": [
            ("Achieva", 1.5),
            ("Ingenia", 1.5),
            ("Ingenia", 3.0),
            ("Achieva dStream", 3.0),
            ("Ingenia Elition X", 3.0),
        ],
        "t2": ["T2W_TSE SAG", "sT2W_TSE_SAG", "T2W_TSE_SAG"],
        "t1": ["T1W_TSE SAG", "sT1W_TSE_SAG"],
        "ax": ["T2W_TSE TRA", "T2W_TSE_TRA"],
        "software": "5.6.1\\5.6.1.2",
        "bits": 12,
        "rescale": 0.8,
        "image_type": ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
        "coil": "dS Posterior",
        "variant": ["SK"],
        "weight": 0.25,
    },
    {
        "manufacturer": "CANON_MEC",
        "models": [("Vantage Orian", 1.5), ("Vantage Elan", 1.5), ("Vantage Galan 3T", 3.0)],
        "t2": ["T2WI SAG", "T2 FSE SAG"],
        "t1": ["T1WI SAG", "T1 FSE SAG"],
        "ax": ["T2WI AX", "T2WI TRA"],
        "software": "V6.0SP3001",
        "bits": 16,
        "rescale": 0.2,
        "image_type": ["ORIGINAL", "PRIMARY", "OTHER"],
        "coil": "SPEEDER Spine",
        "variant": ["SK"],
        "weight": 0.1,
    },
    {
        "manufacturer": "FUJIFILM Healthcare Corporation",
        "models": [("ECHELON Smart", 1.5), ("ECHELON OVAL", 1.5), ("TRILLIUM OVAL", 3.0)],
        "t2": ["T2 TSE SAG", "T2W SAG", "T2WI_SAG"],
        "t1": ["T1W SAG", "T1WI_SAG"],
        "ax": ["T2W AX", "T2WI_AX"],
        "software": "V5.1",
        "bits": 12,
        "rescale": 0.0,
        "image_type": ["ORIGINAL", "PRIMARY", "OTHER"],
        "coil": "WIT Spine",
        "variant": ["SK"],
        "weight": 0.1,
    },
]
MATRICES = (256, 288, 320, 352, 384, 416, 448, 512, 576, 640)


def draw_tissues(rng: np.random.Generator, field_t: float) -> dict[str, tuple[float, float, float]]:
    """Per-study (PD, T1, T2): field-strength dependence and about +-20 % variation."""
    c1, c2 = rng.uniform(0.88, 1.12, 2)
    out = {}
    for name, (pd, t1, t2) in TISSUES.items():
        if field_t > 2.0:
            t1 *= T1_AT_3T.get(name, T1_AT_3T_DEFAULT)
            t2 *= 0.95 if name == "fat" else 0.9
        pd *= rng.uniform(0.9, 1.1)
        t1 *= c1 * rng.uniform(0.9, 1.1)
        t2 *= c2 * rng.uniform(0.9, 1.1)
        out[name] = (pd, t1, t2)
    return out


def tissue_signals(tissues: dict, params: list[tuple[float, float]]) -> dict[str, np.ndarray]:
    """Spin-echo signal S = PD (1 - exp(-TR/T1)) exp(-TE/T2) per tissue, one value per series."""
    return {
        name: np.array(
            [pd * (1 - math.exp(-tr / t1)) * math.exp(-te / t2) for tr, te in params], dtype=F32
        )
        for name, (pd, t1, t2) in tissues.items()
    }


def pick_matrix(rng: np.random.Generator, fov: float) -> int:
    """A scanner matrix giving a pixel size of 0.4-1.2 mm over ``fov``."""
    ok = [m for m in MATRICES if 0.4 <= fov / m <= 1.2]
    return int(ok[int(rng.integers(len(ok)))]) if ok else 640


def stack_planes(centre, normal, row, col, n: int, step: float, pix, shape, sign: float) -> list:
    """``n`` parallel planes centred on ``centre`` (pix = (dr, dc), shape = (rows, cols))."""
    (dr, dc), (rows, cols) = pix, shape
    planes = []
    for k in range(n):
        c = centre + sign * (k - (n - 1) / 2) * step * normal
        o = c - (cols - 1) / 2 * dc * row - (rows - 1) / 2 * dr * col
        planes.append(Plane(o, row, col, dr, dc, rows, cols))
    return planes


def sagittal_orientation(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Row/column directions: anterior left or right, head up or down, oblique about z and y."""
    ant_left, head_up = bool(rng.random() < 0.7), bool(rng.random() < 0.85)
    yaw, tilt = rng.uniform(-10.0, 10.0, 2)
    rot = rotation(AX_Y, math.radians(tilt)) @ rotation(AX_Z, math.radians(yaw))
    row = rot @ np.array([0.0, 1.0 if ant_left else -1.0, 0.0])
    col = rot @ np.array([0.0, 0.0, -1.0 if head_up else 1.0])
    info = {"anterior_left": ant_left, "head_up": head_up}
    return row, col, info | {"yaw_deg": round(yaw, 1), "tilt_deg": round(tilt, 1)}


def head_foot_fov(
    rng: np.random.Generator, anat: Anatomy, ref: np.ndarray, col: np.ndarray
) -> tuple[float, float]:
    """FOV length along ``col`` and its centre: from above L1 to >= 40 mm below L5-S1."""
    l1 = anat.level("L1").body
    assert l1 is not None
    s_l5s1 = 0.5 * (anat.level("L5").s_c + anat.levels[anat.index("L5") + 1].s_c)
    pts = (l1.endplate(True), anat.curve.point(s_l5s1 - 40.0), anat.level("T6").frame.o)
    v_top, v_low, v_head = (float((p - ref) @ col) for p in pts)
    need_lo, need_hi = min(v_top, v_low) - 12.0, max(v_top, v_low) + 12.0
    fov = max(need_hi - need_lo + 10.0, rng.uniform(260.0, 440.0))
    if v_head < need_lo:  # never reach above T6
        fov = min(fov, need_hi - v_head)
        lo, hi = max(need_hi - fov / 2, v_head + fov / 2), need_lo + fov / 2
    else:
        fov = min(fov, v_head - need_lo)
        lo, hi = need_hi - fov / 2, min(need_lo + fov / 2, v_head - fov / 2)
    return fov, rng.uniform(lo, max(lo, hi))


def ap_fov(
    rng: np.random.Generator, anat: Anatomy, ref: np.ndarray, row: np.ndarray, cols: int, dc: float
) -> tuple[int, float, float]:
    """Columns, column spacing and the row-direction centre: posterior skin always inside."""
    l3, st = anat.level("L3"), anat.soft
    assert st is not None
    zi = int(np.clip((l3.frame.o[2] - st.z0) / st.dz, 0, len(st.tab["yc"]) - 1))
    skin = ref.copy()
    skin[1] = float(st.tab["yc"][zi] + st.tab["dpost"][zi])
    u_post = float((skin - ref) @ row)
    u_ant = float((l3.frame.world([0.0, -l3.b, 0.0]) - ref) @ row)
    need = abs(u_post - u_ant) + 60.0
    if cols * dc < need:
        cols = min(640, math.ceil(need / dc / 16) * 16)
        dc = max(dc, need / cols)
    margin = min(rng.uniform(5.0, 45.0), max(5.0, cols * dc - need + 5.0))
    sign = 1.0 if u_post > u_ant else -1.0
    return cols, dc, u_post + sign * (margin - cols * dc / 2)


def sagittal_geometry(rng: np.random.Generator, anat: Anatomy) -> dict:
    """Sagittal stack shared by the T2 (target) and T1 (decoy) series."""
    u = rng.uniform
    row, col, info = sagittal_orientation(rng)
    normal = np.cross(row, col)
    ref = canal_point(anat, anat.level("L3").s_c)
    fov, v_c = head_foot_fov(rng, anat, ref, col)
    rows = pick_matrix(rng, fov)
    dr = fov / rows
    dc = dr * (1 + u(-0.07, 0.07)) if rng.random() < 0.25 else dr
    aspect = (1.0, 1.0, 0.875, 0.8, 0.75)[int(rng.integers(5))]
    cols, dc, u_c = ap_fov(rng, anat, ref, row, max(256, round(rows * aspect / 16) * 16), dc)
    thick = u(3.0, 5.0)
    gap = 0.0 if rng.random() < 0.2 else u(0.2, 1.5)
    nsl = int(rng.integers(9, 26))
    lateral = u(-8.0, 8.0)
    centre = ref + u_c * row + v_c * col + lateral * normal
    sign = 1.0 if rng.random() < 0.5 else -1.0
    planes = stack_planes(centre, normal, row, col, nsl, thick + gap, (dr, dc), (rows, cols), sign)
    seen = [lv.name for lv in anat.levels if abs(float((lv.frame.o - ref) @ col) - v_c) < fov / 2]
    info |= {
        "slices": nsl,
        "thickness_mm": round(thick, 2),
        "gap_mm": round(gap, 2),
        "rows": rows,
        "cols": cols,
        "pixel_mm": [round(dr, 3), round(dc, 3)],
        "lateral_offset_mm": round(lateral, 1),
        "coverage": f"{seen[0]}-{seen[-1]}",
    }
    return {"planes": planes, "thickness": thick, "gap": gap, "info": info}


def axial_geometry(rng: np.random.Generator, anat: Anatomy) -> dict:
    """Short axial stack from L3 to S1, angled roughly to the L4-L5 disc."""
    u = rng.uniform
    l3, l4, l5 = anat.level("L3"), anat.level("L4"), anat.level("L5")
    n = rotation(AX_X, math.radians(u(-6.0, 6.0))) @ unit(l4.frame.r[2] + l5.frame.r[2])
    row = rotation(n, math.radians(u(-5.0, 5.0))) @ unit(AX_X - (AX_X @ n) * n)
    col = np.cross(n, row)
    thick, gap = u(3.5, 5.0), u(0.3, 1.5)
    s1 = anat.levels[anat.index("L5") + 1].body
    assert s1 is not None
    bot = s1.endplate(True)
    span = float((l3.frame.o - bot) @ n)
    nsl = int(np.clip(math.ceil(span / (thick + gap)) + 1, 12, 30))
    fov = u(170.0, 240.0)
    rows = min(pick_matrix(rng, fov), 512)
    dr = fov / rows
    cols = rows if rng.random() < 0.7 else max(256, round(rows * 0.875 / 16) * 16)
    inplane = l4.frame.world([0.0, 0.6 * l4.b, 0.0]) + np.array([0.0, u(-10.0, 10.0), 0.0])
    mid = inplane + float((bot + 0.5 * span * n - inplane) @ n) * n
    sign = 1.0 if rng.random() < 0.5 else -1.0
    planes = stack_planes(mid, n, row, col, nsl, thick + gap, (dr, dr), (rows, cols), sign)
    info = {"slices": nsl, "thickness_mm": round(thick, 2), "rows": rows, "cols": cols}
    return {
        "planes": planes,
        "thickness": thick,
        "gap": gap,
        "info": info | {"pixel_mm": round(dr, 3)},
    }


def image_chain(rng: np.random.Generator) -> dict:
    """Reconstruction and noise parameters of one series."""
    u = rng.uniform
    return {
        "snr": float(math.exp(u(math.log(8.0), math.log(60.0)))),
        "read_frac": u(0.8, 1.0),
        "phase_frac": u(0.6, 1.0),
        "roll": u(0.05, 0.3),
        "phase_dir": "COL" if rng.random() < 0.7 else "ROW",
        "max_value": u(800.0, 4000.0),
    }


# ----------------------------------------------------------------------------- study


@dataclass
class SeriesSpec:
    key: str  # t2 (sagittal T2, target) | t1 (sagittal T1) | ax (axial T2)
    number: int
    description: str
    tr: float
    te: float
    etl: int
    geom: dict
    chain: dict = field(default_factory=dict)
    images: list = field(default_factory=list)


@dataclass
class Study:
    seed: int
    index: int
    anat: Anatomy
    vendor: dict
    model: str
    field: float
    specs: list[SeriesSpec]
    tissues: dict
    patient: dict
    coil: dict
    n_sub: int = 3

    def uid(self, *parts: object) -> str:
        """Deterministic UID from seed, index and the given parts, joined with a separator
        (generate_uid hashes the concatenation of its sources)."""
        src = ["seventh", str(self.seed), str(self.index), *map(str, parts)]
        return generate_uid(entropy_srcs=["|".join(src)])


def draw_series(rng: np.random.Generator, anat: Anatomy, vendor: dict) -> list[SeriesSpec]:
    """Series numbers, names, TR/TE/ETL and geometry of the three series."""
    u = rng.uniform

    def pick(opts: list[str]) -> str:
        return opts[int(rng.integers(len(opts)))]

    sag, ax = sagittal_geometry(rng, anat), axial_geometry(rng, anat)
    first = int(rng.integers(2, 5))
    order = (("t1", "t2", "ax"), ("t2", "t1", "ax"), ("t2", "ax", "t1"))[int(rng.integers(3))]
    philips = vendor["manufacturer"].startswith("Philips")
    num = {key: (first + i) * 100 + 1 if philips else first + i for i, key in enumerate(order)}
    table = (
        ("t2", (2500, 5000), (80, 130), (12, 26), sag),
        ("t1", (400, 800), (8, 20), (2, 6), sag),
        ("ax", (3000, 6000), (80, 120), (12, 24), ax),
    )
    return [
        SeriesSpec(key, num[key], pick(vendor[key]), u(*tr), u(*te), int(rng.integers(*etl)), geom)
        for key, tr, te, etl, geom in table
    ]


def draw_study(seed: int, index: int) -> Study:
    """Anatomy (own random stream) and acquisition (own stream, same for every variant)."""
    anat = build_anatomy(np.random.default_rng([seed, index, 1]), VARIANTS[index % 4])
    rng = np.random.default_rng([seed, index, 2])
    u = rng.uniform
    w = np.array([v["weight"] for v in VENDORS])
    vendor = VENDORS[int(rng.choice(len(VENDORS), p=w / w.sum()))]
    model, field_t = vendor["models"][int(rng.integers(len(vendor["models"])))]
    specs = draw_series(rng, anat, vendor)
    for spec in specs:
        spec.chain = image_chain(rng)
    hms = rng.integers((7, 0, 0), (20, 60, 60))
    patient = {
        "sex": anat.info["sex"],
        "age": int(rng.integers(22, 85)),
        "date": dt.date(2014, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650))),
        "time": "".join(f"{int(v):02d}" for v in hms),
    }
    assert anat.soft is not None
    coil = {
        "coil_floor": u(0.12, 0.35),
        "coil_len": u(90.0, 200.0),
        "coil_si": u(160.0, 300.0),
        "coil_z": anat.level("L3").frame.o[2] + u(-40.0, 40.0),
        "coil_y": float(np.max(anat.soft.tab["yc"] + anat.soft.tab["dpost"])) + u(0.0, 10.0),
    }
    tissues = draw_tissues(np.random.default_rng([seed, index, 3]), field_t)
    return Study(seed, index, anat, vendor, model, field_t, specs, tissues, patient, coil)


def render_study(study: Study) -> None:
    """Render the three series (sagittal T2 and T1 share one pass) into float images."""
    t2, t1, ax = study.specs
    sig_sag = tissue_signals(study.tissues, [(t2.tr, t2.te), (t1.tr, t1.te)])
    sig_ax = tissue_signals(study.tissues, [(ax.tr, ax.te)])
    raw_sag = [
        render_slice(p, t2.geom["thickness"], study.anat, sig_sag, study.n_sub)
        for p in t2.geom["planes"]
    ]
    raw_ax = [
        render_slice(p, ax.geom["thickness"], study.anat, sig_ax, study.n_sub)
        for p in ax.geom["planes"]
    ]
    for i, (spec, raw, ch) in enumerate(((t2, raw_sag, 0), (t1, raw_sag, 1), (ax, raw_ax, 0))):
        rng = np.random.default_rng([study.seed, study.index, 10 + i])
        clean = np.stack([r[ch] for r in raw])
        fg = clean[clean > 0.15 * np.percentile(clean, 99.5)]
        sigma = float(fg.mean()) / spec.chain["snr"]
        spec.images = [
            acquire(clean[k], coil_bias(p, study.coil), spec.chain, sigma, rng)
            for k, p in enumerate(spec.geom["planes"])
        ]


def to_stored(images: list[np.ndarray], chain: dict, bits: int, slope: float) -> list[np.ndarray]:
    """Scale the series so that its maximum is ``max_value`` (real-world), store as uint16."""
    top = max(float(im.max()) for im in images)
    scale = chain["max_value"] / max(top, 1e-6)
    lim = (1 << bits) - 1
    return [np.clip(np.rint(im * scale / slope), 0, lim).astype(np.uint16) for im in images]


def write_series(out: Path, spec: SeriesSpec, study: Study, ids: dict) -> None:
    """Write one series as Part-10 files (one folder per series)."""
    vendor = study.vendor
    rng = np.random.default_rng([study.seed, study.index, 20 + spec.number])
    bits = vendor["bits"]
    slope = float(rng.choice([1.0, 1.5, 2.0, 2.44])) if rng.random() < vendor["rescale"] else 1.0
    stored = to_stored(spec.images, spec.chain, bits, slope)
    real = np.concatenate([s.ravel()[::7] for s in stored]).astype(float) * slope
    lo, hi = np.percentile(real, 1), np.percentile(real, 99.5)
    ids[spec.key] = study.uid(spec.key, "series")
    folder = out / f"SE{spec.number:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    for k, (plane, px) in enumerate(zip(spec.geom["planes"], stored, strict=True)):
        ds = base_dataset(study, ids)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = study.uid(spec.key, "sop", k)
        ds.SeriesInstanceUID = ids[spec.key]
        ds.SeriesNumber = spec.number
        ds.SeriesDescription = spec.description
        ge = vendor["manufacturer"].startswith("GE")
        ds.ProtocolName = "L-SPINE ROUTINE" if ge else spec.description
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        acquisition_attrs(ds, spec, study, plane)
        image_attrs(ds, plane, bits)
        ds.WindowCenter = round(float(0.5 * (lo + hi)), 1)
        ds.WindowWidth = round(float(max(hi - lo, 1.0)), 1)
        if slope != 1.0 or vendor["rescale"] > 0.5:
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, slope, "US"
        ds.add_new(0x7FE00010, "OW", px.astype("<u2").tobytes())
        ds.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)


def base_dataset(study: Study, ids: dict) -> Dataset:
    """Patient, study and equipment attributes shared by every image of the study."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    vendor, pat = study.vendor, study.patient
    date = pat["date"].strftime("%Y%m%d")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = vendor["image_type"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = pat["time"]
    ds.AccessionNumber = f"S7{study.seed:02d}{study.index:04d}"
    ds.Modality = "MR"
    ds.Manufacturer = vendor["manufacturer"]
    ds.InstitutionName = "Seventh Synthetic Imaging"
    ds.ReferringPhysicianName = ""
    ds.StationName = "SYNMR01"
    ds.StudyDescription = "MR LUMBAR SPINE"
    ds.ManufacturerModelName = study.model
    ds.PatientName = f"SEVENTH^P{study.seed:02d}{study.index:03d}"
    ds.PatientID = f"S7-{study.seed}-{study.index:03d}"
    ds.PatientBirthDate = f"{pat['date'].year - pat['age']}0615"
    ds.PatientSex = pat["sex"]
    ds.PatientAge = f"{pat['age']:03d}Y"
    ds.PatientWeight = 55 + 10 * (pat["age"] % 4)
    ds.BodyPartExamined = "LSPINE"
    ds.StudyInstanceUID = ids["study"]
    ds.FrameOfReferenceUID = ids["for"]
    ds.PositionReferenceIndicator = ""
    ds.StudyID = f"{study.index + 1}"
    ds.PatientPosition = "HFS"
    return ds


def acquisition_attrs(ds: Dataset, spec: SeriesSpec, study: Study, plane: Plane) -> None:
    """MR acquisition attributes (sequence, timing, field, coil, matrix)."""
    maker = study.vendor["manufacturer"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = study.vendor["variant"]
    ds.ScanOptions = "FAST_GEMS" if maker.startswith("GE") else ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = f"*tse2d1_{spec.etl}" if maker == "SIEMENS" else "TSE"
    ds.SliceThickness = round(spec.geom["thickness"], 3)
    ds.SpacingBetweenSlices = round(spec.geom["thickness"] + spec.geom["gap"], 3)
    ds.RepetitionTime = round(spec.tr, 1)
    ds.EchoTime = round(spec.te, 2)
    ds.EchoTrainLength = spec.etl
    ds.NumberOfAverages = 2 if spec.key == "ax" else 1
    ds.ImagingFrequency = 63.87 if study.field < 2 else (123.25 if maker == "SIEMENS" else 127.74)
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = 1
    ds.MagneticFieldStrength = study.field
    ds.FlipAngle = 150 if maker == "SIEMENS" else 90
    ds.PixelBandwidth = 250 if spec.key == "t1" else 190
    ds.SoftwareVersions = study.vendor["software"]
    ds.ReceiveCoilName = study.vendor["coil"]
    ds.TransmitCoilName = "Body"
    phase = int(plane.rows * spec.chain["phase_frac"])
    freq = int(plane.cols * spec.chain["read_frac"])
    ds.InPlanePhaseEncodingDirection = spec.chain["phase_dir"]
    col = spec.chain["phase_dir"] == "COL"
    ds.AcquisitionMatrix = [0, freq, phase, 0] if col else [freq, 0, 0, phase]
    ds.PercentSampling = 100
    ds.PercentPhaseFieldOfView = 100


def image_attrs(ds: Dataset, plane: Plane, bits: int) -> None:
    """Image plane and pixel description (IPP = centre of the first transmitted pixel)."""
    ds.ImagePositionPatient = [round(float(v), 4) for v in plane.origin]
    ds.ImageOrientationPatient = [round(float(v), 6) for v in (*plane.row, *plane.col)]
    centre = (
        plane.origin
        + (plane.cols - 1) / 2 * plane.dc * plane.row
        + (plane.rows - 1) / 2 * plane.dr * plane.col
    )
    ds.SliceLocation = round(float(centre @ plane.normal), 4)
    ds.PixelSpacing = [round(plane.dr, 6), round(plane.dc, 6)]
    ds.Rows, ds.Columns = plane.rows, plane.cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0


def write_study(out_root: Path, seed: int, index: int) -> dict:
    """Draw, render and write one study with its truth.json; returns the truth."""
    study = draw_study(seed, index)
    render_study(study)
    out = out_root / f"seventh-{index:03d}"
    out.mkdir(parents=True, exist_ok=True)
    ids = {"study": study.uid("study"), "for": study.uid("frame-of-reference")}
    for spec in study.specs:
        write_series(out, spec, study, ids)
    anat = study.anat
    discs = [
        {"level": name, "patient_xyz": [round(float(v), 3) for v in anat.disc_center(f"L{k + 1}")]}
        for k, name in enumerate(LUMBAR_DISCS)
    ]
    truth = {
        "set": "seventh",
        "variation": "seventh",
        "variant": anat.variant,
        "lstv": anat.variant != "normal",
        "seed": seed,
        "index": index,
        "study_instance_uid": ids["study"],
        "t2_series_instance_uid": ids["t2"],
        "slice_normal": [round(float(v), 6) for v in study.specs[0].geom["planes"][0].normal],
        "discs": discs,
        "acquisition": acquisition_summary(study),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth


def acquisition_summary(study: Study) -> dict:
    """The drawn acquisition and anatomy parameters (free-form, for the truth file)."""

    def series(s: SeriesSpec) -> dict:
        return {
            "number": s.number,
            "description": s.description,
            "tr_ms": round(s.tr, 1),
            "te_ms": round(s.te, 1),
            **s.geom["info"],
            "snr": round(s.chain["snr"], 1),
            "phase_frac": round(s.chain["phase_frac"], 2),
            "max_value": round(s.chain["max_value"]),
        }

    t2, t1, ax = study.specs
    return {
        "manufacturer": study.vendor["manufacturer"],
        "model": study.model,
        "field_t": study.field,
        "coil_floor": round(study.coil["coil_floor"], 2),
        "coil_len_mm": round(study.coil["coil_len"], 1),
        "t2_sag": series(t2),
        "t1_sag": series(t1),
        "t2_ax": series(ax),
        "anatomy": study.anat.info,
    }


def main() -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        t0 = time.perf_counter()
        truth = write_study(args.out_dir, args.seed, i)
        dt_s = time.perf_counter() - t0
        print(f"seventh-{i:03d} {truth['variant']:14s} {dt_s:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
