"""The benchmark's chart: an SVG of horizontal bars, written beside docs/results/bench.md.

Plain SVG text, so the chart needs no plotting library in the image or the dev environment
and reads on GitHub as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

_WIDTH = 900
_LABEL = 420  # room for the labels left of the bars
_BAR = 18
_GAP = 8
_COLOURS = ("#4c78a8", "#f58518")


@dataclass(frozen=True)
class Panel:
    """Bars of one measure; each row has one value per series (None: not measured)."""

    title: str
    unit: str
    series: Sequence[str]
    rows: Sequence[tuple[str, Sequence[float | None]]]


def render_svg(panels: Sequence[Panel]) -> str:
    parts: list[str] = []
    y = 10
    for panel in panels:
        y = _panel(parts, panel, y) + 20
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{y}" '
        'font-family="sans-serif" font-size="12">'
    )
    return (
        "\n".join([header, f'<rect width="{_WIDTH}" height="{y}" fill="white"/>', *parts, "</svg>"])
        + "\n"
    )


def _panel(parts: list[str], panel: Panel, y: int) -> int:
    parts.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(panel.title)}</text>')
    y += 24
    for i, name in enumerate(panel.series if len(panel.series) > 1 else ()):
        x = _LABEL + i * 160
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_COLOURS[i % 2]}"/>')
        parts.append(f'<text x="{x + 16}" y="{y + 10}">{escape(name)}</text>')
    if len(panel.series) > 1:
        y += 20
    values = [v for _, row in panel.rows for v in row if v is not None and v == v]
    top = max(values, default=0.0) or 1.0
    span = _WIDTH - _LABEL - 90
    for label, row in panel.rows:
        parts.append(
            f'<text x="{_LABEL - 8}" y="{y + _BAR * len(row) / 2 + 4}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for i, value in enumerate(row):
            if value is not None and value == value:
                width = max(1.0, span * value / top)
                parts.append(
                    f'<rect x="{_LABEL}" y="{y}" width="{width:.1f}" height="{_BAR - 2}" '
                    f'fill="{_COLOURS[i % 2]}"/>'
                )
                parts.append(
                    f'<text x="{_LABEL + width + 4:.1f}" y="{y + _BAR - 5}">'
                    f"{value:,.0f} {escape(panel.unit)}</text>"
                )
            y += _BAR
        y += _GAP
    return y
