"""Small server-side SVG charts: a histogram, stacked bars, a scatter over time.

Pure functions: numbers in, one ``<svg>`` string out (text escaped). No JavaScript and no chart
library: the page is readable with scripts off, nothing is fetched from a CDN, and a chart is as
testable as any string. Each chart has a ``<title>``/``<desc>`` for screen readers, and the page
puts the same numbers in a table beside it. Colours are the Okabe-Ito palette (safe for the
common colour-vision deficiencies); the threshold is a dashed line, not a colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 28, 44
BAR = "#0072B2"
MARK = "#D55E00"
INK = "#1a1a1a"
GRID = "#d0d0d0"
#: Outcome colours (Okabe-Ito).
COLOURS = {
    "suspected": "#D55E00",
    "needs_review": "#E69F00",
    "not_suspected": "#009E73",
    "not_assessable": "#56B4E9",
    "not_applicable": "#999999",
    "failed": "#CC79A7",
    "pending": "#0072B2",
}


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (1, 2, 5 × a power of ten apart; whole numbers
    at least 1 apart when ``integer``, for counts)."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, step)
    ticks = [round(math.floor(lo / step) * step, 10)]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


def _open(title: str, desc: str, ident: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{ident}-t {ident}-d">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(desc)}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]


def _empty(title: str, ident: str) -> str:
    parts = _open(title, "no data yet", ident)
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="{INK}" '
        f'font-size="14">No data yet</text></svg>'
    )
    return "".join(parts)


def _y_axis(parts: list[str], ticks: Sequence[float], y_of: Callable[[float], float]) -> None:
    for t in ticks:
        y = y_of(t)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{INK}">{_fmt(t)}</text>'
        )


def _x_label(parts: list[str], text: str) -> None:
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle" '
        f'font-size="12" fill="{INK}">{escape(text)}</text>'
    )


def histogram(
    values: Sequence[float],
    *,
    title: str,
    x_label: str,
    ident: str,
    bins: int = 20,
    marker: float | None = None,
    marker_label: str = "",
    from_zero: bool = False,
) -> str:
    """Counts of ``values`` in ``bins`` equal bins; ``marker`` draws a dashed vertical line;
    ``from_zero`` starts the axis at 0 (durations)."""
    if not values:
        return _empty(title, ident)
    lo, hi = (0.0 if from_zero else min(values)), max(values)
    if marker is not None:
        lo, hi = min(lo, marker), max(hi, marker)
    x_ticks = nice_ticks(lo, hi if hi > lo else lo + 1.0)
    lo, hi = x_ticks[0], x_ticks[-1]
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    y_ticks = nice_ticks(0, max(counts), 4, integer=True)
    top = y_ticks[-1] or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(v: float) -> float:
        return LEFT + (v - lo) / (hi - lo) * plot_w

    def y_of(n: float) -> float:
        return TOP + plot_h - n / top * plot_h

    desc = f"{len(values)} values from {_fmt(min(values))} to {_fmt(max(values))}"
    if marker is not None:
        desc += f"; {marker_label or 'marker'} at {_fmt(marker)}"
    parts = _open(title, desc, ident)
    _y_axis(parts, y_ticks, y_of)
    for i, n in enumerate(counts):
        if n:
            x0, x1 = x_of(lo + i * width), x_of(lo + (i + 1) * width)
            parts.append(
                f'<rect class="bar" x="{x0 + 1:.1f}" y="{y_of(n):.1f}" width="{x1 - x0 - 2:.1f}" '
                f'height="{y_of(0) - y_of(n):.1f}" fill="{BAR}">'
                f"<title>{_fmt(lo + i * width)} to {_fmt(lo + (i + 1) * width)}: {n}</title></rect>"
            )
    for t in x_ticks:
        parts.append(
            f'<text x="{x_of(t):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
            f'font-size="11" fill="{INK}">{_fmt(t)}</text>'
        )
    if marker is not None:
        x = x_of(marker)
        parts.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 4}" y2="{TOP + plot_h}" '
            f'stroke="{MARK}" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{x + 4:.1f}" y="{TOP - 8}" font-size="11" fill="{INK}">'
            f"{escape(marker_label)} {_fmt(marker)}</text>"
        )
    _x_label(parts, x_label)
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(
    buckets: Sequence[tuple[str, dict[str, int]]],
    series: Sequence[tuple[str, str]],
    *,
    title: str,
    x_label: str,
    ident: str,
    label_every: int = 3,
) -> str:
    """One bar per bucket ``(label, {series key: count})``, stacked in ``series`` order
    (``(key, legend label)``), with a legend of the series that occur."""
    totals = [sum(counts.values()) for _, counts in buckets]
    if not buckets or not any(totals):
        return _empty(title, ident)
    y_ticks = nice_ticks(0, max(totals), 4, integer=True)
    top = y_ticks[-1] or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(buckets)

    def y_of(n: float) -> float:
        return TOP + plot_h - n / top * plot_h

    desc = f"{sum(totals)} studies in {len(buckets)} bars"
    parts = _open(title, desc, ident)
    _y_axis(parts, y_ticks, y_of)
    for i, (label, counts) in enumerate(buckets):
        x = LEFT + i * slot
        base = 0
        for key, name in series:
            n = counts.get(key, 0)
            if not n:
                continue
            parts.append(
                f'<rect class="bar" x="{x + 1:.1f}" y="{y_of(base + n):.1f}" '
                f'width="{max(slot - 2, 1):.1f}" height="{y_of(base) - y_of(base + n):.1f}" '
                f'fill="{COLOURS.get(key, BAR)}"><title>{escape(label)}: {n} '
                f"{escape(name)}</title></rect>"
            )
            base += n
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                f'font-size="11" fill="{INK}">{escape(label)}</text>'
            )
    present = [(k, n) for k, n in series if any(c.get(k) for _, c in buckets)]
    x = LEFT
    for key, name in present:
        parts.append(
            f'<rect x="{x}" y="8" width="10" height="10" fill="{COLOURS.get(key, BAR)}"/>'
            f'<text x="{x + 14}" y="17" font-size="11" fill="{INK}">{escape(name)}</text>'
        )
        x += 22 + 7 * len(name)
    _x_label(parts, x_label)
    parts.append("</svg>")
    return "".join(parts)


def scatter(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str,
    ident: str,
    x_format: Callable[[float], str],
    threshold: float | None = None,
) -> str:
    """``(x, y)`` dots (x = time) with a dashed horizontal ``threshold`` line."""
    if not points:
        return _empty(title, ident)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + ([threshold] if threshold is not None else [])
    y_ticks = nice_ticks(min(ys), max(ys), 4)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 1800, x_hi + 1800
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(v: float) -> float:
        return LEFT + 6 + (v - x_lo) / (x_hi - x_lo) * (plot_w - 12)

    def y_of(v: float) -> float:
        return TOP + plot_h - (v - y_lo) / (y_hi - y_lo or 1) * plot_h

    desc = f"{len(points)} results from {x_format(x_lo)} to {x_format(x_hi)}"
    parts = _open(title, desc, ident)
    _y_axis(parts, y_ticks, y_of)
    if threshold is not None:
        y = y_of(threshold)
        parts.append(
            f'<line class="marker" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{MARK}" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end" font-size="11" '
            f'fill="{INK}">threshold {_fmt(threshold)}</text>'
        )
    for x, y in points:
        above = threshold is not None and y > threshold
        parts.append(
            f'<circle class="dot" cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="4" '
            f'fill="{MARK if above else BAR}" fill-opacity="0.75">'
            f"<title>{escape(x_format(x))}: {_fmt(y)}</title></circle>"
        )
    for x, anchor in ((x_lo, "start"), (x_hi, "end")):
        parts.append(
            f'<text x="{x_of(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="{anchor}" '
            f'font-size="11" fill="{INK}">{escape(x_format(x))}</text>'
        )
    _x_label(parts, x_label)
    parts.append("</svg>")
    return "".join(parts)
