"""Draw the level markers and their uncertainty on a slice (Pillow): pure image in, RGB array out.

Marker radius grows with the level's entropy, its colour follows the peak confidence (green ≥ 0.7,
amber ≥ 0.4, red below); a banner states the study outcome ("not assessable" with its reason when
the screen cannot be trusted) and that this is research output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scp_node.result import LevelFinding, StudyResult

MIN_SIZE = 512
#: Height of one line of the 14 px font, and the least vertical distance between two labels.
LINE_HEIGHT = 16
#: A dark outline keeps coloured text legible on bright bone, fat or fluid.
_OUTLINE: dict[str, Any] = {"stroke_width": 2, "stroke_fill": (0, 0, 0)}
GREEN, AMBER, RED, WHITE = (40, 220, 90), (255, 190, 40), (255, 60, 60), (255, 255, 255)


def to_uint8(
    pixels: np.ndarray, center: float | None = None, width: float | None = None
) -> np.ndarray:
    """Window ``pixels`` to 8 bits (VOI window if given, else the 1st-99th percentile)."""
    data = pixels.astype(np.float64)
    if center is not None and width is not None and width > 1:
        low, high = center - width / 2, center + width / 2
    else:
        low, high = np.percentile(data, [1, 99]) if data.size else (0.0, 1.0)
    if high <= low:
        high = low + 1
    return (np.clip((data - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def confidence_colour(confidence: float) -> tuple[int, int, int]:
    if confidence >= 0.7:
        return GREEN
    return AMBER if confidence >= 0.4 else RED


def scale_for(rows: int, cols: int) -> int:
    """Integer upscale so the shorter side is at least :data:`MIN_SIZE` (text stays legible)."""
    return max(1, -(-MIN_SIZE // max(1, min(rows, cols))))


def draw_overlay(gray: np.ndarray, result: StudyResult, levels: list[LevelFinding]) -> np.ndarray:
    """An RGB uint8 array: ``gray`` upscaled with markers for ``levels`` and a summary banner."""
    scale = scale_for(*gray.shape)
    image = Image.fromarray(gray).convert("RGB")
    image = image.resize((gray.shape[1] * scale, gray.shape[0] * scale), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    markers = []
    for finding in levels:
        col, row = finding.pixel_xy
        x, y = (col + 0.5) * scale, (row + 0.5) * scale  # pixel centre → canvas coordinates
        radius = 4 + 3 * max(0.0, finding.entropy)
        colour = confidence_colour(finding.peak_confidence)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=2)
        draw.line((x - 3, y, x + 3, y), fill=colour)
        draw.line((x, y - 3, x, y + 3), fill=colour)
        label = f"{finding.level} c={finding.peak_confidence:.2f} H={finding.entropy:.2f} bit"
        markers.append(((x, y, radius), label, colour))
    widths = [font.getlength(label) for _, label, _ in markers]
    places = label_positions([anchor for anchor, _, _ in markers], widths, image.width)
    for ((x, y, _), label, colour), (lx, ly), width in zip(markers, places, widths, strict=True):
        if abs(ly - (y - LINE_HEIGHT / 2)) > 2:  # moved off its marker's row: a leader line
            near = lx if lx > x else lx + width
            draw.line((x, y, near, ly + LINE_HEIGHT / 2), fill=colour, width=1)
        draw.text((lx, ly), label, fill=colour, font=font, **_OUTLINE)
    lines = banner_lines(result, lambda text: font.getlength(text) <= image.width - 16)
    for i, (text, colour) in enumerate(lines):
        draw.text((8, 6 + 18 * i), text, fill=colour, font=font, **_OUTLINE)
    return np.asarray(image, dtype=np.uint8)


def label_positions(
    markers: Sequence[tuple[float, float, float]], widths: Sequence[float], canvas_width: int
) -> list[tuple[float, float]]:
    """Top-left corner of each marker's label, markers given as (x, y, radius) on the canvas:
    beside the marker, on its right unless the label would leave the canvas there, and moved
    down, top to bottom, just enough that no two labels on one side overlap (the L4-L5 and
    L5-S1 markers of a fused or thin junction lie closer than a line of text)."""
    places: list[tuple[float, float]] = [(0.0, 0.0)] * len(markers)
    lowest: dict[bool, float] = {}  # side (True = right) -> bottom of the last label placed
    for i in sorted(range(len(markers)), key=lambda k: markers[k][1]):
        x, y, radius = markers[i]
        right = x + radius + 4 + widths[i] <= canvas_width - 2
        lx = x + radius + 4 if right else max(2.0, x - radius - 4 - widths[i])
        ly = max(y - LINE_HEIGHT / 2, lowest.get(right, -LINE_HEIGHT))
        lowest[right] = ly + LINE_HEIGHT
        places[i] = (lx, ly)
    return places


def wrapped(text: str, fits: Callable[[str], bool], max_lines: int = 3) -> list[str]:
    """``text`` broken at spaces into lines that ``fits`` accepts, at most ``max_lines`` (the
    last one ends in "..." when the text is longer); a word too long for a line is cut."""
    lines: list[str] = []
    words = text.split()
    while words and len(lines) < max_lines:
        line = words.pop(0)
        if not fits(line):  # one word longer than a line: cut it, the rest goes on
            cut = len(line) - 1
            while cut > 1 and not fits(line[:cut]):
                cut -= 1
            words.insert(0, line[cut:])
            line = line[:cut]
        while words and fits(f"{line} {words[0]}"):
            line = f"{line} {words.pop(0)}"
        lines.append(line)
    if words:
        last = lines[-1]
        while last and not fits(last + "..."):
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines


def banner_lines(
    result: StudyResult, fits: Callable[[str], bool] = lambda text: len(text) <= 90
) -> list[tuple[str, tuple[int, int, int]]]:
    """The banner's (text, colour) lines: research notice, verdict (or "NOT ASSESSABLE" with the
    reason, wrapped into lines that ``fits`` accepts), NEEDS REVIEW."""
    lines = [("AI LSTV screen - research use only, not for diagnosis", WHITE)]
    if not result.assessable:
        reason = result.not_assessable_reason or "no reason given"
        lines.append(("LSTV screen NOT ASSESSABLE", AMBER))
        lines.extend((line, AMBER) for line in wrapped(reason, fits))
    elif result.lstv_suspected:
        lines.append(
            (
                f"LSTV SUSPECTED (score {result.lstv_score:.2f}, "
                f"threshold {result.lstv_threshold:.2f})",
                RED,
            )
        )
    else:
        lines.append(
            (
                f"LSTV not suspected (score {result.lstv_score:.2f}, "
                f"threshold {result.lstv_threshold:.2f})",
                WHITE,
            )
        )
        if result.held_back:
            lines.append(("score over the threshold, but no anatomical sign of LSTV", AMBER))
    if result.needs_review:
        lines.append(("NEEDS REVIEW", RED))
    return lines
