"""Inline SVG drawn on the server: the TIS/Hb trend over time and one probability bar.

No script and no chart library: the SVG is markup with every number also written as text (and
the trend again as a table beside it), so the charts read without colour, without sight of the
picture, and with the stylesheet's own colours. A result without a conclusion (the model
abstained, or the analysis was not performed) is never a value on the chart: it is a hollow grey
ring on the time axis, left out of the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

from plugin.clinician.wording import day

_WIDTH, _HEIGHT = 560, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 48, 20, 36
_BAR_WIDTH, _BAR_HEIGHT = 120, 14


@dataclass(frozen=True)
class TrendPoint:
    when: datetime
    value: float | None  # None: no conclusion (abstained / not performed)
    label: str  # "11.2 g/dL", or "No conclusion — the model abstained", as the table shows it
    link: str | None = None  # "Observation/7"

    @property
    def conclusive(self) -> bool:
        return self.value is not None


def trend_svg(title: str, points: list[TrendPoint], *, low: float, high: float, chart_id: str) -> Markup:
    """A line chart of ``points`` (oldest first) between ``low`` and ``high`` on the value axis."""
    if not points:
        return Markup("")
    values = [p.value for p in points if p.value is not None]
    low, high = min(low, *values) if values else low, max(high, *values) if values else high
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
    conclusive = [p for p in points if p.value is not None]
    if len(conclusive) > 1:
        line = " ".join(f"{x(p):.1f},{y(p.value):.1f}" for p in conclusive if p.value is not None)
        parts.append(f'<polyline class="series" points="{line}"/>')
    for point in points:
        tooltip = f"<title>{escape(day(point.when) or '')}: {escape(point.label)}</title>"
        if point.value is None:
            # On the time axis, hollow and grey: "an analysis happened here", never "a value".
            parts.append(
                f'<g class="point no-conclusion"><circle cx="{x(point):.1f}" cy="{_TOP + height:.1f}" r="5"/>'
                f"{tooltip}</g>"
            )
            continue
        cx, cy = x(point), y(point.value)
        # A square marker with the value written beside it: no colour needed to read it.
        parts.append(
            f'<g class="point"><rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8"/>'
            f'<text x="{cx:.1f}" y="{cy - 8:.1f}" text-anchor="middle">{escape(_short(point.value))}</text>'
            f"{tooltip}</g>"
        )
    for point in (points[0], points[-1]) if len(points) > 1 else (points[0],):
        parts.append(
            f'<text class="tick" x="{x(point):.1f}" y="{_HEIGHT - 12}" text-anchor="middle">'
            f"{escape(day(point.when) or '')}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text and attribute above is escaped or a number)


def bar_svg(probability: float) -> Markup:
    """One probability as a bar (decoration: the percentage is written beside it as text)."""
    length = max(0.0, min(1.0, probability)) * _BAR_WIDTH
    return Markup(  # noqa: S704  (numbers only)
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bar" viewBox="0 0 {_BAR_WIDTH} {_BAR_HEIGHT}" '
        f'width="{_BAR_WIDTH}" height="{_BAR_HEIGHT}" aria-hidden="true" focusable="false">'
        f'<rect class="track" x="0" y="0" width="{_BAR_WIDTH}" height="{_BAR_HEIGHT}"/>'
        f'<rect class="fill" x="0" y="0" width="{length:.1f}" height="{_BAR_HEIGHT}"/></svg>'
    )


def _short(value: float) -> str:
    return f"{value:.1f}" if value % 1 else f"{value:.0f}"


def _describe(points: list[TrendPoint]) -> str:
    shown = "; ".join(f"{day(p.when)}: {p.label}" for p in points[-12:])
    return f"{len(points)} result(s), oldest first. {shown}"
