"""Draw the level markers and their uncertainty on a slice (Pillow): pure image in, RGB array out.

Marker radius grows with the level's entropy, its colour follows the peak confidence (green ≥ 0.7,
amber ≥ 0.4, red below); a banner states the study outcome ("not assessable" with its reason when
the screen cannot be trusted) and that this is research output.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scp_node.result import LevelFinding, StudyResult

MIN_SIZE = 512
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
    for finding in levels:
        col, row = finding.pixel_xy
        x, y = (col + 0.5) * scale, (row + 0.5) * scale  # pixel centre → canvas coordinates
        radius = 4 + 3 * max(0.0, finding.entropy)
        colour = confidence_colour(finding.peak_confidence)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=2)
        draw.line((x - 3, y, x + 3, y), fill=colour)
        draw.line((x, y - 3, x, y + 3), fill=colour)
        label = f"{finding.level} c={finding.peak_confidence:.2f} H={finding.entropy:.2f} bit"
        draw.text((x + radius + 4, y - 7), label, fill=colour, font=font)
    for i, (text, colour) in enumerate(banner_lines(result)):
        draw.text(
            (8, 6 + 18 * i), text, fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0)
        )
    return np.asarray(image, dtype=np.uint8)


def banner_lines(result: StudyResult) -> list[tuple[str, tuple[int, int, int]]]:
    """The banner's (text, colour) lines: research notice, verdict (or "NOT ASSESSABLE" with the
    reason), NEEDS REVIEW."""
    lines = [("AI LSTV screen - research use only, not for diagnosis", WHITE)]
    if not result.assessable:
        reason = result.not_assessable_reason or "no reason given"
        lines.append(("LSTV screen NOT ASSESSABLE", AMBER))
        lines.append((reason if len(reason) <= 90 else reason[:87] + "...", AMBER))
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
    if result.needs_review:
        lines.append(("NEEDS REVIEW", RED))
    return lines
