"""A third, independent lumbar-spine MR phantom: sagittal T2 target plus sagittal T1 and axial T2
decoys, written as DICOM studies with a ``truth.json`` that ``bench/bench_screen.py`` reads.

Written from scratch (anatomy and MR physics only, no code or images of the project's other
generators) so that the LSTV screen can be tested on pictures it has never seen.

Anatomy. Vertebrae are rigid bodies stacked along the posterior vertebral wall line: every body
and disc is the region between two tilted endplate planes, with a superellipse cross-section.
Lordosis comes from the wedge angles of discs and bodies (the L5-S1 disc carries most of it),
starting from a sacral slope of 30-50 degrees at the top of the sacrum; the sacrum (5 fused
segments, residual discs thin or absent) and the coccyx curve kyphotically. Posterior elements
(pedicles, articular pillars with facet joints, laminae, spinous and transverse processes),
foramina with fat and root ganglia, the canal (epidural fat, CSF sac, cord ending in the conus at
L1-L2, cauda equina roots lying dorsally), psoas, paraspinal muscles, quadratus lumborum, aorta /
iliac arteries, IVC, kidneys, liver, bowel loops of mixed content, bladder, ilium and sacral alae,
subcutaneous fat and abdominal wall are all modelled in 3D, so parasagittal slices show pedicles
and foramina and the axial decoy shows a plausible cross-section.

Physics. Spin-echo signal PD (1 - exp(-TR/T1)) exp(-TE/T2) per tissue at 1.5 T or 3 T, tissue
texture, partial volume across the slice (sub-slice samples), soft partial-volume edges in plane,
posterior coil array sensitivity and bias field, complex Gaussian noise (magnitude: Rician) at a
drawn SNR, acquisition at a lower matrix with k-space zero filling (Gibbs ringing, interpolation)
and optional k-space apodisation (blur).

    python bench/third_phantom.py OUT --count N --seed S [--preview]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
VARIANTS = ("normal", "lumbarization", "normal", "sacralization")
F32 = np.float32

# ------------------------------------------------------------------------------------------------
# Tissues: proton density (relative), T1 and T2 (ms) at 1.5 T. Fat T2 is the apparent TSE value
# (J-coupling makes fat bright on fast spin echo). Flowing blood is a flow void (low PD).
# ------------------------------------------------------------------------------------------------
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 1000.0, 1.0),
    "fat": (0.95, 270.0, 150.0),
    "skin": (0.65, 700.0, 40.0),
    "muscle": (0.75, 880.0, 44.0),
    "cortex": (0.06, 900.0, 6.0),
    "marrow": (0.85, 420.0, 85.0),
    "marrow_young": (0.85, 650.0, 70.0),
    "modic1": (0.92, 1100.0, 110.0),
    "modic2": (0.95, 300.0, 140.0),
    "sclerosis": (0.15, 900.0, 15.0),
    "hemangioma": (0.95, 320.0, 170.0),
    "nucleus": (0.92, 1150.0, 125.0),
    "nucleus_degen": (0.75, 950.0, 55.0),
    "annulus": (0.72, 950.0, 42.0),
    "rudiment": (0.6, 900.0, 32.0),
    "ligament": (0.35, 800.0, 18.0),
    "flavum": (0.55, 800.0, 30.0),
    "csf": (1.0, 4000.0, 2000.0),
    "cord": (0.72, 850.0, 78.0),
    "root": (0.68, 850.0, 70.0),
    "facet_fluid": (0.95, 3000.0, 500.0),
    "vein": (0.9, 1400.0, 180.0),
    "artery": (0.06, 1400.0, 150.0),
    "ivc": (0.35, 1400.0, 150.0),
    "kidney": (0.85, 1000.0, 85.0),
    "liver": (0.75, 580.0, 45.0),
    "spleen": (0.85, 1050.0, 75.0),
    "fluid": (0.97, 3000.0, 700.0),
    "urine": (0.98, 3200.0, 1100.0),
    "stool": (0.62, 700.0, 60.0),
    "gas": (0.01, 1000.0, 1.0),
    "bowel_wall": (0.72, 900.0, 55.0),
}
T1_FACTOR_3T = {"fat": 1.3, "csf": 1.05, "fluid": 1.05, "urine": 1.05, "air": 1.0, "gas": 1.0}


def tissue_signal(tr: float, te: float, field_t: float) -> dict[str, float]:
    """Spin-echo signal per tissue: PD (1 - exp(-TR/T1)) exp(-TE/T2)."""
    out = {}
    for name, (pd, t1, t2) in TISSUES.items():
        if field_t > 2.0:
            t1 *= T1_FACTOR_3T.get(name, 1.35)
            t2 *= 0.9
        out[name] = pd * (1.0 - math.exp(-tr / t1)) * math.exp(-te / t2)
    return out


# ------------------------------------------------------------------------------------------------
# Small geometry helpers (all float32 arrays, mm)
# ------------------------------------------------------------------------------------------------
def soft(sd: np.ndarray, w: float) -> np.ndarray:
    """Coverage of a pixel by a shape with signed distance sd (negative inside), edge width w."""
    return np.minimum(np.maximum(F32(0.5) - sd * F32(1.0 / w), F32(0.0)), F32(1.0))


def ell2(
    u: np.ndarray, v: np.ndarray, a: float | np.floating, b: float | np.floating
) -> np.ndarray:
    """Approximate signed distance to an ellipse with half axes a, b."""
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)


def ell4(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to a squarish superellipse (power 4)."""
    q = (u / a) ** 2
    r = (v / b) ** 2
    return (np.sqrt(np.sqrt(q * q + r * r)) - 1.0) * min(a, b)


def rbox(qs: tuple, r: float) -> np.ndarray:
    """Signed distance to a box with rounded edges (radius r) from per-axis slab distances."""
    out: Any = None
    inside: Any = None
    for q in qs:
        q = q + F32(r)
        pos = np.maximum(q, 0)
        out = pos * pos if out is None else out + pos * pos
        inside = q if inside is None else np.maximum(inside, q)
    return np.sqrt(out) + np.minimum(inside, 0) - F32(r)


def slab(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Signed distance to the interval [lo, hi]."""
    return np.maximum(lo - v, v - hi)


def unit_up(phi: float) -> tuple[float, float]:
    """(y, z) of the cranial axis tilted anteriorly (towards -y) by phi radians."""
    return (-math.sin(phi), math.cos(phi))


def unit_ant(phi: float) -> tuple[float, float]:
    """(y, z) of the anterior direction perpendicular to unit_up(phi)."""
    return (-math.cos(phi), -math.sin(phi))


@dataclass
class Element:
    """A body or disc between a bottom plane through B and a top plane through T (posterior wall
    points, sagittal plane y-z), with AP depth D and width W; s0 is the arc length of B."""

    name: str
    kind: str  # body | disc | sacral | sdisc | coccyx
    B: tuple[float, float]
    T: tuple[float, float]
    phi_b: float
    phi_t: float
    D: float
    W: float
    s0: float
    h: float
    cw: float = 22.0  # canal width
    cap: float = 16.0  # canal AP depth
    gap: float = 1.5  # posterior wall to dura
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pm = 0.5 * (self.phi_b + self.phi_t)
        self.u = unit_up(pm)
        self.n = unit_ant(pm)
        self.ub = unit_up(self.phi_b)
        self.ut = unit_up(self.phi_t)

    def local(self, Y: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, ...]:
        ry = Y - F32(self.B[0])
        rz = Z - F32(self.B[1])
        s = ry * F32(self.u[0]) + rz * F32(self.u[1])
        a = ry * F32(self.n[0]) + rz * F32(self.n[1])
        db = ry * F32(self.ub[0]) + rz * F32(self.ub[1])
        dt = (F32(self.T[0]) - Y) * F32(self.ut[0]) + (F32(self.T[1]) - Z) * F32(self.ut[1])
        return s, a, db, dt

    def mid_yz(self, a: float) -> tuple[float, float]:
        """The point at AP depth a (from the posterior wall) midway between the two planes."""
        y0, z0 = self.to_yz(0.0, a)
        db0 = (y0 - self.B[0]) * self.ub[0] + (z0 - self.B[1]) * self.ub[1]
        dt0 = (self.T[0] - y0) * self.ut[0] + (self.T[1] - z0) * self.ut[1]
        gb = self.u[0] * self.ub[0] + self.u[1] * self.ub[1]
        gt = self.u[0] * self.ut[0] + self.u[1] * self.ut[1]
        s = (dt0 - db0) / (gb + gt)
        return self.to_yz(s, a)

    def to_yz(self, s: float, a: float) -> tuple[float, float]:
        return (
            self.B[0] + s * self.u[0] + a * self.n[0],
            self.B[1] + s * self.u[1] + a * self.n[1],
        )

    def box(self, a_lo: float, a_hi: float, s_lo: float, s_hi: float, x: float) -> tuple:
        pts = [self.to_yz(s, a) for s in (s_lo, s_hi) for a in (a_lo, a_hi)]
        ys = [p[0] for p in pts]
        zs = [p[1] for p in pts]
        return (-x, min(ys), min(zs)), (x, max(ys), max(zs))


# ------------------------------------------------------------------------------------------------
# Rendering context: a sampling plane, sub-rectangles of it, painters with bounding boxes
# ------------------------------------------------------------------------------------------------
class Plane:
    """Pixel centres origin + c*dc*erow + r*dr*ecol (+ off*normal), in anatomy coordinates."""

    def __init__(self, origin, erow, ecol, spacing_c, spacing_r, ncols, nrows):
        self.o = np.asarray(origin, float)
        self.er = np.asarray(erow, float)
        self.ec = np.asarray(ecol, float)
        self.nv = np.cross(self.er, self.ec)
        self.m = np.stack([self.er, self.ec, self.nv], axis=1)
        self.dc, self.dr = spacing_c, spacing_r
        self.nc, self.nr = ncols, nrows

    def window(self, corners: np.ndarray, off: float):
        prj = (corners - self.o) @ self.m
        n = prj[:, 2]
        if n.min() > off or n.max() < off:
            return None
        c = prj[:, 0] / self.dc
        r = prj[:, 1] / self.dr
        c0, c1 = max(int(math.floor(c.min())), 0), min(int(math.ceil(c.max())) + 1, self.nc)
        r0, r1 = max(int(math.floor(r.min())), 0), min(int(math.ceil(r.max())) + 1, self.nr)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def points(self, r0, r1, c0, c1, off: float):
        cc = (np.arange(c0, c1, dtype=F32) * F32(self.dc))[None, :]
        rr = (np.arange(r0, r1, dtype=F32) * F32(self.dr))[:, None]
        base = self.o + off * self.nv
        out = []
        for k in range(3):
            out.append(F32(base[k]) + cc * F32(self.er[k]) + rr * F32(self.ec[k]))
        return out


class Ctx:
    """What a painter needs: tissue signals of the series, edge width, texture generator."""

    def __init__(self, sig: dict[str, float], w: float, texparams: dict):
        self.sig = sig
        self.w = w
        self.tp = texparams

    def tex(self, key: str, X, Y, Z, amp: float) -> np.ndarray:
        k, ph = self.tp[key]
        acc = np.zeros(X.shape, F32)
        for i in range(k.shape[0]):
            acc += np.sin(X * F32(k[i, 0]) + Y * F32(k[i, 1]) + Z * F32(k[i, 2]) + F32(ph[i]))
        return F32(1.0) + F32(amp / math.sqrt(k.shape[0])) * acc


def blend(img: np.ndarray, alpha: np.ndarray, value) -> None:
    img += alpha * (value - img)


@dataclass
class Painter:
    lo: tuple
    hi: tuple
    fn: Any
    base: bool  # smooth soft tissue: painted once per slice, not per sub-slice sample

    def __post_init__(self) -> None:
        lo, hi = self.lo, self.hi
        self.corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )


# ------------------------------------------------------------------------------------------------
# The patient: spine geometry and soft tissue
# ------------------------------------------------------------------------------------------------
LUMBAR_H = {
    "T9": 20,
    "T10": 21,
    "T11": 22,
    "T12": 23.5,
    "L1": 25,
    "L2": 26,
    "L3": 27,
    "L4": 27,
    "L5": 26.5,
    "S1L": 25,
}
LUMBAR_D = {
    "T9": 28,
    "T10": 29,
    "T11": 30,
    "T12": 31.5,
    "L1": 33,
    "L2": 35,
    "L3": 36.5,
    "L4": 37.5,
    "L5": 37.5,
    "S1L": 36,
}
LUMBAR_W = {
    "T9": 34,
    "T10": 36,
    "T11": 38,
    "T12": 40,
    "L1": 42,
    "L2": 45,
    "L3": 48,
    "L4": 50,
    "L5": 51,
    "S1L": 50,
}
DISC_H = {
    "T9": 5.0,
    "T10": 5.5,
    "T11": 6.0,
    "T12": 7.0,
    "L1": 8.5,
    "L2": 9.5,
    "L3": 10.5,
    "L4": 11.0,
    "L5": 10.0,
    "S1L": 9.5,
}  # mean height of the disc BELOW the named vertebra
TP_LEN = {
    "T9": 18,
    "T10": 16,
    "T11": 12,
    "T12": 10,
    "L1": 16,
    "L2": 22,
    "L3": 30,
    "L4": 25,
    "L5": 22,
    "S1L": 22,
}


class Patient:
    def __init__(self, rng: np.random.Generator, variant: str):
        self.rng = rng
        self.variant = variant
        self.k = float(rng.uniform(0.85, 1.15))
        self.painters: list[Painter] = []
        self.elements: list[Element] = []
        self.discs_truth: list[dict] = []
        self.params: dict[str, Any] = {"scale": round(self.k, 3)}
        self.texparams = {}
        for key, scale in (
            ("marrow", 9.0),
            ("bowel", 7.0),
            ("muscle", 4.0),
            ("fat", 12.0),
            ("organ", 15.0),
            ("disc", 5.0),
        ):
            kk = rng.normal(size=(3, 3))
            kk *= (2 * math.pi / scale) / np.linalg.norm(kk, axis=1, keepdims=True)
            if key == "muscle":  # striation: along the muscle fibres (cranio-caudal) slowly
                kk[:, 2] *= 0.15
            self.texparams[key] = (kk, rng.uniform(0, 2 * math.pi, 3))
        self._build_spine()
        self._base = True
        self._build_soft()
        self._base = False
        self._build_spine_painters()

    # -------------------------------------------------------------------- spine skeleton
    def _build_spine(self) -> None:
        rng, k, v = self.rng, self.k, self.variant
        alpha = math.radians(rng.uniform(30, 50))
        self.params["sacral_slope_deg"] = round(math.degrees(alpha), 1)
        if v == "lumbarization":
            mobile = ["S1L", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9"]
            sacral = ["S2", "S3", "S4", "S5"]
        else:
            mobile = ["L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9"]
            sacral = ["S1", "S2", "S3", "S4", "S5"]
        names = {n: ("S1" if n == "S1L" else n) for n in mobile}
        # disc states
        lumbar_discs = ["L1", "L2", "L3", "L4", "L5"]  # disc below these
        state = {n: "normal" for n in mobile}
        candidates = list(lumbar_discs)
        if v == "sacralization":
            state["L5"] = str(rng.choice(["rudimentary", "fused"], p=[0.6, 0.4]))
            candidates.remove("L5")
        if v == "lumbarization":
            state["S1L"] = "extra"
        n_degen = int(rng.choice([0, 1, 2], p=[0.4, 0.35, 0.25]))
        for name in rng.choice(candidates, size=n_degen, replace=False):
            state[str(name)] = "degenerate"
        self.params["degenerate_discs"] = [
            f"{names[n]}-{self._below_name(n, mobile, sacral)}"
            for n in mobile
            if state[n] == "degenerate"
        ]
        # lordosis: total angle from the sacral top plane to the L1 upper endplate
        lam = alpha + math.radians(rng.uniform(0, 10))
        weights = {
            "L5d": 0.28,
            "L5": 0.07,
            "L4d": 0.2,
            "L4": 0.05,
            "L3d": 0.14,
            "L3": 0.03,
            "L2d": 0.1,
            "L2": 0.02,
            "L1d": 0.07,
            "L1": 0.01,
            "T12d": 0.03,
        }
        if v == "lumbarization":
            weights = {
                "S1Ld": 0.22,
                "S1L": 0.05,
                "L5d": 0.2,
                "L5": 0.05,
                "L4d": 0.15,
                "L4": 0.04,
                "L3d": 0.11,
                "L3": 0.02,
                "L2d": 0.08,
                "L2": 0.02,
                "L1d": 0.05,
                "T12d": 0.01,
            }
        if v == "sacralization":
            weights["L5d"] = 0.12
            weights["L5"] = 0.2
        wj = {key: val * rng.uniform(0.75, 1.25) for key, val in weights.items()}
        tot = sum(wj.values())
        wedge = {key: lam * val / tot for key, val in wj.items()}
        self.params["lordosis_deg"] = round(math.degrees(lam), 1)

        s_acc = 0.0
        B = (0.0, 0.0)
        phi = alpha
        elems_up: list[Element] = []
        below = sacral[0]
        for n in mobile:
            jit = rng.uniform(0.95, 1.05)
            D = LUMBAR_D[n] * k * jit
            W = LUMBAR_W[n] * k * rng.uniform(0.95, 1.05)
            cw = (17 if n.startswith("T") else rng.uniform(21, 25)) * k
            cap = (14.5 if n.startswith("T") else rng.uniform(14, 17.5)) * k
            # ---- disc below vertebra n
            st = state[n]
            w_d = wedge.get(n + "d", -math.radians(rng.uniform(2, 4)) if n.startswith("T") else 0.0)
            hm = DISC_H[n] * k * rng.uniform(0.88, 1.12)
            if st == "degenerate":
                hm *= rng.uniform(0.45, 0.75)
            elif st == "rudimentary":
                hm = rng.uniform(2.0, 4.0) * k
            elif st == "fused":
                hm = rng.uniform(2.5, 5.0) * k
            elif st == "extra":
                hm = DISC_H["S1L"] * k * rng.uniform(0.85, 1.05)
            Dd = D + (1.5 if st != "fused" else 0.0)
            hp = max(hm - 0.5 * Dd * math.tan(w_d), 1.5)
            pm = phi - 0.5 * w_d
            u = unit_up(pm)
            T = (B[0] + hp * u[0], B[1] + hp * u[1])
            disc = Element(
                f"{names[n]}-{below}",
                "disc",
                B,
                T,
                phi,
                phi - w_d,
                Dd,
                W + 2,
                s_acc,
                hp,
                cw=cw,
                cap=cap,
            )
            disc.info.update(state=st, below=below, upper=names[n])
            elems_up.append(disc)
            s_acc += hp
            B, phi = T, phi - w_d
            # ---- body n
            w_b = wedge.get(n, -math.radians(rng.uniform(3, 5)) if n.startswith("T") else 0.0)
            h_mean = LUMBAR_H[n] * k * jit
            if n == "S1L":
                w_b = min(w_b, math.radians(3))
            hp = h_mean - 0.5 * D * math.tan(w_b)
            if v == "sacralization" and n == "L5":
                hp = h_mean * rng.uniform(0.75, 0.88) - 0.5 * D * math.tan(w_b)
            pm = phi - 0.5 * w_b
            u = unit_up(pm)
            T = (B[0] + hp * u[0], B[1] + hp * u[1])
            body = Element(names[n], "body", B, T, phi, phi - w_b, D, W, s_acc, hp, cw=cw, cap=cap)
            body.info.update(
                key=n, tp=TP_LEN[n] * k * rng.uniform(0.85, 1.15), thoracic=n.startswith("T")
            )
            elems_up.append(body)
            s_acc += hp
            B, phi = T, phi - w_b
            below = names[n]
        # sacrum, downward from the top plane at (0, 0)
        elems_down: list[Element] = []
        T = (0.0, 0.0)
        phi = alpha
        s_acc = 0.0
        SH = {"S1": 28, "S2": 24, "S3": 20, "S4": 15, "S5": 12}
        SD = {"S1": 37, "S2": 29, "S3": 23, "S4": 18, "S5": 14}
        SW = {"S1": 50, "S2": 42, "S3": 34, "S4": 26, "S5": 20}
        SK = {"S1": 4, "S2": 9, "S3": 14, "S4": 15, "S5": 12}
        cap_s = rng.uniform(11, 14) * k
        for i, n in enumerate(sacral):
            wk = math.radians(SK[n] * rng.uniform(0.8, 1.2))
            hp = SH[n] * k * rng.uniform(0.92, 1.08)
            D, W = SD[n] * k, SW[n] * k
            if v == "lumbarization" and n == "S2":
                hp, D, W = 26 * k, 34 * k, 46 * k
            pm = phi - 0.5 * wk
            u = unit_up(pm)
            Bn = (T[0] - hp * u[0], T[1] - hp * u[1])
            s_acc -= hp
            capn = cap_s * (1.0 - 0.12 * i)
            seg = Element(n, "sacral", Bn, T, phi - wk, phi, D, W, s_acc, hp, cw=cw * 0.9, cap=capn)
            seg.info.update(top=(i == 0), idx=i)
            elems_down.append(seg)
            T, phi = Bn, phi - wk
            if i < len(sacral) - 1:  # residual disc
                present = rng.random() < (0.75 if i == 0 else 0.45)
                hp = rng.uniform(1.0, 2.6) * k if present else 0.0
                if hp > 0:
                    Bn = (T[0] - hp * unit_up(phi)[0], T[1] - hp * unit_up(phi)[1])
                    s_acc -= hp
                    rd = Element(
                        f"{n}-{sacral[i + 1]}r",
                        "sdisc",
                        Bn,
                        T,
                        phi,
                        phi,
                        D * 0.9,
                        W * 0.9,
                        s_acc,
                        hp,
                        cw=cw * 0.9,
                        cap=capn,
                    )
                    elems_down.append(rd)
                    T = Bn
        for i, (hc, dc) in enumerate(((10, 14), (8, 11), (7, 9))):
            hp = rng.uniform(1.5, 3.0) * k
            wk = math.radians(rng.uniform(8, 15))
            Bn = (T[0] - hp * unit_up(phi)[0], T[1] - hp * unit_up(phi)[1])
            s_acc -= hp
            elems_down.append(
                Element(f"Co{i}d", "sdisc", Bn, T, phi, phi, dc * k, dc * k, s_acc, hp, cw=8, cap=3)
            )
            T = Bn
            hp = hc * k
            u = unit_up(phi - 0.5 * wk)
            Bn = (T[0] - hp * u[0], T[1] - hp * u[1])
            s_acc -= hp
            elems_down.append(
                Element(
                    f"Co{i + 1}",
                    "coccyx",
                    Bn,
                    T,
                    phi - wk,
                    phi,
                    dc * k,
                    dc * k * 1.3,
                    s_acc,
                    hp,
                    cw=8,
                    cap=3,
                )
            )
            T, phi = Bn, phi - wk
        self.elements = list(reversed(elems_down)) + elems_up
        self.s_top = s_acc
        # conus tip near L1-L2 (lower L1 .. upper L2)
        l12 = next(e for e in self.elements if e.name == "L1-L2")
        self.s_conus = l12.s0 + rng.uniform(-12.0, 14.0) * k
        self.params["conus_tip_mm_from_L1L2"] = round(self.s_conus - l12.s0, 1)
        sac_top = next(e for e in self.elements if e.kind == "sacral")
        self.s_sac_end = sac_top.s0 - rng.uniform(15, 35)  # dural sac ends near S2
        # truth
        levels = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
        if v == "lumbarization":
            levels.append("S1-S2")
        for e in self.elements:
            if e.kind == "disc" and e.name in levels:
                y, z = e.mid_yz(0.5 * e.D)
                st = e.info["state"]
                self.discs_truth.append({"level": e.name, "yz": (y, z), "disc": st})
        order = {name: i for i, name in enumerate(levels)}
        self.discs_truth.sort(key=lambda d: order[d["level"]])
        # smooth posterior-wall axis y(z) for the soft tissue
        pts = [e.B for e in self.elements] + [self.elements[-1].T]
        zz = np.array([p[1] for p in pts])
        yy = np.array([p[0] for p in pts])
        o = np.argsort(zz)
        zg = np.arange(zz.min() - 150, zz.max() + 150, 2.0)
        yg = np.interp(zg, zz[o], yy[o])
        ker = np.ones(15) / 15
        yg = np.convolve(np.pad(yg, 7, mode="edge"), ker, mode="valid")
        self.zg, self.yg = zg.astype(F32), yg.astype(F32)
        self.z_sacral_top = 0.0
        self.z_top = float(zz.max())
        self.z_bottom = float(zz.min())

    @staticmethod
    def _below_name(n: str, mobile: list[str], sacral: list[str]) -> str:
        i = mobile.index(n)
        return sacral[0] if i == 0 else ("S1" if mobile[i - 1] == "S1L" else mobile[i - 1])

    def yax(self, Z: np.ndarray) -> np.ndarray:
        return np.interp(Z, self.zg, self.yg).astype(F32)

    def elem(self, name: str) -> Element:
        return next(e for e in self.elements if e.name == name)

    def add(self, lo, hi, fn) -> None:
        self.painters.append(Painter(tuple(lo), tuple(hi), fn, self._base))

    # -------------------------------------------------------------------- soft tissue
    def _build_soft(self) -> None:
        rng, k = self.rng, self.k
        z_lo, z_hi = self.z_bottom - 200, self.z_top + 200
        t_post_l = rng.uniform(80, 105) * k  # skin behind the lumbar posterior wall line
        t_post_s = rng.uniform(38, 55) * k  # skin behind the sacrum
        t_ant = -rng.uniform(150, 220) * k
        hw = rng.uniform(140, 180) * k
        f_post, f_ant, f_lat = rng.uniform(8, 28), rng.uniform(10, 45), rng.uniform(12, 40)
        wall = rng.uniform(8, 14)
        l5 = self.elem("L5")
        z_l5 = l5.B[1]
        self.params.update(subcut_fat_ant_mm=round(f_ant, 1), subcut_fat_post_mm=round(f_post, 1))

        def tpost(Z):
            r = np.clip((Z - F32(z_l5 - 60)) / F32(90.0), 0, 1)
            r = r * r * (F32(3.0) - F32(2.0) * r)
            return F32(t_post_s) + F32(t_post_l - t_post_s) * r

        def body_sd(x2, t, tp, shrink_ant, shrink_post, shrink_lat):
            tp = tp - F32(shrink_post)
            ta = F32(t_ant + shrink_ant)
            hap = F32(0.5) * (tp - ta)
            hwx = F32(hw - shrink_lat)
            vv = (t - F32(0.5) * (tp + ta)) / hap
            vv = vv * vv
            f = x2 / (hwx * hwx) + np.where(t > F32(0.5) * (tp + ta), vv * vv, vv)
            return (np.sqrt(f) - F32(1.0)) * np.minimum(hap, hwx)

        yl, yh = float(self.yg.min()), float(self.yg.max())
        big_lo = (-hw - 5, yl + t_ant - 5, z_lo)
        big_hi = (hw + 5, yh + t_post_l + 5, z_hi)

        def p_body(c, img, X, Y, Z):
            t = Y - self.yax(Z)
            tp = tpost(Z)
            x2 = X * X
            sd = body_sd(x2, t, tp, 0, 0, 0)
            txf = c.tex("fat", X, Y, Z, 0.06)
            blend(img, soft(sd, c.w), c.sig["skin"])
            blend(img, soft(sd + 2.0, c.w), c.sig["fat"] * txf)
            sd = body_sd(x2, t, tp, f_ant, f_post, f_lat)
            blend(img, soft(sd, c.w), c.sig["muscle"] * c.tex("muscle", X, Y, Z, 0.12))
            sd = body_sd(x2, t, tp, f_ant + wall, f_post + wall, f_lat + wall)
            # abdominal cavity: mesenteric fat with a haze of small vessels and collapsed bowel
            mix = np.clip((txf - F32(0.9)) * F32(1.5), 0.25, 0.5)
            v = c.sig["fat"] + mix * F32(c.sig["bowel_wall"] - c.sig["fat"])
            blend(img, soft(sd, c.w), v)

        self.add(big_lo, big_hi, p_body)

        # posterior muscle compartment (erector spinae, multifidus; gluteal at sacral level)
        wm = rng.uniform(55, 75) * k

        def p_back(c, img, X, Y, Z):
            t = Y - self.yax(Z)
            tp = tpost(Z) - F32(f_post)
            tc = 0.5 * (tp + 2.0)
            hap = np.maximum(0.5 * (tp - 2.0), 5.0)
            sd = (np.sqrt((X / F32(wm)) ** 2 + ((t - tc) / hap) ** 4) - 1.0) * 20.0
            m = c.sig["muscle"] * c.tex("muscle", X, Y, Z, 0.15)
            blend(img, soft(sd, c.w), m)
            # fat plane between multifidus and longissimus
            sdp = np.abs(np.abs(X) - F32(0.45 * wm)) - 0.8
            blend(img, soft(np.maximum(sdp, sd + 3), c.w) * 0.7, c.sig["fat"])

        self.add((-wm, yl - 5, z_lo), (wm, yh + t_post_l, z_hi), p_back)

        # kidneys with perirenal fat, liver
        l1 = self.elem("L1")
        zk = l1.B[1] + rng.uniform(-10, 20)
        for side in (-1, 1):
            xc = side * rng.uniform(65, 80) * k
            tcen = -rng.uniform(5, 20)
            zc = zk + (12 if side > 0 else -5)
            rx, rt, rz = 26 * k, 30 * k, 55 * k
            yc = float(np.interp(zc, self.zg, self.yg)) + tcen

            def p_kidney(c, img, X, Y, Z, xc=xc, tcen=tcen, zc=zc, rx=rx, rt=rt, rz=rz):
                t = Y - self.yax(Z)
                q = np.sqrt(((X - xc) / rx) ** 2 + ((t - tcen) / rt) ** 2 + ((Z - zc) / rz) ** 2)
                blend(img, soft((q - 1.0) * rx - 12.0, c.w), c.sig["fat"])
                blend(img, soft((q - 1.0) * rx, c.w), c.sig["kidney"])
                blend(img, soft((q - 0.55) * rx, c.w) * 0.6, c.sig["fluid"] * 0.5)

            m = 40
            self.add(
                (xc - rx - m, yc - rt - m - 20, zc - rz - m),
                (xc + rx + m, yc + rt + m + 20, zc + rz + m),
                p_kidney,
            )
        zl = self.elem("T11").B[1] + rng.uniform(-20, 20)

        def p_liver(c, img, X, Y, Z, zl=zl):
            t = Y - self.yax(Z)
            sd = ell2(np.sqrt((X + 75) ** 2 + ((t + 90) * 1.3) ** 2), Z - zl, 110, 95)
            blend(img, soft(sd, c.w), c.sig["liver"] * c.tex("organ", X, Y, Z, 0.05))

        self.add((-200, yl - 260, zl - 100), (50, yh + 30, zl + 100), p_liver)

        # bowel loops anterior to the spine and psoas, inside the abdominal cavity
        n_loops = int(rng.integers(70, 110))
        z_b0, z_b1 = self.elem("S3").B[1] - 10, self.elem("T12").T[1] + 10
        types = ["fluid", "gas", "stool", "collapsed"]
        for _ in range(n_loops):
            r = rng.uniform(6, 18) * k
            rr = (r * rng.uniform(0.7, 1.4), r * rng.uniform(0.7, 1.3), r * rng.uniform(0.7, 1.4))
            zc = rng.uniform(z_b0, z_b1)
            t_hi = -45 * k - rr[1]
            t_lo = t_ant + f_ant + wall + rr[1]
            if t_lo >= t_hi:
                continue
            tc = rng.uniform(t_lo, t_hi)
            xlim = hw - f_lat - wall - rr[0]
            xc = float(np.clip(rng.normal(0, 45 * k), -xlim, xlim))
            typ = str(rng.choice(types, p=[0.3, 0.15, 0.25, 0.3]))
            yc = float(np.interp(zc, self.zg, self.yg)) + tc
            gas_level = rng.uniform(-0.3, 0.5)

            def p_loop(c, img, X, Y, Z, xc=xc, tc=tc, zc=zc, rr=rr, typ=typ, gl=gas_level):
                t = Y - self.yax(Z)
                q = np.sqrt(
                    ((X - xc) / rr[0]) ** 2 + ((t - tc) / rr[1]) ** 2 + ((Z - zc) / rr[2]) ** 2
                )
                rm = min(rr)
                blend(img, soft((q - 1.0) * rm, c.w), c.sig["bowel_wall"])
                inner = soft((q - 1.0) * rm + 2.2, c.w)
                if typ == "fluid":
                    blend(img, inner, c.sig["fluid"] * c.tex("bowel", X, Y, Z, 0.1))
                elif typ == "gas":
                    blend(img, inner, c.sig["gas"])
                elif typ == "stool":
                    tx = c.tex("bowel", X, Y, Z, 0.45)
                    blend(img, inner, c.sig["stool"] * tx)
                    # gas bubbles inside stool: supine -> anterior (negative t) side
                    bub = soft((1.25 - tx) * 4.0, 1.0)
                    blend(img, inner * bub, c.sig["gas"])
                else:
                    blend(img, inner * 0.7, 0.5 * (c.sig["bowel_wall"] + c.sig["fluid"]))
                if typ == "fluid" and gl < 0.2:  # air-fluid level: gas in the anterior part
                    lvl = (t - tc) / rr[1]
                    blend(img, inner * soft((lvl - gl) * -rr[1], c.w), c.sig["gas"])

            reach = max(rr) + 4
            self.add(
                (xc - reach, yc - reach - 15, zc - reach),
                (xc + reach, yc + reach + 15, zc + reach),
                p_loop,
            )

        # bladder low in the pelvis, rectum in front of the lower sacrum
        s4 = self.elem("S4")
        yb, zb = s4.to_yz(0.0, s4.D + rng.uniform(60, 90))
        rb = rng.uniform(25, 45) * k
        zb -= 25

        def p_bladder(c, img, X, Y, Z):
            q = np.sqrt((X / (rb * 1.3)) ** 2 + ((Y - yb) / rb) ** 2 + ((Z - zb) / (rb * 0.8)) ** 2)
            blend(img, soft((q - 1) * rb * 0.8, c.w), c.sig["bowel_wall"])
            blend(img, soft((q - 1) * rb * 0.8 + 2.5, c.w), c.sig["urine"])

        self.add((-rb * 1.4, yb - rb - 3, zb - rb), (rb * 1.4, yb + rb + 3, zb + rb), p_bladder)
        for nm in ("S3", "S4", "S5"):
            e = self.elem(nm)
            yr, zr = e.to_yz(0.5 * e.h, e.D + rng.uniform(10, 18))
            r_rect = rng.uniform(12, 20) * k
            typ = str(rng.choice(["stool", "gas", "collapsed"]))

            def p_rect(c, img, X, Y, Z, yr=yr, zr=zr, rr=r_rect, typ=typ):
                q = np.sqrt((X / rr) ** 2 + ((Y - yr) / rr) ** 2 + ((Z - zr) / (rr * 1.2)) ** 2)
                blend(img, soft((q - 1) * rr, c.w), c.sig["bowel_wall"])
                v = {"stool": c.sig["stool"], "gas": c.sig["gas"]}.get(typ, c.sig["bowel_wall"])
                blend(img, soft((q - 1) * rr + 2.5, c.w), v * c.tex("bowel", X, Y, Z, 0.35))

            self.add(
                (-r_rect, yr - r_rect, zr - r_rect * 1.2),
                (r_rect, yr + r_rect, zr + r_rect * 1.2),
                p_rect,
            )

        # ilium (posterior iliac wing, oblique plate lateral to the sacrum)
        s_top = next(e for e in self.elements if e.kind == "sacral" and e.info.get("top"))
        yi, zi = s_top.to_yz(-0.4 * s_top.h, 0.2 * s_top.D)
        beta = math.radians(rng.uniform(35, 55))
        x0 = rng.uniform(58, 70) * k

        def p_ilium(c, img, X, Y, Z):
            ax = np.abs(X) - F32(x0)
            ty = Y - F32(yi)
            along = ax * F32(math.sin(beta)) - ty * F32(math.cos(beta))
            across = ax * F32(math.cos(beta)) + ty * F32(math.sin(beta))
            sd = np.maximum(ell2(along, Z - F32(zi), 55.0, 60.0), np.abs(across) - 6.0)
            sd = np.maximum(sd, -np.abs(X) + F32(40.0))
            blend(img, soft(sd, c.w), c.sig["cortex"])
            blend(img, soft(sd + 1.5, c.w), c.sig["marrow"] * c.tex("marrow", X, Y, Z, 0.08))

        self.add((-x0 - 70, yi - 70, zi - 65), (x0 + 70, yi + 70, zi + 65), p_ilium)

        # psoas (tapered tube chain), aorta / iliac arteries, IVC
        chain = []
        for nm, rad in (("T12", 5), ("L1", 8), ("L2", 12), ("L3", 16), ("L4", 19), ("L5", 21)):
            e = self.elem(nm)
            r = rad * k * rng.uniform(0.9, 1.15)
            y, z = e.to_yz(0.5 * e.h, 0.45 * e.D)
            chain.append(((0.5 * e.W + 0.75 * r), y, z, r))
        st = next(e for e in self.elements if e.kind == "sacral" and e.info.get("top"))
        y, z = st.to_yz(0.2 * st.h, st.D + 12)
        chain.append((52 * k, y, z, 22 * k))
        e3 = self.elem("S3")
        y, z = e3.to_yz(0.0, e3.D + 45)
        chain.append((72 * k, y, z, 20 * k))
        for side in (-1, 1):
            pts = [(side * c_[0], c_[1], c_[2], c_[3]) for c_ in chain]
            for a_, b_ in zip(pts[:-1], pts[1:], strict=False):
                self._tube(a_, b_, "muscle", tex="muscle")
        # aorta: left-anterior of the bodies, bifurcating at L4
        ra = rng.uniform(8, 12) * k
        aor = []
        for nm in ("T9", "T10", "T11", "T12", "L1", "L2", "L3"):
            e = self.elem(nm)
            y, z = e.to_yz(0.5 * e.h, e.D + ra + 3)
            aor.append((rng.uniform(8, 16), y, z, ra))
        l4 = self.elem("L4")
        y, z = l4.to_yz(0.3 * l4.h, l4.D + ra + 3)
        aor.append((10.0, y, z, ra * 0.9))
        for a_, b_ in zip(aor[:-1], aor[1:], strict=False):
            self._tube(a_, b_, "artery")
        yb_, zb_ = st.to_yz(-0.5 * st.h, st.D + 35)
        for side in (-1, 1):
            self._tube(aor[-1][:3] + (ra * 0.7,), (side * 55 * k, yb_, zb_, ra * 0.6), "artery")
        # IVC: right (negative x), formed at L5
        ri = rng.uniform(9, 13) * k
        ivc = []
        for nm in ("T11", "T12", "L1", "L2", "L3", "L4", "L5"):
            e = self.elem(nm)
            y, z = e.to_yz(0.5 * e.h, e.D + ri + 2)
            ivc.append((-rng.uniform(18, 26), y, z, ri))
        for a_, b_ in zip(ivc[:-1], ivc[1:], strict=False):
            self._tube(a_, b_, "ivc")
        for side in (-1, 1):
            self._tube(ivc[-1][:3] + (ri * 0.7,), (side * 50 * k, yb_ + 8, zb_, ri * 0.6), "ivc")

    def _tube(self, a_, b_, tissue: str, tex: str | None = None) -> None:
        A = np.array(a_[:3], float)
        Bv = np.array(b_[:3], float)
        ra, rb = float(a_[3]), float(b_[3])
        d = Bv - A
        L2 = float(d @ d) + 1e-6
        m = max(ra, rb) + 3

        def p_tube(c, img, X, Y, Z):
            px, py, pz = X - F32(A[0]), Y - F32(A[1]), Z - F32(A[2])
            t = np.clip((px * F32(d[0]) + py * F32(d[1]) + pz * F32(d[2])) / F32(L2), 0, 1)
            dist = np.sqrt(
                (px - t * F32(d[0])) ** 2 + (py - t * F32(d[1])) ** 2 + (pz - t * F32(d[2])) ** 2
            )
            sd = dist - (F32(ra) + t * F32(rb - ra))
            v = c.sig[tissue]
            if tex:
                v = v * c.tex(tex, X, Y, Z, 0.12)
            blend(img, soft(sd, c.w), v)

        lo = np.minimum(A, Bv) - m
        hi = np.maximum(A, Bv) + m
        self.add(tuple(lo), tuple(hi), p_tube)

    # -------------------------------------------------------------------- spine painters
    def _build_spine_painters(self) -> None:
        rng = self.rng
        els = self.elements
        roots = []  # cauda equina: (exit arc length, x0 side, a offset fraction, radius)
        for e in els:
            if e.kind == "disc" and e.s0 < self.s_conus:
                for side in (-1, 1):
                    roots.append((e.s0 + e.h, side, rng.uniform(0.1, 0.9), rng.uniform(0.5, 0.9)))
        for e in els:
            if e.kind in ("sacral", "sdisc") and e.s0 > -70:
                for side in (-1, 1):
                    roots.append((e.s0, side, rng.uniform(0.1, 0.9), rng.uniform(0.4, 0.7)))
        hem = None
        if rng.random() < 0.2:
            hem = (str(rng.choice(["L1", "L2", "L3", "L4"])), rng.uniform(3, 6))
        modic: dict[str, tuple] = {}
        for e in els:
            if e.kind == "disc" and e.info.get("state") == "degenerate" and rng.random() < 0.6:
                modic[e.name] = (
                    str(rng.choice(["modic1", "modic2", "sclerosis"], p=[0.35, 0.5, 0.15])),
                    rng.uniform(3, 8),
                    bool(rng.random() < 0.6),
                )
        self.params["modic"] = {k_: v_[0] for k_, v_ in modic.items()}
        self.params["hemangioma"] = hem[0] if hem else None
        marrow = "marrow" if rng.random() < 0.8 else "marrow_young"
        vacuum = {e.name: rng.random() < 0.25 for e in els if e.kind == "disc"}
        intra_cleft = rng.random() < 0.5

        # posterior elements first (under the canal), then canal, then bodies, then discs
        for i, e in enumerate(els):
            if e.kind == "body":
                below = els[i - 1] if i > 0 else None
                above = els[i + 1] if i + 1 < len(els) else None
                self._posterior(e, below.h if below else 8.0, above.h if above else 8.0, marrow)
            elif e.kind == "sacral":
                self._sacral_posterior(e, marrow)
        for e in els:
            self._canal(e, roots)
        for e in els:
            if e.kind in ("body", "sacral", "coccyx"):
                self._body(e, marrow, hem)
        for i, e in enumerate(els):
            if e.kind in ("disc", "sdisc"):
                lower = els[i - 1] if i > 0 else None
                upper = els[i + 1] if i + 1 < len(els) else None
                self._disc(
                    e,
                    lower,
                    upper,
                    marrow,
                    modic.get(e.name),
                    vacuum.get(e.name, False),
                    intra_cleft,
                )

    def _posterior(self, e: Element, h_below: float, h_above: float, marrow: str) -> None:
        rng, k = self.rng, self.k
        h, cw, cap, gap = e.h, e.cw, e.cap, e.gap
        acp = -(gap + cap)  # posterior canal boundary
        lt = rng.uniform(6, 9) * k  # lamina thickness
        thor = e.info["thoracic"]
        sp_len = (rng.uniform(28, 38) if not thor else rng.uniform(32, 42)) * k
        sp_h = (rng.uniform(13, 19) if not thor else rng.uniform(8, 11)) * k
        tau = math.radians(rng.uniform(8, 20) if not thor else rng.uniform(40, 55))
        sp_w = rng.uniform(5, 8) * k
        tp = e.info["tp"]
        sacralized_l5 = self.variant == "sacralization" and e.name == "L5"
        if sacralized_l5:
            tp = rng.uniform(38, 48) * k
        xp = 0.5 * cw + 4.0  # pedicle centre line
        pil_lo, pil_hi = -0.5 * h_below + 1.0, h + 0.5 * h_above + 1.0
        joint = h + 0.5 * h_above - 1.0
        sig_m = marrow

        def p_mid(c, img, X, Y, Z):
            s, a, _, _ = e.local(Y, Z)
            ax = np.abs(X)
            w = c.w
            vm = c.sig[sig_m] * c.tex("marrow", X, Y, Z, 0.07)
            # ligamentum flavum, interspinous ligament (with some fat)
            sd = rbox(
                (slab(a, acp - lt - 2, acp), ax - F32(0.5 * cw + 4), slab(s, -h_below, h)), 1.0
            )
            blend(img, soft(sd, w), c.sig["flavum"])
            sd = rbox((slab(a, acp - lt - sp_len, acp - lt), ax - 2.5, slab(s, -h_below, h)), 1.0)
            blend(img, soft(sd, w) * 0.7, c.sig["ligament"])
            # lamina
            sdl = rbox(
                (slab(a, acp - lt, acp), ax - F32(0.5 * cw + 9), slab(s, -0.25 * h, 0.72 * h)), 2.0
            )
            blend(img, soft(sdl, w), c.sig["cortex"])
            blend(img, soft(sdl + 1.2, w), vm)
            # spinous process: inclined caudally, club-shaped tip
            q = F32(acp - lt + 1) - a
            sc = s + q * F32(math.tan(tau)) - F32(0.4 * h)
            tipw = F32(0.5 * sp_h) * (F32(0.8) + F32(0.3) * np.clip(q / F32(sp_len), 0, 1))
            sds = rbox((slab(q, 0, sp_len), np.abs(sc) - tipw, ax - F32(0.5 * sp_w)), 2.5)
            blend(img, soft(sds, w), c.sig["cortex"])
            blend(img, soft(sds + 1.2, w), vm)

        lo, hi = e.box(
            acp - lt - sp_len - 12, acp + 2, -h_below - 40, h + h_above + 5, 0.5 * cw + 11
        )
        self.add(lo, hi, p_mid)

        def p_lat(c, img, X, Y, Z):
            s, a, _, _ = e.local(Y, Z)
            ax = np.abs(X)
            w = c.w
            # foramen / lateral recess: fat with the root ganglion under the pedicle
            sdf = rbox(
                (
                    slab(a, acp + 1.0, -0.5),
                    slab(ax, 0.5 * cw - 2, 0.5 * cw + 13),
                    slab(s, -h_below - 2, 0.6 * h),
                ),
                2.0,
            )
            blend(img, soft(sdf, w), c.sig["fat"])
            sdg = np.maximum(
                ell2(s - F32(0.3 * h), a - F32(0.45 * acp), 3.5 * k, 3.0),
                slab(ax, 0.5 * cw - 1, 0.5 * cw + 14),
            )
            blend(img, soft(sdg, w), c.sig["root"])
            vm = c.sig[sig_m] * c.tex("marrow", X, Y, Z, 0.07)
            # articular pillars with the facet joint line
            sdp = rbox(
                (
                    slab(a, acp - lt - 6, acp + 5),
                    slab(ax, 0.5 * cw - 1, 0.5 * cw + 12),
                    slab(s, pil_lo, pil_hi),
                ),
                3.0,
            )
            blend(img, soft(sdp, w), c.sig["cortex"])
            blend(img, soft(sdp + 1.3, w), vm)
            sdj = np.maximum(np.abs(s - F32(joint) + 0.25 * (a - F32(acp))) - 0.7, sdp + 1.0)
            blend(img, soft(sdj, w), c.sig["facet_fluid"])
            # pedicle (oval section in s-x, running along a)
            sdd = np.maximum(
                ell2(s - F32(0.7 * h), ax - F32(xp), 0.22 * h, 4.5 * k), slab(a, acp - 2, 1.0)
            )
            blend(img, soft(sdd, w), c.sig["cortex"])
            blend(img, soft(sdd + 1.2, w), vm)
            # transverse processes
            if sacralized_l5:
                sdt = rbox(
                    (
                        slab(ax, 0.5 * cw + 6, 0.5 * cw + tp),
                        slab(a, acp - 4, acp + 12),
                        slab(s, -0.15 * h, 0.8 * h),
                    ),
                    4.0,
                )
            else:
                sdt = rbox(
                    (
                        slab(ax, 0.5 * cw + 6, 0.5 * cw + tp),
                        slab(a, acp - 3, acp + 6),
                        slab(s, 0.45 * h, 0.78 * h),
                    ),
                    2.5,
                )
            blend(img, soft(sdt, w), c.sig["cortex"])
            blend(img, soft(sdt + 1.2, w), vm)

        lo, hi = e.box(acp - lt - 8, 2, -h_below - 5, h + h_above + 5, 0.5 * cw + tp + 2)
        for side in (-1, 1):
            xs = sorted((side * (0.5 * cw - 3), side * (0.5 * cw + tp + 2)))
            self.add((xs[0], lo[1], lo[2]), (xs[1], hi[1], hi[2]), p_lat)

    def _sacral_posterior(self, e: Element, marrow: str) -> None:
        k = self.k
        cap, gap, cw = e.cap, e.gap, e.cw
        acp = -(gap + cap)
        roof = 7.0 * k
        idx = e.info["idx"]
        ala = (
            {0: 105, 1: 95, 2: 70}.get(idx, 0)
            * k
            * (0.9 if self.variant == "lumbarization" else 1.0)
        )
        h = e.h
        lo, hi = e.box(acp - roof - 14, e.D + 2, -3, h + 3, max(0.5 * ala, 0.5 * e.W) + 3)

        def p_sac(c, img, X, Y, Z):
            s, a, db, dt = e.local(Y, Z)
            ax = np.abs(X)
            w = c.w
            vm = c.sig[marrow] * c.tex("marrow", X, Y, Z, 0.08)
            planes = np.maximum(-db, -dt)
            # fused laminae (canal roof) and median crest
            sdr = np.maximum(
                np.maximum(slab(a, acp - roof, acp + 2), ax - F32(0.5 * cw + 12)), planes
            )
            crest = np.maximum(
                np.maximum(slab(a, acp - roof - 10, acp), ax - 3.5),
                np.abs(s - F32(0.5 * h)) - F32(0.25 * h),
            )
            sdr = np.minimum(sdr, crest)
            blend(img, soft(sdr, w), c.sig["cortex"])
            blend(img, soft(sdr + 1.2, w), vm)
            if ala > 0:
                sda = np.maximum(
                    np.maximum(
                        ell2(ax, a - F32(0.35 * e.D), F32(0.5 * ala), F32(0.55 * e.D + cap)), planes
                    ),
                    slab(a, acp - roof + 2, 0.85 * e.D),
                )
                blend(img, soft(sda, w), c.sig["cortex"])
                blend(img, soft(sda + 1.3, w), vm)
                # sacral foramina at the lower border of the segment
                sdf = np.maximum(
                    ell2(ax - F32(0.5 * e.W + 6), s - 5.0, 4.5, 4.0), slab(a, acp - roof, 0.9 * e.D)
                )
                blend(img, soft(sdf, w), c.sig["fat"])
                blend(img, soft(sdf + 2.5, w), c.sig["root"])

        self.add(lo, hi, p_sac)

    def _canal(self, e: Element, roots: list) -> None:
        k = self.k
        cw, cap, gap = e.cw, e.cap, e.gap
        acp = -(gap + cap)
        ac = -(gap + 0.5 * cap)
        lo, hi = e.box(acp - 2, 1, -1, e.h + 1, 0.5 * cw + 2)
        s0 = e.s0
        sac_end = self.s_sac_end
        s_conus = self.s_conus
        in_sac = e.s0 + e.h > sac_end
        cord = e.s0 + e.h > s_conus
        my_roots = [r for r in roots if r[0] < e.s0 + e.h + 40 and e.s0 + e.h > sac_end - 40]
        if e.s0 > self.s_conus + 25:  # above the conus the roots are still inside the cord
            my_roots = []
        r_cord = 4.6 * k
        if e.kind in ("coccyx",) or (e.kind == "sdisc" and e.name.startswith("Co")):
            return

        def p_canal(c, img, X, Y, Z):
            s, a, db, dt = e.local(Y, Z)
            inside = (db >= 0) & (dt > 0)
            ax = np.abs(X)
            w = c.w
            sd = ell2(a - F32(ac), X, 0.5 * cap, 0.5 * cw)
            blend(img, soft(sd, w) * inside, c.sig["fat"])
            if not in_sac:
                return
            sg = s + F32(s0)
            # dural sac: narrower and more anterior epidural fat posteriorly in the low lumbar
            sds = ell2(a - F32(ac + 0.06 * cap), X, 0.42 * cap, 0.4 * cw)
            sds = np.maximum(sds, F32(sac_end) - sg)
            alpha_sac = soft(sds, w) * inside
            blend(img, alpha_sac, c.sig["csf"])
            if cord:
                rad = F32(r_cord) * np.sqrt(np.clip((sg - F32(s_conus)) / 28.0, 0, 1))
                dc = np.sqrt((a - F32(ac + 0.12 * cap)) ** 2 + X * X) - rad
                blend(img, soft(dc, w) * inside, c.sig["cord"])
            for s_exit, side, frac, rad in my_roots:
                # run dorsally in the sac, drift laterally over the last 35 mm before the exit
                drift = np.clip((35.0 - (sg - F32(s_exit))) / 35.0, 0, 1)
                xr = F32(side * (1.5 + 6.0 * frac)) + F32(side * 0.45 * cw) * drift * drift
                ar = F32(ac - 0.25 * cap + 0.2 * cap * frac) + F32(0.2 * cap) * drift
                dr = np.sqrt((a - ar) ** 2 + (X - xr) ** 2) - F32(rad)
                dr = np.maximum(dr, F32(s_exit) - sg)
                blend(img, soft(dr, w) * inside * 0.9, c.sig["root"])
            del ax

        self.add(lo, hi, p_canal)

    def _body(self, e: Element, marrow: str, hem) -> None:
        D, W, h = e.D, e.W, e.h
        lo, hi = e.box(-1, D + 2, -6, h + 6, 0.5 * W + 2)
        ct = 1.2 * self.k
        has_hem = hem is not None and hem[0] == e.name
        hr = hem[1] if has_hem else 0.0

        def p_vert(c, img, X, Y, Z):
            s, a, db, dt = e.local(Y, Z)
            w = c.w
            sd = np.maximum(np.maximum(-db, -dt), ell4(a - F32(0.5 * D), X, 0.5 * D, 0.5 * W))
            blend(img, soft(sd, w), c.sig["cortex"])
            vm = c.sig[marrow] * c.tex("marrow", X, Y, Z, 0.08)
            blend(img, soft(sd + ct, w), vm)
            # basivertebral vein: bright on T2 at the middle of the posterior wall
            sdv = np.maximum(ell2(s - F32(0.5 * h), a - 3.0, 2.0, 5.0), np.abs(X) - 2.5)
            blend(img, soft(sdv, w) * 0.8, c.sig["vein"])
            if has_hem:
                dh = np.sqrt(
                    (s - F32(0.55 * h)) ** 2 + (a - F32(0.45 * D)) ** 2 + (X - 6.0) ** 2
                ) - F32(hr)
                blend(img, soft(dh, w), c.sig["hemangioma"])

        self.add(lo, hi, p_vert)

    def _disc(self, e: Element, lower, upper, marrow: str, modic, vacuum: bool, cleft: bool):
        D, W = e.D, e.W
        st = e.info.get("state", "sdisc")
        conc = 1.5 * self.k if e.kind == "disc" else 0.5
        bulge = 2.5 if st == "degenerate" else 0.8
        if st == "fused":
            bulge = -1.0
        lo, hi = e.box(-bulge - 3, D + 3, -conc - 12, e.h + conc + 12, 0.5 * W + 3)
        mk = modic
        osteo = float(self.rng.uniform(1.5, 4.0)) * self.k

        def p_disc(c, img, X, Y, Z):
            s, a, db, dt = e.local(Y, Z)
            w = c.w
            au = (a - F32(0.5 * D)) / F32(0.5 * D)
            xu = X / F32(0.5 * W)
            ecc = F32(conc) * np.clip(1.0 - au * au - xu * xu, 0, 1)
            if mk is not None:  # Modic band in the adjacent bodies, anterior-central
                tis, thick, both = mk
                band_w = F32(thick)
                sec = ell2(a - F32(0.55 * D), X, 0.38 * D, 0.35 * W)
                bands = [np.maximum(slab(-dt, 0, band_w + ecc), sec)]
                if both:
                    bands.append(np.maximum(slab(-db, 0, band_w + ecc), sec))
                for bnd in bands:
                    blend(img, soft(bnd, w) * 0.85, c.sig[tis])
            if st == "sdisc":
                sd = np.maximum(np.maximum(-db, -dt), ell2(a - F32(0.5 * D), X, 0.36 * D, 0.4 * W))
                blend(img, soft(sd, 0.6 * w + 0.4) * 0.85, c.sig["rudiment"])
                return
            sdp = np.maximum(-(db + ecc), -(dt + ecc))
            sdx = ell4(a - F32(0.5 * (D - bulge)), X, 0.5 * (D + bulge), 0.5 * W)
            sd = np.maximum(sdp, sdx)
            if st == "fused":
                blend(img, soft(sd, w), c.sig[marrow] * c.tex("marrow", X, Y, Z, 0.08))
                sdl = np.maximum(
                    np.abs(db - dt) * 0.5 - 0.6, np.abs(a - F32(0.5 * D)) - F32(0.25 * D)
                )
                blend(img, soft(sdl, w) * 0.55, c.sig["sclerosis"])
                return
            # endplate (cortical) rim, then annulus, then nucleus
            blend(img, soft(np.maximum(sd - 1.1, -(a + 0.5)), w), c.sig["cortex"])
            ann = "annulus" if st != "rudimentary" else "rudiment"
            blend(img, soft(sd, w), c.sig[ann] * c.tex("disc", X, Y, Z, 0.06))
            if st == "rudimentary":
                return
            hl = np.maximum(db + dt, 0.5)
            u = (db - dt) / hl
            nuc = "nucleus" if st in ("normal", "extra") else "nucleus_degen"
            sdn = (
                np.sqrt(
                    (u / 0.72) ** 2
                    + ((a - F32(0.47 * D)) / F32(0.33 * D)) ** 2
                    + (X / F32(0.3 * W)) ** 2
                )
                - 1.0
            ) * np.minimum(0.3 * hl, 5.0)
            blend(img, soft(sdn, w) * soft(sd + 0.8, w), c.sig[nuc] * c.tex("disc", X, Y, Z, 0.05))
            if cleft and st != "degenerate":
                sdc = np.maximum(np.abs(u) * hl * 0.5 - 0.25, sdn + 1.5)
                blend(img, soft(sdc, w) * 0.35, c.sig["annulus"])
            if st == "degenerate" and vacuum:
                sdc = np.maximum(np.abs(u) * hl * 0.5 - 0.6, slab(a, 0.35 * D, 0.75 * D))
                blend(img, soft(sdc, w), c.sig["gas"])
            if st == "degenerate":  # anterior osteophytes at both endplates
                for dd in (db, dt):
                    sdo = np.maximum(
                        np.sqrt((a - F32(D - 0.5)) ** 2 + (dd + 1.0) ** 2) - F32(osteo),
                        np.abs(X) - F32(0.3 * W),
                    )
                    blend(img, soft(sdo, w), c.sig["cortex"])
                    blend(img, soft(sdo + 1.0, w), c.sig[marrow])

        self.add(lo, hi, p_disc)


# ------------------------------------------------------------------------------------------------
# Acquisition and rendering
# ------------------------------------------------------------------------------------------------
def rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def paint(plane: Plane, painters: list[Painter], ctx: Ctx, img: np.ndarray, off: float) -> None:
    for p in painters:
        win = plane.window(p.corners, off)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        X, Y, Z = plane.points(r0, r1, c0, c1, off)
        p.fn(ctx, img[r0:r1, c0:c1], X, Y, Z)


def render_series(pt: Patient, geo: dict, seq: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """Float magnitude images (output matrix), one per slice in geometry order."""
    sig = tissue_signal(seq["tr"], seq["te"], seq["field"])
    na_c, na_r = geo["acq_cols"], geo["acq_rows"]
    fov_c, fov_r = geo["cols"] * geo["ps"], geo["rows"] * geo["ps"]
    dc, dr = fov_c / na_c, fov_r / na_r
    ctx = Ctx(sig, max(dc, dr) * 1.0, pt.texparams)
    er, ec = np.asarray(geo["erow"]), np.asarray(geo["ecol"])
    th = geo["thickness"]
    nsub = seq["nsub"]
    offs = [0.0] if nsub == 1 else list(np.linspace(-0.36 * th, 0.36 * th, nsub))
    wts = np.ones(len(offs))
    if nsub == 3:
        wts = np.array([0.3, 0.4, 0.3])
    wts = wts / wts.sum()
    shift = np.asarray(geo["shift"])
    slices = []
    for ipp in geo["ipp"]:
        origin = np.asarray(ipp) - shift  # anatomy coordinates
        plane = Plane(origin, er, ec, dc, dr, na_c, na_r)
        base = np.zeros((na_r, na_c), F32)
        paint(plane, [p for p in pt.painters if p.base], ctx, base, 0.0)
        fine = [p for p in pt.painters if not p.base]
        img = np.zeros((na_r, na_c), F32)
        for off, wt in zip(offs, wts, strict=True):
            sub = base.copy()
            paint(plane, fine, ctx, sub, off)
            img += F32(wt) * sub
        # coil sensitivity: posterior array (near the table, +y) and a smooth bias
        X, Y, Z = plane.points(0, na_r, 0, na_c, 0.0)
        y_coil = float(pt.yg.max()) + seq["coil_y"]
        dist = np.clip(F32(y_coil) - Y, 0, None)
        sens = 1.0 / (1.0 + (dist / F32(seq["coil_d0"])) ** 2) ** 0.7
        sens *= 1.0 + F32(seq["ripple"]) * np.sin(
            Z * F32(2 * math.pi / seq["coil_pitch"]) + F32(seq["coil_phase"])
        )
        sens *= 1.0 + F32(seq["bias"][0]) * (X / 100) + F32(seq["bias"][1]) * (Z / 200)
        slices.append(img * sens)
    stack = np.stack(slices)
    body = stack[stack > 0.05 * stack.max()]
    ref = float(np.mean(body)) if body.size else 1.0
    sigma = ref / seq["snr"]
    out = []
    for img in stack:
        noise = rng.standard_normal((2,) + img.shape, dtype=F32) * F32(sigma)
        noisy = (img + noise[0]) + 1j * noise[1]
        if seq["ghost"] > 0:  # N/2 ghost along the phase-encoding (column) direction
            noisy += F32(seq["ghost"]) * np.roll(img, img.shape[0] // 2, axis=0)
        out.append(zero_fill(noisy, geo["rows"], geo["cols"], seq["apod"]))
    return out


def zero_fill(img: np.ndarray, rows: int, cols: int, apod: float) -> np.ndarray:
    """Magnitude of the image reconstructed at rows x cols from the k-space of img (same FOV,
    pixel 0 at the same place), with an optional Gaussian k-space window (blur)."""
    nr, nc = img.shape
    k = np.fft.fftshift(np.fft.fft2(img))
    if apod > 0:
        ky = np.linspace(-1, 1, nr)[:, None]
        kx = np.linspace(-1, 1, nc)[None, :]
        k = k * np.exp(-(kx * kx + ky * ky) / (2 * apod * apod))
    big = np.zeros((rows, cols), np.complex64)
    r0, c0 = rows // 2 - nr // 2, cols // 2 - nc // 2
    big[r0 : r0 + nr, c0 : c0 + nc] = k
    out = np.fft.ifft2(np.fft.ifftshift(big)) * (rows * cols / (nr * nc))
    return np.abs(out).astype(F32)


VENDORS = [
    {
        "man": "SIEMENS",
        "models": ["Avanto", "Skyra", "Aera", "Prisma_fit", "Vida"],
        "t2": ["t2_tse_sag_384", "t2_tse_sag", "T2 TSE SAG", "t2_tse_sag_p2"],
        "t1": ["t1_tse_sag", "t1_tse_sag_320", "T1 TSE SAG"],
        "ax": ["t2_tse_tra", "t2_tse_tra_p2", "T2 TSE AX"],
    },
    {
        "man": "GE MEDICAL SYSTEMS",
        "models": ["SIGNA HDxt", "DISCOVERY MR750", "SIGNA Artist"],
        "t2": ["Sag T2 FRFSE", "SAG T2 FSE", "Sag T2", "SAG T2"],
        "t1": ["Sag T1 FSE", "SAG T1", "SAG T1 FSE"],
        "ax": ["Ax T2 FRFSE", "AX T2 FSE", "Ax T2"],
    },
    {
        "man": "Philips Medical Systems",
        "models": ["Ingenia", "Achieva", "Intera"],
        "t2": ["T2W_TSE_SAG", "sT2W_TSE SAG", "T2W_TSE sag"],
        "t1": ["T1W_TSE_SAG", "sT1W_TSE SAG"],
        "ax": ["T2W_TSE_TRA", "T2W_TSE ax"],
    },
    {
        "man": "TOSHIBA",
        "models": ["Vantage Titan", "Vantage Orian"],
        "t2": ["SAG T2", "T2 SAG FSE", "Sag T2W"],
        "t1": ["SAG T1", "T1 SAG FSE"],
        "ax": ["AX T2", "T2 AX FSE"],
    },
]
MATRICES = [256, 288, 320, 352, 384, 416, 448, 480, 512, 560, 576, 640]


def sag_geometry(pt: Patient, rng: np.random.Generator, tiny: bool) -> dict:
    """Drawn sagittal geometry, with every truth disc inside the field of view."""
    pts = np.array([[0.0, d["yz"][0], d["yz"][1]] for d in pt.discs_truth])
    span = float(np.ptp(pts[:, 2])) + 50
    fov = float(rng.uniform(max(240.0, span + 40), 360.0)) if span + 40 < 360 else 360.0
    if tiny:
        n = 64
        ps = fov / n
    else:
        cands = [m for m in MATRICES if 0.45 <= fov / m <= 1.2]
        n = int(rng.choice(cands))
        ps = fov / n
    rows, cols = n, n
    if not tiny and rng.random() < 0.25:  # rectangular field: fewer columns (AP)
        cands = [m for m in MATRICES if m < n and m * ps >= 240]
        if cands:
            cols = int(rng.choice(cands))
    nsl = int(rng.integers(9, 24)) if not tiny else 3
    th = float(rng.uniform(3.0, 5.0))
    gap = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.7 else 0.0
    sp = th + gap
    ant_left = bool(rng.random() < 0.5)
    erow0 = np.array([0.0, 1.0, 0.0]) if ant_left else np.array([0.0, -1.0, 0.0])
    ecol0 = np.array([0.0, 0.0, -1.0])
    # obliquity <= 8 degrees in all
    for _ in range(20):
        ang = rng.normal(0, 3.0, 3)
        if np.linalg.norm(ang) <= 8.0:
            break
    R = rot("z", ang[0]) @ rot("y", ang[1]) @ rot("x", ang[2])
    if rng.random() < 0.3:
        R = np.eye(3)
        ang = np.zeros(3)
    erow, ecol = R @ erow0, R @ ecol0
    nv = np.cross(erow, ecol)
    center_span = 0.5 * (pts.min(0) + pts.max(0))
    x_mid = float(rng.uniform(-6, 6))
    fov_c, fov_r = cols * ps, rows * ps
    margin = 14.0
    off = np.array([0.0, rng.uniform(-30, 30), rng.uniform(-30, 30)])
    off *= min(1.0, 30.0 / max(float(np.linalg.norm(off)), 1e-6))  # at most 30 mm off centre
    for _ in range(40):
        c3 = center_span + off
        c3[0] = x_mid
        corner = c3 - 0.5 * (cols - 1) * ps * erow - 0.5 * (rows - 1) * ps * ecol
        rel = pts - corner
        cc, rr = rel @ erow, rel @ ecol
        ok = (
            cc.min() > margin
            and cc.max() < fov_c - margin
            and rr.min() > margin
            and rr.max() < fov_r - margin
        )
        if ok:
            break
        off *= 0.7
    else:
        raise RuntimeError("could not place the lumbar spine in the field of view")
    # stack along the normal centred on the (anatomical) x_mid
    ks = np.arange(nsl) - 0.5 * (nsl - 1)
    shift = np.array([rng.uniform(-20, 20), rng.uniform(-40, 40), rng.uniform(-60, 60)])
    ipps = []
    for kk in ks:
        o = corner + kk * sp * nv
        ipps.append(o + shift)
    reverse = bool(rng.random() < 0.35)
    order = list(range(nsl))[::-1] if reverse else list(range(nsl))
    acq_ps = max(ps, float(rng.uniform(0.65, 1.25)))
    acq_c = int(min(max(round(fov_c / acq_ps / 2) * 2, 64), cols))
    acq_r = int(min(max(round(fov_r / acq_ps * rng.uniform(0.75, 1.0) / 2) * 2, 64), rows))
    if tiny:
        acq_c, acq_r = cols, rows
    return {
        "rows": rows,
        "cols": cols,
        "ps": ps,
        "thickness": th,
        "spacing": sp,
        "nslices": nsl,
        "erow": erow.tolist(),
        "ecol": ecol.tolist(),
        "ipp": ipps,
        "order": order,
        "shift": shift.tolist(),
        "acq_rows": acq_r,
        "acq_cols": acq_c,
        "anterior_left": ant_left,
        "oblique_deg": [round(float(a), 2) for a in ang],
        "reversed": reverse,
        "x_mid_offset": round(x_mid, 2),
        "inplane_offset_mm": [round(float(off[1]), 1), round(float(off[2]), 1)],
    }


def axial_geometry(pt: Patient, sag: dict, rng: np.random.Generator, tiny: bool) -> dict:
    e = pt.elem("L4-L5")
    y, z = e.to_yz(0.5 * e.h, 0.5 * e.D)
    phi = 0.5 * (e.phi_b + e.phi_t)
    tilt = float(np.clip(math.degrees(phi), -20, 20)) * (1.0 if rng.random() < 0.7 else 0.0)
    R = rot("x", -tilt)
    erow, ecol = R @ np.array([1.0, 0, 0]), R @ np.array([0, 1.0, 0])
    nv = np.cross(erow, ecol)
    fov = float(rng.uniform(160, 230))
    n = 64 if tiny else int(rng.choice([256, 288, 320, 384, 448, 512]))
    ps = fov / n
    nsl = 2 if tiny else int(rng.integers(12, 25))
    th = float(rng.uniform(3.0, 4.5))
    sp = th + float(rng.uniform(0.3, 1.0))
    c3 = np.array([rng.uniform(-8, 8), y + 30 + rng.uniform(-15, 15), z])
    corner = c3 - 0.5 * (n - 1) * ps * erow - 0.5 * (n - 1) * ps * ecol
    shift = np.asarray(sag["shift"])
    ks = np.arange(nsl) - 0.5 * (nsl - 1)
    ipps = [corner + kk * sp * nv + shift for kk in ks]
    acq = n if tiny else int(min(n, max(192, round(fov / rng.uniform(0.6, 0.9) / 2) * 2)))
    return {
        "rows": n,
        "cols": n,
        "ps": ps,
        "thickness": th,
        "spacing": sp,
        "nslices": nsl,
        "erow": erow.tolist(),
        "ecol": ecol.tolist(),
        "ipp": ipps,
        "order": list(range(nsl))[:: (-1 if rng.random() < 0.5 else 1)],
        "shift": sag["shift"],
        "acq_rows": acq,
        "acq_cols": acq,
        "tilt_deg": round(tilt, 1),
    }


# ------------------------------------------------------------------------------------------------
# DICOM
# ------------------------------------------------------------------------------------------------
def uid(*parts: Any) -> str:
    """A UID from the parts, joined with "/" first: pydicom hashes the concatenation of its
    entropy sources, and (seed 3, study 3, series 4, image 21) must not give the UID of
    (3, 34, 2, 1)."""
    return str(generate_uid(entropy_srcs=["third-phantom/" + "/".join(str(p) for p in parts)]))


def write_series(folder: Path, images: list[np.ndarray], geo: dict, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    er, ec = np.asarray(geo["erow"]), np.asarray(geo["ecol"])
    nv = np.cross(er, ec)
    scale = meta["scale"]
    maxv = (1 << meta["bits"]) - 1
    for inst, idx in enumerate(geo["order"], start=1):
        arr = np.clip(np.rint(images[idx] * scale), 0, maxv).astype(np.uint16)
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = UID(MR_STORAGE)
        sop = uid(meta["seed"], meta["index"], meta["series_number"], inst)
        fm.MediaStorageSOPInstanceUID = UID(sop)
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        fm.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
        fm.ImplementationVersionName = "THIRD_PHANTOM"
        ds = FileDataset(str(folder / f"IM{inst:04d}.dcm"), {}, file_meta=fm, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SOPClassUID = MR_STORAGE
        ds.SOPInstanceUID = sop
        ds.StudyDate = meta["date"]
        ds.SeriesDate = meta["date"]
        ds.StudyTime = "101500"
        ds.SeriesTime = f"10{15 + meta['series_number']:02d}00"
        ds.AccessionNumber = f"TP{meta['index']:06d}"
        ds.Modality = "MR"
        ds.Manufacturer = meta["vendor"]["man"]
        ds.ManufacturerModelName = meta["model"]
        ds.InstitutionName = "Third Phantom Site"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "MRI LUMBAR SPINE"
        ds.SeriesDescription = meta["description"]
        ds.ProtocolName = meta["description"]
        ds.PatientName = f"THIRD^PHANTOM{meta['index']:03d}"
        ds.PatientID = f"THIRD{meta['seed']}-{meta['index']:03d}"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = meta["sex"]
        ds.PatientAge = f"{meta['age']:03d}Y"
        ds.BodyPartExamined = "LSPINE"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = ["SK", "SP"]
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = f"{geo['thickness']:.3f}"
        ds.SpacingBetweenSlices = f"{geo['spacing']:.3f}"
        ds.RepetitionTime = f"{meta['tr']:.0f}"
        ds.EchoTime = f"{meta['te']:.1f}"
        ds.EchoTrainLength = meta["etl"]
        ds.NumberOfAverages = 1
        ds.ImagingFrequency = f"{42.577 * meta['field']:.4f}"
        ds.ImagedNucleus = "1H"
        ds.MagneticFieldStrength = meta["field"]
        ds.AcquisitionMatrix = [0, geo["acq_cols"], geo["acq_rows"], 0]
        ds.InPlanePhaseEncodingDirection = "COL"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = meta["study_uid"]
        ds.SeriesInstanceUID = meta["series_uid"]
        ds.StudyID = "1"
        ds.SeriesNumber = meta["series_number"]
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = inst
        ipp = np.asarray(geo["ipp"][idx])
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in list(er) + list(ec)]
        ds.FrameOfReferenceUID = meta["for_uid"]
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{float(ipp @ nv):.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = arr.shape
        ds.PixelSpacing = [f"{geo['ps']:.6f}", f"{geo['ps']:.6f}"]
        ds.BitsAllocated = 16
        ds.BitsStored = meta["bits"]
        ds.HighBit = meta["bits"] - 1
        ds.PixelRepresentation = 0
        ds.WindowCenter = f"{meta['wc']:.0f}"
        ds.WindowWidth = f"{meta['ww']:.0f}"
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"IM{inst:04d}.dcm", enforce_file_format=True)


# ------------------------------------------------------------------------------------------------
# One study
# ------------------------------------------------------------------------------------------------
def receive_chain(rng: np.random.Generator) -> tuple[dict[str, Any], float]:
    """Coil array (posterior elements, ripple, smooth bias, N/2 ghost) and the k-space
    apodisation of one examination."""
    coil: dict[str, Any] = {
        "coil_y": float(rng.uniform(5, 40)),
        "coil_d0": float(rng.uniform(70, 160)),
        "ripple": float(rng.uniform(0, 0.12)),
        "coil_pitch": float(rng.uniform(80, 160)),
        "coil_phase": float(rng.uniform(0, 2 * math.pi)),
        "bias": [float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.12, 0.12))],
    }
    apod = float(rng.uniform(0.35, 0.9)) if rng.random() < 0.35 else 0.0
    coil["ghost"] = float(rng.uniform(0.01, 0.05)) if rng.random() < 0.3 else 0.0
    return coil, apod


def pulse_sequence(
    rng: np.random.Generator,
    *,
    tr: tuple[float, float],
    te: tuple[float, float],
    field: float,
    snr: float,
    coil: dict[str, Any],
    apod: float,
    nsub: int = 1,
    snr_scale: tuple[float, float] | None = None,
    etl: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One spin-echo series' parameters: TR and TE (ms) drawn from their ranges, the
    examination's SNR (times a drawn scale), and the echo-train length when the series has one
    (drawn in that order, so a study's random stream is fixed by its seed)."""
    seq: dict[str, Any] = {
        "tr": float(rng.uniform(*tr)),
        "te": float(rng.uniform(*te)),
        "field": field,
        "snr": snr if snr_scale is None else snr * rng.uniform(*snr_scale),
        "nsub": nsub,
        "apod": apod,
    }
    if etl is not None:
        seq["etl"] = int(rng.integers(*etl))
    return {**seq, **coil}


def _series_summary(seq: dict[str, Any]) -> dict[str, Any]:
    """What ``truth.json`` records of one series."""
    keys = ("description", "series_number")
    return {"tr": round(seq["tr"]), "te": round(seq["te"], 1), **{k: seq[k] for k in keys}}


@dataclass
class MidlineT2:
    """The sagittal T2 slices nearest the midline of one patient (no DICOM files): images in
    geometry order, their plane geometry (PS3.3 C.7.6.2.1.1), the lumbar disc truth and the
    centres of every mobile disc (normal or degenerate, thoracic ones included)."""

    variant: str
    seed: int
    images: np.ndarray  # [K, rows, cols] float32, stored-value scale
    positions: list[np.ndarray]  # Image Position (Patient) of each slice
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: float
    slice_step: float
    discs: list[dict]  # level, patient_xyz, disc (state)
    mobile_discs: list[tuple[float, float, float]]


def midline_t2(
    seed: int, variant: str = "normal", slices: int = 5, max_spacing: float = 1.8
) -> MidlineT2:
    """``slices`` sagittal T2 slices around the middle of a drawn sagittal stack (every site
    variation of :func:`sag_geometry`), rendered at no finer than ``max_spacing`` mm pixels:
    well under a second per patient instead of a whole study's few seconds. Seeds are drawn as
    ``[seed, 3]``, a stream no ``generate_study`` (``[seed, index, 3]``) shares."""
    rng = np.random.default_rng([seed, 3])
    pt = Patient(rng, variant)
    geo = _midline_geometry(sag_geometry(pt, rng, tiny=False), slices, max_spacing)
    field_t = float(rng.choice([1.5, 3.0], p=[0.55, 0.45]))
    snr = float(np.exp(rng.uniform(math.log(8), math.log(60))))
    coil, apod = receive_chain(rng)
    seq = pulse_sequence(
        rng, tr=(2500, 5000), te=(80, 120), field=field_t, snr=snr, coil=coil, apod=apod, nsub=3
    )
    images = np.stack(render_series(pt, geo, seq, rng))
    scale = float(rng.uniform(600, 3000)) / (float(np.percentile(images, 99.7)) or 1.0)
    shift = np.asarray(geo["shift"], dtype=float)

    def patient(yz: tuple[float, float]) -> tuple[float, float, float]:
        return (float(shift[0]), float(yz[0] + shift[1]), float(yz[1] + shift[2]))

    return MidlineT2(
        variant=variant,
        seed=seed,
        images=np.rint(images * scale).astype(np.float32),
        positions=[np.asarray(p, dtype=float) for p in geo["ipp"]],
        row_dir=np.asarray(geo["erow"], dtype=float),
        col_dir=np.asarray(geo["ecol"], dtype=float),
        spacing=float(geo["ps"]),
        slice_step=float(geo["spacing"]),
        discs=[
            {"level": d["level"], "patient_xyz": list(patient(d["yz"])), "disc": d["disc"]}
            for d in pt.discs_truth
        ],
        mobile_discs=[
            patient(e.mid_yz(0.5 * e.D))
            for e in pt.elements
            if e.kind == "disc" and e.info.get("state") in ("normal", "degenerate")
        ],
    )


def _midline_geometry(geo: dict, slices: int, max_spacing: float) -> dict:
    """``geo`` reduced to its middle ``slices`` slices and, where its pixels are finer than
    ``max_spacing``, the same field at ``max_spacing`` (acquired matrix capped to match)."""
    n = len(geo["ipp"])
    lo = max(0, (n - slices) // 2)
    out = dict(geo, ipp=geo["ipp"][lo : lo + slices])
    out["nslices"] = len(out["ipp"])
    if geo["ps"] < max_spacing:
        f = geo["ps"] / max_spacing
        out.update(ps=max_spacing, rows=round(geo["rows"] * f), cols=round(geo["cols"] * f))
    out["acq_rows"] = min(geo["acq_rows"], out["rows"])
    out["acq_cols"] = min(geo["acq_cols"], out["cols"])
    return out


def generate_study(
    out: Path, index: int, seed: int, preview: bool = False, tiny: bool = False
) -> dict:
    rng = np.random.default_rng([seed, index, 3])
    variant = VARIANTS[index % 4]
    pt = Patient(rng, variant)
    sag = sag_geometry(pt, rng, tiny)
    ax = axial_geometry(pt, sag, rng, tiny)
    vendor = VENDORS[int(rng.integers(len(VENDORS)))]
    model = str(rng.choice(vendor["models"]))
    field_t = float(rng.choice([1.5, 3.0], p=[0.55, 0.45]))
    snr = float(np.exp(rng.uniform(math.log(8), math.log(60))))
    coil, apod = receive_chain(rng)
    common: dict[str, Any] = {"field": field_t, "snr": snr, "coil": coil}
    seq_t2 = pulse_sequence(
        rng, tr=(2500, 5000), te=(80, 120), nsub=3, apod=apod, etl=(12, 28), **common
    )
    seq_t1 = pulse_sequence(
        rng, tr=(400, 750), te=(8, 15), snr_scale=(0.8, 1.3), apod=apod, etl=(2, 5), **common
    )
    seq_ax = pulse_sequence(
        rng, tr=(3000, 5500), te=(85, 115), snr_scale=(0.7, 1.2), apod=0.0, etl=(12, 24), **common
    )
    study_uid = uid(seed, index, "study")
    for_uid = uid(seed, index, "for")
    folder = out / f"third-{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "seed": seed,
        "index": index,
        "vendor": vendor,
        "model": model,
        "field": field_t,
        "study_uid": study_uid,
        "for_uid": for_uid,
        "date": f"2025{(index % 12) + 1:02d}15",
        "sex": str(rng.choice(["F", "M"])),
        "age": int(rng.integers(25, 80)),
        "bits": int(rng.choice([12, 16], p=[0.6, 0.4])),
    }
    series = [("t2", sag, seq_t2), ("t1", sag, seq_t1), ("ax", ax, seq_ax)]
    numbers = {"t2": 3, "t1": 2, "ax": 4}
    if rng.random() < 0.5:
        numbers = {"t2": 2, "t1": 3, "ax": 4}
    uids = {}
    imgs_keep = {}
    t0 = time.perf_counter()
    for name, geo, seq in series:
        imgs = render_series(pt, geo, seq, rng)
        ref = float(np.percentile(np.stack(imgs), 99.7)) or 1.0
        target = (
            float(rng.uniform(600, 3000)) if base["bits"] == 12 else float(rng.uniform(800, 12000))
        )
        target = min(target, 0.8 * ((1 << base["bits"]) - 1))
        scale = target / ref
        num = numbers[name] + (0 if rng.random() < 0.7 else 10 * numbers[name])
        suid = uid(seed, index, "series", name)
        uids[name] = suid
        meta = {
            **base,
            "series_number": num,
            "series_uid": suid,
            "tr": seq["tr"],
            "te": seq["te"],
            "etl": seq["etl"],
            "scale": scale,
            "description": str(rng.choice(vendor[name])),
            "wc": target * 0.45,
            "ww": target * 0.9,
        }
        write_series(folder / f"{num:03d}", imgs, geo, meta)
        imgs_keep[name] = (imgs, scale)
        seq["description"] = meta["description"]
        seq["series_number"] = num
    render_s = time.perf_counter() - t0
    er, ec = np.asarray(sag["erow"]), np.asarray(sag["ecol"])
    nv = np.cross(er, ec)
    shift = np.asarray(sag["shift"])
    discs = []
    for d in pt.discs_truth:
        p = np.array([0.0, d["yz"][0], d["yz"][1]]) + shift
        discs.append(
            {"level": d["level"], "patient_xyz": [round(float(v), 3) for v in p], "disc": d["disc"]}
        )
    acq = {
        "variant_params": pt.params,
        "vendor": vendor["man"],
        "model": model,
        "field_T": field_t,
        "snr": round(snr, 1),
        "bits_stored": base["bits"],
        "k_space_apodisation": round(apod, 3),
        "ghost": round(coil["ghost"], 3),
        "coil": {kk: v for kk, v in coil.items() if kk != "ghost"},
        "sag": {kk: v for kk, v in sag.items() if kk not in ("ipp", "order", "shift")},
        "axial": {kk: v for kk, v in ax.items() if kk not in ("ipp", "order", "shift")},
        **{
            name: _series_summary(seq)
            for name, seq in (("t2", seq_t2), ("t1", seq_t1), ("ax", seq_ax))
        },
        "patient_offset_mm": [round(float(v), 2) for v in shift],
        "render_s": round(render_s, 2),
    }
    truth = {
        "set": "third",
        "variation": "third",
        "variant": variant,
        "lstv": variant != "normal",
        "seed": seed,
        "index": index,
        "study_instance_uid": study_uid,
        "t2_series_instance_uid": uids["t2"],
        "slice_normal": [round(float(v), 6) for v in nv],
        "discs": discs,
        "discs_in_fov": True,
        "acquisition": acq,
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))
    if preview:
        write_preview(folder / "preview.png", imgs_keep, sag, ax, discs)
    return truth


def write_preview(path: Path, imgs: dict, sag: dict, ax: dict, discs: list[dict]) -> None:
    from PIL import Image, ImageDraw

    def to8(a):
        hi = float(np.percentile(a, 99.5)) or 1.0
        return Image.fromarray((np.clip(a / hi, 0, 1) * 255).astype(np.uint8))

    t2 = imgs["t2"][0]
    mid = len(t2) // 2
    pim = to8(t2[mid]).convert("RGB")
    d = ImageDraw.Draw(pim)
    er, ec = np.asarray(sag["erow"]), np.asarray(sag["ecol"])
    ipp = np.asarray(sag["ipp"][mid])
    for disc in discs:
        rel = np.asarray(disc["patient_xyz"]) - ipp
        c, r = rel @ er / sag["ps"], rel @ ec / sag["ps"]
        d.line([(c - 8, r), (c - 3, r)], fill=(255, 0, 0), width=1)
        d.line([(c + 3, r), (c + 8, r)], fill=(255, 0, 0), width=1)
        d.line([(c, r - 8), (c, r - 3)], fill=(255, 0, 0), width=1)
        d.line([(c, r + 3), (c, r + 8)], fill=(255, 0, 0), width=1)
        d.text((c + 10, r - 6), disc["level"], fill=(255, 255, 0))
    t1 = to8(imgs["t1"][0][mid]).convert("RGB")
    axs = imgs["ax"][0]
    am = to8(axs[len(axs) // 2]).convert("RGB")
    h = pim.height
    t1 = t1.resize((int(t1.width * h / t1.height), h))
    am = am.resize((h, h))
    canvas = Image.new("RGB", (pim.width + t1.width + am.width, h))
    canvas.paste(pim, (0, 0))
    canvas.paste(t1, (pim.width, 0))
    canvas.paste(am, (pim.width + t1.width, 0))
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first study index")
    ap.add_argument("--preview", action="store_true", help="write preview.png with truth marks")
    ap.add_argument("--tiny", action="store_true", help="64x64, few slices (tests only)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.start, args.start + args.count):
        t0 = time.perf_counter()
        truth = generate_study(args.out, i, args.seed, preview=args.preview, tiny=args.tiny)
        print(f"third-{i:03d} {truth['variant']:<14} {time.perf_counter() - t0:5.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
