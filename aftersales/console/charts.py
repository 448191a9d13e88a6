"""KPI charts drawn on the server as SVG: nothing for the browser to load.

A rate is drawn as one bar per period (0 to 100 %), a count as one horizontal bar per label.
Each bar carries its figure as text, so a chart reads without hovering (and a test can read it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
BAR_AREA = 160  # height of the rate chart's bars at 100 %
ROW = 22  # height of one row of a count chart
LEFT = 44  # room for the rate chart's 100 % tick


@dataclass(frozen=True)
class Point:
    label: str
    value: float | None  # a rate 0..1, or a count
    note: str = ""  # numerator/denominator


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "") -> str:
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}" class="{cls}">{escape(text)}</text>'
    )


def rate_chart(title: str, points: Sequence[Point]) -> Markup:
    """One bar per period; a period with nothing to rate shows `n/a`."""
    n = max(len(points), 1)
    slot = (WIDTH - LEFT - 10) / n
    bar = min(slot * 0.7, 48)
    height = BAR_AREA + 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{BAR_AREA + 20}" x2="{WIDTH}" y2="{BAR_AREA + 20}" class="axis"/>',
        _text(LEFT - 4, 24, "100%", anchor="end", cls="tick"),
        _text(LEFT - 4, BAR_AREA + 20, "0%", anchor="end", cls="tick"),
    ]
    for i, point in enumerate(points):
        x = LEFT + 10 + i * slot
        if point.value is None:
            parts.append(_text(x + bar / 2, BAR_AREA + 14, "n/a", anchor="middle", cls="value"))
        else:
            h = BAR_AREA * max(0.0, min(point.value, 1.0))
            y = BAR_AREA + 20 - h
            parts.append(
                f'<rect x="{x:.0f}" y="{y:.0f}" width="{bar:.0f}" height="{h:.0f}" class="bar">'
                f"<title>{escape(point.label)}: {escape(point.note)}</title></rect>"
            )
            parts.append(
                _text(x + bar / 2, y - 4, f"{point.value * 100:.0f}%", anchor="middle", cls="value")
            )
        parts.append(_text(x + bar / 2, BAR_AREA + 36, point.label, anchor="middle", cls="tick"))
        if point.note:
            parts.append(_text(x + bar / 2, BAR_AREA + 52, point.note, anchor="middle", cls="note"))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape)


def count_chart(title: str, points: Sequence[Point]) -> Markup:
    """One horizontal bar per label, longest first as given."""
    top = max((p.value or 0 for p in points), default=0) or 1
    label_width = 260
    height = ROW * max(len(points), 1) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, point in enumerate(points):
        y = 5 + i * ROW
        w = (WIDTH - label_width - 60) * (point.value or 0) / top
        parts.append(_text(label_width - 6, y + 15, point.label, anchor="end", cls="tick"))
        parts.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{w:.0f}" height="{ROW - 6}" class="bar"/>'
        )
        parts.append(_text(label_width + w + 6, y + 15, f"{point.value or 0:g}", cls="value"))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape)
