"""Sixth independent synthetic lumbar-spine MR phantom with known LSTV truth.

Every study is rendered from one 3-D analytic model of the lower thoracic spine, the lumbar
spine, the sacrum, the coccyx and the surrounding soft tissue.  The spine is a chain of rigid
vertebral segments joined by wedge-shaped discs, so lordosis, kyphosis and the sacral curve
come from the wedge angles of bodies and discs.  Each pixel of each slice is sampled at its
DICOM patient coordinate (LPS: x to the patient's left, y posterior, z to the head), averaged
over the slice thickness, then passed through a simple MR acquisition model (surface-coil bias,
complex Gaussian noise giving Rician magnitude noise, k-space zero-filling / truncation).

A study holds three series of one StudyInstanceUID / FrameOfReferenceUID:

* sagittal T2 TSE/FSE (the target series),
* sagittal T1 TSE/FSE (decoy; same slice geometry as the T2, different contrast and matrix),
* axial T2 (decoy; angled blocks through the lower discs or a straight stack),

plus ``truth.json`` with the variant (normal, lumbarization, sacralization), the T2 slice
normal and the centres of the L1-L2 ... L5-S1 disc spaces in patient millimetres.

Usage::

    python bench/sixth_phantom.py OUT_DIR --count 40 --seed 11
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

# --------------------------------------------------------------------------------------------
# Tissues: label id -> (T2-weighted, T1-weighted) relative signal before per-study jitter.
# --------------------------------------------------------------------------------------------
TISSUES: dict[str, tuple[float, float]] = {
    "air": (0.0, 0.0),
    "fat": (0.80, 1.00),
    "muscle": (0.19, 0.36),
    "marrow": (0.46, 0.66),
    "cortex": (0.035, 0.04),
    "anulus": (0.15, 0.30),
    "nucleus": (0.90, 0.34),
    "csf": (1.00, 0.13),
    "cord": (0.42, 0.46),
    "root": (0.28, 0.40),
    "ligament": (0.07, 0.16),
    "vessel": (0.05, 0.06),
    "soft": (0.34, 0.42),
    "fluid": (0.92, 0.10),
    "gas": (0.01, 0.01),
    "liver": (0.20, 0.48),
    "facet": (0.55, 0.22),
    "remnant": (0.12, 0.28),
    "cartilage": (0.24, 0.34),
}
LABEL = {name: i for i, name in enumerate(TISSUES)}
AIR, FAT, MUSCLE, MARROW, CORTEX = (LABEL[n] for n in ("air", "fat", "muscle", "marrow", "cortex"))
ANULUS, NUCLEUS, CSF, CORD, ROOT = (LABEL[n] for n in ("anulus", "nucleus", "csf", "cord", "root"))
LIGAMENT, VESSEL, SOFT, FLUID, GAS = (
    LABEL[n] for n in ("ligament", "vessel", "soft", "fluid", "gas")
)
LIVER, FACET, REMNANT, CARTILAGE = (LABEL[n] for n in ("liver", "facet", "remnant", "cartilage"))
DISC_LABELS = (ANULUS, NUCLEUS, REMNANT)

KIND_T, KIND_L, KIND_S, KIND_C = 0, 1, 2, 3  # thoracic, lumbar-like, fused sacral, coccygeal
J_DISC, J_FUSED, J_TRANS, J_COCC = 0, 1, 2, 3  # junction types
VARIANTS = ("normal", "lumbarization", "normal", "sacralization")
TRUTH_DISCS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")

# --------------------------------------------------------------------------------------------
# Vendors and protocol naming.
# --------------------------------------------------------------------------------------------
VENDORS: dict[str, dict] = {
    "SIEMENS": {
        "models": [
            ("Aera", 1.5),
            ("Avanto_fit", 1.5),
            ("MAGNETOM Sola", 1.5),
            ("Skyra", 3.0),
            ("Prisma", 3.0),
            ("MAGNETOM Vida", 3.0),
        ],
        "t2": ["t2_tse_sag_384", "t2_tse_sag", "T2_TSE_SAG", "t2_tse_sag_p2"],
        "t1": ["t1_tse_sag", "t1_tse_sag_320", "T1_TSE_SAG"],
        "ax": ["t2_tse_tra", "t2_tse_tra_320", "T2_TSE_TRA"],
        "bits": 12,
        "software": ["syngo MR E11", "syngo MR XA20", "syngo MR XA31"],
        "image_type": ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
        "coil": "SP3-5",
    },
    "GE MEDICAL SYSTEMS": {
        "models": [
            ("Optima MR450w", 1.5),
            ("SIGNA Artist", 1.5),
            ("DISCOVERY MR750", 3.0),
            ("SIGNA Premier", 3.0),
            ("SIGNA Architect", 3.0),
        ],
        "t2": ["Sag T2 FRFSE", "SAG T2 FSE", "Sag T2"],
        "t1": ["Sag T1 FSE", "SAG T1 FSE", "Sag T1"],
        "ax": ["Ax T2 FRFSE", "AX T2 FSE", "Ax T2"],
        "bits": 16,
        "software": ["27\\LX\\MR Software release:DV26.0_R03", "29\\LX\\MR29.1_EA"],
        "image_type": ["ORIGINAL", "PRIMARY", "OTHER"],
        "coil": "CTL 456",
    },
    "Philips Medical Systems": {
        "models": [
            ("Ingenia", 1.5),
            ("Achieva", 1.5),
            ("Ingenia", 3.0),
            ("Achieva dStream", 3.0),
            ("Ingenia Elition X", 3.0),
        ],
        "t2": ["T2W_TSE_SAG", "sT2W_TSE", "T2W_TSE SAG"],
        "t1": ["T1W_TSE_SAG", "sT1W_TSE", "T1W_TSE SAG"],
        "ax": ["T2W_TSE_TRA", "aT2W_TSE", "T2W_TSE_AX"],
        "bits": 12,
        "software": ["5.4.1\\5.4.1.0", "5.7.1\\5.7.1.1"],
        "image_type": ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
        "coil": "MULTI COIL",
    },
    "CANON_MEC": {
        "models": [("Vantage Orian", 1.5), ("Vantage Titan", 1.5), ("Vantage Galan 3T", 3.0)],
        "t2": ["T2WI_SAG_FSE", "Sag T2 FSE", "T2 SAG FSE"],
        "t1": ["T1WI_SAG_FSE", "Sag T1 FSE", "T1 SAG FSE"],
        "ax": ["T2WI_AX_FSE", "Ax T2 FSE", "T2 AX FSE"],
        "bits": 16,
        "software": ["V6.0", "V7.0"],
        "image_type": ["ORIGINAL", "PRIMARY", "OTHER"],
        "coil": "Spine",
    },
}


# --------------------------------------------------------------------------------------------
# Anatomy description
# --------------------------------------------------------------------------------------------
@dataclass
class Segment:
    """One rigid vertebral segment (body plus posterior elements) of the chain."""

    name: str
    kind: int
    h: float  # body height at mid depth (mm)
    wedge: float  # anterior minus posterior body height (mm)
    depth: float  # AP depth of the body
    width: float  # transverse width of the body
    canal_ap: float
    canal_w: float
    half_width: float = 0.0  # half width of a sacral segment incl. the lateral masses
    marrow: float = 1.0
    sp_len: float = 0.0  # spinous process length beyond the lamina
    sp_slope: float = 0.0  # caudal slope of the spinous process (mm per mm)
    tp_len: float = 0.0  # transverse process length
    ped_w: float = 8.0
    lam_t: float = 6.0
    conc: float = 1.2  # endplate concavity
    bridge_r: bool = False  # enlarged transverse process fused/articulating with the ala
    bridge_l: bool = False
    pseudo: bool = False  # bridge with a pseudarthrosis (Castellvi II) instead of fusion


@dataclass
class Junction:
    """The space between segment k and k+1: disc, fused remnant or transitional disc."""

    kind: int
    ha: float  # anterior height (mm)
    hp: float  # posterior height (mm)
    nuc: float = 1.0  # nucleus T2 brightness relative to a healthy disc
    bulge: float = 0.6
    cleft: bool = False
    remnant: float = 0.12  # T2 value of a rudimentary remnant
    bridge: str = "none"  # transitional: none / anterior / complete
    hernia: float = 0.0
    hernia_x: float = 0.0


@dataclass
class Anatomy:
    """Drawn anatomy of one patient before it is placed in patient space."""

    variant: str
    segments: list[Segment]
    junctions: list[Junction]
    scale: float
    lordosis: float
    sacral_slope: float
    draws: dict


THORACIC = [f"T{i}" for i in range(4, 13)]
# name: (h, wedge, depth, width, canal_ap, canal_w, tp_len)
LUMBAR = {
    "L1": (25.5, -1.0, 32.0, 41.0, 17.0, 22.0, 16.0),
    "L2": (26.5, -0.3, 33.5, 43.0, 16.0, 22.0, 20.0),
    "L3": (27.0, 0.4, 35.0, 45.0, 15.0, 23.0, 28.0),
    "L4": (27.0, 1.0, 36.0, 47.0, 15.0, 24.0, 23.0),
    "L5": (26.5, 2.5, 36.0, 49.0, 16.0, 26.0, 18.0),
}
# name: (h, wedge, depth, width, canal_ap, canal_w, half_width)
SACRAL_NORMAL = [
    ("S1", 28.0, -2.0, 36.0, 46.0, 14.0, 28.0, 52.0),
    ("S2", 24.0, -4.0, 28.0, 36.0, 11.0, 24.0, 42.0),
    ("S3", 20.0, -4.0, 22.0, 28.0, 9.0, 20.0, 32.0),
    ("S4", 16.0, -3.0, 17.0, 22.0, 7.0, 14.0, 21.0),
    ("S5", 12.0, -2.0, 13.0, 16.0, 5.0, 10.0, 13.0),
]
SACRAL_SHORT = [  # S2..S5 after lumbarization of S1
    ("S2", 26.0, -2.5, 33.0, 42.0, 13.0, 26.0, 50.0),
    ("S3", 21.0, -4.0, 25.0, 32.0, 10.0, 22.0, 39.0),
    ("S4", 16.5, -4.0, 19.0, 24.0, 8.0, 16.0, 27.0),
    ("S5", 12.0, -2.5, 14.0, 17.0, 5.0, 10.0, 15.0),
]
COCCYX = [
    ("Co1", 10.0, -2.0, 11.0, 14.0),
    ("Co2", 8.0, -2.0, 9.0, 12.0),
    ("Co3", 7.0, -1.5, 8.0, 10),
]
DISC_BASE = {  # upper segment -> (anterior, posterior) height of the disc below it
    "T12": (7.0, 6.0),
    "L1": (9.0, 7.0),
    "L2": (10.5, 7.5),
    "L3": (11.5, 8.0),
    "L4": (12.5, 8.0),
    "L5": (13.0, 6.5),
}
DEGEN_P = {"L1": 0.10, "L2": 0.12, "L3": 0.18, "L4": 0.35, "L5": 0.35, "S1": 0.2}


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _spine_segments(rng: np.random.Generator, variant: str) -> list[Segment]:
    """Base segment list T4..Co3 with variant-specific lumbosacral morphology."""
    segs = []
    for i, name in enumerate(THORACIC):
        slope = 0.7 if i < 6 else (0.5, 0.35, 0.22)[i - 6]
        segs.append(
            Segment(name, KIND_T, 17.5 + 0.75 * i, -1.6 + 0.07 * i, 24 + 0.8 * i, 29 + 1.1 * i,
                    15.0, 16 + 0.5 * i, sp_len=30.0, sp_slope=slope, ped_w=6.5, lam_t=5.0,
                    conc=0.8)
        )  # fmt: skip
    for name, (h, wedge, d, w, cd, cw, tp) in LUMBAR.items():
        segs.append(
            Segment(name, KIND_L, h, wedge, d, w, cd, cw, sp_len=27.0, sp_slope=0.12,
                    tp_len=tp, ped_w=8.5, lam_t=6.5, conc=_u(rng, 0.9, 2.0))
        )  # fmt: skip
    l5 = segs[-1]
    l5.sp_len = 22.0
    l5.wedge = _u(rng, 1.0, 5.5)
    if variant == "sacralization":
        l5.wedge = _u(rng, 4.0, 8.0)
        l5.h = _u(rng, 23.5, 27.0)
        l5.width = _u(rng, 49.0, 55.0)
        l5.sp_len = _u(rng, 12.0, 20.0)
        side = rng.random()
        l5.bridge_r = side < 0.75
        l5.bridge_l = side > 0.25
        l5.pseudo = rng.random() < 0.4
        l5.tp_len = 30.0
    elif rng.random() < 0.15:
        l5.tp_len = _u(rng, 24.0, 30.0)  # big but free transverse processes in a normal
    sacral = SACRAL_NORMAL
    if variant == "lumbarization":
        segs.append(
            Segment("S1", KIND_L, _u(rng, 24.0, 27.0), _u(rng, -0.5, 2.0), 35.0, 47.0, 15.0,
                    25.0, sp_len=_u(rng, 14.0, 22.0), sp_slope=0.15, tp_len=_u(rng, 15.0, 24.0),
                    ped_w=9.0, lam_t=6.5, conc=_u(rng, 0.9, 1.8))
        )  # fmt: skip
        sacral = SACRAL_SHORT
    for name, h, wedge, d, w, cd, cw, hw in sacral:
        segs.append(Segment(name, KIND_S, h, wedge, d, w, cd, cw, half_width=hw, sp_len=10.0,
                            lam_t=7.0, conc=0.6))  # fmt: skip
    for name, h, wedge, d, w in COCCYX:
        segs.append(Segment(name, KIND_C, h, wedge, d, w, 0.0, 0.0, conc=0.4))
    return segs


def _jitter_segments(rng: np.random.Generator, segs: list[Segment], sc: float) -> None:
    for s in segs:
        s.h *= _u(rng, 0.93, 1.07) * sc
        s.depth *= _u(rng, 0.93, 1.07) * sc
        s.width *= _u(rng, 0.93, 1.07) * sc
        s.wedge *= sc
        s.canal_ap *= _u(rng, 0.88, 1.12) * math.sqrt(sc)
        s.canal_w *= _u(rng, 0.9, 1.1) * math.sqrt(sc)
        s.half_width *= _u(rng, 0.94, 1.06) * sc
        s.sp_len *= _u(rng, 0.85, 1.15) * sc
        s.tp_len *= _u(rng, 0.85, 1.15) * sc
        s.ped_w *= sc
        s.lam_t *= sc
        s.marrow = _u(rng, 0.9, 1.1)


def _draw_junction(rng: np.random.Generator, upper: Segment, lower: Segment, variant: str):
    """Junction between two segments; degeneration is drawn for every variant alike."""
    if upper.kind == KIND_T:
        i = THORACIC.index(upper.name)
        return Junction(J_DISC, 4.2 + 0.15 * i, 4.6 + 0.15 * i, nuc=_u(rng, 0.6, 1.0))
    if upper.kind == KIND_C or lower.kind == KIND_C:
        return Junction(J_COCC, _u(rng, 1.5, 2.8), _u(rng, 1.5, 2.8))
    if upper.kind == KIND_S:
        mean = _u(rng, 1.5, 3.2) if upper.name == "S1" else _u(rng, 1.0, 2.2)
        faint = rng.random() < (0.4 if upper.name == "S1" else 0.2)
        rem = _u(rng, 0.28, 0.5) if faint else _u(rng, 0.06, 0.18)
        return Junction(J_FUSED, mean * 0.9, mean * 1.1, remnant=rem)
    if upper.name == "L5" and variant == "sacralization":
        mean = _u(rng, 1.5, 5.0)
        wedge = _u(rng, -0.5, 1.5)
        bridge = str(rng.choice(["none", "anterior", "complete"], p=[0.35, 0.3, 0.35]))
        return Junction(J_TRANS, mean + wedge / 2, mean - wedge / 2, remnant=_u(rng, 0.06, 0.3),
                        bridge=bridge, bulge=0.3)  # fmt: skip
    if upper.name == "S1":  # lumbarization: a well formed mobile disc below S1
        ha, hp = _u(rng, 7.5, 11.0), _u(rng, 5.0, 7.5)
    else:
        ha, hp = DISC_BASE[upper.name]
        ha, hp = ha * _u(rng, 0.9, 1.1), hp * _u(rng, 0.9, 1.1)
    j = Junction(J_DISC, ha, hp, nuc=_u(rng, 0.75, 1.05), bulge=_u(rng, 0.3, 1.2))
    if rng.random() < DEGEN_P[upper.name]:
        f = _u(rng, 0.45, 0.8)
        j.ha, j.hp = j.ha * f, j.hp * f
        j.nuc = _u(rng, 0.12, 0.45)
        j.bulge = _u(rng, 1.5, 3.5)
    j.cleft = j.nuc > 0.6 and rng.random() < 0.4
    if upper.name in ("L4", "L5") and rng.random() < 0.12:
        j.hernia = _u(rng, 3.0, 6.0)
        j.hernia_x = _u(rng, -8.0, 8.0)
    return j


def _scale_lordosis(segs: list[Segment], juncs: list[Junction], target: float) -> None:
    """Scale lumbar disc wedges (and L3-L5 body wedges) so L1..S1 lordosis hits target."""
    names = [s.name for s in segs]
    i1, is1 = names.index("L1"), names.index("S1")
    fixed = scal = 0.0
    scalable_b, scalable_j = [], []
    for k in range(i1, is1):
        s = segs[k]
        ang = math.degrees(math.atan(s.wedge / s.depth))
        trans_l5 = s.name == "L5" and juncs[k].kind == J_TRANS
        if s.name in ("L3", "L4", "L5") and s.wedge > 0 and not trans_l5:
            scal += ang
            scalable_b.append(k)
        else:
            fixed += ang
        j = juncs[k]
        dd = 0.5 * (s.depth + segs[k + 1].depth)
        ang = math.degrees(math.atan((j.ha - j.hp) / dd))
        if j.kind == J_DISC:
            scal += ang
            scalable_j.append(k)
        else:
            fixed += ang
    f = float(np.clip((target - fixed) / max(scal, 1e-3), 0.4, 2.0))
    for k in scalable_b:
        segs[k].wedge *= f
    for k in scalable_j:
        j = juncs[k]
        mean, w = 0.5 * (j.ha + j.hp), (j.ha - j.hp) * f
        w = min(w, 1.4 * mean)
        j.ha, j.hp = mean + w / 2, mean - w / 2


def draw_anatomy(rng: np.random.Generator, variant: str) -> Anatomy:
    """Draw segment and junction sizes, degeneration and curvature for one patient."""
    sc = _u(rng, 0.87, 1.15)
    disc_sc = _u(rng, 0.9, 1.1)
    segs = _spine_segments(rng, variant)
    _jitter_segments(rng, segs, sc)
    juncs = [_draw_junction(rng, segs[k], segs[k + 1], variant) for k in range(len(segs) - 1)]
    for j in juncs:
        f = sc * (disc_sc if j.kind == J_DISC else 1.0)
        j.ha, j.hp = j.ha * f, j.hp * f
    lordosis = _u(rng, 30.0, 60.0)
    _scale_lordosis(segs, juncs, lordosis)
    names = [s.name for s in segs]
    degen = [
        f"{names[k]}-{names[k + 1]}"
        for k, j in enumerate(juncs)
        if j.kind == J_DISC and j.nuc < 0.5 and segs[k].kind == KIND_L
    ]
    draws = {
        "scale": round(sc, 3),
        "disc_scale": round(disc_sc, 3),
        "lordosis_deg": round(lordosis, 1),
        "degenerated_discs": degen,
        "l5_wedge_mm": round(segs[names.index("L5")].wedge, 2),
    }
    if variant == "sacralization":
        l5 = segs[names.index("L5")]
        jt = juncs[names.index("L5")]
        draws["transitional"] = {
            "bridge_right": l5.bridge_r,
            "bridge_left": l5.bridge_l,
            "pseudarthrosis": l5.pseudo,
            "disc_bridge": jt.bridge,
            "disc_height_mm": round(0.5 * (jt.ha + jt.hp), 2),
        }
    if variant == "lumbarization":
        jt = juncs[names.index("S1")]
        draws["s1_s2_disc_mm"] = round(0.5 * (jt.ha + jt.hp), 2)
    return Anatomy(variant, segs, juncs, sc, lordosis, _u(rng, 30.0, 50.0), draws)


# --------------------------------------------------------------------------------------------
# Chain geometry in the sagittal (y, z) plane
# --------------------------------------------------------------------------------------------
def _rot(vec: np.ndarray, ang: float) -> np.ndarray:
    """Rotate (y, z) vectors by ang radians (positive turns 'down' towards posterior)."""
    c, s = math.cos(ang), math.sin(ang)
    return np.stack([c * vec[..., 0] - s * vec[..., 1], s * vec[..., 0] + c * vec[..., 1]], -1)


@dataclass
class Chain:
    """Frames of all segments: superior endplate centre, caudal axis, anterior normal."""

    top: np.ndarray  # (K, 2) y, z
    axis: np.ndarray  # (K, 2) unit, pointing caudally along the body
    ant: np.ndarray  # (K, 2) unit, pointing anteriorly
    bottom: np.ndarray  # (K, 2) inferior endplate centre

    def disc_centre(self, k: int) -> np.ndarray:
        return 0.5 * (self.bottom[k] + self.top[k + 1])


def build_chain(anat: Anatomy, anchor_yz: tuple[float, float], anchor: str) -> Chain:
    """Stack the segments along the wedge angles, set the sacral slope, place in space."""
    segs, juncs = anat.segments, anat.junctions
    pos = np.zeros(2)
    axis = np.array([0.0, -1.0])
    tops, axes, bottoms = [], [], []
    for k, s in enumerate(segs):
        tops.append(pos.copy())
        axes.append(axis.copy())
        bottom = pos + s.h * axis
        bottoms.append(bottom)
        axis = _rot(axis, math.atan(s.wedge / s.depth))
        if k < len(juncs):
            j = juncs[k]
            dd = 0.5 * (s.depth + segs[k + 1].depth)
            beta = math.atan((j.ha - j.hp) / dd)
            pos = bottom + 0.5 * (j.ha + j.hp) * _rot(axis, beta / 2)
            axis = _rot(axis, beta)
    top, ax, bot = np.array(tops), np.array(axes), np.array(bottoms)
    names = [s.name for s in segs]
    i_s1 = names.index("S1")
    cur = math.atan2(ax[i_s1, 0], -ax[i_s1, 1])
    delta = math.radians(anat.sacral_slope) - cur
    top, ax, bot = _rot(top, delta), _rot(ax, delta), _rot(bot, delta)
    ka = names.index(anchor)
    centre = 0.5 * (top[ka] + bot[ka])
    shift = np.asarray(anchor_yz) - centre
    top, bot = top + shift, bot + shift
    ant = np.stack([ax[:, 1], -ax[:, 0]], -1)  # (0,-1) -> (-1, 0): anterior is -y
    return Chain(top, ax, ant, bot)


def _chaikin(pts: np.ndarray, n_iter: int) -> np.ndarray:
    for _ in range(n_iter):
        a, b = pts[:-1], pts[1:]
        mid = np.empty((2 * len(a), pts.shape[1]))
        mid[0::2] = 0.75 * a + 0.25 * b
        mid[1::2] = 0.25 * a + 0.75 * b
        pts = np.vstack([pts[:1], mid, pts[-1:]])
    return pts


class LevelMap:
    """Coarse (y, z) grid of the continuous level coordinate and the signed AP distance.

    lam = k + 0.5 at the centre of body k and k + 1 at the disc below it; vc is the
    signed distance from the smoothed body centre line (positive anterior).
    """

    def __init__(self, chain: Chain, bbox: tuple[float, float, float, float], step: float = 2.5):
        n = len(chain.top)
        pts, lams = [chain.top[0]], [0.0]
        for k in range(n):
            pts.append(0.5 * (chain.top[k] + chain.bottom[k]))
            lams.append(k + 0.5)
            pts.append(chain.disc_centre(k) if k < n - 1 else chain.bottom[k])
            lams.append(k + 1.0)
        poly = _chaikin(np.column_stack([np.array(pts), lams]), 3)
        seg = np.linalg.norm(np.diff(poly[:, :2], axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        s = np.arange(0.0, arc[-1], 4.0)
        curve = np.column_stack([np.interp(s, arc, poly[:, i]) for i in range(3)])
        tan = np.gradient(curve[:, :2], axis=0)
        dlam = np.gradient(curve[:, 2])
        ds = np.linalg.norm(tan, axis=1)
        tan /= ds[:, None]
        lam_per_mm = dlam / ds
        normal = np.stack([tan[:, 1], -tan[:, 0]], -1)
        y0, y1, z0, z1 = bbox
        self.step, self.y0, self.z0 = step, y0, z0
        ys, zs = np.arange(y0, y1 + step, step), np.arange(z0, z1 + step, step)
        gy, gz = np.meshgrid(ys, zs, indexing="ij")
        q = np.column_stack([gy.ravel(), gz.ravel()])
        lam, vc = np.empty(len(q)), np.empty(len(q))
        for a in range(0, len(q), 8192):
            qq = q[a : a + 8192]
            d2 = ((qq[:, None, :] - curve[None, :, :2]) ** 2).sum(-1)
            i = np.argmin(d2, axis=1)
            rel = qq - curve[i, :2]
            lam[a : a + 8192] = curve[i, 2] + (rel * tan[i]).sum(1) * lam_per_mm[i]
            vc[a : a + 8192] = (rel * normal[i]).sum(1)
        self.lam = np.clip(lam, 0.0, float(n)).reshape(gy.shape).astype(np.float32)
        self.vc = vc.reshape(gy.shape).astype(np.float32)

    def lookup(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ny, nz = self.lam.shape
        fy = np.clip((y - self.y0) / self.step, 0, ny - 1.001)
        fz = np.clip((z - self.z0) / self.step, 0, nz - 1.001)
        iy, iz = fy.astype(np.int32), fz.astype(np.int32)
        wy, wz = (fy - iy).astype(np.float32), (fz - iz).astype(np.float32)
        out = []
        for g in (self.lam, self.vc):
            a = g[iy, iz] * (1 - wy) + g[iy + 1, iz] * wy
            b = g[iy, iz + 1] * (1 - wy) + g[iy + 1, iz + 1] * wy
            out.append((a * (1 - wz) + b * wz).astype(np.float32))
        return out[0], out[1]


# --------------------------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------------------------
class Pts:
    """A set of samples with per-sample arrays; sub() restricts all of them by a mask."""

    def __init__(self, **arrays: np.ndarray) -> None:
        self.__dict__.update(arrays)

    def sub(self, mask: np.ndarray) -> Pts:
        return Pts(**{k: v[mask] for k, v in self.__dict__.items()})


class Canvas:
    """Label and two-contrast signal arrays painted in priority order (later wins)."""

    def __init__(self, n: int, t2tab: np.ndarray, t1tab: np.ndarray) -> None:
        self.lab = np.zeros(n, np.uint8)
        self.t2 = np.zeros(n, np.float32)
        self.t1 = np.zeros(n, np.float32)
        self.t2tab, self.t1tab = t2tab, t1tab

    def paint(self, idx: np.ndarray, label: int, v2=None, v1=None) -> None:
        if idx.size == 0:
            return
        self.lab[idx] = label
        self.t2[idx] = self.t2tab[label] if v2 is None else v2
        self.t1[idx] = self.t1tab[label] if v1 is None else v1


class WaveField:
    """Smooth random 3-D texture: normalised sum of random plane waves."""

    def __init__(self, rng: np.random.Generator, n: int, wl: tuple[float, float], squash=(1, 1, 1)):
        dirs = rng.normal(size=(n, 3)) * np.asarray(squash, float)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        self.k = (dirs * (2 * np.pi / rng.uniform(wl[0], wl[1], n))[:, None]).astype(np.float32)
        self.ph = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        self.norm = np.float32(math.sqrt(2.0 / n))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape, np.float32)
        for (kx, ky, kz), ph in zip(self.k, self.ph, strict=True):
            out += np.cos(kx * x + ky * y + kz * z + ph)
        return out * self.norm


def _smooth01(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# The 3-D model
# --------------------------------------------------------------------------------------------
class SpineModel:
    """Analytic 3-D model evaluated at arbitrary patient coordinates."""

    def __init__(self, anat: Anatomy, chain: Chain, x0: float, rng: np.random.Generator):
        self.anat, self.chain, self.x0 = anat, chain, x0
        segs, juncs = anat.segments, anat.junctions
        self.K = len(segs)
        self.names = [s.name for s in segs]
        self.centres = np.arange(self.K, dtype=np.float32) + 0.5
        self._segment_arrays(segs)
        self._junction_arrays(juncs)
        self._draw_soft_params(rng)
        self._draw_tissue_tables(rng)
        self.tex_marrow = WaveField(rng, 6, (8.0, 25.0))
        self.tex_bowel = WaveField(rng, 8, (25.0, 60.0))
        self.tex_bowel2 = WaveField(rng, 6, (15.0, 40.0))
        self.tex_muscle = WaveField(rng, 6, (8.0, 20.0), squash=(1.0, 1.0, 0.2))
        self.levels: LevelMap | None = None

    # ---- parameter tables -----------------------------------------------------------------
    def _segment_arrays(self, segs: list[Segment]) -> None:
        c = self.chain
        self.top_y, self.top_z = _f32(c.top[:, 0]), _f32(c.top[:, 1])
        self.d_y, self.d_z = _f32(c.axis[:, 0]), _f32(c.axis[:, 1])
        self.n_y, self.n_z = _f32(c.ant[:, 0]), _f32(c.ant[:, 1])
        for attr in ("h", "depth", "width", "canal_ap", "canal_w", "half_width", "marrow",
                     "sp_len", "sp_slope", "tp_len", "ped_w", "lam_t", "conc"):  # fmt: skip
            setattr(self, "s_" + attr, _f32([getattr(s, attr) for s in segs]))
        self.slope = _f32([s.wedge / s.depth for s in segs])
        self.kind = np.array([s.kind for s in segs], np.int8)
        self.first_sacral = int(np.argmax(self.kind == KIND_S))
        self.last_sacral = int(np.nonzero(self.kind == KIND_S)[0][-1])
        self.bridge = np.array([[s.bridge_r, s.bridge_l] for s in segs])
        self.pseudo = np.array([s.pseudo for s in segs])
        self.hw_next = np.append(self.s_half_width[1:], 0.0).astype(np.float32)

    def _junction_arrays(self, juncs: list[Junction]) -> None:
        pad = [*juncs, Junction(J_COCC, 2.0, 2.0)]
        self.j_kind = np.array([j.kind for j in pad], np.int8)
        self.j_mean = _f32([0.5 * (j.ha + j.hp) for j in pad])
        self.j_nuc = _f32([j.nuc for j in pad])
        self.j_bulge = _f32([j.bulge for j in pad])
        self.j_cleft = np.array([j.cleft for j in pad])
        self.j_rem = _f32([j.remnant for j in pad])
        self.j_bridge = np.array([{"none": 0, "anterior": 1, "complete": 2}[j.bridge] for j in pad])
        self.j_hernia = _f32([j.hernia for j in pad])
        self.j_hernia_x = _f32([j.hernia_x for j in pad])
        self.d_up = np.concatenate([[5.0], self.j_mean[:-1]]).astype(np.float32)
        self.d_dn = self.j_mean.copy()
        self.h_next = np.append(self.s_h[1:], 8.0).astype(np.float32)

    def _draw_soft_params(self, rng: np.random.Generator) -> None:
        sc = self.anat.scale
        n = self.names
        self.i = {name: n.index(name) for name in ("T11", "T12", "L1", "L3", "L4", "L5", "S1")}
        self.i["S2"] = n.index("S2")
        self.i["S3"] = n.index("S3")
        self.lam_conus = self.i["L1"] + _u(rng, 0.75, 1.6)
        self.lam_sac = self.i["S2"] + _u(rng, 0.2, 0.8)
        self.epi_post = _u(rng, 0.6, 1.5)
        self.epi_ant = _u(rng, 0.5, 1.6)
        self.back_fat = _u(rng, 8.0, 40.0) * sc
        self.retro_fat = _u(rng, 5.0, 16.0)
        self.abd_depth = _u(rng, 95.0, 175.0) * sc
        self.belly = _u(rng, 0.0, 35.0) * sc
        self.body_hw = _u(rng, 135.0, 175.0) * sc
        self.aorta = (_u(rng, 8.0, 14.0), _u(rng, 8.5, 12.0) * sc)  # x offset, radius
        self.ivc = (_u(rng, 15.0, 22.0), _u(rng, 8.0, 12.0) * sc)
        self.ivc_val = _u(rng, 0.04, 0.3)
        self.lam_bif = self.i["L4"] + _u(rng, 0.2, 0.9)
        self.bladder = rng.random() < 0.45
        self.septa = _u(rng, 0.1, 0.5)
        self.bowel_fluid = _u(rng, 0.9, 1.5)
        self.bladder_r = np.array([_u(rng, 28, 45), _u(rng, 18, 32), _u(rng, 16, 30)]) * sc
        self.rectum_r = _u(rng, 9.0, 15.0) * sc
        roots = 16
        self.roots = np.column_stack(
            [rng.uniform(-0.75, 0.75, roots), rng.uniform(0.05, 0.75, roots),
             rng.uniform(0.55, 1.0, roots)]
        ).astype(np.float32)  # fmt: skip
        self.hem = None
        if rng.random() < 0.25:
            k = self.i["L1"] + int(rng.integers(0, 5))
            self.hem = (k, _u(rng, 0.25, 0.75), _u(rng, -0.3, 0.3), _u(rng, -0.3, 0.3),
                        _u(rng, 3.0, 7.0))  # fmt: skip

    def _draw_tissue_tables(self, rng: np.random.Generator) -> None:
        base = np.array(list(TISSUES.values()), np.float32)
        self.t2tab = (base[:, 0] * rng.uniform(0.8, 1.2, len(base))).astype(np.float32)
        self.t1tab = (base[:, 1] * rng.uniform(0.8, 1.2, len(base))).astype(np.float32)
        self.t2tab[CSF] = max(self.t2tab[CSF], 1.05 * self.t2tab[FAT])

    # ---- helpers ----------------------------------------------------------------------------
    def seg_interp(self, lam: np.ndarray, arr: np.ndarray) -> np.ndarray:
        return np.interp(lam, self.centres, arr).astype(np.float32)

    def frame(self, k: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dy, dz = y - self.top_y[k], z - self.top_z[k]
        return dy * self.d_y[k] + dz * self.d_z[k], dy * self.n_y[k] + dz * self.n_z[k]

    def _bone(self, cv: Canvas, g: np.ndarray, dist: np.ndarray, mf: np.ndarray, ct=1.1) -> None:
        cort = dist < ct
        cv.paint(g[cort], CORTEX)
        keep = ~cort
        cv.paint(g[keep], MARROW, self.t2tab[MARROW] * mf[keep], self.t1tab[MARROW] * mf[keep])

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (T2, T1, label) at patient points of shape (n, 3)."""
        n = len(pts)
        cv = Canvas(n, self.t2tab, self.t1tab)
        px, y, z = (pts[:, i].astype(np.float32) for i in range(3))
        lam, vc = self.levels.lookup(y, z)
        p = Pts(g=np.arange(n), px=px, x=px - np.float32(self.x0), y=y, z=z, lam=lam, vc=vc)
        p.Dl = self.seg_interp(lam, self.s_depth)
        self._paint_soft(cv, p)
        near = p.sub((np.abs(p.x) < 140) & (p.vc > -p.Dl / 2 - 115) & (p.vc < p.Dl / 2 + 25))
        if near.g.size == 0:
            return cv.t2, cv.t1, cv.lab
        self._add_frames(near)
        frames = ((near.kA, near.uA, near.vA), (near.kB, near.uB, near.vB))
        post = []
        for k, u, v in frames:
            m = self._post_common(near, k, u, v)
            q = Pts(g=near.g[m], x=near.x[m], tex=near.tex[m])
            post.append((q, k[m], u[m], v[m]))
            self._paint_posterior_soft(cv, *post[-1])
        self._paint_ilium(cv, near)
        for (k, u, v), args in zip(frames, post, strict=True):
            self._paint_bodies(cv, near, k, u, v)
            self._paint_posterior_bone(cv, *args)
        self._paint_sacrum(cv, near)
        self._paint_canal(cv, near)
        self._paint_discs(cv, near)
        return cv.t2, cv.t1, cv.lab

    def _add_frames(self, p: Pts) -> None:
        j = np.clip(np.floor(p.lam - 0.5).astype(np.int32), 0, self.K - 2)
        p.j, p.kA, p.kB = j, j, j + 1
        p.f = np.clip(p.lam - 0.5 - j, 0.0, 1.0).astype(np.float32)
        p.uA, p.vA = self.frame(p.kA, p.y, p.z)
        p.uB, p.vB = self.frame(p.kB, p.y, p.z)
        p.vi = (1 - p.f) * p.vA + p.f * p.vB
        p.tex = self.tex_marrow(p.px, p.y, p.z)

    # ---- soft tissue ------------------------------------------------------------------------
    def _paint_soft(self, cv: Canvas, p: Pts) -> None:
        lam = p.lam
        cd = self.seg_interp(lam, self.s_canal_ap)
        post = self.seg_interp(lam, self.s_lam_t + self.s_sp_len)
        sacral = np.clip((lam - self.i["S1"]) / 2.0, 0.0, 1.0)
        fat = self.back_fat * (1.0 + 0.5 * sacral)
        back = -(p.Dl / 2 + cd + post + fat + 4.0)
        front = self.front_y(p.z)
        vmid = 0.5 * (back + p.Dl / 2 + self.abd_depth)
        hd = 0.62 * (p.Dl / 2 + self.abd_depth - back)
        side = self.body_hw * np.sqrt(np.clip(1 - ((p.vc - vmid) / hd) ** 2, 0, 1))
        inside = (p.vc > back) & (p.y > front) & (np.abs(p.x) < side)
        q = p.sub(inside)
        back, fat, cd = back[inside], fat[inside], cd[inside]
        cv.paint(q.g, FAT)
        self._paint_front(cv, q, front[inside])
        self._paint_back_muscle(cv, q, back + fat)
        self._paint_psoas_vessels(cv, q)
        self._paint_lungs(cv, q, cd)

    def front_y(self, z: np.ndarray) -> np.ndarray:
        c = self.chain
        k3 = self.i["L3"]
        yf = 0.5 * (c.top[k3, 0] + c.bottom[k3, 0]) - 0.5 * self.s_depth[k3]
        zc = 0.5 * (c.top[k3, 1] + c.bottom[k3, 1]) - 30.0
        bulge = self.belly * np.exp(-(((z - zc) / 120.0) ** 2))
        return (yf - self.abd_depth - bulge).astype(np.float32)

    def _paint_back_muscle(self, cv: Canvas, q: Pts, v_fat: np.ndarray) -> None:
        ax = np.abs(q.x)
        bulge = np.minimum(10.0, 0.5 * self.back_fat) * (1 - np.exp(-((ax / 20.0) ** 2)))
        low = q.lam > self.i["S3"] + 0.3
        lateral = ax > self.seg_interp(q.lam, self.s_width) / 2 + 2
        front = np.where(lateral, q.Dl / 2 * 0.2, -q.Dl / 2 - 1)
        hm = 0.5 * (front - v_fat + bulge)
        e = (ax / (80 * self.anat.scale)) ** 2 + ((q.vc - front + hm) / (1.15 * hm)) ** 2
        m = (q.vc < front) & (q.vc > v_fat - bulge) & (ax > 2.5) & (e < 1)
        m &= ~low | (ax > 28)
        r = q.sub(m)
        f = self.tex_muscle(r.px, r.y, r.z)
        fat_frac = self.septa * np.exp(-((f / 0.06) ** 2))
        v2 = self.t2tab[MUSCLE] * (1 + 0.08 * f) * (1 - fat_frac) + self.t2tab[FAT] * fat_frac
        v1 = self.t1tab[MUSCLE] * (1 - fat_frac) + self.t1tab[FAT] * fat_frac
        cv.paint(r.g, MUSCLE, v2, v1)

    def _paint_front(self, cv: Canvas, q: Pts, front: np.ndarray) -> None:
        wall = (q.y > front + 0.25 * self.back_fat + 4) & (q.y < front + 0.25 * self.back_fat + 14)
        gutter = q.Dl / 2 + self.retro_fat - 0.006 * q.x**2
        visc = (q.vc > np.maximum(gutter, -q.Dl / 2 - 45)) & (
            q.y > front + 0.25 * self.back_fat + 14
        )
        r = q.sub(visc)
        f = self.tex_bowel(r.px, r.y, r.z)
        f2 = self.tex_bowel2(r.px, r.y, r.z)
        liver_lim = self.i["T12"] + 0.3 + np.clip((r.vc - r.Dl / 2 - 30) / 70, 0, 1.6) + 0.25 * f2
        upper = r.lam < liver_lim
        cv.paint(r.g[upper], LIVER, self.t2tab[LIVER] * (1 + 0.05 * f2[upper]), None)
        low = ~upper
        b, f, f2 = r.sub(low), f[low], f2[low]
        pelvis = b.lam > self.i["S1"] + 1.0
        fluid = f > self.bowel_fluid + 0.3 * pelvis
        gas = (f < -1.9) & ~pelvis
        mes = (np.abs(f2 - 0.4) < 0.1) | (f2 > 1.3 - 0.6 * pelvis)
        soft = ~(fluid | gas | mes)
        cv.paint(b.g[soft], SOFT, self.t2tab[SOFT] * (1 + 0.2 * f2[soft] + 0.12 * f[soft]), None)
        val = self.t2tab[FLUID] * (0.7 + 0.3 * np.tanh(2 * (f[fluid] - 1)))
        cv.paint(b.g[fluid], FLUID, val, None)
        cv.paint(b.g[gas], GAS)
        cv.paint(q.g[wall], MUSCLE)
        self._paint_pelvis(cv, q)

    def _paint_pelvis(self, cv: Canvas, q: Pts) -> None:
        ks = self.i["S3"]
        m = (q.lam > ks) & (np.abs(q.x) < 2 * self.rectum_r)
        r = q.sub(m)
        dl = r.Dl / 2 + 3 + self.rectum_r
        e = (r.x / self.rectum_r) ** 2 + ((r.vc - dl) / self.rectum_r) ** 2
        wall = e < 1
        cv.paint(r.g[wall], SOFT)
        inner = e < (1 - 3.0 / self.rectum_r) ** 2
        f = self.tex_bowel2(r.px, r.y, r.z)
        cv.paint(r.g[inner & (f > 1.3)], GAS)
        cv.paint(r.g[inner & (f < -1.0)], FLUID)
        if not self.bladder:
            return
        c = self.chain
        tip = c.bottom[-1]
        centre = np.array([self.x0, tip[0] - 95.0 * self.anat.scale, tip[1] + 5.0])
        rad = self.bladder_r
        e = (
            ((q.px - centre[0]) / rad[0]) ** 2
            + ((q.y - centre[1]) / rad[1]) ** 2
            + ((q.z - centre[2]) / rad[2]) ** 2
        )
        cv.paint(q.g[e < 1], FLUID)

    def _paint_psoas_vessels(self, cv: Canvas, q: Pts) -> None:
        i = self.i
        ax = np.abs(q.x)
        w2 = self.seg_interp(q.lam, self.s_width) / 2
        lam_k = [i["T12"] + 0.5, i["L1"] + 1.5, i["L4"] + 0.5, i["L5"] + 0.5, i["S1"] + 0.5,
                 i["S1"] + 2.0]  # fmt: skip
        r = np.interp(q.lam, lam_k, [0.0, 11.0, 18.0, 21.0, 20.0, 0.0]) * self.anat.scale
        xc = w2 + 0.85 * r + 2 + 22 * np.clip(q.lam - i["S1"] - 0.5, 0, None)
        vcen = np.interp(q.lam, lam_k[:5], [-10.0, -6.0, 0.0, 6.0, 20.0])
        e = ((ax - xc) / (0.9 * r + 1e-3)) ** 2 + ((q.vc - vcen) / (1.1 * r + 1e-3)) ** 2
        cv.paint(q.g[(e < 1) & (r > 1)], MUSCLE)
        xa, ra = self.aorta
        va = q.Dl / 2 + 2 + ra
        up = q.lam < self.lam_bif
        e = ((q.x - xa) / ra) ** 2 + ((q.vc - va) / ra) ** 2
        cv.paint(q.g[(e < 1) & up], VESSEL)
        t = np.clip(q.lam - self.lam_bif, 0, None)
        xi = xa * 0.3 + 26 * t
        e = ((ax - xi) / 5.5) ** 2 + ((q.vc - (va + 8 * t)) / 5.5) ** 2
        cv.paint(q.g[(e < 1) & ~up & (t < 1.8)], VESSEL)
        xv, rv = self.ivc
        e = ((q.x + xv) / (1.25 * rv)) ** 2 + ((q.vc - (q.Dl / 2 + 2 + 0.7 * rv)) / (0.7 * rv)) ** 2
        m = (e < 1) & (q.lam < self.lam_bif + 0.4)
        cv.paint(q.g[m], VESSEL, self.ivc_val, 0.6 * self.ivc_val)

    def _paint_lungs(self, cv: Canvas, q: Pts, cd: np.ndarray) -> None:
        ax = np.abs(q.x)
        w2 = self.seg_interp(q.lam, self.s_width) / 2
        limit = self.i["T12"] - 0.3 + 0.012 * np.clip(ax - 25, 0, 60)
        limit = limit + 0.012 * np.clip(-q.vc, 0, 60)
        m = (ax > w2 + 10) & (q.lam < limit) & (q.vc > -q.Dl / 2 - cd - 25) & (q.vc < q.Dl / 2 + 15)
        cv.paint(q.g[m], GAS)

    # ---- vertebral bodies -------------------------------------------------------------------
    def _paint_bodies(self, cv: Canvas, p: Pts, k: np.ndarray, u: np.ndarray, v: np.ndarray):
        d2, w2 = self.s_depth[k] / 2, self.s_width[k] / 2
        hb = self.s_h[k] + self.slope[k] * v
        m = (self.kind[k] != KIND_S) & (np.abs(v) < d2) & (np.abs(p.x) < w2) & (u > 0) & (u < hb)
        if not m.any():
            return
        q, k, u, v, d2, w2, hb = p.sub(m), k[m], u[m], v[m], d2[m], w2[m], hb[m]
        av = np.abs(v) / d2
        rr0 = np.where(v < 0, av**3.5, av**2) + (np.abs(q.x) / w2) ** 2.4
        c = self.s_conc[k] * np.clip(1 - rr0, 0, 1)
        ue = (u - c) / np.maximum(hb - 2 * c, 1.0)
        bz = np.abs(2 * ue - 1)
        waist = 1 - 0.06 * (1 - bz**2)
        av = av / waist
        rr = np.where(v < 0, av**3.5, av**2) + (np.abs(q.x) / (w2 * waist)) ** 2.4
        shape = rr + bz**10
        inside = (shape < 1) & (ue > 0) & (ue < 1)
        side = (1 - shape) * np.minimum(d2, w2) / 2.6
        dist = np.minimum(side, 1.25 * np.minimum(u - c, hb - c - u))
        mf = self.s_marrow[k] * (1 + 0.07 * q.tex)
        self._bone(cv, q.g[inside], dist[inside], mf[inside])
        vein = inside & (np.abs(q.x) < 2.2) & (v < -d2 + 6) & (np.abs(u - hb / 2) < 1.4)
        cv.paint(q.g[vein], FLUID, 0.75 * self.t2tab[FLUID], 0.35)
        if self.hem is not None:
            kh, fu, fv, fx, rh = self.hem
            e = ((u - fu * hb) ** 2 + (v - fv * 2 * d2) ** 2 + (q.x - fx * 2 * w2) ** 2) / rh**2
            hem = inside & (k == kh) & (e < 1)
            cv.paint(q.g[hem], MARROW, 0.85, 0.95)

    # ---- sacrum -----------------------------------------------------------------------------
    def _paint_sacrum(self, cv: Canvas, p: Pts) -> None:
        """Fused sacral mass in curved (level, AP) coordinates so its surfaces stay smooth."""
        fs, ls = self.first_sacral, self.last_sacral
        m = (p.lam > fs - 0.8) & (p.lam < ls + 1.8) & (np.abs(p.x) < self.s_half_width[fs] + 2)
        if not m.any():
            return
        q = p.sub(m)
        ax, lam = np.abs(q.x), q.lam
        u0, v0 = self.frame(np.full(q.g.shape, fs), q.y, q.z)
        u1, v1 = self.frame(np.full(q.g.shape, ls), q.y, q.z)
        v = np.where(lam < fs + 0.5, v0, np.where(lam > ls + 0.5, v1, q.vi))
        cen = self.centres[fs : ls + 1]
        d2 = np.interp(lam, cen, self.s_depth[fs : ls + 1]) / 2
        w2 = np.interp(lam, cen, self.s_width[fs : ls + 1]) / 2
        cd = np.interp(lam, cen, self.s_canal_ap[fs : ls + 1])
        hw = np.interp(lam, cen, self.s_half_width[fs : ls + 1])
        hw = hw * (1 - 0.5 * np.clip(lam - ls - 0.5, 0, 1))
        drop = 0.2 * np.clip(ax - w2, 0, None)
        bottom = self.s_h[ls] + self.slope[ls] * v1
        body_front = d2 * np.clip(1 - (ax / w2) ** 2.2, 0, 1) ** (1 / 2.2)
        vf = np.maximum(body_front, 0.4 * d2 - 0.3 * np.clip(ax - w2, 0, None))
        vd = -d2 - cd - 0.4 * d2 - 3 - 5 * np.exp(-((q.x / 3.5) ** 2))
        inside = (u0 > drop) & (u1 < bottom) & (ax < hw) & (v < vf) & (v > vd)
        dist = np.minimum.reduce([vf - v, v - vd, hw - ax, u0 - drop, bottom - u1])
        mf = self.s_marrow[fs] * (1 + 0.07 * q.tex)
        self._bone(cv, q.g[inside], dist[inside], mf[inside], ct=1.3)
        top = q.sub(lam < fs + 1.0)
        sel = lam < fs + 1.0
        self._pillars(cv, top, np.full(top.g.shape, fs), u0[sel], v0[sel], sap_only=True)
        # anterior sacral foramina at the fused junctions
        j = q.j
        fused = (self.kind[j] == KIND_S) & (self.kind[j + 1] == KIND_S)
        a = q.uA - (self.s_h[j] + self.slope[j] * q.vA) - self.d_dn[j] / 2
        xf = self.s_width[j] * 0.47 + 3
        rf = np.clip(0.14 * self.s_depth[j], 2.5, 5.5)
        e = (a / rf) ** 2 + ((ax - xf) / rf) ** 2
        hole = inside & fused & (e < 1) & (v > -0.6 * d2)
        cv.paint(q.g[hole], FAT)
        cv.paint(q.g[hole & (e < 0.3)], ROOT)

    def _paint_ilium(self, cv: Canvas, p: Pts) -> None:
        fs = self.first_sacral
        m = (np.abs(p.x) > 20) & (p.lam > fs - 2.5) & (p.lam < fs + 3.5)
        if not m.any():
            return
        q = p.sub(m)
        kk = np.full(q.g.shape, fs)
        u, v = self.frame(kk, q.y, q.z)
        ax = np.abs(q.x)
        hs = self.s_h[fs:fs + 4] + self.j_mean[fs:fs + 4]  # fmt: skip
        knots = np.concatenate([[0.0], np.cumsum(hs)])
        hw = np.interp(u, knots, self.s_half_width[fs:fs + 5])  # fmt: skip
        x_in = hw + 2 + 0.35 * np.clip(-u, 0, None)
        sc = self.anat.scale
        d2 = self.s_depth[fs] / 2
        e = ((u - 8 * sc) / (55 * sc)) ** 2 + ((v + d2 + 8) / (36 * sc)) ** 2
        thick = 30 * sc
        bone = (e < 1) & (ax > x_in) & (ax < x_in + thick)
        dist = np.minimum.reduce([ax - x_in, x_in + thick - ax, (1 - e) * 25])
        self._bone(cv, q.g[bone], dist[bone], np.ones(bone.sum(), np.float32), ct=1.5)
        joint = (e < 1) & (ax > x_in - 2.2) & (ax <= x_in) & (u > 0) & (u < 62 * sc)
        cv.paint(q.g[joint], CARTILAGE)

    # ---- posterior elements -----------------------------------------------------------------
    def _post_common(self, p: Pts, k: np.ndarray, u: np.ndarray, v: np.ndarray):
        """Restrict to samples near the posterior elements of T/L segments."""
        h, d2 = self.s_h[k], self.s_depth[k] / 2
        vcb = -d2 - self.s_canal_ap[k]
        reach = self.s_lam_t[k] + self.s_sp_len[k] + 6
        m = np.isin(self.kind[k], (KIND_T, KIND_L))
        m &= (v < -d2 + 4) & (v > vcb - reach) & (u > -self.d_up[k] - 6)
        m &= u < h + self.d_dn[k] + 0.5 * self.h_next[k] + 15 * self.s_sp_slope[k]
        m &= np.abs(p.x) < self.s_canal_w[k] / 2 + self.s_ped_w[k] + 40
        return m

    def _paint_posterior_soft(self, cv: Canvas, q: Pts, k, u, v) -> None:
        if q.g.size == 0:
            return
        ax = np.abs(q.x)
        h, d2, cd, cw = self.s_h[k], self.s_depth[k] / 2, self.s_canal_ap[k], self.s_canal_w[k]
        dn, hn, pw = self.d_dn[k], self.h_next[k], self.s_ped_w[k]
        vb, vcb = -d2, -d2 - cd
        xp = cw / 2 + pw / 2
        foramen = (ax > cw / 2 - 0.5) & (ax < xp + pw / 2 + 4) & (v > vcb - 1) & (v < vb + 0.5)
        foramen &= (u > 0.3 * h) & (u < h + dn + 0.12 * hn)
        cv.paint(q.g[foramen], FAT)
        root = foramen & (((u - 0.72 * h) / 3.6) ** 2 + ((v - vb + 0.4 * cd) / 3.0) ** 2 < 1)
        cv.paint(q.g[root], ROOT)
        flav = (ax < cw / 2 + 1.5) & (v > vcb - 3.5) & (v < vcb + 0.5)
        flav &= (u > 0.7 * h) & (u < h + dn + 0.12 * hn)
        cv.paint(q.g[flav], LIGAMENT)
        lt, sl, ss = self.s_lam_t[k], self.s_sp_len[k], self.s_sp_slope[k]
        vs0 = vcb - lt + 1
        du = ss * (vs0 - v)
        isl = (ax < 2.5) & (v < vs0) & (v > vs0 - 0.92 * sl) & (u > 0.55 * h + du)
        isl &= u < h + dn + 0.25 * hn + du
        cv.paint(q.g[isl], LIGAMENT, 0.3 * self.t2tab[FAT], 0.35 * self.t1tab[FAT])

    def _pillars(self, cv: Canvas, q: Pts, k, u, v, sap_only: bool = False) -> None:
        """Articular pillars (superior + inferior articular processes) and facet joints."""
        if q.g.size == 0:
            return
        ax = np.abs(q.x)
        h, d2, cd, cw = self.s_h[k], self.s_depth[k] / 2, self.s_canal_ap[k], self.s_canal_w[k]
        pw = self.s_ped_w[k]
        vcb = -d2 - cd
        x_lo, x_hi = cw / 2 + 0.5, cw / 2 + pw + 4
        v_lo, v_hi = vcb - 13, vcb + 3.5
        sh = 0.4 * (vcb - 5 - v)
        u0 = -0.42 * self.d_up[k] + sh
        u1 = (0.25 * h if sap_only else h + 0.42 * self.d_dn[k]) + sh
        box = (ax > x_lo) & (ax < x_hi) & (v > v_lo) & (v < v_hi) & (u > u0) & (u < u1 + 4)
        if not box.any():
            return
        q, k, u, v, ax = q.sub(box), k[box], u[box], v[box], ax[box]
        x_lo, x_hi, v_lo, v_hi, u0, u1 = (a[box] for a in (x_lo, x_hi, v_lo, v_hi, u0, u1))
        box = u < u1 + 4
        su = (2 * u - u0 - u1) / np.maximum(u1 - u0, 1.0)
        sv = (2 * v - v_lo - v_hi) / (v_hi - v_lo)
        sx = (2 * ax - x_lo - x_hi) / (x_hi - x_lo)
        shape = su**6 + sv**4 + sx**4
        bone = box & (shape < 1)
        dist = (1 - shape) * np.minimum(0.5 * (x_hi - x_lo), 6.0) / 3
        self._bone(cv, q.g[bone], dist[bone], self.s_marrow[k][bone], ct=1.2)
        if not sap_only:
            joint = box & (u >= u1) & (u < u1 + 0.16 * self.d_dn[k] + 0.4)
            cv.paint(q.g[joint], FACET)

    def _paint_posterior_bone(self, cv: Canvas, q: Pts, k, u, v) -> None:
        if q.g.size == 0:
            return
        ax = np.abs(q.x)
        h, d2, cd, cw = self.s_h[k], self.s_depth[k] / 2, self.s_canal_ap[k], self.s_canal_w[k]
        pw, lt, sl, ss = self.s_ped_w[k], self.s_lam_t[k], self.s_sp_len[k], self.s_sp_slope[k]
        mf = self.s_marrow[k] * (1 + 0.07 * q.tex)
        vb, vcb = -d2, -d2 - cd
        xp = cw / 2 + pw / 2
        # pedicles
        e = ((u - 0.33 * h) / (0.24 * h)) ** 2 + ((ax - xp) / (pw / 2)) ** 2
        ped = (e < 1) & (v < vb + 3) & (v > vcb - 2)
        self._bone(cv, q.g[ped], ((1 - e) * pw / 3)[ped], mf[ped])
        self._pillars(cv, q, k, u, v)
        # laminae
        du = 0.3 * (vcb - v)
        lo, hi = 0.1 * h + du, 0.8 * h + du
        lam = (ax < xp) & (v > vcb - lt) & (v < vcb) & (u > lo) & (u < hi)
        dist = np.minimum.reduce([u - lo, hi - u, v - vcb + lt, vcb - v + 0.6])
        self._bone(cv, q.g[lam], dist[lam], mf[lam], ct=1.0)
        # spinous process with a rounded tip
        vs0 = vcb - lt + 1
        du = ss * (vs0 - v)
        sph = np.where(self.kind[k] == KIND_L, 0.62, 0.42) * h
        lo, hi = 0.2 * h + du, 0.2 * h + sph + du
        tip = vs0 - sl
        t = np.clip((v - tip) / (0.5 * sph), 0, 1)
        half = 0.5 * sph * np.sqrt(1 - (1 - t) ** 2)
        mid = 0.5 * (lo + hi)
        spw = np.where(self.kind[k] == KIND_L, 3.2, 2.6) * self.anat.scale
        sp = (ax < spw) & (v < vs0) & (v > tip) & (np.abs(u - mid) < half)
        dist = np.minimum.reduce([half - np.abs(u - mid), spw - ax + 0.8, v - tip])
        self._bone(cv, q.g[sp], dist[sp], mf[sp], ct=1.2)
        self._transverse(cv, q, k, u, v, ax, mf)

    def _transverse(self, cv: Canvas, q: Pts, k, u, v, ax, mf) -> None:
        """Lumbar transverse processes and the transitional L5 bridge to the sacral ala."""
        lum = self.kind[k] == KIND_L
        h, d2, cw, pw = self.s_h[k], self.s_depth[k] / 2, self.s_canal_w[k], self.s_ped_w[k]
        xp = cw / 2 + pw / 2
        tl = self.s_tp_len[k]
        vb = -d2
        fx = np.clip((ax - xp) / np.maximum(tl, 1), 0, 1)
        half = 0.13 * h * (1 - 0.45 * fx)
        tp = lum & (ax > xp) & (ax < xp + tl) & (v > vb - 14) & (v < vb - 5)
        tp &= np.abs(u - 0.42 * h) < half
        dist = np.minimum(half - np.abs(u - 0.42 * h), np.minimum(v - vb + 14, vb - 5 - v))
        self._bone(cv, q.g[tp], dist[tp], mf[tp], ct=1.0)
        side = np.where(q.x < 0, 0, 1)
        br = self.bridge[k, side] & lum
        if not br.any():
            return
        lo, hi = 0.3 * h, h + self.d_dn[k] + 14
        x_hi = self.hw_next[k] - 4
        brg = br & (ax > xp + 2) & (ax < x_hi) & (v > vb - 17) & (v < vb + 7) & (u > lo) & (u < hi)
        dist = np.minimum.reduce([u - lo, hi - u, v - vb + 17, vb + 7 - v, x_hi - ax])
        self._bone(cv, q.g[brg], dist[brg], mf[brg], ct=1.2)
        gap = brg & self.pseudo[k] & (np.abs(u - (h + 0.5 * self.d_dn[k] + 3)) < 1.0)
        cv.paint(q.g[gap], CARTILAGE)

    # ---- spinal canal -----------------------------------------------------------------------
    def _paint_canal(self, cv: Canvas, p: Pts) -> None:
        lam = p.lam
        cd = self.seg_interp(lam, self.s_canal_ap)
        cw = self.seg_interp(lam, self.s_canal_w)
        vf = -p.Dl / 2 - 0.8
        vmid = vf - cd / 2
        e = (np.abs(p.x) / (cw / 2 + 1e-3)) ** 3 + (np.abs(p.vi - vmid) / (cd / 2 + 1e-3)) ** 3
        m = (e < 1) & (cd > 1)
        if not m.any():
            return
        q, cd, cw, vf = p.sub(m), cd[m], cw[m], vf[m]
        cv.paint(q.g, FAT)
        lumb = np.clip(q.lam - self.i["T12"], 0, 1)
        fp = (1.5 + 2.0 * lumb) * self.epi_post
        near_ls = np.exp(-(((q.lam - self.i["L5"] - 1.0) / 0.8) ** 2))
        fa = 0.4 + 3.0 * near_ls * self.epi_ant
        taper = np.sqrt(np.clip((self.lam_sac - q.lam) / 0.5, 0, 1))
        rs = np.maximum(cd - fp - fa, 1.0) / 2 * taper
        ws = (cw / 2 - 1.8) * taper
        vs = vf - fa - rs
        es = (q.x / (ws + 1e-3)) ** 2 + ((q.vi - vs) / (rs + 1e-3)) ** 2
        sac = (es < 1) & (taper > 0)
        cv.paint(q.g[sac], CSF)
        tc = np.clip((self.lam_conus - q.lam) / 0.7, 0, 1)
        rc = (3.6 + 0.6 * np.exp(-(((q.lam - self.i["T12"] - 1) / 0.6) ** 2))) * np.sqrt(tc)
        rc *= self.anat.scale**0.5
        ec = (q.x / (1.3 * rc + 1e-3)) ** 2 + ((q.vi - vs + 0.1 * rs) / (rc + 1e-3)) ** 2
        cv.paint(q.g[sac & (ec < 1) & (tc > 0)], CORD)
        below = q.lam > self.lam_conus - 0.4
        wsr = np.maximum(ws, 0.4 * cw / 2)
        rsr = np.maximum(rs, 0.3 * cd / 2)
        for fx, fv, r in self.roots:
            d2 = (q.x - fx * wsr) ** 2 + (q.vi - (vs - fv * rsr)) ** 2
            cv.paint(q.g[below & (d2 < r * r)], ROOT)

    # ---- discs and junctions ----------------------------------------------------------------
    def _paint_discs(self, cv: Canvas, p: Pts) -> None:
        j = p.j
        a = p.uA - (self.s_h[j] + self.slope[j] * p.vA)
        b = -p.uB
        dd2 = 0.25 * (self.s_depth[j] + self.s_depth[j + 1])
        wd2 = 0.25 * (self.s_width[j] + self.s_width[j + 1])
        bul = self.j_bulge[j]
        vd = 0.5 * (p.vA + p.vB)
        reach = bul + self.j_hernia[j] + 1
        m = (a > -2.5) & (b > -2.5) & (np.abs(vd) < dd2 + reach) & (np.abs(p.x) < wd2 + reach)
        if not m.any():
            return
        q, j, a, b, dd2, wd2, bul, vd = p.sub(m), j[m], a[m], b[m], dd2[m], wd2[m], bul[m], vd[m]
        rv = np.where(vd < 0, dd2 + bul, dd2 + 0.4 * bul)
        rr = (np.abs(vd) / rv) ** 2.3 + (np.abs(q.x) / (wd2 + 0.7 * bul)) ** 2.3
        one = np.clip(1 - rr, 0, 1)
        ca, cb = self.s_conc[j] * one, self.s_conc[j + 1] * one
        t = np.clip((a + ca) / np.maximum(a + b + ca + cb, 0.2), 0, 1)
        between = (a > -ca) & (b > -cb)
        inside = between & (rr < 1)
        kind = self.j_kind[j]
        self._disc_tissue(cv, q, j, inside & (kind == J_DISC), t, rr, vd, dd2, wd2)
        self._fused_tissue(cv, q, j, inside & (kind == J_FUSED), t, rr, dd2, 0.6)
        self._transitional(cv, q, j, inside & (kind == J_TRANS), t, rr, vd, dd2, wd2)
        cv.paint(q.g[inside & (kind == J_COCC)], CARTILAGE, 0.3, 0.3)
        her = self.j_hernia[j]
        eh = ((vd + dd2 + 0.3 * bul) / (her + 1e-3)) ** 2 + ((q.x - self.j_hernia_x[j]) / (
            1.4 * her + 1e-3)) ** 2  # fmt: skip
        hern = between & (her > 0) & (eh < 1) & (vd < 0) & (np.abs(t - 0.5) < 0.45)
        cv.paint(q.g[hern], ANULUS, 1.6 * self.t2tab[ANULUS], None)

    def _nucleus_weight(self, j, t, vd, dd2, wd2, q: Pts) -> np.ndarray:
        rn2 = ((vd + 0.1 * dd2) / (0.62 * dd2)) ** 2 + (q.x / (0.6 * wd2)) ** 2
        qn = rn2 + ((t - 0.5) / 0.34) ** 2
        w = _smooth01((1.25 - qn) / 0.6)
        cleft = self.j_cleft[j] & (rn2 < 1)
        return w * (1 - 0.55 * cleft * np.exp(-(((t - 0.5) / 0.08) ** 2)))

    def _disc_tissue(self, cv: Canvas, q: Pts, j, m, t, rr, vd, dd2, wd2) -> None:
        if not m.any():
            return
        w = self._nucleus_weight(j[m], t[m], vd[m], dd2[m], wd2[m], q.sub(m))
        an2 = self.t2tab[ANULUS] * np.where(rr[m] > 0.8, 0.7, 1.0)
        an1 = self.t1tab[ANULUS]
        nf = self.j_nuc[j[m]]
        nu2 = np.maximum(self.t2tab[NUCLEUS] * nf, an2)
        nu1 = self.t1tab[NUCLEUS] * (0.75 + 0.25 * nf)
        lab_is_nuc = w > 0.5
        g = q.g[m]
        cv.paint(g[~lab_is_nuc], ANULUS, (an2 + (nu2 - an2) * w)[~lab_is_nuc],
                 (an1 + (nu1 - an1) * w)[~lab_is_nuc])  # fmt: skip
        cv.paint(g[lab_is_nuc], NUCLEUS, (an2 + (nu2 - an2) * w)[lab_is_nuc],
                 (an1 + (nu1 - an1) * w)[lab_is_nuc])  # fmt: skip

    def _fused_tissue(self, cv: Canvas, q: Pts, j, m, t, rr, dd2, core: float) -> None:
        if not m.any():
            return
        g, jj, tt, r = q.g[m], j[m], t[m], rr[m]
        rem = (r < core) & (np.abs(tt - 0.5) < 0.35)
        plate = (r < core) & ~rem
        dist = (1 - r) * dd2[m] / 2.3
        bone = ~rem & ~plate
        self._bone(cv, g[bone], dist[bone], (1 + 0.07 * q.tex[m])[bone], ct=1.3)
        cv.paint(g[plate], CORTEX)
        rv = self.j_rem[jj[rem]]
        cv.paint(g[rem], REMNANT, rv, 0.28 + 0.2 * rv)

    def _transitional(self, cv: Canvas, q: Pts, j, m, t, rr, vd, dd2, wd2) -> None:
        if not m.any():
            return
        mode = self.j_bridge[j]
        full = m & (mode == 2)
        self._fused_tissue(cv, q, j, full, t, rr, dd2, 0.82)
        rest = m & (mode != 2)
        w = self._nucleus_weight(j[rest], t[rest], vd[rest], dd2[rest], wd2[rest], q.sub(rest))
        an2 = 0.85 * self.t2tab[ANULUS]
        rv = np.maximum(self.j_rem[j[rest]], 0.5 * an2)
        cv.paint(q.g[rest], REMNANT, an2 + (rv - an2) * w, self.t1tab[ANULUS])
        ant = rest & (mode == 1) & (vd > dd2 - 7)
        dist = np.minimum((1 - rr) * dd2 / 2.3, 10.0)
        self._bone(cv, q.g[ant], dist[ant], np.ones(ant.sum(), np.float32), ct=1.3)


# --------------------------------------------------------------------------------------------
# Acquisition geometry and imaging
# --------------------------------------------------------------------------------------------
@dataclass
class SeriesGeom:
    """Slice geometry of one series; each slice has its own orientation (angled blocks)."""

    orient: list[tuple[np.ndarray, np.ndarray]]  # (row, col) direction cosines per slice
    centres: list[np.ndarray]  # slice centres in instance order
    rows: int
    cols: int
    spacing: tuple[float, float]  # (between rows, between columns), DICOM PixelSpacing order
    thickness: float
    gap: float
    render: tuple[int, int]

    def normal(self, i: int) -> np.ndarray:
        row, col = self.orient[i]
        return np.cross(row, col)

    def ipp(self, i: int) -> np.ndarray:
        row, col = self.orient[i]
        dr, dc = self.spacing
        return self.centres[i] + (0.5 - self.cols / 2) * dc * row + (0.5 - self.rows / 2) * dr * col

    def render_points(self, i: int, offset: float, jitter: tuple[float, float]) -> np.ndarray:
        """Patient points of the render grid (pixel-centred on the same FOV) of slice i."""
        row, col = self.orient[i]
        nr, nc = self.render
        fr, fc = self.rows * self.spacing[0], self.cols * self.spacing[1]
        r = (np.arange(nr) + 0.5 + jitter[0]) * (fr / nr) - fr / 2
        c = (np.arange(nc) + 0.5 + jitter[1]) * (fc / nc) - fc / 2
        base = self.centres[i] + offset * self.normal(i)
        pts = base[None, None, :] + r[:, None, None] * col + c[None, :, None] * row
        return pts.reshape(-1, 3)

    def corners(self) -> np.ndarray:
        out = []
        for i in range(len(self.centres)):
            row, col = self.orient[i]
            fr, fc = self.rows * self.spacing[0], self.cols * self.spacing[1]
            for a in (-0.5, 0.5):
                for b in (-0.5, 0.5):
                    out.append(self.centres[i] + a * fc * row + b * fr * col)
        return np.array(out)


def _rotation(yaw_deg: float, tilt_deg: float) -> np.ndarray:
    a, b = math.radians(yaw_deg), math.radians(tilt_deg)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    return rz @ ry


def _sag_required_points(model: SpineModel) -> tuple[list, list]:
    """Points the sagittal FOV must contain: L1 to 35 mm below L5-S1 (hf) and the AP span."""
    c, i = model.chain, model.i
    k1, ks = i["L1"], i["S1"]
    hf = [c.top[k1] + s * 0.5 * model.s_depth[k1] * c.ant[k1] for s in (-1, 1)]
    hf.append(c.top[k1] - (model.s_depth[k1] / 2 + 45) * c.ant[k1])
    disc = c.disc_centre(ks - 1)
    for s in (-1, 1):
        hf.append(disc + 35.0 * c.axis[ks] + s * 0.5 * model.s_depth[ks] * c.ant[ks])
    ap = []
    for k in range(k1, ks + 1):
        mid = 0.5 * (c.top[k] + c.bottom[k])
        ap.append(mid + (model.s_depth[k] / 2 + 12) * c.ant[k])
        ap.append(mid - (model.s_depth[k] / 2 + model.s_canal_ap[k] + 38) * c.ant[k])
    return ([np.array([model.x0, *p]) for p in hf], [np.array([model.x0, *p]) for p in ap])


def sagittal_geometry(rng: np.random.Generator, acq: dict, model: SpineModel) -> SeriesGeom:
    """Orientation, FOV placement and slice stack of the sagittal series."""
    rot = _rotation(acq["yaw_deg"], acq["tilt_deg"])
    row = rot @ np.array([0.0, 1.0 if acq["anterior_left"] else -1.0, 0.0])
    col = rot @ np.array([0.0, 0.0, -1.0 if acq["head_up"] else 1.0])
    hf, ap = _sag_required_points(model)
    k3 = model.i["L3"]
    mid3 = 0.5 * (model.chain.top[k3] + model.chain.bottom[k3])
    base = np.array([model.x0 + acq["stack_offset_mm"], *mid3])
    pc = [float((p - base) @ col) for p in hf]
    pr = [float((p - base) @ row) for p in ap]
    _fit_matrix(acq, max(pc) - min(pc) + 14, max(pr) - min(pr) + 8)
    rows, cols = acq["matrix"]
    ps = acq["pixel_mm"]
    lo_c, hi_c = max(pc) - rows * ps / 2 + 6, min(pc) + rows * ps / 2 - 6
    lo_r, hi_r = max(pr) - cols * ps / 2 + 3, min(pr) + cols * ps / 2 - 3
    k4 = model.i["L4"]
    target = float((np.array([model.x0, *model.chain.top[k4]]) - base) @ col)
    b = float(np.clip(rng.normal(target, 25.0), min(lo_c, hi_c), max(lo_c, hi_c)))
    centre = base + _u(rng, lo_r, hi_r) * row + b * col
    normal = np.cross(row, col)
    step = acq["thickness_mm"] + acq["gap_mm"]
    n = acq["n_slices"]
    sign = 1 if acq["slices_ascending"] else -1
    centres = [centre + sign * (s - (n - 1) / 2) * step * normal for s in range(n)]
    return SeriesGeom([(row, col)] * n, centres, rows, cols, (ps, ps), acq["thickness_mm"],
                      acq["gap_mm"], acq["render"])  # fmt: skip


def _axial_orient(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row = patient left (+x); column = posterior-ish, perpendicular to the slice normal."""
    row = np.array([1.0, 0.0, 0.0])
    col = np.cross(up, row)
    return row, col / np.linalg.norm(col)


def axial_geometry(rng: np.random.Generator, model: SpineModel) -> tuple[SeriesGeom, dict]:
    """Angled axial blocks through L3-L4..L5-S1, or a straight axial stack."""
    c, i = model.chain, model.i
    m = int(rng.choice([256, 320]))
    fov = _u(rng, 170.0, 230.0)
    thick, gap = float(rng.choice([3.5, 4.0, 4.0, 5.0])), float(rng.choice([0.4, 0.5, 1.0]))
    step = thick + gap
    shift = np.array([_u(rng, -5, 5), _u(rng, 0, 25), 0.0])
    centres, orient = [], []
    blocks = bool(rng.random() < 0.6)
    if blocks:
        for kd in (i["L5"] - 2, i["L5"] - 1, i["L5"]):
            dc = np.array([model.x0, *c.disc_centre(kd)]) + shift
            up = np.array([0.0, *(-(c.axis[kd] + c.axis[kd + 1]) / 2)])
            up /= np.linalg.norm(up)
            per = int(rng.integers(3, 5))  # 3-4 slices per disc block
            for s in range(per):
                centres.append(dc + (s - (per - 1) / 2) * step * up)
                orient.append(_axial_orient(up))
    else:
        top = np.array([model.x0, *c.disc_centre(i["L3"])]) + shift
        bottom = np.array([model.x0, *c.disc_centre(i["L5"])]) + shift
        n = int(np.clip(round((top[2] - bottom[2]) / step) + 3, 8, 14))
        z = top[2] + step - step * np.arange(n)
        y = np.interp(-z, [-top[2], -bottom[2]], [top[1], bottom[1]])
        centres = [np.array([top[0], y_, z_]) for y_, z_ in zip(y, z, strict=True)]
        orient = [_axial_orient(np.array([0.0, 0.0, 1.0]))] * n
    ren = min(m, 256)
    geom = SeriesGeom(orient, centres, m, m, (fov / m, fov / m), thick, gap, (ren, ren))
    info = {"blocks": blocks, "fov_mm": round(fov, 1), "matrix": m, "thickness_mm": thick,
            "gap_mm": gap, "n_slices": len(centres)}  # fmt: skip
    return geom, info


SUBSAMPLES = ((-1 / 3, (-0.29, 0.17), 0.3), (0.0, (0.0, -0.33), 0.4), (1 / 3, (0.29, 0.17), 0.3))


def render_series(model: SpineModel, geom: SeriesGeom):
    """Sample the model over the slice thickness; returns T2, T1, labels, centre points."""
    nr, nc = geom.render
    n = len(geom.centres)
    t2 = np.zeros((n, nr, nc), np.float32)
    t1 = np.zeros((n, nr, nc), np.float32)
    lab = np.zeros((n, nr, nc), np.uint8)
    ctr = np.zeros((n, nr * nc, 3), np.float32)
    for i in range(n):
        pts = [geom.render_points(i, o * geom.thickness, jit) for o, jit, _ in SUBSAMPLES]
        a2, a1, al = model.evaluate(np.concatenate(pts))
        for s, (_, _, w) in enumerate(SUBSAMPLES):
            sl = slice(s * nr * nc, (s + 1) * nr * nc)
            t2[i] += w * a2[sl].reshape(nr, nc)
            t1[i] += w * a1[sl].reshape(nr, nc)
        lab[i] = al[nr * nc : 2 * nr * nc].reshape(nr, nc)
        ctr[i] = pts[1]
    return t2, t1, lab, ctr


def _resample_axis(img: np.ndarray, ax: int, m: int, fermi: float) -> np.ndarray:
    """Trigonometric interpolation of pixel-centred samples along one axis (same FOV)."""
    n = img.shape[ax]
    spec = np.fft.fft(img, axis=ax)
    k = np.fft.fftfreq(n) * n
    filt = 1.0 / (1.0 + np.exp((np.abs(k) / (n / 2) - fermi) / 0.04))
    weight = np.exp(1j * np.pi * k * (1.0 / m - 1.0 / n)) * filt * (m / n)
    shape = [1] * img.ndim
    shape[ax] = n
    spec *= weight.astype(np.complex64).reshape(shape)
    keep = min(n, m)
    pos, neg = (keep + 1) // 2, keep // 2
    out_shape = list(img.shape)
    out_shape[ax] = m
    out = np.zeros(out_shape, np.complex64)
    src, dst = [slice(None)] * img.ndim, [slice(None)] * img.ndim
    src[ax], dst[ax] = slice(0, pos), slice(0, pos)
    out[tuple(dst)] = spec[tuple(src)]
    if neg:
        src[ax], dst[ax] = slice(n - neg, n), slice(m - neg, m)
        out[tuple(dst)] = spec[tuple(src)]
    return np.fft.ifft(out, axis=ax).astype(np.complex64)


def fourier_resample(img: np.ndarray, out: tuple[int, int], fermi: float) -> np.ndarray:
    """Zero-fill (or truncate) k-space of a pixel-centred stack to a new matrix, same FOV."""
    img = _resample_axis(img.astype(np.complex64), 1, out[0], fermi)
    return _resample_axis(img, 2, out[1], fermi)


def bias_field(pts: np.ndarray, prm: dict) -> np.ndarray:
    """Posterior surface-coil sensitivity with a mild head-foot ripple, partly normalised."""
    d = np.clip(prm["y_coil"] - pts[..., 1], 0, None)
    b = prm["floor"] + (1 - prm["floor"]) / (1 + (d / prm["depth"]) ** 2)
    b = b * (1 + prm["ripple"] * np.cos(2 * np.pi * pts[..., 2] / prm["ripple_mm"] + prm["phase"]))
    return (1 - prm["norm"] * (1 - b)).astype(np.float32)


def acquire(sig, lab, ctr, out, snr, prm, rng: np.random.Generator) -> np.ndarray:
    """Bias, complex noise at the acquired resolution, k-space resample, magnitude."""
    b = bias_field(ctr, prm).reshape(sig.shape)
    s = sig * b
    ref = s[lab == MARROW]
    sigma = (ref.mean() if ref.size > 50 else s[s > 0.05].mean()) / snr
    noise = rng.standard_normal(s.shape, np.float32) + 1j * rng.standard_normal(s.shape, np.float32)
    img = fourier_resample(s + sigma * noise.astype(np.complex64), out, prm["fermi"])
    return np.abs(img).astype(np.float32)


def to_stored(img: np.ndarray, vmax: float, bits: int) -> tuple[np.ndarray, float, float]:
    """Scale magnitude to unsigned integers; returns pixels, window centre and width."""
    ref = float(np.percentile(img, 99.7)) or 1.0
    out = np.clip(np.rint(img * (vmax / ref)), 0, 2**bits - 1).astype(np.uint16)
    hi = float(np.percentile(out, 99.5))
    return out, round(0.5 * hi), round(hi)


# --------------------------------------------------------------------------------------------
# Acquisition draws
# --------------------------------------------------------------------------------------------
MATRICES = (256, 320, 384, 448, 512, 576, 640)


def _fit_matrix(acq: dict, span_r: float, span_c: float) -> None:
    """Choose matrix and pixel size (0.4-1.2 mm, FOV 240-400 mm) that hold the anatomy."""
    rows, ratio = acq["matrix"][0], acq["fov_ratio"]
    while True:
        cols = int(round(rows * ratio / 32) * 32) if rows * ratio >= 256 else rows
        ps = max(acq["pixel_mm"], span_r / rows, span_c / cols, 240.0 / rows)
        if ps <= 1.2 or rows == MATRICES[-1]:
            break
        rows = MATRICES[MATRICES.index(rows) + 1]
    acq["matrix"], acq["pixel_mm"] = [rows, cols], round(ps, 5)
    base = min(rows, acq["acq_base"])
    nc = min(cols, base * cols / rows * acq["phase_fraction"])
    budget = math.sqrt(min(1.0, 2.4e6 / (base * nc * acq["n_slices"])))  # scan-time trade-off
    base, nc = int(round(base * budget / 2) * 2), nc * budget
    acq["render"] = (base, int(round(nc / 2) * 2))
    t1 = acq["t1_matrix"][0]
    acq["t1_matrix"] = [t1, int(round(t1 * cols / rows / 2) * 2)]


def draw_acquisition(rng: np.random.Generator) -> dict:
    """Per-study scanner, protocol and geometry draws (independent of the variant)."""
    vendor = str(rng.choice(list(VENDORS)))
    v = VENDORS[vendor]
    model_name, field = v["models"][int(rng.integers(len(v["models"])))]
    m = int(rng.choice(MATRICES, p=[0.24, 0.28, 0.2, 0.1, 0.1, 0.04, 0.04]))
    t1m = int(rng.choice([256, 320, 384]))
    fov = float(np.clip(rng.normal(325, 40), 250, 400))
    return {
        "vendor": vendor,
        "model": model_name,
        "field_t": field,
        "matrix": [m, m],
        "fov_ratio": float(rng.choice([1.0, 1.0, 0.875, 0.75])),
        "pixel_mm": float(np.clip(fov / m, 0.4, 1.2)),
        "acq_base": int(rng.choice([256, 288, 320, 352, 384])),
        "phase_fraction": _u(rng, 0.75, 1.0),
        "t1_matrix": [t1m, t1m],
        "n_slices": int(np.clip(round(rng.normal(14, 3.2)), 9, 25)),
        "thickness_mm": float(rng.choice([3.0, 3.5, 4.0, 4.0, 4.5, 5.0])),
        "gap_mm": float(rng.choice([0.0, 0.3, 0.4, 0.5, 0.8, 1.0])),
        "anterior_left": bool(rng.random() < 0.7),
        "head_up": bool(rng.random() < 0.85),
        "yaw_deg": _u(rng, -8, 8) * (1.0 if rng.random() < 0.6 else 0.25),
        "tilt_deg": _u(rng, -8, 8) * (1.0 if rng.random() < 0.6 else 0.25),
        "stack_offset_mm": _u(rng, -8, 8),
        "slices_ascending": bool(rng.random() < 0.5),
        "snr_t2": _u(rng, 10, 60),
        "snr_t1": _u(rng, 10, 60),
        "snr_ax": _u(rng, 10, 60),
        "max_value": _u(rng, 1000, 4000),
        "bits_stored": v["bits"],
        "t2_desc": str(rng.choice(v["t2"])),
        "t1_desc": str(rng.choice(v["t1"])),
        "ax_desc": str(rng.choice(v["ax"])),
        "te_t2": _u(rng, 80, 120),
        "tr_t2": _u(rng, 2500, 5000),
        "te_t1": _u(rng, 8, 20),
        "tr_t1": _u(rng, 400, 750),
        "te_ax": _u(rng, 85, 115),
        "tr_ax": _u(rng, 3000, 5500),
        "etl_t2": int(rng.integers(15, 32)),
        "t1_first": bool(rng.random() < 0.35),
        "fermi": _u(rng, 0.8, 1.05),
        "software": str(rng.choice(v["software"])),
    }


def draw_bias(rng: np.random.Generator, model: SpineModel) -> dict:
    c, k3 = model.chain, model.i["L3"]
    mid = 0.5 * (c.top[k3] + c.bottom[k3])
    back = model.s_depth[k3] / 2 + model.s_canal_ap[k3] + 40 + model.back_fat
    y_skin = float((mid - back * c.ant[k3])[0])
    return {
        "y_coil": y_skin + _u(rng, 5, 15),
        "floor": _u(rng, 0.2, 0.5),
        "depth": _u(rng, 90, 200),
        "ripple": _u(rng, 0.0, 0.12),
        "ripple_mm": _u(rng, 150, 400),
        "phase": _u(rng, 0, 2 * np.pi),
        "norm": _u(rng, 0.3, 1.0),
        "fermi": 1.0,
    }


# --------------------------------------------------------------------------------------------
# DICOM output
# --------------------------------------------------------------------------------------------
def _ds(v: float) -> str:
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    s = "0" if s in ("", "-0") else s
    return s if len(s) <= 16 else f"{v:.9g}"


def _uid(*parts: object) -> str:
    """Deterministic UID; the parts are joined with a separator, since generate_uid hashes the
    concatenation of its sources ((1, 23) and (12, 3) would otherwise give one UID)."""
    return generate_uid(entropy_srcs=["|".join(["sixth-phantom", *(str(p) for p in parts)])])


def write_series(folder: Path, study: dict, ser: dict, geom: SeriesGeom, pix: np.ndarray) -> None:
    """Write one series as MR Image Storage Part-10 files (Explicit VR Little Endian)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(pix.shape[0]):
        sop = _uid(study["key"], ser["number"], "slice", i)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(str(folder / f"IM{i + 1:04d}.dcm"), {}, file_meta=meta,
                         preamble=b"\0" * 128)  # fmt: skip
        _study_attrs(ds, study)
        _series_attrs(ds, study, ser)
        row, col = geom.orient[i]
        normal = geom.normal(i)
        ipp = geom.ipp(i)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [_ds(x) for x in ipp]
        ds.ImageOrientationPatient = [_ds(x) for x in (*row, *col)]
        ds.SliceLocation = _ds(float(geom.centres[i] @ normal))
        ds.SliceThickness = _ds(geom.thickness)
        ds.SpacingBetweenSlices = _ds(geom.thickness + geom.gap)
        ds.PixelSpacing = [_ds(geom.spacing[0]), _ds(geom.spacing[1])]
        ds.Rows, ds.Columns = pix.shape[1], pix.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = study["bits"]
        ds.HighBit = study["bits"] - 1
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
        ds.WindowCenter = _ds(ser["wc"])
        ds.WindowWidth = _ds(ser["ww"])
        ds.AcquisitionTime = ds.ContentTime = study["time"]
        ds.PixelData = np.ascontiguousarray(pix[i]).astype("<u2").tobytes()
        ds.save_as(folder / f"IM{i + 1:04d}.dcm", enforce_file_format=True)


def _study_attrs(ds: FileDataset, st: dict) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = st["image_type"]
    ds.InstanceCreationDate = ds.StudyDate = ds.SeriesDate = st["date"]
    ds.AcquisitionDate = ds.ContentDate = st["date"]
    ds.StudyTime = st["time"]
    ds.AccessionNumber = st["accession"]
    ds.Modality = "MR"
    ds.Manufacturer = st["vendor"]
    ds.ManufacturerModelName = st["model"]
    ds.InstitutionName = "Sixth Phantom Imaging Centre"
    ds.StationName = st["station"]
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = st["study_desc"]
    ds.PatientName = st["patient_name"]
    ds.PatientID = st["patient_id"]
    ds.PatientBirthDate = st["birth"]
    ds.PatientSex = st["sex"]
    ds.PatientAge = st["age"]
    ds.PatientWeight = _ds(st["weight"])
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = st["study_uid"]
    ds.StudyID = st["study_id"]
    ds.FrameOfReferenceUID = st["for_uid"]
    ds.PositionReferenceIndicator = ""
    ds.MagneticFieldStrength = _ds(st["field"])
    ds.ImagingFrequency = _ds(42.577478 * st["field"])
    ds.ImagedNucleus = "1H"
    ds.SoftwareVersions = st["software"]
    ds.DeviceSerialNumber = st["serial"]
    ds.TransmitCoilName = "Body"


def _series_attrs(ds: FileDataset, st: dict, ser: dict) -> None:
    ds.SeriesInstanceUID = ser["uid"]
    ds.SeriesNumber = ser["number"]
    ds.AcquisitionNumber = 1
    ds.SeriesDescription = ser["desc"]
    ds.ProtocolName = ser["protocol"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK", "SP", "OSP"] if st["vendor"] == "SIEMENS" else ["SK", "OSP"]
    ds.ScanOptions = ["SAT_GEMS"] if "GE" in st["vendor"] else ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = ser["seq_name"]
    ds.RepetitionTime = _ds(ser["tr"])
    ds.EchoTime = _ds(ser["te"])
    ds.EchoNumbers = 1
    ds.EchoTrainLength = ser["etl"]
    ds.NumberOfAverages = _ds(ser["nex"])
    ds.FlipAngle = _ds(ser["flip"])
    ds.PixelBandwidth = _ds(ser["bw"])
    ds.PercentSampling = _ds(ser["pct_sampling"])
    ds.PercentPhaseFieldOfView = _ds(100.0)
    ds.AcquisitionMatrix = ser["acq_matrix"]
    ds.InPlanePhaseEncodingDirection = ser["phase_dir"]
    ds.ReceiveCoilName = st["coil"]
    ds.SAR = _ds(ser["sar"])
    ds.dBdt = _ds(0.0)


# --------------------------------------------------------------------------------------------
# Study generation
# --------------------------------------------------------------------------------------------
def _study_info(rng: np.random.Generator, seed: int, index: int, acq: dict, key: str) -> dict:
    v = VENDORS[acq["vendor"]]
    date = dt.date(2018, 1, 1) + dt.timedelta(days=int(rng.integers(0, 2400)))
    age = int(rng.integers(22, 85))
    birth = date - dt.timedelta(days=365 * age + int(rng.integers(0, 365)))
    clock = dt.time(int(rng.integers(7, 20)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
    return {
        "key": key,
        "study_uid": _uid(key, "study"),
        "for_uid": _uid(key, "frame-of-reference"),
        "date": date.strftime("%Y%m%d"),
        "time": clock.strftime("%H%M%S"),
        "birth": birth.strftime("%Y%m%d"),
        "age": f"{age:03d}Y",
        "sex": str(rng.choice(["F", "M"])),
        "weight": round(_u(rng, 50, 110), 1),
        "patient_name": f"SIXTH^PHANTOM{seed:02d}X{index:03d}",
        "patient_id": f"SX{seed:03d}{index:04d}",
        "accession": f"A{seed:02d}{index:05d}",
        "study_id": str(1000 + index),
        "study_desc": str(rng.choice(["MRI LUMBAR SPINE", "L-SPINE", "MR LWS", "Lumbar Spine"])),
        "vendor": acq["vendor"],
        "model": acq["model"],
        "field": acq["field_t"],
        "software": acq["software"],
        "serial": str(int(rng.integers(10000, 99999))),
        "station": f"MR{int(rng.integers(1, 9))}",
        "image_type": v["image_type"],
        "coil": v["coil"],
        "bits": acq["bits_stored"],
    }


def _series_info(rng, st: dict, acq: dict, which: str, number: int, geom: SeriesGeom) -> dict:
    desc = acq[f"{which}_desc"]
    te, tr = acq[f"te_{which}"], acq[f"tr_{which}"]
    etl = acq["etl_t2"] if which != "t1" else int(rng.integers(2, 6))
    vendor = st["vendor"]
    protocol = desc if vendor != "GE MEDICAL SYSTEMS" else "L-SPINE ROUTINE"
    seq = {"SIEMENS": "*tse2d1_", "GE MEDICAL SYSTEMS": "frfse", "CANON_MEC": "FSE2D"}
    nr, nc = geom.render
    phase_dir = "COL" if which != "ax" else "ROW"
    acq_matrix = [nr, 0, 0, nc] if phase_dir == "COL" else [0, nc, nr, 0]
    return {
        "uid": _uid(st["key"], "series", which),
        "number": number,
        "desc": desc,
        "protocol": protocol,
        "seq_name": seq.get(vendor, "TSE") + (str(etl) if vendor == "SIEMENS" else ""),
        "te": round(te, 2),
        "tr": round(tr, 1),
        "etl": etl,
        "nex": float(rng.choice([1.0, 2.0])),
        "flip": 90.0 if vendor != "SIEMENS" else float(rng.choice([150.0, 160.0])),
        "bw": round(_u(rng, 130, 300), 1),
        "pct_sampling": 100.0,
        "acq_matrix": acq_matrix,
        "phase_dir": phase_dir,
        "sar": round(_u(rng, 0.3, 2.5), 3),
    }


def _truth(seed, index, variant, st, t2_uid, normal, model, acq, anat, ax_info) -> dict:
    discs = []
    for name in TRUTH_DISCS:
        k = model.names.index(name.split("-")[0])
        y, z = model.chain.disc_centre(k)
        discs.append({"level": name, "patient_xyz": [round(model.x0, 3), round(float(y), 3),
                                                     round(float(z), 3)]})  # fmt: skip
    keep = {k: v for k, v in acq.items() if not k.startswith(("te_", "tr_"))}
    keep.update({"te_t2_ms": round(acq["te_t2"], 2), "tr_t2_ms": round(acq["tr_t2"], 1)})
    keep = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in keep.items()}
    keep["render"] = list(acq["render"])
    keep["axial"] = ax_info
    keep["anatomy"] = {
        **anat.draws,
        "sacral_slope_deg": round(anat.sacral_slope, 1),
        "conus_level": round(model.lam_conus, 2),
        "spine_x_mm": round(model.x0, 2),
    }
    return {
        "set": "sixth",
        "variation": "sixth",
        "variant": variant,
        "lstv": variant != "normal",
        "seed": seed,
        "index": index,
        "study_instance_uid": st["study_uid"],
        "t2_series_instance_uid": t2_uid,
        "slice_normal": [round(float(x), 6) for x in normal],
        "discs": discs,
        "acquisition": keep,
    }


def _fov_levels(model: SpineModel, geom: SeriesGeom) -> list[str]:
    """Names of the first and last vertebral bodies whose centres lie inside the T2 FOV."""
    row, col = geom.orient[0]
    ctr = geom.centres[len(geom.centres) // 2]
    half_r, half_c = geom.rows * geom.spacing[0] / 2, geom.cols * geom.spacing[1] / 2
    inside = []
    for k, name in enumerate(model.names):
        mid = 0.5 * (model.chain.top[k] + model.chain.bottom[k])
        rel = np.array([model.x0, *mid]) - ctr
        if abs(rel @ col) < half_r and abs(rel @ row) < half_c:
            inside.append(name)
    return [inside[0], inside[-1]] if inside else []


def _level_bbox(geoms: list[SeriesGeom]) -> tuple[float, float, float, float]:
    pts = np.concatenate([g.corners() for g in geoms])
    pad = 12.0
    return (pts[:, 1].min() - pad, pts[:, 1].max() + pad, pts[:, 2].min() - pad,
            pts[:, 2].max() + pad)  # fmt: skip


def build_study(seed: int, index: int) -> dict:
    """Draw anatomy and acquisition and render all series (no file output)."""
    rng = np.random.default_rng([seed, index, 60606])
    variant = VARIANTS[index % len(VARIANTS)]
    anat = draw_anatomy(rng, variant)
    x0 = _u(rng, -6, 6)
    chain = build_chain(anat, (_u(rng, 30, 90), _u(rng, -70, 50)), "L3")
    model = SpineModel(anat, chain, x0, rng)
    acq = draw_acquisition(rng)
    sag = sagittal_geometry(rng, acq, model)
    ax, ax_info = axial_geometry(rng, model)
    model.levels = LevelMap(chain, _level_bbox([sag, ax]))
    acq["fov_levels"] = _fov_levels(model, sag)
    prm = draw_bias(rng, model)
    prm["fermi"] = acq["fermi"]
    t2, t1, lab, ctr = render_series(model, sag)
    a2, _, alab, actr = render_series(model, ax)
    rows, cols = acq["matrix"]
    img_t2 = acquire(t2, lab, ctr, (rows, cols), acq["snr_t2"], prm, rng)
    img_t1 = acquire(t1, lab, ctr, tuple(acq["t1_matrix"]), acq["snr_t1"], prm, rng)
    img_ax = acquire(a2, alab, actr, (ax.rows, ax.cols), acq["snr_ax"], prm, rng)
    fr, fc = rows * sag.spacing[0], cols * sag.spacing[1]
    t1r, t1c = acq["t1_matrix"]
    sag_t1 = SeriesGeom(sag.orient, sag.centres, t1r, t1c, (fr / t1r, fc / t1c), sag.thickness,
                        sag.gap, sag.render)  # fmt: skip
    return {
        "variant": variant, "anat": anat, "model": model, "acq": acq, "ax_info": ax_info,
        "geoms": {"t2": sag, "t1": sag_t1, "ax": ax},
        "images": {"t2": img_t2, "t1": img_t1, "ax": img_ax},
        "labels": lab, "rng": rng,
    }  # fmt: skip


def generate_study(out_root: Path, seed: int, index: int) -> dict:
    """Render one study and write its DICOM series and truth.json; returns the study dict."""
    s = build_study(seed, index)
    rng, acq = s["rng"], s["acq"]
    key = f"{seed}-{index}"
    st = _study_info(rng, seed, index, acq, key)
    folder = out_root / f"sixth-{index:03d}"
    first = int(rng.integers(2, 6))
    numbers = {"t1": first, "t2": first + 1} if acq["t1_first"] else {"t2": first, "t1": first + 1}
    numbers["ax"] = first + 2
    vmax = acq["max_value"]
    for which in ("t2", "t1", "ax"):
        geom = s["geoms"][which]
        ser = _series_info(rng, st, acq, which, numbers[which], geom)
        pix, wc, ww = to_stored(s["images"][which], vmax * _u(rng, 0.9, 1.1), st["bits"])
        ser.update(wc=wc, ww=ww)
        write_series(folder / f"S{numbers[which]:02d}", st, ser, geom, pix)
        s[f"{which}_uid"] = ser["uid"]
        s[f"{which}_pixels"] = pix
    truth = _truth(seed, index, s["variant"], st, s["t2_uid"], s["geoms"]["t2"].normal(0),
                   s["model"], acq, s["anat"], s["ax_info"])  # fmt: skip
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))
    s["truth"], s["folder"] = truth, folder
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        t0 = time.perf_counter()
        s = generate_study(args.out_dir, args.seed, i)
        print(f"{s['folder'].name} {s['variant']:<14} {time.perf_counter() - t0:5.2f}s", flush=True)


if __name__ == "__main__":
    main()
