#!/usr/bin/env python3
# ruff: noqa: UP031, E731, E741, B007, F841, B905
# Written blind by a separate engineer (it read no other generator); style left as written.
"""fifth_phantom.py -- independent synthetic lumbar-spine MR study generator.

Usage:  python fifth_phantom.py OUT_DIR --count 40 --seed 7

Each study: sagittal T2 (target), sagittal T1 and axial T2 decoys, truth.json.
Anatomy: rigid vertebral "elements" (bodies / discs bounded by two end-plate
planes) chained along a lordotic / kyphotic sagittal curve; a smooth canal
curve gives curvilinear coordinates for thecal sac, cord, cauda equina.
Physics: spin-echo S = PD (1-exp(-TR/T1)) exp(-TE/T2), marrow as water/fat
mixture, partial volume across slice thickness, blur, coil bias, Rician noise.
"""

import argparse
import json
import math
import os
import time

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
F = np.float32

LABELS = [
    "AIR",
    "FAT",
    "MUSCLE",
    "SOFT",
    "BFLUID",
    "GAS",
    "CSF",
    "CORD",
    "ROOT",
    "CORTEX",
    "MARROW",
    "PEBONE",
    "NUC",
    "NUCO",
    "DNUC",
    "ANN",
    "REMN",
    "LIG",
    "AORTA",
    "IVC",
    "URINE",
    "CART",
    "NERVE",
    "LIVER",
]
(
    AIR,
    FAT,
    MUSCLE,
    SOFT,
    BFLUID,
    GAS,
    CSF,
    CORD,
    ROOT,
    CORTEX,
    MARROW,
    PEBONE,
    NUC,
    NUCO,
    DNUC,
    ANN,
    REMN,
    LIG,
    AORTA,
    IVC,
    URINE,
    CART,
    NERVE,
    LIVER,
) = range(len(LABELS))
NL = len(LABELS)

# PD, T1(1.5T), T2(1.5T), T1(3T), T2(3T)  [ms]; fat T2 is the FSE apparent value
TISSUE = {
    AIR: (0.0, 1000, 10, 1000, 10),
    FAT: (0.95, 260, 165, 380, 150),
    MUSCLE: (0.72, 1000, 40, 1420, 34),
    SOFT: (0.78, 950, 55, 1250, 48),
    BFLUID: (0.95, 2800, 600, 3100, 500),
    GAS: (0.02, 1000, 5, 1000, 5),
    CSF: (1.0, 4000, 2000, 4300, 1800),
    CORD: (0.74, 800, 78, 1050, 70),
    ROOT: (0.70, 900, 62, 1150, 55),
    CORTEX: (0.06, 1000, 2, 1200, 2),
    MARROW: (0.85, 950, 48, 1200, 42),  # water compartment of marrow
    PEBONE: (0.85, 950, 48, 1200, 42),
    NUC: (0.90, 1150, 150, 1350, 130),
    NUCO: (0.80, 1050, 85, 1250, 75),
    DNUC: (0.70, 950, 52, 1150, 46),
    ANN: (0.62, 900, 38, 1080, 33),
    REMN: (0.45, 800, 30, 950, 26),
    LIG: (0.40, 800, 22, 950, 20),
    AORTA: (0.04, 1500, 20, 1900, 20),
    IVC: (0.55, 1450, 140, 1900, 120),
    URINE: (1.0, 3200, 1100, 3500, 900),
    CART: (0.70, 1000, 42, 1200, 37),
    NERVE: (0.72, 900, 70, 1150, 62),
    LIVER: (0.76, 580, 46, 810, 40),
}


class E(dict):
    __getattr__ = dict.__getitem__

    def __setattr__(self, k, v):
        self[k] = v


def a_vec(phi):  # superior axis of an element, (y, z)
    return np.array([-math.sin(phi), math.cos(phi)])


def n_vec(phi):  # anterior direction, (y, z)
    return np.array([-math.cos(phi), -math.sin(phi)])


def rotm(axis, ang):
    c, s = math.cos(ang), math.sin(ang)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# ----------------------------------------------------------------------------- noise
class VNoise:
    """Smooth 3-D value noise (cubic-smoothstep trilinear on a random lattice), ~unit variance."""

    def __init__(self, rng, lo, hi, step):
        self.lo = np.asarray(lo, dtype=F)
        self.step = F(step)
        self.n = np.ceil((np.asarray(hi) - np.asarray(lo)) / step).astype(int) + 3
        self.g = rng.standard_normal(int(np.prod(self.n))).astype(F) * F(1.9)

    def __call__(self, X, Y, Z):
        nx, ny, nz = (int(v) for v in self.n)
        out_i, out_f = [], []
        for k, A in enumerate((X, Y, Z)):
            t = (A - self.lo[k]) / self.step
            t = np.clip(t, 0, self.n[k] - 2.001).astype(F)
            i = t.astype(np.int32)
            fr = t - i
            out_i.append(i)
            out_f.append(fr * fr * (3 - 2 * fr))
        i, j, k = out_i
        fx, fy, fz = out_f
        b = (i * ny + j) * nz + k
        g = self.g
        syz = ny * nz
        c00 = g[b] + (g[b + 1] - g[b]) * fz
        c01 = g[b + nz] + (g[b + nz + 1] - g[b + nz]) * fz
        c10 = g[b + syz] + (g[b + syz + 1] - g[b + syz]) * fz
        c11 = g[b + syz + nz] + (g[b + syz + nz + 1] - g[b + syz + nz]) * fz
        c0 = c00 + (c01 - c00) * fy
        c1 = c10 + (c11 - c10) * fy
        return c0 + (c1 - c0) * fx


# ----------------------------------------------------------------------------- canal curve
class Canal:
    """Smooth canal centre curve in the sagittal (y, z) plane; curvilinear coords (s, u)."""

    def __init__(self, K):
        K = np.asarray(K, dtype=float)
        d0 = K[0] - K[1]
        d0 /= np.linalg.norm(d0)
        d1 = K[-1] - K[-2]
        d1 /= np.linalg.norm(d1)
        K = np.vstack([K[0] + 70 * d0, K[0] + 35 * d0, K, K[-1] + 25 * d1, K[-1] + 50 * d1])
        Pp = np.vstack([2 * K[0] - K[1], K, 2 * K[-1] - K[-2]])
        pts = []
        tt = np.linspace(0, 1, 16, endpoint=False)[:, None]
        for i in range(1, len(Pp) - 2):
            p0, p1, p2, p3 = Pp[i - 1], Pp[i], Pp[i + 1], Pp[i + 2]
            pts.append(
                0.5
                * (
                    (2 * p1)
                    + (-p0 + p2) * tt
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * tt**2
                    + (-p0 + 3 * p1 - 3 * p2 + p3) * tt**3
                )
            )
        pts.append(Pp[-2][None])
        pts = np.vstack(pts)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        sl = np.concatenate([[0], np.cumsum(seg)])
        self.s = np.arange(0, sl[-1], 0.5)
        cy = np.interp(self.s, sl, pts[:, 0])
        cz = np.interp(self.s, sl, pts[:, 1])
        w = 13
        ker = np.ones(w) / w
        cy = np.convolve(np.pad(cy, w // 2, mode="edge"), ker, "valid")
        cz = np.convolve(np.pad(cz, w // 2, mode="edge"), ker, "valid")
        ty, tz = np.gradient(cy), np.gradient(cz)
        nn = np.hypot(ty, tz)
        self.cy, self.cz, self.ty, self.tz = cy, cz, ty / nn, tz / nn
        self.ny, self.nz = self.tz, -self.ty  # anterior normal
        self.smax = self.s[-1]
        # 2 mm lookup grid
        self.g0y, self.g0z = cy.min() - 95, cz.min() - 6
        self.NY = int((cy.max() + 95 - self.g0y) / 2) + 2
        self.NZ = int((cz.max() + 6 - self.g0z) / 2) + 2
        gy = self.g0y + 2.0 * np.arange(self.NY)
        gz = self.g0z + 2.0 * np.arange(self.NZ)
        GY, GZ = np.meshgrid(gy, gz, indexing="ij")
        py, pz = GY.ravel(), GZ.ravel()
        dec = slice(0, None, 4)
        dy_, dz_, ds_ = cy[dec], cz[dec], self.s[dec]
        s0 = np.empty(py.size)
        for st in range(0, py.size, 8000):
            q = (py[st : st + 8000, None] - dy_[None]) ** 2 + (
                pz[st : st + 8000, None] - dz_[None]
            ) ** 2
            s0[st : st + 8000] = ds_[np.argmin(q, axis=1)]
        s = s0
        for _ in range(3):
            s = np.clip(
                s
                + (py - np.interp(s, self.s, cy)) * np.interp(s, self.s, self.ty)
                + (pz - np.interp(s, self.s, cz)) * np.interp(s, self.s, self.tz),
                0,
                self.smax,
            )
        u = (py - np.interp(s, self.s, cy)) * np.interp(s, self.s, self.ny) + (
            pz - np.interp(s, self.s, cz)
        ) * np.interp(s, self.s, self.nz)
        self.gs = s.astype(F)
        self.gu = u.astype(F)

    def nearest_s(self, y, z):
        return float(self.s[np.argmin((self.cy - y) ** 2 + (self.cz - z) ** 2)])

    def lookup(self, Y, Z):
        gy = (Y - F(self.g0y)) * F(0.5)
        gz = (Z - F(self.g0z)) * F(0.5)
        valid = (gy >= 0) & (gy < self.NY - 1.001) & (gz >= 0) & (gz < self.NZ - 1.001)
        gy = np.clip(gy, 0, self.NY - 1.001)
        gz = np.clip(gz, 0, self.NZ - 1.001)
        i = gy.astype(np.int32)
        j = gz.astype(np.int32)
        fy = gy - i
        fz = gz - j
        b = i * self.NZ + j
        out = []
        for G in (self.gs, self.gu):
            a0 = G[b] + (G[b + 1] - G[b]) * fz
            a1 = G[b + self.NZ] + (G[b + self.NZ + 1] - G[b + self.NZ]) * fz
            out.append(a0 + (a1 - a0) * fy)
        s, u = out
        s[~valid] = -1e4
        u[~valid] = 1e4
        return s, u


# ----------------------------------------------------------------------------- anatomy
def build_anatomy(rng, variant):
    U = lambda a, b: float(rng.uniform(a, b))
    f = U(0.86, 1.12)
    k = U(0.6, 1.35)  # lordosis factor
    seq = []

    def body(name, typ, h, W, D, wedge, cw, hd, **kw):
        e = E(
            kind="body",
            name=name,
            typ=typ,
            h=h * f * U(0.95, 1.05),
            W=W * f * U(0.95, 1.05),
            D=D * f * U(0.95, 1.05),
            wedge=math.radians(wedge),
            cw=cw * U(0.92, 1.08) * (0.5 + 0.5 * f),
            hd=hd * U(0.9, 1.1) * (0.5 + 0.5 * f),
            conc=U(0.9, 1.9) if typ in "TL" else 0.5,
            tc=U(0.9, 1.4),
            tce=U(0.8, 1.2),
            waist=U(0.02, 0.08),
            modic_top=0.0,
            modic_bot=0.0,
            hem=None,
            sp_len=0.0,
            tp_len=0.0,
            tp_rc=4.5,
            Wlat=0.0,
            ilium=False,
            foramen=False,
        )
        e.update(kw)
        seq.append(e)
        return e

    def disc(name, h, wedge, absolute=False, **kw):
        e = E(
            kind="disc",
            name=name,
            h=(h if absolute else h * f * U(0.85, 1.15)),
            wedge=math.radians(wedge),
            fused=False,
            remnant=False,
            degen=False,
            rud=False,
            hyd=U(0.8, 1.12),
            cleft=rng.random() < 0.5,
            nw=U(0.55, 0.68),
            nd=U(0.5, 0.62),
            nh=U(0.7, 0.9),
        )
        e.update(kw)
        seq.append(e)
        return e

    # lower thoracic
    tdat = [
        ("T9", 20, 15, 13.5),
        ("T10", 21, 16, 14),
        ("T11", 22, 17, 14.5),
        ("T12", 23.5, 18.5, 15),
    ]
    twed = [-3, -3, -2.5, -1.5]
    tdisc = [5, 5.5, 6, 7]
    tdw = [-2, -1.5, -1, 0.5 * k]
    for i, (nm, h, W, D) in enumerate(tdat):
        body(
            nm,
            "T",
            h,
            W,
            D,
            twed[i],
            8.5 if i < 3 else 9.5,
            7.5,
            sp_len=U(30, 38),
            sp_tilt=math.radians(U(45, 60)),
            tp_len=U(16, 22),
            rib=U(45, 60) if nm == "T12" else U(80, 110),
        )
        nxt = tdat[i + 1][0] if i < 3 else "L1"
        disc(nm + "-" + nxt, tdisc[i], tdw[i])
    # lumbar
    ldat = [
        ("L1", 25, 20, 15, 10.5, 8.0, 28),
        ("L2", 26, 21, 15.5, 11, 8.0, 33),
        ("L3", 27, 22, 16, 11, 8.0, 40),
        ("L4", 27, 23, 16.5, 11.5, 8.2, 36),
        ("L5", 26.5, 24.5, 16.8, 12.5, 8.5, 30),
    ]
    lwed = [-1.5, -0.5, 0.5, 1.5, 4.0 * k]
    ldisc = [8.5, 9.5, 10.5, 11]
    ldw = [3 * k, 5 * k, 7 * k, 9 * k]
    for i, (nm, h, W, D, cw, hd, tpl) in enumerate(ldat):
        kw = dict(
            sp_len=U(27, 34) if nm != "L5" else U(20, 26),
            sp_tilt=math.radians(U(8, 22)),
            tp_len=tpl * U(0.85, 1.15),
            tp_rc=4.5 if nm != "L5" else 7.0,
        )
        wd = lwed[i]
        if nm == "L5" and variant == "sacralization":
            wd = U(7, 11)
            h = 24.0
            kw.update(sp_len=U(12, 18), tp_rc=U(10, 13), tp_big=True)
        if nm == "L5" and variant == "lumbarization":
            wd = U(1.5, 3.5)
        body(nm, "L", h, W, D, wd, cw, hd, **kw)
        if i < 4:
            disc(nm + "-" + ldat[i + 1][0], ldisc[i], ldw[i])
    # lumbosacral junction
    if variant == "normal":
        disc("L5-S1", 10.5, 12 * k)
        sac = [
            ("S1", 27, 24, 16.5, 30, 13, 6.0, 7),
            ("S2", 22, 19, 13, 22, 11, 5, 6),
            ("S3", 18, 15, 10, 13, 8.5, 4, 5),
            ("S4", 15, 11, 8, 6, 6.5, 3, 4),
            ("S5", 12, 8, 6, 0, 5, 2.2, 3),
        ]
    elif variant == "lumbarization":
        disc("L5-S1", 10.0, 9 * k)
        body(
            "S1",
            "L",
            25,
            24,
            16.5,
            U(2, 4),
            13,
            7.5,
            sp_len=U(14, 20),
            sp_tilt=math.radians(U(10, 25)),
            tp_len=U(36, 46),
            tp_rc=U(7, 9),
        )
        dg = rng.random() < 0.2
        disc("S1-S2", U(4, 6) if dg else U(7, 10), 7 * k, absolute=True, degen=dg)
        sac = [
            ("S2", 24, 21, 14.5, 26, 12, 5.5, 7),
            ("S3", 19, 16, 10.5, 14, 8.5, 4, 5),
            ("S4", 15, 11.5, 8, 6, 6.5, 3, 4),
            ("S5", 12, 8, 6, 0, 5, 2.2, 3),
        ]
    else:
        if rng.random() < 0.55:
            disc("L5-S1", U(0.8, 1.3), 9 * k, absolute=True, fused=True)
        else:
            disc(
                "L5-S1",
                U(1.5, 3.0),
                9 * k,
                absolute=True,
                degen=True,
                nh=U(0.4, 0.6),
                nw=U(0.35, 0.5),
            )
        sac = [
            ("S1", 27, 24, 16.5, 30, 13, 6.0, 7),
            ("S2", 22, 19, 13, 22, 11, 5, 6),
            ("S3", 18, 15, 10, 13, 8.5, 4, 5),
            ("S4", 15, 11, 8, 6, 6.5, 3, 4),
            ("S5", 12, 8, 6, 0, 5, 2.2, 3),
        ]
    for i, (nm, h, W, D, wl, cw, hd, tp) in enumerate(sac):
        body(
            nm,
            "S",
            h,
            W,
            D,
            U(-7, -4),
            cw,
            hd,
            Wlat=0.0,
            wl_add=wl * f,
            tpost=tp,
            ilium=(i < 2),
            foramen=(i < 4),
            rf=[5.0, 4.5, 3.5, 3.0, 2.5][i],
        )
        if i < len(sac) - 1:
            disc(
                nm + "-" + sac[i + 1][0],
                U(1.0, 2.2),
                U(-6, -3),
                absolute=True,
                remnant=True,
                rud=(i == 0 and rng.random() < (0.4 if variant != "lumbarization" else 0.25)),
            )
    disc("S5-Co1", U(1.5, 2.5), U(-15, -5), absolute=True, remnant=True)
    nco = 3 if rng.random() < 0.5 else 4
    cod = [(11, 8, 6), (9, 6, 5), (7, 4.5, 4), (5, 3.5, 3)]
    for i in range(nco):
        h, W, D = cod[i]
        body("Co%d" % (i + 1), "C", h, W, D, U(-12, -4), 0, 0)
        if i < nco - 1:
            disc("Co%d-Co%d" % (i + 1, i + 2), U(1.0, 2.0), U(-14, -6), absolute=True, remnant=True)

    # disc geometry from neighbours
    for i, e in enumerate(seq):
        if e.kind == "disc":
            p, n = seq[i - 1], seq[i + 1]
            bulge = 0.8 if not e.remnant and not e.fused else -0.5
            e.W = 0.5 * (p.W + n.W) + bulge
            e.D = 0.5 * (p.D + n.D) + bulge
            e.Dp = e.D + (1.5 if e.degen else 0.0)
            e.cmax = max(p.conc, n.conc) if not e.remnant else 0.4
            e.cw = 0.5 * (p.cw + n.cw)
            e.hd = 0.5 * (p.hd + n.hd)
            e.tpost = 0.5 * (p.get("tpost", 0) + n.get("tpost", 0))
            e.typ = "d"
    sacs = [e for e in seq if e.kind == "body" and e.typ == "S"]
    for i, e in enumerate(sacs):
        e.Wlat = e.W + e.wl_add
        e.conc = 0.0
        e.tce_top = e.tce if i == 0 else 0.25
        e.tce_bot = 0.25 if i < len(sacs) - 1 else e.tce
    for i, e in enumerate(seq):
        if (
            e.kind == "disc"
            and e.remnant
            and i > 0
            and seq[i - 1].typ == "S"
            and seq[i + 1].typ == "S"
        ):
            first = seq[i - 1] is sacs[0]
            e.h = U(0.8, 1.6) if first else U(0.5, 1.0)

    # degeneration
    degen_lvls = []
    pdeg = 0.3 if variant == "normal" else 0.25
    if rng.random() < pdeg:
        cand = ["L4-L5", "L5-S1"] if variant != "sacralization" else ["L4-L5"]
        degen_lvls.append(cand[0] if (len(cand) == 1 or rng.random() < 0.6) else cand[1])
    if variant == "lumbarization" and rng.random() < 0.15:
        degen_lvls.append("L5-S1")
    for i, e in enumerate(seq):
        if e.kind == "disc" and e.name in degen_lvls:
            e.degen = True
            e.h *= U(0.45, 0.7)
            e.wedge *= 0.75
            e.Dp = e.D + 1.5
            e.nw, e.nd = U(0.35, 0.5), U(0.3, 0.45)
            if rng.random() < 0.5:
                mod = U(2.5, 6)
                seq[i - 1].modic_bot = mod
                seq[i + 1].modic_top = mod

    # marrow fat fractions, hemangioma
    ff0 = U(0.25, 0.6)
    for e in seq:
        if e.kind == "body":
            e.ff = float(
                np.clip(ff0 + rng.normal(0, 0.05) + (0.08 if e.typ in "SC" else 0), 0.1, 0.85)
            )
    if rng.random() < 0.2:
        cands = [e for e in seq if e.kind == "body" and e.typ in "TL"]
        e = cands[rng.integers(len(cands))]
        e.hem = (U(-0.4, 0.4) * e.W, U(-0.4, 0.4) * e.D, U(-0.25, 0.25) * e.h, U(3, 7))

    # ----- walk the chain
    SS = math.radians(U(30, 50))

    def walk(phi0):
        P = np.zeros(2)
        phi = phi0
        for e in seq:
            e.phi_top = phi
            e.phi_bot = phi + e.wedge
            pm = phi + 0.5 * e.wedge
            a = a_vec(pm)
            e.P_top = P.copy()
            e.C = P - a * e.h * 0.5
            e.P_bot = P - a * e.h
            e.a2 = a
            e.n2 = n_vec(pm)
            e.at2 = a_vec(e.phi_top)
            e.ab2 = a_vec(e.phi_bot)
            P = e.P_bot
            phi = e.phi_bot

    walk(0.0)
    s1 = [e for e in seq if e.name == "S1"][0]
    l1 = [e for e in seq if e.name == "L1"][0]
    target_ll = SS - math.radians(U(-15, 2))
    i0, i1 = seq.index(l1), seq.index(s1)
    body_sum = sum(e.wedge for e in seq[i0:i1] if e.kind == "body")
    disc_sum = sum(e.wedge for e in seq[i0:i1] if e.kind == "disc")
    if disc_sum > 1e-3:
        fac = max(0.3, (target_ll - body_sum) / disc_sum)
        for e in seq[i0:i1]:
            if e.kind == "disc":
                e.wedge *= fac
    walk(0.0)
    walk(SS - s1.phi_top)
    l3 = [e for e in seq if e.name == "L3"][0]
    shift = np.array([U(-30, 30), U(-60, 60)]) - l3.C
    for e in seq:
        e.P_top = e.P_top + shift
        e.P_bot = e.P_bot + shift
        e.C = e.C + shift
        e.Cy, e.Cz = float(e.C[0]), float(e.C[1])
        e.ay, e.az = float(e.a2[0]), float(e.a2[1])
        e.ny, e.nz = float(e.n2[0]), float(e.n2[1])
        e.Ty, e.Tz = float(e.P_top[0]), float(e.P_top[1])
        e.By, e.Bz = float(e.P_bot[0]), float(e.P_bot[1])
        e.aty, e.atz = float(e.at2[0]), float(e.at2[1])
        e.aby, e.abz = float(e.ab2[0]), float(e.ab2[1])
    x0 = U(-12, 12)

    A = E(seq=seq, f=f, x0=x0, variant=variant)

    def corners(e, ar, br, cr):
        pts = []
        for aa in ar:
            for bb in br:
                for cc in cr:
                    pts.append(
                        (x0 + aa, e.Cy + bb * e.ny + cc * e.ay, e.Cz + bb * e.nz + cc * e.az)
                    )
        return np.array(pts)

    for e in seq:
        tw = abs(math.tan(0.5 * e.wedge))
        if e.kind == "disc":
            ch = 0.5 * e.h + e.cmax + 2 + (e.D + 2) * tw
            e.cor = corners(e, (-e.W - 1, e.W + 1), (-e.Dp - 2, e.D + 2), (-ch, ch))
            continue
        ch = 0.5 * e.h + 3 + (e.D + 1) * tw
        e.cor = corners(e, (-e.W - 1, e.W + 1), (-e.D - 1, e.D + 1), (-ch, ch))
        e.bcc = -(e.D + 0.8 + e.hd)
        if e.typ in "TL":
            ext = e.cw + 8 + max(e.tp_len, 0)
            if e.typ == "T":
                ext = max(ext, e.W + e.rib + 8)
            if e.get("tp_big"):
                ext = max(ext, 62)
            cmin = -0.12 * e.h - e.sp_len * math.sin(e.sp_tilt) - 14 - 0.5 * e.h
            if e.typ == "T":
                cmin = min(cmin, 0.25 * e.h - 0.45 * e.rib - 8)
            bmin = e.bcc - e.hd - e.sp_len - 10
            if e.typ == "T":
                bmin = min(bmin, -e.D - 0.6 * e.rib - 8)
            e.corp = corners(e, (-ext, ext), (bmin, 2), (cmin, 0.5 * e.h + 8))
            e.tp_len_eff = e.tp_len
        elif e.typ == "S":
            e.bback = e.bcc - e.hd - e.tpost
            e.corp = corners(
                e,
                (-(e.Wlat + 52), e.Wlat + 52),
                (e.bback - 20, e.D + 4),
                (-0.5 * e.h - 7 - 30 * tw, 0.5 * e.h + 7 + 30 * tw),
            )
    # sacralised L5: transverse process reaching the ala
    first_sac = [e for e in seq if e.typ == "S"][0]
    for e in seq:
        if e.get("tp_big"):
            e.tp_len_eff = first_sac.Wlat - e.cw - 1.0
    # ----- canal curve
    cseq = [e for e in seq if e.cw > 0 and (e.typ in "TLSd")]
    cseq = [e for e in cseq if not (e.kind == "disc" and e.name.startswith("S5"))]
    K = []
    for e in cseq:
        D = e.D if e.kind == "body" else e.D - 0.8
        K.append(e.C + e.n2 * (-(D + 0.8 + e.hd)))
    canal = Canal(K)
    A.canal = canal
    for e, kp in zip(cseq, K):
        e.s = canal.nearest_s(kp[0], kp[1])
    A.cs = np.array([e.s for e in cseq])
    A.ccw = np.array([e.cw for e in cseq])
    A.chd = np.array([e.hd for e in cseq])
    A.ctp = np.array([e.get("tpost", 0) or 0 for e in cseq], dtype=float)
    byname = {e.name: e for e in seq}
    A.byname = byname
    A.s_top = cseq[0].s - 30
    A.s_sac0 = first_sac.s - 0.5 * first_sac.h
    A.s_hiatus = byname["S4"].s
    A.s_crest_end = byname["S3"].s
    A.s_sac_end = byname["S2"].s + U(-8, 8)
    A.s_ct = byname["L1-L2"].s + U(-22, 10)
    A.cord_w, A.cord_d = U(4.5, 5.5), U(3.5, 4.3)
    A.sac_m = U(0.8, 1.8)
    # root exits: discs from L2-L3 down plus two sacral junctions
    exits = []
    names = [e.name for e in cseq]
    started = False
    njunc = 0
    for e in cseq:
        if e.kind == "disc" and e.name == "L2-L3":
            started = True
        if started and e.kind == "disc":
            exits.append(e.s - 4)
            if e.typ == "d" and (e.remnant or e.fused):
                njunc += 1
            if njunc >= 3:
                break
    A.roots = []
    for se in exits:
        for sg in (-1, 1):
            A.roots.append((sg, se, U(0.9, 1.3), U(1.8, 2.8)))
    # canal window corners
    ky = np.array([p[0] for p in K])
    kz = np.array([p[1] for p in K])
    cwm = A.ccw.max() + 18
    A.canal_cor = np.array(
        [
            (x0 + sx * cwm, y, z)
            for sx in (-1, 1)
            for y in (ky.min() - 35, ky.max() + 35)
            for z in (kz.min() - 40, kz.max() + 40)
        ]
    )

    # ----- z tables for soft tissue
    bodies = [e for e in seq]
    zs = np.array([e.Cz for e in bodies])
    order = np.argsort(zs)
    zsrt = zs[order]
    yF = np.array([e.Cy + e.ny * e.D for e in bodies])[order]
    yB = np.array([e.Cy for e in bodies])[order]
    Wz = np.array([e.W for e in bodies])[order]
    A.zt0 = float(zsrt[0] - 260)
    zt = np.arange(A.zt0, zsrt[-1] + 260, 1.0)
    A.nzt = len(zt)
    A.t_yF = np.interp(zt, zsrt, yF).astype(F)
    A.t_yB = np.interp(zt, zsrt, yB).astype(F)
    A.t_W = np.interp(zt, zsrt, Wz).astype(F)
    czs = np.array([kp[1] for kp in K])
    o2 = np.argsort(czs)
    ycz = np.interp(zt, czs[o2], np.array([kp[0] for kp in K])[o2])
    A.t_yC = ycz.astype(F)
    hdz = np.interp(zt, czs[o2], A.chd[o2])
    zS1 = first_sac.Ty if False else float(first_sac.P_top[1])
    zS3 = float(byname["S3"].C[1])
    zCo = float(seq[-1].P_bot[1])
    Mdl = U(42, 62)
    Md = np.interp(zt, [zCo - 50, zCo, zS3, zS1, zS1 + 1000], [6, 8, 15, Mdl, Mdl])
    A.tf_post, A.tf_ant, A.tf_lat = U(8, 40), U(10, 45), U(10, 40)
    A.Rx = U(125, 175)
    A.xb = x0 + U(-10, 10)
    Adep = U(90, 190)
    ypost = ycz + hdz + Md + A.tf_post
    kw = 61
    ypost = np.convolve(np.pad(ypost, kw // 2, mode="edge"), np.ones(kw) / kw, "valid")
    A.t_ypost = ypost.astype(F)
    A.t_yant = (A.t_yF - Adep).astype(F)
    A.t_ypost_i = (ypost - A.tf_post).astype(F)
    A.t_yant_i = (A.t_yant + A.tf_ant).astype(F)
    zT12 = float(byname["T12"].C[1])
    zL1 = float(byname["L1"].C[1])
    zL3 = float(byname["L3"].C[1])
    zL5 = float(byname["L5"].C[1])
    zS2 = float(byname["S2"].C[1])
    rps = (
        np.interp(
            zt,
            [zS2 - 1, zS2, float(first_sac.C[1]), zL5, zL3, zL1, zT12, zT12 + 1],
            [0, 6, 19, 21, 15, 7, 0.1, 0],
        )
        * f
        * U(0.8, 1.2)
    )
    A.t_rps = rps.astype(F)
    A.z_liver = zT12 + U(-10, 25)
    A.y_table = float(ypost[(zt > zCo) & (zt < zT12)].max())
    # vessels
    zL4 = float(byname["L4"].C[1])
    A.r_ao, A.x_ao, A.z_bif = U(8, 12) * f, x0 + U(10, 18), zL4 + U(-10, 10)
    A.rx_ivc, A.ry_ivc, A.x_ivc, A.z_ivc = U(9, 13), U(6, 9), x0 - U(16, 24), zL5 + U(-5, 10)
    co1 = byname["Co1"]
    bz = float(co1.P_top[1]) + U(0, 25)
    A.blad = (x0, float(np.interp(bz, zsrt, yF)) - U(50, 80), bz, U(30, 50), U(18, 35), U(20, 38))
    A.blad_on = rng.random() < 0.8
    # noise fields
    ylo = float(A.t_yant.min()) - 20
    yhi = float(A.t_ypost.max()) + 20
    zlo, zhi = zt[0], zt[-1]
    A.nA = VNoise(rng, (x0 - 260, ylo, zlo), (x0 + 260, yhi, zhi), 13.0)
    A.nB = VNoise(rng, (x0 - 260, ylo, zlo), (x0 + 260, yhi, zhi), 6.0)
    sy = np.array([e.Cy for e in seq])
    sz = np.array([e.Cz for e in seq])
    A.nM = VNoise(
        rng,
        (x0 - 120, sy.min() - 110, sz.min() - 60),
        (x0 + 120, sy.max() + 60, sz.max() + 60),
        3.5,
    )
    A.fl_thr = U(0.45, 0.9)
    A.marb = U(2.8, 3.6)
    A.rmx = U(75, 105)
    A.tv = {lab: (U(0.93, 1.07), U(0.9, 1.1), U(0.88, 1.12)) for lab in range(NL)}
    # coil bias
    A.bias0, A.bias1, A.Lc = U(0.25, 0.5), U(0.6, 1.0), U(70, 150)
    A.bz_per, A.bz_ph, A.bz_amp = U(80, 160), U(0, 6.28), U(0.03, 0.12)
    A.bx = U(-0.08, 0.08)
    return A


# ----------------------------------------------------------------------------- sampling planes
class Plane:
    def __init__(self, O, Fr, Fc, dr, dc, R, C):
        self.O = np.asarray(O, float)
        self.Fr, self.Fc = np.asarray(Fr, float), np.asarray(Fc, float)
        self.N = np.cross(self.Fr, self.Fc)
        self.dr, self.dc, self.R, self.C = dr, dc, R, C
        i = (np.arange(R) * dr)[:, None]
        j = (np.arange(C) * dc)[None, :]
        self.X = (self.O[0] + self.Fc[0] * i + self.Fr[0] * j).astype(F)
        self.Y = (self.O[1] + self.Fc[1] * i + self.Fr[1] * j).astype(F)
        self.Z = (self.O[2] + self.Fc[2] * i + self.Fr[2] * j).astype(F)

    def window(self, cor, pad=2):
        d = cor - self.O
        dn = d @ self.N
        if dn.min() > 0.5 or dn.max() < -0.5:
            return None
        r = (d @ self.Fc) / self.dr
        c = (d @ self.Fr) / self.dc
        r0 = max(0, int(math.floor(r.min())) - pad)
        r1 = min(self.R, int(math.ceil(r.max())) + pad + 1)
        c0 = max(0, int(math.floor(c.min())) - pad)
        c1 = min(self.C, int(math.ceil(c.max())) + pad + 1)
        if r0 >= r1 or c0 >= c1:
            return None
        return (slice(r0, r1), slice(c0, c1))


def local(A, e, X, Y, Z):
    dy = Y - F(e.Cy)
    dz = Z - F(e.Cz)
    return X - F(A.x0), dy * F(e.ny) + dz * F(e.nz), dy * F(e.ay) + dz * F(e.az)


def planes_d(e, Y, Z):
    dt = (Y - F(e.Ty)) * F(e.aty) + (Z - F(e.Tz)) * F(e.atz)
    db = (Y - F(e.By)) * F(e.aby) + (Z - F(e.Bz)) * F(e.abz)
    return dt, db


def xsec(a, b, W, D, Dp):
    an = a / F(W)
    bn = np.where(b > 0, b / F(D), b / F(Dp))
    an2 = an * an
    bn2 = bn * bn
    post = b < 0
    return np.where(post, an2 * an2 + bn2 * bn2, an2 + bn2), post


# ----------------------------------------------------------------------------- painting
def paint_background(A, P):
    X, Y, Z = P.X, P.Y, P.Z
    zi = np.clip(np.rint(Z - F(A.zt0)), 0, A.nzt - 1).astype(np.int32)
    yF = A.t_yF[zi]
    dx2 = ((X - F(A.xb)) / F(A.Rx)) ** 2
    dx2i = ((X - F(A.xb)) / F(A.Rx - A.tf_lat)) ** 2

    def q(ya, yp, dxx):
        yc = (ya + yp) * F(0.5)
        ry = (yp - ya) * F(0.5)
        t = (Y - yc) / ry
        t2 = t * t
        return dxx + np.where(t > 0, t2 * t2, t2)

    outer = q(A.t_yant[zi], A.t_ypost[zi], dx2) <= 1
    inner = q(A.t_yant_i[zi], A.t_ypost_i[zi], dx2i) <= 1
    L = np.zeros(X.shape, np.uint8)
    L[outer] = FAT
    MOD = np.ones(X.shape, F)
    FFm = np.full(X.shape, 0.5, F)
    yCc = A.t_yC[zi]
    dxs = X - F(A.x0)
    ant = inner & (
        (yF - 3 + F(0.006) * dxs * dxs > Y)
        | ((dxs / F(A.rmx)) ** 2 + ((Y - yCc) / F(140.0)) ** 2 > 1)
    )
    post = inner & ~ant
    if post.any():
        nb = A.nB(X[post], Y[post], Z[post])
        lab = np.full(nb.shape, MUSCLE, np.uint8)
        lab[nb > A.marb] = FAT
        L[post] = lab
        MOD[post] = 1 + F(0.07) * nb
    if ant.any():
        xa, ya_, za = X[ant], Y[ant], Z[ant]
        na = A.nA(xa, ya_, za)
        nb = A.nB(za, xa, ya_)
        lab = np.full(na.shape, FAT, np.uint8)
        lab[na > 0.2] = SOFT
        lab[na > A.fl_thr] = BFLUID
        lab[(na < -1.3) & (nb > 0.5)] = GAS
        liv = (za - F(A.z_liver) + F(12.0) * na > 0) & (xa - F(A.x0 + 40) + F(15.0) * nb < 0)
        lab[liv] = LIVER
        L[ant] = lab
        MOD[ant] = 1 + F(0.08) * nb
    # psoas
    rps = A.t_rps[zi]
    m0 = inner & (rps > 0.5)
    if m0.any():
        xs, ys, rr = X[m0], Y[m0], rps[m0]
        Wv = A.t_W[zi][m0]
        yc = A.t_yB[zi][m0]
        hit = np.zeros(xs.shape, bool)
        for sg in (-1, 1):
            xc = F(A.x0) + sg * (Wv + F(0.7) * rr)
            hit |= ((xs - xc) / rr) ** 2 + ((ys - yc) / (F(0.85) * rr)) ** 2 <= 1
        sub = L[m0]
        sub[hit] = MUSCLE
        L[m0] = sub
    # vessels
    yao = yF - F(A.r_ao + 1.5)
    L[inner & (A.z_bif <= Z) & ((X - F(A.x_ao)) ** 2 + (Y - yao) ** 2 <= A.r_ao**2)] = AORTA
    yiv = yF - F(A.ry_ivc + 1.0)
    L[
        inner
        & (A.z_ivc <= Z)
        & (((X - F(A.x_ivc)) / F(A.rx_ivc)) ** 2 + ((Y - yiv) / F(A.ry_ivc)) ** 2 <= 1)
    ] = IVC
    if A.blad_on:
        bx, by, bz, rx, ry, rz = A.blad
        L[
            inner
            & (
                ((X - F(bx)) / F(rx)) ** 2 + ((Y - F(by)) / F(ry)) ** 2 + ((Z - F(bz)) / F(rz)) ** 2
                <= 1
            )
        ] = URINE
    return L, FFm, MOD


def canal_ctx(A, P):
    win = P.window(A.canal_cor)
    if win is None:
        return None
    s, u = A.canal.lookup(P.Y[win], P.Z[win])
    cw = np.interp(s, A.cs, A.ccw).astype(F)
    hd = np.interp(s, A.cs, A.chd).astype(F)
    tp = np.interp(s, A.cs, A.ctp).astype(F)
    return win, s, u, cw, hd, tp


def paint_canal_pre(A, P, L, ctx):
    if ctx is None:
        return
    win, s, u, cw, hd, tp = ctx
    X = P.X[win]
    ax = np.abs(X - F(A.x0))
    rng_s = (s >= A.s_top) & (s <= A.s_sac0)
    Lw = L[win]
    Lw[rng_s & ((ax / (cw + 14)) ** 2 + ((u + 0.3 * hd) / (1.3 * hd + 6)) ** 2 <= 1)] = FAT
    Lw[rng_s & (ax <= cw + 3) & (u <= -hd) & (u >= -hd - 3.5)] = LIG


def paint_canal_post(A, P, L, ctx):
    if ctx is None:
        return
    win, s, u, cw, hd, tp = ctx
    xr = P.X[win] - F(A.x0)
    ax = np.abs(xr)
    Lw = L[win]
    # sacral posterior wall and median crest
    sw = (s >= A.s_sac0 - 2) & (s <= A.s_hiatus)
    if sw.any():
        wall = sw & (ax <= cw + 11) & (u <= -hd) & (u >= -hd - tp)
        crest = sw & (s <= A.s_crest_end) & (ax <= 4) & (u < -hd - tp + 0.5) & (u >= -hd - tp - 9)
        Lw[wall] = CORTEX
        Lw[wall & (u < -hd - 1.2) & (u > -hd - tp + 1.2)] = PEBONE
        Lw[crest] = PEBONE
    can = (s >= A.s_top) & (s <= A.s_hiatus + 5) & ((xr / cw) ** 2 + (u / hd) ** 2 <= 1)
    idx = np.nonzero(can)
    if idx[0].size == 0:
        return
    sc, uc, xc, cwc, hdc = s[idx], u[idx], xr[idx], cw[idx], hd[idx]
    lab = np.full(sc.shape, FAT, np.uint8)
    taper = np.sqrt(np.clip((A.s_sac_end - sc) / 12.0, 0, 1)).astype(F)
    th = sc < A.canal_thor_s
    swd = np.where(th, cwc - 0.7, cwc - A.sac_m) * taper
    sdd = np.where(th, hdc - 0.9, hdc - A.sac_m) * taper
    swd = np.maximum(swd, 0.05)
    sdd = np.maximum(sdd, 0.05)
    sac = ((xc / swd) ** 2 + ((uc - 0.8) / sdd) ** 2 <= 1) & (sc <= A.s_sac_end)
    lab[sac] = CSF
    rs = (np.clip((A.s_ct - sc) / 22.0, 0, 1) ** 0.6).astype(F)
    cord = (
        sac
        & (rs > 0)
        & ((xc / (A.cord_w * rs + 1e-3)) ** 2 + ((uc + 0.6) / (A.cord_d * rs + 1e-3)) ** 2 <= 1)
    )
    lab[cord] = CORD
    sel = sc >= A.s_ct - 3
    if sel.any():
        for sg, se, rr, dep in A.roots:
            t = np.clip((sc - A.s_ct) / (se - A.s_ct), 0, 1)
            xk = sg * (0.9 + (swd - 1.2) * t**2.2)
            uk = -0.42 * sdd + 0.3 * sdd * t
            m = sel & (sc <= se) & ((xc - xk) ** 2 + (uc - uk) ** 2 <= rr * rr)
            lab[m] = ROOT
        lab[sac & (sc > A.s_ct) & (xc**2 + (uc + 0.6) ** 2 <= 0.5)] = ROOT
    Lw[idx] = lab


def bone(Lw, m, q, rim=0.6):
    Lw[m] = CORTEX
    Lw[m & (q < rim)] = PEBONE


def paint_disc(A, e, P, L, MOD):
    win = P.window(e.cor)
    if win is None:
        return
    X, Y, Z = P.X[win], P.Y[win], P.Z[win]
    a, b, c = local(A, e, X, Y, Z)
    dt, db = planes_d(e, Y, Z)
    r, post = xsec(a, b, e.W, e.D, e.Dp)
    ext = e.cmax
    inside = (r <= 1) & (dt <= ext) & (db >= -ext)
    if not inside.any():
        return
    Lw = L[win]
    if e.fused or e.remnant:
        Lw[inside] = REMN
        if e.rud:
            q = (a / F(0.45 * e.W)) ** 2 + ((b + F(0.1 * e.D)) / F(0.4 * e.D)) ** 2
            Lw[inside & (q <= 1) & (np.abs(c) <= 0.3 * e.h)] = NUCO
        return
    Lw[inside] = ANN
    hn = 0.5 * e.h * e.nh + 0.8 * ext
    q = (a / F(e.nw * e.W)) ** 2 + ((b + F(0.12 * e.D)) / F(e.nd * e.D)) ** 2 + (c / F(hn)) ** 2
    nuc = inside & (q <= 1)
    if e.degen:
        Lw[nuc] = DNUC
    else:
        Lw[nuc] = NUCO
        core = nuc & (q <= 0.55)
        Lw[core] = NUC
        if e.cleft:
            Lw[core & (np.abs(c) < 0.5)] = NUCO
    MOD[win][nuc] = e.hyd


def paint_body(A, e, P, L, FFm, MOD):
    win = P.window(e.cor)
    if win is None:
        return
    X, Y, Z = P.X[win], P.Y[win], P.Z[win]
    a, b, c = local(A, e, X, Y, Z)
    dt, db = planes_d(e, Y, Z)
    cn = np.clip(c * F(2.0 / e.h), -1, 1)
    wf = 1 - F(e.waist) * (1 - cn * cn)
    r, post = xsec(a / wf, b / wf, e.W, e.D, e.D)
    conc = F(e.conc) * (1 - np.minimum(r, 1))
    inside = (r <= 1) & (dt <= -conc) & (db >= conc)
    if not inside.any():
        return
    eps = min(0.3, e.tc / e.D)
    thr = np.where(post, F((1 - eps) ** 4), F((1 - eps) ** 2))
    inner = (
        inside
        & (r <= thr)
        & (dt <= -conc - e.get("tce_top", e.tce))
        & (db >= conc + e.get("tce_bot", e.tce))
    )
    Lw = L[win]
    Lw[inside] = CORTEX
    Lw[inner] = MARROW
    ii = np.nonzero(inner)
    ffv = F(e.ff) + F(0.09) * A.nM(X[ii], Y[ii], Z[ii])
    if e.modic_top > 0:
        ffv[dt[ii] > -conc[ii] - e.tce - e.modic_top] += 0.3
    if e.modic_bot > 0:
        ffv[db[ii] < conc[ii] + e.tce + e.modic_bot] += 0.3
    if e.hem is not None:
        ha, hb, hc, hr = e.hem
        hm = (a[ii] - ha) ** 2 + (b[ii] - hb) ** 2 + (c[ii] - hc) ** 2 <= hr * hr
        ffv[hm] = 0.88
        MOD[win][tuple(x[hm] for x in ii)] = 1.25
    FFm[win][ii] = np.clip(ffv, 0.03, 0.95)


def paint_post(A, e, P, L):
    win = P.window(e.corp)
    if win is None:
        return
    X, Y, Z = P.X[win], P.Y[win], P.Z[win]
    a, b, c = local(A, e, X, Y, Z)
    aa = np.abs(a)
    Lw = L[win]
    cw, hd, h, bcc = e.cw, e.hd, e.h, e.bcc
    # dorsal root ganglion in the foramen
    q = (
        ((aa - (cw + 7)) / 6.0) ** 2
        + ((b - (bcc + 0.3 * hd)) / 3.5) ** 2
        + ((c + 0.28 * h) / 4.5) ** 2
    )
    Lw[q <= 1] = NERVE
    # pedicles
    pr = 4.2 * A.f if e.name != "L5" else 5.0 * A.f
    q = ((aa - (cw + pr - 0.5)) / pr) ** 2 + ((c - 0.12 * h) / (0.27 * h)) ** 2
    bone(Lw, (q <= 1) & (b <= -e.D + 4) & (b >= bcc - 0.3 * hd), q)
    # laminar arch
    qa = (aa / (cw + 6.5)) ** 2 + ((b - bcc) / (hd + 5.5)) ** 2
    m = (qa <= 1) & (b < bcc - 0.2 * hd) & (c <= 0.25 * h) & (c >= -0.55 * h - 4)
    bone(Lw, m, qa, 0.8)
    # articular processes
    q1 = (
        ((aa - (cw + 4.5)) / 5.0) ** 2
        + ((b - (bcc - 0.5 * hd)) / 6.0) ** 2
        + ((c - 0.45 * h) / (0.25 * h + 2)) ** 2
    )
    bone(Lw, q1 <= 1, q1)
    q2 = (
        ((aa - (cw + 3.5)) / 5.0) ** 2
        + ((b - (bcc - hd - 2.5)) / 5.5) ** 2
        + ((c + 0.5 * h + 2) / (0.25 * h + 2)) ** 2
    )
    bone(Lw, q2 <= 1, q2)
    # spinous process
    tau = e.sp_tilt
    L2 = 0.5 * e.sp_len
    b0 = bcc - hd - 3
    bs, cs = b0 - L2 * math.cos(tau), -0.12 * h - L2 * math.sin(tau)
    e1 = (b - bs) * F(-math.cos(tau)) + (c - cs) * F(-math.sin(tau))
    e2 = (b - bs) * F(math.sin(tau)) + (c - cs) * F(-math.cos(tau))
    hh = (0.3 * h if e.typ == "L" else 5.5) * (0.7 if e.get("tp_big") else 1.0)
    q = (e1 / (L2 + 3)) ** 2 + (e2 / hh) ** 2 + (a / (3.8 * A.f)) ** 2
    bone(Lw, q <= 1, q)
    # transverse processes
    tl = e.tp_len_eff
    if tl > 0:
        t = (aa - (cw + 3)) / tl
        back = 0.6 if e.typ == "T" else 0.05
        btp = bcc + 0.1 * hd - back * (aa - cw)
        ctp = 0.05 * h if not e.get("tp_big") else -0.2 * h
        rb = 4.5 * (1 - 0.3 * t)
        rc = e.tp_rc * (1 - 0.35 * t)
        q = ((b - btp) / rb) ** 2 + ((c - ctp) / rc) ** 2
        bone(Lw, (q <= 1) & (t >= 0) & (t <= 1), q)
    if e.typ == "T":
        d = np.array([0.82, -0.45, -0.35])
        d /= np.linalg.norm(d)
        for sg in (-1, 1):
            va, vb, vc = a - F(sg * (e.W + 1)), b - F(-e.D + 5), c - F(0.25 * h)
            t = np.clip(va * F(sg * d[0]) + vb * F(d[1]) + vc * F(d[2]), 0, e.rib)
            d2 = (va - t * F(sg * d[0])) ** 2 + (vb - t * F(d[1])) ** 2 + (vc - t * F(d[2])) ** 2
            q = d2 / F(5.5**2)
            bone(Lw, q <= 1, q, 0.45)


def paint_sacral(A, e, P, L, FFm):
    win = P.window(e.corp)
    if win is None:
        return
    X, Y, Z = P.X[win], P.Y[win], P.Z[win]
    a, b, c = local(A, e, X, Y, Z)
    aa = np.abs(a)
    dt, db = planes_d(e, Y, Z)
    Lw = L[win]
    ext = 1.5 if e.name != "S5" else 0.3
    inz = (dt <= ext) & (db >= -ext)
    bback = e.bback
    bm = 0.5 * (bback + 0.6 * e.D)
    Dm = 0.5 * (0.6 * e.D - bback)
    if e.Wlat > e.W:
        an = aa / F(e.Wlat)
        bn = (b - F(bm)) / F(Dm)
        q = an**4 + bn * bn
        lm = inz & (q <= 1) & (aa >= 0.8 * e.W)
        Lw[lm] = CORTEX
        inner = lm & (q <= 0.8)
        Lw[inner] = MARROW
        FFm[win][inner] = F(min(0.9, e.ff + 0.1))
        if e.foramen:
            q2 = ((aa - (e.W + 3)) / e.rf) ** 2 + ((c + 0.5 * e.h) / e.rf) ** 2
            fm = (q2 <= 1) & (b >= bback) & (b <= 0.6 * e.D + 2)
            Lw[fm] = FAT
            Lw[fm & (q2 < 0.3)] = NERVE
        if e.ilium:
            inz2 = (dt <= 5) & (db >= -5) & (b >= bback - 15) & (b <= 0.6 * e.D + 6)
            Lw[inz2 & (aa > e.Wlat) & (aa <= e.Wlat + 2.2)] = CART
            bmi = 0.5 * ((bback - 15) + (0.6 * e.D + 6))
            bhi = 0.5 * ((0.6 * e.D + 6) - (bback - 15))
            qi = ((aa - (e.Wlat + 2.2)) / 48.0) ** 2 + ((b - bmi) / bhi) ** 2
            il = inz2 & (aa > e.Wlat + 2.2) & (qi <= 1)
            Lw[il] = CORTEX
            ili = il & (aa > e.Wlat + 3.5) & (qi <= 0.8)
            Lw[ili] = MARROW
            FFm[win][ili] = F(0.7)


def paint_spine(A, P, L, FFm, MOD, ctx):
    paint_canal_pre(A, P, L, ctx)
    for e in A.seq:
        if e.kind == "disc":
            paint_disc(A, e, P, L, MOD)
    for e in A.seq:
        if e.kind == "body":
            paint_body(A, e, P, L, FFm, MOD)
    for e in A.seq:
        if e.kind == "body" and e.typ in "TL":
            paint_post(A, e, P, L)
        elif e.kind == "body" and e.typ == "S":
            paint_sacral(A, e, P, L, FFm)
    paint_canal_post(A, P, L, ctx)


# ----------------------------------------------------------------------------- physics
def sig_table(A, TR, TE, field):
    tab = np.zeros(NL, F)
    for lab, (pd, t1a, t2a, t1b, t2b) in TISSUE.items():
        t1, t2 = (t1a, t2a) if field < 2 else (t1b, t2b)
        v = A.tv[lab]
        pd, t1, t2 = pd * v[0], t1 * v[1], t2 * v[2]
        tab[lab] = pd * (1 - math.exp(-TR / t1)) * math.exp(-TE / t2)
    return tab


def to_signal(L, FFm, MOD, tab):
    S = tab[L]
    mm = (L == MARROW) | (L == PEBONE)
    if mm.any():
        ff = FFm[mm]
        pe = L[mm] == PEBONE
        ff = np.where(pe, np.minimum(ff + 0.1, 0.95), ff)
        v = ff * tab[FAT] + (1 - ff) * tab[MARROW]
        S[mm] = np.where(pe, 0.72 * v, v)
    return S * MOD


def blur2(img, sig):
    if sig <= 0.05:
        return img
    x = np.arange(-2, 3)
    k = np.exp(-0.5 * (x / sig) ** 2)
    k /= k.sum()
    R, C = img.shape
    p = np.pad(img, 2, mode="edge")
    t = np.zeros((R + 4, C), F)
    for i in range(5):
        t += F(k[i]) * p[:, i : i + C]
    out = np.zeros((R, C), F)
    for i in range(5):
        out += F(k[i]) * t[i : i + R, :]
    return out


def render_series(A, geo, seq_p, rng):
    tab = sig_table(A, seq_p["TR"], seq_p["TE"], seq_p["field"])
    nsub = geo["nsub"]
    Fr, Fc, N = geo["Fr"], geo["Fc"], geo["N"]
    stack = np.zeros((len(geo["ipp"]), geo["R"], geo["C"]), F)
    for kk, Ok in enumerate(geo["ipp"]):
        P0 = Plane(Ok, Fr, Fc, geo["dr"], geo["dc"], geo["R"], geo["C"])
        Lb, Fb, Mb = paint_background(A, P0)
        # canal coordinates depend on (y, z) only; sub-planes of a sagittal slice share them
        ctx0 = canal_ctx(A, P0)
        acc = np.zeros(Lb.shape, F)
        for j in range(nsub):
            off = ((j + 0.5) / nsub - 0.5) * geo["thick"]
            P = (
                P0
                if abs(off) < 1e-6
                else Plane(Ok + N * off, Fr, Fc, geo["dr"], geo["dc"], geo["R"], geo["C"])
            )
            L, FFm, MOD = Lb.copy(), Fb.copy(), Mb.copy()
            ctx = ctx0 if (P is P0 or abs(N[0]) > 0.9) else canal_ctx(A, P)
            if ctx is not None and P is not P0 and ctx[0] != ctx0[0]:
                ctx = canal_ctx(A, P)
            paint_spine(A, P, L, FFm, MOD, ctx)
            acc += to_signal(L, FFm, MOD, tab)
        img = acc / nsub
        bias = (
            (A.bias0 + A.bias1 * np.exp(-np.clip(F(A.y_table) - P0.Y, 0, None) / F(A.Lc)))
            * (1 + A.bz_amp * np.sin(P0.Z / F(A.bz_per) + F(A.bz_ph)))
            * (1 + A.bx * (P0.X - F(A.x0)) / 100)
        )
        stack[kk] = blur2(img * bias.astype(F), seq_p["blur"])
    ref = float(stack[stack > 0.05 * stack.max()].mean())
    sigma = F(ref / seq_p["snr"])
    stack += rng.standard_normal(stack.shape, dtype=F) * sigma
    n2 = rng.standard_normal(stack.shape, dtype=F) * sigma
    stack *= stack
    n2 *= n2
    stack += n2
    np.sqrt(stack, out=stack)
    top = np.percentile(stack.ravel()[::7], 99.7)
    stack = stack * (seq_p["gain"] / top)
    return np.clip(np.rint(stack), 0, 4095).astype(np.uint16)


# ----------------------------------------------------------------------------- geometry
def choose_matrix(rng, fov_long, fov_ap):
    for _ in range(50):
        ps = rng.uniform(0.45, 1.2)
        n = int(round(fov_long / ps / 16.0)) * 16
        n = min(640, max(256, n))
        ps = fov_long / n
        if 0.45 <= ps <= 1.2:
            break
    n_ap = int(min(640, max(256, round(fov_ap / ps))))
    return n, n_ap, ps


def plan_sag(rng, A, transposed=False):
    U = lambda a, b: float(rng.uniform(a, b))
    bn = A.byname
    x0 = A.x0
    rng.random()
    if not transposed:
        Fr0 = np.array([0.0, 1.0 if rng.random() < 0.6 else -1.0, 0.0])
        Fc0 = np.array([0.0, 0.0, -1.0])
    else:
        Fr0 = np.array([0.0, 0.0, -1.0 if rng.random() < 0.5 else 1.0])
        Fc0 = np.array([0.0, 1.0 if rng.random() < 0.5 else -1.0, 0.0])
    while True:
        al, be = U(-8, 8), U(-5.5, 5.5)
        if math.hypot(al, be) <= 9.5:
            break
    R = (
        rotm("z", math.radians(al))
        @ rotm("y", math.radians(be))
        @ rotm("x", math.radians(U(-6, 6)))
    )
    Fr, Fc = R @ Fr0, R @ Fc0
    N = np.cross(Fr, Fc)
    l3 = bn["L3"]
    Q = np.array([x0, l3.Cy, l3.Cz])
    longmode = rng.random() < 0.65

    def pt(e, which):
        p = {"top": e.P_top, "bot": e.P_bot, "c": e.C}[which]
        return np.array([x0, p[0], p[1]])

    if longmode:
        top = pt(bn["T11"] if rng.random() < 0.6 else bn["T12"], "top") + np.array([0, 0, U(5, 25)])
        bot = pt(A.seq[-1], "bot") + np.array([0, 0, -U(8, 25)])
    else:
        top = pt(bn["L1"], "top") + np.array([0, 0, U(8, 35)])
        bot = pt(bn["S2"], "bot") + np.array([0, 0, -U(8, 40)])
    req = [top, bot]
    for nm in ("L1", "L3", "L5", "S1", "S2"):
        e = bn[nm]
        ant = e.C + e.n2 * (e.D + 15)
        pst = e.C - e.n2 * (e.D + 2 * e.hd + 40)
        req += [np.array([x0, ant[0], ant[1]]), np.array([x0, pst[0], pst[1]])]
    req = np.array(req) - Q
    pr, pc = req @ Fr, req @ Fc
    long_is_c = abs(Fc[2]) > abs(Fr[2])
    pl, pa = (pc, pr) if long_is_c else (pr, pc)
    need_l = pl.max() - pl.min()
    need_a = pa.max() - pa.min()
    fov_l = need_l + U(8, 60)
    fov_a = max(U(0.62, 1.0) * fov_l, need_a + 20, 200.0)
    n_l, n_a, ps = choose_matrix(rng, fov_l, fov_a)
    fov_l = n_l * ps
    fov_a = n_a * ps
    sl = (fov_l - need_l) / 2 - 2
    sa = (fov_a - need_a) / 2 - 2
    cl = 0.5 * (pl.max() + pl.min()) + U(-1, 1) * max(0, min(40, sl))
    ca = 0.5 * (pa.max() + pa.min()) + U(-1, 1) * max(0, min(40, sa))
    if long_is_c:
        Rn, Cn, cr, cc = n_l, n_a, cl, ca
    else:
        Rn, Cn, cr, cc = n_a, n_l, ca, cl
    ns = int(rng.integers(9, 24))
    thick = float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]))
    gap = 0.0 if rng.random() < 0.5 else round(thick * U(0.08, 0.3), 1)
    sp = thick + gap
    sgn = 1 if rng.random() < 0.5 else -1
    centre = Q + Fr * cc + Fc * cr
    # put the central slice through the spine midline (+- 3 mm)
    centre = centre + N * (U(-3, 3))
    ipp = []
    for kk in range(ns):
        cpos = centre + N * sgn * (kk - (ns - 1) / 2.0) * sp
        ipp.append(cpos - Fr * ps * (Cn - 1) / 2.0 - Fc * ps * (Rn - 1) / 2.0)
    return dict(
        Fr=Fr,
        Fc=Fc,
        N=N,
        dr=ps,
        dc=ps,
        R=Rn,
        C=Cn,
        thick=thick,
        sp=sp,
        ipp=ipp,
        nsub=3,
        centre=centre,
        ns=ns,
        fov=(fov_l, fov_a),
        long_is_c=long_is_c,
    )


def derive_t1(rng, g):
    g = dict(g)
    n_l0 = g["R"] if g["long_is_c"] else g["C"]
    fov_l, fov_a = g["fov"]
    n_l = max(256, int(round(n_l0 * rng.uniform(0.7, 1.0) / 16)) * 16)
    ps = fov_l / n_l
    if ps > 1.2:
        n_l = int(math.ceil(fov_l / 1.2))
        ps = fov_l / n_l
    n_a = int(min(640, max(256, round(fov_a / ps))))
    if g["long_is_c"]:
        R, C = n_l, n_a
    else:
        R, C = n_a, n_l
    Fr, Fc = g["Fr"], g["Fc"]
    ipp = []
    for k in range(g["ns"]):
        cpos = g["ipp"][k] + Fr * g["dc"] * (g["C"] - 1) / 2.0 + Fc * g["dr"] * (g["R"] - 1) / 2.0
        ipp.append(cpos - Fr * ps * (C - 1) / 2.0 - Fc * ps * (R - 1) / 2.0)
    g.update(R=R, C=C, dr=ps, dc=ps, ipp=ipp, nsub=1)
    return g


def plan_axial(rng, A):
    U = lambda a, b: float(rng.uniform(a, b))
    d1, d2 = A.byname["L4-L5"], A.byname["L5-S1"]
    a = d1.a2 + d2.a2
    a /= np.linalg.norm(a)
    N = np.array([0.0, a[0], a[1]])
    Fr = np.array([1.0, 0.0, 0.0])
    Fc = np.cross(N, Fr)
    mid = 0.5 * (d1.C + d2.C)
    nmid = 0.5 * (d1.n2 + d2.n2)
    cyz = mid - nmid * U(0, 25)
    centre = np.array([A.x0 + U(-15, 15), cyz[0], cyz[1]])
    centre = centre + Fc * U(-15, 15) + N * U(-10, 10)
    fov = U(180, 260)
    n = int(min(448, max(256, round(fov / U(0.55, 0.9) / 16) * 16)))
    ps = fov / n
    ns = int(rng.integers(15, 25))
    thick = 4.0
    sp = U(4.0, 4.8)
    sgn = 1 if rng.random() < 0.7 else -1
    ipp = []
    for k in range(ns):
        cpos = centre + N * sgn * (k - (ns - 1) / 2.0) * sp
        ipp.append(cpos - Fr * ps * (n - 1) / 2.0 - Fc * ps * (n - 1) / 2.0)
    return dict(
        Fr=Fr, Fc=Fc, N=N, dr=ps, dc=ps, R=n, C=n, thick=thick, sp=sp, ipp=ipp, nsub=1, ns=ns
    )


# ----------------------------------------------------------------------------- DICOM
VENDORS = {
    "SIEMENS": dict(
        model=["Avanto", "Skyra", "Aera", "Prisma"],
        t2=["T2_TSE_SAG", "t2_tse_sag_384", "t2_tse_sag"],
        t1=["T1_TSE_SAG", "t1_tse_sag"],
        ax=["T2_TSE_TRA", "t2_tse_tra"],
        etl=[15, 17, 21],
    ),
    "GE MEDICAL SYSTEMS": dict(
        model=["Signa HDxt", "Optima MR450w", "Discovery MR750"],
        t2=["Sag T2 FSE", "SAG T2 FRFSE", "Sag T2"],
        t1=["Sag T1 FSE", "SAG T1"],
        ax=["Ax T2 FSE", "AX T2 FRFSE"],
        etl=[16, 18, 24],
    ),
    "Philips Medical Systems": dict(
        model=["Ingenia", "Achieva"],
        t2=["T2W_TSE_SAG", "SAG T2 TSE", "sT2W_TSE"],
        t1=["T1W_TSE_SAG", "SAG T1 TSE"],
        ax=["T2W_TSE_TRA", "AX T2 TSE"],
        etl=[17, 20, 25],
    ),
}


def ds_str(v, nd=6):
    s = ("%." + str(nd) + "f") % v
    s = s.rstrip("0").rstrip(".") if "." in s else s
    return "0" if s in ("-0", "") else s


def write_series(folder, imgs, geo, meta, study):
    os.makedirs(folder, exist_ok=True)
    ent = study["ent"] + [meta["tag"]]
    series_uid = generate_uid(entropy_srcs=ent + ["series"])
    Fr, Fc, N = geo["Fr"], geo["Fc"], geo["N"]
    iop = [ds_str(v, 8) for v in list(Fr) + list(Fc)]
    for k, img in enumerate(imgs):
        sop = generate_uid(entropy_srcs=ent + ["sop", str(k)])
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = MR_STORAGE
        fm.MediaStorageSOPInstanceUID = sop
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = fm
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SOPClassUID = MR_STORAGE
        ds.SOPInstanceUID = sop
        ds.StudyDate = study["date"]
        ds.SeriesDate = study["date"]
        ds.ContentDate = study["date"]
        ds.StudyTime = study["time"]
        ds.SeriesTime = meta["time"]
        ds.ContentTime = meta["time"]
        ds.AccessionNumber = study["acc"]
        ds.Modality = "MR"
        ds.Manufacturer = study["vendor"]
        ds.ManufacturerModelName = study["model"]
        ds.InstitutionName = "FIFTH SYNTHETIC"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "MR LUMBAR SPINE"
        ds.SeriesDescription = meta["desc"]
        ds.ProtocolName = meta["desc"]
        ds.PatientName = "FIFTH^PHANTOM"
        ds.PatientID = study["pid"]
        ds.PatientBirthDate = ""
        ds.PatientSex = study["sex"]
        ds.PatientAge = study["age"]
        ds.BodyPartExamined = "LSPINE"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "SK"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = ds_str(geo["thick"], 3)
        ds.RepetitionTime = ds_str(meta["TR"], 2)
        ds.EchoTime = ds_str(meta["TE"], 2)
        ds.EchoTrainLength = meta["etl"]
        ds.MagneticFieldStrength = ds_str(study["field"], 1)
        ds.ImagingFrequency = ds_str(42.577 * study["field"], 4)
        ds.SpacingBetweenSlices = ds_str(geo["sp"], 3)
        ds.FlipAngle = ds_str(meta["flip"], 1)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study["uid"]
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = study["sid"]
        ds.SeriesNumber = meta["num"]
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ipp = geo["ipp"][k]
        ds.ImagePositionPatient = [ds_str(v, 4) for v in ipp]
        ds.ImageOrientationPatient = iop
        ds.FrameOfReferenceUID = study["for"]
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = ds_str(float(np.dot(ipp, N)), 4)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = int(img.shape[0])
        ds.Columns = int(img.shape[1])
        ds.PixelSpacing = [ds_str(geo["dr"], 6), ds_str(geo["dc"], 6)]
        ds.BitsAllocated = 16
        ds.BitsStored = meta["bits"]
        ds.HighBit = meta["bits"] - 1
        ds.PixelRepresentation = 0
        ds.WindowCenter = ds_str(meta["wc"], 1)
        ds.WindowWidth = ds_str(meta["ww"], 1)
        ds.PixelData = np.ascontiguousarray(img, dtype="<u2").tobytes()
        ds.save_as(os.path.join(folder, "IM%04d.dcm" % (k + 1)), enforce_file_format=True)
    return series_uid


# ----------------------------------------------------------------------------- study
VARIANT_CYCLE = ["normal", "lumbarization", "normal", "sacralization"]


def make_study(out_dir, seed, index):
    rng = np.random.default_rng([seed, index, 5])
    variant = VARIANT_CYCLE[index % 4]
    A = build_anatomy(rng, variant)
    # thoracic canal: sac fills more of the canal above L1
    A.canal_thor_s = A.byname["L1"].s - 0.5 * A.byname["L1"].h
    vendor = list(VENDORS)[int(rng.integers(3))]
    V = VENDORS[vendor]
    field = 1.5 if rng.random() < 0.5 else 3.0
    name = "fifth-%03d" % index
    sdir = os.path.join(out_dir, name)
    os.makedirs(sdir, exist_ok=True)
    ent = ["fifth", str(seed), str(index)]
    study = dict(
        ent=ent,
        uid=generate_uid(entropy_srcs=ent + ["study"]),
        **{"for": generate_uid(entropy_srcs=ent + ["for"])},
        vendor=vendor,
        model=str(rng.choice(V["model"])),
        field=field,
        date="2025%02d%02d" % (rng.integers(1, 13), rng.integers(1, 29)),
        time="%02d%02d%02d" % (rng.integers(7, 19), rng.integers(0, 60), rng.integers(0, 60)),
        acc="F5A%d%05d" % (seed, index),
        pid="F5-%d-%04d" % (seed, index + 1),
        sid=str(index + 1),
        sex=str(rng.choice(["M", "F"])),
        age="%03dY" % rng.integers(22, 85),
    )
    nums = [int(v) for v in rng.permutation(np.arange(2, 9))[:3]]
    bits = 12 if vendor != "GE MEDICAL SYSTEMS" else 16
    # target T2 sagittal
    # exactly 3 of every 20 consecutive studies get a transposed (rows along z) T2 series
    g2 = plan_sag(rng, A, transposed=((index * 7 + seed) % 20) < 3)
    hh = int(study["time"][:2])
    p2 = dict(
        TR=float(rng.uniform(2500, 5000)),
        TE=float(rng.uniform(80, 120)),
        field=field,
        snr=float(rng.uniform(8, 50)),
        blur=float(rng.uniform(0.35, 0.9)),
        gain=float(rng.uniform(1500, 3200)),
    )
    im2 = render_series(A, g2, p2, rng)
    m2 = dict(
        tag="t2sag",
        desc=str(rng.choice(V["t2"])),
        TR=p2["TR"],
        TE=p2["TE"],
        etl=int(rng.choice(V["etl"])),
        flip=90 if vendor != "GE MEDICAL SYSTEMS" else 160,
        num=nums[0],
        bits=bits,
        time="%02d%02d00" % (hh, 10),
        wc=p2["gain"] * 0.45,
        ww=p2["gain"] * 0.9,
    )
    t2uid = write_series(os.path.join(sdir, "series_%02d" % nums[0]), im2, g2, m2, study)
    # decoy T1 sagittal
    g1 = derive_t1(rng, g2)
    p1 = dict(
        TR=float(rng.uniform(400, 750)),
        TE=float(rng.uniform(8, 20)),
        field=field,
        snr=float(rng.uniform(10, 45)),
        blur=float(rng.uniform(0.35, 0.9)),
        gain=float(rng.uniform(1500, 3200)),
    )
    im1 = render_series(A, g1, p1, rng)
    m1 = dict(
        tag="t1sag",
        desc=str(rng.choice(V["t1"])),
        TR=p1["TR"],
        TE=p1["TE"],
        etl=int(rng.choice([3, 4, 5])),
        flip=90,
        num=nums[1],
        bits=bits,
        time="%02d%02d00" % (hh, 16),
        wc=p1["gain"] * 0.45,
        ww=p1["gain"] * 0.9,
    )
    write_series(os.path.join(sdir, "series_%02d" % nums[1]), im1, g1, m1, study)
    # decoy axial T2
    ga = plan_axial(rng, A)
    pa = dict(
        TR=float(rng.uniform(3000, 5500)),
        TE=float(rng.uniform(85, 115)),
        field=field,
        snr=float(rng.uniform(10, 45)),
        blur=float(rng.uniform(0.35, 0.9)),
        gain=float(rng.uniform(1500, 3200)),
    )
    ima = render_series(A, ga, pa, rng)
    ma = dict(
        tag="t2ax",
        desc=str(rng.choice(V["ax"])),
        TR=pa["TR"],
        TE=pa["TE"],
        etl=int(rng.choice(V["etl"])),
        flip=90,
        num=nums[2],
        bits=bits,
        time="%02d%02d00" % (hh, 22),
        wc=pa["gain"] * 0.45,
        ww=pa["gain"] * 0.9,
    )
    write_series(os.path.join(sdir, "series_%02d" % nums[2]), ima, ga, ma, study)
    # truth
    discs = []
    for lv in ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]:
        e = A.byname[lv]
        mid = 0.5 * (e.P_top + e.P_bot)
        discs.append(
            {
                "level": lv,
                "patient_xyz": [round(A.x0, 3), round(float(mid[0]), 3), round(float(mid[1]), 3)],
            }
        )
    N = g2["N"] / np.linalg.norm(g2["N"])
    truth = {
        "set": "fifth",
        "variation": "fifth",
        "variant": variant,
        "lstv": variant != "normal",
        "seed": int(seed),
        "index": int(index),
        "study_instance_uid": study["uid"],
        "t2_series_instance_uid": t2uid,
        "slice_normal": [round(float(v), 6) for v in N],
        "discs": discs,
    }
    with open(os.path.join(sdir, "truth.json"), "w") as fh:
        json.dump(truth, fh, indent=1)
    return truth


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.time()
    for i in range(args.start, args.start + args.count):
        t = time.time()
        tr = make_study(args.out_dir, args.seed, i)
        print("fifth-%03d %-14s %.1fs" % (i, tr["variant"], time.time() - t), flush=True)
    print("total %.1fs" % (time.time() - t0))


if __name__ == "__main__":
    main()
