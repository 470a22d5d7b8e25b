"""Synthetic sagittal T2-like lumbar spine phantoms with known disc centres (numpy only).

Geometry is built in the sagittal plane in mm, ``u`` pointing posterior and ``v`` inferior,
starting at
the sacral promontory (top of S1) and chaining discs and vertebral bodies upward with a lordotic
wedge
angle per element, and sacral segments downward with a kyphotic curve. Each structure is a convex
quadrilateral rendered with a soft edge (partial volume); slices differ by their lateral offset
from the
midline, which fades structures with their lateral half-width.

Variants:

* ``normal``: 5 lumbar vertebrae, S1-S5 fused with thin remnant discs.
* ``lumbarization``: S1 is separated from S2 by a well-formed extra disc (6 mobile segments), the S1
  body is squarer and the remaining sacrum has 4 segments.
* ``sacralization``: L5 is transitional: tilted like the sacrum, partly bridged to it by bone, and
the
  L5-S1 disc is rudimentary or absent.

The field of view is positioned relative to the sacrum with random size and offset, so its upper
edge
falls anywhere between about T10 and T12: the top of the image is no reliable counting anchor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Variant = Literal["normal", "lumbarization", "sacralization"]
VARIANTS: tuple[str, ...] = ("normal", "lumbarization", "sacralization")

#: Disc names from the top of the field down to the sacrum for each variant.
_LUMBAR_DISCS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")

#: Image axes in patient space (LPS, PS3.3 C.7.6.2.1.1): columns run posterior, rows run inferior.
ROW_DIRECTION = (0.0, 1.0, 0.0)
COLUMN_DIRECTION = (0.0, 0.0, -1.0)
#: Slice normal = row x column = (-1, 0, 0): slices step towards patient right.
NORMAL = (-1.0, 0.0, 0.0)


@dataclass(frozen=True)
class DiscTruth:
    """The true centre of one disc: pixel (col, row) on ``slice_index`` and patient mm."""

    level: str
    col: float
    row: float
    slice_index: int
    patient_xyz: tuple[float, float, float]


@dataclass
class Phantom:
    """One synthetic sagittal series: 16-bit values [slices, rows, cols], geometry, truth."""

    variant: str
    seed: int
    volume: np.ndarray
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm, as DICOM PixelSpacing
    slice_thickness: float
    slice_spacing: float
    positions: list[tuple[float, float, float]]  # ImagePositionPatient per slice
    discs: list[DiscTruth] = field(default_factory=list)
    params: dict[str, float] = field(default_factory=dict)
    #: Patient mm of every mobile (well-formed, non-fused) disc from T8-T9 down: the lumbar and
    #: lower thoracic discs, L5-S1 unless sacralized, S1-S2 when lumbarized.
    mobile_discs: list[tuple[float, float, float]] = field(default_factory=list)
    row_direction: tuple[float, float, float] = ROW_DIRECTION
    column_direction: tuple[float, float, float] = COLUMN_DIRECTION

    @property
    def orientation(self) -> tuple[float, ...]:
        """Image Orientation (Patient): row then column direction cosines."""
        return tuple(self.row_direction) + tuple(self.column_direction)

    def disc(self, level: str) -> DiscTruth:
        for disc in self.discs:
            if disc.level == level:
                return disc
        raise KeyError(level)


# ----------------------------------------------------------------------------------------- geometry
def _axis(phi: float) -> np.ndarray:
    """Unit vector 'up the spine' for an element tilted ``phi`` rad anteriorly from vertical."""
    return np.array([-math.sin(phi), -math.cos(phi)])


def _endplate(phi: float) -> np.ndarray:
    """Unit vector along an endplate pointing posterior."""
    return np.array([math.cos(phi), -math.sin(phi)])


@dataclass
class _Quad:
    kind: str  # body, disc, remnant, sacrum, bridge
    name: str
    corners: np.ndarray  # (4, 2) in (u, v): lower-ant, lower-post, upper-post, upper-ant
    value: float
    centre_phi: float = 0.0

    @property
    def centre(self) -> np.ndarray:
        return self.corners.mean(axis=0)


def _element(
    p: np.ndarray, phi: float, height: float, wedge: float, depth_lo: float, depth_hi: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Corners of an element stacked on endplate centre ``p`` (angle ``phi``), going up.

    Returns (corners, upper endplate centre, upper angle). ``wedge`` > 0 is lordotic (taller
    anteriorly).
    """
    phi_hi = phi - wedge
    mid = phi - wedge / 2
    q = p + _axis(mid) * height
    e_lo, e_hi = _endplate(phi), _endplate(phi_hi)
    corners = np.array(
        [
            p - e_lo * depth_lo / 2,
            p + e_lo * depth_lo / 2,
            q + e_hi * depth_hi / 2,
            q - e_hi * depth_hi / 2,
        ]
    )
    return corners, q, phi_hi


def _soft_quad(
    corners: np.ndarray, uu: np.ndarray, vv: np.ndarray, soft: float, corner: float = 0.0
) -> np.ndarray:
    """Soft mask of a convex quadrilateral: sigmoid of the approx. signed edge distance.

    ``corner`` > 0 (mm) rounds the corners: the edge distances are combined by a smooth maximum
    (log-sum-exp with that temperature) instead of the maximum. Only the quad's bounding box
    (plus the soft edge) is computed; the mask is 0 elsewhere.
    """
    out = np.zeros(uu.shape, dtype=np.float32)
    pad = 12.0 * soft + corner
    lo, hi = corners.min(axis=0) - pad, corners.max(axis=0) + pad
    near = (uu >= lo[0]) & (uu <= hi[0]) & (vv >= lo[1]) & (vv <= hi[1])
    rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    if not len(rows) or not len(cols):
        return out
    win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    u, v = uu[win], vv[win]
    c = corners
    # orientation-independent: make the signed distance positive outside
    area = 0.0
    for i in range(4):
        a, b = c[i], c[(i + 1) % 4]
        area += a[0] * b[1] - b[0] * a[1]
    sign = 1.0 if area > 0 else -1.0
    dists = []
    for i in range(4):
        a, b = c[i], c[(i + 1) % 4]
        edge = b - a
        length = float(np.hypot(edge[0], edge[1])) or 1.0
        # outward normal for a counter-clockwise polygon (area > 0) is (dy, -dx)
        nx, ny = sign * edge[1] / length, -sign * edge[0] / length
        dists.append((u - a[0]) * nx + (v - a[1]) * ny)
    sd = np.max(dists, axis=0)
    if corner > 0:
        stacked = np.clip((np.stack(dists) - sd) / corner, -30, 0)
        sd = sd + corner * np.log(np.exp(stacked).sum(axis=0)) - corner * math.log(2.0)
    out[win] = 1.0 / (1.0 + np.exp(np.clip(sd / soft, -30, 30)))
    return out


# ------------------------------------------------------------------------------------------ builder
@dataclass(frozen=True)
class _Ageing:
    """Age-related change of the discs and the marrow (physics, not any test set): discs lose
    water (darker on T2, down to darker than the marrow), lose height (thinner everywhere, and
    narrowed degenerate discs most often at L4-L5 and L5-S1), and marrow turns fattier (brighter
    on fast spin-echo T2). ``age`` 0 = young spine, 1 = old spine."""

    age: float
    dehydration: float  # factor on the disc signal (1 = well hydrated)
    marrow_fat: float  # added to the marrow signal
    disc_height: float  # factor on every disc height
    rng: np.random.Generator  # per-disc degeneration draws

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Ageing:
        age = float(rng.uniform(0.0, 1.0))
        return cls(
            age=age,
            dehydration=1.0 - 0.8 * age**1.5 * float(rng.uniform(0.6, 1.0)),
            marrow_fat=0.25 * age * float(rng.uniform(0.0, 1.0)),
            disc_height=float(rng.uniform(0.7, 1.1)),
            rng=rng,
        )

    def degenerate(self, k: int) -> tuple[float, float]:
        """(signal factor, height factor) of lumbar disc ``k`` (0 = L5-S1): a degenerate disc is
        dark and narrowed; the lowest two discs degenerate most often."""
        p = (0.15 + 0.5 * self.age) if k < 2 else (0.05 + 0.3 * self.age)
        if self.rng.random() < p:
            return float(self.rng.uniform(0.35, 0.75)), float(self.rng.uniform(0.45, 0.85))
        return 1.0, 1.0


def _build_chain(
    rng: np.random.Generator,
    variant: str,
    scale: float,
    promontory: np.ndarray,
    slope: float,
    ageing: _Ageing,
) -> tuple[list[_Quad], dict[str, np.ndarray]]:
    """All bone/disc quads and the disc centres, from the sacrum upward and downward."""
    quads: list[_Quad] = []
    discs: dict[str, np.ndarray] = {}
    s = scale
    marrow = min(0.85, float(rng.uniform(0.25, 0.65)) + ageing.marrow_fat)
    disc_val = float(rng.uniform(0.4, 0.95)) * ageing.dehydration

    # ---- sacrum going down from the promontory (S1 top endplate centre)
    p, phi = promontory.copy(), slope
    n_sacral = 5
    seg_heights = np.array([24.0, 20.0, 16.0, 12.0, 9.0]) * s
    seg_depths = np.array([36.0, 28.0, 22.0, 16.0, 12.0]) * s
    sacral_quads: list[tuple[np.ndarray, float, float]] = []  # (corners, phi_mid, height)
    # build downward by stacking "upward" elements from below: walk down the axis
    top_p, top_phi = p, phi
    cur_p, cur_phi = top_p, top_phi
    lumbarized = variant == "lumbarization"
    for k in range(n_sacral):
        h = float(seg_heights[k] * rng.uniform(0.9, 1.1))
        curve = math.radians(float(rng.uniform(6.0, 12.0)))  # kyphotic sacral curvature
        d_hi, d_lo = float(seg_depths[k]), float(seg_depths[min(k + 1, n_sacral - 1)])
        if lumbarized and k == 0:
            d_lo = d_hi * 0.95  # squarer, mobile-looking S1
            curve = math.radians(float(rng.uniform(0.0, 5.0)))
        lower_phi = cur_phi + curve
        lower_p = cur_p - _axis(cur_phi + curve / 2) * h
        corners, _, _ = _element(lower_p, lower_phi, h, curve, d_lo, d_hi)
        sacral_quads.append((corners, cur_phi + curve / 2, h))
        # gap below this segment: remnant disc, or a real disc under a lumbarized S1
        if k < n_sacral - 1:
            if lumbarized and k == 0:
                gap = float(rng.uniform(6.0, 10.0)) * s
                val = disc_val * float(rng.uniform(0.75, 1.0))
                kind, name = "disc", "S1-S2"
            else:
                gap = float(rng.uniform(1.5, 3.0)) * s
                val = float(rng.uniform(0.3, 0.75))
                kind, name = "remnant", f"S{k + 1}-S{k + 2}"
            g_phi = lower_phi
            g_lo = lower_p - _axis(g_phi) * gap
            gc, _, _ = _element(g_lo, g_phi, gap, 0.0, d_lo * 0.9, d_lo * 0.9)
            quads.append(_Quad(kind, name, gc, val, g_phi))
            if kind == "disc":
                discs[name] = gc.mean(axis=0)
            cur_p, cur_phi = g_lo, g_phi
        else:
            cur_p, cur_phi = lower_p, lower_phi
    for i, (corners, phim, _h) in enumerate(sacral_quads):
        kind = "body" if (lumbarized and i == 0) else "sacrum"
        quads.append(
            _Quad(kind, f"S{i + 1}", corners, marrow * float(rng.uniform(0.95, 1.1)), phim)
        )

    # ---- lumbar and lower thoracic going up from the promontory
    lordosis = np.array([16.0, 13.0, 10.0, 7.0, 4.0]) * float(
        rng.uniform(0.8, 1.2)
    )  # per disc L5-S1 up
    disc_h = np.array([10.0, 11.0, 10.5, 9.5, 8.5]) * s  # L5-S1 .. L1-L2
    body_h = np.array([26.0, 27.0, 27.0, 26.0, 25.0]) * s  # L5 .. L1
    body_d = np.array([36.0, 36.0, 35.0, 34.0, 33.0]) * s
    p, phi = promontory.copy(), slope
    depth_below = float(seg_depths[0])
    names_up = [
        "L5-S1",
        "L4-L5",
        "L3-L4",
        "L2-L3",
        "L1-L2",
        "T12-L1",
        "T11-T12",
        "T10-T11",
        "T9-T10",
        "T8-T9",
    ]
    verts_up = ["L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8"]
    for k in range(len(names_up)):
        lumbar = k < 5
        h_disc = float(disc_h[k] if lumbar else (6.5 - 0.4 * (k - 5)) * s) * float(
            rng.uniform(0.85, 1.15)
        )
        wedge = math.radians(float(lordosis[k]) if lumbar else -float(rng.uniform(3.0, 6.0)))
        h_body = float(body_h[k] if lumbar else (23.0 - 1.2 * (k - 5)) * s) * float(
            rng.uniform(0.93, 1.07)
        )
        d_body = float(body_d[k] if lumbar else (31.0 - 1.5 * (k - 5)) * s) * float(
            rng.uniform(0.95, 1.05)
        )
        val = disc_val * float(rng.uniform(0.85, 1.1))
        if rng.random() < 0.2 and k < 6:  # patchy dehydration (dark), height preserved
            val *= float(rng.uniform(0.4, 0.8))
        if lumbar:
            dark, narrow = ageing.degenerate(k)
            val *= dark
            h_disc *= narrow * ageing.disc_height
        kind = "disc"
        sacral_l5 = variant == "sacralization" and k == 0
        if sacral_l5:
            absent = rng.random() < 0.3
            h_disc = float(rng.uniform(0.5, 1.0) if absent else rng.uniform(1.5, 4.0)) * s
            val = marrow * 1.05 if absent else float(rng.uniform(0.5, 0.65))
            kind = "remnant"
            wedge = math.radians(float(rng.uniform(2.0, 6.0)))
        d_disc = min(depth_below, d_body) * 0.96
        corners, q, phi_q = _element(p, phi, h_disc, wedge, d_disc, d_disc)
        quads.append(_Quad(kind, names_up[k], corners, val, phi - wedge / 2))
        discs[names_up[k]] = corners.mean(axis=0)
        if sacral_l5:
            # bony bridge across the posterior part of the rudimentary disc
            frac = float(rng.uniform(0.3, 0.7))
            bc = corners.copy()
            bc[0] = corners[1] + (corners[0] - corners[1]) * frac
            bc[3] = corners[2] + (corners[3] - corners[2]) * frac
            quads.append(_Quad("bridge", "L5-S1 bridge", bc, marrow, phi))
        bw = math.radians(float(rng.uniform(0.0, 3.0)) if lumbar else float(rng.uniform(-3.0, 0.0)))
        d_lo = d_body
        if sacral_l5:
            d_lo = d_body * 1.05
            bw = math.radians(float(rng.uniform(3.0, 7.0)))  # wedge-shaped, sacral-like L5
        bc, q2, phi2 = _element(q, phi_q, h_body, bw, d_lo, d_body * (0.92 if sacral_l5 else 1.0))
        quads.append(
            _Quad("body", verts_up[k], bc, marrow * float(rng.uniform(0.92, 1.08)), phi_q - bw / 2)
        )
        p, phi, depth_below = q2, phi2, d_body
    return quads, discs


def _articular_pillar(q: _Quad, canal: float, rng: np.random.Generator, s: float) -> np.ndarray:
    """Pedicle and articular mass of one vertebra, as a parasagittal slice shows it: a bony block
    behind the upper part of the body, reaching across the canal's depth and beyond; the gaps
    between neighbouring blocks are the neural foramina and facet joints, level with the discs."""
    e = _endplate(q.centre_phi)
    a = _axis(q.centre_phi)
    lo, up = q.corners[1], q.corners[2]
    height = float(np.linalg.norm(up - lo))
    bottom = lo + a * height * float(rng.uniform(0.15, 0.35))
    top = up + a * float(rng.uniform(0.0, 3.0)) * s
    depth = canal + float(rng.uniform(8.0, 16.0)) * s
    return np.array([bottom, bottom + e * depth, top + e * depth, top])


def _canal_quad(q: _Quad, depth: float) -> np.ndarray:
    """The canal segment posterior to a body/disc quad (shares its posterior edge)."""
    lo_post, up_post = q.corners[1], q.corners[2]
    e_lo = _endplate(q.centre_phi)
    return np.array([lo_post, lo_post + e_lo * depth, up_post + e_lo * depth, up_post])


def _posterior_element(q: _Quad, canal: float, rng: np.random.Generator, s: float) -> np.ndarray:
    """Lamina + spinous process behind a vertebral body (a slanted quad)."""
    e = _endplate(q.centre_phi)
    a = _axis(q.centre_phi)
    lo, up = q.corners[1] + e * canal, q.corners[2] + e * canal
    length = float(rng.uniform(28.0, 38.0)) * s
    droop = -a * float(rng.uniform(6.0, 12.0)) * s
    return np.array(
        [
            lo + a * 3.0 * s,
            lo + e * length + droop,
            up + e * length + droop - a * 4 * s,
            up - a * 2.0 * s,
        ]
    )


def generate(
    variant: str = "normal",
    seed: int = 0,
    slices: int = 15,
    size: int = 256,
    only_slices: tuple[int, ...] | None = None,
    *,
    midline_context: int = 0,
    spacing_mm: float | None = None,
    acquisition: dict[str, float] | None = None,
    slice_thickness_mm: float | None = None,
) -> Phantom:
    """A phantom series; deterministic for (variant, seed, slices, size, spacing, acquisition).

    ``only_slices`` renders just those slice indices (others stay zero); ``midline_context`` > 0
    renders just that many slices around the one nearest the midline: training uses them for
    speed. ``spacing_mm`` fixes the pixel spacing (field of view = size x spacing) instead of
    drawing the field of view. ``acquisition`` overrides drawn acquisition parameters by name (see
    :func:`_draw_acquisition`), e.g. ``{"noise_sigma": 0.1}`` for a stress test.
    ``slice_thickness_mm`` replaces the drawn slice thickness and gap by contiguous slices of that
    thickness (a 3-D acquisition's thin partitions); the spine and the acquisition drawn for the
    seed stay the same.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if slices < 1 or size < 32:
        raise ValueError("need at least 1 slice and 32 pixels")
    vidx = VARIANTS.index(variant)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), vidx, 7919]))

    fov = float(rng.uniform(260.0, 340.0))
    if spacing_mm is not None:
        fov = float(spacing_mm) * size
    spacing = fov / size
    thickness = float(rng.choice([3.0, 3.5, 4.0, 4.5]))
    gap = float(rng.choice([0.0, 0.3, 0.5]))
    if slice_thickness_mm is not None:  # contiguous thin slices, as a 3-D acquisition's
        thickness, gap = float(slice_thickness_mm), 0.0
    slice_spacing = thickness + gap
    scale = float(rng.uniform(0.82, 1.2))
    slope = math.radians(float(rng.uniform(30.0, 45.0)))
    # promontory position: the sacrum sits low in the field, with random offsets
    v_lo = max(0.6 * fov, 185.0 * scale)
    v_hi = max(v_lo + 5.0, min(0.72 * fov, fov - 70.0))
    promontory = np.array([fov * float(rng.uniform(0.42, 0.55)), float(rng.uniform(v_lo, v_hi))])
    # ageing comes from its own stream, so the other parameters of a seed do not move with it
    ageing = _Ageing.draw(np.random.default_rng(np.random.SeedSequence([int(seed), vidx, 104729])))
    quads, disc_centres = _build_chain(rng, variant, scale, promontory, slope, ageing)
    acq = _draw_acquisition(rng)
    acq.update(acquisition or {})

    # pixel centre (col i, row j) sits at (u, v) = (i, j) * spacing in the image; the anatomy is
    # rendered on the grid rotated by ``rotation_deg`` about the image centre (patient not lined
    # up with the scanner axes)
    grid = np.arange(size, dtype=np.float32) * spacing
    img_u, img_v = np.meshgrid(grid, grid)
    rot = _Rotation(math.radians(acq["rotation_deg"]), (fov - spacing) / 2.0)
    uu, vv = rot.image_to_anatomy(img_u, img_v)
    soft = 0.6 + 0.25 * spacing

    # soft tissue layout follows the spine: centreline u(v) from the bodies
    bodies = sorted((q for q in quads if q.kind in ("body", "sacrum")), key=lambda q: q.centre[1])
    cv = np.array([b.centre[1] for b in bodies])
    cu = np.array([b.centre[0] for b in bodies])
    centre_u = np.interp(vv, cv, cu).astype(np.float32)
    post_depth = float(rng.uniform(18.0, 22.0)) * scale  # half body depth + canal
    muscle_w = float(rng.uniform(45.0, 70.0)) * scale
    fat_w = float(rng.uniform(8.0, 35.0))
    ant_w = float(rng.uniform(90.0, 160.0))
    canal_depth = float(rng.uniform(13.0, 17.0)) * scale

    t = {
        "fat": float(rng.uniform(0.6, 0.9)),
        "muscle": float(rng.uniform(0.14, 0.32)),
        "abdomen": float(rng.uniform(0.3, 0.45)),
        "csf": float(rng.uniform(0.6, 1.0)),
        "cord": float(rng.uniform(0.2, 0.5)),
        "posterior": float(rng.uniform(0.2, 0.55)),
        "cortex": float(rng.uniform(0.03, 0.1)),
    }
    # the tissue masks shared by all slices
    rel = uu - centre_u
    skin = post_depth + muscle_w + fat_w
    m_body = _sig((rel + ant_w) / 3.0) * _sig((skin - rel) / 2.0)
    m_fat = _sig((rel - post_depth - muscle_w) / 3.0)
    m_musc = _sig((rel - 5.0) / 3.0) * (1 - m_fat)
    bowel = np.zeros_like(uu)
    for _ in range(int(rng.integers(3, 9))):
        bv = float(rng.uniform(0, fov))
        bu = float(np.interp(bv, cv, cu)) - float(rng.uniform(45.0, ant_w - 10.0))
        r = float(rng.uniform(6.0, 18.0))
        bowel = np.maximum(bowel, _sig((r - np.hypot(uu - bu, vv - bv)) / 2.0))
    look = _draw_appearance(rng)
    if look["fat_saturation"]:
        t["fat"] = float(rng.uniform(0.12, 0.3))
    t["cortex"] = look["cortex"]
    abdomen = t["abdomen"] * (1.0 + look["abdomen_texture"] * _smooth_noise(rng, uu.shape, 14))
    soft_tissue = abdomen * (1 - m_musc - m_fat) + t["muscle"] * m_musc + t["fat"] * m_fat
    soft_tissue = soft_tissue * (1 - bowel) + float(rng.uniform(0.6, 0.95)) * bowel
    base = (soft_tissue * m_body).astype(np.float32)

    def mask_of(q: _Quad) -> np.ndarray:
        rounded = look["corner_mm"] if q.kind in ("body", "sacrum") else look["corner_mm"] / 3
        return _soft_quad(q.corners, uu, vv, soft, rounded)

    structure_masks = [(q, mask_of(q)) for q in quads]
    rim_px = max(1, int(round(look["rim_mm"] / spacing)))
    rims = {id(q): _rim(m, rim_px) for q, m in structure_masks if q.kind in ("body", "sacrum")}
    nuclei = {
        id(q): _soft_quad(
            q.centre + (q.corners - q.centre) * look["nucleus_fraction"], uu, vv, soft * 2, 2.0
        )
        for q in quads
        if q.kind == "disc" and look["nucleus"]
    }
    marrow_texture = 1.0 + look["marrow_texture"] * _smooth_noise(rng, uu.shape, 40)
    conus_v = float(
        np.interp(
            float(rng.uniform(0.0, 1.5)),
            [0.0, 1.5],
            [disc_centres["T12-L1"][1], disc_centres["L1-L2"][1]],
        )
    )
    sac_end_v = float(rng.uniform(0.3, 0.7))
    canal_quads = [
        _canal_quad(q, canal_depth)
        for q in quads
        if q.kind in ("body", "disc", "remnant", "bridge") or q.name in ("S1", "S2")
    ]
    canal_mask = np.zeros_like(uu)
    for cq in canal_quads:
        canal_mask = np.maximum(canal_mask, _soft_quad(cq, uu, vv, soft))
    s2 = next(q for q in quads if q.name == "S2")
    end_v = float(s2.corners[:, 1].min() + (float(np.ptp(s2.corners[:, 1])) * sac_end_v))
    canal_mask *= _sig((end_v - vv) / 3.0)
    cord_mask = canal_mask * _sig((conus_v - vv) / 2.0)
    # cord: the middle of the canal only
    cord_core = np.zeros_like(uu)
    for cq in canal_quads:
        inner = cq.copy()
        inner[0] = cq[0] + (cq[1] - cq[0]) * 0.3
        inner[1] = cq[0] + (cq[1] - cq[0]) * 0.7
        inner[3] = cq[3] + (cq[2] - cq[3]) * 0.3
        inner[2] = cq[3] + (cq[2] - cq[3]) * 0.7
        cord_core = np.maximum(cord_core, _soft_quad(inner, uu, vv, soft))
    cord_mask = cord_mask * cord_core
    post_masks = [
        _soft_quad(_posterior_element(q, canal_depth, rng, scale), uu, vv, soft)
        for q in quads
        if q.kind == "body"
    ]
    # pedicles and articular pillars: lateral to the canal, seen on parasagittal slices (own
    # random stream, so the other parameters of a seed do not move with them)
    prng = np.random.default_rng(np.random.SeedSequence([int(seed), vidx, 130363]))
    pillar_centre_mm = float(prng.uniform(11.0, 18.0)) * scale
    pillar_half_mm = float(prng.uniform(3.5, 6.0))
    pillar_masks = [
        _soft_quad(_articular_pillar(q, canal_depth, prng, scale), uu, vv, soft)
        for q in quads
        if q.kind == "body"
    ]
    marrow_level = float(np.median([q.value for q in quads if q.kind == "body"]))

    # lateral layout of slices around the midline
    jitter = float(rng.uniform(-0.5, 0.5))
    centre = (slices - 1) / 2.0
    lateral = acq["lateral_offset_mm"]
    offsets = [(k - centre + jitter) * slice_spacing + lateral for k in range(slices)]
    gamma = acq["gamma"]
    noise_sigma = acq["noise_sigma"]
    bias = _bias_field(rng, img_u / fov, img_v / fov, acq["bias_strength"])
    max_value = float(rng.uniform(900.0, 3500.0))
    truth_slice = int(np.argmin([abs(o) for o in offsets]))
    render: Sequence[int] = range(slices) if only_slices is None else only_slices
    if midline_context > 0:
        lo = min(max(0, truth_slice - midline_context // 2), max(0, slices - midline_context))
        render = range(lo, min(slices, lo + midline_context))

    volume = np.zeros((slices, size, size), dtype=np.uint16)
    for k in render:
        x = offsets[k]
        img = base.copy()
        w_canal = _fade(x, 7.5, thickness)
        w_cord = _fade(x, 4.5, thickness)
        w_bone = _fade(x, 22.0 * scale, thickness)
        w_post = _fade(x, 5.0, thickness)
        # laterally the canal is bordered by pedicles (bone)
        canal_val = t["csf"] * w_canal + t["posterior"] * (1 - w_canal)
        img = img * (1 - canal_mask) + canal_val * canal_mask
        img = img * (1 - cord_mask * w_cord) + t["cord"] * cord_mask * w_cord
        for pm in post_masks:
            a = pm * max(w_post, 0.5)
            img = img * (1 - a) + t["posterior"] * a
        w_pillar = _fade(abs(x) - pillar_centre_mm, pillar_half_mm, thickness)
        if w_pillar > 0.01:
            for pm in pillar_masks:
                a = pm * w_pillar
                img = img * (1 - a) + marrow_level * marrow_texture * a
        for q, m in structure_masks:
            if q.kind == "bridge":
                continue
            a = m * w_bone
            if q.kind in ("body", "sacrum"):
                rim = rims[id(q)]
                img = img * (1 - a) + q.value * marrow_texture * a
                img = img * (1 - rim * w_bone * 0.8) + t["cortex"] * rim * w_bone * 0.8
            elif id(q) in nuclei:
                # dark annulus fibrosus around a bright nucleus pulposus
                val = q.value * (0.85 + 0.15 * w_bone)
                img = img * (1 - a) + val * look["annulus_ratio"] * a
                an = nuclei[id(q)] * w_bone
                img = img * (1 - an) + val * an
            else:
                val = q.value if q.kind != "disc" else q.value * (0.85 + 0.15 * w_bone)
                img = img * (1 - a) + val * a
        for q, m in structure_masks:
            if q.kind == "bridge":
                a = m * w_bone
                img = img * (1 - a) + q.value * a
        img = np.clip(img, 0, None) ** gamma * bias
        img = _blur(img, acq["blur_mm"] / spacing)
        n1 = rng.normal(0, noise_sigma, img.shape)
        n2 = rng.normal(0, noise_sigma, img.shape)
        img = np.sqrt((img + n1) ** 2 + n2**2)  # Rician magnitude noise
        volume[k] = np.clip(img * max_value, 0, 65535).astype(np.uint16)

    positions = []
    origin_y = -fov / 2
    origin_z = fov / 2 + float(rng.uniform(-20, 20))
    mid_x = float(rng.uniform(-5, 5))
    for k in range(slices):
        # slice normal is -x: stepping k moves towards patient right
        positions.append((mid_x - (k - centre) * slice_spacing, origin_y, origin_z))
    names = list(_LUMBAR_DISCS) + (["S1-S2"] if variant == "lumbarization" else [])
    discs = []
    for name in names:
        u, v = disc_centres[name]
        pos = positions[truth_slice]
        u, v = rot.anatomy_to_image(float(u), float(v))
        col, row = float(u / spacing), float(v / spacing)
        discs.append(DiscTruth(name, col, row, truth_slice, (pos[0], pos[1] + u, pos[2] - v)))
    mobile = []
    for q in quads:
        if q.kind == "disc":
            u, v = rot.anatomy_to_image(*(float(c) for c in q.centre))
            pos = positions[truth_slice]
            mobile.append((pos[0], pos[1] + u, pos[2] - v))
    return Phantom(
        variant=variant,
        seed=int(seed),
        volume=volume,
        pixel_spacing=(spacing, spacing),
        slice_thickness=thickness,
        slice_spacing=slice_spacing,
        positions=positions,
        discs=discs,
        params={
            "fov_mm": fov,
            "scale": scale,
            "sacral_slope_deg": math.degrees(slope),
            "lateral_jitter": jitter,
            "slice_thickness_mm": thickness,
            **acq,
            **{f"look_{key}": value for key, value in look.items()},
        },
        mobile_discs=mobile,
    )


def _sig(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def _fade(x: float, half_width: float, thickness: float = 0.0) -> float:
    """How much of a structure of lateral half-width ``half_width`` a slice at lateral offset
    ``x`` holds: 1 inside, fading to 0 over ~4 mm beyond, averaged over the slice thickness
    (partial volume)."""
    offsets = np.linspace(-thickness / 2, thickness / 2, 5) if thickness > 0 else np.zeros(1)
    return float(np.mean(1.0 / (1.0 + np.exp((np.abs(x + offsets) - half_width) / 1.5))))


def _draw_appearance(rng: np.random.Generator) -> dict[str, float]:
    """How tissue looks on this scanner and patient (contrast and texture, not anatomy): discs
    uniformly bright or a bright nucleus in a darker annulus, rounded vertebral corners, cortical
    rim width and darkness, marrow and bowel texture, fat saturation."""
    return {
        "nucleus": float(rng.random() < 0.6),
        "nucleus_fraction": float(rng.uniform(0.45, 0.8)),
        "annulus_ratio": float(rng.uniform(0.2, 0.75)),
        "corner_mm": float(rng.uniform(0.0, 7.0)),
        "rim_mm": float(rng.uniform(0.4, 2.0)),
        "cortex": float(rng.uniform(0.0, 0.7)),
        "marrow_texture": float(rng.uniform(0.0, 0.2)),
        "abdomen_texture": float(rng.uniform(0.0, 0.6)),
        "fat_saturation": float(rng.random() < 0.2),
    }


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Smooth zero-mean texture in about [-1, 1]: ``cells`` x ``cells`` random values, bicubic."""
    import torch
    import torch.nn.functional as F

    coarse = torch.from_numpy(rng.uniform(-1.0, 1.0, (1, 1, cells, cells)).astype(np.float32))
    fine = F.interpolate(coarse, size=tuple(shape), mode="bicubic", align_corners=False)
    return fine[0, 0].numpy()


def _rim(mask: np.ndarray, width_px: int) -> np.ndarray:
    """The outer ``width_px`` pixels of a soft mask (the cortical bone of a vertebra)."""
    inner = mask
    for _ in range(width_px):
        inner = _shrink(inner)
    return mask - inner


def _draw_acquisition(rng: np.random.Generator) -> dict[str, float]:
    """Acquisition and positioning parameters a real site varies (physics-like ranges).

    Noise is the Gaussian sigma of each quadrature channel before the magnitude (Rician),
    relative to tissue values of ~0..1, drawn log-uniform from SNR ~100 down to ~8; the bias
    field strength scales a smooth coil-sensitivity field; blur is the full width of a box
    low-pass in mm (thick partitions, low acquisition matrix interpolated by the scanner);
    gamma a contrast curve; rotation the patient's in-plane tilt; lateral offset the distance
    of the slice stack's centre from the midline.
    """
    return {
        "noise_sigma": float(math.exp(rng.uniform(math.log(0.008), math.log(0.12)))),
        "bias_strength": float(rng.uniform(0.0, 1.6)),
        "blur_mm": float(rng.choice([0.0, 0.0, rng.uniform(0.5, 2.5)])),
        "gamma": float(math.exp(rng.uniform(math.log(0.65), math.log(1.5)))),
        "rotation_deg": float(rng.uniform(-12.0, 12.0)),
        "lateral_offset_mm": float(rng.uniform(-8.0, 8.0)),
    }


@dataclass(frozen=True)
class _Rotation:
    """In-plane rotation of the anatomy about the image centre (mm coordinates)."""

    angle: float
    centre: float

    def image_to_anatomy(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        du, dv = u - self.centre, v - self.centre
        return (
            (c * du - s * dv + self.centre).astype(np.float32),
            (s * du + c * dv + self.centre).astype(np.float32),
        )

    def anatomy_to_image(self, u: float, v: float) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        du, dv = u - self.centre, v - self.centre
        return c * du + s * dv + self.centre, -s * du + c * dv + self.centre


def _blur(img: np.ndarray, width_px: float) -> np.ndarray:
    """Separable box low-pass of about ``width_px`` pixels (no-op below 1.5 px)."""
    n = int(round(width_px))
    if n < 2:
        return img
    kernel = np.ones(n, dtype=np.float64) / n
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, img)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, out)


def _shrink(mask: np.ndarray) -> np.ndarray:
    """A one-pixel erosion of a soft mask (min over the 4-neighbourhood)."""
    out = mask.copy()
    out[1:, :] = np.minimum(out[1:, :], mask[:-1, :])
    out[:-1, :] = np.minimum(out[:-1, :], mask[1:, :])
    out[:, 1:] = np.minimum(out[:, 1:], mask[:, :-1])
    out[:, :-1] = np.minimum(out[:, :-1], mask[:, 1:])
    return out


def _bias_field(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field: brighter posteriorly + random quadratic."""
    c = rng.uniform(-0.25, 0.25, size=5) * strength
    post = float(rng.uniform(0.0, 0.5)) * strength
    field_ = (
        1.0 + post * (x - 0.5) + c[0] * (y - 0.5) + c[1] * (x - 0.5) ** 2 + c[2] * (y - 0.5) ** 2
    )
    field_ += c[3] * (x - 0.5) * (y - 0.5)
    return np.clip(field_, 0.3, 2.0).astype(np.float32)
