"""Inline SVG drawn on the server: the TIS/Hb trend over time and the probability bar chart.

No script and no chart library: the SVG is markup with every number also written as text (and
the trend again as a table beside it), so the charts read without colour, without sight of the
picture, and with the stylesheet's own colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

_WIDTH, _HEIGHT = 560, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 48, 20, 36


@dataclass(frozen=True)
class TrendPoint:
    when: datetime
    value: float
    label: str  # "11.2 g/dL" as the table shows it
    link: str | None = None  # "Observation/7"


def trend_svg(title: str, points: list[TrendPoint], *, low: float, high: float, chart_id: str) -> Markup:
    """A line chart of ``points`` (oldest first) between ``low`` and ``high`` on the value axis."""
    if not points:
        return Markup("")
    values = [p.value for p in points]
    low, high = min(low, *values), max(high, *values)
    span = (high - low) or 1.0
    first, last = points[0].when.timestamp(), points[-1].when.timestamp()
    width = _WIDTH - _LEFT - _RIGHT
    height = _HEIGHT - _TOP - _BOTTOM

    def x(point: TrendPoint) -> float:
        if last == first:
            return _LEFT + width / 2
        return _LEFT + width * (point.when.timestamp() - first) / (last - first)

    def y(value: float) -> float:
        return _TOP + height * (1 - (value - low) / span)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(_describe(points))}</desc>',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + height}" x2="{_LEFT + width}" y2="{_TOP + height}"/>',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + height}"/>',
    ]
    for tick in (low, (low + high) / 2, high):
        parts.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
            f'<line class="grid" x1="{_LEFT}" y1="{y(tick):.1f}" x2="{_LEFT + width}" y2="{y(tick):.1f}"/>'
        )
    if len(points) > 1:
        line = " ".join(f"{x(p):.1f},{y(p.value):.1f}" for p in points)
        parts.append(f'<polyline class="series" points="{line}"/>')
    for point in points:
        cx, cy = x(point), y(point.value)
        # A square marker with the value written beside it: no colour needed to read it.
        parts.append(
            f'<g class="point"><rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8"/>'
            f'<text x="{cx:.1f}" y="{cy - 8:.1f}" text-anchor="middle">{escape(_short(point.value))}</text>'
            f"<title>{escape(point.when.date().isoformat())}: {escape(point.label)}</title></g>"
        )
    for point in (points[0], points[-1]) if len(points) > 1 else (points[0],):
        parts.append(
            f'<text class="tick" x="{x(point):.1f}" y="{_HEIGHT - 12}" text-anchor="middle">'
            f"{escape(point.when.date().isoformat())}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text and attribute above is escaped or a number)


def bars_svg(title: str, bars: list[tuple[str, float]], *, chart_id: str) -> Markup:
    """A horizontal bar per class (probability 0–1), its percentage written at the bar's end."""
    if not bars:
        return Markup("")
    row, label_width, bar_width = 26, 230, 240
    total_height = row * len(bars) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" viewBox="0 0 {label_width + bar_width + 70} '
        f'{total_height}" role="img" aria-labelledby="{chart_id}-title">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]
    for index, (label, probability) in enumerate(bars):
        top = 4 + index * row
        length = max(0.0, min(1.0, probability)) * bar_width
        parts.append(
            f'<text x="0" y="{top + 16}">{escape(label[:40])}</text>'
            f'<rect class="track" x="{label_width}" y="{top + 4}" width="{bar_width}" height="14"/>'
            f'<rect class="bar" x="{label_width}" y="{top + 4}" width="{length:.1f}" height="14"/>'
            f'<text x="{label_width + bar_width + 6}" y="{top + 16}">{probability * 100:.0f} %</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text and attribute above is escaped or a number)


def _short(value: float) -> str:
    return f"{value:.1f}" if value % 1 else f"{value:.0f}"


def _describe(points: list[TrendPoint]) -> str:
    shown = "; ".join(f"{p.when.date().isoformat()}: {p.label}" for p in points[-12:])
    return f"{len(points)} result(s), oldest first. {shown}"
