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

    @property
    def orientation(self) -> tuple[float, ...]:
        return ROW_DIRECTION + COLUMN_DIRECTION

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


def _soft_quad(corners: np.ndarray, uu: np.ndarray, vv: np.ndarray, soft: float) -> np.ndarray:
    """Soft mask of a convex quadrilateral: sigmoid of the approx. signed edge distance."""
    c = corners
    # orientation-independent: make the signed distance positive outside
    area = 0.0
    for i in range(4):
        a, b = c[i], c[(i + 1) % 4]
        area += a[0] * b[1] - b[0] * a[1]
    sign = 1.0 if area > 0 else -1.0
    sd = np.full(uu.shape, -np.inf, dtype=np.float32)
    for i in range(4):
        a, b = c[i], c[(i + 1) % 4]
        edge = b - a
        length = float(np.hypot(edge[0], edge[1])) or 1.0
        # outward normal for a counter-clockwise polygon (area > 0) is (dy, -dx)
        nx, ny = sign * edge[1] / length, -sign * edge[0] / length
        d = (uu - a[0]) * nx + (vv - a[1]) * ny
        np.maximum(sd, d, out=sd)
    return 1.0 / (1.0 + np.exp(np.clip(sd / soft, -30, 30)))


# ------------------------------------------------------------------------------------------ builder
def _build_chain(
    rng: np.random.Generator, variant: str, scale: float, promontory: np.ndarray, slope: float
) -> tuple[list[_Quad], dict[str, np.ndarray]]:
    """All bone/disc quads and the disc centres, from the sacrum upward and downward."""
    quads: list[_Quad] = []
    discs: dict[str, np.ndarray] = {}
    s = scale
    marrow = float(rng.uniform(0.38, 0.5))
    disc_val = float(rng.uniform(0.75, 0.95))

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
                val = float(rng.uniform(0.5, 0.62))
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
        if rng.random() < 0.12 and k < 6:  # mild degeneration, height preserved
            val *= float(rng.uniform(0.6, 0.8))
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
) -> Phantom:
    """A phantom series; deterministic for (variant, seed, slices, size).

    ``only_slices`` renders just those slice indices (others stay zero): training uses it for speed.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if slices < 1 or size < 32:
        raise ValueError("need at least 1 slice and 32 pixels")
    vidx = VARIANTS.index(variant)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), vidx, 7919]))

    fov = float(rng.uniform(260.0, 340.0))
    spacing = fov / size
    thickness = float(rng.choice([3.0, 3.5, 4.0, 4.5]))
    gap = float(rng.choice([0.0, 0.3, 0.5]))
    slice_spacing = thickness + gap
    scale = float(rng.uniform(0.85, 1.15))
    slope = math.radians(float(rng.uniform(30.0, 45.0)))
    # promontory position: the sacrum sits low in the field, with random offsets
    v_lo = max(0.6 * fov, 185.0 * scale)
    v_hi = max(v_lo + 5.0, min(0.72 * fov, fov - 70.0))
    promontory = np.array([fov * float(rng.uniform(0.42, 0.55)), float(rng.uniform(v_lo, v_hi))])
    quads, disc_centres = _build_chain(rng, variant, scale, promontory, slope)

    # pixel centre (col i, row j) sits at (u, v) = (i, j) * spacing
    grid = np.arange(size, dtype=np.float32) * spacing
    uu, vv = np.meshgrid(grid, grid)
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
        "fat": float(rng.uniform(0.7, 0.85)),
        "muscle": float(rng.uniform(0.18, 0.3)),
        "abdomen": float(rng.uniform(0.3, 0.45)),
        "csf": float(rng.uniform(0.85, 1.0)),
        "cord": float(rng.uniform(0.3, 0.42)),
        "posterior": float(rng.uniform(0.3, 0.42)),
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
    soft_tissue = t["abdomen"] * (1 - m_musc - m_fat) + t["muscle"] * m_musc + t["fat"] * m_fat
    soft_tissue = soft_tissue * (1 - bowel) + float(rng.uniform(0.6, 0.95)) * bowel
    base = (soft_tissue * m_body).astype(np.float32)

    structure_masks = [(q, _soft_quad(q.corners, uu, vv, soft)) for q in quads]
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

    # lateral layout of slices around the midline
    jitter = float(rng.uniform(-0.5, 0.5))
    centre = (slices - 1) / 2.0
    offsets = [(k - centre + jitter) * slice_spacing for k in range(slices)]
    gamma = float(rng.uniform(0.8, 1.25))
    noise_sigma = float(rng.uniform(0.01, 0.045))
    bias = _bias_field(rng, uu / fov, vv / fov)
    max_value = float(rng.uniform(900.0, 3500.0))
    render = range(slices) if only_slices is None else only_slices

    volume = np.zeros((slices, size, size), dtype=np.uint16)
    for k in render:
        x = abs(offsets[k])
        img = base.copy()
        w_canal = _fade(x, 7.5)
        w_cord = _fade(x, 4.5)
        w_bone = _fade(x, 22.0 * scale)
        w_post = _fade(x, 5.0)
        # laterally the canal is bordered by pedicles (bone)
        canal_val = t["csf"] * w_canal + t["posterior"] * (1 - w_canal)
        img = img * (1 - canal_mask) + canal_val * canal_mask
        img = img * (1 - cord_mask * w_cord) + t["cord"] * cord_mask * w_cord
        for pm in post_masks:
            a = pm * max(w_post, 0.5)
            img = img * (1 - a) + t["posterior"] * a
        for q, m in structure_masks:
            if q.kind == "bridge":
                continue
            a = m * w_bone
            if q.kind in ("body", "sacrum"):
                rim = m - _shrink(m)
                img = img * (1 - a) + q.value * a
                img = img * (1 - rim * w_bone * 0.8) + t["cortex"] * rim * w_bone * 0.8
            else:
                val = q.value if q.kind != "disc" else q.value * (0.85 + 0.15 * w_bone)
                img = img * (1 - a) + val * a
        for q, m in structure_masks:
            if q.kind == "bridge":
                a = m * w_bone
                img = img * (1 - a) + q.value * a
        img = np.clip(img, 0, None) ** gamma * bias
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
    truth_slice = int(np.argmin([abs(o) for o in offsets]))
    names = list(_LUMBAR_DISCS) + (["S1-S2"] if variant == "lumbarization" else [])
    discs = []
    for name in names:
        u, v = disc_centres[name]
        col, row = float(u / spacing), float(v / spacing)
        pos = positions[truth_slice]
        discs.append(DiscTruth(name, col, row, truth_slice, (pos[0], pos[1] + u, pos[2] - v)))
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
            "noise_sigma": noise_sigma,
            "gamma": gamma,
            "lateral_jitter": jitter,
        },
    )


def _sig(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def _fade(x: float, half_width: float) -> float:
    """1 inside the lateral half-width, fading to 0 over ~4 mm beyond it."""
    return float(1.0 / (1.0 + math.exp((x - half_width) / 1.5)))


def _shrink(mask: np.ndarray) -> np.ndarray:
    """A one-pixel erosion of a soft mask (min over the 4-neighbourhood)."""
    out = mask.copy()
    out[1:, :] = np.minimum(out[1:, :], mask[:-1, :])
    out[:-1, :] = np.minimum(out[:-1, :], mask[1:, :])
    out[:, 1:] = np.minimum(out[:, 1:], mask[:, :-1])
    out[:, :-1] = np.minimum(out[:, :-1], mask[:, 1:])
    return out


def _bias_field(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field: brighter posteriorly + random quadratic."""
    c = rng.uniform(-0.25, 0.25, size=5)
    post = float(rng.uniform(0.0, 0.5))
    field_ = (
        1.0 + post * (x - 0.5) + c[0] * (y - 0.5) + c[1] * (x - 0.5) ** 2 + c[2] * (y - 0.5) ** 2
    )
    field_ += c[3] * (x - 0.5) * (y - 0.5)
    return np.clip(field_, 0.4, 1.8).astype(np.float32)
