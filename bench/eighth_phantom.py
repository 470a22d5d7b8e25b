"""Eighth phantom: synthetic lumbar-spine MR studies (DICOM) with known LSTV truth.

Reserved blind test set generator, built independently of the other phantoms.

Model
-----
Anatomy is a voxel *label* volume (about 0.7 mm isotropic) of the lower trunk in DICOM patient
coordinates (LPS: +x patient left, +y posterior, +z head).  The spine is a chain of vertebrae in
the mid-sagittal plane ``x = x_spine``; each body is a superelliptic slab between two tilted
endplate planes, each junction (disc, fused sacral junction or rudimentary disc) fills the space
between the adjacent endplates.  Posterior elements, canal contents, sacrum, ilium, muscles,
fat, bowel, vessels and abdominal organs are painted on top.  Degenerative changes (disc
dehydration and narrowing, bulges/protrusions, Modic changes, osteophytes, facet hypertrophy,
ligamentum flavum thickening) occur in every variant, as do normal variants (Schmorl nodes,
large L5 transverse processes, a faint S1-S2 disc remnant).

Every image plane is rendered by trilinear interpolation of per-tissue spin-echo signal
``PD * (1 - exp(-TR / T1)) * exp(-TE / T2)`` (1.5 T or 3 T relaxation times) averaged over
sub-planes across the slice thickness, on an acquisition grid, followed by posterior-coil
sensitivity, complex Gaussian noise (Rician magnitude), k-space apodisation, optional
motion ghosting and zero-filled Fourier interpolation to the display matrix.

Each study has three series: sagittal T2 (target), sagittal T1 and axial T2 (decoys), and a
``truth.json``.  Variant by ``index % 4``: 0 and 2 normal, 1 lumbarization, 3 sacralization.

Usage::

    python bench/eighth_phantom.py OUT_DIR --count N --seed S
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

# --------------------------------------------------------------------------------------------
# Labels and tissue properties
# --------------------------------------------------------------------------------------------

AIR, SKIN, FAT, MUSCLE, VFAT, BOWEL, BOWEL_FLUID, VESSEL, CSF, CORD = range(10)
CORTEX, ENDPLATE, LIGAMENT, ANULUS, NUC1, NUC2, NUC3, SACRUM, ILIUM = range(10, 19)
MODIC1, MODIC2, SCLEROSIS, FLUID, KIDNEY, LIVER, CARTILAGE, LUNG = range(19, 27)
MARROW0 = 32
N_MARROW = 9
MARROW_FF = np.linspace(0.1, 0.9, N_MARROW)
DISC_LABELS = (ANULUS, NUC1, NUC2, NUC3, FLUID)
SOFT = (FAT, MUSCLE, VFAT)
NOT_SACRUM = tuple(lab for lab in range(256) if lab != SACRUM)
NUCLEUS_BY_GRADE = {1: NUC1, 2: NUC1, 3: NUC2, 4: NUC3, 5: NUC3}
HEIGHT_BY_GRADE = {1: 1.0, 2: 0.97, 3: 0.87, 4: 0.72, 5: 0.48}

# label: (PD, T1 at 1.5 T, T1 at 3 T, T2 at 1.5 T, T2 at 3 T); fat T2 is the effective TSE value
TISSUE: dict[int, tuple[float, float, float, float, float]] = {
    AIR: (0.0, 1000, 1000, 1, 1),
    SKIN: (0.7, 600, 800, 40, 35),
    FAT: (1.0, 260, 380, 120, 105),
    MUSCLE: (0.8, 1000, 1400, 40, 33),
    VFAT: (0.95, 270, 390, 115, 100),
    BOWEL: (0.8, 900, 1250, 70, 60),
    BOWEL_FLUID: (0.95, 2500, 3000, 400, 330),
    VESSEL: (0.9, 1200, 1650, 250, 200),
    CSF: (1.0, 4000, 4300, 1800, 1600),
    CORD: (0.75, 850, 1100, 80, 70),
    CORTEX: (0.06, 1000, 1200, 3, 3),
    ENDPLATE: (0.25, 800, 1000, 15, 13),
    LIGAMENT: (0.15, 800, 1000, 10, 9),
    ANULUS: (0.6, 900, 1150, 45, 38),
    NUC1: (0.95, 1200, 1500, 130, 115),
    NUC2: (0.85, 1100, 1400, 85, 75),
    NUC3: (0.7, 1000, 1250, 55, 48),
    MODIC1: (0.9, 1200, 1500, 110, 95),
    SCLEROSIS: (0.2, 800, 1000, 15, 13),
    FLUID: (1.0, 3500, 4000, 1200, 1000),
    KIDNEY: (0.85, 900, 1200, 90, 80),
    LIVER: (0.75, 580, 810, 50, 42),
    CARTILAGE: (0.7, 1000, 1200, 40, 35),
    LUNG: (0.04, 1200, 1400, 30, 25),
}
RED_MARROW = (0.75, 550, 800, 50, 45)


def uid(*parts: object) -> str:
    """Deterministic UID from ``"eighth|part1|part2|..."`` (one joined entropy source)."""
    return generate_uid(entropy_srcs=["|".join(["eighth", *(str(p) for p in parts)])])


def marrow_label(ff: float) -> int:
    """Marrow label for a fat fraction."""
    return MARROW0 + int(np.clip(round((ff - 0.1) / 0.1), 0, N_MARROW - 1))


def spin_echo(p: tuple[float, ...], tr: float, te: float, b0: float) -> float:
    """Spin-echo signal of tissue ``p`` at field ``b0``."""
    k = 0 if b0 < 2.0 else 1
    return p[0] * (1.0 - math.exp(-tr / p[1 + k])) * math.exp(-te / p[3 + k])


def signal_lut(tr: float, te: float, b0: float, ff: dict[str, float], vessel: float) -> np.ndarray:
    """Per-label signal for one acquisition."""
    lut = np.zeros(256, np.float32)
    for lab, p in TISSUE.items():
        lut[lab] = spin_echo(p, tr, te, b0)
    fat, red = spin_echo(TISSUE[FAT], tr, te, b0), spin_echo(RED_MARROW, tr, te, b0)

    def mix(f: float) -> float:
        return 0.9 * (f * fat + (1.0 - f) * red)

    for i, f in enumerate(MARROW_FF):
        lut[MARROW0 + i] = mix(float(f))
    lut[SACRUM] = mix(ff["sacrum"])
    lut[ILIUM] = mix(ff["ilium"])
    lut[MODIC2] = mix(0.93)
    lut[VESSEL] *= vessel
    return lut


@lru_cache(maxsize=64)
def allowed(only: tuple[int, ...]) -> np.ndarray:
    """Boolean lookup table of labels that may be overwritten."""
    lut = np.zeros(256, bool)
    lut[list(only)] = True
    return lut


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def up_vec(alpha: float) -> np.ndarray:
    """Superior axis of a segment tilted by ``alpha`` (positive: top leans anterior)."""
    return np.array([0.0, -math.sin(alpha), math.cos(alpha)])


def post_vec(alpha: float) -> np.ndarray:
    """Posterior axis of a segment tilted by ``alpha``."""
    return np.array([0.0, math.cos(alpha), math.sin(alpha)])


@dataclass
class Frame:
    """Local frame rotated about x: u = patient x, v = posterior, t = superior."""

    origin: np.ndarray
    alpha: float

    def point(self, u: float, v: float, t: float) -> np.ndarray:
        return self.origin + np.array([u, 0, 0]) + v * post_vec(self.alpha) + t * up_vec(self.alpha)

    def local(self, p: np.ndarray) -> tuple[float, float, float]:
        d = p - self.origin
        return (
            float(d[0]),
            float(d @ post_vec(self.alpha)),
            float(d @ up_vec(self.alpha)),
        )


def rotation(axis: int, deg: float) -> np.ndarray:
    """Rotation matrix about a patient axis."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


SubBox = tuple[slice, slice, slice]


class Volume:
    """Label volume on a regular grid; array order (z, y, x)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, h: float) -> None:
        self.h = h
        self.origin = lo.astype(float)
        n = np.ceil((hi - lo) / h).astype(int) + 1
        self.labels = np.zeros((n[2], n[1], n[0]), np.uint8)
        self.axes = [self.origin[a] + h * np.arange(n[a], dtype=np.float32) for a in range(3)]

    def box(self, lo: np.ndarray, hi: np.ndarray) -> SubBox | None:
        i0 = np.floor((lo - self.origin) / self.h).astype(int)
        i1 = np.ceil((hi - self.origin) / self.h).astype(int) + 1
        shape = self.labels.shape[::-1]
        i0 = np.clip(i0, 0, shape)
        i1 = np.clip(i1, 0, shape)
        if np.any(i1 <= i0):
            return None
        return (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))

    def coords(self, sl: SubBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable patient coordinates x (1,1,n), y (1,n,1), z (n,1,1)."""
        x = self.axes[0][sl[2]][None, None, :]
        y = self.axes[1][sl[1]][None, :, None]
        z = self.axes[2][sl[0]][:, None, None]
        return x, y, z

    def local(
        self,
        fr: Frame,
        ur: tuple[float, float],
        vr: tuple[float, float],
        tr: tuple[float, float],
    ) -> tuple[SubBox, np.ndarray, np.ndarray, np.ndarray] | None:
        """Sub-box covering the local box ``ur x vr x tr`` and its local (u, v, t) coordinates."""
        corners = np.array([fr.point(u, v, t) for u in ur for v in vr for t in tr])
        sl = self.box(corners.min(0), corners.max(0))
        if sl is None:
            return None
        x, y, z = self.coords(sl)
        dy, dz = y - fr.origin[1], z - fr.origin[2]
        ca, sa = math.cos(fr.alpha), math.sin(fr.alpha)
        u = x - np.float32(fr.origin[0])
        v = dy * ca + dz * sa
        t = -dy * sa + dz * ca
        return sl, u, v, t

    def plane(self, sl: SubBox, point: np.ndarray, alpha: float) -> np.ndarray:
        """Signed distance (nz, ny, 1) along ``up_vec(alpha)`` from the plane through point."""
        _, y, z = self.coords(sl)
        return (y - point[1]) * -math.sin(alpha) + (z - point[2]) * math.cos(alpha)

    def paint(
        self,
        sl: SubBox,
        mask: np.ndarray,
        label: int | np.ndarray,
        only: tuple[int, ...] | None = None,
    ) -> None:
        paint_into(self.labels[sl], mask, label, only)

    def bone(
        self,
        sl: SubBox,
        depth: np.ndarray,
        marrow: int | np.ndarray,
        only: tuple[int, ...] | None = None,
        cortex: float = 1.0,
    ) -> None:
        """Cortex where depth > 0, marrow where depth > cortex thickness."""
        bone_into(self.labels[sl], depth, marrow, only, cortex)


def paint_into(
    view: np.ndarray,
    mask: np.ndarray,
    label: int | np.ndarray,
    only: tuple[int, ...] | None = None,
) -> None:
    """Write ``label`` into ``view`` where ``mask`` (and the current label is in ``only``)."""
    mask = np.broadcast_to(mask, view.shape)
    if only is not None:
        mask = mask & allowed(only)[view]
    if isinstance(label, np.ndarray):
        view[mask] = np.broadcast_to(label, view.shape)[mask]
    else:
        view[mask] = label


def bone_into(
    view: np.ndarray,
    depth: np.ndarray,
    marrow: int | np.ndarray,
    only: tuple[int, ...] | None = None,
    cortex: float = 1.0,
) -> None:
    """Cortex where depth > 0, marrow where depth > cortex thickness."""
    paint_into(view, depth > 0, CORTEX, only)
    paint_into(view, depth > cortex, marrow, None if only is None else (*only, CORTEX))


def box_depth(c: list[tuple[np.ndarray, float, float]]) -> np.ndarray:
    """Depth inside an intersection of slabs [(coord, lo, hi), ...] (mm, approximate)."""
    out = None
    for x, lo, hi in c:
        d = np.minimum(x - lo, hi - x)
        out = d if out is None else np.minimum(out, d)
    return out


def radial_depth(rho: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Distance to a star-shaped cross-section boundary along the ray from its centre."""
    return (1 - rho) * np.sqrt(u * u + v * v) / np.maximum(rho, 1e-3)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> np.ndarray:
    """Unit-variance smooth noise by separable linear upsampling of a coarse grid."""
    coarse = [int(math.ceil(n / cell)) + 2 for n in shape]
    g = rng.standard_normal(coarse).astype(np.float32)
    for ax, n in enumerate(shape):
        pos = np.arange(n) / cell
        i0 = np.floor(pos).astype(int)
        w = (pos - i0).astype(np.float32)
        shp = [1] * len(shape)
        shp[ax] = n
        w = w.reshape(shp)
        g = np.take(g, i0, axis=ax) * (1 - w) + np.take(g, i0 + 1, axis=ax) * w
    return g / max(float(g.std()), 1e-6)


def capsule(
    vol: Volume, p0: np.ndarray, p1: np.ndarray, r: float
) -> tuple[SubBox, np.ndarray] | None:
    """Sub-box and distance-to-segment field for a capsule."""
    sl = vol.box(np.minimum(p0, p1) - r - 1, np.maximum(p0, p1) + r + 1)
    if sl is None:
        return None
    x, y, z = vol.coords(sl)
    d = p1 - p0
    dx, dy, dz = x - p0[0], y - p0[1], z - p0[2]
    s = np.clip((dx * d[0] + dy * d[1] + dz * d[2]) / max(float(d @ d), 1e-6), 0, 1)
    dist = np.sqrt((dx - s * d[0]) ** 2 + (dy - s * d[1]) ** 2 + (dz - s * d[2]) ** 2)
    return sl, dist


def paint_tube(
    vol: Volume,
    pts: list[np.ndarray],
    r: float,
    label: int,
    only: tuple[int, ...] | None = None,
) -> None:
    """Polyline tube of radius r."""
    for p0, p1 in zip(pts[:-1], pts[1:], strict=True):
        res = capsule(vol, p0, p1, r)
        if res is not None:
            vol.paint(res[0], res[1] < r, label, only)


def paint_ellipsoid(
    vol: Volume,
    c: np.ndarray,
    radii: tuple[float, float, float],
    label: int,
    only: tuple[int, ...] | None = None,
) -> None:
    """Axis-aligned ellipsoid."""
    rad = np.array(radii)
    sl = vol.box(c - rad, c + rad)
    if sl is None:
        return
    x, y, z = vol.coords(sl)
    q = ((x - c[0]) / rad[0]) ** 2 + ((y - c[1]) / rad[1]) ** 2 + ((z - c[2]) / rad[2]) ** 2
    vol.paint(sl, q < 1, label, only)


# --------------------------------------------------------------------------------------------
# Spine model
# --------------------------------------------------------------------------------------------

# height, depth (AP), width, disc below, canal depth, canal width, pedicle width, pedicle height,
# spinous length, spinous height, spinous slope (deg), transverse length, transverse radius
LEVELS: dict[str, tuple[float, ...]] = {
    "T6": (18.0, 25, 29, 4.0, 14, 15, 6.0, 12, 36, 7, 55, 22, 5.0),
    "T7": (18.5, 26, 30, 4.0, 14, 15, 6.0, 12, 36, 7, 55, 22, 5.0),
    "T8": (19.0, 27, 31, 4.5, 14, 15, 6.5, 13, 35, 7, 50, 22, 5.0),
    "T9": (20.0, 28, 33, 4.5, 14, 16, 7.0, 13, 34, 8, 45, 21, 5.0),
    "T10": (21.0, 29, 35, 5.0, 14.5, 16.5, 7.0, 14, 33, 9, 38, 19, 5.0),
    "T11": (22.0, 30, 37, 5.5, 15, 17.5, 7.5, 14, 31, 11, 28, 12, 4.5),
    "T12": (23.5, 31, 39, 7.0, 16, 19, 8.0, 15, 30, 15, 18, 10, 4.5),
    "L1": (26.5, 32, 43, 8.5, 17, 22, 8.0, 15, 30, 20, 10, 16, 4.5),
    "L2": (27.0, 33, 44, 9.5, 16, 23, 9.0, 15, 31, 21, 8, 20, 4.5),
    "L3": (27.5, 34, 45.5, 10.5, 15.5, 24, 10.0, 15, 31, 22, 8, 26, 4.5),
    "L4": (27.5, 35, 47, 11.0, 15.5, 25, 12.0, 15, 29, 21, 10, 22, 5.0),
    "L5": (27.0, 35, 48, 10.0, 16, 27, 15.0, 15, 24, 17, 12, 18, 7.0),
    "S1L": (25.5, 34, 48, 7.0, 15.5, 27, 15.0, 14, 20, 15, 12, 17, 7.0),
}
# height, depth, width, lateral half-width top, bottom, canal depth, canal width, gap below
SACRAL: list[tuple[float, ...]] = [
    (28.0, 33, 46, 53, 46, 13, 28, 2.0),
    (23.0, 26, 36, 46, 38, 10, 22, 1.5),
    (19.0, 20, 28, 38, 28, 8, 18, 1.5),
    (15.0, 15, 20, 28, 19, 6, 14, 1.5),
    (11.0, 12, 15, 19, 12, 5, 12, 2.0),
]
COCCYX: list[tuple[float, float, float]] = [(9.0, 11, 16), (7.0, 9, 11), (5.5, 7, 8)]
THORACIC = ["T6", "T7", "T8", "T9", "T10", "T11", "T12"]
LUMBAR = ["L1", "L2", "L3", "L4", "L5"]
TRUTH_LEVELS = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]


@dataclass
class Vertebra:
    """One vertebral segment; endplate centres are patient points, angles in radians."""

    name: str
    kind: str  # thoracic | lumbar | sacral | coccyx
    height: float
    depth: float
    width: float
    ff: float
    canal_d: float = 15.0
    canal_w: float = 22.0
    ped_w: float = 9.0
    ped_h: float = 15.0
    sp_len: float = 30.0
    sp_h: float = 20.0
    sp_slope: float = 0.15
    tp_len: float = 20.0
    tp_r: float = 4.5
    wedge: float = 0.0
    lat_top: float = 0.0
    lat_bot: float = 0.0
    waist: float = 0.06
    concav: float = 2.5
    conc: float = 1.5
    tp_targets: dict[int, tuple[float, str]] = field(default_factory=dict)
    schmorl: list[tuple[str, float, float, float]] = field(default_factory=list)
    focal_fat: bool = False
    inf_c: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sup_c: np.ndarray = field(default_factory=lambda: np.zeros(3))
    inf_a: float = 0.0
    sup_a: float = 0.0

    @property
    def frame(self) -> Frame:
        return Frame((self.inf_c + self.sup_c) / 2, (self.inf_a + self.sup_a) / 2)

    @property
    def mobile(self) -> bool:
        return self.kind in ("thoracic", "lumbar")


@dataclass
class Junction:
    """Space between two vertebrae: disc, fused sacral junction or rudimentary disc."""

    name: str
    kind: str  # disc | fused | rudimentary
    height: float
    angle: float  # upper.inf_a - lower.sup_a (negative: lordotic wedge)
    grade: int = 2
    bulge: float = 0.5
    protrusion: float = 0.0
    prot_u: float = 0.0
    prot_w: float = 8.0
    hiz: bool = False
    vacuum: bool = False
    modic: int = 0
    modic_depth: float = 0.0
    osteo: float = 0.0
    facet: float = 1.0
    effusion: bool = False
    flavum: float = 2.5
    remnant: float = 0.0
    remnant_extent: float = 0.0
    remnant_label: int = NUC3
    bridge: str = "none"
    upper: Vertebra | None = None
    lower: Vertebra | None = None

    @property
    def center(self) -> np.ndarray:
        return (self.upper.inf_c + self.lower.sup_c) / 2

    @property
    def frame(self) -> Frame:
        return Frame(self.center, (self.upper.inf_a + self.lower.sup_a) / 2)


@dataclass
class Spine:
    """Vertebrae (top to bottom), junctions between consecutive ones and drawn parameters."""

    verts: list[Vertebra]
    juncs: list[Junction]
    params: dict

    def vert(self, name: str) -> Vertebra:
        return next(v for v in self.verts if v.name == name)

    def junc(self, name: str) -> Junction:
        return next(j for j in self.juncs if j.name == name)

    def below(self, v: Vertebra) -> Junction | None:
        i = self.verts.index(v)
        return self.juncs[i] if i < len(self.juncs) else None

    def above(self, v: Vertebra) -> Junction | None:
        i = self.verts.index(v)
        return self.juncs[i - 1] if i > 0 else None

    @property
    def sacral_top(self) -> Vertebra:
        return next(v for v in self.verts if v.kind == "sacral")

    def centreline(self) -> tuple[np.ndarray, np.ndarray]:
        """Points along the body centreline (top to bottom) and cumulative arc length."""
        pts = []
        for v in self.verts:
            pts += [v.sup_c, v.inf_c]
        p = np.array(pts)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
        return p, s

    def along(self, start: np.ndarray, dist: float) -> np.ndarray:
        """Point ``dist`` mm along the centreline from the point nearest ``start`` (+ = down)."""
        p, s = self.centreline()
        s0 = s[int(np.argmin(np.linalg.norm(p - start, axis=1)))]
        target = np.clip(s0 + dist, s[0], s[-1])
        return np.array([np.interp(target, s, p[:, a]) for a in range(3)])


def jit(rng: np.random.Generator, x: float, rel: float = 0.04) -> float:
    """Multiplicative jitter."""
    return float(x * rng.uniform(1 - rel, 1 + rel))


def make_vertebra(name: str, rng: np.random.Generator, s: float, ff: float) -> Vertebra:
    """Thoracic/lumbar vertebra with jittered nominal dimensions."""
    d = LEVELS["S1L" if name == "S1" else name]
    return Vertebra(
        name=name,
        kind="thoracic" if name.startswith("T") else "lumbar",
        height=jit(rng, d[0] * s, 0.03),
        depth=jit(rng, d[1] * s),
        width=jit(rng, d[2] * s),
        ff=float(np.clip(ff + rng.uniform(-0.05, 0.05), 0.12, 0.88)),
        canal_d=jit(rng, d[4] * s, 0.08),
        canal_w=jit(rng, d[5] * s, 0.06),
        ped_w=jit(rng, d[6] * s, 0.08),
        ped_h=jit(rng, d[7] * s, 0.06),
        sp_len=jit(rng, d[8] * s, 0.1),
        sp_h=jit(rng, d[9] * s, 0.1),
        sp_slope=math.radians(d[10] + rng.uniform(-5, 5)),
        tp_len=jit(rng, d[11] * s, 0.12),
        tp_r=jit(rng, d[12] * s, 0.1),
        waist=rng.uniform(0.03, 0.08),
        concav=rng.uniform(1.5, 3.5),
        conc=rng.uniform(0.8, 2.0),
    )


def degenerate(j: Junction, rng: np.random.Generator, age: float, bias: float, s: float) -> None:
    """Draw degeneration grade and its consequences for a mobile disc."""
    g = 1 + 3.0 * age * rng.uniform(0.4, 1.2) + bias + rng.normal(0, 0.7)
    set_grade(j, int(np.clip(round(g), 1, 5)), rng, age)
    j.height *= s


def set_grade(j: Junction, grade: int, rng: np.random.Generator, age: float) -> None:
    """Apply a Pfirrmann-like grade to a disc (height factor, bulge, Modic, facets ...)."""
    base = j.height / HEIGHT_BY_GRADE.get(j.grade, 1.0) if j.grade else j.height
    j.grade = grade
    spread = (0.75, 1.2) if grade == 5 else (0.93, 1.07)
    j.height = base * HEIGHT_BY_GRADE[grade] * rng.uniform(*spread)
    j.bulge = 0.3 + 0.5 * (grade - 1) + rng.uniform(0, 0.5)
    j.protrusion = rng.uniform(1.5, 5.0) if grade >= 3 and rng.random() < 0.45 else 0.0
    j.prot_u = rng.uniform(-9, 9)
    j.prot_w = rng.uniform(5, 10)
    j.hiz = grade >= 3 and rng.random() < 0.15
    j.vacuum = grade == 5 and rng.random() < 0.3
    if grade >= 4 and rng.random() < 0.55:
        j.modic = int(rng.choice([1, 2, 3], p=[0.3, 0.55, 0.15]))
        j.modic_depth = rng.uniform(3, 9)
    else:
        j.modic = 0
    j.osteo = rng.uniform(0.5, 2.5) + 1.2 * (grade - 3) if grade >= 3 else rng.uniform(0, 0.6)
    j.facet = min(1.45, 1 + 0.07 * (grade - 1) * rng.uniform(0.5, 1.5) + 0.1 * age)
    j.effusion = grade >= 4 and rng.random() < 0.25
    j.flavum = 2.2 + 0.6 * (grade - 1) * rng.uniform(0.5, 1.2)


def build_spine(rng: np.random.Generator, vrng: np.random.Generator, variant: str) -> Spine:
    """Draw the vertebral chain; ``rng`` for common draws, ``vrng`` for variant-specific ones."""
    s = rng.uniform(0.94, 1.07)
    age = rng.uniform(0.0, 1.0)
    slope = rng.uniform(30, 50)
    lordosis = slope + rng.uniform(-3, 15)
    ff0 = 0.3 + 0.35 * age + rng.uniform(-0.06, 0.06)
    lumbarized = variant == "lumbarization"
    mobile = THORACIC + LUMBAR + (["S1"] if lumbarized else [])
    verts = [make_vertebra(n, rng, s, ff0) for n in mobile]
    for v in verts:
        if v.kind == "lumbar":
            v.wedge = math.radians(rng.uniform(-2, 1))
        else:
            v.wedge = math.radians(rng.uniform(1, 3))
    verts[mobile.index("L5")].wedge = math.radians(-rng.uniform(2, 6))
    sac_names = ["S2", "S3", "S4", "S5"] if lumbarized else ["S1", "S2", "S3", "S4", "S5"]
    sac_rows = SACRAL[:4] if lumbarized else SACRAL
    sf = 0.95 if lumbarized else 1.0
    for n, row in zip(sac_names, sac_rows, strict=True):
        verts.append(
            Vertebra(
                name=n,
                kind="sacral",
                height=jit(rng, row[0] * s * sf),
                depth=jit(rng, row[1] * s * sf),
                width=jit(rng, row[2] * s * sf),
                ff=float(np.clip(ff0 + 0.08 + rng.uniform(-0.04, 0.04), 0.15, 0.88)),
                lat_top=jit(rng, row[3] * s * sf),
                lat_bot=jit(rng, row[4] * s * sf),
                canal_d=jit(rng, row[5] * s, 0.08),
                canal_w=jit(rng, row[6] * s, 0.08),
                waist=0.02,
                concav=1.0,
                conc=0.5,
            )
        )
    for i, (h, d, w) in enumerate(COCCYX):
        verts.append(
            Vertebra(
                name=f"Co{i + 1}",
                kind="coccyx",
                height=jit(rng, h * s),
                depth=jit(rng, d * s),
                width=jit(rng, w * s),
                ff=0.8,
                waist=0.1,
                concav=0.5,
                conc=0.5,
            )
        )
    juncs = make_junctions(verts, rng, age, s)
    sp = Spine(verts, juncs, {"size": s, "age": age, "sacral_slope_deg": slope})
    apply_variant(sp, vrng, variant, age)
    draw_normal_variants(sp, rng, age)
    place_chain(sp, rng, math.radians(slope), math.radians(lordosis))
    set_tp_targets(sp)
    sp.params.update(
        lordosis_deg=round(lordosis, 1),
        disc_grades={j.name: j.grade for j in sp.juncs if j.kind != "fused"},
    )
    return sp


def make_junctions(verts: list[Vertebra], rng: np.random.Generator, age: float, s: float) -> list:
    """Junctions between consecutive vertebrae with degeneration for mobile discs."""
    bias = {"T12": -0.3, "L1": 0.0, "L2": 0.2, "L3": 0.5, "L4": 1.0, "L5": 1.0, "S1": 0.3}
    nominal = {n: LEVELS[n][3] for n in LEVELS}
    juncs = []
    for up, lo in zip(verts[:-1], verts[1:], strict=True):
        name = f"{up.name}-{lo.name}"
        if up.mobile:
            key = "S1L" if up.name == "S1" else up.name
            j = Junction(name, "disc", jit(rng, nominal[key], 0.08), math.radians(-2.0))
            j.grade = 0
            degenerate(j, rng, age, bias.get(up.name, -0.5), s)
            if up.kind == "thoracic":
                j.angle = math.radians(rng.uniform(1, 4))
            juncs.append(j)
        elif lo.kind == "sacral":
            j = Junction(name, "fused", rng.uniform(1.0, 2.5), math.radians(rng.uniform(6, 14)))
            j.remnant = rng.uniform(0.0, 0.6) if rng.random() < 0.4 else 0.0
            j.remnant_extent = rng.uniform(0.3, 0.6)
            juncs.append(j)
        else:
            j = Junction(name, "disc", rng.uniform(1.2, 2.5), math.radians(rng.uniform(8, 22)))
            j.grade, j.bulge, j.flavum = 4, 0.2, 0.0
            juncs.append(j)
        j.upper, j.lower = up, lo
    lordotic = {"L1": (-1, 4), "L2": (2, 6), "L3": (4, 8), "L4": (6, 12), "L5": (8, 16)}
    for j in juncs:
        if j.upper.name in lordotic:
            j.angle = -math.radians(rng.uniform(*lordotic[j.upper.name]))
        if j.upper.name == "T12":
            j.angle = math.radians(rng.uniform(-1, 3))
        if j.upper.name == "S1" and j.upper.kind == "lumbar":
            j.angle = -math.radians(rng.uniform(5, 11))
    lum = [j for j in juncs if j.upper.kind == "lumbar" and j.upper.name != "S1"]
    if max(j.grade for j in lum) < 3:
        target = lum[int(rng.integers(len(lum) - 2, len(lum)))]
        set_grade(target, int(rng.integers(3, 5)), rng, age)
    return juncs


def apply_variant(sp: Spine, rng: np.random.Generator, variant: str, age: float) -> None:
    """Variant-specific anatomy (drawn from the variant stream)."""
    l5 = sp.vert("L5")
    if variant == "lumbarization":
        s1 = sp.vert("S1")
        s1.wedge = math.radians(rng.uniform(-3, 0))
        s1.tp_len, s1.tp_r = rng.uniform(14, 22), rng.uniform(6, 8.5)
        j = sp.junc("S1-S2")
        j.height = rng.uniform(5.0, 9.0) * sp.params["size"]
        set_grade(j, int(rng.integers(1, 4)), rng, age)
        j.height = min(max(j.height, 4.5), 9.5)
        sp.junc("S2-S3").remnant = rng.uniform(0.6, 1.6) if rng.random() < 0.3 else 0.0
    elif variant == "sacralization":
        l5.height *= rng.uniform(0.82, 0.94)
        l5.wedge = -math.radians(rng.uniform(5, 10))
        j = sp.junc("L5-S1")
        set_grade(j, int(rng.choice([4, 5], p=[0.4, 0.6])), rng, age)
        j.kind = "rudimentary"
        j.height = 1.5 + 4.5 * rng.random() ** 1.5
        j.angle = -math.radians(rng.uniform(1, 4))
        j.bridge = str(rng.choice(["anterior", "ring", "none"], p=[0.4, 0.3, 0.3]))
        j.bulge, j.protrusion, j.hiz, j.vacuum = 0.2, 0.0, False, False
        r = rng.uniform(9, 13)
        l5.tp_r = r
        bilateral = rng.random() < 0.6
        first = int(rng.choice([-1, 1]))
        for side in (-1, 1):
            if bilateral or side == first:
                mode = str(rng.choice(["fused", "pseudo"]))
                l5.tp_targets[side] = (-1.5 if mode == "fused" else 0.8, mode)
            else:
                l5.tp_targets[side] = (rng.uniform(3, 8), "gap")
        rem = sp.junc("S1-S2")
        rem.remnant = rng.uniform(0.7, 2.0) if rng.random() < 0.4 else rem.remnant
        rem.remnant_extent = rng.uniform(0.45, 0.85)
    else:
        j = sp.junc("S1-S2")
        if rng.random() < 0.5:
            j.remnant = rng.uniform(0.7, 2.0)
            j.remnant_extent = rng.uniform(0.45, 0.85)
            j.remnant_label = int(rng.choice([NUC2, NUC3, ANULUS]))
        if rng.random() < 0.25:
            l5.tp_r = rng.uniform(7.5, 10)
            for side in (-1, 1):
                l5.tp_targets[side] = (rng.uniform(6, 14), "gap")


def draw_normal_variants(sp: Spine, rng: np.random.Generator, age: float) -> None:
    """Schmorl nodes and focal fatty lesions in any variant."""
    for v in sp.verts:
        if not v.mobile:
            continue
        p = 0.12 if v.name in ("T10", "T11", "T12", "L1", "L2") else 0.05
        for side in ("sup", "inf"):
            if rng.random() < p:
                u0 = rng.uniform(-0.4, 0.4) * v.width / 2
                v0 = rng.uniform(-0.5, 0.3) * v.depth / 2
                v.schmorl.append((side, u0, v0, rng.uniform(2.0, 4.5)))
        v.focal_fat = rng.random() < 0.08 + 0.08 * age


def place_chain(sp: Spine, rng: np.random.Generator, slope: float, lordosis: float) -> None:
    """Lay out endplates in the sagittal plane from the sacral top, up and down."""
    top = sp.sacral_top
    i_top = sp.verts.index(top)
    lum_j = [j for j in sp.juncs[:i_top] if j.upper.kind == "lumbar"]
    lum_v = [v for v in sp.verts[:i_top] if v.kind == "lumbar" and v.name != "L1"]
    raw = -(sum(j.angle for j in lum_j) + sum(v.wedge for v in lum_v))
    f = lordosis / raw if raw > 0.1 else 1.0
    for j in lum_j:
        j.angle *= f
    for v in lum_v:
        v.wedge *= f
    for j in sp.juncs:
        b = (j.upper.depth + j.lower.depth) / 4
        lim = math.atan(max(j.height - 0.8, 0.2) / b)
        j.angle = float(np.clip(j.angle, -lim, lim))
    pt, a = np.zeros(3), slope
    for i in range(i_top - 1, -1, -1):
        v, j = sp.verts[i], sp.juncs[i]
        v.inf_c = pt + j.height * up_vec(a + j.angle / 2)
        v.inf_a = a + j.angle
        v.sup_a = v.inf_a + v.wedge
        v.sup_c = v.inf_c + v.height * up_vec((v.inf_a + v.sup_a) / 2)
        pt, a = v.sup_c, v.sup_a
    pt, a = np.zeros(3), slope
    for i in range(i_top, len(sp.verts)):
        v = sp.verts[i]
        v.sup_c, v.sup_a = pt, a
        v.inf_a = a - v.wedge
        v.inf_c = v.sup_c - v.height * up_vec((v.inf_a + v.sup_a) / 2)
        if i < len(sp.juncs):
            j = sp.juncs[i]
            a = v.inf_a - j.angle
            pt = v.inf_c - j.height * up_vec((v.inf_a + a) / 2)
    shift = np.array([rng.uniform(-10, 10), rng.uniform(20, 80), rng.uniform(-50, 50)])
    shift = shift - sp.vert("L3").frame.origin * np.array([0, 1, 1])
    for v in sp.verts:
        v.inf_c = v.inf_c + shift
        v.sup_c = v.sup_c + shift
    sp.params["x_spine"] = float(shift[0])


def ala_top(sac: Vertebra, au: float) -> float:
    """Local t of the sacral ala's superior surface at lateral distance ``au``."""
    return sac.height / 2 - 1.5 - 0.12 * max(au - sac.width / 2 * 0.8, 0.0)


def set_tp_targets(sp: Spine) -> None:
    """Convert L5 transverse-process targets (gap above the ala) to L5-local end points."""
    l5 = sp.vert("L5")
    sac = sp.sacral_top
    targets = {}
    for side, (gap, mode) in l5.tp_targets.items():
        au = min(sac.lat_top - 8, 33.0)
        t_end = ala_top(sac, au) + l5.tp_r * 0.75 + gap
        p = sac.frame.point(side * au, sac.depth / 2 * 0.25, t_end)
        targets[side] = (l5.frame.local(p), mode)
    l5.tp_targets = targets


# --------------------------------------------------------------------------------------------
# Painting: soft tissue
# --------------------------------------------------------------------------------------------


@dataclass
class Profile:
    """Per-z (volume grid) profiles of the spine used by the soft-tissue painters."""

    ycan: np.ndarray
    yant: np.ndarray
    yback: np.ndarray
    half_w: np.ndarray
    muscle: np.ndarray


def profiles(vol: Volume, sp: Spine, rng: np.random.Generator) -> Profile:
    """Interpolate spine landmarks onto the volume's z grid."""
    tm_th, tm_l = rng.uniform(35, 50), rng.uniform(40, 65)
    rows = []
    for v in sp.verts:
        fr, b = v.frame, v.depth / 2
        dc = v.canal_d if v.kind != "coccyx" else 4.0
        if v.kind in ("thoracic", "lumbar"):
            back, tm = dc + 6, tm_th if v.kind == "thoracic" else tm_l
        elif v.kind == "sacral":
            back = dc + 7
            tm = {0: 25, 1: 15, 2: 8}.get(sp.verts.index(v) - sp.verts.index(sp.sacral_top), 3)
        else:
            back, tm = 4.0, 0.0
        can = fr.point(0, b + dc / 2, 0)
        rows.append(
            (can[2], can[1], fr.point(0, -b, 0)[1], can[1] + back - dc / 2, v.width / 2, tm)
        )
    a = np.array(sorted(rows))
    z = vol.axes[2]
    cols = [np.interp(z, a[:, 0], a[:, k]).astype(np.float32) for k in range(1, 6)]
    return Profile(*cols)


def paint_soft(vol: Volume, sp: Spine, pr: Profile, rng: np.random.Generator) -> dict:
    """Skin, subcutaneous fat, posterior and abdominal-wall muscles, visceral fat."""
    x, y, z = vol.coords((slice(None),) * 3)
    xs = sp.params["x_spine"]
    tf = rng.uniform(8, 40)
    tfa = rng.uniform(10, 45)
    dant = rng.uniform(110, 180)
    skin = rng.uniform(1.5, 2.5)
    z_s2 = sp.along(sp.sacral_top.sup_c, 30)[2]
    zz = z[:, 0, 0]
    butt = np.clip((z_s2 - zz) / 40, 0, 1) * np.clip(1 - (z_s2 - 150 - zz) / 60, 0, 1)
    g = rng.uniform(30, 60) * butt[:, None, None] * np.clip((np.abs(x - xs) - 15) / 50, 0, 1)
    ycan = pr.ycan[:, None, None]
    dx2 = (x - xs) ** 2
    ymo = pr.yback[:, None, None] + pr.muscle[:, None, None] + 0.7 * g - 0.003 * dx2
    ymo = np.maximum(ymo, ycan + 5)
    yfront = ycan - 5 + 0.004 * np.maximum(np.abs(x - xs) - 45, 0) ** 2
    yps = ymo + tf * (1 + 0.3 * butt[:, None, None]) + 0.3 * g + skin
    wob = 10 * np.sin(zz / 90.0 + rng.uniform(0, 6.3))
    yas = (pr.yant - dant + wob)[:, None, None]
    ymo = np.maximum(ymo, yfront + 3)
    wall = yas + skin + tfa
    # zones along y are monotonic per (z, x) column: count the boundaries passed
    bounds = [yas, yas + skin, wall, wall + 9, yfront, ymo, yps - skin, yps]
    nz, ny, nx = vol.labels.shape
    zone = np.zeros((nz, ny + 1, nx), np.uint8)
    iz, ix = np.meshgrid(np.arange(nz), np.arange(nx), indexing="ij")
    for bnd in bounds:
        full_b = np.broadcast_to(bnd, (nz, 1, nx))[:, 0, :]
        jb = np.clip(np.floor((full_b - vol.origin[1]) / vol.h).astype(int) + 1, 0, ny)
        zone[iz, jb, ix] += 1
    np.cumsum(zone, axis=1, dtype=np.uint8, out=zone)
    zone_lut = np.array([AIR, SKIN, FAT, MUSCLE, VFAT, MUSCLE, FAT, SKIN, AIR], np.uint8)
    vol.labels[...] = zone_lut[zone[:, :ny, :]]
    sl = vol.box(np.array([xs - 2.0, -1e4, -1e4]), np.array([xs + 2.0, 1e4, 1e4]))
    if sl is not None:
        _, y2, _ = vol.coords(sl)
        ymid = (pr.yback + np.maximum(28.0, 0.7 * pr.muscle))[:, None, None]
        vol.paint(sl, (y2 > ymid) & (y2 < ymo[:, :, sl[2]]), FAT, (MUSCLE,))
    y_table = float(np.max(yps[:, 0, :]))
    return {"subcut_fat_mm": round(tf, 1), "y_table": y_table}


def paint_psoas(vol: Volume, sp: Spine, pr: Profile, rng: np.random.Generator) -> None:
    """Psoas muscles from T12 to the pelvis (per-z ellipses)."""
    xs = sp.params["x_spine"]
    ctrl = [("T12", 3.0), ("L1", 8.0), ("L2", 12.0), ("L3", 16.0), ("L4", 19.0), ("L5", 21.0)]
    zc = [sp.vert(n).frame.origin[2] for n, _ in ctrl]
    rc = [r * rng.uniform(0.85, 1.15) for _, r in ctrl]
    top = sp.sacral_top
    z_top = top.sup_c[2]
    zc += [z_top - 20, z_top - 70]
    rc += [rc[-1] * 1.05, rc[-1] * 0.9]
    order = np.argsort(zc)
    z = vol.axes[2]
    r = np.interp(z, np.array(zc)[order], np.array(rc)[order], left=0, right=0)
    below = np.clip(z_top - z, 0, None)
    zs = np.nonzero(r > 0)[0]
    if zs.size == 0:
        return
    zsl = slice(int(zs[0]), int(zs[-1]) + 1)
    r, below = r[zsl].astype(np.float32), below[zsl].astype(np.float32)
    yc = ((pr.yant + pr.ycan) / 2)[zsl] - 0.7 * below
    for side in (-1, 1):
        xc = xs + side * (pr.half_w[zsl] + 0.6 * r + 1 + 0.5 * below)
        sl = vol.box(
            np.array([float(np.min(xc - r)), float(np.min(yc - r)), float(z[zsl][0])]),
            np.array([float(np.max(xc + r)), float(np.max(yc + r)), float(z[zsl][-1])]),
        )
        if sl is None:
            continue
        sl = (slice(max(sl[0].start, zsl.start), min(sl[0].stop, zsl.stop)), sl[1], sl[2])
        x, y, _ = vol.coords(sl)
        k = slice(sl[0].start - zsl.start, sl[0].stop - zsl.start)
        rr = np.maximum(r[k], 1e-3)[:, None, None]
        q = ((x - xc[k, None, None]) / rr) ** 2 + ((y - yc[k, None, None]) / (0.8 * rr)) ** 2
        vol.paint(sl, q < 1, MUSCLE, (VFAT, FAT))


def paint_organs(vol: Volume, sp: Spine, pr: Profile, rng: np.random.Generator) -> None:
    """Lung bases, liver, kidneys, bladder, rectum, bowel loops and large vessels."""
    xs = sp.params["x_spine"]

    def ycan_at(zv: float) -> float:
        return float(np.interp(zv, vol.axes[2], pr.ycan))

    z8, z11, zl1 = (sp.vert(n).frame.origin[2] for n in ("T8", "T11", "L1"))
    for side in (-1, 1):
        c = np.array([xs + side * 78, ycan_at(z8) - 45, z8 + 10])
        paint_ellipsoid(vol, c, (55, 80, z8 - z11 + 25), LUNG, (VFAT,))
        kz = zl1 - (8 if side > 0 else 20) + rng.uniform(-8, 8)
        c = np.array([xs + side * rng.uniform(68, 80), ycan_at(kz) - 28, kz])
        paint_ellipsoid(vol, c, (26, 22, 55), KIDNEY, (VFAT,))
        paint_ellipsoid(vol, c + np.array([-side * 14, -6, 0]), (9, 9, 25), VFAT, (KIDNEY,))
    c = np.array([xs - 95, ycan_at(z11) - 75, z11 + 10])
    paint_ellipsoid(vol, c, (95, 80, rng.uniform(70, 95)), LIVER, (VFAT,))
    sac = [v for v in sp.verts if v.kind in ("sacral", "coccyx")]
    rect = [v.frame.point(0, -v.depth / 2 - 16, 0) for v in sac[1:]]
    paint_tube(vol, rect, rng.uniform(11, 16), BOWEL, (VFAT,))
    paint_tube(vol, rect, 6.0, AIR if rng.random() < 0.5 else BOWEL_FLUID, (BOWEL,))
    last = sac[-2]
    c = last.frame.point(0, -last.depth / 2 - rng.uniform(70, 100), -10)
    paint_ellipsoid(vol, c, (45, rng.uniform(25, 40), rng.uniform(25, 40)), FLUID, (VFAT, BOWEL))
    paint_vessels(vol, sp, rng)
    paint_bowel(vol, sp, pr, rng)


def paint_vessels(vol: Volume, sp: Spine, rng: np.random.Generator) -> None:
    """Aorta/iliac arteries (left) and IVC/iliac veins (right) as flow voids."""
    only = (VFAT, FAT, BOWEL, BOWEL_FLUID, LIVER)
    bif = rng.uniform(-0.4, 0.4)
    s1, s2 = sp.sacral_top, sp.verts[sp.verts.index(sp.sacral_top) + 1]
    for side, r, dx, end in ((1, 11.0, 12.0, "L4"), (-1, 10.0, 20.0, "L5")):
        r = r * rng.uniform(0.85, 1.15)
        pts = []
        for v in sp.verts:
            if not v.mobile:
                continue
            pts.append(v.frame.point(side * dx, -v.depth / 2 - r - 2, 0))
            if v.name == end:
                pts[-1] = v.frame.point(side * dx * 0.6, -v.depth / 2 - r - 2, bif * v.height)
                break
        paint_tube(vol, pts, r, VESSEL, only)
        for lat in (-1, 1):
            leg = [
                pts[-1],
                s1.frame.point(lat * 38, -s1.depth / 2 - 22, -5),
                s2.frame.point(lat * 62, -s2.depth / 2 - 45, -20),
            ]
            paint_tube(vol, leg, r * 0.6, VESSEL, only)


def paint_bowel(vol: Volume, sp: Spine, pr: Profile, rng: np.random.Generator) -> None:
    """Random-walk bowel loops with wall and fluid, mixed or gas content."""
    xs = sp.params["x_spine"]
    z_hi = sp.vert("L1").frame.origin[2]
    z_lo = sp.along(sp.sacral_top.sup_c, 60)[2]
    for _ in range(int(rng.integers(18, 30))):
        z0 = rng.uniform(z_lo, z_hi)
        y_ant = float(np.interp(z0, vol.axes[2], pr.yant))
        p = np.array([xs + rng.uniform(-80, 80), y_ant - rng.uniform(30, 110), z0])
        r = rng.uniform(8, 16)
        content = int(rng.choice([BOWEL_FLUID, BOWEL, AIR], p=[0.45, 0.4, 0.15]))
        d = rng.standard_normal(3)
        pts = [p]
        for _ in range(int(rng.integers(4, 7))):
            d = d + 0.8 * rng.standard_normal(3)
            d /= np.linalg.norm(d)
            pts.append(pts[-1] + 24 * d)
        paint_tube(vol, pts, r, BOWEL, (VFAT,))
        paint_tube(vol, pts, r - 2.0, content, (BOWEL,))


# --------------------------------------------------------------------------------------------
# Painting: spine
# --------------------------------------------------------------------------------------------


def paint_spine(vol: Volume, sp: Spine, rng: np.random.Generator) -> None:
    """Paint all spinal structures in a fixed order (later ones overwrite earlier ones)."""
    sac = [v for v in sp.verts if v.kind == "sacral"]
    for k, v in enumerate(sac):
        paint_sacral_mass(vol, sp, v, k, len(sac))
    paint_ilium(vol, sp, rng)
    for v in sp.verts:
        paint_canal(vol, sp, v)
    conus = conus_point(sp, rng)
    for v in sp.verts:
        paint_sac(vol, sp, v, conus, rng)
    for j in sp.juncs:
        paint_junction(vol, j, rng)
    for v in sp.verts:
        paint_body(vol, sp, v, rng)
    for j in sp.juncs:
        if j.upper.mobile and j.kind != "fused":
            paint_interspinous(vol, j)
    for v in sp.verts:
        if v.mobile:
            paint_posterior(vol, sp, v)
    for j in sp.juncs:
        if j.upper.mobile and j.kind != "fused":
            paint_facets(vol, j, rng)
            paint_flavum(vol, j)
    for v in sp.verts:
        if v.kind == "lumbar":
            paint_exiting_roots(vol, sp, v)
    sp.params["conus_z"] = round(float(conus[1][2]), 1)


def paint_body(vol: Volume, sp: Spine, vb: Vertebra, rng: np.random.Generator) -> None:
    """Vertebral body: superelliptic slab between endplate planes with cortex and endplates."""
    fr = vb.frame
    a, b, hh = vb.width / 2, vb.depth / 2, vb.height / 2
    ja, jb = sp.above(vb), sp.below(vb)
    lip_t = ja.osteo if ja is not None and ja.kind == "disc" else 0.0
    lip_b = jb.osteo if jb is not None and jb.kind == "disc" else 0.0
    lip = max(lip_t, lip_b)
    res = vol.local(fr, (-a - lip - 2, a + lip + 2), (-b - lip - 2, b + 2), (-hh - 4, hh + 4))
    if res is None:
        return
    sl, u, v, t = res
    s_inf = vol.plane(sl, vb.inf_c, vb.inf_a)
    s_sup = -vol.plane(sl, vb.sup_c, vb.sup_a)
    hr = np.clip(t / hh, -1, 1)
    waist = 1 - vb.waist * (1 - hr**2)
    lipv = lip_b * np.clip(1 - s_inf / 4.0, 0, 1) ** 2 + lip_t * np.clip(1 - s_sup / 4.0, 0, 1) ** 2
    a_t = a * waist + 0.6 * lipv
    g = np.clip(1 - (u / (0.55 * a)) ** 2, 0, 1)
    bb = np.where(v < 0, b * waist + lipv, b * waist + 0.3 * lipv - vb.concav * g)
    p = 2.6 if vb.mobile else 2.2
    rho = (np.abs(u / a_t) ** p + np.abs(v / bb) ** p) ** (1 / p)
    depth_x = radial_depth(rho, u, v)
    r2 = np.minimum(rho, 1) ** 2
    d_inf = s_inf - vb.conc * (1 - r2)
    d_sup = s_sup - vb.conc * (1 - r2)
    big = np.float32(1e3)
    fused_t = ja is not None and ja.kind == "fused"
    fused_b = jb is not None and jb.kind == "fused"
    inside = np.minimum(
        depth_x,
        np.minimum(
            d_inf + (jb.height / 2 + 0.5 if fused_b else 0.0),
            d_sup + (ja.height / 2 + 0.5 if fused_t else 0.0),
        ),
    )
    depth = np.minimum(depth_x, np.minimum(big if fused_b else d_inf, big if fused_t else d_sup))
    marrow = marrow_field(vb, depth.shape, rng)
    only = NOT_SACRUM if vb.kind == "sacral" else None
    vol.paint(sl, inside > 0, CORTEX, only)
    vol.paint(sl, (inside > 0) & (depth > 1.0), marrow)
    ep_t, ep_b = has_endplate(ja), has_endplate(jb)
    ep_d = np.minimum(d_inf if ep_b else big, d_sup if ep_t else big)
    vol.paint(sl, (inside > 0) & (ep_d < 1.3), ENDPLATE)
    for jn, dside in ((ja, d_sup), (jb, d_inf)):
        if jn is not None and jn.modic:
            lab = {1: MODIC1, 2: MODIC2, 3: SCLEROSIS}[jn.modic]
            wob = 1.5 * np.sin(u / 4.0 + 1.3 * v / 5.0)
            vol.paint(sl, (depth > 1.3) & (dside < jn.modic_depth + wob) & (rho < 0.9), lab)
    for side, u0, v0, r in vb.schmorl:
        dside = d_sup if side == "sup" else d_inf
        q = (u - u0) ** 2 + (v - v0) ** 2 + np.maximum(dside, 0) ** 2
        vol.paint(sl, (depth > 0) & (q < (r + 1.2) ** 2), SCLEROSIS)
        vol.paint(sl, (q < r**2) & (inside > 0), NUC3)
    if vb.focal_fat:
        q = (u - 0.2 * a) ** 2 + (v + 0.2 * b) ** 2 + t**2
        vol.paint(sl, (depth > 2) & (q < rng.uniform(3, 6) ** 2), MARROW0 + N_MARROW - 1)


def has_endplate(j: Junction | None) -> bool:
    """Whether a body shows an endplate towards junction ``j`` (not across a fusion)."""
    return j is not None and (j.kind == "disc" or (j.kind == "rudimentary" and j.bridge == "none"))


def marrow_field(vb: Vertebra, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Heterogeneous red/yellow marrow labels around the vertebra's mean fat fraction."""
    ff = vb.ff + 0.1 * smooth_noise(rng, shape, 7.0)
    idx = np.clip(np.rint((ff - 0.1) / 0.1), 0, N_MARROW - 1).astype(np.uint8)
    return idx + np.uint8(MARROW0)


def paint_junction(vol: Volume, j: Junction, rng: np.random.Generator) -> None:
    """Disc, rudimentary disc (with optional bony bridge) or fused sacral junction."""
    up, lo = j.upper, j.lower
    a = (up.width + lo.width) / 4
    b = (up.depth + lo.depth) / 4
    bulge = j.bulge if j.kind == "disc" else 0.2
    hmax = j.height / 2 + b * abs(math.tan(j.angle)) + 4
    res = vol.local(
        j.frame, (-a - bulge - 4, a + bulge + 4), (-b - bulge - 4, b + bulge + j.protrusion + 4),
        (-hmax, hmax),
    )  # fmt: skip
    if res is None:
        return
    sl, u, v, _ = res
    s_lo = vol.plane(sl, lo.sup_c, lo.sup_a)
    s_up = -vol.plane(sl, up.inf_c, up.inf_a)
    gap = np.maximum(s_lo + s_up, 0.3)
    hf = s_lo / gap
    inside_t = (s_lo > -2.5) & (s_up > -2.5)
    prof = np.sin(np.pi * np.clip(hf, 0, 1))
    g = np.clip(1 - (u / (0.55 * a)) ** 2, 0, 1)
    prot = j.protrusion * np.exp(-(((u - j.prot_u) / j.prot_w) ** 2)) * prof
    concav = (up.concav + lo.concav) / 2 * (1 - 0.5 * min(1.0, bulge / 2))
    a_d = a + bulge * prof
    bb = np.where(v < 0, b + bulge * prof, b + 0.6 * bulge * prof + prot - concav * g)
    rho = (np.abs(u / a_d) ** 2.2 + np.abs(v / bb) ** 2.2) ** (1 / 2.2)
    disc = inside_t & (rho <= 1)
    if j.kind == "fused":
        depth = np.where(inside_t, radial_depth(rho, u, v), -1)
        vol.bone(sl, depth, marrow_label(lo.ff))
        if j.remnant > 0:
            mid = np.abs(s_lo - s_up) < j.remnant
            vol.paint(sl, mid & (rho < j.remnant_extent), j.remnant_label)
        return
    vol.paint(sl, disc, ANULUS)
    nuc_lab = NUCLEUS_BY_GRADE[j.grade] if j.kind == "disc" else NUC3
    qn = (u / (0.72 * a)) ** 2 + ((v - 0.05 * b) / (0.7 * b)) ** 2 + ((hf - 0.5) / 0.42) ** 2
    if j.kind == "disc" and j.grade <= 3:
        vol.paint(sl, disc & (qn < 1.5), NUC2 if j.grade <= 2 else NUC3)
    vol.paint(sl, disc & (qn < 1), nuc_lab)
    if j.kind == "disc" and j.grade in (2, 3):
        vol.paint(sl, disc & (qn < 1) & (np.abs(s_lo - s_up) < 0.9), NUC3)
    if j.hiz:
        q = (u - j.prot_u) ** 2 + (v - (b - 1.5)) ** 2 + ((hf - 0.5) * gap) ** 2
        vol.paint(sl, disc & (q < 1.6**2), FLUID)
    if j.vacuum:
        q = ((u - 3) / 6) ** 2 + ((v + 0.3 * b) / 4) ** 2 + ((hf - 0.5) / 0.25) ** 2
        vol.paint(sl, disc & (q < 1), AIR)
    if j.kind == "rudimentary" and j.bridge != "none":
        zone = (v < -0.3 * b) if j.bridge == "anterior" else (rho > 0.55)
        depth = np.where(disc & zone, radial_depth(rho, u, v), -1)
        vol.bone(sl, depth, marrow_label(up.ff))


def paint_sacral_mass(vol: Volume, sp: Spine, v: Vertebra, k: int, n: int) -> None:
    """Sacral lateral masses (ala), dorsal wall, median crest, foramina and hiatus."""
    fr = v.frame
    a, b, hh = v.width / 2, v.depth / 2, v.height / 2
    dsc = v.canal_d
    ja, jb = sp.above(v), sp.below(v)
    top = hh + (ja.height / 2 + 0.5 if k > 0 else 0.0)
    bot = -hh - (jb.height / 2 + 0.5 if k < n - 1 else 0.0)
    wmax = max(v.lat_top, v.lat_bot)
    res = vol.local(fr, (-wmax - 1, wmax + 1), (-b - 2, b + dsc + 16), (bot - 1, top + 1))
    if res is None:
        return
    sl, u, vv, t = res
    au = np.abs(u)
    hr = np.clip((t - bot) / (top - bot), 0, 1)
    w = v.lat_bot + (v.lat_top - v.lat_bot) * hr
    v_ant = -0.65 * b + 0.25 * np.maximum(au - a, 0)
    dd = sacral_back(sp, v, hr)
    v_post = dd + 6 - 0.12 * au
    t_top = (hh - 1.5 - 0.12 * np.maximum(au - a * 0.8, 0)) if k == 0 else top
    depth = np.minimum(np.minimum(w - au, vv - v_ant), v_post - vv)
    depth = np.minimum(depth, t_top - t if k == 0 else top + 1.5 - t)
    depth = np.minimum(depth, t - bot if k == n - 1 else t - bot + 1.5)
    inside = (depth > 0) & (t < top) & (t > bot)
    vol.paint(sl, inside, CORTEX, NOT_SACRUM)
    vol.paint(sl, inside & (depth > 1.2), SACRUM)
    crest = box_depth([(au, -1, 4.0), (vv - dd, 4.0, 13.0 - 2 * k), (t, -hh / 2, hh / 2)])
    vol.bone(sl, crest, SACRUM)
    if k >= n - 2:
        t_hi = 0.0 if k == n - 2 else top + 1
        hiatus = (au < v.canal_w / 2) & (vv > b) & (vv < dd + 14) & (t < t_hi)
        vol.paint(sl, hiatus, FAT)
    if k < n - 1:
        uf = 0.7 * a + 6
        tf = -hh - jb.height / 2
        q = (au - uf) ** 2 + (t - tf) ** 2
        hole = (vv > v_ant - 2) & (vv < v_post + 2)
        vol.paint(sl, hole & (q < (4.5 - 0.4 * k) ** 2), FAT)
        vol.paint(sl, hole & (q < 1.6**2) & (vv < dd), CORD)


def sacral_back(sp: Spine, v: Vertebra, hr: np.ndarray) -> np.ndarray:
    """Local v of the sacral canal's posterior wall, blended with the neighbouring segments."""
    sacs = [x for x in sp.verts if x.kind == "sacral"]
    k = sacs.index(v)
    d = [x.depth / 2 + x.canal_d for x in sacs]
    d_top = (d[k] + d[k - 1]) / 2 if k > 0 else d[k]
    d_bot = (d[k] + d[k + 1]) / 2 if k < len(sacs) - 1 else d[k]
    return d_bot + (d_top - d_bot) * hr


def paint_ilium(vol: Volume, sp: Spine, rng: np.random.Generator) -> None:
    """Iliac bones lateral to the sacroiliac joints, with iliacus and gluteal muscles."""
    sacs = [v for v in sp.verts if v.kind == "sacral"]
    s0 = sacs[0]
    fr = s0.frame
    b0, dsc = s0.depth / 2, s0.canal_d
    hh = s0.height / 2
    t_ctrl, w_ctrl = [hh], [s0.lat_top]
    for v in sacs[:3]:
        _, _, tb = fr.local(v.inf_c)
        t_ctrl.append(tb)
        w_ctrl.append(v.lat_bot)
    t_lo = (t_ctrl[-1] + t_ctrl[-2]) / 2
    crest = rng.uniform(25, 45)
    tj = rng.uniform(14, 20)
    v_j = 0.35 * b0 + 0.5 * dsc
    tc, wc = np.array(t_ctrl[::-1]), np.array(w_ctrl[::-1])
    keep = (MUSCLE, FAT, VFAT, BOWEL, BOWEL_FLUID, VESSEL)
    u_max = 100.0
    vr = (v_j - 0.9 * (u_max - min(w_ctrl)) - tj - 14, v_j + tj + 26)
    tr = (t_lo - 5, hh + crest + 2)
    for side in (-1, 1):
        res = vol.local(fr, (side * (min(w_ctrl) - 2), side * u_max), vr, tr)
        if res is None:
            continue
        sl, u, v, t = res
        # keep only (z, y) rows inside the rotated v-t rectangle: about half the bounding box
        iz, iy, _ = np.nonzero((v >= vr[0]) & (v <= vr[1]) & (t >= tr[0]) & (t <= tr[1]))
        v, t, u = v[iz, iy], t[iz, iy], u[0]
        block = vol.labels[sl][iz, iy]
        au = side * u
        auj = np.where(t > hh, s0.lat_top + 0.6 * (t - hh), np.interp(t, tc, wc))
        e = au - auj.astype(np.float32)
        ep = np.maximum(e, 0)
        thick = np.maximum(3.5, np.where(t > hh, 0.6 * tj, tj).astype(np.float32) - 0.3 * ep)
        dv = v - (v_j - 0.9 * ep)
        t_bottom = t_lo + 0.5 * ep
        depth = np.minimum(np.minimum(thick - np.abs(dv), e - 2.0), t - t_bottom)
        depth = np.minimum(depth, hh + crest - t)
        musc = (e > 2) & (((dv < -thick) & (depth > -12)) | ((dv > thick) & (depth > -25)))
        paint_into(block, musc, MUSCLE, (VFAT, FAT))
        bone_into(block, depth, ILIUM, keep, cortex=1.3)
        joint = (e > 0) & (e <= 2.0) & (np.abs(dv) < thick) & (t > t_bottom) & (t < hh)
        paint_into(block, joint, CARTILAGE, keep + (SACRUM, CORTEX))
        vol.labels[sl][iz, iy] = block


def canal_span(sp: Spine, v: Vertebra) -> tuple[float, float]:
    """Local (top, bottom) extent of the canal around vertebra ``v``: its own height plus half of
    each neighbour's and 1 mm, so the segments' canals overlap."""
    ja, jb = sp.above(v), sp.below(v)
    hh = v.height / 2
    top = hh + (ja.height / 2 + 1 if ja is not None else 0)
    bot = -hh - (jb.height / 2 + 1 if jb is not None else 0)
    return top, bot


def paint_canal(vol: Volume, sp: Spine, v: Vertebra) -> None:
    """Epidural and foraminal fat (carves the sacral canal)."""
    if v.kind == "coccyx":
        return
    fr = v.frame
    b, hh = v.depth / 2, v.height / 2
    top, bot = canal_span(sp, v)
    dc, wc = v.canal_d, v.canal_w
    if v.kind == "sacral":
        res = vol.local(fr, (-wc / 2 - 1, wc / 2 + 1), (b - 1, b + dc + 1), (bot, top))
        if res is None:
            return
        sl, u, vv, t = res
        dd = sacral_back(sp, v, np.clip((t - bot) / (top - bot), 0, 1))
        half = wc / 2 * (1 - 0.4 * np.clip((vv - b) / dc, 0, 1))
        vol.paint(sl, (np.abs(u) < half) & (vv > b - 0.5) & (vv < dd), FAT)
        return
    lat = wc / 2 + v.ped_w + 6
    res = vol.local(fr, (-lat, lat), (b - 3, b + dc + 1), (bot, top))
    if res is None:
        return
    sl, u, vv, t = res
    au = np.abs(u)
    canal = (au <= wc / 2 + 1) & (vv > b - 2) & (vv < b + dc + 1)
    foramen = (au > wc / 2 - 1) & (vv > b - 3) & (vv < b + 0.8 * dc) & (t < 0.2 * hh)
    vol.paint(sl, canal | foramen, FAT, SOFT)


def conus_point(sp: Spine, rng: np.random.Generator) -> tuple[Frame, np.ndarray, float]:
    """Frame, tip point and local tip coordinate of the conus medullaris."""
    name = str(rng.choice(["L1", "L2"], p=[0.7, 0.3]))
    v = sp.vert(name)
    t_tip = rng.uniform(-0.5, 0.2) * v.height if name == "L1" else rng.uniform(0.0, 0.5) * v.height
    fr = v.frame
    tip = fr.point(0, v.depth / 2 + v.canal_d / 2, t_tip)
    return fr, tip, t_tip


def paint_sac(vol: Volume, sp: Spine, v: Vertebra, conus: tuple, rng: np.random.Generator) -> None:
    """Thecal sac, spinal cord/conus and cauda equina strands within one segment."""
    if v.kind == "coccyx":
        return
    fr = v.frame
    b = v.depth / 2
    top, bot = canal_span(sp, v)
    dc, wc = v.canal_d, v.canal_w
    sw = min(wc / 2 - 2, 11.0) if v.mobile else min(wc / 2 - 2, 8.0)
    sd = dc / 2 - 1.8
    vc = b + dc / 2 + 0.3
    res = vol.local(fr, (-sw - 1, sw + 1), (vc - sd - 1, vc + sd + 1), (bot, top))
    if res is None:
        return
    sl, u, vv, t = res
    taper = np.ones_like(t)
    if v.kind == "sacral":
        s_end = sp.along(sp.sacral_top.sup_c, rng.uniform(28, 45))
        d_end = vol.plane(sl, s_end, fr.alpha)
        taper = np.sqrt(np.clip(d_end / 12.0, 0, 1))
    q = (u / sw) ** 2 + ((vv - vc) / sd) ** 2
    sac = q < taper**2
    vol.paint(sl, sac, CSF)
    cfr, tip, t_tip = conus
    tc = vol.plane(sl, tip, cfr.alpha)
    cord_f = np.clip(tc / 20.0, 0, 1) ** 0.6 * (1 + 0.15 * np.exp(-(((tc - 35) / 20) ** 2)))
    qc = (u / 5.0) ** 2 + ((vv - vc - 0.8) / 3.8) ** 2
    vol.paint(sl, sac & (qc < cord_f**2), CORD)
    n = 11 if v.mobile else 6
    for k in range(n):
        th = math.pi * (0.12 + 0.76 * k / (n - 1))
        uk = 0.62 * sw * math.cos(th)
        vk = vc + 0.5 * sd * math.sin(th) + 0.2 * sd
        qk = (u - uk) ** 2 + (vv - vk) ** 2
        vol.paint(sl, sac & (qk < 0.9**2) & (tc < 2.0), CORD)


def paint_interspinous(vol: Volume, j: Junction) -> None:
    """Interspinous ligament between adjacent spinous processes."""
    up = j.upper
    b = (up.depth + j.lower.depth) / 4
    v0 = b + up.canal_d + 2
    res = vol.local(
        j.frame, (-3, 3), (v0, v0 + 0.9 * up.sp_len), (-j.height / 2 - 8, j.height / 2 + 8)
    )
    if res is None:
        return
    sl, u, v, t = res
    strip = (np.abs(u) < 2.5) & (v > v0) & (v < v0 + 0.85 * up.sp_len)
    vol.paint(sl, strip, FAT, SOFT)
    vol.paint(sl, strip & (v > v0 + 0.35 * up.sp_len), LIGAMENT, SOFT)


def paint_posterior(vol: Volume, sp: Spine, vb: Vertebra) -> None:
    """Pedicles, laminae, pars, spinous and transverse processes, ribs."""
    fr = vb.frame
    b, h = vb.depth / 2, vb.height
    dc, wc, pw, ph = vb.canal_d, vb.canal_w, vb.ped_w, vb.ped_h
    mar = marrow_label(vb.ff)
    lt = 6.0 if vb.kind == "lumbar" else 5.0
    tc = h / 2 - ph / 2 - 1.5
    v0, v1 = b - 4, b + 0.8 * dc
    for side in (-1, 1):
        uc = side * (wc / 2 + pw / 2)
        res = vol.local(
            fr, (uc - pw / 2 - 1, uc + pw / 2 + 1), (v0, v1), (tc - ph / 2, tc + ph / 2)
        )
        if res is not None:
            sl, u, v, t = res
            q = ((u - uc) / (pw / 2)) ** 2 + ((t - tc) / (ph / 2)) ** 2
            depth = np.minimum((1 - np.sqrt(q)) * min(pw, ph) / 2, np.minimum(v - v0, v1 - v))
            vol.bone(sl, depth, mar)
    lat = wc / 2 + pw
    res = vol.local(fr, (-lat, lat), (b + 0.55 * dc, b + dc + lt), (-h / 2 - 4, h / 2 - 2))
    if res is not None:
        sl, u, v, t = res
        au = np.abs(u)
        lam = box_depth(
            [(au, -1, wc / 2 + 0.6 * pw), (v, b + dc, b + dc + lt), (t, -h / 2 - 4, h / 2 - 3)]
        )
        pars = box_depth(
            [(au, wc / 2 - 0.5, lat), (v, b + 0.6 * dc, b + dc + lt), (t, -0.15 * h, h / 2 - 2)]
        )
        vol.bone(sl, np.maximum(lam, pars), mar)
    paint_spinous(vol, vb, b + dc + lt / 2, mar)
    for side in (-1, 1):
        paint_tp(vol, vb, side, mar)
    if vb.kind == "thoracic":
        paint_ribs(vol, vb, mar)


def paint_spinous(vol: Volume, vb: Vertebra, v0: float, mar: int) -> None:
    """Spinous process: a plate sloping posteriorly and inferiorly from the lamina."""
    t0 = -0.1 * vb.height
    ls, hs, beta = vb.sp_len, vb.sp_h, vb.sp_slope
    cb, sb = math.cos(beta), math.sin(beta)
    res = vol.local(vb.frame, (-6, 6), (v0 - 3, v0 + ls * cb + hs), (t0 - ls * sb - hs, t0 + hs))
    if res is None:
        return
    sl, u, v, t = res
    along = (v - v0) * cb - (t - t0) * sb
    perp = (v - v0) * sb + (t - t0) * cb
    hw = 3.0 + 1.5 * np.clip(along / ls, 0, 1)
    depth = np.minimum(
        np.minimum(along + 2, ls - along), np.minimum(hs / 2 - np.abs(perp), hw - np.abs(u))
    )
    vol.bone(sl, depth, mar)


def paint_tp(vol: Volume, vb: Vertebra, side: int, mar: int) -> None:
    """Transverse process as a lateral sweep (optionally aimed at the sacral ala)."""
    b, h, dc = vb.depth / 2, vb.height, vb.canal_d
    u0 = vb.canal_w / 2 + 0.5 * vb.ped_w
    v_0, t_0 = b + 0.45 * dc, 0.1 * h
    r = vb.tp_r
    if side in vb.tp_targets:
        (tu, tv, tt), _ = vb.tp_targets[side]
        u1, v_1, t_1 = abs(tu), tv, tt
    elif vb.kind == "thoracic":
        u1, v_1, t_1 = u0 + vb.tp_len, b + dc + 6, t_0 + 2
    else:
        u1, v_1, t_1 = u0 + vb.tp_len, b + 0.3 * dc, t_0 + 2
    lo = (min(u0, u1) - 3, min(v_0, v_1) - r, min(t_0, t_1) - r)
    hi = (max(u0, u1) + r, max(v_0, v_1) + r, max(t_0, t_1) + r)
    if side < 0:
        lo, hi = (-hi[0], lo[1], lo[2]), (-lo[0], hi[1], hi[2])
    res = vol.local(vb.frame, *zip(lo, hi, strict=True))
    if res is None:
        return
    sl, u, v, t = res
    au = side * u
    s = np.clip((au - u0) / max(u1 - u0, 1.0), 0, 1)
    vc, tc = v_0 + s * (v_1 - v_0), t_0 + s * (t_1 - t_0)
    rv, rt = 0.7 * r * (1 - 0.2 * s), 1.2 * r * (1 - 0.2 * s)
    q = ((v - vc) / rv) ** 2 + ((t - tc) / rt) ** 2
    depth = np.minimum((1 - np.sqrt(q)) * rv, np.minimum(au - (u0 - 3), u1 + rv - au))
    vol.bone(sl, depth, mar)


def paint_ribs(vol: Volume, vb: Vertebra, mar: int) -> None:
    """Rib heads and proximal shafts for thoracic vertebrae."""
    fr, b, h = vb.frame, vb.depth / 2, vb.height
    u_tp = vb.canal_w / 2 + 0.5 * vb.ped_w + vb.tp_len
    for side in (-1, 1):
        pts = [
            fr.point(side * (vb.width / 2 - 2), 0.5 * b, h / 2 - 3),
            fr.point(side * u_tp, b + vb.canal_d * 0.7, 0),
            fr.point(side * (u_tp + 40), b + vb.canal_d * 0.6 - 4, -18),
        ]
        if vb.name != "T12":
            pts.append(fr.point(side * (u_tp + 75), b - 35, -40))
        for p0, p1 in zip(pts[:-1], pts[1:], strict=True):
            res = capsule(vol, p0, p1, 5.0)
            if res is not None:
                vol.bone(res[0], 5.0 - res[1], mar, (MUSCLE, FAT, VFAT, LUNG, LIVER, KIDNEY))


def paint_facets(vol: Volume, j: Junction, rng: np.random.Generator) -> None:
    """Facet joints: ellipsoidal pillar split by the joint plane into IAP and SAP."""
    up = j.upper
    b = (up.depth + j.lower.depth) / 4
    theta = math.radians(75 if up.kind == "thoracic" else 35 + 20 * rng.random())
    sc = j.facet
    ru = rv = 6.5 * sc
    rt = (j.height / 2 + 9) * sc
    gap = 1.6 if j.effusion else 0.9
    vc = b + 0.85 * up.canal_d
    for side in (-1, 1):
        uc = side * (up.canal_w / 2 + 0.5 * up.ped_w + 1.5)
        res = vol.local(j.frame, (uc - ru, uc + ru), (vc - rv, vc + rv), (-rt + 0.5, rt + 0.5))
        if res is None:
            continue
        sl, u, v, t = res
        q = ((u - uc) / ru) ** 2 + ((v - vc) / rv) ** 2 + ((t - 0.5) / rt) ** 2
        depth = (1 - np.sqrt(q)) * min(ru, rv)
        sgn = (u - uc) * side * math.cos(theta) - (v - vc) * math.sin(theta)
        vol.bone(sl, depth, marrow_label(up.ff))
        inside = depth > 0.4
        vol.paint(sl, inside & (np.abs(sgn) < gap / 2 + 0.8), CORTEX)
        vol.paint(sl, inside & (np.abs(sgn) < gap / 2), FLUID if j.effusion else CARTILAGE)


def paint_flavum(vol: Volume, j: Junction) -> None:
    """Ligamentum flavum on the posterior canal wall at the interlaminar level."""
    up = j.upper
    b = (up.depth + j.lower.depth) / 4
    v1 = b + up.canal_d + 3
    v0 = b + up.canal_d - j.flavum
    res = vol.local(
        j.frame,
        (-up.canal_w / 2 - 2, up.canal_w / 2 + 2),
        (v0, v1),
        (-j.height / 2 - 6, j.height / 2 + 2),
    )
    if res is None:
        return
    sl, u, v, t = res
    thick = j.flavum * (1 - 0.4 * np.clip(np.abs(u) / (up.canal_w / 2), 0, 1) ** 2)
    mask = (np.abs(u) < up.canal_w / 2 + 1) & (v > b + up.canal_d - thick)
    vol.paint(sl, mask, LIGAMENT, (FAT, CSF, CORD))


def paint_exiting_roots(vol: Volume, sp: Spine, vb: Vertebra) -> None:
    """Exiting nerve roots with dorsal root ganglia through the neural foramina."""
    fr, b, h = vb.frame, vb.depth / 2, vb.height
    jb = sp.below(vb)
    d = jb.height if jb is not None else 8.0
    only = (FAT, CSF, MUSCLE, VFAT)
    for side in (-1, 1):
        p1 = fr.point(side * (min(vb.canal_w / 2 - 2, 11.0) - 1), b + vb.canal_d / 2, -0.1 * h)
        p2 = fr.point(side * (vb.canal_w / 2 + 0.4 * vb.ped_w), b + 0.35 * vb.canal_d, -h / 2 + 1)
        p3 = fr.point(side * (vb.canal_w / 2 + vb.ped_w + 16), -0.3 * b, -h / 2 - d / 2 - 8)
        paint_tube(vol, [p1, p2, p3], 1.8, CORD, only)
        paint_ellipsoid(vol, p2, (2.8, 2.8, 3.2), CORD, only)


# --------------------------------------------------------------------------------------------
# Acquisition geometry
# --------------------------------------------------------------------------------------------

VENDORS: dict[str, dict] = {
    "SIEMENS": {
        "models": [("Aera", 1.5), ("MAGNETOM Sola", 1.5), ("Avanto_fit", 1.5), ("Skyra", 3.0),
                   ("Prisma", 3.0), ("MAGNETOM Vida", 3.0)],
        "t2": ["t2_tse_sag", "t2_tse_sag_384", "t2_tse_sag_p2"],
        "t1": ["t1_tse_sag", "t1_tse_sag_p2"],
        "ax": ["t2_tse_tra", "t2_tse_tra_384"],
        "software": "syngo MR XA31",
    },
    "GE MEDICAL SYSTEMS": {
        "models": [("SIGNA Artist", 1.5), ("Optima MR450w", 1.5), ("SIGNA Premier", 3.0),
                   ("DISCOVERY MR750w", 3.0)],
        "t2": ["Sag T2 FRFSE", "SAG T2 FSE", "Sag T2"],
        "t1": ["Sag T1 FSE", "SAG T1", "Sag T1 FLAIR"],
        "ax": ["Ax T2 FRFSE", "AX T2 FSE"],
        "software": "29\\LX\\MR Software release:RX29.1",
    },
    "Philips": {
        "models": [("Ingenia", 1.5), ("Achieva", 1.5), ("Ingenia Elition X", 3.0),
                   ("Achieva dStream", 3.0)],
        "t2": ["T2W_TSE SAG", "sT2W_TSE", "T2W_TSE_SAG"],
        "t1": ["T1W_TSE SAG", "sT1W_TSE"],
        "ax": ["T2W_TSE TRA", "T2W_TSE_TRA"],
        "software": "5.7.1\\5.7.1.2",
    },
    "CANON_MEC": {
        "models": [("Vantage Orian", 1.5), ("Vantage Elan", 1.5), ("Vantage Galan 3T", 3.0)],
        "t2": ["T2 SAG FSE", "Sag T2 FSE", "T2_SAG"],
        "t1": ["T1 SAG FSE", "Sag T1 FSE"],
        "ax": ["T2 AX FSE", "T2_AX"],
        "software": "V6.0",
    },
    "UIH": {
        "models": [("uMR 570", 1.5), ("uMR 680", 1.5), ("uMR 780", 3.0)],
        "t2": ["t2_fse_sag", "T2_FSE_SAG"],
        "t1": ["t1_fse_sag", "T1_FSE_SAG"],
        "ax": ["t2_fse_tra", "T2_FSE_TRA"],
        "software": "R005",
    },
}  # fmt: skip
MATRICES = [256, 288, 320, 352, 384, 416, 448, 512, 576, 640]


@dataclass
class SeriesSpec:
    """Geometry and acquisition of one series; planes are (centre, row dir, column dir)."""

    key: str
    tr: float
    te: float
    rows: int
    cols: int
    ps: float
    acq_rows: int
    acq_cols: int
    thickness: float
    spacing: float
    planes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    phase: str
    snr: float
    ghost: float
    apod: float
    scale: float
    etl: int
    flip: float
    bits: int
    slope: float | None
    description: str = ""
    number: int = 0
    extra: dict = field(default_factory=dict)

    def ipp(self, k: int) -> np.ndarray:
        c, r, cc = self.planes[k]
        return c - r * (self.cols - 1) / 2 * self.ps - cc * (self.rows - 1) / 2 * self.ps

    def normal(self, k: int) -> np.ndarray:
        _, r, c = self.planes[k]
        return np.cross(r, c)


def pick_matrix(rng: np.random.Generator, fov: float, ps_lo: float = 0.4) -> tuple[int, float]:
    """Matrix within 256-640 and pixel spacing within [ps_lo, 1.2] mm for a FOV."""
    lo = max(256, math.ceil(fov / 1.2))
    hi = min(640, math.floor(fov / ps_lo))
    opts = [m for m in MATRICES if lo <= m <= hi] or [int(np.clip(round(fov / 0.8), lo, hi))]
    m = int(rng.choice(opts))
    return m, round(fov / m, 4)


def acq_size(rng: np.random.Generator, n: int, fov: float, res: float) -> int:
    """Acquired (rendered) samples along one axis, never above the display matrix."""
    return int(min(n, max(96, round(fov / res)), 352))


def acq_params(rng: np.random.Generator, key: str) -> dict:
    """Timing and image-quality draws for one series."""
    if key == "t1_sag":
        tr, te, etl, flip = rng.uniform(400, 800), rng.uniform(8, 20), int(rng.integers(2, 6)), 90.0
    else:
        lo, hi = (2500, 5000) if key == "t2_sag" else (3000, 5500)
        tr, te = rng.uniform(lo, hi), rng.uniform(80, 130 if key == "t2_sag" else 120)
        etl, flip = int(rng.integers(12, 33)), float(rng.choice([90.0, 130.0, 150.0]))
    return {
        "tr": round(float(tr), 1),
        "te": round(float(te), 2),
        "etl": etl,
        "flip": flip,
        "snr": float(rng.uniform(10, 60)),
        "ghost": float(rng.uniform(0.02, 0.08)) if rng.random() < 0.35 else 0.0,
        "apod": float(rng.uniform(0.0, 0.6)),
        "scale": float(rng.uniform(800, 4000)),
        "bits": int(rng.choice([12, 16])),
    }


def disc_centres(sp: Spine) -> list[np.ndarray]:
    """Truth disc centres L1-L2 .. L5-S1 (mid-sagittal plane)."""
    names = [j.name for j in sp.juncs]
    out = []
    for lv in TRUTH_LEVELS:
        out.append(sp.juncs[names.index(lv)].center)
    return out


def canal_point(sp: Spine, name: str) -> np.ndarray:
    v = sp.vert(name)
    return v.frame.point(0, v.depth / 2 + v.canal_d / 2, 0)


def draw_sagittal(sp: Spine, rng: np.random.Generator) -> dict:
    """Orientation, obliquity, stack and field of view of the sagittal T2."""
    ant_left, head_up = rng.random() < 0.7, rng.random() < 0.9
    r0 = np.array([0.0, 1.0 if ant_left else -1.0, 0.0])
    c0 = np.array([0.0, 0.0, -1.0 if head_up else 1.0])
    thk = float(rng.choice([3.0, 3.0, 3.5, 4.0, 4.0, 4.5, 5.0]))
    gap = round(float(rng.choice([0.0, rng.uniform(0.2, 1.0)])), 2)
    spacing = thk + gap
    n = int(np.clip(min(int(rng.integers(9, 26)), int(100 // spacing)), 9, 25))
    mag, phi, psi = rng.uniform(0, 8), rng.uniform(0, 2 * math.pi), rng.uniform(-3, 3)
    delta = rng.uniform(-8, 8)
    g = canal_point(sp, "L3")
    discs = disc_centres(sp)
    for _ in range(40):
        yaw, roll = mag * math.cos(phi), mag * math.sin(phi)
        rot = rotation(2, yaw) @ rotation(1, roll) @ rotation(0, psi)
        nrm = np.cross(rot @ r0, rot @ c0)
        off = [abs(float((d - g) @ nrm) - delta) for d in discs]
        if max(off) <= (n - 1) / 2 * spacing + 0.2 * spacing:
            break
        mag, delta = mag * 0.8, delta * 0.85
    r, c = rot @ r0, rot @ c0
    mode = str(rng.choice(["T12-S3", "T11-S5", "T10-Co"], p=[0.5, 0.3, 0.2]))
    up_ext = {"T12-S3": (5, 20), "T11-S5": (30, 50), "T10-Co": (55, 75)}[mode]
    down = {"T12-S3": (55, 75), "T11-S5": (90, 110), "T10-Co": (125, 150)}[mode]
    p_top = sp.along(sp.vert("L1").sup_c, -rng.uniform(*up_ext))
    p_bot = sp.along(discs[-1], rng.uniform(*down))
    b = sorted([float((p_top - g) @ c), float((p_bot - g) @ c)])
    span = b[1] - b[0]
    fov_si = float(np.clip(span + rng.uniform(10, 50), 240, 440))
    fov_si = max(fov_si, span + 12)
    slack = fov_si - span - 8
    b_c = (b[0] + b[1]) / 2 + rng.uniform(-0.5, 0.5) * slack
    rows, ps = pick_matrix(rng, fov_si)
    cols = int(np.clip(round(fov_si * rng.uniform(0.75, 1.0) / ps), 256, 640))
    post = 1.0 if r[1] > 0 else -1.0
    a_c = post * (rng.uniform(60, 120) - cols * ps / 2)
    centre = g + a_c * r + b_c * c + delta * nrm
    return {
        "r": r, "c": c, "nrm": nrm, "centre": centre, "n": n, "thk": thk, "gap": gap,
        "rows": rows, "cols": cols, "ps": ps, "mode": mode, "anterior_left": ant_left,
        "head_up": head_up, "yaw": yaw, "roll": roll, "inplane": psi, "delta": delta,
        "fov_si": fov_si,
    }  # fmt: skip


def stack_planes(g: dict, n: int, spacing: float, centre: np.ndarray, rev: bool) -> list:
    """Parallel slice planes along the normal (optionally in reverse order)."""
    ks = range(n - 1, -1, -1) if rev else range(n)
    return [(centre + (k - (n - 1) / 2) * spacing * g["nrm"], g["r"], g["c"]) for k in ks]


def sag_series(rng: np.random.Generator, key: str, g: dict, t1_of: dict | None) -> SeriesSpec:
    """Sagittal T2 (``t1_of`` None) or T1 (derived from the T2 geometry) series spec."""
    p = acq_params(rng, key)
    n, thk, gap = g["n"], g["thk"], g["gap"]
    centre, rows, ps, cols = g["centre"], g["rows"], g["ps"], g["cols"]
    if t1_of is not None:
        n = int(np.clip(n + rng.choice([0, 0, 1, -1, 2]), 9, 25))
        thk = thk if rng.random() < 0.7 else float(np.clip(thk + rng.choice([-0.5, 0.5]), 3, 5))
        gap = gap if rng.random() < 0.7 else round(float(rng.uniform(0, 1)), 2)
        centre = centre + rng.uniform(-2, 2) * g["nrm"]
        rows, ps = pick_matrix(rng, g["fov_si"])
        cols = int(np.clip(round(cols * g["ps"] / ps), 256, 640))
    spacing = thk + gap
    res = rng.uniform(0.75, 1.15)
    phase = str(rng.choice(["ROW", "COL"]))
    pf = rng.uniform(0.7, 1.0)
    ar = acq_size(rng, rows, rows * ps, res / (pf if phase == "COL" else 1))
    ac = acq_size(rng, cols, cols * ps, res / (pf if phase == "ROW" else 1))
    planes = stack_planes(g, n, spacing, centre, rng.random() < 0.5)
    return SeriesSpec(
        key=key, tr=p["tr"], te=p["te"], rows=rows, cols=cols, ps=ps, acq_rows=ar, acq_cols=ac,
        thickness=thk, spacing=round(spacing, 2), planes=planes, phase=phase, snr=p["snr"],
        ghost=p["ghost"], apod=p["apod"], scale=p["scale"], etl=p["etl"], flip=p["flip"],
        bits=p["bits"], slope=None,
    )  # fmt: skip


def axial_series(rng: np.random.Generator, sp: Spine) -> SeriesSpec:
    """Axial T2 decoy: per-disc angled blocks or one contiguous stack through L3-S1."""
    p = acq_params(rng, "t2_ax")
    fov = rng.uniform(160, 200)
    m, ps = pick_matrix(rng, fov)
    rows = int(np.clip(round(m * rng.uniform(0.85, 1.0)), 256, 640))
    thk = round(float(rng.uniform(3.5, 5.0)), 1)
    gap = round(float(rng.uniform(0.3, 1.0)), 2)
    spacing = thk + gap
    dx, dv = rng.uniform(-4, 4), rng.uniform(-5, 25)
    r = np.array([1.0, 0.0, 0.0])
    planes = []
    blocks = rng.random() < 0.55
    if blocks:
        for name in ("L3-L4", "L4-L5", "L5-S1"):
            j = sp.junc(name)
            a = j.frame.alpha + math.radians(rng.uniform(-3, 3))
            nb = int(rng.integers(4, 7))
            c, nrm = post_vec(a), up_vec(a)
            cen = j.center + dx * r + dv * c
            planes += [(cen + (k - (nb - 1) / 2) * spacing * nrm, r, c) for k in range(nb)][::-1]
    else:
        top, bot = sp.vert("L3").frame.origin, sp.sacral_top.frame.origin
        a = float(np.mean([sp.vert(nm).frame.alpha for nm in ("L3", "L4", "L5")]))
        a += math.radians(rng.uniform(-4, 4))
        c, nrm = post_vec(a), up_vec(a)
        n = int(np.clip(math.ceil(float((top - bot) @ nrm) / spacing) + 1, 12, 40))
        mid = (top + bot) / 2 + dx * r + dv * c
        planes = [(mid + (k - (n - 1) / 2) * spacing * nrm, r, c) for k in range(n)]
    if rng.random() < 0.5:
        planes = planes[::-1]
    res = rng.uniform(0.6, 0.9)
    phase = str(rng.choice(["ROW", "COL"]))
    return SeriesSpec(
        key="t2_ax", tr=p["tr"], te=p["te"], rows=rows, cols=m, ps=ps,
        acq_rows=acq_size(rng, rows, rows * ps, res), acq_cols=acq_size(rng, m, m * ps, res),
        thickness=thk, spacing=round(spacing, 2), planes=planes, phase=phase, snr=p["snr"],
        ghost=p["ghost"], apod=p["apod"], scale=p["scale"], etl=p["etl"], flip=p["flip"],
        bits=p["bits"], slope=None, extra={"blocks": blocks},
    )  # fmt: skip


def volume_bounds(sp: Spine, specs: list[SeriesSpec]) -> tuple[np.ndarray, np.ndarray]:
    """Union of all imaged slabs, clipped to a box around the spine."""
    pts = []
    for s in specs:
        for k, (_, r, c) in enumerate(s.planes):
            o = s.ipp(k)
            n = s.normal(k) * s.thickness / 2
            for a in (0, (s.cols - 1) * s.ps):
                for b in (0, (s.rows - 1) * s.ps):
                    pts += [o + a * r + b * c + n, o + a * r + b * c - n]
    p = np.array(pts)
    g = canal_point(sp, "L3")
    lo = np.maximum(p.min(0) - 2, g + np.array([-112.0, -280.0, -330.0]))
    hi = np.minimum(p.max(0) + 2, g + np.array([112.0, 170.0, 330.0]))
    return lo, hi


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def trilinear(vol: Volume, lut: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of per-label signal at patient points (3, ...)."""
    nz, ny, nx = vol.labels.shape
    idx, wts = [], []
    for a, n in enumerate((nx, ny, nz)):
        f = (pts[a] - vol.origin[a]) / vol.h
        i = np.clip(np.floor(f), 0, n - 2).astype(np.int32)
        idx.append(i)
        wts.append(np.clip(f - i, 0.0, 1.0).astype(np.float32))
    ix, iy, iz = idx
    wx, wy, wz = wts
    base = (iz * ny + iy) * nx + ix
    flat = vol.labels.reshape(-1)
    out = np.zeros(base.shape, np.float32)
    for dz in (0, 1):
        w_z = wz if dz else 1 - wz
        for dy in (0, 1):
            w = w_z * (wy if dy else 1 - wy)
            b = base + (dz * ny + dy) * nx
            s0 = lut[flat[b]]
            s1 = lut[flat[b + 1]]
            out += w * (s0 + wx * (s1 - s0))
    return out


def render_plane(vol: Volume, lut: np.ndarray, s: SeriesSpec, k: int) -> tuple[np.ndarray, ...]:
    """Slice-profile-weighted signal on the acquisition grid, plus its y and z coordinates."""
    _, r, c = s.planes[k]
    o, n = s.ipp(k), s.normal(k)
    dr = s.rows * s.ps / s.acq_rows
    dc = s.cols * s.ps / s.acq_cols
    ii = np.arange(s.acq_rows) * dr
    jj = np.arange(s.acq_cols) * dc
    pts = (
        o[:, None, None]
        + c[:, None, None] * ii[None, :, None]
        + r[:, None, None] * jj[None, None, :]
    )
    nsub = 3 if s.thickness <= 4 else 4
    offs = ((np.arange(nsub) + 0.5) / nsub - 0.5) * s.thickness
    w = 1 - 0.35 * (2 * offs / s.thickness) ** 2
    w = w / w.sum()
    acc = np.zeros((s.acq_rows, s.acq_cols), np.float32)
    for off, wk in zip(offs, w, strict=True):
        acc += np.float32(wk) * trilinear(vol, lut, pts + (off * n)[:, None, None])
    return acc, pts[1], pts[2]


def acquire(
    img: np.ndarray, s: SeriesSpec, noise: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Noise, apodisation, ghosting and zero-filled interpolation; returns magnitude."""
    cimg = img.astype(np.complex64) + noise
    k = np.fft.fftshift(np.fft.fft2(cimg))
    ar, ac = k.shape
    kr = np.linspace(-1, 1, ar, dtype=np.float32)[:, None]
    kc = np.linspace(-1, 1, ac, dtype=np.float32)[None, :]
    k *= (1 - s.apod * kr**4) * (1 - s.apod * kc**4)
    if s.ghost > 0:
        axis = 0 if s.phase == "COL" else 1
        m = np.arange(k.shape[axis])
        period = s.extra.setdefault("ghost_period", float(rng.uniform(3, 9)))
        mod = 1 + s.ghost * np.cos(2 * np.pi * m / period + rng.uniform(0, 6.3))
        k *= mod[:, None] if axis == 0 else mod[None, :]
    big = np.zeros((s.rows, s.cols), np.complex64)
    r0, c0 = s.rows // 2 - ar // 2, s.cols // 2 - ac // 2
    big[r0 : r0 + ar, c0 : c0 + ac] = k
    out = np.fft.ifft2(np.fft.ifftshift(big)) * (s.rows * s.cols / (ar * ac))
    return np.abs(out).astype(np.float32)


def render_series(
    vol: Volume, s: SeriesSpec, lut: np.ndarray, rng: np.random.Generator, coil: dict
) -> list[np.ndarray]:
    """All slices of one series as float magnitude images."""
    sigma = float(lut[marrow_label(0.5)]) / s.snr
    beta = coil["normalize"]
    out = []
    for k in range(len(s.planes)):
        acc, y, z = render_plane(vol, lut, s, k)
        d = np.maximum(coil["y_table"] - y, 0)
        sens = (1 + (d / coil["length"]) ** 2) ** -0.7
        sens = sens * (1 + coil["ripple"] * np.cos(2 * np.pi * z / coil["period"] + coil["phase"]))
        sens = sens.astype(np.float32)
        shape = acc.shape
        nz = rng.standard_normal(shape, np.float32) + 1j * rng.standard_normal(shape, np.float32)
        nz = nz * (sigma * sens ** (-beta))
        out.append(acquire(acc * sens ** (1 - beta), s, nz.astype(np.complex64), rng))
    return out


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------


def ds(x: float, nd: int = 4) -> str:
    """Decimal string of at most 16 characters."""
    s = f"{x:.{nd}f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s[:16]


def quantize(images: list[np.ndarray], s: SeriesSpec) -> tuple[list[np.ndarray], float]:
    """Scale to stored integers; returns stored images and the value scale actually used."""
    sample = np.concatenate([im[::3, ::3].ravel() for im in images])
    top = float(np.percentile(sample, 99.5)) or 1.0
    factor = s.scale / top / (s.slope or 1.0)
    vmax = 4095 if s.bits == 12 else 65535
    out = [np.clip(np.rint(im * factor), 0, vmax).astype(np.uint16) for im in images]
    return out, factor


def series_dataset(study: dict, s: SeriesSpec, series_uid: str) -> Dataset:
    """Attributes common to all instances of a series."""
    d = Dataset()
    d.SpecificCharacterSet = "ISO_IR 100"
    d.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    d.SOPClassUID = MRImageStorage
    for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(d, k, study["date"])
    d.StudyTime = study["time"]
    d.SeriesTime = d.AcquisitionTime = d.ContentTime = study["time"]
    d.AccessionNumber = study["accession"]
    d.Modality = "MR"
    d.Manufacturer = study["vendor"]
    d.InstitutionName = "Eighth Synthetic Imaging"
    d.ReferringPhysicianName = ""
    d.StationName = "EIGHTHMR"
    d.StudyDescription = study["study_description"]
    d.SeriesDescription = s.description
    d.ManufacturerModelName = study["model"]
    d.PatientName = study["patient_name"]
    d.PatientID = study["patient_id"]
    d.PatientBirthDate = study["birth_date"]
    d.PatientSex = study["sex"]
    d.PatientAge = study["age"]
    d.BodyPartExamined = "LSPINE"
    d.ScanningSequence = "SE"
    d.SequenceVariant = ["SK", "SP", "OSP"]
    d.ScanOptions = "PFP" if s.phase == "ROW" else "PFF"
    d.MRAcquisitionType = "2D"
    d.SliceThickness = ds(s.thickness, 2)
    d.RepetitionTime = ds(s.tr, 2)
    d.EchoTime = ds(s.te, 2)
    d.NumberOfAverages = "1"
    d.ImagingFrequency = ds(42.577478 * study["b0"], 6)
    d.ImagedNucleus = "1H"
    d.MagneticFieldStrength = ds(study["b0"], 1)
    d.SpacingBetweenSlices = ds(s.spacing, 2)
    d.EchoTrainLength = s.etl
    d.SoftwareVersions = study["software"]
    d.ProtocolName = s.description
    if s.phase == "COL":
        d.AcquisitionMatrix = [0, s.acq_cols, s.acq_rows, 0]
    else:
        d.AcquisitionMatrix = [s.acq_rows, 0, 0, s.acq_cols]
    d.InPlanePhaseEncodingDirection = s.phase
    d.FlipAngle = ds(s.flip, 1)
    d.PatientPosition = "HFS"
    d.StudyInstanceUID = study["study_uid"]
    d.SeriesInstanceUID = series_uid
    d.StudyID = study["study_id"]
    d.SeriesNumber = s.number
    d.AcquisitionNumber = 1
    d.FrameOfReferenceUID = study["for_uid"]
    d.PositionReferenceIndicator = ""
    d.SamplesPerPixel = 1
    d.PhotometricInterpretation = "MONOCHROME2"
    d.Rows, d.Columns = s.rows, s.cols
    d.PixelSpacing = [ds(s.ps, 4), ds(s.ps, 4)]
    d.BitsAllocated = 16
    d.BitsStored = s.bits
    d.HighBit = s.bits - 1
    d.PixelRepresentation = 0
    return d


def write_series(
    folder: Path, study: dict, s: SeriesSpec, images: list[np.ndarray], series_uid: str
) -> None:
    """One Part 10 file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    stored, factor = quantize(images, s)
    base = series_dataset(study, s, series_uid)
    out_scale = s.scale
    for k, px in enumerate(stored):
        d = Dataset()
        d.update(base)
        sop = uid(study["seed"], study["index"], s.key, "sop", k)
        d.SOPInstanceUID = sop
        d.InstanceNumber = k + 1
        _, r, c = s.planes[k]
        ipp = s.ipp(k)
        d.ImagePositionPatient = [ds(v, 4) for v in ipp]
        d.ImageOrientationPatient = [ds(v, 6) for v in (*r, *c)]
        d.SliceLocation = ds(float(ipp @ s.normal(k)), 4)
        d.WindowCenter = ds(round(0.45 * out_scale), 0)
        d.WindowWidth = ds(round(0.9 * out_scale), 0)
        if s.slope is not None:
            d.RescaleIntercept = "0"
            d.RescaleSlope = ds(s.slope, 6)
            d.RescaleType = "US"
        d.PixelData = px.astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "EIGHTH_PHANTOM"
        d.file_meta = meta
        d.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    s.extra["value_factor"] = factor


# --------------------------------------------------------------------------------------------
# Study
# --------------------------------------------------------------------------------------------

VARIANTS = {0: "normal", 1: "lumbarization", 2: "normal", 3: "sacralization"}


@dataclass
class Study:
    """Everything drawn and rendered for one study."""

    seed: int
    index: int
    variant: str
    spine: Spine
    vol: Volume
    specs: list[SeriesSpec]
    images: dict[str, list[np.ndarray]]
    header: dict
    acquisition: dict


def header_draws(rng: np.random.Generator, seed: int, index: int) -> dict:
    """Vendor, scanner and patient/study identifiers."""
    vendor = str(rng.choice(list(VENDORS)))
    v = VENDORS[vendor]
    model, b0 = v["models"][int(rng.integers(len(v["models"])))]
    year = int(rng.integers(2016, 2025))
    age = int(rng.integers(22, 86))
    pid = int(rng.integers(10**8, 10**9))
    return {
        "seed": seed,
        "index": index,
        "vendor": "Philips Medical Systems" if vendor == "Philips" else vendor,
        "vendor_key": vendor,
        "model": model,
        "b0": b0,
        "software": v["software"],
        "date": f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "time": f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}00",
        "accession": f"E8{int(rng.integers(10**7, 10**8))}",
        "study_id": str(int(rng.integers(1, 100000))),
        "study_description": str(rng.choice(["MR LUMBAR SPINE", "LWS", "L-SPINE", "MRI L SPINE"])),
        "patient_name": f"EIGHTH^P{pid}",
        "patient_id": f"E8-{pid}",
        "birth_date": f"{year - age}0101",
        "sex": str(rng.choice(["F", "M"])),
        "age": f"{age:03d}Y",
        "study_uid": uid(seed, index, "study"),
        "for_uid": uid(seed, index, "frame"),
    }


def simulate(seed: int, index: int) -> Study:
    """Draw anatomy and acquisition, build the label volume and render all series."""
    variant = VARIANTS[index % 4]
    rng_anat = np.random.default_rng([seed, index, 1])
    rng_var = np.random.default_rng([seed, index, 2])
    rng_acq = np.random.default_rng([seed, index, 3])
    rng_noise = np.random.default_rng([seed, index, 4])
    sp = build_spine(rng_anat, rng_var, variant)
    hdr = header_draws(rng_acq, seed, index)
    geo = draw_sagittal(sp, rng_acq)
    t2 = sag_series(rng_acq, "t2_sag", geo, None)
    t1 = sag_series(rng_acq, "t1_sag", geo, geo)
    ax = axial_series(rng_acq, sp)
    names = VENDORS[hdr["vendor_key"]]
    for s, key in ((t2, "t2"), (t1, "t1"), (ax, "ax")):
        s.description = str(rng_acq.choice(names[key]))
        if hdr["vendor_key"] == "Philips" or rng_acq.random() < 0.15:
            s.slope = round(float(rng_acq.uniform(1.1, 3.5)), 6)
    numbers = rng_acq.permutation([3, 4, 5]) * int(rng_acq.choice([1, 100]))
    for s, num in zip((t2, t1, ax), numbers, strict=True):
        s.number = int(num) + (1 if num >= 100 else 0)
    lo, hi = volume_bounds(sp, [t2, t1, ax])
    h = max(0.7, float((np.prod(hi - lo) / 9.0e7) ** (1 / 3)))
    vol = Volume(lo, hi, h)
    pr = profiles(vol, sp, rng_anat)
    soft = paint_soft(vol, sp, pr, rng_anat)
    paint_organs(vol, sp, pr, rng_anat)
    paint_psoas(vol, sp, pr, rng_anat)
    paint_spine(vol, sp, rng_anat)
    ff = {"sacrum": min(0.9, sp.sacral_top.ff + 0.1), "ilium": min(0.9, sp.sacral_top.ff + 0.15)}
    coil = {
        "y_table": soft["y_table"],
        "length": float(rng_acq.uniform(80, 140)),
        "ripple": float(rng_acq.uniform(0, 0.12)),
        "period": float(rng_acq.uniform(80, 160)),
        "phase": float(rng_acq.uniform(0, 6.3)),
        "normalize": float(rng_acq.choice([0.0, rng_acq.uniform(0.2, 0.8)])),
    }
    images = {}
    for s in (t2, t1, ax):
        lut = signal_lut(s.tr, s.te, hdr["b0"], ff, float(rng_acq.uniform(0.03, 0.3)))
        images[s.key] = render_series(vol, s, lut, rng_noise, coil)
    acq = acquisition_record(hdr, geo, (t2, t1, ax), coil, sp, vol, soft)
    return Study(seed, index, variant, sp, vol, [t2, t1, ax], images, hdr, acq)


def acquisition_record(
    hdr: dict, geo: dict, specs: tuple, coil: dict, sp: Spine, vol: Volume, soft: dict
) -> dict:
    """Free-form record of the drawn parameters for truth.json."""
    rec = {
        "vendor": hdr["vendor"],
        "model": hdr["model"],
        "field_T": hdr["b0"],
        "coverage": geo["mode"],
        "anterior_left": bool(geo["anterior_left"]),
        "head_up": bool(geo["head_up"]),
        "obliquity_deg": {
            "yaw": round(float(geo["yaw"]), 2),
            "roll": round(float(geo["roll"]), 2),
            "inplane": round(float(geo["inplane"]), 2),
        },
        "stack_offset_mm": round(float(geo["delta"]), 2),
        "coil": {k: round(float(v), 3) for k, v in coil.items()},
        "voxel_mm": round(vol.h, 3),
        "volume_shape": list(vol.labels.shape),
        "anatomy": {
            **{k: v for k, v in sp.params.items() if k != "x_spine"},
            "x_spine": round(sp.params["x_spine"], 2),
            "subcut_fat_mm": soft["subcut_fat_mm"],
            "l5_tp": {str(k): v[1] for k, v in sp.vert("L5").tp_targets.items()},
            "l5s1_kind": sp.junc("L5-S1").kind,
            "l5s1_height_mm": round(sp.junc("L5-S1").height, 2),
            "s1s2_remnant_mm": round(sp.juncs[[j.name for j in sp.juncs].index("S1-S2")].remnant, 2)
            if sp.junc("S1-S2").kind == "fused"
            else None,
            "bridge": sp.junc("L5-S1").bridge,
        },
    }
    for s in specs:
        rec[s.key] = {
            "description": s.description,
            "series_number": s.number,
            "tr": s.tr,
            "te": s.te,
            "slices": len(s.planes),
            "thickness": s.thickness,
            "spacing": s.spacing,
            "rows": s.rows,
            "cols": s.cols,
            "pixel_spacing": s.ps,
            "acq_matrix": [s.acq_rows, s.acq_cols],
            "phase": s.phase,
            "snr": round(s.snr, 1),
            "ghost": round(s.ghost, 3),
            "scale": round(s.scale, 1),
            "bits_stored": s.bits,
            "rescale_slope": s.slope,
            **({"blocks": s.extra["blocks"]} if "blocks" in s.extra else {}),
        }
    return rec


def write_study(out_root: Path, seed: int, index: int) -> dict:
    """Simulate and write one study folder; returns the truth dict."""
    st = simulate(seed, index)
    folder = Path(out_root) / f"eighth-{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    uids = {}
    for s in st.specs:
        uids[s.key] = uid(seed, index, s.key, "series")
        sub = folder / f"s{s.number:03d}"
        write_series(sub, st.header, s, st.images[s.key], uids[s.key])
    t2 = st.specs[0]
    _, r, c = t2.planes[0]
    r_w = np.array([float(ds(v, 6)) for v in r])
    c_w = np.array([float(ds(v, 6)) for v in c])
    nrm = np.cross(r_w, c_w)
    nrm /= np.linalg.norm(nrm)
    truth = {
        "set": "eighth",
        "variation": "eighth",
        "variant": st.variant,
        "lstv": st.variant != "normal",
        "seed": seed,
        "index": index,
        "study_instance_uid": st.header["study_uid"],
        "t2_series_instance_uid": uids["t2_sag"],
        "slice_normal": [round(float(v), 6) for v in nrm],
        "discs": [
            {"level": lv, "patient_xyz": [round(float(v), 3) for v in p]}
            for lv, p in zip(TRUTH_LEVELS, disc_centres(st.spine), strict=True)
        ],
        "acquisition": st.acquisition,
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        truth = write_study(args.out_dir, args.seed, i)
        print(f"eighth-{i:03d} {truth['variant']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
