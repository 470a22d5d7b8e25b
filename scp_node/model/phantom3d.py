"""The second synthetic lumbar MR phantom generator: 3-D anatomy, spin-echo contrast, k-space.

Written (as ``bench/indep_phantom.py``) without reading the project's first generator
(:mod:`scp_node.model.phantom`), first as a held-out check of generalisation; since the
reference weights of 2026-12-02 its *normal* phantoms are also a second training source
(:func:`midline_series`, seeds disjoint from every evaluation set), so that the localizer learns
what two independent pictures of a spine share rather than one generator's look. The anatomy
is a continuous 3-D model in patient coordinates (LPS, mm; PS3.3 C.7.6.2.1.1), not a picture:

* the spine is a smooth centre curve in the mid-sagittal plane, obtained by integrating a
  tangent-angle profile (thoracic kyphosis, lumbar lordosis, sacral slope and sacral kyphosis);
* every pixel gets curvilinear coordinates ``(s, d, w)``: arc length along that curve, signed
  distance towards anterior, and left-right offset from the midline (a distance-field lookup);
* vertebral bodies, discs, canal, cord, cauda equina, posterior elements, muscles, vessels and fat
  are superellipses / tubes in ``(s, d, w)``; abdomen and pelvis are shapes in ``(y, z)``;
* each tissue has proton density, T1 and T2; a spin-echo signal ``PD (1 - e^-TR/T1) e^-TE/T2``
  makes the T2 (long TE) and T1 (short TE) series from one model;
* acquisition physics: slice-profile partial volume (sub-slices), k-space truncation (ringing,
  lower acquired resolution), coil sensitivity (posterior surface coil, smooth bias), complex
  Gaussian noise taken to magnitude (Rician), vendor-like scaling to 16-bit unsigned.

Each study gets a sagittal T2 series (the target), a sagittal T1 decoy and an axial T2 decoy with
one Study Instance UID, plus ``truth.json``. Disc names: ``L1-L2`` .. ``L4-L5`` always; normal and
sacralization have ``L5-S1`` (in sacralization it is rudimentary or fused: ``"disc": "rudimentary"``
or ``"fused"``); lumbarization has six lumbar-type segments and names its two lowest discs
``L5-L6`` (between L5 and the transitional segment, i.e. the lumbarized S1) and ``L6-S1`` (the real
disc between the transitional segment and the sacrum, anatomically the lumbarized S1-S2).

Confounders unrelated to LSTV are drawn for every variant: degenerate (dark, thin) discs at any
lumbar level including the lowest, Modic type 2 endplate bands, a vertebral haemangioma, scoliosis
of a few mm, lordosis and sacral slope ranges, patient size and fat.

Variation sets (``--set``; each balanced by position: normal, lumbarization, normal,
sacralization): ``standard`` (0.75 mm, 384 x 384, 13 slices of 4 mm + 0.4 mm gap, anterior on the
left, SNR 20, mild coil bias, centred, true sagittal); ``site`` (everything at random: 0.4-1.2 mm
pixels with a 240-340 mm field of view, 256-640 rows and columns, 9-25 slices of 3-5 mm, anterior
left or right, 30 % reversed instance order, obliquity up to 10 deg, SNR 6-60, coil fall-off
60-250 mm, spine up to 10 mm off the central slice and 35/40 mm off-centre in plane, acquired
matrix 55-100 %, N/2 ghosts, 1.5 or 3 T, TR/TE ranges, vendor scaling); and single variations of
``standard``: ``flip``, ``spacing05``, ``spacing11``, ``slices11``, ``slices19``, ``noise``
(SNR 5-8), ``bias`` (fall-off 50-70 mm), ``offcentre``, ``oblique`` (7-10 deg), ``coverage``
(240 mm field of view shifted 20 mm: L1-L2 or S1 may leave the image; ``discs_in_fov`` says).

    python bench/indep_phantom.py /tmp/indep/site --set site --count 24 --seed 5 [--preview]
    python bench/indep_phantom.py /tmp/indep/stress --set all --count 8 --seed 5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"  # PS3.4 B.5
IMPLEMENTATION_UID = "2.25.271828182845904523536028747135266249"

# --------------------------------------------------------------------------------------------
# Tissues: proton density (relative), T1 and T2 (ms) at roughly 1.5 T, texture amplitude.
# Fat T2 is that seen on fast spin echo (J-coupling makes fat bright on FSE).
# --------------------------------------------------------------------------------------------
TISSUES: dict[str, tuple[float, float, float, float]] = {
    "air": (0.0, 1000.0, 1.0, 0.0),
    "fat": (1.0, 280.0, 135.0, 0.06),
    "muscle": (0.8, 900.0, 42.0, 0.10),
    "marrow": (0.9, 520.0, 80.0, 0.14),
    "fatty_marrow": (0.95, 340.0, 115.0, 0.08),  # Modic type 2 change, haemangioma
    "cortex": (0.08, 1000.0, 6.0, 0.0),
    "annulus": (0.7, 950.0, 48.0, 0.05),
    "nucleus": (0.92, 1250.0, 135.0, 0.06),
    "nucleus_degen": (0.72, 950.0, 58.0, 0.10),
    "remnant": (0.8, 1000.0, 75.0, 0.05),
    "csf": (1.0, 4000.0, 1800.0, 0.01),
    "cord": (0.8, 820.0, 85.0, 0.03),
    "root": (0.75, 820.0, 65.0, 0.0),
    "ligament": (0.35, 800.0, 14.0, 0.0),
    "flow_void": (0.12, 1200.0, 25.0, 0.0),
    "vein": (0.6, 1200.0, 110.0, 0.1),
    "liver": (0.8, 560.0, 46.0, 0.06),
    "bowel": (0.85, 1100.0, 110.0, 0.0),
    "urine": (1.0, 3500.0, 1500.0, 0.0),
    "kidney": (0.85, 1050.0, 90.0, 0.05),
}
TISSUE_NAMES = tuple(TISSUES)
T = {name: i for i, name in enumerate(TISSUE_NAMES)}

VARIANTS = ("normal", "lumbarization", "normal", "sacralization")  # balanced by position
T2_NAMES = ("T2_TSE_SAG", "Sag T2 FSE", "t2_tse_sag_p2", "SAG T2 FRFSE", "T2W_TSE SAG")
T1_NAMES = ("T1_TSE_SAG", "Sag T1 FSE", "t1_tse_sag")
AX_NAMES = ("T2_TSE_TRA", "Ax T2 FSE", "t2_tse_tra_p2")


# --------------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------------
@dataclass
class Anatomy:
    """Study-level patient anatomy (sizes in mm, angles in degrees)."""

    variant: str
    size: float = 1.0  # overall skeletal scale
    lordosis: float = 1.0  # scale of the lumbar tangent angles
    sacral_slope: float = 40.0
    fat_back: float = 15.0  # posterior subcutaneous fat
    fat_front: float = 20.0
    abdomen_depth: float = 170.0  # anterior vertebral surface to anterior skin at L3
    muscle_back: float = 45.0
    degenerate: tuple[str, ...] = ()  # discs drawn dark and thin
    sacral_fusion: str = "partial"  # sacralization only: "partial" or "complete"
    scoliosis_mm: float = 0.0
    scoliosis_phase: float = 0.0
    tissue_jitter: dict[str, tuple[float, float]] = field(default_factory=dict)
    modic: tuple[tuple[str, str], ...] = ()  # (body, "top"|"bottom") fatty endplate bands
    haemangioma: tuple[str, float, float, float, float] | None = None  # body, u, d, w, radius


@dataclass
class Body:
    """A vertebral body (or the sacrum / a coccygeal piece) along the spine curve."""

    name: str
    s_top: float
    s_bot: float
    depth: float  # AP, mm
    width: float  # L-R, mm
    kind: str = "vertebra"  # vertebra | sacrum | coccyx

    @property
    def s_mid(self) -> float:
        return 0.5 * (self.s_top + self.s_bot)

    @property
    def height(self) -> float:
        return self.s_bot - self.s_top


@dataclass
class Disc:
    """The gap between two bodies: its name (upper-lower) and state."""

    name: str
    s_top: float
    s_bot: float
    depth: float
    width: float
    state: str = "normal"  # normal | degenerate | rudimentary | fused

    @property
    def s_mid(self) -> float:
        return 0.5 * (self.s_top + self.s_bot)


@dataclass
class Spine:
    """The laid-out spine: bodies, discs, centre curve samples and profiles along ``s``."""

    bodies: list[Body]
    discs: list[Disc]
    s: np.ndarray  # arc-length samples (mm), increasing caudally
    y: np.ndarray
    z: np.ndarray
    theta: np.ndarray  # tangent angle from -z towards +y (posterior), radians
    x_mid: np.ndarray  # midline x at each sample (mild scoliosis)
    s_conus: float
    s_sac_end: float  # end of the thecal sac (about S2)
    s_sacrum_top: float

    def at(self, s: float) -> tuple[float, float, float]:
        """Patient (x, y, z) of the curve at arc length ``s``."""
        return (
            float(np.interp(s, self.s, self.x_mid)),
            float(np.interp(s, self.s, self.y)),
            float(np.interp(s, self.s, self.z)),
        )

    def depth_profile(self, s: np.ndarray) -> np.ndarray:
        """Half AP depth of the body/disc column at ``s`` (for canal and prevertebral space)."""
        pts = [(b.s_mid, b.depth) for b in self.bodies]
        xs = np.array([p[0] for p in pts])
        ds = np.array([p[1] for p in pts])
        return 0.5 * np.interp(s, xs, ds)


_HEIGHTS = {"T8": 19, "T9": 20, "T10": 21, "T11": 22, "T12": 23, "L1": 25, "L2": 26, "L3": 27}
_HEIGHTS |= {"L4": 27, "L5": 26, "L6": 24}
_DEPTHS = {"T8": 24, "T9": 25, "T10": 26, "T11": 27, "T12": 28, "L1": 29, "L2": 30, "L3": 31}
_DEPTHS |= {"L4": 32, "L5": 33, "L6": 32}
_WIDTHS = {"T8": 30, "T9": 32, "T10": 34, "T11": 36, "T12": 38, "L1": 40, "L2": 43, "L3": 46}
_WIDTHS |= {"L4": 48, "L5": 50, "L6": 48}
_DISC_H = {"T8": 5, "T9": 5, "T10": 5.5, "T11": 6, "T12": 7, "L1": 8, "L2": 9, "L3": 10}
_DISC_H |= {"L4": 11, "L5": 10.5, "L6": 8}
# tangent angle (deg) at body centres for lordosis 1.0; positive = heading posterior going down
_THETA = {"T8": -8, "T9": -11, "T10": -13, "T11": -15, "T12": -16, "L1": -14, "L2": -8, "L3": 0}
_THETA |= {"L4": 10, "L5": 22}


def layout_spine(anat: Anatomy, rng: np.random.Generator) -> Spine:
    """Place bodies and discs along the arc and integrate the centre curve."""
    names = ["T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    if anat.variant == "lumbarization":
        names.append("L6")
    k = anat.size
    bodies: list[Body] = []
    discs: list[Disc] = []
    s = 0.0
    for i, name in enumerate(names):
        h = _HEIGHTS[name] * k * rng.uniform(0.95, 1.05)
        if anat.variant == "sacralization" and name == "L5":
            h *= 0.9  # short, trapezoid transitional body
        bodies.append(Body(name, s, s + h, _DEPTHS[name] * k, _WIDTHS[name] * k))
        s += h
        lower = names[i + 1] if i + 1 < len(names) else "S1"
        dname = f"{name}-{lower}"
        dh = _DISC_H[name] * k * rng.uniform(0.9, 1.1)
        state = "degenerate" if dname in anat.degenerate else "normal"
        if state == "degenerate":
            dh *= rng.uniform(0.45, 0.7)
        if anat.variant == "sacralization" and lower == "S1":
            state = "rudimentary" if anat.sacral_fusion == "partial" else "fused"
            dh = rng.uniform(2.0, 4.0) if state == "rudimentary" else rng.uniform(0.8, 1.5)
        width = 0.5 * (_WIDTHS[name] + _WIDTHS.get(lower, 52)) * k
        depth = 0.5 * (_DEPTHS[name] + _DEPTHS.get(lower, 33)) * k
        discs.append(Disc(dname, s, s + dh, depth, width, state))
        s += dh
    if anat.variant == "sacralization":
        bodies[-1].width *= 1.25
        bodies[-1].depth *= 1.05
    s_sacrum_top = s
    sac_len = (78.0 if anat.variant == "lumbarization" else 102.0) * k * rng.uniform(0.92, 1.08)
    bodies.append(Body("S", s, s + sac_len, 33.0 * k, 52.0 * k, "sacrum"))
    s += sac_len
    for j in range(3):
        ch = (9.0 - 2.0 * j) * k
        s += 1.2
        bodies.append(Body(f"Co{j + 1}", s, s + ch, (11.0 - 2 * j) * k, 14.0 * k, "coccyx"))
        s += ch
    return _integrate_curve(anat, bodies, discs, s_sacrum_top, rng)


def _theta_controls(anat: Anatomy, bodies: list[Body], s_sacrum_top: float) -> list[tuple]:
    """(s, degrees) control points of the tangent angle along the spine."""
    ss = anat.sacral_slope
    pts: list[tuple[float, float]] = []
    for b in bodies:
        if b.kind != "vertebra":
            continue
        th = _THETA.get(b.name, 0.0)
        if b.name.startswith("L"):
            th *= anat.lordosis
        if b.name == "L6":
            th = ss - 10.0
        if anat.variant == "sacralization" and b.name == "L5":
            th = ss - 6.0  # L5 sits tilted with the sacrum
        if anat.variant == "lumbarization" and b.name == "L5":
            th = min(th, ss - 22.0)
        pts.append((b.s_mid, th))
    sac = next(b for b in bodies if b.kind == "sacrum")
    pts.append((s_sacrum_top + 4.0, ss))
    pts.append((sac.s_top + 0.5 * sac.height, ss - 22.0))
    pts.append((sac.s_bot, ss - 48.0))
    pts.append((bodies[-1].s_bot, ss - 75.0))
    return pts


def _integrate_curve(
    anat: Anatomy, bodies: list[Body], discs: list[Disc], s_sacrum_top: float, rng
) -> Spine:
    ctrl = _theta_controls(anat, bodies, s_sacrum_top)
    cs = np.array([c[0] for c in ctrl])
    ct = np.array([c[1] for c in ctrl])
    ds = 0.5
    s = np.arange(-160.0, bodies[-1].s_bot + 160.0, ds)
    theta_deg = np.interp(s, cs, ct)
    kernel = np.ones(int(24 / ds)) / int(24 / ds)  # 24 mm smoothing of the angle profile
    padded = np.pad(theta_deg, len(kernel), mode="edge")
    theta_deg = np.convolve(padded, kernel, mode="same")[len(kernel) : -len(kernel)]
    theta = np.radians(theta_deg)
    y = np.cumsum(np.sin(theta)) * ds
    z = -np.cumsum(np.cos(theta)) * ds
    l3 = next(b for b in bodies if b.name == "L3")
    y -= np.interp(l3.s_mid, s, y)
    z -= np.interp(l3.s_mid, s, z)
    x_mid = anat.scoliosis_mm * np.sin(2 * np.pi * s / 420.0 + anat.scoliosis_phase)
    sac = next(b for b in bodies if b.kind == "sacrum")
    l1 = next(b for b in bodies if b.name == "L1")
    return Spine(
        bodies=bodies,
        discs=discs,
        s=s,
        y=y,
        z=z,
        theta=theta,
        x_mid=x_mid,
        s_conus=l1.s_bot + rng.uniform(-8.0, 6.0),
        s_sac_end=sac.s_top + 0.3 * sac.height,
        s_sacrum_top=s_sacrum_top,
    )


# --------------------------------------------------------------------------------------------
# Curvilinear coordinates: a (y, z) grid of (s, d) computed once per study
# --------------------------------------------------------------------------------------------
@dataclass
class CurveGrid:
    """``s`` and ``d`` (anterior positive) sampled on a regular (y, z) grid."""

    y0: float
    z0: float
    step: float
    s: np.ndarray  # [ny, nz]
    d: np.ndarray

    def lookup(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear interpolation of (s, d) at points (clamped to the grid)."""
        fy = np.clip((y - self.y0) / self.step, 0, self.s.shape[0] - 1.001)
        fz = np.clip((z - self.z0) / self.step, 0, self.s.shape[1] - 1.001)
        iy = fy.astype(np.int64)
        iz = fz.astype(np.int64)
        ty = fy - iy
        tz = fz - iz
        out = []
        for grid in (self.s, self.d):
            a = grid[iy, iz] * (1 - tz) + grid[iy, iz + 1] * tz
            b = grid[iy + 1, iz] * (1 - tz) + grid[iy + 1, iz + 1] * tz
            out.append(a * (1 - ty) + b * ty)
        return out[0], out[1]


def build_grid(
    spine: Spine, y_range: tuple[float, float], z_range: tuple[float, float], step: float = 1.0
) -> CurveGrid:
    """Nearest-point projection of every grid node on the curve (refined along the tangent);
    ``step`` is the node spacing in mm."""
    ys = np.arange(y_range[0] - 4, y_range[1] + 4, step)
    zs = np.arange(z_range[0] - 4, z_range[1] + 4, step)
    gy, gz = np.meshgrid(ys, zs, indexing="ij")
    py, pz = gy.ravel(), gz.ravel()
    sub = slice(None, None, 4)  # curve points every 2 mm
    cy, cz, cs, ct = spine.y[sub], spine.z[sub], spine.s[sub], spine.theta[sub]
    s_out = np.empty_like(py)
    d_out = np.empty_like(py)
    chunk = 4096
    for start in range(0, len(py), chunk):
        qy, qz = py[start : start + chunk], pz[start : start + chunk]
        dist = (qy[:, None] - cy[None, :]) ** 2 + (qz[:, None] - cz[None, :]) ** 2
        k = np.argmin(dist, axis=1)
        ty, tz = np.sin(ct[k]), -np.cos(ct[k])  # tangent (down the spine)
        ny, nz = -np.cos(ct[k]), -np.sin(ct[k])  # anterior normal
        ry, rz = qy - cy[k], qz - cz[k]
        s_out[start : start + chunk] = cs[k] + ry * ty + rz * tz
        d_out[start : start + chunk] = ry * ny + rz * nz
    return CurveGrid(ys[0], zs[0], step, s_out.reshape(gy.shape), d_out.reshape(gy.shape))


# --------------------------------------------------------------------------------------------
# Painting the tissue map of a set of points
# --------------------------------------------------------------------------------------------
@dataclass
class Points:
    """Sample points with their patient and curvilinear coordinates."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    s: np.ndarray
    d: np.ndarray
    w: np.ndarray


def _se(u: np.ndarray, p: float) -> np.ndarray:
    return np.abs(u) ** p


def _paint(label: np.ndarray, idx: np.ndarray, mask: np.ndarray, tissue: str) -> None:
    label[idx[mask]] = T[tissue]


def _sel(pts: Points, lo: float, hi: float, d_max: float = np.inf) -> np.ndarray:
    """Indices of points with ``lo <= s <= hi`` and ``d <= d_max`` (cheap pre-selection)."""
    return np.nonzero((pts.s >= lo) & (pts.s <= hi) & (pts.d <= d_max))[0]


def paint_background(pts: Points, label: np.ndarray, spine: Spine, anat: Anatomy) -> None:
    """Body outline, subcutaneous fat, back muscles, abdominal wall, abdomen and pelvis."""
    z_grid, y_muscle, y_skin = back_surfaces(spine, anat)
    back = np.interp(pts.z, z_grid, y_muscle)  # inner surface of the posterior fat (y)
    skin_back = np.interp(pts.z, z_grid, y_skin)
    y_front = _front_skin(pts.z, spine, anat)
    body_lr = ((pts.x - spine.x_mid.mean()) / (150.0 * anat.size + anat.fat_back)) ** 2
    body_ap = ((pts.y - (y_front + 0.5 * anat.abdomen_depth)) / (0.75 * anat.abdomen_depth)) ** 2
    inside = (pts.y <= skin_back) & (pts.y >= y_front) & (body_lr + 0.3 * body_ap <= 1.0)
    all_idx = np.arange(len(label))
    _paint(label, all_idx, inside, "fat")
    post = inside & (pts.y <= back) & (pts.d < 0)
    _paint(label, all_idx, post, "muscle")
    wall = inside & (pts.y >= y_front + anat.fat_front) & (pts.y < y_front + anat.fat_front + 11)
    _paint(label, all_idx, wall, "muscle")
    gut = inside & (pts.y >= y_front + anat.fat_front + 11) & (pts.d > 0)
    _paint(label, all_idx, gut, "bowel")
    z_l1 = spine.at(next(b for b in spine.bodies if b.name == "L1").s_mid)[2]
    _paint(label, all_idx, gut & (pts.z > z_l1 + 10 + 8 * np.sin(pts.y / 23.0)), "liver")
    _paint_pelvis(pts, label, spine, anat, gut)


def back_surfaces(spine: Spine, anat: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior muscle/fat interface and skin as y(z) (1 mm z grid).

    Offsetting the spine curve by ~120 mm on its concave (posterior) side folds it at the
    lumbosacral junction; the envelope (most posterior y per z) smoothed over 15 mm removes
    the fold, as the soft tissues of the back would."""
    s = spine.s
    half = spine.depth_profile(s)
    ramp = np.clip((s - spine.s_sacrum_top + 10.0) / 40.0, 0.0, 1.0)
    muscle = anat.muscle_back * (1.0 - 0.55 * ramp)  # thinner over the sacrum
    depth = half + _canal_ap(spine, s) + 8.0 + muscle
    y = spine.y + depth * np.cos(spine.theta)  # posterior offset of the centre curve
    z = spine.z + depth * np.sin(spine.theta)
    z_grid = np.arange(spine.z.min() - 5, spine.z.max() + 5, 1.0)
    env = np.full(len(z_grid), -np.inf)
    np.maximum.at(env, np.clip(np.rint(z - z_grid[0]).astype(int), 0, len(z_grid) - 1), y)
    ok = np.isfinite(env)
    env = np.interp(z_grid, z_grid[ok], env[ok])
    kernel = np.ones(15) / 15.0
    env = np.convolve(np.pad(env, 15, mode="edge"), kernel, "same")[15:-15]
    return z_grid, env, env + anat.fat_back


def _front_skin(z: np.ndarray, spine: Spine, anat: Anatomy) -> np.ndarray:
    """Anterior skin y as a function of z: a belly bulge around the umbilicus."""
    l3 = next(b for b in spine.bodies if b.name == "L3")
    _, y3, z3 = spine.at(l3.s_mid)
    front = y3 - 0.5 * l3.depth - anat.abdomen_depth
    return front + 25.0 * (1 - np.exp(-(((z - z3 + 20.0) / 140.0) ** 2))) ** 1.0


def _paint_pelvis(pts: Points, label, spine: Spine, anat: Anatomy, gut: np.ndarray) -> None:
    sac = next(b for b in spine.bodies if b.kind == "sacrum")
    _, ys, zs = spine.at(sac.s_bot)
    by = ys - 70.0 - 0.1 * anat.abdomen_depth
    bz = zs + 5.0
    bladder = ((pts.y - by) / 28.0) ** 2 + ((pts.z - bz) / 30.0) ** 2 + (pts.w / 40.0) ** 2 <= 1
    _paint(label, np.arange(len(label)), gut & bladder, "urine")
    idx = _sel(pts, spine.s_sacrum_top + 20, sac.s_bot + 30)
    rect = (np.abs(pts.d[idx] - (0.5 * 14 + 22)) < 10) & (np.abs(pts.w[idx]) < 18)
    _paint(label, idx, rect & gut[idx], "muscle")


def _canal_ap(spine: Spine, s: np.ndarray) -> np.ndarray:
    """Bony canal AP diameter along the spine (mm)."""
    sac = next(b for b in spine.bodies if b.kind == "sacrum")
    canal = np.interp(
        s,
        [spine.s[0], spine.s_sacrum_top - 60, spine.s_sacrum_top, sac.s_bot, spine.s[-1]],
        [15.0, 18.0, 17.0, 5.0, 3.0],
    )
    return canal


def paint_soft_prevertebral(pts: Points, label: np.ndarray, spine: Spine, anat: Anatomy) -> None:
    """Psoas muscles, aorta / iliac arteries (flow voids) and IVC."""
    l4 = next(b for b in spine.bodies if b.name == "L4")
    t12 = next(b for b in spine.bodies if b.name == "T12")
    half = spine.depth_profile(pts.s)
    idx = _sel(pts, spine.s[0], spine.s_sacrum_top + 15)
    fat = (pts.d[idx] > half[idx] - 4.0) & (pts.d[idx] < half[idx] + 6.0 + 0.01 * pts.w[idx] ** 2)
    fat &= (np.abs(pts.w[idx]) < 35.0) & (label[idx] != T["air"])
    _paint(label, idx, fat, "fat")  # retroperitoneal / prevertebral fat
    lig = (pts.d[idx] > half[idx] - 3.0) & (pts.d[idx] < half[idx] + 1.2)
    _paint(label, idx, lig & (np.abs(pts.w[idx]) < 12.0) & fat, "ligament")  # ALL
    _paint_kidneys(pts, label, spine, anat)
    idx = _sel(pts, t12.s_mid, spine.s_sacrum_top + 10)
    grow = np.clip((pts.s[idx] - t12.s_mid) / (spine.s_sacrum_top - t12.s_mid), 0, 1)
    r = 6.0 + 16.0 * grow
    wc = 0.5 * 45 * anat.size + 4 + r
    for sign in (-1.0, 1.0):
        m = ((pts.w[idx] - sign * wc) / r) ** 2 + ((pts.d[idx] - half[idx] * 0.2) / r) ** 2 <= 1
        m &= label[idx] != T["air"]
        _paint(label, idx, m, "muscle")
    idx = _sel(pts, spine.s[0], spine.s_sacrum_top + 40)
    s_i = pts.s[idx]
    diverge = np.clip(s_i - l4.s_mid, 0, None) * 0.45
    dv = pts.d[idx] - (half[idx] + 12.0)
    for centre, radius, tissue in ((14.0, 9.5, "flow_void"), (-17.0, 10.5, "vein")):
        for branch in (-1.0, 1.0) if centre > 0 else (1.0,):
            wc = centre + branch * diverge if centre > 0 else centre - diverge
            m = ((pts.w[idx] - wc) / radius) ** 2 + (dv / radius) ** 2 <= 1
            m &= label[idx] != T["air"]
            if centre > 0 and branch < 0:
                m &= s_i > l4.s_mid
            _paint(label, idx, m, tissue)


def _paint_kidneys(pts: Points, label: np.ndarray, spine: Spine, anat: Anatomy) -> None:
    """Kidneys lateral to the psoas from T12 to L3 (seen only on far-lateral slices)."""
    l1 = next(b for b in spine.bodies if b.name == "L1")
    idx = _sel(pts, l1.s_top - 60, l1.s_bot + 70)
    for sign, shift in ((-1.0, 12.0), (1.0, 0.0)):  # the right kidney sits lower
        q = (
            ((pts.s[idx] - l1.s_mid - shift) / 55.0) ** 2
            + ((pts.d[idx] + 2.0) / 24.0) ** 2
            + ((pts.w[idx] - sign * 68.0 * anat.size) / 22.0) ** 2
        )
        _paint(label, idx, (q <= 1) & (label[idx] != T["air"]), "kidney")


def paint_canal(pts: Points, label: np.ndarray, spine: Spine) -> None:
    """Epidural fat, thecal sac (CSF), cord / conus and the cauda equina roots."""
    idx = _sel(pts, spine.s[0], spine.bodies[-1].s_bot)
    s, d, w = pts.s[idx], pts.d[idx], pts.w[idx]
    half = spine.depth_profile(s)
    canal = _canal_ap(spine, s)
    front = -half - 0.5
    pll = (d <= -half + 3.0) & (d >= front - 1.0) & (np.abs(w) < 0.4 * half + 8.0)
    _paint(label, idx, pll, "ligament")  # posterior longitudinal ligament
    bony = (d <= front - 1.0) & (d >= front - canal) & (np.abs(w) < 11.0)
    _paint(label, idx, bony, "fat")
    taper = np.clip((spine.s_sac_end - s) / 25.0, 0, 1)
    sac_ap = 0.78 * canal * taper
    sac_w = 9.0 * taper
    dc = front - 1.0 - 0.5 * sac_ap
    sac = ((d - dc) / np.maximum(0.5 * sac_ap, 1e-3)) ** 2 + (w / np.maximum(sac_w, 1e-3)) ** 2 <= 1
    _paint(label, idx, sac, "csf")
    cord_r = 4.2 * np.clip((spine.s_conus - s) / 22.0 + 0.15, 0, 1)
    cord = ((d - dc - 0.6) / np.maximum(cord_r, 1e-3)) ** 2 + (w / 5.0) ** 2 <= 1
    _paint(label, idx, sac & cord & (cord_r > 0.4), "cord")
    roots = s > spine.s_conus - 10
    for k, (dd, ww) in enumerate(((-0.25, -2.5), (-0.3, 2.2), (0.05, -4.5), (0.0, 4.8))):
        rd = dc + dd * sac_ap + 0.4 * np.sin(s / (17.0 + k))
        m = roots & sac & ((d - rd) ** 2 + (w - ww) ** 2 <= 0.8**2)
        _paint(label, idx, m, "root")
    paint_foramina(pts, label, spine)


def paint_foramina(pts: Points, label: np.ndarray, spine: Spine) -> None:
    """Neural foramina (fat) with the exiting nerve root, lateral to the canal at each disc:
    what parasagittal slices show between the pedicles."""
    above = {d.name: b for b, d in zip(spine.bodies, spine.discs, strict=False)}
    for disc in spine.discs:
        upper = above.get(disc.name)
        if upper is None or disc.state == "fused":
            continue
        top = disc.s_top - 0.5 * upper.height
        idx = _sel(pts, top, disc.s_bot + 1.0, d_max=-0.5 * upper.depth + 1.0)
        if not len(idx):
            continue
        s, d, w = pts.s[idx], pts.d[idx], pts.w[idx]
        half = 0.5 * upper.depth
        canal = _canal_ap(spine, np.array([disc.s_mid]))[0]
        lateral = (np.abs(w) >= 10.0) & (np.abs(w) <= 0.5 * upper.width + 4.0)
        su = (s - 0.5 * (top + disc.s_bot)) / (0.5 * (disc.s_bot - top))
        dv = (d + half + 0.45 * canal) / (0.45 * canal + 0.5)
        _paint(label, idx, lateral & (su**2 + dv**4 <= 1), "fat")
        root = ((s - top - 0.3 * upper.height) / 3.0) ** 2 + ((d + half + 0.3 * canal) / 2.5) ** 2
        _paint(label, idx, lateral & (root <= 1), "root")


def paint_discs(pts: Points, label: np.ndarray, spine: Spine) -> None:
    """Annulus and nucleus between the endplates (degenerate, rudimentary or fused states)."""
    for disc in spine.discs:
        idx = _sel(pts, disc.s_top - 3.0, disc.s_bot + 3.0)
        if not len(idx):
            continue
        s, d, w = pts.s[idx], pts.d[idx], pts.w[idx]
        h = max(disc.s_bot - disc.s_top, 0.5)
        u = (s - disc.s_mid) / (0.5 * h + 2.5)
        bulge = 1.5 if disc.state == "normal" else 2.5
        a = 0.5 * disc.depth + bulge * np.clip(1 - u**2, 0, 1)
        b = 0.5 * disc.width + bulge
        outline = (np.abs(u) <= 1) & (_se(d / a, 2.2) + _se(w / b, 2.2) <= 1)
        if disc.state == "fused":
            _paint(label, idx, outline, "marrow")
            line = outline & (np.abs(s - disc.s_mid) < 0.6) & (np.abs(d) < 0.3 * disc.depth)
            _paint(label, idx, line, "cortex")
            continue
        if disc.state == "rudimentary":
            _paint(label, idx, outline, "marrow")
            rem = (np.abs(s - disc.s_mid) <= 0.5 * h) & (np.abs(d + 2) < 0.3 * disc.depth)
            _paint(label, idx, outline & rem & (np.abs(w) < 0.3 * disc.width), "nucleus_degen")
            continue
        _paint(label, idx, outline, "annulus")
        nh = 0.5 * h * (0.75 if disc.state == "normal" else 0.5)
        nu = (s - disc.s_mid) / max(nh, 0.4)
        na = 0.33 * disc.depth
        nucleus = _se(nu, 2) + _se((d + 0.08 * disc.depth) / na, 2) + _se(w / (0.3 * disc.width), 2)
        tissue = "nucleus" if disc.state == "normal" else "nucleus_degen"
        _paint(label, idx, outline & (nucleus <= 1), tissue)
        if disc.state == "normal":  # intranuclear cleft: a thin dark band in adult discs
            cleft = (np.abs(s - disc.s_mid) < 0.5) & (np.abs(d) < 0.25 * disc.depth)
            _paint(label, idx, outline & (nucleus <= 1) & cleft, "annulus")


def paint_bodies(pts: Points, label: np.ndarray, spine: Spine, anat: Anatomy) -> None:
    """Vertebral bodies, sacrum and coccyx: cortical shell around marrow (superellipses)."""
    for body in spine.bodies:
        idx = _sel(pts, body.s_top - 1.0, body.s_bot + 1.0)
        if not len(idx):
            continue
        s, d, w = pts.s[idx], pts.d[idx], pts.w[idx]
        if body.kind == "sacrum":
            _paint_sacrum(idx, s, d, w, label, spine, body)
            continue
        h = 0.5 * body.height
        u = (s - body.s_mid) / h
        a = 0.5 * body.depth * (1 - 0.05 * np.clip(1 - u**2, 0, 1))  # anterior waist
        b = 0.5 * body.width
        radial = np.clip(1 - (d / a) ** 2 - (w / b) ** 2, 0, 1)
        concave = 1.6 * radial * (body.kind == "vertebra")  # endplates bowed in at the centre
        for shrink, tissue in ((0.0, "cortex"), (1.3, "marrow")):
            uu = (s - body.s_mid) / (h - shrink - concave)
            inside = (_se(uu, 7) + _se(d / (a - shrink), 5) <= 1) & (
                _se(d / (a - shrink), 2.4) + _se(w / (b - shrink), 2.4) <= 1
            )
            _paint(label, idx, inside, tissue)
        if body.kind == "vertebra":  # basivertebral vein: bright notch in the posterior cortex
            vein = (np.abs(u) < 0.12) & (d < -a + 4.5) & (d > -a - 0.5) & (np.abs(w) < 3)
            _paint(label, idx, vein, "vein")
        _paint_marrow_lesions(idx, u, d, w, label, body, anat, h, a, b)


def _paint_marrow_lesions(idx, u, d, w, label, body: Body, anat: Anatomy, h, a, b) -> None:
    """Confounders unrelated to LSTV: Modic type 2 endplate bands and a haemangioma."""
    inner = (np.abs(d) < 0.75 * a - 1.3) & (np.abs(w) < 0.6 * b) & (np.abs(u) < 1 - 1.3 / h)
    for name, side in anat.modic:
        if name == body.name:
            band = (u > 1 - 6.5 / h) if side == "bottom" else (u < -1 + 6.5 / h)
            _paint(label, idx, inner & band, "fatty_marrow")
    if anat.haemangioma and anat.haemangioma[0] == body.name:
        _, hu, hd, hw, r = anat.haemangioma
        blob = ((u - hu) * h) ** 2 + (d - hd * a) ** 2 + (w - hw * b) ** 2 <= r**2
        _paint(label, idx, blob & inner, "fatty_marrow")


def _paint_sacrum(idx, s, d, w, label, spine: Spine, body: Body) -> None:
    t = np.clip((s - body.s_top) / body.height, 0, 1)
    a = 0.5 * body.depth * (1 - 0.62 * t)
    b = 0.5 * body.width * (1 - 0.6 * t) + 24.0 * (1 - t) ** 2  # alae laterally at the top
    shift = -0.1 * body.depth * t  # the sacrum thins anteriorly
    for shrink, tissue in ((0.0, "cortex"), (1.3, "marrow")):
        ends = (s >= body.s_top + shrink) & (s <= body.s_bot - shrink)
        inside = ends & (_se((d - shift) / (a - shrink), 4) + _se(w / (b - shrink), 3) <= 1)
        _paint(label, idx, inside, tissue)
    n_rem = 3 if body.height > 90 else 2  # rudimentary sacral discs (S1-S2 the clearest)
    for j in range(n_rem):
        sr = body.s_top + body.height * (0.27 + 0.2 * j)
        tj = (sr - body.s_top) / body.height
        aj = 0.5 * body.depth * (1 - 0.62 * tj)
        thick = 1.6 - 0.5 * j
        rem = (np.abs(s - sr) < thick) & (np.abs(d + 0.1 * body.depth * tj) < 0.7 * aj)
        rem &= np.abs(w) < 0.5 * body.width * (1 - 0.6 * tj)
        _paint(label, idx, rem, "remnant" if j == 0 else "cortex")


def paint_posterior(pts: Points, label: np.ndarray, spine: Spine) -> None:
    """Pedicles, laminae, ligamenta flava, spinous processes, facets; dorsal sacrum."""
    for body in spine.bodies:
        if body.kind == "coccyx":
            continue
        lo, hi = body.s_top - 6, body.s_bot + (40 if body.name.startswith("T") else 14)
        idx = _sel(pts, lo, hi, d_max=-0.5 * body.depth + 2.0)
        idx = idx[np.abs(pts.w[idx]) < 0.5 * body.width + 6.0]
        if not len(idx):
            continue
        s, d, w = pts.s[idx], pts.d[idx], pts.w[idx]
        half = 0.5 * body.depth
        canal = _canal_ap(spine, np.array([body.s_mid]))[0]
        back = -half - 0.5 - canal  # posterior wall of the canal
        h = body.height
        if body.kind == "sacrum":
            plate = (d < back) & (d > back - 7) & (np.abs(w) < 0.3 * body.width)
            plate &= s > body.s_top + 4
            crest = (d < back) & (d > back - 16) & (np.abs(w) < 3.5)
            crest &= np.sin((s - body.s_top) / body.height * 3.2 * np.pi) > 0.2
            _paint(label, idx, plate | crest, "marrow")
            continue
        thoracic = body.name.startswith("T")
        sp_len = (22.0 if thoracic else 28.0) * (body.width / 45.0) ** 0.3
        sp_shift = (0.75 if thoracic else 0.3) * h
        lig = (d < back) & (d > back - 4) & (np.abs(w) < 14)
        lig &= np.abs(s - body.s_bot - 3) < 5
        _paint(label, idx, lig, "ligament")
        parts = [
            # (s centre, d centre, half s, half d, half w, w centre)
            (body.s_mid + 0.3 * h, back - 3.5, 0.45 * h, 3.5, 16.0, 0.0),  # lamina
            (body.s_mid + sp_shift, back - 6 - 0.5 * sp_len, 0.3 * h, 0.5 * sp_len, 3.5, 0.0),
            (body.s_mid - 0.15 * h, -half - 0.5 * canal, 0.28 * h, 0.5 * canal + 2, 4.5, 0.0),
            (body.s_bot + 4.0, back - 1.0, 0.3 * h, 6.0, 6.0, 0.0),  # facet
        ]
        for k, (sc, dc, hs, hd, hw, _wc) in enumerate(parts):
            centres = [0.0] if k < 2 else [-(0.5 * body.width - 7.0), 0.5 * body.width - 7.0]
            if k == 3:
                centres = [-0.36 * body.width, 0.36 * body.width]
            for wc in centres:
                for shrink, tissue in ((0.0, "cortex"), (1.1, "marrow")):
                    q = (
                        _se((s - sc) / (hs - shrink), 4)
                        + _se((d - dc) / (hd - shrink), 4)
                        + _se((w - wc) / (hw - shrink), 4)
                    )
                    _paint(label, idx, q <= 1, tissue)


def paint_iliac(pts: Points, label: np.ndarray, spine: Spine, anat: Anatomy) -> None:
    """Iliac wings and sacroiliac region lateral to the sacrum (parasagittal slices only)."""
    sac = next(b for b in spine.bodies if b.kind == "sacrum")
    idx = _sel(pts, spine.s_sacrum_top - 30, sac.s_top + 0.7 * sac.height)
    if not len(idx):
        return
    s, d, w = pts.s[idx], pts.d[idx], pts.w[idx]
    top = spine.s_sacrum_top - (22.0 if anat.variant == "sacralization" else 12.0)
    for sign in (-1.0, 1.0):
        wc = sign * 62.0 * anat.size
        q = _se((s - top - 45) / 45.0, 2) + _se((d + 5) / 22.0, 2) + _se((w - wc) / 16.0, 2)
        _paint(label, idx, q <= 1, "cortex")
        q2 = _se((s - top - 45) / 43.5, 2) + _se((d + 5) / 20.5, 2) + _se((w - wc) / 14.0, 2)
        _paint(label, idx, q2 <= 1, "marrow")
    if anat.variant == "sacralization":  # enlarged L5 transverse processes meeting the ala
        l5 = next(b for b in spine.bodies if b.name == "L5")
        for sign in (-1.0, 1.0):
            q = (
                _se((s - l5.s_mid - 4) / (0.45 * l5.height), 4)
                + _se((d + 6) / 9.0, 4)
                + _se((w - sign * 0.75 * l5.width) / (0.35 * l5.width), 4)
            )
            _paint(label, idx, q <= 1, "marrow")


def tissue_map(pts: Points, spine: Spine, anat: Anatomy, seed: int) -> np.ndarray:
    """Tissue index of every point, painted back to front."""
    label = np.full(len(pts.x), T["air"], dtype=np.int8)
    paint_background(pts, label, spine, anat)
    paint_soft_prevertebral(pts, label, spine, anat)
    paint_iliac(pts, label, spine, anat)
    paint_canal(pts, label, spine)
    paint_posterior(pts, label, spine)
    paint_discs(pts, label, spine)
    paint_bodies(pts, label, spine, anat)
    return label


# --------------------------------------------------------------------------------------------
# MR signal and acquisition physics
# --------------------------------------------------------------------------------------------
@dataclass
class Acquisition:
    """Site/protocol parameters of the sagittal series (mm, degrees, ms)."""

    pixel_spacing: float = 0.75
    rows: int = 384
    cols: int = 384
    slices: int = 13
    thickness: float = 4.0
    gap: float = 0.4
    anterior_left: bool = True  # row direction +y (columns go posterior)
    reverse_order: bool = False  # Instance Number runs along -normal
    oblique_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # about z, y, x
    snr: float = 20.0
    coil_falloff_mm: float = 180.0
    bias_ripple: float = 0.05
    lr_offset: float = 0.0  # stack centre minus spine midline (mm)
    ap_offset: float = 0.0
    si_offset: float = 0.0
    kspace_fraction: float = 0.8  # acquired / displayed matrix
    ghost: float = 0.0  # alternate-line k-space modulation along rows (N/2 ghost, motion)
    scale_target: float = 2000.0
    tr_t2: float = 4000.0
    te_t2: float = 100.0
    tr_t1: float = 550.0
    te_t1: float = 11.0
    field_t: float = 1.5
    t2_name: str = "T2_TSE_SAG"
    t1_name: str = "T1_TSE_SAG"
    ax_name: str = "T2_TSE_TRA"
    manufacturer: str = "INDEPENDENT PHANTOM"


def spin_echo(
    label: np.ndarray, tr: float, te: float, anat: Anatomy, field_t: float = 1.5
) -> np.ndarray:
    """Spin-echo magnitude ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` per tissue (lookup table).

    At 3 T the T1 of water-rich tissue is about 20 % longer; fat barely changes."""
    lut = np.zeros(len(TISSUE_NAMES))
    for i, name in enumerate(TISSUE_NAMES):
        pd, t1, t2, _ = TISSUES[name]
        j1, j2 = anat.tissue_jitter.get(name, (1.0, 1.0))
        if field_t > 2.0 and name not in ("fat", "fatty_marrow"):
            t1 *= 1.2
        lut[i] = pd * (1 - math.exp(-tr / (t1 * j1))) * math.exp(-te / (t2 * j2))
    return lut[label]


class Texture:
    """A smooth random 3-D field (sum of plane waves), values roughly in [-1, 1]."""

    def __init__(
        self, rng: np.random.Generator, n: int = 10, wl: tuple[float, float] = (6.0, 40.0)
    ) -> None:
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        k = 2 * np.pi / rng.uniform(wl[0], wl[1], size=n)
        self.k = dirs * k[:, None]
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.norm = math.sqrt(2.0 / n)

    def __call__(self, x, y, z) -> np.ndarray:
        out = np.zeros_like(x)
        for (kx, ky, kz), ph in zip(self.k, self.phase, strict=True):
            out += np.cos(kx * x + ky * y + kz * z + ph)
        return out * self.norm

    def on_plane(self, plane: Plane) -> np.ndarray:
        """The field on a plane's pixel grid (flattened), as separable row x column waves."""
        rows = np.arange(plane.rows) * plane.spacing
        cols = np.arange(plane.cols) * plane.spacing
        out = np.zeros((plane.rows, plane.cols))
        for k, ph in zip(self.k, self.phase, strict=True):
            er = np.exp(1j * (k @ plane.col_dir) * rows)
            ec = np.exp(1j * (k @ plane.row_dir) * cols)
            out += np.real(np.exp(1j * (k @ plane.origin + ph)) * np.outer(er, ec))
        return (out * self.norm).ravel()


@dataclass
class Plane:
    """One image: top-left pixel centre, row/column direction cosines, spacing, matrix."""

    origin: np.ndarray
    row_dir: np.ndarray  # direction of increasing column index (PS3.3 C.7.6.2.1.1)
    col_dir: np.ndarray  # direction of increasing row index
    spacing: float
    rows: int
    cols: int

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    def points(self, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = np.arange(self.rows) * self.spacing
        c = np.arange(self.cols) * self.spacing
        base = self.origin + offset * self.normal
        xyz = [
            base[i] + self.col_dir[i] * r[:, None] + self.row_dir[i] * c[None, :] for i in range(3)
        ]
        return xyz[0].ravel(), xyz[1].ravel(), xyz[2].ravel()


class Renderer:
    """Renders planes of one study (shared anatomy, curve grid and texture fields)."""

    def __init__(self, spine: Spine, anat: Anatomy, grid: CurveGrid, seed: int) -> None:
        self.spine, self.anat, self.grid, self.seed = spine, anat, grid, seed
        rng = np.random.default_rng(seed + 17)
        self.texture = Texture(rng)
        self.gut = Texture(rng, n=14, wl=(20.0, 60.0))
        self._fields_key: int | None = None
        self.field_t = 1.5
        self._fields: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))

    def labels(self, plane: Plane, offsets: list[float]) -> list[tuple[Points, np.ndarray]]:
        """Tissue maps at sub-slice offsets (for slice-profile partial volume)."""
        out = []
        for off in offsets:
            x, y, z = plane.points(off)
            s, d = self.grid.lookup(y, z)
            w = x - np.interp(s, self.spine.s, self.spine.x_mid)
            pts = Points(x, y, z, s, d, w)
            out.append((pts, tissue_map(pts, self.spine, self.anat, self.seed)))
        return out

    def signal(
        self, maps: list[tuple[Points, np.ndarray]], plane: Plane, tr: float, te: float
    ) -> np.ndarray:
        """Noise-free magnitude averaged over the sub-slices (texture taken at the centre)."""
        tex_amp = np.array([TISSUES[n][3] for n in TISSUE_NAMES])
        key = id(plane)
        if self._fields_key != key:
            self._fields = (self.texture.on_plane(plane), self.gut.on_plane(plane))
            self._fields_key = key
        tex, gut_field = self._fields
        acc = np.zeros(plane.rows * plane.cols)
        for _pts, label in maps:
            sig = spin_echo(label, tr, te, self.anat, self.field_t) * (1 + tex_amp[label] * tex)
            gut = label == T["bowel"]
            sig[gut] *= np.clip(0.8 + 0.45 * gut_field[gut], 0.15, 1.5)  # fluid, wall, gas
            acc += sig
        return acc / len(maps)


def coil_sensitivity(pts_y, pts_z, acq: Acquisition, y_table: float, z0: float) -> np.ndarray:
    """Posterior surface-coil receive profile: exponential depth fall-off with element ripple."""
    depth = np.clip(y_table - pts_y, 0, None)
    ripple = 1 + acq.bias_ripple * np.cos(2 * np.pi * (pts_z - z0) / 110.0)
    return (0.25 + 0.75 * np.exp(-depth / acq.coil_falloff_mm)) * ripple


def acquire(
    image: np.ndarray, acq: Acquisition, noise_sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """k-space truncation (acquired matrix) plus complex white noise, back to magnitude."""
    rows, cols = image.shape
    phase = np.exp(1j * rng.uniform(-0.3, 0.3))
    k = np.fft.fftshift(np.fft.fft2(image * phase))
    kr = max(8, int(rows * acq.kspace_fraction / 2))
    kc = max(8, int(cols * min(1.0, acq.kspace_fraction * 1.15) / 2))
    mask = np.zeros_like(k, dtype=bool)
    mask[rows // 2 - kr : rows // 2 + kr, cols // 2 - kc : cols // 2 + kc] = True
    frac = mask.mean()
    if acq.ghost:  # phase encoding along the rows (superior-inferior): an N/2 ghost
        k[::2] *= 1.0 + acq.ghost
        k[1::2] *= 1.0 - acq.ghost
    noise = rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)
    k = np.where(mask, k + noise * noise_sigma * math.sqrt(rows * cols) / math.sqrt(frac), 0)
    return np.abs(np.fft.ifft2(np.fft.ifftshift(k)))


# --------------------------------------------------------------------------------------------
# Geometry of the series
# --------------------------------------------------------------------------------------------
def rotation(deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation about z, then y, then x (patient axes), angles in degrees."""
    az, ay, ax = np.radians(deg)
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    return rz @ ry @ rx


def sagittal_planes(spine: Spine, acq: Acquisition) -> list[Plane]:
    """The sagittal slice stack, in Instance Number order."""
    centre = fov_centre(spine, acq)
    rot = rotation(acq.oblique_deg)
    row_dir = rot @ np.array([0.0, 1.0 if acq.anterior_left else -1.0, 0.0])
    col_dir = rot @ np.array([0.0, 0.0, -1.0])
    normal = np.cross(row_dir, col_dir)
    step = acq.thickness + acq.gap
    order = np.arange(acq.slices) - (acq.slices - 1) / 2.0
    if acq.reverse_order:
        order = order[::-1]
    planes = []
    for k in order:
        c = centre + k * step * normal
        origin = (
            c
            - row_dir * acq.pixel_spacing * (acq.cols - 1) / 2.0
            - col_dir * acq.pixel_spacing * (acq.rows - 1) / 2.0
        )
        planes.append(Plane(origin, row_dir, col_dir, acq.pixel_spacing, acq.rows, acq.cols))
    return planes


def fov_centre(spine: Spine, acq: Acquisition) -> np.ndarray:
    """Field-of-view centre: between the L1-L2 and L5-S1 levels, a little anterior to the
    vertebral bodies, shifted by the acquisition offsets."""
    top = spine.at(spine.discs[[d.name for d in spine.discs].index("L1-L2")].s_mid)
    bottom = spine.at(spine.discs[-1].s_mid)
    x = 0.5 * (top[0] + bottom[0]) + acq.lr_offset
    y = 0.5 * (top[1] + bottom[1]) - 15.0 + acq.ap_offset
    z = 0.5 * (top[2] + bottom[2]) + acq.si_offset
    return np.array([x, y, z])


def axial_planes(spine: Spine, acq: Acquisition, rng: np.random.Generator) -> list[Plane]:
    """A small axial stack around L4-L5 / L5-S1 (the decoy)."""
    lower = [d for d in spine.discs if d.name in ("L4-L5", "L5-S1", "L5-L6", "L6-S1")]
    zc = np.mean([spine.at(d.s_mid)[2] for d in lower])
    _, yc, _ = spine.at(lower[0].s_mid)
    n, spacing, matrix = int(rng.integers(10, 16)), 4.5, int(rng.choice([256, 288, 320]))
    ps = round(float(rng.uniform(200, 250)) / matrix, 4)
    planes = []
    for k in range(n):
        c = np.array([spine.x_mid.mean(), yc + 10.0, zc + (k - (n - 1) / 2) * spacing])
        row_dir, col_dir = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        origin = c - row_dir * ps * (matrix - 1) / 2 - col_dir * ps * (matrix - 1) / 2
        planes.append(Plane(origin, row_dir, col_dir, ps, matrix, matrix))
    return planes


def plane_extent(planes: list[Plane], margin: float) -> tuple[tuple, tuple]:
    """(y, z) bounding box of a set of planes' corners, with margin (mm)."""
    ys, zs = [], []
    for p in planes:
        for r in (0, p.rows - 1):
            for c in (0, p.cols - 1):
                q = p.origin + p.col_dir * r * p.spacing + p.row_dir * c * p.spacing
                ys.append(q[1])
                zs.append(q[2])
    return (min(ys) - margin, max(ys) + margin), (min(zs) - margin, max(zs) + margin)


# --------------------------------------------------------------------------------------------
# Random study parameters and named variation sets
# --------------------------------------------------------------------------------------------
def draw_anatomy(variant: str, rng: np.random.Generator) -> Anatomy:
    """Patient-level anatomy: size, curvature, fat, disc degeneration, tissue contrast."""
    lowest = "L5-L6" if variant == "lumbarization" else "L5-S1"
    degenerate: list[str] = []
    modic: list[tuple[str, str]] = []
    for name, p in (("L2-L3", 0.08), ("L3-L4", 0.12), ("L4-L5", 0.3), (lowest, 0.3)):
        if rng.random() < p:
            degenerate.append(name)
            upper, lower = name.split("-")
            if rng.random() < 0.35:
                modic.append((upper, "bottom"))
            if rng.random() < 0.35 and lower.startswith("L"):
                modic.append((lower, "top"))
    if variant == "lumbarization" and rng.random() < 0.3:
        degenerate.append("L6-S1")
    haemangioma = None
    if rng.random() < 0.25:
        haemangioma = (
            f"L{int(rng.integers(1, 6))}",
            float(rng.uniform(-0.5, 0.5)),
            float(rng.uniform(-0.4, 0.4)),
            float(rng.uniform(-0.3, 0.3)),
            float(rng.uniform(3.0, 7.0)),
        )
    jitter = {
        name: (float(rng.normal(1, 0.06)), float(rng.normal(1, 0.08)))
        for name in TISSUE_NAMES
        if name != "air"
    }
    # marrow (age: red -> fatty), fat and CSF contrast vary most between patients and sequences
    jitter["marrow"] = (float(rng.uniform(0.7, 1.2)), float(rng.uniform(0.75, 1.4)))
    jitter["fat"] = (jitter["fat"][0], float(rng.uniform(0.75, 1.25)))
    jitter["csf"] = (jitter["csf"][0], float(rng.uniform(0.6, 1.2)))
    return Anatomy(
        variant=variant,
        size=float(rng.uniform(0.9, 1.1)),
        lordosis=float(rng.uniform(0.7, 1.25)),
        sacral_slope=float(rng.uniform(32, 48)),
        fat_back=float(rng.uniform(6, 40)),
        fat_front=float(rng.uniform(8, 45)),
        abdomen_depth=float(rng.uniform(140, 220)),
        muscle_back=float(rng.uniform(38, 55)),
        degenerate=tuple(degenerate),
        sacral_fusion=str(rng.choice(["partial", "complete"])),
        scoliosis_mm=float(rng.uniform(0, 3)),
        scoliosis_phase=float(rng.uniform(0, 2 * np.pi)),
        tissue_jitter=jitter,
        modic=tuple(modic),
        haemangioma=haemangioma,
    )


def _names(acq: Acquisition, rng: np.random.Generator) -> Acquisition:
    return replace(
        acq,
        t2_name=str(rng.choice(T2_NAMES)),
        t1_name=str(rng.choice(T1_NAMES)),
        ax_name=str(rng.choice(AX_NAMES)),
    )


def _oblique(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    v = rng.normal(size=3)
    v *= rng.uniform(lo, hi) / np.linalg.norm(v)
    return float(v[0]), float(v[1]), float(v[2])


def site_acquisition(rng: np.random.Generator) -> Acquisition:
    """Every site variation at random, from physics-like parameters."""
    spacing = float(rng.uniform(0.4, 1.2))
    fov_si = float(rng.uniform(240, 340))
    rows = int(np.clip(round(fov_si / spacing / 16) * 16, 256, 640))
    cols = int(np.clip(round(rows * rng.uniform(0.7, 1.0) / 16) * 16, 256, 640))
    return Acquisition(
        pixel_spacing=round(spacing, 4),
        rows=rows,
        cols=cols,
        slices=int(rng.integers(9, 26)),
        thickness=float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0])),
        gap=float(rng.choice([0.0, 0.3, 0.4, 0.5, 1.0])),
        anterior_left=bool(rng.random() < 0.5),
        reverse_order=bool(rng.random() < 0.3),
        oblique_deg=_oblique(rng, 0.0, 10.0),
        snr=float(np.exp(rng.uniform(np.log(6), np.log(60)))),
        coil_falloff_mm=float(rng.uniform(60, 250)),
        bias_ripple=float(rng.uniform(0.0, 0.25)),
        lr_offset=float(rng.uniform(-10, 10)),
        ap_offset=float(rng.uniform(-35, 35)),
        si_offset=float(rng.uniform(-40, 40)),
        kspace_fraction=float(rng.uniform(0.55, 1.0)),
        ghost=float(rng.uniform(0.0, 0.08)) if rng.random() < 0.35 else 0.0,
        scale_target=float(rng.choice([800, 1500, 2500, 4000, 12000])),
        tr_t2=float(rng.uniform(2500, 5000)),
        te_t2=float(rng.uniform(85, 120)),
        tr_t1=float(rng.uniform(400, 750)),
        te_t1=float(rng.uniform(8, 14)),
        field_t=float(rng.choice([1.5, 3.0])),
    )


SET_MODIFIERS: dict[str, Callable[[np.random.Generator], dict]] = {
    "standard": lambda r: {},
    "flip": lambda r: {"anterior_left": False},
    "spacing05": lambda r: {"pixel_spacing": 0.5, "rows": 576, "cols": 576},
    "spacing11": lambda r: {"pixel_spacing": 1.1, "rows": 256, "cols": 256},
    "slices11": lambda r: {"slices": 11},
    "slices19": lambda r: {"slices": 19},
    "noise": lambda r: {"snr": float(r.uniform(5.0, 8.0))},
    "bias": lambda r: {"coil_falloff_mm": float(r.uniform(50, 70)), "bias_ripple": 0.3},
    "offcentre": lambda r: {
        "lr_offset": float(r.choice([-1, 1]) * r.uniform(6, 10)),
        "ap_offset": float(r.uniform(-35, 35)),
        "si_offset": float(r.uniform(-35, 35)),
    },
    "oblique": lambda r: {"oblique_deg": _oblique(r, 7.0, 10.0)},
    "coverage": lambda r: {"rows": 320, "si_offset": float(r.choice([-1, 1]) * 20.0)},
}
SETS = ("standard", "site", *[k for k in SET_MODIFIERS if k != "standard"])


def draw_acquisition(set_name: str, rng: np.random.Generator) -> Acquisition:
    """Acquisition parameters for one study of a named variation set."""
    if set_name == "site":
        acq = site_acquisition(rng)
    else:
        acq = replace(Acquisition(), **SET_MODIFIERS[set_name](rng))
    return _names(acq, rng)


# --------------------------------------------------------------------------------------------
# DICOM writing (MR Image Storage, PS3.3 A.4; Explicit VR Little Endian)
# --------------------------------------------------------------------------------------------
@dataclass
class SeriesSpec:
    """What distinguishes one series of the study."""

    number: int
    description: str
    tr: float
    te: float
    planes: list[Plane]
    thickness: float
    spacing_between: float
    etl: int


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["indep-phantom", *[str(p) for p in parts]])


def _ds(v: float) -> str:
    """A Decimal String value that fits 16 characters (PS3.5 6.2)."""
    text = f"{v:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def study_header(seed: int, study_uid: str, acq: Acquisition) -> Dataset:
    """Patient, General Study, Frame of Reference and Equipment attributes shared by all series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = f"INDEP^PHANTOM{seed}"
    ds.PatientID = f"IND{seed}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = str(seed % 10**8)
    ds.AccessionNumber = f"A{seed % 10**8}"
    ds.StudyDescription = "MR LUMBAR SPINE"
    ds.FrameOfReferenceUID = _uid(seed, "for")
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = acq.manufacturer
    ds.MagneticFieldStrength = _ds(acq.field_t)
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    return ds


def instance(base: Dataset, spec: SeriesSpec, k: int, pixels: np.ndarray, seed: int) -> Dataset:
    """One MR Image Storage instance (PS3.3 A.4): image plane, pixel and MR image modules."""
    plane = spec.planes[k]
    series_uid = _uid(seed, "series", spec.number)
    sop_uid = _uid(seed, "sop", spec.number, k)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MR_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    ds = Dataset()
    ds.update(base)
    ds.file_meta = meta
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = spec.number
    ds.SeriesDescription = spec.description
    ds.ProtocolName = spec.description
    ds.InstanceNumber = k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK", "OSP"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = _ds(spec.tr)
    ds.EchoTime = _ds(spec.te)
    ds.EchoTrainLength = spec.etl
    ds.ImagedNucleus = "1H"
    ds.SliceThickness = _ds(spec.thickness)
    ds.SpacingBetweenSlices = _ds(spec.spacing_between)
    ds.ImageOrientationPatient = [_ds(v) for v in (*plane.row_dir, *plane.col_dir)]
    ds.ImagePositionPatient = [_ds(v) for v in plane.origin]
    ds.SliceLocation = _ds(float(plane.origin @ plane.normal))
    ds.PixelSpacing = [_ds(plane.spacing), _ds(plane.spacing)]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    hi = float(np.percentile(pixels, 99.5))
    ds.WindowCenter = _ds(round(hi / 2))
    ds.WindowWidth = _ds(max(round(hi), 1))
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


# --------------------------------------------------------------------------------------------
# One study
# --------------------------------------------------------------------------------------------
def render_series(
    renderer: Renderer,
    planes: list[Plane],
    thickness: float,
    contrasts: list[tuple[float, float]],
    acq: Acquisition,
    rng: np.random.Generator,
) -> list[list[np.ndarray]]:
    """Float images per contrast (TR, TE) for each plane, with coil, truncation and noise."""
    offsets = [-thickness / 3.0, 0.0, thickness / 3.0]
    y_table = float(np.interp(renderer.spine.s_sacrum_top, renderer.spine.s, renderer.spine.y))
    y_table += 0.5 * 33 + 17 + 8 + renderer.anat.muscle_back + renderer.anat.fat_back
    z0 = float(renderer.spine.z[len(renderer.spine.z) // 2])
    out: list[list[np.ndarray]] = [[] for _ in contrasts]
    ref = None
    for plane in planes:
        maps = renderer.labels(plane, offsets)
        pts = maps[1][0]
        coil = coil_sensitivity(pts.y, pts.z, acq, y_table, z0).reshape(plane.rows, plane.cols)
        for ci, (tr, te) in enumerate(contrasts):
            clean = renderer.signal(maps, plane, tr, te).reshape(plane.rows, plane.cols) * coil
            if ref is None:  # noise level from the first slice's tissue signal
                ref = float(np.mean(clean[clean > 0.05 * clean.max()]))
            out[ci].append(acquire(clean, acq, ref / acq.snr, rng))
    return out


def to_uint16(images: list[np.ndarray], target: float) -> list[np.ndarray]:
    """Vendor-like scaling of a series to unsigned 16-bit (no Rescale: PS3.3 C.7.6.3)."""
    hi = float(np.percentile(np.stack(images), 99.7)) or 1.0
    return [np.clip(np.rint(im * target / hi), 0, 65535).astype(np.uint16) for im in images]


def truth_discs(spine: Spine) -> list[dict]:
    """Disc centres (patient LPS mm) with their state, from L1-L2 down."""
    out = []
    started = False
    for disc in spine.discs:
        started = started or disc.name == "L1-L2"
        if not started:
            continue
        x, y, z = spine.at(disc.s_mid)
        out.append(
            {
                "level": disc.name,
                "patient_xyz": [round(x, 3), round(y, 3), round(z, 3)],
                "disc": disc.state,
            }
        )
    return out


def in_fov(planes: list[Plane], xyz: list[float], margin: float) -> bool:
    """Whether a point projects inside the image of the middle plane with a margin (mm)."""
    p = planes[len(planes) // 2]
    rel = np.asarray(xyz) - p.origin
    col = rel @ p.row_dir / p.spacing
    row = rel @ p.col_dir / p.spacing
    m = margin / p.spacing
    return bool(m <= col <= p.cols - 1 - m and m <= row <= p.rows - 1 - m)


def framed(spine: Spine, acq: Acquisition, discs: list[dict]) -> tuple[Acquisition, list[Plane]]:
    """The sagittal stack with the lumbar discs in view, as a technologist would place it: the
    drawn superior-inferior and anterior-posterior offsets shrink until every disc is 12 mm
    inside the middle slice's field (at most 20 tries)."""
    sag = sagittal_planes(spine, acq)
    for _ in range(20):
        if all(in_fov(sag, d["patient_xyz"], 12.0) for d in discs):
            break
        acq = replace(acq, si_offset=0.6 * acq.si_offset, ap_offset=0.6 * acq.ap_offset)
        sag = sagittal_planes(spine, acq)
    return acq, sag


@dataclass
class MidlineSeries:
    """The sagittal T2 slices nearest the midline of one phantom, for training and validation
    (no DICOM files): 16-bit-scaled images, their planes, the lumbar disc truth (patient mm,
    :func:`truth_discs`) and the centres of every mobile disc (normal or degenerate, thoracic
    ones included; not rudimentary or fused)."""

    variant: str
    seed: int
    images: np.ndarray  # [K, rows, cols] float32
    planes: list[Plane]
    slice_step: float
    discs: list[dict]
    mobile_discs: list[tuple[float, float, float]]


def midline_series(
    seed: int, variant: str = "normal", slices: int = 5, max_spacing: float = 1.8
) -> MidlineSeries:
    """``slices`` sagittal T2 slices around the midline of a ``site``-set study (every site
    variation drawn). Where the drawn pixels are finer than ``max_spacing`` mm the same field is
    rendered at ``max_spacing`` (the localizer's canonical grid is coarser still), and the curve
    grid at 2 mm: about 1-2 s per phantom instead of a whole study's 10-30 s."""
    rng = np.random.default_rng(seed)
    anat = draw_anatomy(variant, rng)
    spine = layout_spine(anat, rng)
    acq = _names(site_acquisition(rng), rng)
    if acq.pixel_spacing < max_spacing:
        f = acq.pixel_spacing / max_spacing
        acq = replace(
            acq,
            pixel_spacing=max_spacing,
            rows=max(64, round(acq.rows * f)),
            cols=max(64, round(acq.cols * f)),
        )
    discs = truth_discs(spine)
    acq, sag = framed(spine, acq, discs)
    mid_x = float(np.mean(spine.x_mid))
    centres = [
        p.origin + (p.row_dir * (p.cols - 1) + p.col_dir * (p.rows - 1)) * p.spacing / 2
        for p in sag
    ]
    nearest = int(np.argmin([abs(float(c[0]) - mid_x) for c in centres]))
    lo = min(max(0, nearest - slices // 2), max(0, len(sag) - slices))
    planes = sag[lo : lo + slices]
    (y0, y1), (z0, z1) = plane_extent(planes, 6.0)
    renderer = Renderer(spine, anat, build_grid(spine, (y0, y1), (z0, z1), step=2.0), seed)
    renderer.field_t = acq.field_t
    (t2,) = render_series(renderer, planes, acq.thickness, [(acq.tr_t2, acq.te_t2)], acq, rng)
    mobile = [spine.at(d.s_mid) for d in spine.discs if d.state in ("normal", "degenerate")]
    return MidlineSeries(
        variant=variant,
        seed=seed,
        images=np.stack(to_uint16(t2, acq.scale_target)).astype(np.float32),
        planes=planes,
        slice_step=acq.thickness + acq.gap,
        discs=discs,
        mobile_discs=mobile,
    )


def make_study(
    out_dir: Path,
    set_name: str,
    index: int,
    seed: int,
    preview: bool = False,
    acquisition: Acquisition | None = None,
) -> dict:
    """Write one study (three series and truth.json) and return its truth record.

    ``acquisition`` replaces the set's drawn parameters (for tests: a tiny matrix)."""
    rng = np.random.default_rng(seed)
    variant = VARIANTS[index % len(VARIANTS)]
    anat = draw_anatomy(variant, rng)
    spine = layout_spine(anat, rng)
    acq = draw_acquisition(set_name, rng)
    if acquisition is not None:
        acq = acquisition
    discs = truth_discs(spine)
    if set_name == "coverage":
        sag = sagittal_planes(spine, acq)
    else:
        acq, sag = framed(spine, acq, discs)
    centre, normal = fov_centre(spine, acq), sag[0].normal
    for disc in discs:  # signed distance of each disc centre from the central sagittal plane
        disc["offset_from_centre_plane_mm"] = round(
            float((np.asarray(disc["patient_xyz"]) - centre) @ normal), 3
        )
    ax = axial_planes(spine, acq, rng)
    (y0, y1), (z0, z1) = plane_extent(sag + ax, 6.0)
    grid = build_grid(spine, (y0, y1), (z0, z1))
    renderer = Renderer(spine, anat, grid, seed)
    renderer.field_t = acq.field_t
    study_uid = _uid(seed, "study")
    base = study_header(seed, study_uid, acq)
    folder = out_dir / f"{set_name}-{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    t2, t1 = render_series(
        renderer, sag, acq.thickness, [(acq.tr_t2, acq.te_t2), (acq.tr_t1, acq.te_t1)], acq, rng
    )
    (axt2,) = render_series(renderer, ax, 4.0, [(acq.tr_t2, acq.te_t2)], acq, rng)
    step = acq.thickness + acq.gap
    specs = [
        (SeriesSpec(3, acq.t2_name, acq.tr_t2, acq.te_t2, sag, acq.thickness, step, 17), t2),
        (SeriesSpec(2, acq.t1_name, acq.tr_t1, acq.te_t1, sag, acq.thickness, step, 3), t1),
        (SeriesSpec(4, acq.ax_name, acq.tr_t2, acq.te_t2, ax, 4.0, 4.5, 15), axt2),
    ]
    for spec, images in specs:
        sdir = folder / f"series-{spec.number:02d}"
        sdir.mkdir(exist_ok=True)
        for k, pixels in enumerate(to_uint16(images, acq.scale_target)):
            ds = instance(base, spec, k, pixels, seed)
            ds.save_as(sdir / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    truth = {
        "set": set_name,
        "variant": variant,
        "lstv": variant != "normal",
        "variation": set_name,
        "seed": seed,
        "study_instance_uid": study_uid,
        "t2_series_instance_uid": _uid(seed, "series", 3),
        "slice_normal": [round(float(v), 6) for v in sag[0].normal],
        "discs": discs,
        "discs_in_fov": all(in_fov(sag, d["patient_xyz"], 0.0) for d in discs),
        "stack_half_extent_mm": round(0.5 * (acq.slices - 1) * step, 3),
        "anatomy": {k: v for k, v in asdict(anat).items() if k != "tissue_jitter"},
        "acquisition": asdict(acq),
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))
    if preview:
        write_preview(folder / "preview.png", t2, t1, axt2, sag)
    return truth


def write_preview(path: Path, t2, t1, axt2, sag: list[Plane]) -> None:
    """A PNG strip: T2 middle slice, T2 outer slice, T1 middle slice, axial (8-bit, windowed)."""
    from PIL import Image

    def norm(im: np.ndarray) -> np.ndarray:
        hi = float(np.percentile(im, 99.5)) or 1.0
        return np.clip(im / hi * 255, 0, 255).astype(np.uint8)

    mid = len(t2) // 2
    tiles = [norm(t2[mid]), norm(t2[max(0, mid - 3)]), norm(t1[mid]), norm(axt2[len(axt2) // 2])]
    height = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 4))) for t in tiles]
    Image.fromarray(np.concatenate(padded, axis=1)).save(path)


def study_seed(set_name: str, base_seed: int, index: int) -> int:
    """A per-study seed that differs between sets and base seeds."""
    offset = SETS.index(set_name) * 100_000 if set_name in SETS else 0
    return base_seed * 1_000_000 + offset + index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--set",
        default="standard",
        help=f"one set, a comma-separated list or 'all' (each into OUT/SET): {', '.join(SETS)}",
    )
    parser.add_argument("--count", type=int, default=12, help="studies per set")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--preview", action="store_true", help="write preview.png per study")
    args = parser.parse_args(argv)
    names = list(SETS) if args.set == "all" else [n.strip() for n in args.set.split(",")]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")
    for name in names:
        out = args.out / name if len(names) > 1 else args.out
        out.mkdir(parents=True, exist_ok=True)
        for i in range(args.count):
            seed = study_seed(name, args.seed, i)
            truth = make_study(out, name, i, seed, args.preview)
            print(f"{name}-{i:03d} {truth['variant']:<14} seed {seed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
