"""The benchmark's chart: an SVG of horizontal bars, written beside docs/results/bench.md.

Plain SVG text, so the chart needs no plotting library in the image or the dev environment
and reads on GitHub as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from html import escape, unescape

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
    part: str  # the benchmark's part it shows: returns, complaints or notifier


def render_svg(panels: Sequence[Panel]) -> str:
    """The chart, carrying the panels' figures (`<metadata>`) so a later run of some parts only
    can draw it again with the others' panels (`redrawn`)."""
    parts: list[str] = []
    y = 10
    for panel in panels:
        y = _panel(parts, panel, y) + 20
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{y}" '
        'font-family="sans-serif" font-size="12">'
    )
    figures = escape(json.dumps([asdict(panel) for panel in panels]))
    return (
        "\n".join(
            [
                header,
                f'<metadata id="panels">{figures}</metadata>',
                f'<rect width="{_WIDTH}" height="{y}" fill="white"/>',
                *parts,
                "</svg>",
            ]
        )
        + "\n"
    )


def read_panels(svg: str) -> list[Panel] | None:
    """The panels a chart of `render_svg` was drawn from; None for one that does not carry them
    (drawn before it did)."""
    found = re.search(r'<metadata id="panels">(.*?)</metadata>', svg, re.DOTALL)
    if found is None:
        return None
    return [
        Panel(
            p["title"],
            p["unit"],
            p["series"],
            [(label, row) for label, row in p["rows"]],
            p["part"],
        )
        for p in json.loads(unescape(found[1]))
    ]


def redrawn(
    previous: str | None, panels: Sequence[Panel], ran: Collection[str], order: Sequence[str]
) -> str | None:
    """The chart after a run of the parts `ran`: their new panels and, from the `previous`
    chart, the panels of the parts that did not run, in the parts' `order`. None (leave the
    chart as it is) where some parts did not run and the previous chart does not carry their
    figures."""
    kept: list[Panel] = []
    if set(order) - set(ran) and previous is not None:
        old = read_panels(previous)
        if old is None:
            return None
        kept = [panel for panel in old if panel.part not in ran]
    merged = sorted([*panels, *kept], key=lambda panel: order.index(panel.part))
    return render_svg(merged)


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
