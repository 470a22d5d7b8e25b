"""Fourth synthetic lumbar-spine MR phantom: an independent generator for a blind LSTV test.

Each study is a 3-D label volume of the lower thoracic / lumbar spine, sacrum and coccyx with soft
tissues, rasterised in a body frame from analytic shapes (vertebral bodies as wedged superellipse
cylinders along a lordotic chain, discs with nucleus and annulus, posterior elements, canal with
CSF, cord and cauda equina, muscles, fat, bowel, vessels), turned into MR signal with
S = PD * (1 - exp(-TR/T1)) * exp(-TE/T2) per tissue, and sampled as three DICOM series: a sagittal
T2 (the target), a sagittal T1 and an axial T2 (decoys). The truth is written to truth.json.

    python bench/fourth_phantom.py OUT_DIR --count 40 --seed 4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

# ------------------------------------------------------------------------------------------------
# Tissues
# ------------------------------------------------------------------------------------------------
(
    AIR,
    FAT,
    MUSCLE,
    CSF,
    CORD,
    MARROW,
    CORTEX,
    NUCLEUS,
    ANNULUS,
    DEGEN,
    MODIC1,
    MODIC2,
    FLUID,
    STOOL,
    VESSEL,
    SKIN,
    VISCERA,
    LIGAMENT,
    ROOT,
    REMNANT,
    KIDNEY,
    HEMANG,
) = range(22)
N_LABELS = 22

# proton density (relative), T1 (ms), T2 (ms) at 1.5 T; T1 is lengthened at 3 T
TISSUE: dict[int, tuple[float, float, float]] = {
    AIR: (0.0, 1000.0, 1.0),
    FAT: (1.0, 260.0, 130.0),
    MUSCLE: (0.75, 900.0, 40.0),
    CSF: (1.0, 3800.0, 1800.0),
    CORD: (0.72, 800.0, 85.0),
    MARROW: (0.9, 520.0, 70.0),
    CORTEX: (0.05, 1000.0, 8.0),
    NUCLEUS: (0.95, 1300.0, 170.0),
    ANNULUS: (0.6, 1000.0, 32.0),
    DEGEN: (0.7, 1000.0, 48.0),
    MODIC1: (0.95, 1300.0, 130.0),
    MODIC2: (0.95, 320.0, 110.0),
    FLUID: (1.0, 3000.0, 900.0),
    STOOL: (0.8, 900.0, 70.0),
    VESSEL: (0.08, 1200.0, 50.0),
    SKIN: (0.75, 700.0, 40.0),
    VISCERA: (0.85, 800.0, 65.0),
    LIGAMENT: (0.2, 900.0, 15.0),
    ROOT: (0.65, 800.0, 60.0),
    REMNANT: (0.55, 1000.0, 40.0),
    KIDNEY: (0.9, 1100.0, 95.0),
    HEMANG: (1.0, 300.0, 140.0),
}

LUMBAR_LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
VENDORS = (
    ("SIEMENS", "Avanto", "t2_tse_sag", "t1_tse_sag", "t2_tse_tra"),
    ("SIEMENS", "Skyra", "T2 TSE SAG", "T1 TSE SAG", "T2 TSE AX"),
    ("GE MEDICAL SYSTEMS", "SIGNA Artist", "Sag T2 FSE", "Sag T1 FSE", "Ax T2 FSE"),
    ("GE MEDICAL SYSTEMS", "DISCOVERY MR750", "SAG T2 FRFSE", "SAG T1", "AX T2 FRFSE"),
    ("Philips Medical Systems", "Ingenia", "T2W_TSE SAG", "T1W_TSE SAG", "T2W_TSE TRA"),
    ("Philips", "Achieva", "sT2W_TSE", "sT1W_TSE", "aT2W_TSE"),
    ("CANON_MEC", "Vantage Orian", "Sag T2 FSE", "Sag T1 FSE", "Ax T2 FSE"),
)


# ------------------------------------------------------------------------------------------------
# The spinal chain (mid-sagittal, body frame: x left, y posterior, z superior, mm)
# ------------------------------------------------------------------------------------------------
def up_vec(phi: float) -> np.ndarray:
    """Unit axis of a segment in (y, z); phi > 0 tilts it anteriorly (towards -y)."""
    return np.array([-math.sin(phi), math.cos(phi)])


def ant_vec(phi: float) -> np.ndarray:
    """Unit anterior direction in (y, z) perpendicular to up_vec(phi)."""
    return np.array([-math.cos(phi), -math.sin(phi)])


@dataclass
class Seg:
    """A vertebral body or a disc between two endplate planes."""

    name: str
    kind: str  # "body" | "disc" | "joint" (a fused junction of zero height)
    p_lo: np.ndarray
    phi_lo: float
    p_hi: np.ndarray
    phi_hi: float
    depth: float
    width: float
    region: str  # "thoracic" | "lumbar" | "sacral" | "coccyx"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> float:
        return float(np.linalg.norm(self.p_hi - self.p_lo))

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.p_lo + self.p_hi)

    @property
    def phi(self) -> float:
        return 0.5 * (self.phi_lo + self.phi_hi)


def build_chain(rng: np.random.Generator, variant: str, scale: float) -> dict[str, Any]:
    """Bodies and discs from T9 down to the coccyx, with the lordotic curve."""
    deg = math.pi / 180.0
    lordosis = rng.uniform(30.0, 60.0) * deg
    slope = rng.uniform(25.0, 50.0) * deg
    # mobile lumbar-type bodies above the sacral block (bottom first)
    lum_names = ["L5", "L4", "L3", "L2", "L1"]
    if variant == "lumbarization":
        lum_names = ["S1", *lum_names]
    n_mob = len(lum_names)
    weights = np.linspace(1.0, 3.6, n_mob)[::-1] ** 1.2
    weights = weights / weights.sum()
    lum_h = {"L1": 25.0, "L2": 26.0, "L3": 27.0, "L4": 27.5, "L5": 28.0, "S1": 27.0}
    lum_d = {"L1": 33.0, "L2": 34.5, "L3": 36.0, "L4": 37.0, "L5": 38.0, "S1": 38.0}
    disc_h = {"L1-L2": 8.5, "L2-L3": 9.5, "L3-L4": 10.0, "L4-L5": 11.0, "L5-S1": 10.5}
    disc_h["S1-S2"] = 9.5
    degen_p = {"L1-L2": 0.1, "L2-L3": 0.12, "L3-L4": 0.18, "L4-L5": 0.3, "L5-S1": 0.35}
    size = scale * rng.uniform(0.93, 1.07)

    segs: list[Seg] = []
    # sacral block top endplate
    top_name = "S2" if variant == "lumbarization" else "S1"
    p = np.array([0.0, 0.0])
    phi = slope
    # --- sacrum + coccyx going down
    sac_names = ["S1", "S2", "S3", "S4", "S5", "Co1", "Co2", "Co3"]
    sac_h = [27.0, 23.0, 19.0, 15.0, 12.0, 10.0, 8.0, 6.0]
    sac_d = [40.0, 31.0, 25.0, 19.0, 15.0, 12.0, 9.5, 7.5]
    start = sac_names.index(top_name)
    kappa = rng.uniform(11.0, 16.0) * deg
    down: list[Seg] = []
    for i in range(start, len(sac_names)):
        name = sac_names[i]
        h = sac_h[i] * size * rng.uniform(0.92, 1.08)
        d = sac_d[i] * size * rng.uniform(0.92, 1.08)
        if i == start and variant == "lumbarization":
            h *= 1.05
            d = max(d, 34.0 * size)
        bend = kappa if i < 5 else kappa * 0.8
        phi_lo = phi - (bend if i > start else bend * 0.5)
        mid = 0.5 * (phi + phi_lo)
        p_lo = p - h * up_vec(mid)
        region = "sacral" if name.startswith("S") else "coccyx"
        down.append(Seg(name, "body", p_lo, phi_lo, p.copy(), phi, d, 1.45 * d, region))
        if i + 1 < len(sac_names):
            nxt = sac_names[i + 1]
            junction = f"{name}-{nxt}"
            gap = 0.0 if region == "sacral" and i < 4 else 1.5 * size
            p_j = p_lo - gap * up_vec(phi_lo)
            down.append(
                Seg(
                    junction,
                    "joint" if gap == 0 else "disc",
                    p_j,
                    phi_lo,
                    p_lo,
                    phi_lo,
                    d,
                    1.45 * d,
                    region,
                    {"remnant": region == "sacral" and rng.random() < (0.9 - 0.2 * i)},
                )
            )
            p, phi = p_j, phi_lo
    segs.extend(reversed(down))

    # --- mobile segments going up
    p = np.array([0.0, 0.0])
    phi = slope
    below = top_name
    sacral_info: dict[str, Any] = {}
    for k, name in enumerate(lum_names):
        level = f"{name}-{below}"
        ang = lordosis * weights[k]
        h_d = disc_h.get(level, 9.0) * size * rng.uniform(0.88, 1.12)
        h_d = float(np.clip(h_d, 7.0, 13.5))
        info: dict[str, Any] = {"degen": rng.random() < degen_p.get(level, 0.1)}
        if level == "S1-S2":
            info["degen"] = rng.random() < 0.08
        d_wedge = 0.7 * ang
        if variant == "sacralization" and level == "L5-S1":
            mode = "fused" if rng.random() < 0.4 else "thin"
            sacral_info = {"l5s1_mode": mode}
            h_d = 0.0 if mode == "fused" else rng.uniform(1.5, 3.6)
            info["degen"] = True
            d_wedge = 0.35 * ang
        if info["degen"]:
            h_d *= rng.uniform(0.5, 0.8)
            info["modic"] = int(rng.choice([0, 0, 1, 2])) if rng.random() < 0.5 else 0
            info["osteophyte"] = rng.random() < 0.5
        d_lo = lum_d.get(below, 38.0) * size if below.startswith("L") else None
        phi_hi = phi - d_wedge
        p_hi = p + h_d * up_vec(0.5 * (phi + phi_hi))
        dep_body = lum_d[name] * size * rng.uniform(0.93, 1.07)
        dep = 0.5 * (dep_body + (d_lo if d_lo is not None else dep_body)) + 1.0
        kind = "joint" if h_d <= 0.0 else "disc"
        segs.append(Seg(level, kind, p.copy(), phi, p_hi, phi_hi, dep, 1.5 * dep, "lumbar", info))
        p, phi = p_hi, phi_hi
        h_b = lum_h[name] * size * rng.uniform(0.92, 1.08)
        b_wedge = ang - d_wedge
        binfo: dict[str, Any] = {}
        if variant == "sacralization" and name == "L5":
            h_b *= rng.uniform(0.82, 0.95)
            b_wedge += rng.uniform(0.0, 5.0) * deg
            binfo["big_tp"] = True
        phi_hi = phi - b_wedge
        p_hi = p + h_b * up_vec(0.5 * (phi + phi_hi))
        binfo["fused_below"] = kind == "joint"
        segs.append(
            Seg(
                name, "body", p.copy(), phi, p_hi, phi_hi, dep_body, 1.5 * dep_body, "lumbar", binfo
            )
        )
        p, phi = p_hi, phi_hi
        lum_d[name] = dep_body
        below = name
    # --- thoracic going up: slight kyphosis
    for name, h0, d0 in (
        ("T12", 24.0, 31.0),
        ("T11", 23.0, 29.0),
        ("T10", 22.0, 28.0),
        ("T9", 21.0, 27.0),
        ("T8", 20.5, 26.5),
    ):
        level = f"{name}-{below}"
        h_d = (7.0 if below == "L1" else 5.5) * size * rng.uniform(0.85, 1.15)
        kyph = rng.uniform(1.0, 4.0) * deg
        phi_hi = phi + 0.6 * kyph
        p_hi = p + h_d * up_vec(0.5 * (phi + phi_hi))
        dep = d0 * size + 1.0
        info = {"degen": rng.random() < 0.15}
        segs.append(
            Seg(level, "disc", p.copy(), phi, p_hi, phi_hi, dep, 1.4 * dep, "thoracic", info)
        )
        p, phi = p_hi, phi_hi
        h_b = h0 * size * rng.uniform(0.93, 1.07)
        phi_hi = phi + 0.4 * kyph
        p_hi = p + h_b * up_vec(0.5 * (phi + phi_hi))
        segs.append(
            Seg(
                name,
                "body",
                p.copy(),
                phi,
                p_hi,
                phi_hi,
                d0 * size,
                1.4 * d0 * size,
                "thoracic",
                {},
            )
        )
        p, phi = p_hi, phi_hi
        below = name
    return {
        "segs": segs,
        "lordosis_deg": lordosis / deg,
        "sacral_slope_deg": slope / deg,
        "sacral_curve_deg_per_segment": kappa / deg,
        **sacral_info,
    }


# ------------------------------------------------------------------------------------------------
# Rasteriser
# ------------------------------------------------------------------------------------------------
class Volume:
    """Label volume lab[z, y, x] on a regular grid (x spacing dx, y and z 1 mm)."""

    def __init__(
        self, x_half: float, dx: float, y_rng: tuple[float, float], z_rng: tuple[float, float]
    ) -> None:
        self.dx = dx
        self.x0 = -x_half
        self.y0 = math.floor(y_rng[0])
        self.z0 = math.floor(z_rng[0])
        self.nx = int(round(2 * x_half / dx)) + 1
        self.ny = int(math.ceil(y_rng[1] - self.y0)) + 1
        self.nz = int(math.ceil(z_rng[1] - self.z0)) + 1
        self.xs = self.x0 + dx * np.arange(self.nx)
        self.ys = self.y0 + np.arange(self.ny, dtype=np.float64)
        self.zs = self.z0 + np.arange(self.nz, dtype=np.float64)
        self.lab = np.zeros((self.nz, self.ny, self.nx), np.uint8)

    def grids(
        self, center: np.ndarray, radius: float, x_half: float
    ) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
        """Index box and broadcast coordinate grids around a (y, z) point."""
        y_a = max(0, int(math.floor(center[0] - radius - self.y0)))
        y_b = min(self.ny, int(math.ceil(center[0] + radius - self.y0)) + 1)
        z_a = max(0, int(math.floor(center[1] - radius - self.z0)))
        z_b = min(self.nz, int(math.ceil(center[1] + radius - self.z0)) + 1)
        x_a = max(0, int(math.floor((-x_half - self.x0) / self.dx)))
        x_b = min(self.nx, int(math.ceil((x_half - self.x0) / self.dx)) + 1)
        if y_a >= y_b or z_a >= z_b or x_a >= x_b:
            return None
        box = (slice(z_a, z_b), slice(y_a, y_b), slice(x_a, x_b))
        z = self.zs[z_a:z_b][:, None, None]
        y = self.ys[y_a:y_b][None, :, None]
        x = self.xs[x_a:x_b][None, None, :]
        return box, x, y, z

    def paint(
        self,
        box: tuple[slice, slice, slice],
        mask: np.ndarray,
        label: int,
        only: tuple[int, ...] | None = None,
    ) -> None:
        sub = self.lab[box]
        mask = np.broadcast_to(mask, sub.shape)
        if only is not None:
            allowed = np.zeros(N_LABELS, bool)
            allowed[list(only)] = True
            mask = mask & allowed[sub]
        sub[mask] = label


def local(
    y: np.ndarray, z: np.ndarray, origin: np.ndarray, phi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Anterior (s) and axial (v) coordinates in a segment frame."""
    a, u = ant_vec(phi), up_vec(phi)
    dy, dz = y - origin[0], z - origin[1]
    return dy * a[0] + dz * a[1], dy * u[0] + dz * u[1]


def plane_dist(y: np.ndarray, z: np.ndarray, p: np.ndarray, phi: float) -> np.ndarray:
    u = up_vec(phi)
    return (y - p[0]) * u[0] + (z - p[1]) * u[1]


def superellipse(a: np.ndarray, b: np.ndarray, ra: Any, rb: Any, pw: float = 2.5) -> np.ndarray:
    return (np.abs(a) / ra) ** pw + (np.abs(b) / rb) ** pw <= 1.0


def block(
    s: np.ndarray,
    v: np.ndarray,
    x: np.ndarray,
    c: tuple[float, float, float],
    r: tuple[float, float, float],
    pw: float = 4.0,
) -> np.ndarray:
    """Rounded box in (s, v, x) with centre c and half sizes r."""

    def term(d: np.ndarray, rad: float) -> np.ndarray:
        q = (d / rad) ** 2
        return q * q if pw == 4.0 else np.abs(q) ** (pw / 2)

    return term(s - c[0], r[0]) + term(v - c[1], r[1]) + term(x - c[2], r[2]) <= 1.0


def body_masks(
    vol: Volume, seg: Seg, fused_lo: bool, fused_hi: bool, cort: float, grow: float = 0.0
) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """Outer and inner (marrow) masks of a vertebral body."""
    c = seg.center
    rad = 0.5 * math.hypot(seg.height + 4, seg.depth + 4) + 3
    g = vol.grids(c, rad, seg.width / 2 + 3)
    if g is None:
        return None
    box, x, y, z = g
    s, _ = local(y, z, c, seg.phi)
    d_lo = plane_dist(y, z, seg.p_lo, seg.phi_lo)
    d_hi = -plane_dist(y, z, seg.p_hi, seg.phi_hi)
    near = np.clip(1.0 - np.minimum(d_lo, d_hi) / 3.0, 0.0, 1.0)
    rs = (seg.depth / 2 + grow) * (1.0 - 0.1 * near)
    rx = (seg.width / 2 + grow) * (1.0 - 0.1 * near)
    outer = superellipse(s, x, rs, rx) & (d_lo >= 0) & (d_hi >= 0)
    lo_off = -0.6 if fused_lo else cort
    hi_off = -0.6 if fused_hi else cort
    inner = superellipse(s, x, rs - cort, rx - cort) & (d_lo >= lo_off) & (d_hi >= hi_off)
    return box, outer, inner


def rasterise(
    vol: Volume, chain: dict[str, Any], soft: dict[str, Any], rng: np.random.Generator
) -> None:
    segs: list[Seg] = chain["segs"]
    scale = soft["scale"]
    cort = 1.3
    _background(vol, soft, rng)
    bodies = [s for s in segs if s.kind == "body"]
    # --- canal contents (bodies and discs of the mobile spine and upper sacrum)
    cd_l, cw_l = soft["canal_depth"], soft["canal_width"]
    z_conus = soft["z_conus"]
    for seg in segs:
        if seg.region == "coccyx":
            continue
        if seg.region == "sacral":
            order = ["S1", "S2", "S3", "S4", "S5"]
            key = seg.name.split("-")[0]
            f = 0.75 - 0.12 * order.index(key) if key in order else 0.3
            cd, cw = cd_l * f, cw_l * (f + 0.1)
        elif seg.region == "thoracic":
            cd, cw = cd_l * 0.85, cw_l * 0.75
        else:
            cd, cw = cd_l, cw_l
        c = seg.center
        g = vol.grids(c, 0.5 * seg.height + seg.depth / 2 + cd + 12, cw / 2 + 3)
        if g is None:
            continue
        box, x, y, z = g
        s, _ = local(y, z, c, seg.phi)
        d_lo = plane_dist(y, z, seg.p_lo, seg.phi_lo)
        d_hi = -plane_dist(y, z, seg.p_hi, seg.phi_hi)
        slab = (d_lo >= -0.5) & (d_hi >= -0.5)
        sp = -seg.depth / 2
        canal = slab & superellipse(s - (sp - cd / 2), x, cd / 2, cw / 2, 2.2)
        vol.paint(box, canal, FAT)
        sac_ok = (
            seg.region != "sacral"
            or seg.name in ("S1", "S1-S2", "S2")
            or (seg.name.startswith("L5-"))
        )
        if not sac_ok:
            continue
        if seg.name == "S2":
            slab = slab & (d_hi <= seg.height * 0.5)
        sac_c = sp - cd * 0.46
        sac_rs, sac_rx = cd * 0.36, cw * 0.36
        if seg.region == "sacral":
            sac_rs, sac_rx = cd * 0.3, cw * 0.3
        sac = slab & superellipse(s - sac_c, x, sac_rs, sac_rx, 2.0)
        vol.paint(box, sac, CSF)
        r_cord = 4.2 * scale * np.sqrt(np.clip((z - z_conus) / 18.0, 0.0, 1.0))
        cord = sac & ((s - sac_c - 0.5) ** 2 + x**2 <= r_cord**2)
        vol.paint(box, cord, CORD)
        # cauda equina: thin roots lying dependent (posterior) in the sac below the conus
        below = (z < z_conus + 6) & sac
        for sr, xr in soft["roots"]:
            root = below & ((s - sac_c - sr * sac_rs) ** 2 + (x - xr * sac_rx) ** 2 <= 0.8)
            vol.paint(box, root, ROOT)
        if seg.kind == "disc" and seg.region != "sacral":
            lf = slab & block(s, 0.0 * s, x, (sp - cd - 1.5, 0.0, 0.0), (2.6, 1e3, cw / 2 + 2))
            vol.paint(box, lf, LIGAMENT)
    # --- posterior elements
    for seg in bodies:
        _posterior(vol, seg, soft, rng, cort)
    # --- bodies, with fusion of the sacral block (and a fused L5 in sacralization)
    fused_pairs = set()
    for seg in segs:
        if seg.kind == "joint":
            upper, lower = seg.name.split("-")
            fused_pairs.add(upper)  # the body above is fused at its lower endplate
            fused_pairs.add(lower + "^")  # the body below is fused at its upper endplate
    masks = []
    for seg in bodies:
        m = body_masks(vol, seg, seg.name in fused_pairs, seg.name + "^" in fused_pairs, cort)
        if m is not None:
            masks.append((seg, m))
            vol.paint(m[0], m[1], CORTEX)
    for _seg, (box, _outer, inner) in masks:
        vol.paint(box, inner, MARROW)
    # --- sacral ala (and big L5 transverse processes in sacralization are in _posterior)
    top = max((s for s in bodies if s.region == "sacral"), key=lambda s: float(s.center[1]))
    _ala(vol, top, soft, cort)
    # --- discs and remnants
    for seg in segs:
        if seg.kind == "disc":
            _disc(vol, seg, rng, scale)
        elif seg.kind == "joint" and seg.info.get("remnant", True):
            _remnant(vol, seg, rng)
    for seg in segs:
        if seg.kind in ("disc", "joint") and seg.info.get("degen"):
            _degeneration_extras(vol, seg, segs, rng)
    # --- a vertebral haemangioma now and then
    if rng.random() < 0.25:
        seg = bodies[int(rng.integers(0, len(bodies)))]
        c = seg.center + rng.uniform(-0.2, 0.2, 2) * seg.height
        r = rng.uniform(3.0, 7.0)
        g = vol.grids(c, r + 1, r + 8)
        if g is not None:
            box, x, y, z = g
            xc = rng.uniform(-8, 8)
            m = (y - c[0]) ** 2 + (z - c[1]) ** 2 + (x - xc) ** 2 <= r * r
            vol.paint(box, m, HEMANG, only=(MARROW,))


def _ala(vol: Volume, seg: Seg, soft: dict[str, Any], cort: float) -> None:
    c = seg.center
    g = vol.grids(c, seg.height + seg.depth, vol.nx * vol.dx)
    if g is None:
        return
    box, x, y, z = g
    s, v = local(y, z, c, seg.phi)
    ax = np.abs(x)
    xw = seg.width / 2
    rs, rv = seg.depth * 0.45, seg.height * 0.55
    outer = block(s, v, ax, (-seg.depth * 0.1, 0.0, xw + 25), (rs, rv, 30), 3.0)
    inner = block(
        s, v, ax, (-seg.depth * 0.1, 0.0, xw + 25), (rs - cort, rv - cort, 30 - cort), 3.0
    )
    keep = (vol.lab[box] != MARROW) & (ax > xw - 6)
    vol.paint(box, outer & keep, CORTEX)
    vol.paint(box, inner & (ax > xw - 6), MARROW)


def _posterior(
    vol: Volume, seg: Seg, soft: dict[str, Any], rng: np.random.Generator, cort: float
) -> None:
    """Pedicles, articular pillars, laminae, spinous and transverse processes of one body."""
    if seg.region == "coccyx":
        return
    cd, cw = soft["canal_depth"], soft["canal_width"]
    if seg.region == "thoracic":
        cd, cw = cd * 0.85, cw * 0.75
    sacral = seg.region == "sacral"
    if sacral:
        order = ["S1", "S2", "S3", "S4", "S5"]
        f = 0.75 - 0.12 * order.index(seg.name)
        cd, cw = cd * f, cw * (f + 0.1)
    h, c = seg.height, seg.center
    sp = -seg.depth / 2
    sc = sp - cd
    sp_len = soft["spinous_len"] * (1.15 if seg.region == "thoracic" else 1.0)
    s_front, s_back = sp + 4.0, sc - 3.0 - sp_len
    rad = 0.5 * (s_front - s_back) + 0.8 * h + 6.0
    g_c = c + 0.5 * (s_front + s_back) * ant_vec(seg.phi)
    g = vol.grids(g_c, rad, cw / 2 + 60)
    if g is None:
        return
    box, x, y, z = g
    s, v = local(y, z, c, seg.phi)
    ax = np.abs(x)
    parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(
        ctr: tuple[float, float, float], r: tuple[float, float, float], pw: float = 4.0
    ) -> None:
        outer = block(s, v, ax, ctr, r, pw)
        inner = block(s, v, ax, ctr, (r[0] - cort, r[1] - cort, r[2] - cort), pw)
        parts.append((outer, inner))

    if sacral:
        # fused laminae and the median sacral crest
        add((sc - 3.0, 0.0, 0.0), (3.2, h * 0.52, cw / 2 + 8))
        add((sc - 7.0, 0.0, 0.0), (4.0, h * 0.35, 3.5))
        # sacral bone lateral to the canal
        add((sp - cd / 2, 0.0, cw / 2 + 9), (cd / 2 + 2, h * 0.52, 9))
    else:
        # pedicles
        add((sp - cd / 2 + 1, 0.12 * h, cw / 2 + 4.5), (cd / 2 + 3, 0.3 * h, 4.5))
        # articular pillars (extend over half the neighbouring discs)
        add((sc + 1.0, 0.0, cw / 2 + 6), (6.5, 0.5 * h + 4.0, 6.0))
        # laminae
        add((sc - 3.0, -0.08 * h, cw / 2 * 0.7), (3.4, 0.4 * h, cw / 2 * 0.7 + 4))
        # transverse processes
        tp_len = soft["tp_len"] * (1.0 if seg.name != "L3" else 1.2)
        tp_h = 5.0
        if seg.info.get("big_tp"):
            tp_len, tp_h = soft["tp_len"] * 1.8, 10.0
        if seg.region == "thoracic":
            tp_len *= 0.8
        add((sp - cd * 0.6, 0.15 * h, cw / 2 + 8 + tp_len / 2), (5.0, tp_h, tp_len / 2 + 2))
        # spinous process: slopes caudally as it runs posteriorly
        t = np.clip(sc - 2.0 - s, 0.0, None)
        slope = soft["spinous_slope"] * (1.8 if seg.region == "thoracic" else 1.0)
        vc = -0.12 * h - slope * t
        half_v = (0.3 * h) * (1.0 - 0.25 * t / sp_len)
        half_x = 3.2 + 1.5 * (t / sp_len)
        inside_len = (s <= sc - 2.0) & (s >= sc - 2.0 - sp_len)
        outer = inside_len & (np.abs(v - vc) <= half_v) & (ax <= half_x)
        inner = (
            (s <= sc - 2.0)
            & (s >= sc - 2.0 - sp_len + cort)
            & (np.abs(v - vc) <= half_v - cort)
            & (ax <= half_x - 1.0)
        )
        parts.append((outer, inner))
        # supraspinous / interspinous ligament tip cap
    for outer, _ in parts:
        vol.paint(box, outer, CORTEX, only=(AIR, FAT, MUSCLE, LIGAMENT, VISCERA, CORTEX))
    for _, inner in parts:
        vol.paint(box, inner, MARROW, only=(CORTEX,))


def _disc(vol: Volume, seg: Seg, rng: np.random.Generator, scale: float) -> None:
    c = seg.center
    h = seg.height
    degen = bool(seg.info.get("degen"))
    rad = 0.5 * seg.depth + h + 5
    g = vol.grids(c, rad, seg.width / 2 + 4)
    if g is None:
        return
    box, x, y, z = g
    s, v = local(y, z, c, seg.phi)
    d_lo = plane_dist(y, z, seg.p_lo, seg.phi_lo)
    d_hi = -plane_dist(y, z, seg.p_hi, seg.phi_hi)
    slab = (d_lo >= 0) & (d_hi >= 0)
    bulge = 1.0 + (rng.uniform(1.0, 3.5) if degen else 0.0)
    rs_a, rs_p = seg.depth / 2 + 0.5, seg.depth / 2 + bulge
    rs = np.where(s < 0, rs_p, rs_a)
    # the bulge is largest at mid-height of the disc
    mid = np.clip(1.0 - (2.0 * v / max(h, 1.0)) ** 2, 0.0, 1.0)
    rs = seg.depth / 2 + (rs - seg.depth / 2) * mid
    disc = slab & superellipse(s, x, rs, seg.width / 2 + 0.5 * mid)
    vol.paint(box, disc, ANNULUS)
    if seg.region == "coccyx" or h < 2.0:
        return
    if seg.region == "sacral":
        vol.paint(box, disc, REMNANT)
        return
    frac = rng.uniform(0.66, 0.8)
    nuc = (s + 0.06 * seg.depth) ** 2 / (frac * seg.depth / 2) ** 2 + x**2 / (
        frac * seg.width / 2
    ) ** 2 + v**2 / (0.43 * h) ** 2 <= 1.0
    vol.paint(box, nuc & slab, DEGEN if degen else NUCLEUS)
    if not degen and seg.region == "lumbar" and seg.info.get("cleft", rng.random() < 0.6):
        cleft = nuc & (np.abs(v) < 0.55) & (np.abs(s + 0.08 * seg.depth) < 0.6 * frac * seg.depth)
        vol.paint(box, cleft, ANNULUS)


def _remnant(vol: Volume, seg: Seg, rng: np.random.Generator) -> None:
    """A thin rudimentary disc line in a fused junction."""
    c = seg.center
    g = vol.grids(c, seg.depth / 2 + 4, seg.width / 2)
    if g is None:
        return
    box, x, y, z = g
    s, v = local(y, z, c, seg.phi)
    frac = rng.uniform(0.35, 0.85)
    t = rng.uniform(0.6, 1.4)
    m = (np.abs(plane_dist(y, z, seg.p_lo, seg.phi_lo)) <= t) & superellipse(
        s + rng.uniform(-0.15, 0.15) * seg.depth, x, frac * seg.depth / 2, frac * seg.width / 2
    )
    vol.paint(box, m, REMNANT, only=(MARROW, CORTEX))


def _degeneration_extras(vol: Volume, seg: Seg, segs: list[Seg], rng: np.random.Generator) -> None:
    """Modic-like endplate signal and anterior osteophytes around a degenerated disc."""
    modic = int(seg.info.get("modic", 0))
    c = seg.center
    depth = rng.uniform(3.0, 8.0)
    g = vol.grids(c, seg.depth / 2 + depth + 10, seg.width / 2)
    if g is None:
        return
    box, x, y, z = g
    s, _ = local(y, z, c, seg.phi)
    if modic:
        d_lo = plane_dist(y, z, seg.p_lo, seg.phi_lo)
        d_hi = plane_dist(y, z, seg.p_hi, seg.phi_hi)
        band = ((d_lo < 0) & (d_lo > -depth)) | ((d_hi > 0) & (d_hi < depth))
        band = band & (
            np.abs(s - rng.uniform(-0.2, 0.2) * seg.depth) < seg.depth * rng.uniform(0.2, 0.45)
        )
        band = band & (np.abs(x) < seg.width * 0.3)
        vol.paint(box, band, MODIC1 if modic == 1 else MODIC2, only=(MARROW,))
    if seg.info.get("osteophyte"):
        for p, phi in ((seg.p_lo, seg.phi_lo), (seg.p_hi, seg.phi_hi)):
            tip = p + (seg.depth / 2 + rng.uniform(0.5, 2.5)) * ant_vec(phi)
            r = rng.uniform(2.0, 4.0)
            dd = (y - tip[0]) ** 2 + (z - tip[1]) ** 2
            m = (dd <= r * r) & (np.abs(x) < seg.width * 0.35)
            vol.paint(box, m, CORTEX, only=(AIR, FAT, VISCERA, MUSCLE, ANNULUS, VESSEL))


def _background(vol: Volume, soft: dict[str, Any], rng: np.random.Generator) -> None:
    """Skin, fat, muscles, abdominal and pelvic contents, vessels, by z profiles."""
    zs = vol.zs
    y_ant_sp = soft["prof_ant"](zs)[:, None, None]
    y_post_c = soft["prof_post"](zs)[:, None, None]
    y_skin_p = soft["prof_skin_post"](zs)[:, None, None]
    y_skin_a = soft["prof_skin_ant"](zs)[:, None, None]
    x = vol.xs[None, None, :]
    y = vol.ys[None, :, None]
    w_half = soft["half_width"]
    fx = np.sqrt(np.clip(1.0 - (x / w_half) ** 2, 0.05, 1.0))
    yc = 0.5 * (y_skin_p + y_skin_a)
    ha = 0.5 * (y_skin_p - y_skin_a)
    yp = yc + ha * fx
    ya = yc - ha * fx
    lab = vol.lab
    inside = (y < yp) & (y > ya)
    lab[inside] = VISCERA
    fp, fa = soft["fat_post"], soft["fat_ant"]
    # posterior muscles: from the anterior surface of the spine to the subcutaneous fat
    musc = inside & (y > y_ant_sp + 4) & (y < yp - fp)
    lab[musc] = MUSCLE
    del y_post_c
    wall = inside & (y >= ya + fa) & (y < ya + fa + soft["wall"])
    lab[wall] = MUSCLE
    lab[inside & (y >= yp - fp)] = FAT
    lab[inside & (y <= ya + fa)] = FAT
    lab[inside & ((y >= yp - soft["skin"]) | (y <= ya + soft["skin"]))] = SKIN
    # pelvis below the promontory: fat-rich, a bladder low and anterior
    z_prom = soft["z_promontory"]
    zz = zs[:, None, None]
    pelvis = (lab == VISCERA) & (zz < z_prom - 20 + 0.45 * (y - y_ant_sp))
    lab[pelvis] = FAT
    # bowel loops
    y_lo = float(np.min(soft["prof_skin_ant"](zs))) + fa + 10
    z_lo, z_hi = float(zs[0]), float(zs[-1])
    for _ in range(int(rng.integers(18, 34))):
        cy = rng.uniform(y_lo, float(np.max(soft["prof_ant"](zs))) - 15)
        cz = rng.uniform(z_lo, z_hi)
        cx = rng.uniform(-80, 80)
        r = rng.uniform(8.0, 22.0) * soft["scale"]
        g = vol.grids(np.array([cy, cz]), r + 1, 90)
        if g is None:
            continue
        box, xg, yg, zg = g
        dd = ((xg - cx) / (r * 1.3)) ** 2 + ((yg - cy) / r) ** 2 + ((zg - cz) / (r * 1.1)) ** 2
        content = int(rng.choice([FLUID, AIR, STOOL, STOOL, FLUID]))
        ok = (VISCERA, FAT)
        vol.paint(box, dd <= 1.0, MUSCLE, only=ok)
        sub = vol.lab[box]
        inner = np.broadcast_to(dd <= (1.0 - 2.0 / r) ** 2, sub.shape) & (sub == MUSCLE)
        if content == AIR:
            # gas rises anteriorly (patient supine): fluid level
            inner_gas = inner & np.broadcast_to(yg < cy + 0.2 * r, sub.shape)
            sub[inner & ~inner_gas] = FLUID
            sub[inner_gas] = AIR
        else:
            sub[inner] = content
    # bladder
    bz = soft["z_bladder"]
    by = float(soft["prof_skin_ant"](np.array([bz]))[0]) + fa + 30
    g = vol.grids(np.array([by, bz]), 60, 70)
    if g is not None:
        box, xg, yg, zg = g
        rb = soft["bladder_r"]
        m = (xg / (rb * 1.3)) ** 2 + ((yg - by) / rb) ** 2 + ((zg - bz) / (rb * 0.9)) ** 2 <= 1.0
        vol.paint(box, m, FLUID, only=(FAT, VISCERA, MUSCLE, STOOL))
    # kidneys
    for side in (-1, 1):
        kz = soft["z_kidney"] + side * 8
        ky = float(soft["prof_ant"](np.array([kz]))[0]) + 12
        g = vol.grids(np.array([ky, kz]), 60, 95)
        if g is None:
            continue
        box, xg, yg, zg = g
        m = ((xg - side * 72) / 24) ** 2 + ((yg - ky) / 22) ** 2 + ((zg - kz) / 52) ** 2 <= 1.0
        vol.paint(box, m, KIDNEY, only=(VISCERA, MUSCLE, FAT))
    # aorta (left) and IVC (right), iliac vessels below the bifurcation
    z_bif = soft["z_bifurcation"]
    ya_v = y_ant_sp[:, 0, 0]
    above = zs > z_bif
    below_f = np.clip((z_bif - zs) / 60.0, 0.0, None)
    for r0, xoff in ((9.5, 17.0), (11.0, -22.0)):
        r = r0 * soft["scale"]
        for branch in (-1, 1):
            xc = np.where(above, xoff, branch * (12.0 + 55.0 * below_f) + 0.3 * xoff)
            rr = np.where(above, r, r * 0.7)
            ycv = ya_v - rr - 1.5 + np.where(above, 0.0, -25.0 * below_f)
            j0 = max(0, int(np.min(ycv - rr)) - 2 - vol.y0)
            j1 = min(vol.ny, int(np.max(ycv + rr)) + 3 - vol.y0)
            if j1 <= j0:
                continue
            yb = y[:, j0:j1]
            m = (x - xc[:, None, None]) ** 2 + (yb - ycv[:, None, None]) ** 2 <= (
                rr[:, None, None] ** 2
            )
            sub = lab[:, j0:j1]
            m = m & (zz > soft["z_vessel_low"]) & (sub != SKIN)
            sub[m] = VESSEL


def build_soft(chain: dict[str, Any], rng: np.random.Generator, scale: float) -> dict[str, Any]:
    """Profiles of the spine surfaces along z and soft tissue parameters."""
    segs: list[Seg] = chain["segs"]
    cd = rng.uniform(14.0, 18.0) * scale
    cw = rng.uniform(20.0, 25.0) * scale
    pts_a, pts_p = [], []
    for seg in segs:
        a = ant_vec(seg.phi)
        for p in (seg.p_lo, seg.center, seg.p_hi):
            pa = p + a * seg.depth / 2
            pp = p - a * (seg.depth / 2 + (cd if seg.region != "coccyx" else 0.0))
            pts_a.append((pa[1], pa[0]))
            pts_p.append((pp[1], pp[0]))
    pts_a.sort()
    pts_p.sort()
    za, ya = np.array([p[0] for p in pts_a]), np.array([p[1] for p in pts_a])
    zp, yp = np.array([p[0] for p in pts_p]), np.array([p[1] for p in pts_p])
    post_soft = rng.uniform(45.0, 75.0) * scale
    abd = rng.uniform(110.0, 190.0) * scale
    by = {s.name: s for s in segs}
    z_prom = float(by["S1"].p_hi[1])
    z_coccyx = float(min(s.p_lo[1] for s in segs))

    def prof_ant(z: np.ndarray) -> np.ndarray:
        return np.interp(z, za, ya)

    def prof_post(z: np.ndarray) -> np.ndarray:
        return np.interp(z, zp, yp)

    def prof_skin_post(z: np.ndarray) -> np.ndarray:
        # buttocks: the posterior soft tissue thickens below the sacral promontory
        butt = 25.0 * scale / (1.0 + np.exp(-(z_prom - 40.0 - z) / 15.0))
        return prof_post(z) + post_soft + butt

    def prof_skin_ant(z: np.ndarray) -> np.ndarray:
        return np.minimum(prof_ant(z) - abd, prof_ant(z) - 60.0)

    n_roots = int(rng.integers(6, 11))
    roots = [(rng.uniform(-0.9, -0.1), rng.uniform(-0.8, 0.8)) for _ in range(n_roots)]
    l1 = by["L1"]
    conus_shift = rng.uniform(-0.6, 1.0)  # in vertebral-body heights below the L1 centre
    return {
        "scale": scale,
        "canal_depth": cd,
        "canal_width": cw,
        "z_conus": float(l1.center[1] - conus_shift * l1.height),
        "roots": roots,
        "prof_ant": prof_ant,
        "prof_post": prof_post,
        "prof_skin_post": prof_skin_post,
        "prof_skin_ant": prof_skin_ant,
        "half_width": rng.uniform(140.0, 190.0) * scale,
        "fat_post": rng.uniform(6.0, 35.0) * scale,
        "fat_ant": rng.uniform(8.0, 45.0) * scale,
        "wall": rng.uniform(6.0, 12.0),
        "skin": 2.0,
        "spinous_len": rng.uniform(24.0, 34.0) * scale,
        "spinous_slope": rng.uniform(0.15, 0.4),
        "tp_len": rng.uniform(14.0, 22.0) * scale,
        "z_promontory": z_prom,
        "z_bladder": z_coccyx + rng.uniform(0.0, 30.0),
        "bladder_r": rng.uniform(20.0, 45.0) * scale,
        "z_kidney": float(by["L1-L2"].center[1]) if "L1-L2" in by else float(l1.p_lo[1]),
        "z_bifurcation": float(by["L4"].center[1] + rng.uniform(-10.0, 10.0)),
        "z_vessel_low": z_coccyx - 50.0,
    }


# ------------------------------------------------------------------------------------------------
# MR signal and sampling
# ------------------------------------------------------------------------------------------------
def signal_lut(
    tissue: dict[int, tuple[float, float, float]], tr: float, te: float, field_t: float
) -> np.ndarray:
    lut = np.zeros(N_LABELS, np.float32)
    for label, (pd, t1, t2) in tissue.items():
        if label != FAT:
            t1 = t1 * (1.25 if field_t > 2.0 else 1.0)
        lut[label] = pd * (1.0 - math.exp(-tr / t1)) * math.exp(-te / t2)
    return lut


def slab_filter(vol: np.ndarray, width_vox: float) -> np.ndarray:
    """Box average along the last axis over width_vox voxels (fractional), edges replicated."""
    if width_vox <= 1.0:
        return vol
    n = vol.shape[-1]
    pad = int(math.ceil(width_vox / 2)) + 2
    padded = np.concatenate(
        [np.repeat(vol[..., :1], pad, axis=-1), vol, np.repeat(vol[..., -1:], pad, axis=-1)],
        axis=-1,
    )
    cum = np.concatenate(
        [np.zeros(vol.shape[:-1] + (1,), np.float32), np.cumsum(padded, axis=-1, dtype=np.float32)],
        axis=-1,
    )

    def at(pos: float) -> np.ndarray:
        # integral of the padded profile from its start to position pos (voxel units)
        i = int(math.floor(pos))
        f = pos - i
        return cum[..., i : i + n] * (1 - f) + cum[..., i + 1 : i + 1 + n] * f

    centre = pad + 0.5
    return (at(centre + width_vox / 2) - at(centre - width_vox / 2)) / width_vox


def trilinear(vol: np.ndarray, grid: Volume, pts: np.ndarray) -> np.ndarray:
    """Sample vol[z, y, x] at body points pts[..., 3] (x, y, z); outside y/z is air."""
    fx = np.clip((pts[..., 0] - grid.x0) / grid.dx, 0.0, grid.nx - 1.001)
    fy = pts[..., 1] - grid.y0
    fz = pts[..., 2] - grid.z0
    out = (fy < 0) | (fy > grid.ny - 1.001) | (fz < 0) | (fz > grid.nz - 1.001)
    fy = np.clip(fy, 0.0, grid.ny - 1.001)
    fz = np.clip(fz, 0.0, grid.nz - 1.001)
    ix, iy, iz = fx.astype(np.int64), fy.astype(np.int64), fz.astype(np.int64)
    wx, wy, wz = fx - ix, fy - iy, fz - iz
    flat = vol.reshape(-1)
    sy, sz = grid.nx, grid.nx * grid.ny
    base = iz * sz + iy * sy + ix
    res = np.zeros(fx.shape, np.float64)
    for dz in (0, 1):
        for dy in (0, 1):
            for dxx in (0, 1):
                w = (wz if dz else 1 - wz) * (wy if dy else 1 - wy) * (wx if dxx else 1 - wx)
                res += w * flat[base + dz * sz + dy * sy + dxx]
    res[out] = 0.0
    return res


def resample(img: np.ndarray, src_step: float, dst_n: int, dst_step: float) -> np.ndarray:
    """Bilinear resampling of a square image centred on the same field."""
    n_src = img.shape[0]
    pos = ((np.arange(dst_n) + 0.5) * dst_step) / src_step - 0.5
    pos = np.clip(pos, 0.0, n_src - 1.001)
    i0 = pos.astype(np.int64)
    w = pos - i0
    rows = img[i0] * (1 - w)[:, None] + img[i0 + 1] * w[:, None]
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i0 + 1] * w[None, :]


def smooth3(img: np.ndarray, a: float) -> np.ndarray:
    """Separable [a, 1-2a, a] blur."""
    p = np.pad(img, 1, mode="edge")
    r = a * p[:-2, 1:-1] + (1 - 2 * a) * p[1:-1, 1:-1] + a * p[2:, 1:-1]
    p = np.pad(r, ((0, 0), (1, 1)), mode="edge")
    return a * p[:, :-2] + (1 - 2 * a) * p[:, 1:-1] + a * p[:, 2:]


# ------------------------------------------------------------------------------------------------
# One study
# ------------------------------------------------------------------------------------------------
def rot(axis: int, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    m = np.eye(3)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


@dataclass
class Series:
    name: str
    desc: str
    row: np.ndarray  # body frame
    col: np.ndarray
    normal: np.ndarray
    origins: list[np.ndarray]  # body frame, centre of the field per slice
    fov: float
    matrix: int
    thickness: float
    spacing: float
    te: float
    tr: float
    signal: str  # "t2" | "t1"
    snr: float


def plan_sagittal(
    rng: np.random.Generator,
    marks: dict[str, np.ndarray],
    spine_c: np.ndarray,
    disc_pts: list[np.ndarray],
    back: np.ndarray,
) -> dict[str, Any]:
    deg = math.pi / 180.0
    n_sl = int(rng.integers(9, 26))
    thick = float(rng.choice([3.0, 3.5, 4.0, 4.0, 4.5, 5.0]))
    gap = float(rng.uniform(0.0, 0.3)) * thick
    spacing = round(thick + gap, 2)
    while (n_sl - 1) * spacing > 110:
        n_sl -= 1
    ant_left = rng.random() < 0.65
    head_up = rng.random() < 0.85
    row = np.array([0.0, 1.0 if ant_left else -1.0, 0.0])
    col = np.array([0.0, 0.0, -1.0 if head_up else 1.0])
    res = rot(1, rng.uniform(-1.5, 1.5) * deg) @ rot(2, rng.uniform(-1.5, 1.5) * deg)
    res = res @ rot(0, rng.uniform(-4.0, 4.0) * deg)
    row, col = res @ row, res @ col
    normal = np.cross(row, col)
    matrix = int(rng.choice([256, 288, 320, 384, 448, 512, 640]))
    fov_lo, fov_hi = max(240.0, 0.4 * matrix), min(380.0, 1.2 * matrix)
    fov = float(rng.uniform(fov_lo, fov_hi))
    sup = -col if head_up else col

    def sig(p: np.ndarray) -> float:
        return float((p - spine_c) @ sup)

    top_lo = sig(marks["L1_top"]) + 8.0
    top_hi = sig(marks["T10_top"])
    bottom_need = sig(marks["S2_bottom"]) - 10.0
    if bottom_need + fov < top_lo + 5:
        fov = min(top_lo + 15 - bottom_need, 1.2 * 640)
        while fov / matrix > 1.2:
            matrix = {256: 288, 288: 320, 320: 384, 384: 448, 448: 512, 512: 640}.get(matrix, 640)
    top = float(rng.uniform(top_lo, max(top_lo, min(top_hi, bottom_need + fov))))
    s0 = top - fov / 2
    # horizontal: discs inside with a margin, spine off-centre
    keep = [*disc_pts, marks["S1_centre"], marks["S2_bottom"]]
    if rng.random() < 0.8:
        keep.append(back)  # usually the skin of the back is in the field
    us = [float((p - spine_c) @ row) for p in keep]
    u_lo, u_hi = max(us) + 12 - fov / 2, min(us) - 12 + fov / 2
    u0 = float(rng.uniform(min(u_lo, u_hi), max(u_lo, u_hi)))
    t_c = float(rng.uniform(-2.5, 2.5))
    centre = spine_c + u0 * row + s0 * sup
    ks = np.arange(n_sl) - (n_sl - 1) / 2.0
    origins = [centre + (t_c + k * spacing) * normal for k in ks]
    return {
        "row": row,
        "col": col,
        "normal": normal,
        "origins": origins,
        "fov": round(fov, 2),
        "matrix": matrix,
        "thickness": thick,
        "spacing": spacing,
        "ant_left": ant_left,
        "head_up": head_up,
        "n_slices": n_sl,
    }


def render(
    series: Series,
    sigvol: dict[str, np.ndarray],
    grid: Volume,
    r_body: np.ndarray,
    t_body: np.ndarray,
    rng: np.random.Generator,
    acq: dict[str, Any],
) -> tuple[list[np.ndarray], float]:
    """Pixel arrays (float) of every slice, before scaling, and the pixel spacing."""
    src_step = 1.0 if series.fov / series.matrix < 1.0 else series.fov / series.matrix
    n_src = int(math.ceil(series.fov / src_step))
    src_step = series.fov / n_src
    a = (np.arange(n_src) + 0.5) * src_step - series.fov / 2
    vol = sigvol[series.signal]
    imgs = []
    bias_l = acq["bias_len"]
    post_y = acq["coil_y"]
    for o in series.origins:
        pts = (
            o[None, None, :]
            + a[:, None, None] * series.col[None, None, :]
            + a[None, :, None] * series.row[None, None, :]
        )
        img = trilinear(vol, grid, pts)
        # receive bias: posterior surface coil, falls off anteriorly and away from its centre
        depth = np.clip(post_y - pts[..., 1], 0.0, None)
        bias = acq["bias_floor"] + (1 - acq["bias_floor"]) * np.exp(-depth / bias_l)
        bias *= np.exp(-(((pts[..., 2] - acq["coil_z"]) / acq["coil_zlen"]) ** 2))
        img = smooth3(img * bias, acq["blur"])
        imgs.append(resample(img, src_step, series.matrix, series.fov / series.matrix))
    dx = series.fov / series.matrix
    # Rician noise at the output resolution
    ref = np.concatenate([i[i > 0.05 * i.max()] for i in imgs if i.max() > 0])
    sigma = float(np.median(ref)) / series.snr
    out = []
    for img in imgs:
        n1 = rng.normal(0.0, sigma, img.shape)
        n2 = rng.normal(0.0, sigma, img.shape)
        out.append(np.sqrt((img + n1) ** 2 + n2**2))
    del r_body, t_body
    return out, dx


def uid(*parts: Any) -> str:
    # joined with "/": pydicom hashes the concatenation (seed 4, study 12 = seed 41, study 2)
    return str(generate_uid(entropy_srcs=["fourth-phantom/" + "/".join(str(p) for p in parts)]))


def write_series(
    folder: Path,
    series: Series,
    imgs: list[np.ndarray],
    dx: float,
    r_body: np.ndarray,
    t_body: np.ndarray,
    meta: dict[str, Any],
    series_uid: str,
    number: int,
    rng: np.random.Generator,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    top = float(np.percentile(np.concatenate([i.ravel() for i in imgs]), 99.7))
    target = float(rng.uniform(700.0, 3900.0))
    gain = target / max(top, 1e-9)
    row_p, col_p = r_body @ series.row, r_body @ series.col
    normal_p = np.cross(row_p, col_p)
    m = series.matrix
    for k, (img, o) in enumerate(zip(imgs, series.origins, strict=True)):
        pix = np.clip(np.round(img * gain), 0, 4095).astype(np.uint16)
        corner_b = o - (m - 1) / 2 * dx * (series.row + series.col)
        ipp = r_body @ corner_b + t_body
        ds = Dataset()
        fm = FileMetaDataset()
        sop = uid(meta["seed"], meta["index"], series.name, k)
        fm.MediaStorageSOPClassUID = MRImageStorage
        fm.MediaStorageSOPInstanceUID = UID(sop)
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        fm.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
        fm.ImplementationVersionName = "FOURTH_PH_1"
        ds.file_meta = fm
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyDate = meta["date"]
        ds.SeriesDate = meta["date"]
        ds.ContentDate = meta["date"]
        ds.StudyTime = meta["time"]
        ds.SeriesTime = meta["time"]
        ds.ContentTime = meta["time"]
        ds.AccessionNumber = meta["accession"]
        ds.Modality = "MR"
        ds.Manufacturer = meta["manufacturer"]
        ds.ManufacturerModelName = meta["model"]
        ds.InstitutionName = "Fourth Phantom Imaging"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "MRI LUMBAR SPINE"
        ds.SeriesDescription = series.desc
        ds.ProtocolName = series.desc
        ds.PatientName = meta["patient_name"]
        ds.PatientID = meta["patient_id"]
        ds.PatientBirthDate = ""
        ds.PatientSex = meta["sex"]
        ds.PatientAge = meta["age"]
        ds.BodyPartExamined = "LSPINE"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "SK"
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = f"{series.thickness:.2f}"
        ds.SpacingBetweenSlices = f"{series.spacing:.2f}"
        ds.RepetitionTime = f"{series.tr:.1f}"
        ds.EchoTime = f"{series.te:.1f}"
        ds.EchoTrainLength = meta["etl"] if series.signal == "t2" else 3
        ds.MagneticFieldStrength = meta["field"]
        ds.ImagingFrequency = f"{42.577 * meta['field']:.4f}"
        ds.StudyInstanceUID = meta["study_uid"]
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = meta["for_uid"]
        ds.StudyID = "1"
        ds.SeriesNumber = number
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_p, *col_p)]
        ds.SliceLocation = f"{float(ipp @ normal_p):.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = m
        ds.Columns = m
        ds.PixelSpacing = [f"{dx:.6f}", f"{dx:.6f}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = int(target * 0.45)
        ds.WindowWidth = int(target * 0.95)
        ds.PixelData = pix.tobytes()
        ds.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)


def make_study(out: Path, seed: int, index: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, index, 4])
    variant = ("normal", "sacralization", "normal", "lumbarization")[index % 4]
    scale = float(rng.uniform(0.82, 1.2))
    chain = build_chain(rng, variant, scale)
    segs: list[Seg] = chain["segs"]
    by = {s.name: s for s in segs}
    soft = build_soft(chain, rng, scale)

    def p3(p2: np.ndarray) -> np.ndarray:
        return np.array([0.0, float(p2[0]), float(p2[1])])

    marks = {
        "L1_top": p3(by["L1"].p_hi),
        "T10_top": p3(by["T10"].p_hi),
        "S2_bottom": p3(by["S2"].p_lo),
        "S1_centre": p3(by["S1"].center),
    }
    disc_b = {lv: p3(by[lv].center) for lv in LUMBAR_LEVELS}
    spine_c = p3(by["L3"].center)
    back = np.array([0.0, float(soft["prof_skin_post"](np.array([spine_c[2]]))[0]), spine_c[2]])
    plan = plan_sagittal(rng, marks, spine_c, list(disc_b.values()), back)
    deg = math.pi / 180.0
    r_body = rot(2, rng.uniform(-7, 7) * deg) @ rot(1, rng.uniform(-6, 6) * deg)
    r_body = r_body @ rot(0, rng.uniform(-5, 5) * deg)
    t_body = np.array([rng.uniform(-25, 25), rng.uniform(-60, 20), rng.uniform(-80, 80)])

    # acquisition parameters
    vendor = VENDORS[int(rng.integers(0, len(VENDORS)))]
    field_t = float(rng.choice([1.5, 1.5, 3.0]))
    te2 = float(rng.uniform(80.0, 120.0))
    tr2 = float(rng.uniform(2500.0, 5000.0))
    te1 = float(rng.uniform(8.0, 15.0))
    tr1 = float(rng.uniform(400.0, 750.0))
    snr = float(rng.uniform(8.0, 50.0))
    tissue = {
        k: (
            v[0] * rng.uniform(0.92, 1.08),
            v[1] * rng.uniform(0.9, 1.1),
            v[2] * rng.uniform(0.9, 1.1),
        )
        for k, v in TISSUE.items()
    }
    fat_frac = rng.uniform(0.2, 0.8)  # marrow fat: ageing brightens marrow
    pd, t1, t2 = tissue[MARROW]
    tissue[MARROW] = (pd, t1 * (1.3 - 0.6 * fat_frac), t2 * (0.8 + 0.5 * fat_frac))
    tissue[AIR] = (0.0, 1000.0, 1.0)

    # volume extents (body frame): cover every sagittal field with a margin
    corners = []
    half = plan["fov"] / 2
    for o in (plan["origins"][0], plan["origins"][-1]):
        for a in (-half, half):
            for b in (-half, half):
                corners.append(o + a * plan["row"] + b * plan["col"])
    cz = np.array([c[2] for c in corners])
    span_x = max(abs(c[0]) for c in corners)
    zs = np.linspace(cz.min() - 10, cz.max() + 10, 200)
    y_lo = float(np.min(soft["prof_skin_ant"](zs))) - 3
    y_hi = float(np.max(soft["prof_skin_post"](zs))) + 3
    x_half = max(95.0, span_x + 6)
    grid = Volume(x_half, 1.5, (y_lo, y_hi), (float(cz.min()) - 12, float(cz.max()) + 12))
    rasterise(grid, chain, soft, rng)

    thick_vox = plan["thickness"] / grid.dx
    sig_t2 = signal_lut(tissue, tr2, te2, field_t)[grid.lab]
    sig_t1 = signal_lut(tissue, tr1, te1, field_t)[grid.lab]
    sigvol = {"t2": slab_filter(sig_t2, thick_vox), "t1": slab_filter(sig_t1, thick_vox)}
    acq = {
        "bias_len": float(rng.uniform(60.0, 160.0)),
        "bias_floor": float(rng.uniform(0.15, 0.5)),
        "coil_y": float(soft["prof_skin_post"](np.array([spine_c[2]]))[0]),
        "coil_z": float(spine_c[2] + rng.uniform(-40, 40)),
        "coil_zlen": float(rng.uniform(220.0, 400.0)),
        "blur": float(rng.uniform(0.05, 0.22)),
    }
    t2_series = Series(
        "sag_t2",
        vendor[2],
        plan["row"],
        plan["col"],
        plan["normal"],
        plan["origins"],
        plan["fov"],
        plan["matrix"],
        plan["thickness"],
        plan["spacing"],
        te2,
        tr2,
        "t2",
        snr,
    )
    m1 = int(rng.choice([256, 320, 384, 448]))
    t1_series = Series(
        "sag_t1",
        vendor[3],
        plan["row"],
        plan["col"],
        plan["normal"],
        plan["origins"],
        plan["fov"],
        max(m1, int(math.ceil(plan["fov"] / 1.2))),
        plan["thickness"],
        plan["spacing"],
        te1,
        tr1,
        "t1",
        snr * rng.uniform(0.9, 1.4),
    )
    # axial decoy: a few slices through the lower lumbar discs
    n_ax = int(rng.integers(3, 8))
    ax_c = disc_b["L4-L5"].copy()
    ax_c[1] += rng.uniform(0.0, 25.0)
    ax_fov = float(rng.uniform(170.0, 230.0))
    ax_thick = float(rng.choice([3.0, 4.0, 5.0]))
    ax_sp = ax_thick + float(rng.uniform(0.5, 2.0))
    tilt = rot(0, -(by["L4-L5"].phi) * rng.uniform(0.3, 1.0))
    ax_row, ax_col = tilt @ np.array([1.0, 0.0, 0.0]), tilt @ np.array([0.0, 1.0, 0.0])
    ax_n = np.cross(ax_row, ax_col)
    ax_orig = [ax_c + (k - (n_ax - 1) / 2) * ax_sp * ax_n for k in range(n_ax)]
    ax_series = Series(
        "ax_t2",
        vendor[4],
        ax_row,
        ax_col,
        ax_n,
        ax_orig,
        ax_fov,
        int(rng.choice([256, 320, 384])),
        ax_thick,
        round(ax_sp, 2),
        te2 * rng.uniform(0.9, 1.05),
        tr2,
        "t2ax",
        snr,
    )
    sigvol["t2ax"] = sig_t2

    folder = out / f"fourth-{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = uid(seed, index, "study")
    meta = {
        "seed": seed,
        "index": index,
        "date": f"2025{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "time": f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}00",
        "accession": f"F4{seed:03d}{index:05d}",
        "manufacturer": vendor[0],
        "model": vendor[1],
        "patient_name": f"FOURTH^PHANTOM{index:03d}",
        "patient_id": f"F4-{seed}-{index:03d}",
        "sex": str(rng.choice(["F", "M"])),
        "age": f"{int(rng.integers(22, 85)):03d}Y",
        "field": field_t,
        "etl": int(rng.integers(12, 30)),
        "study_uid": study_uid,
        "for_uid": uid(seed, index, "for"),
    }
    order = [t2_series, t1_series, ax_series]
    numbers = {"sag_t1": 2, "sag_t2": 3, "ax_t2": 4}
    if rng.random() < 0.5:
        numbers = {"sag_t2": 2, "sag_t1": 3, "ax_t2": 4}
    uids = {}
    for ser in order:
        imgs, dx = render(ser, sigvol, grid, r_body, t_body, rng, acq)
        uids[ser.name] = uid(seed, index, ser.name, "series")
        write_series(
            folder / ser.name,
            ser,
            imgs,
            dx,
            r_body,
            t_body,
            meta,
            uids[ser.name],
            numbers[ser.name],
            rng,
        )

    def patient(p_body: np.ndarray) -> list[float]:
        return [round(float(v), 3) for v in (r_body @ p_body + t_body)]

    truth = {
        "set": "fourth",
        "variation": "fourth",
        "variant": variant,
        "lstv": variant != "normal",
        "seed": seed,
        "index": index,
        "study_instance_uid": study_uid,
        "t2_series_instance_uid": uids["sag_t2"],
        "slice_normal": [round(float(v), 6) for v in (r_body @ plan["normal"])],
        "discs": [{"level": lv, "patient_xyz": patient(disc_b[lv])} for lv in LUMBAR_LEVELS],
        "acquisition": {
            "manufacturer": vendor[0],
            "model": vendor[1],
            "field_t": field_t,
            "t2_te_ms": round(te2, 1),
            "t2_tr_ms": round(tr2, 1),
            "t1_te_ms": round(te1, 1),
            "t1_tr_ms": round(tr1, 1),
            "snr": round(snr, 1),
            "fov_mm": plan["fov"],
            "matrix": plan["matrix"],
            "pixel_mm": round(plan["fov"] / plan["matrix"], 4),
            "n_slices": plan["n_slices"],
            "thickness_mm": plan["thickness"],
            "spacing_mm": plan["spacing"],
            "anterior_left": plan["ant_left"],
            "head_up": plan["head_up"],
            "scale": round(scale, 3),
            "lordosis_deg": round(chain["lordosis_deg"], 1),
            "sacral_slope_deg": round(chain["sacral_slope_deg"], 1),
            "l5s1_mode": chain.get("l5s1_mode", ""),
            "degenerated": [
                s.name
                for s in segs
                if s.kind != "body" and s.info.get("degen") and s.region == "lumbar"
            ],
            "disc_heights_mm": {lv: round(by[lv].height, 2) for lv in LUMBAR_LEVELS},
            "marrow_fat": round(float(fat_frac), 2),
            **{k: round(v, 3) for k, v in acq.items()},
        },
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.start, args.start + args.count):
        t0 = time.perf_counter()
        truth = make_study(args.out, args.seed, i)
        print(
            f"fourth-{i:03d} {truth['variant']:<14} {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
