#!/usr/bin/env python3
"""Eleventh phantom: synthetic lumbar-spine MR studies for a blind LSTV screen.

Each study is a small MR examination of a synthetic patient written as DICOM
(MR Image Storage, Explicit VR Little Endian) plus a ``truth.json``.

Model
-----
Anatomy (patient LPS coordinates, millimetres)
    * The spine is a chain of rigid vertebrae and discs built in the sagittal
      plane from the sacral base upwards and downwards.  Every vertebral body
      and disc has its own height and wedge angle; lumbar lordosis (flat to
      deep), sacral slope, sacral and coccygeal kyphosis and thoracic kyphosis
      emerge from the sum of those wedges.  Scoliosis adds a lateral sine
      offset with matching coronal tilt and axial rotation; a global yaw and a
      table offset place the patient in scanner space.  Spondylolisthesis
      shifts a vertebra along its anterior axis.
    * Vertebral bodies: rounded-square footprint with a concave posterior
      wall, concave endplates (plane + recess), cortical shell and endplates,
      marrow with a per-vertebra fat fraction that rises with age, Modic 1/2/3
      zones next to degenerated discs, haemangiomas, basivertebral veins,
      Schmorl nodes, osteophytes and the occasional wedge fracture.
    * Posterior elements: pedicles, laminae, articular pillars with facet
      joint lines, spinous processes (steep in the thoracic spine), transverse
      processes, ribs on the thoracic vertebrae (short or hypoplastic at T12),
      fused sacral segments with alae, dorsal plate, median crest and sacral
      foramina, and a coccyx of 3-4 pieces.
    * Discs: annulus and nucleus whose height, size, T2 and proton density
      fall with a Pfirrmann-like grade drawn from age and level; internuclear
      cleft, high-intensity zones, vacuum, bulges and herniations.  Sacral
      segments are separated by thin remnant discs (sometimes a partly
      hydrated S1-S2 remnant).
    * Canal: epidural fat, ligamenta flava, dural sac with CSF, cord with a
      conus ending between T12 and L2, filum, cauda-equina roots layering
      dorsally, neural foramina with fat and exiting roots, interspinous
      ligaments.
    * Body: skin outline with subcutaneous fat (patient habitus), abdominal
      wall, paraspinal muscles with age-related fatty infiltration, psoas,
      visceral fat, lung bases above an oblique diaphragm, liver, spleen,
      kidneys, stomach, heart, aorta/IVC and iliac vessels (flow voids), bowel
      loops with fluid/gas/faeces, rectum, bladder, uterus or prostate and
      iliac wings with sacro-iliac joints.
Variants (``index % 4``: 0/2 normal, 1 lumbarization, 3 sacralization)
    * normal: 5 lumbar vertebrae, a sacrum of 5 fused segments; confounders
      include dark narrowed L5-S1 discs, hydrated S1-S2 remnants, large L5
      transverse processes and a steep sacrum.
    * lumbarization: S1 is a mobile, more or less lumbar-shaped vertebra with
      a (well or partly formed) S1-S2 disc and a 4-segment sacrum below;
      partial forms keep a unilateral ala fused to S2.
    * sacralization: L5 is wedge-shaped and seated in the sacrum, the L5-S1
      junction is rudimentary, bridged or bony, and enlarged transverse
      processes articulate with (pseudarthrosis) or fuse to the sacral ala,
      uni- or bilaterally.
    Thoracic levels shown and the conus level vary, so counting from the top
    of the image is not reliable.
Acquisition
    * Each slice stack is rendered by evaluating tissue labels at the centres
      of a grid slightly finer than the acquired k-space (two through-plane
      samples for partial volume on the sagittal T2), mapping labels to a
      water and a fat pool (PD, T1, T2 at 1.5 T or 3 T) and computing TSE,
      STIR, fat-saturated or gradient-echo signal, with smooth tissue texture
      and a posterior-bright receive-coil bias.
    * The image is Fourier transformed, truncated to the acquired matrix
      (Gibbs ringing, blur), optionally apodised, given a fat-water shift
      along the readout, optional motion ghosts along the phase direction,
      complex Gaussian noise (magnitude -> Rician), zero-filled to the
      reconstruction matrix and scaled to unsigned 16-bit values.
    * Geometry is drawn per study: field strength, vendor style, pixel
      spacing 0.4-1.2 mm, matrices 256-640 (sometimes rectangular), 9-25
      sagittal slices of 3-5 mm with 0-1 mm gaps, lateral off-centring,
      oblique tilt up to 12 degrees, anterior left or right, occasionally
      head-down or transposed layouts.
Series
    Sagittal T2 TSE (the series to read), sagittal T1 TSE and an axial T2
    (angled blocks through the lower discs or a continuous stack), and
    sometimes a 3-plane localizer, a sagittal STIR, a sagittal fat-saturated
    T2 or a coronal T2.  Descriptions and protocol names follow
    Siemens/GE/Philips/Canon habits, sometimes uninformative.

Usage: ``python bench/eleventh_phantom.py OUT_DIR --count 40 --seed N``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

F32 = np.float32
DEG = math.pi / 180.0
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
EX = np.array([1.0, 0.0, 0.0])
EY = np.array([0.0, 1.0, 0.0])
EZ = np.array([0.0, 0.0, 1.0])


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------


def variant_for(index: int) -> str:
    """Variant by study index: 0/2 normal, 1 lumbarization, 3 sacralization."""
    return ("normal", "lumbarization", "normal", "sacralization")[index % 4]


def make_uid(*parts: object) -> str:
    """Deterministic DICOM UID from its parts (joined with '/', then hashed)."""
    return generate_uid(entropy_srcs=["/".join(["eleventh-phantom", *map(str, parts)])])


def unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / float(np.linalg.norm(v))


def rotation(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rodrigues rotation matrix (right-handed, radians)."""
    k = unit(axis)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * (kx @ kx)


def perpendicular(t: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to unit vector t."""
    helper = EX if abs(t[0]) < 0.8 else EY
    return unit(np.cross(t, helper))


def u2(phi: float) -> np.ndarray:
    """Cranial axis (y, z) of an element tilted anteriorly by phi."""
    return np.array([-math.sin(phi), math.cos(phi)])


def a2(phi: float) -> np.ndarray:
    """Anterior axis (y, z) of an element tilted anteriorly by phi."""
    return np.array([-math.cos(phi), -math.sin(phi)])


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


class Draw:
    """Random draws with clipping helpers; every value is a plain Python type."""

    def __init__(self, g: np.random.Generator) -> None:
        self.g = g

    def u(self, lo: float, hi: float) -> float:
        return float(self.g.uniform(lo, hi))

    def n(self, mu: float, sd: float, lo: float = -math.inf, hi: float = math.inf) -> float:
        return float(min(hi, max(lo, self.g.normal(mu, sd))))

    def p(self, prob: float) -> bool:
        return bool(self.g.random() < prob)

    def i(self, lo: int, hi: int) -> int:
        return int(self.g.integers(lo, hi + 1))

    def pick(self, items: Sequence, weights: Sequence[float] | None = None):
        if weights is None:
            return items[int(self.g.integers(len(items)))]
        w = np.asarray(weights, dtype=float)
        return items[int(self.g.choice(len(items), p=w / w.sum()))]


# --------------------------------------------------------------------------
# tissues
# --------------------------------------------------------------------------


class Tissues:
    """Per-study tissue table.  Label id -> water-pool PD/T1/T2, fat fraction, texture."""

    def __init__(self, b0: float) -> None:
        self.b0 = b0
        self.rows: list[tuple[float, float, float, float, float]] = []
        self.names: list[str] = []
        self.add("air", 0.0, 1000.0, 10.0, 0.0, 0.0)

    def add(
        self, name: str, pd: float, t1: float, t2: float, ff: float = 0.0, tex: float = 0.04
    ) -> int:
        if self.b0 > 2.0:
            t1 *= 1.12 if t1 > 2500 else 1.3
            t2 *= 0.9
        self.rows.append((pd, t1, t2, min(max(ff, 0.0), 1.0), tex))
        self.names.append(name)
        return len(self.rows) - 1

    def fat_relaxation(self) -> tuple[float, float]:
        """(T1, apparent TSE T2) of the fat pool."""
        return (370.0, 118.0) if self.b0 > 2.0 else (265.0, 135.0)


class Labels:
    """Label ids of the shared tissues of one study."""

    def __init__(self, tis: Tissues, pat: Patient) -> None:
        a = tis.add
        self.air = 0
        self.fat = a("fat", 1.0, 900, 60, 1.0, 0.03)
        self.visc_fat = a("visceral fat", 0.95, 900, 60, 0.93, 0.1)
        self.muscle = a("muscle", 0.72, 1000, 40, 0.03, 0.05)
        self.para_muscle = a(
            "paraspinal muscle", 0.74, 1000, 40, pat.muscle_ff, 0.09 + 0.2 * pat.muscle_ff
        )
        self.csf = a("csf", 1.0, 3800, 1600, 0.0, 0.012)
        self.cord = a("cord", 0.78, 800, 82, 0.0, 0.03)
        self.root = a("nerve root", 0.74, 900, 68, 0.0, 0.02)
        self.epi_fat = a("epidural fat", 0.95, 900, 60, 0.85, 0.04)
        self.ligament = a("ligament", 0.25, 700, 18, 0.0, 0.05)
        self.interspinous = a("interspinous ligament", 0.5, 800, 30, 0.35, 0.25)
        self.cortex = a("cortical bone", 0.07, 900, 8, 0.0, 0.0)
        self.cartilage = a("cartilage", 0.72, 1000, 42, 0.0, 0.03)
        self.joint = a("joint fluid", 0.95, 3000, 500, 0.0, 0.02)
        self.remnant = a("sacral disc remnant", 0.52, 900, 34, 0.0, 0.04)
        self.cocc_disc = a("coccygeal disc", 0.6, 900, 42, 0.0, 0.04)
        self.blood = a("flowing blood", 0.09, 1300, 150, 0.0, 0.12)
        self.liver = a("liver", 0.72, 580, 45, 0.05, 0.03)
        self.spleen = a("spleen", 0.8, 1050, 65, 0.0, 0.03)
        self.kidney = a("kidney", 0.85, 950, 80, 0.0, 0.05)
        self.renal_sinus = a("renal sinus", 0.95, 900, 60, 0.8, 0.06)
        self.lung = a("lung", 0.06, 1200, 25, 0.0, 0.3)
        self.medi_fat = a("mediastinal fat", 0.95, 900, 60, 0.85, 0.05)
        self.bowel_fluid = a("bowel fluid", 0.95, 2800, 650, 0.0, 0.05)
        self.bowel_feces = a("bowel content", 0.7, 800, 60, 0.15, 0.3)
        self.bowel_wall = a("bowel wall", 0.75, 900, 55, 0.0, 0.05)
        self.urine = a("urine", 1.0, 3000, 1200, 0.0, 0.01)
        self.uterus = a("uterus", 0.85, 1200, 95, 0.0, 0.06)
        self.prostate = a("prostate", 0.85, 1200, 85, 0.0, 0.06)
        self.myocardium = a("myocardium", 0.75, 950, 50, 0.0, 0.03)
        self.foramen_fat = a("foraminal fat", 0.95, 900, 60, 0.8, 0.06)
        self.rib_marrow = a("rib marrow", 0.85, 900, 55, min(0.9, pat.marrow_ff + 0.12), 0.08)
        self.pelvic_marrow = a("iliac marrow", 0.85, 900, 55, min(0.92, pat.marrow_ff + 0.15), 0.1)
        self.basiv = a("basivertebral vein", 0.9, 1400, 180, 0.1, 0.02)
        self.hemangioma = a("haemangioma", 0.9, 1000, 150, 0.55, 0.1)
        self.modic = {
            1: a("modic 1", 0.9, 1200, 92, 0.08, 0.08),
            2: a("modic 2", 0.92, 900, 60, min(0.93, pat.marrow_ff + 0.35), 0.08),
            3: a("modic 3", 0.3, 900, 25, 0.2, 0.05),
        }
        self.edema = a("marrow oedema", 0.9, 1300, 95, 0.08, 0.05)


# --------------------------------------------------------------------------
# sampling grids and label canvas
# --------------------------------------------------------------------------


@dataclass
class Stack:
    """Parallel planes of a regular grid; pixel (k, i, j) sits at
    origin + offs[k]*normal + i*di*col + j*dj*row."""

    origin: np.ndarray
    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    di: float
    dj: float
    offs: np.ndarray
    n_i: int
    n_j: int
    group: int = 1  # consecutive planes that share the smooth background

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.offs), self.n_i, self.n_j)


@dataclass
class Crop:
    sl: tuple
    k: np.ndarray
    i: np.ndarray
    j: np.ndarray


def crop_box(st: Stack, center: np.ndarray, axes: np.ndarray, half: np.ndarray) -> Crop | None:
    """Part of the stack covered by an oriented box (axes: 3 unit rows)."""
    dvec = np.asarray(center, dtype=float) - st.origin
    half = np.asarray(half, dtype=float)

    def extent(v: np.ndarray) -> float:
        return float(np.sum(np.abs(half * (axes @ v))))

    cn, en = float(dvec @ st.normal), extent(st.normal)
    k0 = int(np.searchsorted(st.offs, cn - en, "left"))
    k1 = int(np.searchsorted(st.offs, cn + en, "right"))
    if k1 <= k0:
        return None
    ci, ei = float(dvec @ st.col) / st.di, extent(st.col) / st.di
    cj, ej = float(dvec @ st.row) / st.dj, extent(st.row) / st.dj
    i0, i1 = max(0, int(math.floor(ci - ei))), min(st.n_i, int(math.ceil(ci + ei)) + 1)
    j0, j1 = max(0, int(math.floor(cj - ej))), min(st.n_j, int(math.ceil(cj + ej)) + 1)
    if i1 <= i0 or j1 <= j0:
        return None
    return Crop(
        (slice(k0, k1), slice(i0, i1), slice(j0, j1)),
        st.offs[k0:k1],
        np.arange(i0, i1) * st.di,
        np.arange(j0, j1) * st.dj,
    )


def coord(st: Stack, cr: Crop, point: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """(p - point) . vec for every voxel p of the crop (float32)."""
    base = float((st.origin - point) @ vec)
    a = (cr.k * float(st.normal @ vec) + base).astype(F32)
    b = (cr.i * float(st.col @ vec)).astype(F32)
    c = (cr.j * float(st.row @ vec)).astype(F32)
    return (a[:, None, None] + b[None, :, None]) + c[None, None, :]


def erode(m: np.ndarray) -> np.ndarray:
    """In-plane 4-neighbour erosion of a boolean (k, i, j) mask."""
    e = m.copy()
    e[:, 1:, :] &= m[:, :-1, :]
    e[:, :-1, :] &= m[:, 1:, :]
    e[:, :, 1:] &= m[:, :, :-1]
    e[:, :, :-1] &= m[:, :, 1:]
    return e


class Canvas:
    """Label volume with painter priorities (higher priority wins, ties: last wins)."""

    def __init__(self, st: Stack, labels: Labels) -> None:
        self.st = st
        self.labels = labels
        self.lab = np.zeros(st.shape, dtype=np.uint16)
        self.pri = np.zeros(st.shape, dtype=np.uint8)

    def paint(self, cr: Crop, mask: np.ndarray, label, prio: int) -> None:
        pv = self.pri[cr.sl]
        m = mask & (pv <= prio)
        lv = self.lab[cr.sl]
        if isinstance(label, np.ndarray):
            lv[m] = label[m]
        else:
            lv[m] = label
        pv[m] = prio

    def paint_bone(self, cr: Crop, mask: np.ndarray, marrow: int, cortex: int, prio: int) -> None:
        """Bone with a one-pixel cortical rim; marrow outranks any neighbouring rim."""
        if not mask.any():
            return
        self.paint(cr, mask, cortex, prio)
        self.paint(cr, erode(mask), marrow, prio + 1)


# --------------------------------------------------------------------------
# patient and spine anatomy
# --------------------------------------------------------------------------


@dataclass
class Patient:
    age: int
    sex: str
    size: float
    bmi: float
    fat_post: float
    fat_ant: float
    fat_lat: float
    trunk_ap: float
    trunk_hw: float
    marrow_ff: float
    muscle_ff: float


def draw_patient(d: Draw) -> Patient:
    band = d.pick([(18, 40), (40, 65), (65, 89)], [0.3, 0.42, 0.28])
    age = d.i(*band)
    sex = d.pick(["F", "M"])
    size = d.n(1.0, 0.055, 0.86, 1.14) * (0.95 if sex == "F" else 1.0)
    bmi = d.n(27.0, 5.0, 17.0, 45.0)
    fs = (bmi - 17.0) / 28.0
    return Patient(
        age=age,
        sex=sex,
        size=size,
        bmi=bmi,
        fat_post=4.0 + 38.0 * fs * d.u(0.6, 1.3),
        fat_ant=8.0 + 70.0 * fs * d.u(0.6, 1.3),
        fat_lat=8.0 + 45.0 * fs * d.u(0.6, 1.3),
        trunk_ap=(175.0 + 140.0 * fs) * d.u(0.93, 1.07) * size,
        trunk_hw=(128.0 + 50.0 * fs) * d.u(0.93, 1.07) * size,
        marrow_ff=d.n(0.22 + 0.0065 * (age - 20), 0.06, 0.12, 0.85),
        muscle_ff=d.n(0.02 + 0.005 * max(0, age - 40), 0.03, 0.0, 0.45),
    )


@dataclass
class Vertebra:
    name: str
    kind: str  # thoracic | lumbar | sacral | coccygeal
    h: float
    d: float
    w: float
    wedge: float  # radians, positive = anterior taller (lordotic)
    conc_sup: float = 1.5
    conc_inf: float = 1.5
    post_conc: float = 1.5
    ep_t: float = 1.0
    fuse_sup: bool = False
    fuse_inf: bool = False
    spur: float = 0.0
    arch: str = "lumbar"  # thoracic | lumbar | sacral | none
    top_of_sacrum: bool = False
    canal_ap: float = 16.0
    canal_lr: float = 22.0
    ped_w: float = 9.0
    ped_h: float = 14.0
    lam_t: float = 6.0
    sp_len: float = 28.0
    sp_h: float = 16.0
    sp_t: float = 6.0
    sp_slope: float = 0.15
    sides: tuple = ("tp", "tp")  # lateral part per side (-1, +1): tp | tp_thor | ala | mega | none
    tp_len: float = 45.0
    tp_r: float = 4.5
    ala_hw: float = 0.0
    ala_down: float = 0.0
    mega_fused: bool = False
    foramen_r: float = 0.0
    rib_len: float = 0.0
    # filled by the chain builder
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    frame: np.ndarray = field(default_factory=lambda: np.eye(3))
    phi: float = 0.0
    c2: np.ndarray = field(default_factory=lambda: np.zeros(2))
    d_top: float = 0.0  # depth/width at the fused superior / inferior surfaces (taper)
    d_bot: float = 0.0
    w_top: float = 0.0
    w_bot: float = 0.0
    g_sup: float = 4.0
    g_inf: float = 4.0
    # tissue labels
    marrow: int = 0
    cortex: int = 0
    modic_sup: int = 0
    modic_inf: int = 0
    modic_depth: float = 0.0
    hemangioma: tuple | None = None
    hemangioma_label: int = 0
    schmorl: tuple | None = None
    schmorl_label: int = 0
    basiv: int = 0

    @property
    def ap_c(self) -> float:
        """Anterior coordinate of the canal centre (negative: posterior)."""
        return -(0.5 * self.d + 0.5 * self.canal_ap - 0.3)

    @property
    def ped_x(self) -> float:
        return 0.14 * self.h

    def p_sup(self) -> np.ndarray:
        return self.center + 0.5 * self.h * self.frame[2]

    def p_inf(self) -> np.ndarray:
        return self.center - 0.5 * self.h * self.frame[2]

    def n_sup(self) -> np.ndarray:
        dl = 0.5 * self.wedge
        return math.cos(dl) * self.frame[2] - math.sin(dl) * self.frame[1]

    def n_inf(self) -> np.ndarray:
        dl = 0.5 * self.wedge
        return math.cos(dl) * self.frame[2] + math.sin(dl) * self.frame[1]

    def world(self, local: Sequence[float]) -> np.ndarray:
        return self.center + np.asarray(local, dtype=float) @ self.frame


@dataclass
class Disc:
    name: str
    kind: str  # mobile | lstv | rudimentary | remnant | cocc
    upper: Vertebra
    lower: Vertebra
    h: float
    wedge: float = 0.0
    slip: float = 0.0
    grade: int = 1
    nuc_size: float = 0.55
    bulge: float = 0.5
    hern: float = 0.0
    hern_l: float = 0.0
    hern_w: float = 6.0
    cleft: bool = False
    hiz: bool = False
    vacuum: bool = False
    bridge: float = 0.0
    fused: bool = False
    fused_line: bool = False
    annulus: int = 0
    nucleus: int = 0
    cleft_label: int = 0
    hiz_label: int = 0
    transition: int = 0
    # geometry filled later
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    frame: np.ndarray = field(default_factory=lambda: np.eye(3))
    d: float = 30.0
    w: float = 40.0


@dataclass
class CanalPoint:
    q: np.ndarray
    frame: np.ndarray
    s: float
    canal_ap: float
    canal_lr: float
    sac_ap: float
    sac_lr: float
    foramen_below: bool
    isp: float


@dataclass
class Spine:
    verts: list[Vertebra]
    discs: list[Disc]
    canal: list[CanalPoint]
    s_conus_tip: float
    conus_len: float
    s_sac_end: float
    conus_level: str
    ribs: list[tuple[np.ndarray, np.ndarray]]  # (points (n,3), radii (n,))

    def vert(self, name: str) -> Vertebra:
        for v in self.verts:
            if v.name == name:
                return v
        raise KeyError(name)

    def disc(self, name: str) -> Disc:
        for dk in self.discs:
            if dk.name == name:
                return dk
        raise KeyError(name)


THORACIC = ("T6", "T7", "T8", "T9", "T10", "T11", "T12")
LUMBAR = ("L1", "L2", "L3", "L4", "L5")
THOR_DIMS = {
    "T6": (18.5, 25.5, 30.0),
    "T7": (19.0, 26.0, 31.0),
    "T8": (19.5, 27.0, 32.0),
    "T9": (20.0, 28.0, 33.5),
    "T10": (21.0, 29.0, 35.0),
    "T11": (22.0, 30.0, 37.0),
    "T12": (23.5, 31.0, 40.0),
}
# h, d, w, canal_ap, canal_lr, pedicle width, spinous length, spinous height, slope, tp reach
LUMB_DIMS = {
    "L1": (25.5, 32.0, 42.0, 17.0, 21.0, 8.0, 30.0, 17.0, 0.18, 36.0),
    "L2": (26.5, 33.0, 44.0, 16.0, 22.0, 9.0, 31.0, 18.0, 0.15, 42.0),
    "L3": (27.0, 34.0, 46.0, 15.5, 23.0, 10.0, 31.0, 18.0, 0.12, 50.0),
    "L4": (27.0, 35.0, 48.0, 15.5, 24.0, 11.0, 29.0, 17.0, 0.12, 46.0),
    "L5": (26.0, 35.0, 50.0, 16.5, 26.0, 13.0, 23.0, 14.0, 0.15, 43.0),
}
# h, d, w, ala half width, canal ap, canal lr, dorsal plate, crest, foramen radius
SACR_DIMS = (
    (27.0, 31.0, 42.0, 50.0, 12.0, 24.0, 6.0, 9.0, 5.0),
    (23.0, 24.0, 34.0, 45.0, 10.0, 20.0, 5.0, 7.0, 4.5),
    (19.0, 19.0, 28.0, 37.0, 8.0, 16.0, 5.0, 5.0, 4.0),
    (15.0, 15.0, 22.0, 27.0, 6.0, 12.0, 4.0, 3.0, 3.5),
    (12.0, 11.0, 16.0, 17.0, 5.0, 9.0, 0.0, 0.0, 0.0),
)
COCC_DIMS = ((10.0, 12.0, 17.0), (8.5, 10.0, 13.0), (7.0, 8.5, 10.0), (6.0, 7.0, 8.0))
DISC_REF_H = {
    "T6-T7": 4.8,
    "T7-T8": 5.0,
    "T8-T9": 5.0,
    "T9-T10": 5.3,
    "T10-T11": 5.8,
    "T11-T12": 6.4,
    "T12-L1": 7.4,
    "L1-L2": 8.6,
    "L2-L3": 9.6,
    "L3-L4": 10.4,
    "L4-L5": 11.3,
    "L5-S1": 10.8,
}
LEVEL_RISK = {
    "L5-S1": 1.0,
    "L4-L5": 1.0,
    "L3-L4": 0.72,
    "L2-L3": 0.55,
    "L1-L2": 0.45,
    "T12-L1": 0.42,
    "S1-S2": 0.9,
}
GRADE_H = (1.0, 0.97, 0.88, 0.7, 0.45)
GRADE_T2 = (165.0, 135.0, 95.0, 66.0, 48.0)
GRADE_PD = (0.92, 0.9, 0.84, 0.76, 0.68)
GRADE_NUC = (0.72, 0.68, 0.58, 0.45, 0.3)


def make_thoracic(d: Draw, name: str, sz: float) -> Vertebra:
    h, dd, w = THOR_DIMS[name]
    t = int(name[1:])
    low = t >= 11
    return Vertebra(
        name=name,
        kind="thoracic",
        h=h * sz * d.u(0.95, 1.05),
        d=dd * sz * d.u(0.95, 1.05),
        w=w * sz * d.u(0.95, 1.05),
        wedge=d.n(-2.6 if t < 10 else (-1.8 if t < 12 else -1.0), 0.9) * DEG,
        conc_sup=d.u(0.6, 1.4),
        conc_inf=d.u(0.6, 1.4),
        post_conc=d.u(0.5, 1.5),
        arch="thoracic",
        canal_ap=(15.5 if t == 12 else 14.5) * d.u(0.9, 1.1),
        canal_lr=(19.0 if t == 12 else 16.5) * d.u(0.9, 1.1),
        ped_w=d.u(6.0, 8.0),
        ped_h=d.u(12.0, 14.0),
        lam_t=d.u(4.5, 6.0),
        sp_len=(36.0 if t < 10 else (32.0 if t == 10 else (28.0 if t == 11 else 26.0)))
        * sz
        * d.u(0.9, 1.1),
        sp_h=(9.0 if not low else 12.0) * d.u(0.9, 1.1),
        sp_t=d.u(4.5, 6.5),
        sp_slope=(1.1 if t < 10 else (0.9 if t == 10 else (0.55 if t == 11 else 0.35)))
        * d.u(0.85, 1.15),
        sides=("tp_thor", "tp_thor"),
        tp_len=0.0,
        tp_r=d.u(4.0, 5.5),
        rib_len=(
            300.0
            if t < 11
            else (d.u(110, 210) if t == 11 else d.pick([d.u(15, 45), d.u(50, 140)], [0.3, 0.7]))
        ),
    )


def make_lumbar(d: Draw, name: str, sz: float) -> Vertebra:
    h, dd, w, cap, clr, pw, spl, sph, slope, tp = LUMB_DIMS[name]
    return Vertebra(
        name=name,
        kind="lumbar",
        h=h * sz * d.u(0.95, 1.05),
        d=dd * sz * d.u(0.95, 1.05),
        w=w * sz * d.u(0.95, 1.05),
        wedge=0.0,
        conc_sup=d.u(0.8, 2.0),
        conc_inf=d.u(0.8, 2.0),
        post_conc=d.u(0.8, 2.2),
        arch="lumbar",
        canal_ap=cap * d.u(0.88, 1.12),
        canal_lr=clr * d.u(0.9, 1.1),
        ped_w=pw * d.u(0.85, 1.15),
        ped_h=d.u(13.0, 16.0),
        lam_t=d.u(5.5, 7.5),
        sp_len=spl * sz * d.u(0.85, 1.15),
        sp_h=sph * d.u(0.85, 1.15),
        sp_t=d.u(5.0, 8.0),
        sp_slope=slope * d.u(0.5, 1.5),
        sides=("tp", "tp"),
        tp_len=tp * sz * d.u(0.85, 1.15),
        tp_r=(6.0 if name == "L5" else 4.2) * d.u(0.85, 1.15),
    )


def make_sacral(d: Draw, name: str, k: int, sz: float, scale: float, top: bool) -> Vertebra:
    h, dd, w, ala, cap, clr, plate, crest, fr = SACR_DIMS[k]
    last = k == len(SACR_DIMS) - 1
    return Vertebra(
        name=name,
        kind="sacral",
        h=h * sz * scale * d.u(0.93, 1.07),
        d=dd * sz * scale * d.u(0.93, 1.07),
        w=w * sz * scale * d.u(0.93, 1.07),
        wedge=0.0,
        conc_sup=(d.u(0.8, 1.8) if top else 0.2),
        conc_inf=0.2,
        post_conc=(1.0 if top else 0.3),
        ep_t=1.0,
        fuse_sup=not top,
        fuse_inf=not last,
        arch="sacral",
        top_of_sacrum=top,
        canal_ap=cap * d.u(0.85, 1.15),
        canal_lr=clr * d.u(0.9, 1.1),
        lam_t=plate * d.u(0.8, 1.2),
        sp_len=crest * d.u(0.6, 1.3),
        sp_h=0.55 * h,
        sp_t=d.u(4.0, 6.0),
        sp_slope=0.25,
        sides=("ala", "ala"),
        ala_hw=ala * sz * scale * d.u(0.92, 1.08),
        foramen_r=fr * d.u(0.85, 1.15),
    )


def make_coccygeal(d: Draw, k: int, sz: float) -> Vertebra:
    h, dd, w = COCC_DIMS[k]
    return Vertebra(
        name=f"Co{k + 1}",
        kind="coccygeal",
        h=h * sz * d.u(0.85, 1.15),
        d=dd * sz * d.u(0.85, 1.15),
        w=w * sz * d.u(0.85, 1.15),
        wedge=d.n(-4.0, 2.0) * DEG,
        conc_sup=0.2,
        conc_inf=0.2,
        post_conc=0.2,
        arch="none",
        sides=("none", "none"),
        canal_ap=3.0,
        canal_lr=5.0,
    )


def lumbarize_s1(d: Draw, sz: float, deg: float) -> Vertebra:
    """A mobile S1: lumbar-like body and arch, the more so the higher deg."""
    h0, d0, w0 = SACR_DIMS[0][:3]
    h1, d1, w1 = LUMB_DIMS["L5"][:3]
    v = Vertebra(
        name="S1",
        kind="lumbar",
        h=lerp(h0 * 0.97, h1, deg) * sz * d.u(0.95, 1.05),
        d=lerp(d0, d1 * 0.97, deg) * sz * d.u(0.95, 1.05),
        w=lerp(w0, w1 * 0.95, deg) * sz * d.u(0.95, 1.05),
        wedge=0.0,
        conc_sup=d.u(0.8, 1.8),
        conc_inf=lerp(0.6, 1.6, deg),
        post_conc=lerp(0.8, 1.8, deg),
        arch="lumbar",
        canal_ap=d.u(13.0, 16.0),
        canal_lr=d.u(22.0, 27.0),
        ped_w=d.u(11.0, 15.0),
        ped_h=d.u(12.0, 15.0),
        lam_t=d.u(5.0, 7.0),
        sp_len=lerp(10.0, 21.0, deg) * d.u(0.85, 1.15),
        sp_h=lerp(9.0, 13.0, deg),
        sp_t=d.u(5.0, 7.0),
        sp_slope=d.u(0.15, 0.35),
        sides=("tp", "tp"),
        tp_len=d.u(34.0, 44.0) * sz,
        tp_r=d.u(5.0, 7.0),
        ala_hw=d.u(44.0, 52.0) * sz,
    )
    if deg < 0.7 or d.p(0.25):
        side = d.pick([0, 1])
        sides = ["tp", "tp"]
        sides[side] = "ala"
        v.sides = tuple(sides)
        v.ala_down = d.u(2.0, 5.0)
    return v


def sacralize_l5(d: Draw, v: Vertebra, deg: float) -> None:
    """Turn L5 into a wedge-shaped transitional vertebra seated in the sacrum."""
    v.h *= lerp(0.97, 0.88, deg) * d.u(0.95, 1.03)
    v.d *= d.u(0.93, 1.0)
    v.wedge = d.u(7.0, 10.0) * DEG + deg * d.u(0.0, 6.0) * DEG
    v.sp_len *= d.u(0.55, 0.85)
    v.sp_h *= 0.85
    v.ala_hw = d.u(45.0, 56.0)
    v.mega_fused = deg > 0.75 and d.p(0.8)
    if d.p(0.6) or deg > 0.8:
        v.sides = ("mega", "mega")
    else:
        side = d.pick([0, 1])
        sides = ["tp", "tp"]
        sides[side] = "mega"
        v.sides = tuple(sides)
        v.tp_len = d.u(48.0, 56.0)
        v.tp_r = d.u(6.0, 8.0)
    v.conc_inf = lerp(0.8, 0.2, deg)


def disc_grade(d: Draw, age: int, risk: float) -> int:
    g = 1.0 + 3.3 * risk * min(1.2, max(0.0, (age - 18) / 55.0)) + d.n(0.0, 0.8)
    return int(min(5, max(1, round(g))))


def set_disc_tissue(d: Draw, dk: Disc, tis: Tissues, lab: Labels) -> None:
    g = dk.grade - 1
    t2 = GRADE_T2[g] * d.u(0.9, 1.1)
    dk.nucleus = tis.add(f"nucleus {dk.name}", GRADE_PD[g] * d.u(0.97, 1.03), 1150, t2, 0.0, 0.05)
    dk.annulus = tis.add(
        f"annulus {dk.name}",
        0.62 * d.u(0.9, 1.1),
        900,
        (42.0 if dk.grade < 4 else 36.0) * d.u(0.9, 1.1),
        0.0,
        0.05,
    )
    dk.cleft_label = tis.add(f"cleft {dk.name}", 0.62, 900, 40.0, 0.0, 0.03)
    dk.transition = tis.add(
        f"inner annulus {dk.name}",
        0.5 * (GRADE_PD[g] + 0.62),
        1000,
        math.sqrt(t2 * 42.0),
        0.0,
        0.05,
    )
    dk.hiz_label = lab.joint


def make_disc(
    d: Draw,
    pat: Patient,
    up: Vertebra,
    lo: Vertebra,
    kind: str,
    deg: float,
    tis: Tissues,
    lab: Labels,
) -> Disc:
    name = f"{up.name}-{lo.name}"
    sz = pat.size
    dk = Disc(name=name, kind=kind, upper=up, lower=lo, h=1.0)
    if kind in ("mobile", "lstv"):
        ref = DISC_REF_H.get(name, 10.5 if kind == "lstv" else 5.0)
        risk = LEVEL_RISK.get(name, 0.35)
        dk.grade = disc_grade(d, pat.age, risk)
        if kind == "lstv":
            ref = lerp(4.0, 9.5, deg)
            if deg < 0.6:
                dk.grade = max(dk.grade, d.pick([3, 4]))
        if name == "L5-S1" and pat.age > 45 and d.p(0.3):
            dk.grade = max(dk.grade, d.pick([4, 5]))
        g = dk.grade - 1
        dk.h = max(1.5, ref * sz * GRADE_H[g] * d.u(0.9, 1.1))
        dk.nuc_size = (
            GRADE_NUC[g] * d.u(0.9, 1.1) * (lerp(0.75, 1.0, deg) if kind == "lstv" else 1.0)
        )
        dk.bulge = 0.3 + 0.5 * g + d.u(0.0, 0.5)
        dk.cleft = g >= 1 and pat.age > 28 and d.p(0.7)
        dk.hiz = g >= 2 and d.p(0.12)
        dk.vacuum = g >= 4 and d.p(0.25)
        if g >= 2 and up.kind == "lumbar" and d.p(0.3):
            dk.hern = d.u(2.0, 7.0)
            dk.hern_l = d.n(0.0, 5.0)
            dk.hern_w = d.u(4.5, 9.0)
        set_disc_tissue(d, dk, tis, lab)
    elif kind == "rudimentary":
        dk.h = max(0.5, lerp(3.8, 0.6, deg) * d.u(0.8, 1.2))
        dk.grade = 5
        dk.nuc_size = 0.0
        if deg < 0.6 and d.p(0.35):
            dk.grade = 3
            dk.nuc_size = d.u(0.18, 0.3)
        dk.bulge = d.u(0.0, 0.8)
        if deg > 0.8:
            dk.fused = True
            dk.fused_line = d.p(0.6)
        elif deg > 0.5:
            dk.bridge = d.u(5.0, 12.0)
        set_disc_tissue(d, dk, tis, lab)
    elif kind == "remnant":
        first = up.top_of_sacrum
        dk.h = d.u(0.8, 2.2) if first else d.u(0.3, 1.1)
        dk.annulus = lab.remnant
        dk.nuc_size = 0.0
        dk.bulge = -0.5
        if first and d.p(0.4 if pat.age < 50 else 0.25):
            dk.h = d.u(2.2, 4.5)
            dk.grade = d.pick([2, 3])
            dk.nuc_size = d.u(0.22, 0.4)
            dk.nucleus = tis.add(f"remnant nucleus {name}", 0.88, 1150, d.u(90, 140), 0.0, 0.05)
    else:  # coccygeal joint
        dk.h = d.u(1.2, 3.0)
        dk.annulus = lab.cocc_disc
        dk.nuc_size = 0.0
        dk.bulge = -0.5
    return dk


def set_wedges(d: Draw, verts: list[Vertebra], discs: list[Disc], variant: str, ll: float) -> None:
    """Distribute lumbar lordosis ll (radians) over discs and bodies; set the rest."""
    by_name = {dk.name: dk for dk in discs}
    vmap = {v.name: v for v in verts}
    if variant == "lumbarization":
        dshare = {
            "L1-L2": 0.05,
            "L2-L3": 0.09,
            "L3-L4": 0.13,
            "L4-L5": 0.2,
            "L5-S1": 0.24,
            "S1-S2": 0.17,
        }
        bshare = {"L1": -0.03, "L2": 0.0, "L3": 0.02, "L4": 0.04, "L5": 0.05, "S1": 0.04}
        fixed = 0.0
    elif variant == "sacralization":
        dshare = {"L1-L2": 0.09, "L2-L3": 0.15, "L3-L4": 0.24, "L4-L5": 0.36}
        bshare = {"L1": -0.03, "L2": 0.0, "L3": 0.03, "L4": 0.06}
        by_name["L5-S1"].wedge = d.u(1.0, 5.0) * DEG
        fixed = by_name["L5-S1"].wedge + vmap["L5"].wedge
    else:
        dshare = {"L1-L2": 0.07, "L2-L3": 0.11, "L3-L4": 0.16, "L4-L5": 0.24, "L5-S1": 0.30}
        bshare = {"L1": -0.03, "L2": 0.0, "L3": 0.02, "L4": 0.05, "L5": 0.08}
        fixed = 0.0
    jit = {k: v * d.u(0.75, 1.25) for k, v in {**dshare, **bshare}.items()}
    total = sum(jit.values())
    scale = max(0.0, ll - fixed) / total
    for k, share in jit.items():
        if k in by_name:
            by_name[k].wedge = share * scale
        else:
            vmap[k].wedge = share * scale
    for dk in discs:
        if dk.kind == "mobile" and dk.upper.kind == "thoracic":
            dk.wedge = d.n(-1.2, 0.6) * DEG if dk.lower.kind == "thoracic" else d.n(0.0, 1.5) * DEG
    curv = d.u(0.6, 1.4)
    sac_body = (-3.0, -6.0, -8.0, -8.0, -7.0)
    k = 0
    for v in verts:
        if v.kind == "sacral":
            v.wedge = d.n(sac_body[min(k, 4)], 1.5) * curv * DEG
            k += 1
    for dk in discs:
        if dk.kind == "remnant":
            dk.wedge = d.n(-3.0, 1.5) * curv * DEG
        elif dk.kind == "cocc":
            dk.wedge = d.n(-9.0, 4.0) * DEG


def place_chain(verts: list[Vertebra], discs: list[Disc], anchor: int, ss: float) -> None:
    """2D (y, z) placement: anchor's superior endplate at the origin, tilted by ss."""

    def place_down(i: int, p_top: np.ndarray, phi_sup: float) -> tuple[np.ndarray, float]:
        v = verts[i]
        ax = phi_sup + 0.5 * v.wedge
        v.phi = ax
        v.c2 = p_top - 0.5 * v.h * u2(ax)
        return p_top - v.h * u2(ax), phi_sup + v.wedge

    p, phi = place_down(anchor, np.zeros(2), ss)
    for i in range(anchor, len(verts) - 1):
        dk = discs[i]
        axd = phi + 0.5 * dk.wedge
        p, phi = place_down(i + 1, p - dk.h * u2(axd) - dk.slip * a2(axd), phi + dk.wedge)
    p, phi = np.zeros(2), ss
    for i in range(anchor - 1, -1, -1):
        dk = discs[i]
        axd = phi - 0.5 * dk.wedge
        p = p + dk.h * u2(axd) + dk.slip * a2(axd)
        phi -= dk.wedge
        v = verts[i]
        ax = phi - 0.5 * v.wedge
        v.phi = ax
        v.c2 = p + 0.5 * v.h * u2(ax)
        p = p + v.h * u2(ax)
        phi -= v.wedge


def embed_3d(d: Draw, verts: list[Vertebra]) -> None:
    """Lift the sagittal chain to 3D with scoliosis, rotation, yaw and table offset."""
    amp = abs(d.n(0.0, 2.5)) + (d.u(4.0, 10.0) if d.p(0.08) else 0.0)
    lam = d.u(250.0, 450.0)
    ph = d.u(0.0, 2 * math.pi)
    lean = d.n(0.0, 0.02)
    rot_gain = d.u(0.3, 0.8) * DEG
    for v in verts:
        z = float(v.c2[1])
        arg = 2 * math.pi * z / lam + ph
        x = amp * math.sin(arg) + lean * z
        slope = amp * 2 * math.pi / lam * math.cos(arg) + lean
        u0 = np.array([0.0, -math.sin(v.phi), math.cos(v.phi)])
        u = unit(u0 + np.array([slope * u0[2], 0.0, 0.0]))
        lat = unit(EX - (EX @ u) * u)
        a = np.cross(lat, u)
        gam = rot_gain * amp * math.sin(arg) + d.n(0.0, 1.0) * DEG
        lat, a = math.cos(gam) * lat + math.sin(gam) * a, -math.sin(gam) * lat + math.cos(gam) * a
        v.frame = np.array([lat, a, u])
        v.center = np.array([x, v.c2[0], v.c2[1]])
    yaw = rotation(EZ, d.n(0.0, 3.0) * DEG)
    ref = next(v for v in verts if v.name == "L3").center.copy()
    target = np.array([d.n(0.0, 6.0), d.u(25.0, 70.0), d.u(-40.0, 40.0)])
    for v in verts:
        v.center = yaw @ (v.center - ref) + target
        v.frame = v.frame @ yaw.T


def finish_discs(discs: list[Disc]) -> None:
    for dk in discs:
        up, lo = dk.upper, dk.lower
        up.d_bot = 0.5 * (up.d + lo.d) if up.fuse_inf else up.d
        up.w_bot = 0.5 * (up.w + lo.w) if up.fuse_inf else up.w
        lo.d_top = 0.5 * (up.d + lo.d) if lo.fuse_sup else lo.d
        lo.w_top = 0.5 * (up.w + lo.w) if lo.fuse_sup else lo.w
    for v in (discs[0].upper, discs[-1].lower):
        v.d_top = v.d_top or v.d
        v.w_top = v.w_top or v.w
        v.d_bot = v.d_bot or v.d
        v.w_bot = v.w_bot or v.w
    for dk in discs:
        up, lo = dk.upper, dk.lower
        dk.center = 0.5 * (up.p_inf() + lo.p_sup())
        u = unit(up.n_inf() + lo.n_sup())
        lat = unit(up.frame[0] + lo.frame[0])
        lat = unit(lat - (lat @ u) * u)
        dk.frame = np.array([lat, np.cross(lat, u), u])
        dk.d = 0.5 * (up.d + lo.d)
        dk.w = 0.5 * (up.w + lo.w)
        up.g_inf = 0.5 * dk.h
        lo.g_sup = 0.5 * dk.h


def add_pathology(
    d: Draw, pat: Patient, spine_verts: list[Vertebra], discs: list[Disc], tis: Tissues, lab: Labels
) -> None:
    """Marrow labels, Modic changes, haemangiomas, Schmorl nodes, osteophytes, fractures."""
    het = 0.07 + 0.12 * min(1.0, max(0.0, (pat.age - 35) / 40.0))
    for v in spine_verts:
        extra = 0.08 if v.kind == "sacral" else (0.12 if v.kind == "coccygeal" else 0.0)
        ff = min(0.92, max(0.1, pat.marrow_ff + extra + d.n(0.0, 0.04)))
        v.marrow = tis.add(f"marrow {v.name}", 0.85, 900, 55, ff, het * d.u(0.8, 1.2))
        v.cortex = lab.cortex
        if v.kind in ("lumbar", "thoracic") and pat.age > 35 and d.p(0.07):
            v.hemangioma = (
                d.n(0.0, 0.2) * v.w,
                d.n(0.0, 0.2) * v.d,
                d.n(0.0, 0.2) * v.h,
                d.u(3.0, 8.0),
            )
        if v.kind in ("lumbar", "thoracic") and v.name[-1] in "12345" and d.p(0.25):
            v.basiv = lab.basiv
        if v.kind in ("lumbar", "thoracic") and d.p(0.06):
            v.schmorl = (
                d.pick(["sup", "inf"]),
                d.n(0.0, 0.15) * v.w,
                d.n(0.0, 0.15) * v.d,
                d.u(2.0, 4.5),
            )
    for dk in discs:
        if dk.kind not in ("mobile", "lstv") or dk.grade < 4:
            continue
        if d.p(0.45):
            mtype = d.pick([1, 2, 3], [0.22, 0.63, 0.15])
            depth = d.u(3.0, 10.0)
            if d.p(0.85):
                dk.upper.modic_inf = lab.modic[mtype]
                dk.upper.modic_depth = depth
            if d.p(0.85):
                dk.lower.modic_sup = lab.modic[mtype]
                dk.lower.modic_depth = depth
        if d.p(0.6):
            dk.upper.spur = max(dk.upper.spur, d.u(1.0, 4.0))
            dk.lower.spur = max(dk.lower.spur, d.u(1.0, 4.0))
    if pat.age > 55 and d.p(0.08):
        name = d.pick(["T11", "T12", "L1", "L2"])
        v = next(x for x in spine_verts if x.name == name)
        v.h *= d.u(0.72, 0.88)
        v.wedge -= d.u(8.0, 15.0) * DEG
        if d.p(0.35):
            v.marrow = lab.edema


def place_ribs(d: Draw, verts: list[Vertebra]) -> list[tuple[np.ndarray, np.ndarray]]:
    ribs = []
    for v in verts:
        if v.kind != "thoracic" or v.rib_len <= 0:
            continue
        hw, hd, ac = 0.5 * v.w, 0.5 * v.d, v.ap_c
        r = 4.0 if v.name == "T12" else d.u(4.5, 5.5)
        for s in (-1.0, 1.0):
            local = np.array(
                [
                    [s * (hw - 1.0), -hd + 5.0, 0.5 * v.h - 2.0],
                    [s * (hw + 16.0), ac - 2.0, 0.5 * v.h - 5.0],
                    [s * (hw + 40.0), ac - 9.0, -6.0],
                    [s * (hw + 95.0), -hd + 8.0, -42.0],
                    [s * (hw + 125.0), hd + 60.0, -85.0],
                ]
            )
            seg = np.linalg.norm(np.diff(local, axis=0), axis=1)
            cum = np.concatenate([[0.0], np.cumsum(seg)])
            length = v.rib_len * d.u(0.9, 1.1)
            keep = [local[0]]
            for k in range(1, len(local)):
                if cum[k] <= length:
                    keep.append(local[k])
                else:
                    t = (length - cum[k - 1]) / seg[k - 1]
                    keep.append(local[k - 1] + t * (local[k] - local[k - 1]))
                    break
            pts = np.array([v.world(p) for p in keep])
            rad = np.full(len(pts), r)
            rad[-1] = r * 0.8
            ribs.append((pts, rad))
    return ribs


def build_canal(d: Draw, verts: list[Vertebra], discs: list[Disc]) -> list[CanalPoint]:
    pts: list[CanalPoint] = []
    s = 0.0
    for i, v in enumerate(verts):
        if v.kind == "coccygeal":
            break
        q = v.world([0.0, v.ap_c, 0.0])
        if pts:
            s += float(np.linalg.norm(q - pts[-1].q))
        below = discs[i].kind in ("mobile", "lstv", "rudimentary") if i < len(discs) else False
        epi_post = d.u(2.0, 5.0) if v.kind != "thoracic" else d.u(1.0, 2.5)
        pts.append(
            CanalPoint(
                q=q,
                frame=v.frame,
                s=s,
                canal_ap=v.canal_ap,
                canal_lr=v.canal_lr,
                sac_ap=max(4.0, v.canal_ap - epi_post - 1.0),
                sac_lr=max(5.0, v.canal_lr - d.u(3.0, 6.0)),
                foramen_below=below,
                isp=(v.lam_t + 0.85 * v.sp_len) if v.arch in ("lumbar", "thoracic") else 0.0,
            )
        )
    return pts


def build_spine(
    d: Draw, pat: Patient, variant: str, tis: Tissues, lab: Labels
) -> tuple[Spine, dict]:
    sz = pat.size
    deg = d.u(0.3, 1.0)
    verts: list[Vertebra] = [make_thoracic(d, n, sz) for n in THORACIC]
    verts += [make_lumbar(d, n, sz) for n in LUMBAR]
    if variant == "lumbarization":
        verts.append(lumbarize_s1(d, sz, deg))
        sac_names, scale = ("S2", "S3", "S4", "S5"), 0.95
    else:
        sac_names, scale = ("S1", "S2", "S3", "S4", "S5"), 1.0
    anchor = len(verts)
    for k, nm in enumerate(sac_names):
        verts.append(make_sacral(d, nm, k, sz, scale, top=(k == 0)))
    verts[-1].sides = ("ala", "ala")
    verts[-1].foramen_r = 0.0
    for k in range(d.pick([3, 4], [0.55, 0.45])):
        verts.append(make_coccygeal(d, k, sz))
    if variant == "sacralization":
        sacralize_l5(d, verts[anchor - 1], deg)
    elif d.p(0.2):
        l5 = verts[LUMBAR.index("L5") + len(THORACIC)]
        l5.tp_len, l5.tp_r = d.u(48.0, 55.0), d.u(6.0, 7.5)
    discs: list[Disc] = []
    for i in range(len(verts) - 1):
        up, lo = verts[i], verts[i + 1]
        if lo.kind == "coccygeal":
            kind = "cocc"
        elif up.kind == "sacral":
            kind = "remnant"
        elif variant == "lumbarization" and up.name == "S1":
            kind = "lstv"
        elif variant == "sacralization" and up.name == "L5":
            kind = "rudimentary"
        else:
            kind = "mobile"
        discs.append(make_disc(d, pat, up, lo, kind, deg, tis, lab))
    if variant == "sacralization":
        verts[anchor - 1].fuse_inf = discs[anchor - 1].fused
        verts[anchor].fuse_sup = discs[anchor - 1].fused
    # spondylolisthesis
    if pat.age > 45 and d.p(0.12):
        next(dk for dk in discs if dk.name == "L4-L5").slip = d.u(3.0, 8.0)
    elif variant != "sacralization" and d.p(0.05):
        next(dk for dk in discs if dk.name == "L5-S1").slip = d.u(4.0, 10.0)
    ss = d.n(38.0, 8.0, 20.0, 58.0) * DEG
    ll = min(80.0, max(15.0, ss / DEG + d.n(10.0, 8.0))) * DEG
    set_wedges(d, verts, discs, variant, ll)
    add_pathology(d, pat, verts, discs, tis, lab)
    place_chain(verts, discs, anchor, ss)
    embed_3d(d, verts)
    finish_discs(discs)
    canal = build_canal(d, verts, discs)
    # conus and end of the dural sac (arc length along the canal)
    s_of = {verts[i].name: canal[i].s for i in range(len(canal))}
    conus_opts = [
        ("T12", s_of["T12"]),
        ("T12-L1", 0.5 * (s_of["T12"] + s_of["L1"])),
        ("L1", s_of["L1"]),
        ("L1-L2", 0.5 * (s_of["L1"] + s_of["L2"])),
        ("L2", s_of["L2"]),
    ]
    conus_level, s_tip = d.pick(conus_opts, [0.08, 0.17, 0.35, 0.3, 0.1])
    s_tip += d.n(0.0, 3.0)
    names = [v.name for v in verts]
    sac_top = names.index(sac_names[0])
    s_sac_end = canal[min(len(canal) - 1, sac_top + d.pick([0, 1, 1, 2]))].s + d.n(0.0, 4.0)
    spine = Spine(
        verts=verts,
        discs=discs,
        canal=canal,
        s_conus_tip=s_tip,
        conus_len=d.u(16.0, 26.0),
        s_sac_end=s_sac_end,
        conus_level=conus_level,
        ribs=place_ribs(d, verts),
    )
    info = {
        "lstv_degree": round(deg, 3) if variant != "normal" else 0.0,
        "sacral_slope_deg": round(ss / DEG, 1),
        "lumbar_lordosis_deg": round(ll / DEG, 1),
        "conus_level": conus_level,
    }
    return spine, info


# --------------------------------------------------------------------------
# spine painters
# --------------------------------------------------------------------------


def footprint(A: np.ndarray, L: np.ndarray, hd: float, hw: float, post_conc: float) -> np.ndarray:
    """Rounded-square body footprint; < 1 inside; posterior wall concave."""
    ln2 = (L * (1.0 / hw)) ** 2
    Ap = np.where(A < 0, A - post_conc * np.clip(1.0 - ln2, 0.0, None), A)
    an2 = (Ap * (1.0 / hd)) ** 2
    return 0.5 * (an2 + ln2 + an2 * an2 + ln2 * ln2)


def paint_body(cv: Canvas, v: Vertebra) -> None:
    st = cv.st
    hw, hd = 0.5 * v.w, 0.5 * v.d
    dl = 0.5 * v.wedge
    sd, cd = math.sin(dl), math.cos(dl)
    half = np.array(
        [
            0.5 * max(v.w, v.w_top, v.w_bot) + v.spur + 1.5,
            0.5 * max(v.d, v.d_top, v.d_bot) + v.spur + 1.5,
            0.5 * v.h + abs(math.tan(dl)) * hd + 2.0,
        ]
    )
    cr = crop_box(st, v.center, v.frame, half)
    if cr is None:
        return
    L = coord(st, cr, v.center, v.frame[0])
    A = coord(st, cr, v.center, v.frame[1])
    X = coord(st, cr, v.center, v.frame[2])
    if v.d_top != v.d_bot or v.w_top != v.w_bot:
        fx = np.clip((X + 0.5 * v.h) * (1.0 / v.h), 0.0, 1.0)
        rho = footprint(
            A,
            L,
            0.5 * (v.d_bot + (v.d_top - v.d_bot) * fx),
            0.5 * (v.w_bot + (v.w_top - v.w_bot) * fx),
            v.post_conc,
        )
    else:
        rho = footprint(A, L, hd, hw, v.post_conc)
    sdS = (X - 0.5 * v.h) * cd - A * sd
    sdI = (X + 0.5 * v.h) * cd + A * sd
    rec = np.clip(1.0 - 1.25 * rho, 0.0, None)
    top = -v.conc_sup * rec
    bot = v.conc_inf * rec
    if v.spur > 0:
        near = np.clip(1.0 - np.minimum(top - sdS, sdI - bot) * (1.0 / 3.0), 0.0, 1.0) * (
            -0.3 * hd < A
        )
        rho = rho / (1.0 + (2.0 * v.spur / hd) * near)
    body = (rho < 1.0) & (sdS < top) & (sdI > bot)
    if not body.any():
        return
    s = 1.0 - 1.2 / min(hd, hw)
    rin = 0.5 * (s * s + s**4)
    t_sup = 0.0 if v.fuse_sup else v.ep_t
    t_inf = 0.0 if v.fuse_inf else v.ep_t
    inner = body & (rho < rin) & (sdS < top - t_sup) & (sdI > bot + t_inf)
    cv.paint(cr, body, v.cortex, 60)
    cv.paint(cr, inner, v.marrow, 61)
    if v.modic_sup:
        cv.paint(cr, inner & (sdS > top - v.modic_depth) & (rho < 0.85), v.modic_sup, 62)
    if v.modic_inf:
        cv.paint(cr, inner & (sdI < bot + v.modic_depth) & (rho < 0.85), v.modic_inf, 62)
    if v.hemangioma is not None:
        hl, ha, hx, hr = v.hemangioma
        cv.paint(
            cr,
            inner & ((L - hl) ** 2 + (A - ha) ** 2 + (X - hx) ** 2 < hr * hr),
            v.hemangioma_label,
            63,
        )
    if v.basiv:
        cv.paint(cr, inner & (np.abs(L) < 1.6) & (-hd + 9.0 > A) & (np.abs(X) < 1.3), v.basiv, 63)
    if v.schmorl is not None:
        which, sl, sa, sr = v.schmorl
        depth = (sdS - top) if which == "sup" else (bot - sdI)
        cv.paint(
            cr, body & ((L - sl) ** 2 + (A - sa) ** 2 + depth**2 < sr * sr), v.schmorl_label, 64
        )


def paint_arch(cv: Canvas, v: Vertebra) -> None:
    """Pedicles, laminae, articular pillars and spinous process (or sacral dorsal parts)."""
    if v.arch == "none":
        return
    st = cv.st
    hd, h = 0.5 * v.d, v.h
    ac, ca, cl = v.ap_c, v.canal_ap, v.canal_lr
    alb = ac - 0.5 * ca
    a_tip = alb - v.lam_t - v.sp_len
    lf = 0.5 * cl + 5.5
    sp_x0 = -0.1 * h if v.arch == "lumbar" else 0.0
    x_lo = min(
        -0.5 * h - v.g_inf - 3.0, sp_x0 - v.sp_slope * (v.sp_len + v.lam_t) - 0.7 * v.sp_h - 2.0
    )
    x_hi = 0.5 * h + v.g_sup + 2.0
    a_lo, a_hi = a_tip - 3.0, -hd + 4.0
    l_half = (lf + 9.0) if v.arch != "sacral" else 0.5 * cl + 11.0
    center = v.world([0.0, 0.5 * (a_lo + a_hi), 0.5 * (x_lo + x_hi)])
    cr = crop_box(st, center, v.frame, np.array([l_half, 0.5 * (a_hi - a_lo), 0.5 * (x_hi - x_lo)]))
    if cr is None:
        return
    L = coord(st, cr, v.center, v.frame[0])
    A = coord(st, cr, v.center, v.frame[1])
    X = coord(st, cr, v.center, v.frame[2])
    aL = np.abs(L)
    if v.arch == "sacral":
        x_top = (0.5 * h - 0.5) if v.top_of_sacrum else (0.5 * h + v.g_sup + 0.5)
        x_bot = -0.5 * h - v.g_inf - 0.5
        xr = (x_bot < X) & (x_top > X)
        walls = xr & (aL > 0.5 * cl) & (aL < 0.5 * cl + 7.5) & (-hd + 2.5 > A) & (alb - 1.0 < A)
        bone = walls
        if v.lam_t > 0:
            bone = bone | (xr & (alb > A) & (alb - v.lam_t < A) & (aL < 0.5 * cl + 9.0))
            crest = (
                (aL < 0.5 * v.sp_t)
                & (alb - v.lam_t + 0.5 > A)
                & (alb - v.lam_t - v.sp_len < A)
                & (np.abs(X - v.sp_slope * (A - alb)) < 0.5 * v.sp_h)
            )
            bone = bone | crest
        if v.top_of_sacrum:
            af = ac - 0.2 * ca
            pil = (
                (((aL - lf) * (1 / 5.5)) ** 2 + ((A - af) * (1 / 6.5)) ** 2 < 1.0)
                & (X > 0.0)
                & (0.5 * h + v.g_sup - 0.6 > X)
            )
            bone = bone | pil
            cap = (
                (((aL - lf) * (1 / 5.5)) ** 2 + ((A - af) * (1 / 6.5)) ** 2 < 1.0)
                & (0.5 * h + v.g_sup - 0.6 <= X)
                & (0.5 * h + v.g_sup + 0.2 > X)
            )
            cv.paint(cr, cap, cv.labels.joint, 29)
        cv.paint_bone(cr, bone, v.marrow, v.cortex, 30)
        return
    lp = 0.5 * cl + 0.5 * v.ped_w - 0.5
    ped = (
        (((aL - lp) * (2.0 / v.ped_w)) ** 2 + ((X - v.ped_x) * (2.0 / v.ped_h)) ** 2 < 1.0)
        & (-hd + 3.0 > A)
        & (ac < A)
    )
    af = ac - 0.2 * ca
    pil_xs = ((aL - lf) * (1 / 5.5)) ** 2 + ((A - af) * (1 / 6.5)) ** 2 < 1.0
    pil = pil_xs & (-0.5 * h - v.g_inf + 0.6 < X) & (0.5 * h + v.g_sup - 0.6 > X)
    cap = pil_xs & (0.5 * h + v.g_sup - 0.6 <= X) & (0.5 * h + v.g_sup + 0.2 > X)
    lam = (
        (alb > A)
        & (alb - v.lam_t < A)
        & (aL < lf + 2.0)
        & (-0.5 * h - 0.9 * v.g_inf * 2.0 < X)
        & (0.35 * h > X)
    )
    xs_c = sp_x0 + v.sp_slope * (A - alb)
    bulb = 1.0 + 0.35 * np.clip(
        (alb - v.lam_t - v.sp_len * 0.6 - A) * (1.0 / max(1.0, 0.4 * v.sp_len)), 0.0, 1.0
    )
    sp = (aL < 0.5 * v.sp_t) & (alb > A) & (a_tip < A) & (np.abs(X - xs_c) < 0.5 * v.sp_h * bulb)
    cv.paint(cr, cap, cv.labels.joint, 29)
    cv.paint_bone(cr, ped | pil | lam | sp, v.marrow, v.cortex, 30)


def d_mega_fwd(v: Vertebra) -> float:
    """Anterior reach of an enlarged transverse process beyond the canal centre."""
    return 0.35 * v.d


def paint_lateral(cv: Canvas, v: Vertebra, side: int) -> None:
    """Transverse process, sacral ala or enlarged (sacralized) transverse process."""
    kind = v.sides[0 if side < 0 else 1]
    if kind == "none":
        return
    s = float(side)
    lf = 0.5 * v.canal_lr + 5.5
    ac = v.ap_c
    lab = cv.labels
    if kind == "tp":
        p0 = v.world([s * (lf + 1.0), ac + 4.0, v.ped_x])
        p1 = v.world([s * v.tp_len, ac + 6.0, v.ped_x - 2.0])
        paint_capsule(cv, p0, p1, v.tp_r, 0.85 * v.tp_r, 0, 30, bone=(v.marrow, v.cortex))
        return
    if kind == "tp_thor":
        p0 = v.world([s * (lf + 1.0), ac - 1.0, v.ped_x + 1.0])
        p1 = v.world([s * (0.5 * v.w + 17.0), ac - 14.0, v.ped_x - 2.0])
        paint_capsule(cv, p0, p1, v.tp_r, v.tp_r, 0, 30, bone=(v.marrow, v.cortex))
        return
    st = cv.st
    hw, hd, h = 0.5 * v.w, 0.5 * v.d, v.h
    if kind == "ala":
        l_in, l_out = hw - 6.0, v.ala_hw
        a_lo, a_hi = ac - 0.5 * v.canal_ap - 2.0, hd - 3.0
        x_lo = -0.5 * h - v.g_inf - 3.0 - v.ala_down
        x_hi = 0.5 * h + v.g_sup + 3.0
    else:  # mega transverse process of a sacralized L5
        l_in, l_out = lf, v.ala_hw
        a_lo, a_hi = ac - 4.0, ac + d_mega_fwd(v)
        x_lo = -0.5 * h - 2.0 * v.g_inf - 1.5 - 0.22 * (l_out - hw) - (2.0 if v.mega_fused else 0.0)
        x_hi = v.ped_x + 7.0
    lmid, lrad = 0.5 * (l_in + l_out), 0.5 * (l_out - l_in)
    amid, arad = 0.5 * (a_lo + a_hi), 0.5 * (a_hi - a_lo)
    center = v.world([s * lmid, amid, 0.5 * (x_lo + x_hi)])
    cr = crop_box(
        st, center, v.frame, np.array([lrad + 1.0, arad + 1.0, 0.5 * (x_hi - x_lo) + 1.0])
    )
    if cr is None:
        return
    L = coord(st, cr, v.center, v.frame[0]) * F32(s)
    A = coord(st, cr, v.center, v.frame[1])
    X = coord(st, cr, v.center, v.frame[2])
    ln = (L - lmid) * (1.0 / lrad)
    an = (A - amid) * (1.0 / arad)
    shape = (ln * ln) ** 2 + (an * an) ** 2 < 1.0
    lat = np.clip(L - hw, 0.0, None)
    if kind == "ala":
        top = (0.5 * h - 1.0 - 0.22 * lat) if (v.top_of_sacrum or v.kind == "lumbar") else x_hi
        bone = shape & (x_lo < X) & (top > X)
        cv.paint_bone(cr, bone, v.marrow, v.cortex, 30)
        if v.foramen_r > 0:
            r = v.foramen_r
            xf = -0.5 * h - v.g_inf
            hole = (
                (((L - (hw + 2.0 + r)) * (1.0 / r)) ** 2 + ((X - xf) * (1.0 / r)) ** 2 < 1.0)
                & (a_lo - 1.0 < A)
                & (a_hi + 1.0 > A)
            )
            cv.paint(cr, hole, lab.foramen_fat, 34)
            nerve = (
                (((L - (hw + 2.0 + r)) * (2.2 / r)) ** 2 + ((X - xf) * (2.2 / r)) ** 2 < 1.0)
                & (a_lo - 1.0 < A)
                & (a_hi + 1.0 > A)
            )
            cv.paint(cr, nerve, lab.root, 35)
        return
    bot = x_lo + 0.22 * (l_out - hw) - 0.22 * lat
    bone = shape & (bot < X) & (x_hi > X)
    cv.paint_bone(cr, bone, v.marrow, v.cortex, 30)
    if not v.mega_fused:
        cv.paint(cr, shape & (bot < X) & (bot + 1.3 > X) & (hw < L), lab.cartilage, 33)


def paint_disc(cv: Canvas, dk: Disc) -> None:
    st = cv.st
    hw, hd = 0.5 * dk.w + max(0.0, dk.bulge), 0.5 * dk.d + max(0.0, dk.bulge)
    conc = max(dk.upper.conc_inf, dk.lower.conc_sup)
    half = np.array(
        [hw + 3.0, hd + dk.hern + 3.0, 0.5 * dk.h + conc + hd * abs(math.tan(0.5 * dk.wedge)) + 3.0]
    )
    cr = crop_box(st, dk.center, dk.frame, half)
    if cr is None:
        return
    L = coord(st, cr, dk.center, dk.frame[0])
    A = coord(st, cr, dk.center, dk.frame[1])
    up, lo = dk.upper, dk.lower
    sdU = coord(st, cr, up.p_inf(), up.n_inf())
    sdL = coord(st, cr, lo.p_sup(), lo.n_sup())
    hw_b = hw if dk.bulge >= 0 else hw + dk.bulge
    hd_b = hd if dk.bulge >= 0 else hd + dk.bulge
    if dk.hern > 0:
        ext = dk.hern * np.exp(-(((L - dk.hern_l) * (1.0 / dk.hern_w)) ** 2))
        A = np.where(A < 0, A * (hd_b / (hd_b + ext)), A)
    rho = footprint(A, L, hd_b, hw_b, 0.5 * (up.post_conc + lo.post_conc))
    rec = np.clip(1.0 - 1.25 * rho, 0.0, None)
    g_u = up.conc_inf * rec + 0.6
    g_l = -lo.conc_sup * rec - 0.6
    inside = (rho < 1.0) & (sdU < g_u) & (sdL > g_l)
    if not inside.any():
        return
    lab = cv.labels
    if dk.fused:
        cv.paint(cr, inside, up.marrow, 55)
        if dk.fused_line:
            tl, tu = sdL - g_l, g_u - sdU
            cv.paint(cr, inside & (np.abs(tl - tu) < 0.35 * (tl + tu)), lab.cortex, 56)
        return
    cv.paint(cr, inside, dk.annulus, 50)
    tl, tu = sdL - g_l, g_u - sdU
    xi = (tl - tu) / (tl + tu + 1e-3)
    if dk.nuc_size > 0:
        an = (A - (-0.06 * hd_b)) * (1.0 / (hd_b * dk.nuc_size))
        ln = L * (1.0 / (hw_b * dk.nuc_size * 1.05))
        r2 = an * an + ln * ln + (xi * (1.0 / 0.8)) ** 2
        if dk.transition:
            cv.paint(cr, inside & (r2 < 1.45), dk.transition, 51)
        nuc = inside & (r2 < 1.0)
        cv.paint(cr, nuc, dk.nucleus, 52)
        if dk.cleft:
            cv.paint(cr, nuc & (np.abs(xi) < 0.12) & (an * an + ln * ln > 0.05), dk.cleft_label, 53)
        if dk.vacuum:
            cv.paint(cr, nuc & (np.abs(xi) < 0.3) & (an * an + ln * ln < 0.35), lab.air, 54)
    if dk.hiz:
        hz = inside & ((A + hd_b - 2.5) ** 2 + (L - dk.hern_l) ** 2 < 4.0) & (np.abs(xi) < 0.4)
        cv.paint(cr, hz, dk.hiz_label, 53)
    if dk.bridge > 0:
        cv.paint(cr, inside & (hd_b - dk.bridge < A), up.marrow, 55)


def paint_canal(cv: Canvas, P: CanalPoint, Q: CanalPoint, spine: Spine) -> None:
    """Canal between consecutive canal points P (upper) and Q (lower)."""
    st = cv.st
    lab = cv.labels
    axis = P.q - Q.q
    seg = float(np.linalg.norm(axis))
    t = axis / seg
    lat = unit(P.frame[0] + Q.frame[0])
    lat = unit(lat - (lat @ t) * t)
    a = np.cross(t, lat)
    a = -a if a @ (P.frame[1] + Q.frame[1]) < 0 else a
    ca_m, cl_m = max(P.canal_ap, Q.canal_ap), max(P.canal_lr, Q.canal_lr)
    reach_l = 0.5 * cl_m + 14.0
    post = 0.5 * ca_m + max(P.isp, Q.isp) + 2.0
    ant = 0.5 * ca_m + 2.0
    frame = np.array([lat, a, t])
    center = 0.5 * (P.q + Q.q) + a * (0.5 * (ant - post))
    cr = crop_box(st, center, frame, np.array([reach_l, 0.5 * (ant + post), 0.5 * seg + 1.0]))
    if cr is None:
        return
    X = coord(st, cr, Q.q, t)
    L = coord(st, cr, Q.q, lat)
    A = coord(st, cr, Q.q, a)
    f = np.clip(X * (1.0 / seg), 0.0, 1.0)

    def mix(p: float, q: float) -> np.ndarray:
        return q + (p - q) * f

    inseg = (X >= -0.6) & (seg + 0.6 >= X)
    ca, cl = mix(P.canal_ap, Q.canal_ap), mix(P.canal_lr, Q.canal_lr)
    an = A / (0.5 * ca)
    ln = L / (0.5 * cl)
    r_epi = an * an + ln * ln
    cv.paint(cr, inseg & (r_epi < 1.0), lab.epi_fat, 40)
    fl = 2.5
    an2 = A / (0.5 * ca + fl)
    ln2 = L / (0.5 * cl + fl)
    cv.paint(cr, inseg & (A < 0) & (an2 * an2 + ln2 * ln2 < 1.0), lab.ligament, 29)
    s = P.s + (1.0 - f) * seg
    sac_scale = np.sqrt(np.clip((spine.s_sac_end - s) * (1.0 / 15.0), 0.0, 1.0))
    sa = mix(P.sac_ap, Q.sac_ap) * sac_scale
    sl = mix(P.sac_lr, Q.sac_lr) * sac_scale
    so = 0.5 * ca - 0.5 * sa - 0.8
    asac = (A - so) / np.maximum(0.5 * sa, 1e-3)
    lsac = L / np.maximum(0.5 * sl, 1e-3)
    sac = inseg & (asac * asac + lsac * lsac < 1.0) & (sa > 0.5)
    cv.paint(cr, sac, lab.csf, 41)
    cord_scale = np.clip((spine.s_conus_tip - s) * (1.0 / spine.conus_len), 0.0, 1.0) ** 0.6
    if float(cord_scale.max()) > 0:
        enl = 1.0 + 0.12 * np.exp(-(((s - (spine.s_conus_tip - 60.0)) * (1.0 / 40.0)) ** 2))
        c_ap = 7.2 * cord_scale * enl
        c_lr = 9.2 * cord_scale * enl
        ac_ = (A - so + 0.6) / np.maximum(0.5 * c_ap, 1e-3)
        lc_ = L / np.maximum(0.5 * c_lr, 1e-3)
        cv.paint(cr, sac & (ac_ * ac_ + lc_ * lc_ < 1.0) & (c_ap > 0.4), lab.cord, 42)
    below = (s > spine.s_conus_tip - 6.0) & sac
    if below.any():
        filum = below & ((A - so) ** 2 + L * L < 0.8)
        roots = below & (asac < 0.15) & (np.cos(L * 1.8 + 0.7) * np.cos((A - so) * 1.8 + 0.4) > 0.8)
        cv.paint(cr, roots | filum, lab.root, 42)
    if P.foramen_below:
        xf = 0.62 * seg
        for side in (-1.0, 1.0):
            lfc = side * (0.5 * cl_m + 5.0)
            fo = ((L - lfc) * (1 / 6.0)) ** 2 + (
                (A - 0.1 * ca_m) * (1 / (0.45 * ca_m + 1.5))
            ) ** 2 + ((X - xf) * (1 / 8.5)) ** 2 < 1.0
            cv.paint(cr, fo, lab.foramen_fat, 28)
            root = ((L - lfc) ** 2 + (A - 0.1 * ca_m - 1.0) ** 2 + (X - xf - 3.5) ** 2) < 6.5
            cv.paint(cr, root, lab.root, 29)
    if P.isp > 0 and Q.isp > 0:
        depth = mix(P.isp, Q.isp)
        isp = inseg & (np.abs(L) < 2.5) & (-0.5 * ca - 1.0 > A) & (-0.5 * ca - depth < A)
        cv.paint(cr, isp, lab.interspinous, 25)


# --------------------------------------------------------------------------
# generic primitives
# --------------------------------------------------------------------------


def paint_capsule(
    cv: Canvas,
    p0: np.ndarray,
    p1: np.ndarray,
    r0: float,
    r1: float,
    label: int,
    prio: int,
    bone: tuple[int, int] | None = None,
    wall: tuple[float, int] | None = None,
) -> None:
    st = cv.st
    axis = p1 - p0
    seg = float(np.linalg.norm(axis))
    if seg < 1e-6:
        return
    t = axis / seg
    n1 = perpendicular(t)
    n2 = np.cross(t, n1)
    rm = max(r0, r1)
    cr = crop_box(
        st,
        0.5 * (p0 + p1),
        np.array([t, n1, n2]),
        np.array([0.5 * seg + rm + 0.5, rm + 0.5, rm + 0.5]),
    )
    if cr is None:
        return
    u = coord(st, cr, p0, t)
    v = coord(st, cr, p0, n1)
    w = coord(st, cr, p0, n2)
    tt = np.clip(u * (1.0 / seg), 0.0, 1.0)
    rr = r0 + (r1 - r0) * tt
    d2 = (u - tt * seg) ** 2 + v * v + w * w
    m = d2 < rr * rr
    if bone is not None:
        cv.paint_bone(cr, m, bone[0], bone[1], prio)
    elif wall is not None:
        cv.paint(cr, m, wall[1], prio)
        cv.paint(cr, d2 < np.maximum(rr - wall[0], 0.0) ** 2, label, prio + 1)
    else:
        cv.paint(cr, m, label, prio)


def paint_tube(
    cv: Canvas,
    pts: np.ndarray,
    rad: np.ndarray,
    label: int,
    prio: int,
    bone: tuple[int, int] | None = None,
    wall: tuple[float, int] | None = None,
) -> None:
    for k in range(len(pts) - 1):
        paint_capsule(
            cv, pts[k], pts[k + 1], float(rad[k]), float(rad[k + 1]), label, prio, bone, wall
        )


def paint_ellipsoid(
    cv: Canvas,
    center: np.ndarray,
    axes: np.ndarray,
    radii: Sequence[float],
    label: int,
    prio: int,
    wall: tuple[float, int] | None = None,
) -> None:
    st = cv.st
    radii = np.asarray(radii, dtype=float)
    cr = crop_box(st, center, axes, radii + 0.5)
    if cr is None:
        return
    r2 = None
    for m in range(3):
        c = coord(st, cr, center, axes[m]) * F32(1.0 / radii[m])
        r2 = c * c if r2 is None else r2 + c * c
    if wall is not None:
        cv.paint(cr, r2 < 1.0, wall[1], prio)
        cv.paint(cr, r2 < (1.0 - wall[0] / float(radii.min())) ** 2, label, prio + 1)
    else:
        cv.paint(cr, r2 < 1.0, label, prio)


@dataclass
class Ilium:
    side: float
    center: np.ndarray
    radii: np.ndarray
    t_ant: float
    t_post: float
    x_mid: float
    x_si: float
    z_crest: float
    z_si_top: float
    z_si_bot: float
    y_cut: float


def paint_ilium(cv: Canvas, il: Ilium) -> None:
    st = cv.st
    rx, ry, rz = (float(r) for r in il.radii)
    c = il.center
    x_in = il.x_mid + il.side * il.x_si
    box_c = np.array(
        [
            0.5 * (x_in + c[0] + il.side * rx),
            0.5 * (il.y_cut + c[1] + ry),
            0.5 * (il.z_crest + c[2] - rz),
        ]
    )
    half = np.array(
        [
            0.5 * abs(c[0] + il.side * rx - x_in) + 2,
            0.5 * (c[1] + ry - il.y_cut) + 2,
            0.5 * (il.z_crest - (c[2] - rz)) + 2,
        ]
    )
    cr = crop_box(st, box_c, np.eye(3), half)
    if cr is None:
        return
    x = coord(st, cr, np.zeros(3), EX)
    y = coord(st, cr, np.zeros(3), EY)
    z = coord(st, cr, np.zeros(3), EZ)
    u = (x - c[0]) * (1.0 / rx)
    v = (y - c[1]) * (1.0 / ry)
    w = (z - c[2]) * (1.0 / rz)
    r = np.sqrt(u * u + v * v + w * w)
    tmm = il.t_ant + (il.t_post - il.t_ant) * np.clip(v, 0.0, 1.0)
    lat = il.side * (x - il.x_mid)
    shell = (
        (r < 1.0)
        & (r > 1.0 - tmm * (1.0 / ry))
        & (lat > il.x_si)
        & (y > il.y_cut)
        & (z < il.z_crest)
    )
    lab = cv.labels
    cv.paint_bone(cr, shell, lab.pelvic_marrow, lab.cortex, 20)
    joint = shell & (lat < il.x_si + 1.8) & (z < il.z_si_top) & (z > il.z_si_bot) & (v > 0.3)
    cv.paint(cr, joint, lab.cartilage, 32)


# --------------------------------------------------------------------------
# body outline, organs
# --------------------------------------------------------------------------


@dataclass
class Body:
    z0: float
    nz: int
    prof: dict[str, np.ndarray]
    zd_mid: float
    zd_slope: float
    z_floor: float
    y_coil: float


def smooth1d(a: np.ndarray, width: int) -> np.ndarray:
    k = np.ones(width) / width
    pad = width // 2
    return np.convolve(np.pad(a, pad, mode="edge"), k, mode="valid")[: len(a)]


def running_max(a: np.ndarray, width: int) -> np.ndarray:
    pad = width // 2
    ap = np.pad(a, pad, mode="edge")
    return np.lib.stride_tricks.sliding_window_view(ap, 2 * pad + 1).max(axis=-1)[: len(a)]


def build_body(d: Draw, pat: Patient, spine: Spine) -> Body:
    verts = spine.verts
    zc = np.array([v.center[2] for v in verts])
    order = np.argsort(zc)
    zs = zc[order]
    z0 = float(zs[0] - 320.0)
    nz = int(zs[-1] - zs[0] + 640.0)
    zg = z0 + np.arange(nz, dtype=float)

    def prof(vals: Sequence[float]) -> np.ndarray:
        return np.interp(zg, zs, np.asarray(vals, dtype=float)[order])

    xs = prof([v.center[0] for v in verts])
    ys = prof([v.center[1] for v in verts])
    dsp = prof([v.d for v in verts])
    wsp = prof([v.w for v in verts])
    post = prof([0.5 * v.d + 1.0 + v.canal_ap + v.lam_t + 0.85 * v.sp_len for v in verts])
    ytip = ys + post
    z_of = {v.name: float(v.center[2]) for v in verts}
    z_s1 = float(spine.verts[[v.kind for v in verts].index("sacral")].center[2])
    z_tip = float(zs[0])
    yb = smooth1d(running_max(ytip, 71), 41)
    fp = pat.fat_post * (1.0 + 0.15 * np.sin(zg / d.u(60, 120) + d.u(0, 6)))
    yb = np.maximum(yb, ytip + 3.0) + fp + 2.0
    yb = smooth1d(yb, 21)
    t_abd = pat.trunk_ap
    knots_z = [z_tip - 200, z_s1 - 40, z_s1 + 40, z_of["L1"], z_of["T11"], z_of["T6"] + 200]
    t_vals = [
        t_abd * 0.95,
        t_abd * d.u(0.92, 1.02),
        t_abd,
        t_abd * d.u(0.95, 1.05),
        t_abd * 0.95,
        t_abd * 0.9,
    ]
    thick = np.interp(zg, knots_z, t_vals)
    hw_vals = [
        pat.trunk_hw * 1.2,
        pat.trunk_hw * d.u(1.1, 1.25),
        pat.trunk_hw,
        pat.trunk_hw * 1.02,
        pat.trunk_hw * 1.08,
        pat.trunk_hw * 1.05,
    ]
    hw = np.interp(zg, knots_z, hw_vals)
    yf = yb - thick
    yc, b = 0.5 * (yb + yf), 0.5 * (yb - yf)
    fa = pat.fat_ant * (1.0 + 0.2 * np.sin(zg / d.u(50, 100)))
    fpp = pat.fat_post * np.ones_like(zg)
    fl = pat.fat_lat * np.ones_like(zg)
    wall = d.u(7.0, 14.0)
    bul_max = 15.0 + 45.0 * (pat.bmi - 17.0) / 28.0
    bul = bul_max * np.clip((z_s1 + 10.0 - zg) / 60.0, 0.0, 1.0)
    x_mid = float(xs[np.argmin(np.abs(zg - z_of["L3"]))])
    xc = 0.5 * xs + 0.5 * x_mid
    profiles = {
        "xc": xc,
        "yc": yc,
        "b": b,
        "hw": hw,
        "yci": yc + 0.5 * (fa - fpp),
        "bi": b - 0.5 * (fa + fpp),
        "hwi": hw - fl,
        "bc": b - 0.5 * (fa + fpp) - wall,
        "hwc": hw - fl - wall,
        "bul": bul,
        "ys": ys,
        "dsp": dsp,
        "ytip": ytip,
        "hwb": np.where(zg > z_s1 + 25.0, 0.5 * wsp + d.u(32.0, 48.0), 400.0),
        "hwcav": (hw - fl - wall) * np.interp(zg, [z_s1 - 30.0, z_of["L5"]], [0.55, 1.0]),
    }
    prof32 = {k: np.asarray(v, dtype=F32) for k, v in profiles.items()}
    zd_ant = z_of["T10"] + d.u(0.0, 30.0)
    zd_post = z_of["L1"] + d.u(-10.0, 15.0)
    return Body(
        z0=z0,
        nz=nz,
        prof=prof32,
        zd_mid=0.5 * (zd_ant + zd_post),
        zd_slope=0.5 * (zd_post - zd_ant),
        z_floor=z_tip - d.u(8.0, 25.0),
        y_coil=float(np.max(yb)) + 3.0,
    )


def paint_background(cv: Canvas, body: Body) -> None:
    """Skin, subcutaneous fat, muscle compartments, abdominal cavity, thorax.

    The background is smooth, so it is evaluated once per group of through-plane
    samples (at their mean offset) and copied to every plane of the group."""
    st = cv.st
    lab = cv.labels
    grp = max(1, st.group)
    centres = st.offs.reshape(-1, grp).mean(axis=1)
    step = max(1, int(1_500_000 // max(1, st.n_i * st.n_j)))
    ii = np.arange(st.n_i) * st.di
    jj = np.arange(st.n_j) * st.dj
    P = body.prof
    for g0 in range(0, len(centres), step):
        offs = centres[g0 : g0 + step]

        def world(c: int, offs: np.ndarray = offs) -> np.ndarray:
            a = (st.origin[c] + offs * st.normal[c]).astype(F32)
            return (a[:, None, None] + (ii * st.col[c]).astype(F32)[None, :, None]) + (
                jj * st.row[c]
            ).astype(F32)[None, None, :]

        x, y, z = world(0), world(1), world(2)
        zi = (z - F32(body.z0)).astype(np.int32)
        np.clip(zi, 0, body.nz - 1, out=zi)
        dx = x - P["xc"][zi]
        adx = np.abs(dx)
        g = np.clip((adx - 8.0) * (1.0 / 40.0), 0.0, 1.0) * P["bul"][zi]
        ny = (y - P["yc"][zi] - 0.5 * g) / (P["b"][zi] + 0.5 * g)
        nx = dx / P["hw"][zi]
        ny2 = ny * ny
        outer = nx * nx + np.where(ny > 0, ny2 * ny2, ny2) < 1.0
        lab_k = np.where(outer, lab.fat, lab.air).astype(np.uint16)
        yyi = y - P["yci"][zi] - 0.5 * g
        nyi = yyi / (P["bi"][zi] + 0.5 * g)
        nxi = dx / P["hwi"][zi]
        nyi2 = nyi * nyi
        inner = nxi * nxi + np.where(nyi > 0, nyi2 * nyi2, nyi2) < 1.0
        lab_k[inner] = lab.muscle
        ysp = P["ys"][zi]
        rel = y - ysp
        back = (rel > -0.15 * P["dsp"][zi] + 0.0025 * dx * dx) & (adx < P["hwb"][zi] + 0.4 * rel)
        lab_k[inner & back] = lab.para_muscle
        lab_k[inner & back & (adx < 4.5) & (y > P["ytip"][zi] + 1.0)] = lab.fat
        nyc = yyi / P["bc"][zi]
        nxc = dx / P["hwc"][zi]
        cav = (nxc * nxc + nyc * nyc < 1.0) & ~back & (adx < P["hwcav"][zi])
        lab_k[cav] = lab.visc_fat
        zd = body.zd_mid + body.zd_slope * np.clip(nyi, -1.0, 1.0)
        thorax = cav & (z > zd)
        lab_k[thorax & (adx > 24.0)] = lab.lung
        lab_k[thorax & (adx <= 24.0)] = lab.medi_fat
        lab_k[cav & (z < body.z_floor)] = lab.muscle
        k0, k1 = g0 * grp, (g0 + len(offs)) * grp
        cv.lab[k0:k1] = np.repeat(lab_k, grp, axis=0)
        cv.pri[k0:k1] = 1


def build_organs(
    d: Draw, pat: Patient, spine: Spine, body: Body, lab: Labels
) -> list[Callable[[Canvas], None]]:
    """Organs, vessels, muscles and pelvis as paint callbacks."""
    prims: list[Callable[[Canvas], None]] = []
    vm = {v.name: v for v in spine.verts}
    sac = [v for v in spine.verts if v.kind == "sacral"]
    s1 = sac[0]
    I3 = np.eye(3)

    def at(name: str, lat: float, a: float, x: float = 0.0) -> np.ndarray:
        return vm[name].world([lat, a, x])

    # aorta and common iliac arteries, IVC and iliac veins
    upper = [v for v in spine.verts if v.kind in ("thoracic", "lumbar") and v.name not in ("S1",)]
    names = [v.name for v in upper]
    bif = names.index("L4")
    r_ao = d.u(8.0, 12.0) * (1.1 if pat.age > 65 else 1.0)
    ao = [v.world([d.u(10.0, 18.0), 0.5 * v.d + 2.0 + r_ao, 0.0]) for v in upper[: bif + 1]]
    ao_r = [r_ao] * len(ao)
    prims.append(partial(paint_tube, pts=np.array(ao), rad=np.array(ao_r), label=lab.blood, prio=9))
    r_iv = d.u(9.0, 12.0)
    ivc = [v.world([-d.u(16.0, 24.0), 0.5 * v.d + 3.0 + r_iv, 0.0]) for v in upper[4 : bif + 2]]
    prims.append(
        partial(paint_tube, pts=np.array(ivc), rad=np.full(len(ivc), r_iv), label=lab.blood, prio=9)
    )
    for s in (-1.0, 1.0):
        p0 = ao[-1]
        p1 = s1.world([s * 35.0, 0.5 * s1.d + 28.0, 5.0])
        p2 = s1.world([s * 60.0, 0.5 * s1.d + 55.0, -40.0])
        prims.append(
            partial(
                paint_tube,
                pts=np.array([p0, p1, p2]),
                rad=np.array([0.7 * r_ao, 6.5, 5.5]),
                label=lab.blood,
                prio=9,
            )
        )
        q0 = ivc[-1]
        q1 = s1.world([s * 28.0, 0.5 * s1.d + 16.0, 0.0])
        q2 = s1.world([s * 55.0, 0.5 * s1.d + 42.0, -45.0])
        prims.append(
            partial(
                paint_tube,
                pts=np.array([q0, q1, q2]),
                rad=np.array([0.7 * r_iv, 7.0, 6.5]),
                label=lab.blood,
                prio=9,
            )
        )
    # psoas
    for s in (-1.0, 1.0):
        rr = [5.0, 8.0, 12.0, 15.5, 18.5, 20.0]
        nm = ["T12", "L1", "L2", "L3", "L4", "L5"]
        pts = [
            at(n, s * (0.5 * vm[n].w + 0.7 * r), 0.05 * vm[n].d)
            for n, r in zip(nm, rr, strict=True)
        ]
        pts.append(s1.world([s * 55.0, 0.5 * s1.d + 25.0, -10.0]))
        pts.append(s1.world([s * 70.0, 0.5 * s1.d + 60.0, -60.0]))
        rad = (
            np.array(rr + [20.0, 17.0])
            * pat.size
            * (0.85 if pat.sex == "F" else 1.0)
            * d.u(0.85, 1.15)
        )
        prims.append(partial(paint_tube, pts=np.array(pts), rad=rad, label=lab.muscle, prio=8))
    # kidneys with perirenal fat and sinus
    for s, lvl in ((-1.0, "L2"), (1.0, "L1")):
        c = at(lvl, s * d.u(55.0, 70.0), -0.1 * vm[lvl].d, d.n(0.0, 8.0))
        ax = rotation(EY, s * d.u(8.0, 18.0) * DEG) @ rotation(EZ, -s * d.u(15.0, 35.0) * DEG)
        axes = ax.T
        rad = np.array([27.0, 21.0, 54.0]) * pat.size * d.u(0.9, 1.1)
        prims.append(
            partial(
                paint_ellipsoid, center=c, axes=axes, radii=rad + 7.0, label=lab.renal_sinus, prio=5
            )
        )
        prims.append(
            partial(paint_ellipsoid, center=c, axes=axes, radii=rad, label=lab.kidney, prio=6)
        )
        prims.append(
            partial(
                paint_ellipsoid,
                center=c - s * 8.0 * axes[0],
                axes=axes,
                radii=rad * [0.35, 0.35, 0.55],
                label=lab.renal_sinus,
                prio=7,
            )
        )
    # liver, spleen, stomach, heart
    t11 = vm["T11"]
    prims.append(
        partial(
            paint_ellipsoid,
            center=t11.center + np.array([-70.0, -75.0, d.n(-5.0, 10.0)]),
            axes=I3,
            radii=np.array([100.0, 80.0, 90.0]) * pat.size,
            label=lab.liver,
            prio=6,
        )
    )
    prims.append(
        partial(
            paint_ellipsoid,
            center=t11.center + np.array([85.0, 0.0, -10.0]),
            axes=I3,
            radii=np.array([35.0, 30.0, 55.0]) * d.u(0.8, 1.3),
            label=lab.spleen,
            prio=6,
        )
    )
    st_content = d.pick([lab.bowel_fluid, lab.bowel_feces, lab.air], [0.4, 0.4, 0.2])
    prims.append(
        partial(
            paint_ellipsoid,
            center=vm["T12"].center + np.array([60.0, -95.0, 15.0]),
            axes=I3,
            radii=np.array([45.0, 35.0, 50.0]) * d.u(0.8, 1.2),
            label=st_content,
            prio=6,
            wall=(4.0, lab.bowel_wall),
        )
    )
    heart_c = vm["T9"].center + np.array([15.0, -95.0, 20.0])
    prims.append(
        partial(
            paint_ellipsoid,
            center=heart_c,
            axes=I3,
            radii=[62.0, 52.0, 55.0],
            label=lab.blood,
            prio=6,
            wall=(10.0, lab.myocardium),
        )
    )
    # bowel loops
    z_top, z_bot = float(vm["L1"].center[2]), float(sac[1].center[2])
    for _ in range(d.i(22, 40)):
        z = d.u(z_bot, z_top)
        zi = int(min(body.nz - 1, max(0, z - body.z0)))
        ys = float(body.prof["ys"][zi])
        dsp = float(body.prof["dsp"][zi])
        yfront = float(body.prof["yci"][zi] - body.prof["bi"][zi])
        y_hi = ys - 0.5 * dsp - 18.0
        if y_hi - yfront < 30.0:
            continue
        hwi = float(body.prof["hwi"][zi])
        x = float(body.prof["xc"][zi]) + d.u(-0.75, 0.75) * hwi
        r = d.u(9.0, 22.0)
        y = d.u(yfront + r + 4.0, max(yfront + r + 5.0, y_hi - r))
        content = d.pick([lab.bowel_fluid, lab.air, lab.bowel_feces], [0.35, 0.2, 0.45])
        axes = rotation(unit([d.n(0, 1), d.n(0, 1), d.n(0, 1)]), d.u(0, math.pi)).T
        prims.append(
            partial(
                paint_ellipsoid,
                center=np.array([x, y, z]),
                axes=axes,
                radii=[r, r * d.u(0.6, 1.0), r * d.u(1.0, 2.2)],
                label=content,
                prio=4,
                wall=(d.u(1.5, 3.0), lab.bowel_wall),
            )
        )
    # rectum along the sacrum and coccyx
    tail = sac[1:] + [v for v in spine.verts if v.kind == "coccygeal"]
    r_rec = d.u(11.0, 19.0)
    pts = [v.world([0.0, 0.5 * v.d + 7.0 + r_rec, 0.0]) for v in tail]
    pts.append(pts[-1] + np.array([0.0, -10.0, -35.0]))
    prims.append(
        partial(
            paint_tube,
            pts=np.array(pts),
            rad=np.full(len(pts), r_rec),
            label=d.pick([lab.bowel_feces, lab.air, lab.bowel_fluid], [0.6, 0.25, 0.15]),
            prio=5,
            wall=(2.5, lab.bowel_wall),
        )
    )
    # bladder and uterus / prostate
    s3 = sac[min(2, len(sac) - 1)]
    blad_r = d.u(25.0, 55.0)
    blad_c = s3.center + np.array(
        [d.n(0.0, 5.0), -(0.5 * s3.d + 2 * r_rec + 30.0 + blad_r), -25.0 - 0.3 * blad_r]
    )
    prims.append(
        partial(
            paint_ellipsoid,
            center=blad_c,
            axes=I3,
            radii=[blad_r * 1.2, blad_r * 0.85, blad_r * 0.8],
            label=lab.urine,
            prio=6,
            wall=(2.5, lab.bowel_wall),
        )
    )
    if pat.sex == "F":
        ut_c = sac[1].center + np.array([d.n(0.0, 8.0), -(0.5 * sac[1].d + 2 * r_rec + 22.0), -5.0])
        axes = rotation(EX, d.u(-40.0, 20.0) * DEG).T
        prims.append(
            partial(
                paint_ellipsoid,
                center=ut_c,
                axes=axes,
                radii=[30.0, 22.0, 40.0] * np.array([1.0, 1.0, d.u(0.7, 1.2)]),
                label=lab.uterus,
                prio=6,
            )
        )
    else:
        pr_c = blad_c + np.array([0.0, 10.0, -blad_r * 0.8 - 18.0])
        prims.append(
            partial(
                paint_ellipsoid,
                center=pr_c,
                axes=I3,
                radii=[22.0, 17.0, 18.0],
                label=lab.prostate,
                prio=6,
            )
        )
    # iliac wings
    ala_hw = s1.ala_hw
    for s in (-1.0, 1.0):
        rx = d.u(115.0, 140.0) * pat.size
        ry = d.u(50.0, 62.0) * pat.size
        rz = d.u(85.0, 105.0) * pat.size
        cy = float(s1.center[1]) - 0.9 * ry + d.u(0.0, 8.0)
        z_crest = float(vm["L5"].center[2]) + d.u(-12.0, 8.0)
        il = Ilium(
            side=s,
            center=np.array([float(s1.center[0]), cy, z_crest - rz * d.u(0.45, 0.6)]),
            radii=np.array([rx, ry, rz]),
            t_ant=d.u(5.0, 9.0),
            t_post=d.u(14.0, 24.0),
            x_mid=float(s1.center[0]),
            x_si=ala_hw - 1.5,
            z_crest=z_crest,
            z_si_top=float(s1.center[2]) + 0.5 * s1.h,
            z_si_bot=float(sac[min(2, len(sac) - 1)].center[2]),
            y_cut=cy - 0.35 * ry,
        )
        prims.append(partial(paint_ilium, il=il))
    return prims


def spine_primitives(spine: Spine, lab: Labels) -> list[Callable[[Canvas], None]]:
    prims: list[Callable[[Canvas], None]] = []
    for v in spine.verts:
        prims.append(partial(paint_body, v=v))
        prims.append(partial(paint_arch, v=v))
        prims.append(partial(paint_lateral, v=v, side=-1))
        prims.append(partial(paint_lateral, v=v, side=1))
    for dk in spine.discs:
        prims.append(partial(paint_disc, dk=dk))
    for k in range(len(spine.canal) - 1):
        prims.append(partial(paint_canal, P=spine.canal[k], Q=spine.canal[k + 1], spine=spine))
    for pts, rad in spine.ribs:
        prims.append(
            partial(
                paint_tube, pts=pts, rad=rad, label=0, prio=30, bone=(lab.rib_marrow, lab.cortex)
            )
        )
    return prims


@dataclass
class Anatomy:
    variant: str
    patient: Patient
    tissues: Tissues
    labels: Labels
    spine: Spine
    body: Body
    prims: list[Callable[[Canvas], None]]
    truth: np.ndarray  # (5, 3) disc centres L1-L2 .. L5-S1
    info: dict


def build_anatomy(d: Draw, variant: str, b0: float) -> Anatomy:
    pat = draw_patient(d)
    tis = Tissues(b0)
    lab = Labels(tis, pat)
    spine, info = build_spine(d, pat, variant, tis, lab)
    for v in spine.verts:
        if v.hemangioma is not None:
            v.hemangioma_label = lab.hemangioma
        if v.schmorl is not None:
            below = [dk for dk in spine.discs if dk.upper is v or dk.lower is v]
            v.schmorl_label = below[0].nucleus or below[0].annulus
    body = build_body(d, pat, spine)
    prims = build_organs(d, pat, spine, body, lab) + spine_primitives(spine, lab)
    truth = np.array(
        [spine.disc(n).center if n != "L5-S1" else spine.disc("L5-S1").center for n in LEVELS]
    )
    info.update({"patient_age": pat.age, "patient_sex": pat.sex})
    return Anatomy(variant, pat, tis, lab, spine, body, prims, truth, info)


# --------------------------------------------------------------------------
# acquisition description
# --------------------------------------------------------------------------


@dataclass
class Pulse:
    contrast: str  # tse | stir | fs | gre
    te: float
    tr: float
    ti: float = 0.0
    etl: int = 1
    flip: float = 90.0
    fs_eff: float = 0.0
    bw: float = 200.0  # Hz per pixel


@dataclass
class Block:
    """One stack of parallel slices as written (IOP row/col, pixel (0,0) centre of slice 0)."""

    origin: np.ndarray
    row: np.ndarray
    col: np.ndarray
    n_slices: int
    spacing: float
    thickness: float
    rows: int
    cols: int
    ps: float
    acq_rows: int
    acq_cols: int
    phase_dir: str  # ROW | COL

    @property
    def normal(self) -> np.ndarray:
        return unit(np.cross(self.row, self.col))

    def position(self, s: int) -> np.ndarray:
        return self.origin + s * self.spacing * self.normal


@dataclass
class Series:
    role: str  # t2 | t1 | ax | loc | stir | fs | cor
    pulse: Pulse
    blocks: list[Block]
    nsub: int
    os: float
    snr: float
    filt: float
    ghost: float
    bias: tuple[float, float, float]
    desc: str = ""
    protocol: str = ""
    number: int = 0
    bits: int = 12
    vmax: float = 2000.0
    slope: float = 0.0
    reverse: bool = False
    uid: str = ""


@dataclass
class Site:
    vendor: str
    manufacturer: str
    model: str
    b0: float
    layout: str
    patient_position: str
    institution: str
    station: str


VENDORS = {
    "siemens": (
        "SIEMENS",
        {
            1.5: ["Avanto", "Aera", "Avanto_fit", "Sola", "Espree"],
            3.0: ["Skyra", "Prisma", "Vida", "Verio"],
        },
    ),
    "ge": (
        "GE MEDICAL SYSTEMS",
        {
            1.5: ["SIGNA Artist", "Optima MR450w", "Signa HDxt", "SIGNA Explorer"],
            3.0: ["DISCOVERY MR750", "SIGNA Premier", "SIGNA Architect", "DISCOVERY MR750w"],
        },
    ),
    "philips": (
        "Philips Medical Systems",
        {
            1.5: ["Ingenia", "Achieva", "Ingenia Ambition X"],
            3.0: ["Ingenia", "Achieva dStream", "Ingenia Elition X"],
        },
    ),
    "canon": (
        "CANON_MEC",
        {1.5: ["Vantage Orian", "Vantage Elan"], 3.0: ["Vantage Galan 3T", "Vantage Titan 3T"]},
    ),
}

DESCRIPTIONS = {
    "siemens": {
        "t2": [
            "t2_tse_sag",
            "t2_tse_sag_384",
            "t2_tse_sag_320",
            "T2_TSE_SAG",
            "t2_tse_sag_p2",
            "t2_tse_sag 4mm",
        ],
        "t1": ["t1_tse_sag", "t1_tse_sag_320", "T1_TSE_SAG", "t1_tse_sag_p2"],
        "ax": ["t2_tse_tra", "t2_tse_tra_320", "T2_TSE_TRA", "t2_tse_tra_p2", "t2_tse_tra_disc"],
        "loc": ["localizer", "Localizer", "AAScout", "localizer_3plane"],
        "stir": ["t2_tirm_sag", "t2_stir_sag", "T2_TIRM_SAG"],
        "fs": ["t2_tse_fs_sag", "t2_tse_sag_fs", "T2_TSE_FS_SAG"],
        "cor": ["t2_tse_cor", "T2_TSE_COR", "t2_haste_cor"],
    },
    "ge": {
        "t2": ["Sag T2 FSE", "SAG T2", "Sag T2 FRFSE", "SAG FSE T2", "Sag T2"],
        "t1": ["Sag T1 FSE", "SAG T1", "Sag T1", "SAG T1 FSE"],
        "ax": ["Ax T2 FSE", "AX T2", "Ax T2 FRFSE", "AX T2 FSE DISCS"],
        "loc": ["3-Plane Loc", "3 Plane Localizer", "Loc", "3pl loc"],
        "stir": ["Sag STIR", "SAG STIR", "Sag FSE-IR"],
        "fs": ["Sag T2 FS", "SAG T2 FSE FS", "Sag T2 FatSat"],
        "cor": ["Cor T2 FSE", "COR T2", "Cor SSFSE"],
    },
    "philips": {
        "t2": ["T2W_TSE_SAG", "sT2W_TSE", "T2W_TSE SAG", "SAG T2W", "T2W_TSE"],
        "t1": ["T1W_TSE_SAG", "sT1W_TSE", "T1W_TSE SAG", "T1W_TSE"],
        "ax": ["T2W_TSE_TRA", "tT2W_TSE", "T2W_TSE TRA", "T2W_TSE_AX"],
        "loc": ["Survey", "SURVEY", "SmartExam survey", "survey_3pl"],
        "stir": ["STIR_SAG", "sSTIR", "STIR_TSE SAG"],
        "fs": ["T2W_SPAIR_SAG", "sT2W_SPAIR", "T2W_TSE_FS SAG"],
        "cor": ["T2W_TSE_COR", "cT2W_TSE"],
    },
    "canon": {
        "t2": ["T2 SAG", "T2_SAG_FSE", "Sag T2 FSE", "T2W SAG"],
        "t1": ["T1 SAG", "T1_SAG_FSE", "T1W SAG"],
        "ax": ["T2 AX", "T2_AX_FSE", "T2W AX"],
        "loc": ["Locator", "LOCATOR", "Locator 3P"],
        "stir": ["STIR SAG", "STIR_SAG"],
        "fs": ["T2 FS SAG", "T2 FatSat SAG"],
        "cor": ["T2 COR", "T2_COR"],
    },
}
UNINFORMATIVE = {
    "t2": ["Series {n}", "SAG", "L-SPINE", "unnamed", "Lumbar", "{n}", "SAG 2"],
    "t1": ["Series {n}", "SAG", "L-SPINE", "unnamed", "Lumbar 2", "{n}"],
    "ax": ["Series {n}", "AX", "unnamed", "L-SPINE", "{n}"],
    "loc": ["Series {n}", "scout", "{n}"],
    "stir": ["Series {n}", "SAG", "{n}"],
    "fs": ["Series {n}", "SAG", "{n}"],
    "cor": ["Series {n}", "COR", "{n}"],
}
PROTOCOL_STYLE = {
    "siemens": lambda desc, role: desc,
    "ge": lambda desc, role: "LSPINE ROUTINE" if role != "loc" else "L-SPINE/1",
    "philips": lambda desc, role: (
        "WIP " + desc if role == "t2" and desc.startswith("T2") and len(desc) < 12 else desc
    ),
    "canon": lambda desc, role: "LSPINE_" + role.upper(),
}


def draw_site(d: Draw) -> Site:
    vendor = d.pick(["siemens", "ge", "philips", "canon"], [0.35, 0.3, 0.25, 0.1])
    b0 = d.pick([1.5, 3.0], [0.55, 0.45])
    manu, models = VENDORS[vendor]
    if vendor == "canon" and d.p(0.3):
        manu = "TOSHIBA_MEC"
    return Site(
        vendor=vendor,
        manufacturer=manu,
        model=d.pick(models[b0]),
        b0=b0,
        layout=d.pick(["series_dirs", "flat", "named_dirs", "dicom_tree"]),
        patient_position=d.pick(["HFS", "FFS"], [0.7, 0.3]),
        institution=d.pick(
            ["SYNTHETIC HOSPITAL", "PHANTOM IMAGING", "Eleventh Radiology", "Test Site"]
        ),
        station=d.pick(["MRC1", "AWP45123", "MR1", "STATION 3", "PHILIPS-ABC1"]),
    )


def even(x: float) -> int:
    return int(2 * round(x / 2.0))


def good_size(n: float) -> int:
    """Smallest even integer >= n whose prime factors are 2, 3, 5 or 7 (fast FFT sizes)."""
    m = max(2, int(math.ceil(n)))
    while True:
        r = m
        for prime in (2, 3, 5, 7):
            while r % prime == 0:
                r //= prime
        if r == 1 and m % 2 == 0:
            return m
        m += 1


MATRIX_WEIGHTS = {
    256: 1.0,
    288: 1.0,
    320: 3.0,
    336: 1.0,
    384: 3.0,
    400: 1.0,
    448: 2.0,
    480: 1.0,
    512: 4.0,
    560: 0.7,
    576: 0.7,
    640: 1.0,
}


def pick_matrix(d: Draw, fov: float, prefer: tuple[float, float], cap: int = 640) -> int:
    """Reconstruction matrix along the main axis: common sizes, pixel spacing within 0.4-1.2 mm."""
    ok = [n for n in MATRIX_WEIGHTS if 0.4 <= fov / n <= 1.2 and n <= cap]
    pref = [n for n in ok if prefer[0] <= fov / n <= prefer[1]] or ok
    return d.pick(pref, [MATRIX_WEIGHTS[n] for n in pref])


def acq_dims(
    d: Draw, rows: int, cols: int, phase_dir: str, res: tuple[float, float]
) -> tuple[int, int]:
    """Acquired k-space samples along rows (i) and columns (j)."""
    n_read, n_phase = (cols, rows) if phase_dir == "COL" else (rows, cols)
    interp = d.pick([1.0, 1.0, 1.0, 1.25, 1.5, 2.0])
    acq_read = min(n_read, max(192, even(min(512, n_read / interp) * d.u(*res))))
    acq_phase = min(n_phase, max(128, even(acq_read * n_phase / n_read * d.u(0.65, 1.0))))
    return (acq_phase, acq_read) if phase_dir == "COL" else (acq_read, acq_phase)


def round_dir(v: np.ndarray) -> np.ndarray:
    return np.round(unit(v), 6)


def fit_in_plane(
    center: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    rows: int,
    cols: int,
    ps: float,
    pts: np.ndarray,
    margin: float,
) -> np.ndarray:
    """Shift a field-of-view centre so that all points project inside with a margin (mm)."""
    c = center.copy()
    for vec, n in ((col, rows), (row, cols)):
        half = 0.5 * (n - 1) * ps - margin
        proj = (pts - c) @ vec
        lo, hi = float(proj.min()), float(proj.max())
        if hi - lo > 2 * half:
            c = c + vec * (0.5 * (lo + hi))
        elif hi > half:
            c = c + vec * (hi - half)
        elif lo < -half:
            c = c + vec * (lo + half)
    return c


def make_block(
    center: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    n: int,
    spacing: float,
    thick: float,
    rows: int,
    cols: int,
    ps: float,
    acq: tuple[int, int],
    phase_dir: str,
) -> Block:
    normal = unit(np.cross(row, col))
    origin = (
        center
        - 0.5 * (rows - 1) * ps * col
        - 0.5 * (cols - 1) * ps * row
        - 0.5 * (n - 1) * spacing * normal
    )
    return Block(
        origin=origin,
        row=row,
        col=col,
        n_slices=n,
        spacing=spacing,
        thickness=thick,
        rows=rows,
        cols=cols,
        ps=ps,
        acq_rows=acq[0],
        acq_cols=acq[1],
        phase_dir=phase_dir,
    )


def draw_sag_block(d: Draw, anat: Anatomy, role: str) -> Block:
    truth = anat.truth
    l3v = anat.spine.vert("L3")
    l3 = l3v.center
    lean = math.atan(
        float(np.polyfit(truth[:, 2], truth[:, 0], 1)[0])
    )  # coronal lean of the lumbar spine
    turn = math.atan2(float(l3v.frame[0][1]), float(l3v.frame[0][0]))  # axial rotation of L3
    for attempt in range(60):
        layout = d.pick(["std", "mirror", "headdown", "transposed"], [0.6, 0.2, 0.08, 0.12])
        if layout == "transposed":
            row0, col0 = d.pick([-EZ, EZ], [0.7, 0.3]), d.pick([EY, -EY])
        else:
            row0 = EY if layout != "mirror" else -EY
            col0 = EZ if layout == "headdown" else -EZ
        lim = 12.0 if attempt < 40 else 4.0
        yaw = turn * d.u(0.0, 1.0) + d.n(0.0, 3.0) * DEG
        roll = lean * d.u(0.5, 1.0) + d.n(0.0, 2.0) * DEG
        rot = (
            rotation(EZ, min(lim, max(-lim, yaw / DEG)) * DEG)
            @ rotation(EY, min(lim, max(-lim, roll / DEG)) * DEG)
            @ rotation(EX, d.n(0.0, 5.0, -lim, lim) * DEG)
        )
        row, col = round_dir(rot @ row0), round_dir(rot @ col0)
        normal = unit(np.cross(row, col))
        if abs(normal[0]) < math.cos(12.0 * DEG):
            continue
        thick = d.pick([3.0, 3.0, 3.5, 4.0, 4.0, 4.0, 4.5, 5.0])
        gap = min(1.0, d.pick([0.0, 0.3, 0.4, 0.5, 0.8, 1.0, 0.1 * thick]))
        spacing = round(thick + gap, 2)
        n = int(min(25, max(9, round(d.n(15.0, 3.5)))))
        proj = truth @ normal
        lo, hi = float(proj.min()), float(proj.max())
        ext = (n - 1) * spacing
        if hi - lo > ext - 1.0:
            n = int(math.ceil((hi - lo + 1.5) / spacing)) + 1
            if n > 25:
                continue
            ext = (n - 1) * spacing
        off = d.n(0.0, 6.0, -15.0, 15.0)
        c_n = min(max(float(l3 @ normal) + off, hi - 0.5 * ext + 0.3), lo + 0.5 * ext - 0.3)
        fov_si = d.u(260.0, 380.0) if role != "t1" else d.u(260.0, 360.0)
        n_si = pick_matrix(
            d, fov_si, (0.5, 1.0) if role == "t2" else (0.6, 1.1), 640 if role == "t2" else 512
        )
        ps = round(fov_si / n_si, 4)
        rect = d.pick([1.0, 1.0, 1.0, 0.875, 0.8, 0.75])
        n_ap = good_size(n_si * rect) if n_si * rect >= 256 else n_si
        rows, cols = (n_ap, n_si) if layout == "transposed" else (n_si, n_ap)
        si_is_col = layout != "transposed"
        phase_si = d.p(0.75)
        phase_dir = ("COL" if phase_si else "ROW") if si_is_col else ("ROW" if phase_si else "COL")
        acq = acq_dims(d, rows, cols, phase_dir, (0.85, 1.0) if role == "t2" else (0.7, 0.95))
        sac = [v for v in anat.spine.verts if v.kind in ("sacral", "coccygeal")]
        top = anat.spine.vert(d.pick(["T10", "T11", "T11", "T12", "T12", "L1"])).center
        bot = sac[min(len(sac) - 1, d.pick([1, 2, 3, 4, 5, 6]))].center
        center = 0.5 * (top + bot) + np.array([0.0, 0.0, d.n(0.0, 10.0)])
        center[1] = l3[1] - d.u(5.0, 45.0)
        center = center + (c_n - float(center @ normal)) * normal
        center = fit_in_plane(center, row, col, rows, cols, ps, truth, 14.0)
        center = center + (c_n - float(center @ normal)) * normal
        return make_block(center, row, col, n, spacing, thick, rows, cols, ps, acq, phase_dir)
    raise RuntimeError("could not place sagittal stack")


def copy_geometry(d: Draw, b: Block) -> Block:
    """Same slices and field of view as b (a site copying the T2 planning), own matrix."""
    center = (
        b.origin
        + 0.5 * (b.rows - 1) * b.ps * b.col
        + 0.5 * (b.cols - 1) * b.ps * b.row
        + 0.5 * (b.n_slices - 1) * b.spacing * b.normal
    )
    fov_r, fov_c = b.rows * b.ps, b.cols * b.ps
    main = max(fov_r, fov_c)
    n_main = pick_matrix(d, main, (0.6, 1.1), 512)
    ps = round(main / n_main, 4)
    rows = n_main if fov_r >= fov_c else max(256, good_size(fov_r / ps))
    cols = n_main if fov_c > fov_r else max(256, good_size(fov_c / ps))
    acq = acq_dims(d, rows, cols, b.phase_dir, (0.7, 0.95))
    return make_block(
        center,
        b.row.copy(),
        b.col.copy(),
        b.n_slices,
        b.spacing,
        b.thickness,
        rows,
        cols,
        ps,
        acq,
        b.phase_dir,
    )


def limit_tilt(normal: np.ndarray, max_deg: float) -> np.ndarray:
    """Tilt an axial slice normal back towards +z so it is at most max_deg from true axial."""
    n = unit(normal if normal[2] > 0 else -normal)
    if n[2] >= math.cos(max_deg * DEG):
        return n
    horiz = unit(n - n[2] * EZ)
    return unit(math.cos(max_deg * DEG) * EZ + math.sin(max_deg * DEG) * horiz)


def axial_axes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    row = round_dir(EX - (EX @ normal) * normal)
    col = round_dir(np.cross(normal, row))
    return row, col


def draw_axial_blocks(d: Draw, anat: Anatomy) -> list[Block]:
    spine = anat.spine
    thick = d.pick([3.0, 3.5, 4.0, 4.0, 5.0])
    gap = d.pick([0.0, 0.3, 0.5, 1.0])
    fov = d.u(170.0, 240.0)
    n_mat = pick_matrix(d, fov, (0.45, 0.9), 512)
    ps = round(fov / n_mat, 4)
    rect = d.pick([1.0, 1.0, 0.8, 0.75])
    rows = good_size(n_mat * rect) if n_mat * rect >= 256 else n_mat
    cols = n_mat
    phase_dir = d.pick(["ROW", "COL"])
    acq = acq_dims(d, rows, cols, phase_dir, (0.7, 0.95))
    blocks = []
    if d.p(0.6):
        names = list(LEVELS[2:]) if d.p(0.7) else list(LEVELS[3:])
        for nm in names:
            dk = spine.disc(nm)
            normal = limit_tilt(dk.frame[2], d.u(25.0, 35.0))
            row, col = axial_axes(normal)
            n = d.i(3, 5)
            center = (
                dk.center
                - dk.frame[1] * d.u(5.0, 25.0)
                + row * d.n(0.0, 4.0)
                + normal * d.n(0.0, 1.0)
            )
            blocks.append(
                make_block(
                    center,
                    row,
                    col,
                    n,
                    round(thick + gap, 2),
                    thick,
                    rows,
                    cols,
                    ps,
                    acq,
                    phase_dir,
                )
            )
    else:
        l4 = spine.vert("L4")
        tilt = d.u(0.0, 1.0)
        normal = unit(lerp(1.0, 0.0, tilt) * EZ + tilt * l4.frame[2])
        row, col = axial_axes(normal)
        top = spine.vert("L3").center
        bot = spine.disc("L5-S1").center - 10.0 * normal
        ext = float((top - bot) @ normal)
        spacing = round(thick + gap, 2)
        n = int(min(40, max(12, math.ceil(ext / spacing) + 1)))
        center = 0.5 * (top + bot) - l4.frame[1] * d.u(5.0, 25.0)
        blocks.append(
            make_block(center, row, col, n, spacing, thick, rows, cols, ps, acq, phase_dir)
        )
    return blocks


def draw_localizer_blocks(d: Draw, anat: Anatomy) -> list[Block]:
    l3 = anat.spine.vert("L3").center
    fov = d.u(330.0, 380.0)
    n_mat = d.pick([320, 384])
    ps = round(fov / n_mat, 4)
    thick = d.u(6.0, 10.0)
    spacing = round(thick + d.u(2.0, 20.0), 2)
    acq = (n_mat // 2 * 2 * 3 // 4 // 2 * 2, n_mat // 2 * 2 // 2 * 2)
    blocks = []
    for row, col in ((EY, -EZ), (EX, -EZ), (EX, EY)):
        n = d.i(1, 3)
        center = l3 + np.array([d.n(0.0, 5.0), d.n(-20.0, 10.0), d.n(0.0, 20.0)])
        blocks.append(
            make_block(
                center, row.copy(), col.copy(), n, spacing, thick, n_mat, n_mat, ps, acq, "ROW"
            )
        )
    return blocks


def draw_coronal_block(d: Draw, anat: Anatomy) -> Block:
    l3 = anat.spine.vert("L3")
    rot = rotation(EX, d.n(0.0, 8.0) * DEG)
    row, col = round_dir(rot @ EX), round_dir(rot @ -EZ)
    thick = d.pick([3.0, 4.0, 4.0, 5.0])
    spacing = round(thick + d.pick([0.0, 0.4, 1.0]), 2)
    n = d.i(11, 17)
    fov = d.u(300.0, 380.0)
    n_mat = pick_matrix(d, fov, (0.6, 1.1), 512)
    ps = round(fov / n_mat, 4)
    acq = acq_dims(d, n_mat, n_mat, "ROW", (0.7, 0.9))
    center = l3.center + np.array([0.0, d.n(-5.0, 5.0), d.n(-20.0, 20.0)])
    return make_block(center, row, col, n, spacing, thick, n_mat, n_mat, ps, acq, "ROW")


def draw_pulse(d: Draw, role: str, b0: float) -> Pulse:
    hi = b0 > 2.0
    bw = d.u(130.0, 300.0)
    if role in ("t2", "ax", "cor"):
        return Pulse("tse", te=d.u(85.0, 120.0), tr=d.u(2500.0, 5000.0), etl=d.i(12, 26), bw=bw)
    if role == "fs":
        return Pulse(
            "fs",
            te=d.u(80.0, 110.0),
            tr=d.u(2800.0, 5000.0),
            etl=d.i(12, 22),
            fs_eff=d.u(0.85, 0.97),
            bw=bw,
        )
    if role == "t1":
        return Pulse(
            "tse",
            te=d.u(7.0, 15.0),
            tr=d.u(400.0, 760.0 if not hi else 790.0),
            etl=d.i(2, 5),
            bw=bw,
        )
    if role == "stir":
        ti = d.u(140.0, 170.0) if not hi else d.u(200.0, 230.0)
        return Pulse(
            "stir", te=d.u(40.0, 75.0), tr=d.u(3000.0, 5500.0), ti=ti, etl=d.i(8, 18), bw=bw
        )
    return Pulse(
        "gre", te=d.u(2.0, 5.0), tr=d.u(6.0, 12.0), flip=d.u(15.0, 35.0), bw=d.u(200.0, 500.0)
    )


def describe(d: Draw, site: Site, role: str, number: int) -> tuple[str, str]:
    if d.p(0.1):
        desc = d.pick(UNINFORMATIVE[role]).format(n=number)
    else:
        desc = d.pick(DESCRIPTIONS[site.vendor][role])
        if d.p(0.12):
            desc = desc.upper() if d.p(0.5) else desc.lower()
    if d.p(0.1):
        proto = d.pick(["Series {n}", "LSPINE", "L-Spine", "{n}"]).format(n=number)
    else:
        proto = PROTOCOL_STYLE[site.vendor](desc, role)
    return desc, proto


def draw_series(d: Draw, anat: Anatomy, site: Site) -> list[Series]:
    roles = ["t2", "t1", "ax"]
    extras = []
    if d.p(0.45):
        extras.append("loc")
    if d.p(0.2):
        extras.append("stir")
    elif d.p(0.07):
        extras.append("fs")
    if d.p(0.1):
        extras.append("cor")
    t2_block = draw_sag_block(d, anat, "t2")
    series: list[Series] = []
    for role in roles + extras:
        if role == "t2":
            blocks = [t2_block]
        elif role in ("t1", "stir", "fs"):
            blocks = [copy_geometry(d, t2_block)] if d.p(0.6) else [draw_sag_block(d, anat, role)]
        elif role == "ax":
            blocks = draw_axial_blocks(d, anat)
        elif role == "loc":
            blocks = draw_localizer_blocks(d, anat)
        else:
            blocks = [draw_coronal_block(d, anat)]
        pulse = draw_pulse(d, role, site.b0)
        snr = math.exp(d.u(math.log(6.0), math.log(60.0)))
        if role == "t2":
            nsub, os_ = 2, d.u(1.25, 1.6)
        else:
            nsub, os_ = 1, d.u(1.1, 1.3)
        presc = d.p(0.5)
        bias = (
            d.u(0.3, 0.6) if presc else d.u(0.12, 0.35),
            d.u(90.0, 220.0) if presc else d.u(50.0, 120.0),
            d.u(0.0, 0.5),
        )
        bits, vmax, slope = 12, d.u(600.0, 3800.0), 0.0
        if site.vendor == "ge":
            bits, vmax = 16, d.u(1500.0, 20000.0)
        elif site.vendor == "philips":
            slope = d.u(0.8, 4.0) if d.p(0.7) else 0.0
        elif site.vendor == "canon":
            bits, vmax = 16, d.u(800.0, 4000.0)
        series.append(
            Series(
                role=role,
                pulse=pulse,
                blocks=blocks,
                nsub=nsub,
                os=os_,
                snr=snr,
                filt=d.pick([0.0, 0.0, d.u(0.1, 0.5)]),
                ghost=d.u(0.05, 0.35) if d.p(0.15) else 0.0,
                bias=bias,
                bits=bits,
                vmax=vmax,
                slope=slope,
                reverse=d.p(0.3),
            )
        )
    # acquisition order: localizer first, sagittals, then axial / coronal
    order = [s for s in series if s.role == "loc"]
    sag = [s for s in series if s.role in ("t2", "t1", "stir", "fs")]
    d.g.shuffle(sag)  # type: ignore[arg-type]
    rest = [s for s in series if s.role in ("ax", "cor")]
    d.g.shuffle(rest)  # type: ignore[arg-type]
    series = order + sag + rest
    base = d.pick([1, 2, 100, 101, 201])
    step = 100 if base >= 100 else 1
    if site.vendor == "philips" and d.p(0.7):
        base, step = 101, 100
    for k, ser in enumerate(series):
        ser.number = base + k * step if k else (base if base != 201 else 101)
        ser.desc, ser.protocol = describe(d, site, ser.role, ser.number)
    return series


# --------------------------------------------------------------------------
# rendering and MR signal simulation
# --------------------------------------------------------------------------


def signal_tables(tis: Tissues, pulse: Pulse) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Water-pool and fat-pool signal per label, and texture amplitude per label."""
    arr = np.array(tis.rows, dtype=float)
    pd, t1, t2, ff, tex = arr.T
    t1f, t2f = tis.fat_relaxation()

    def pool(rho: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
        te, tr = pulse.te, pulse.tr
        if pulse.contrast == "gre":
            e1 = np.exp(-tr / r1)
            a = pulse.flip * DEG
            return rho * math.sin(a) * (1 - e1) / (1 - math.cos(a) * e1) * np.exp(-te / (0.6 * r2))
        if pulse.contrast == "stir":
            rec = np.abs(1.0 - 2.0 * np.exp(-pulse.ti / r1) + np.exp(-tr / r1))
        else:
            rec = 1.0 - np.exp(-tr / r1)
        return rho * rec * np.exp(-te / r2)

    water = pool(pd * (1.0 - ff), t1, t2)
    fat = pool(pd * ff, np.full_like(t1, t1f), np.full_like(t2, t2f))
    if pulse.contrast == "fs":
        fat = fat * (1.0 - pulse.fs_eff)
    return water.astype(F32), fat.astype(F32), tex.astype(F32)


def plane_axis(st: Stack, c: int, k: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinate c as three broadcastable pieces (planes, rows, columns)."""
    a = (st.origin[c] + st.offs[k] * st.normal[c]).astype(F32)
    b = (np.arange(st.n_i) * st.di * st.col[c]).astype(F32)
    e = (np.arange(st.n_j) * st.dj * st.row[c]).astype(F32)
    return a[:, None, None], b[None, :, None], e[None, None, :]


def interp_matrix(n: int, m: int) -> np.ndarray:
    """(n, m) matrix that interpolates m lattice values smoothly onto n samples."""
    t = np.linspace(0.0, m - 1.0, n)
    i0 = np.minimum(np.floor(t).astype(int), m - 2)
    w = t - i0
    w = w * w * (3.0 - 2.0 * w)
    mat = np.zeros((n, m), dtype=F32)
    mat[np.arange(n), i0] = 1.0 - w
    mat[np.arange(n), i0 + 1] = w
    return mat


def texture_field(st: Stack, g: np.random.Generator) -> np.ndarray:
    """Smooth random tissue texture (std about 1) for one slice, two spatial scales."""
    out = np.zeros((st.n_i, st.n_j), dtype=F32)
    for cell, amp in ((9.0, 0.75), (3.2, 0.5)):
        ci = max(3, int(st.n_i * st.di / cell) + 2)
        cj = max(3, int(st.n_j * st.dj / cell) + 2)
        lattice = g.standard_normal((ci, cj)).astype(F32) * F32(amp * 1.6)
        out += interp_matrix(st.n_i, ci) @ lattice @ interp_matrix(st.n_j, cj).T
    return out


def coil_bias(
    st: Stack, k: slice, body: Body, bias: tuple[float, float, float], z_ref: float
) -> np.ndarray:
    floor, lam, si = bias
    ya, yb, yc = plane_axis(st, 1, k)
    za, zb, zc = plane_axis(st, 2, k)
    depth = np.clip(F32(body.y_coil) - ((ya + yb) + yc), 0.0, None)
    b = floor + (1.0 - floor) * np.exp(-depth * (1.0 / lam))
    zz = ((za + zb) + zc - F32(z_ref)) * (1.0 / 260.0)
    return b * np.clip(1.0 - si * zz * zz, 0.45, 1.0)


def tissue_images(
    cv: Canvas, anat: Anatomy, ser: Series, blk: Block, g: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """Water and fat images per slice (through-plane samples averaged) and a reference level."""
    st = cv.st
    tw, tf, tx = signal_tables(anat.tissues, ser.pulse)
    n, ns = blk.n_slices, ser.nsub
    water = np.empty((n, st.n_i, st.n_j), dtype=F32)
    fat = np.empty_like(water)
    z_ref = float(anat.spine.vert("L3").center[2]) + 30.0
    for s in range(n):
        k = slice(s * ns, (s + 1) * ns)
        lab = cv.lab[k]
        mult = (1.0 + tx[lab] * texture_field(st, g)) * coil_bias(st, k, anat.body, ser.bias, z_ref)
        water[s] = (tw[lab] * mult).mean(axis=0)
        fat[s] = (tf[lab] * mult).mean(axis=0)
    tot = water[n // 2] + fat[n // 2]
    m = tot > 0.1 * float(tot.max())
    ref = float(tot[m].mean()) if m.any() else 1.0
    return water, fat, ref


def kspace_window(n: int, alpha: float) -> np.ndarray:
    """Tukey-like apodisation over n centred k-space samples."""
    if alpha <= 0:
        return np.ones(n, dtype=F32)
    x = np.abs((np.arange(n) - n // 2) / (n / 2.0))
    w = np.where(x < 1.0 - alpha, 1.0, 0.5 * (1.0 + np.cos(np.pi * (x - 1.0 + alpha) / alpha)))
    return w.astype(F32)


def centred_index(n_small: int, n_big: int) -> np.ndarray:
    """Indices of the n_small lowest spatial frequencies in an unshifted length-n_big spectrum."""
    return (np.arange(n_small) - n_small // 2) % n_big


def acquire(
    water: np.ndarray,
    fat: np.ndarray,
    blk: Block,
    ser: Series,
    ref: float,
    b0: float,
    g: np.random.Generator,
) -> np.ndarray:
    """k-space truncation, fat shift, ghosts, complex noise, zero filling; returns magnitude.

    Slices are processed a few at a time to keep the working set small."""
    n, ni, nj = water.shape
    ai, aj = min(blk.acq_rows, ni), min(blk.acq_cols, nj)
    ri, rj = centred_index(ai, ni), centred_index(aj, nj)
    mi, mj = ((-ri) % ni)[:, None], ((-rj) % nj)[None, :]
    read_j = blk.phase_dir == "COL"
    n_read_acq = aj if read_j else ai
    n_read_r = nj if read_j else ni
    shift = 3.5e-6 * 42.577e6 * b0 / ser.pulse.bw * (n_read_r / n_read_acq)
    f = ((np.arange(n_read_acq) - n_read_acq // 2) / n_read_r).astype(F32)
    ramp = np.exp(-2j * np.pi * f * shift).astype(np.complex64)
    ramp = ramp[None, None, :] if read_j else ramp[None, :, None]
    weight = None
    if ser.filt > 0:
        weight = (kspace_window(ai, ser.filt)[:, None] * kspace_window(aj, ser.filt)[None, :])[None]
    ghost = None
    if ser.ghost > 0:
        lines = np.arange(ai if read_j else aj)
        ph = (
            ser.ghost * np.sin(2 * np.pi * lines / g.uniform(6.0, 20.0) + g.uniform(0, 2 * np.pi))
        ).astype(F32)
        mod = np.exp(1j * ph).astype(np.complex64)
        ghost = mod[None, :, None] if read_j else mod[None, None, :]
    sigma = F32(ref / ser.snr / math.sqrt(ai * aj))
    out_i, out_j = centred_index(ai, blk.rows), centred_index(aj, blk.cols)
    result = np.empty((n, blk.rows, blk.cols), dtype=F32)
    for s0 in range(0, n, 4):
        sl = slice(s0, min(n, s0 + 4))
        # water and fat share one complex transform:
        # W(k) = (Z(k) + Z*(-k)) / 2, F(k) = (Z(k) - Z*(-k)) / 2i
        spec = np.fft.fft2(water[sl] + 1j * fat[sl].astype(np.complex64), norm="forward")
        zk = spec[:, ri[:, None], rj[None, :]]
        zm = np.conj(spec[:, mi, mj])
        ksp = 0.5 * (zk + zm) - 0.5j * (zk - zm) * ramp
        if weight is not None:
            ksp *= weight
        if ghost is not None:
            ksp *= ghost
        noise = g.standard_normal((2,) + ksp.shape, dtype=F32) * sigma
        ksp += noise[0] + 1j * noise[1]
        half = np.zeros((ksp.shape[0], ai, blk.cols), dtype=np.complex64)
        half[:, :, out_j] = ksp
        half = np.fft.ifft(half, axis=2, norm="forward")
        full = np.zeros((ksp.shape[0], blk.rows, blk.cols), dtype=np.complex64)
        full[:, out_i, :] = half
        result[sl] = np.abs(np.fft.ifft(full, axis=1, norm="forward"))
    return result


def render_block(anat: Anatomy, ser: Series, blk: Block, g: np.random.Generator) -> np.ndarray:
    cap = 512 if ser.role == "t2" else 400
    nri = good_size(min(cap, max(blk.acq_rows, blk.acq_rows * ser.os)))
    nrj = good_size(min(cap, max(blk.acq_cols, blk.acq_cols * ser.os)))
    sub = ((np.arange(ser.nsub) + 0.5) / ser.nsub - 0.5) * blk.thickness * 0.85
    offs = ((np.arange(blk.n_slices) * blk.spacing)[:, None] + sub[None, :]).ravel()
    st = Stack(
        origin=blk.origin,
        row=blk.row,
        col=blk.col,
        normal=blk.normal,
        di=blk.rows * blk.ps / nri,
        dj=blk.cols * blk.ps / nrj,
        offs=offs,
        n_i=nri,
        n_j=nrj,
        group=ser.nsub,
    )
    cv = Canvas(st, anat.labels)
    paint_background(cv, anat.body)
    for prim in anat.prims:
        prim(cv)
    water, fat, ref = tissue_images(cv, anat, ser, blk, g)
    del cv
    return acquire(water, fat, blk, ser, ref, anat.tissues.b0, g)


def quantize(images: list[np.ndarray], ser: Series) -> list[np.ndarray]:
    sample = np.concatenate([im[:, ::3, ::3].ravel() for im in images])
    top = float(np.percentile(sample, 99.7)) or 1.0
    scale = ser.vmax / top
    maxval = (1 << ser.bits) - 1
    return [np.clip(np.rint(im * scale), 0, maxval).astype(np.uint16) for im in images]


# --------------------------------------------------------------------------
# DICOM output
# --------------------------------------------------------------------------


def ds_num(v: float, nd: int = 6) -> str:
    """Decimal string of at most 16 characters."""
    while True:
        s = f"{float(v):.{nd}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        if s in ("-0", ""):
            s = "0"
        if len(s) <= 16 or nd == 0:
            return s
        nd -= 1


@dataclass
class StudyHeader:
    seed: int
    index: int
    study_uid: str
    frame_uid: str
    date: str
    time: str
    accession: str
    patient_id: str
    birth: str
    sex: str
    age: int
    size_m: float
    weight: float
    site: Site


def image_type(vendor: str) -> list[str]:
    return {
        "siemens": ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
        "ge": ["ORIGINAL", "PRIMARY", "OTHER"],
        "philips": ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
        "canon": ["ORIGINAL", "PRIMARY"],
    }[vendor]


def build_dataset(
    hdr: StudyHeader,
    ser: Series,
    blk: Block,
    s: int,
    inst: int,
    pix: np.ndarray,
    sop_uid: str,
    acq_time: str,
    wc: float,
    ww: float,
) -> Dataset:
    site = hdr.site
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = make_uid("implementation-class")
    meta.ImplementationVersionName = "ELEVENTH_1"
    ds = Dataset()
    ds.file_meta = meta
    p = ser.pulse
    pos = blk.position(s)
    normal = blk.normal
    read_j = blk.phase_dir == "COL"
    acq_read = blk.acq_cols if read_j else blk.acq_rows
    acq_phase = blk.acq_rows if read_j else blk.acq_cols
    f0 = 63.87 if site.b0 < 2 else (123.25 if site.vendor == "siemens" else 127.74)
    seq_variant = {
        "tse": ["SK", "SP", "OSP"],
        "fs": ["SK", "SP", "OSP"],
        "stir": ["SK", "SP", "MP"],
        "gre": ["SP", "OSP"],
    }[p.contrast]
    scan_seq = {"tse": "SE", "fs": "SE", "stir": ["SE", "IR"], "gre": "GR"}[p.contrast]
    options = {"tse": ["PFP"], "fs": ["PFP", "FS"], "stir": ["IR"], "gre": ["PFP"]}[p.contrast]
    fields: list[tuple[str, object]] = [
        ("SpecificCharacterSet", "ISO_IR 100"),
        ("ImageType", image_type(site.vendor)),
        ("SOPClassUID", MR_IMAGE_STORAGE),
        ("SOPInstanceUID", sop_uid),
        ("StudyDate", hdr.date),
        ("SeriesDate", hdr.date),
        ("AcquisitionDate", hdr.date),
        ("ContentDate", hdr.date),
        ("StudyTime", hdr.time),
        ("SeriesTime", acq_time),
        ("AcquisitionTime", acq_time),
        ("ContentTime", acq_time),
        ("AccessionNumber", hdr.accession),
        ("Modality", "MR"),
        ("Manufacturer", site.manufacturer),
        ("InstitutionName", site.institution),
        ("ReferringPhysicianName", ""),
        ("StationName", site.station),
        ("StudyDescription", "LUMBAR SPINE" if site.vendor != "siemens" else "Wirbelsaeule^LWS"),
        ("SeriesDescription", ser.desc),
        ("ManufacturerModelName", site.model),
        ("PatientName", "PHANTOM^ELEVENTH"),
        ("PatientID", hdr.patient_id),
        ("PatientBirthDate", hdr.birth),
        ("PatientSex", hdr.sex),
        ("PatientAge", f"{hdr.age:03d}Y"),
        ("PatientSize", ds_num(hdr.size_m, 2)),
        ("PatientWeight", ds_num(hdr.weight, 1)),
        ("BodyPartExamined", "LSPINE"),
        ("ScanningSequence", scan_seq),
        ("SequenceVariant", seq_variant),
        ("ScanOptions", options),
        ("MRAcquisitionType", "2D"),
        ("SliceThickness", ds_num(blk.thickness, 3)),
        ("RepetitionTime", ds_num(p.tr, 2)),
        ("EchoTime", ds_num(p.te, 2)),
        ("NumberOfAverages", ds_num(1 if ser.role != "t1" else 2, 1)),
        ("ImagingFrequency", ds_num(f0, 6)),
        ("ImagedNucleus", "1H"),
        ("EchoNumbers", "1"),
        ("MagneticFieldStrength", ds_num(site.b0, 1)),
        ("SpacingBetweenSlices", ds_num(blk.spacing, 3)),
        ("EchoTrainLength", str(p.etl)),
        ("PercentSampling", ds_num(100.0 * acq_phase / max(1, acq_read), 2)),
        (
            "PercentPhaseFieldOfView",
            ds_num(
                100.0 * (blk.rows if read_j else blk.cols) / (blk.cols if read_j else blk.rows), 2
            ),
        ),
        ("PixelBandwidth", ds_num(p.bw, 2)),
        ("ProtocolName", ser.protocol),
        (
            "ReceiveCoilName",
            {
                "siemens": "Spine_32",
                "ge": "CTL",
                "philips": "dS Posterior",
                "canon": "SPEEDER Spine",
            }[site.vendor],
        ),
        (
            "AcquisitionMatrix",
            [0, acq_read, acq_phase, 0] if read_j else [acq_read, 0, 0, acq_phase],
        ),
        ("InPlanePhaseEncodingDirection", blk.phase_dir),
        ("FlipAngle", ds_num(p.flip if p.contrast == "gre" else d_flip(site.vendor), 1)),
        ("PatientPosition", site.patient_position),
        ("StudyInstanceUID", hdr.study_uid),
        ("SeriesInstanceUID", ser.uid),
        ("StudyID", str(1 + hdr.index)),
        ("SeriesNumber", str(ser.number)),
        ("AcquisitionNumber", "1"),
        ("InstanceNumber", str(inst)),
        ("ImagePositionPatient", [ds_num(x, 5) for x in pos]),
        ("ImageOrientationPatient", [ds_num(x, 6) for x in (*blk.row, *blk.col)]),
        ("FrameOfReferenceUID", hdr.frame_uid),
        ("PositionReferenceIndicator", ""),
        ("SliceLocation", ds_num(float(pos @ normal), 5)),
        ("SamplesPerPixel", 1),
        ("PhotometricInterpretation", "MONOCHROME2"),
        ("Rows", blk.rows),
        ("Columns", blk.cols),
        ("PixelSpacing", [ds_num(blk.ps, 6), ds_num(blk.ps, 6)]),
        ("BitsAllocated", 16),
        ("BitsStored", ser.bits),
        ("HighBit", ser.bits - 1),
        ("PixelRepresentation", 0),
        ("WindowCenter", ds_num(wc, 1)),
        ("WindowWidth", ds_num(ww, 1)),
    ]
    if p.contrast == "stir":
        fields.append(("InversionTime", ds_num(p.ti, 1)))
    if ser.slope > 0:
        fields += [
            ("RescaleIntercept", "0"),
            ("RescaleSlope", ds_num(ser.slope, 6)),
            ("RescaleType", "US"),
        ]
    for key, value in fields:
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pix, dtype="<u2").tobytes()
    return ds


def d_flip(vendor: str) -> float:
    return {"siemens": 150.0, "ge": 90.0, "philips": 90.0, "canon": 90.0}[vendor]


def slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")
    return out[:40] or "series"


def instance_path(
    folder: Path, layout: str, ser: Series, inst: int, counter: int, sop_uid: str
) -> Path:
    if layout == "series_dirs":
        return folder / f"SE{ser.number:04d}" / f"IM{inst:04d}.dcm"
    if layout == "flat":
        return folder / f"IM_{counter:05d}"
    if layout == "named_dirs":
        return folder / f"{ser.number:03d}_{slug(ser.desc)}" / f"{inst:03d}.dcm"
    tail = sop_uid.replace(".", "")
    return folder / "DICOM" / f"S{ser.number:04d}" / f"{tail[-8:]}"


def study_header(d: Draw, seed: int, index: int, pat: Patient, site: Site) -> StudyHeader:
    day = d.i(0, 4700)
    y, m, dd = 2012 + day // 365, 1 + (day % 365) // 31, 1 + (day % 31) % 28
    hh, mm = d.i(7, 20), d.i(0, 59)
    return StudyHeader(
        seed=seed,
        index=index,
        study_uid=make_uid(seed, index, "study"),
        frame_uid=make_uid(seed, index, "frame"),
        date=f"{y:04d}{m:02d}{dd:02d}",
        time=f"{hh:02d}{mm:02d}{d.i(0, 59):02d}",
        accession=f"ELV{seed % 100000:05d}{index:03d}",
        patient_id=f"ELEVENTH-{seed}-{index:03d}",
        birth=f"{y - pat.age:04d}{d.i(1, 12):02d}{d.i(1, 28):02d}",
        sex=pat.sex,
        age=pat.age,
        size_m=(1.58 if pat.sex == "F" else 1.72) * pat.size,
        weight=pat.bmi * ((1.58 if pat.sex == "F" else 1.72) * pat.size) ** 2,
        site=site,
    )


def write_series(
    folder: Path,
    hdr: StudyHeader,
    ser: Series,
    images: list[np.ndarray],
    counter: int,
    acq_seconds: int,
) -> int:
    stored = np.concatenate([im[:, ::3, ::3].ravel() for im in images])
    lo, hi = float(np.percentile(stored, 1.0)), float(np.percentile(stored, 99.5))
    wc, ww = 0.5 * (lo + hi), max(1.0, hi - lo)
    hh, mm, ss = int(hdr.time[:2]), int(hdr.time[2:4]), int(hdr.time[4:6])
    t = hh * 3600 + mm * 60 + ss + acq_seconds
    fraction = (ser.number * 7919) % 1000000
    acq_time = f"{(t // 3600) % 24:02d}{(t // 60) % 60:02d}{t % 60:02d}.{fraction:06d}"
    slices = [(b, blk, s) for b, blk in enumerate(ser.blocks) for s in range(blk.n_slices)]
    if ser.reverse and len(ser.blocks) == 1:
        slices = slices[::-1]
    for inst, (b, blk, s) in enumerate(slices, start=1):
        sop = make_uid(hdr.seed, hdr.index, "sop", ser.number, b, s)
        ds = build_dataset(hdr, ser, blk, s, inst, images[b][s], sop, acq_time, wc, ww)
        path = instance_path(folder, hdr.site.layout, ser, inst, counter, sop)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        counter += 1
    return counter


# --------------------------------------------------------------------------
# study
# --------------------------------------------------------------------------


def study_rng(seed: int, index: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(seed) % (1 << 32), 0x11E7E, int(index), *extra])
    )


def write_study(out: Path, seed: int, index: int) -> Path:
    """Write one synthetic study into out/eleventh-{index:03d}; deterministic in (seed, index)."""
    d = Draw(study_rng(seed, index))
    variant = variant_for(index)
    site = draw_site(d)
    anat = build_anatomy(d, variant, site.b0)
    series = draw_series(d, anat, site)
    hdr = study_header(d, seed, index, anat.patient, site)
    for ser in series:
        ser.uid = make_uid(seed, index, "series", ser.number, ser.role)
    folder = Path(out) / f"eleventh-{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    counter, clock = 1, 0
    for k, ser in enumerate(series):
        g = study_rng(seed, index, 1000 + k)
        images = quantize([render_block(anat, ser, blk, g) for blk in ser.blocks], ser)
        counter = write_series(folder, hdr, ser, images, counter, clock)
        clock += 60 + int(sum(b.n_slices for b in ser.blocks) * ser.pulse.tr / 1000.0 * 3.0)
    t2 = next(s for s in series if s.role == "t2")
    blk = t2.blocks[0]
    normal = unit(
        np.cross(
            np.array([float(ds_num(x, 6)) for x in blk.row]),
            np.array([float(ds_num(x, 6)) for x in blk.col]),
        )
    )
    truth = {
        "set": "eleventh",
        "variation": "eleventh",
        "variant": variant,
        "lstv": variant != "normal",
        "seed": seed,
        "index": index,
        "study_instance_uid": hdr.study_uid,
        "t2_series_instance_uid": t2.uid,
        "slice_normal": [round(float(x), 8) for x in normal],
        "discs": [
            {"level": lv, "patient_xyz": [round(float(x), 4) for x in anat.truth[k]]}
            for k, lv in enumerate(LEVELS)
        ],
        "field_strength": site.b0,
        "vendor_style": site.vendor,
        "model": anat.info,
        "series": [
            {
                "series_instance_uid": s.uid,
                "role": s.role,
                "description": s.desc,
                "series_number": s.number,
            }
            for s in series
        ],
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Eleventh synthetic lumbar-spine MR phantom (LSTV blind set)."
    )
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for index in range(args.count):
        t0 = time.perf_counter()
        path = write_study(args.out, args.seed, index)
        print(f"{path}  {time.perf_counter() - t0:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
