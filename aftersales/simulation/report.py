"""A `Comparison` as a table for the terminal and as one HTML page with SVG charts drawn here
(nothing loaded from anywhere). The same comparison gives the same bytes: no clock, no random
ids, sections and rows in a fixed order, coordinates rounded."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

from shared.money import major_units

from .compare import SECTIONS, Comparison, RefundChange, Total

MAX_CASES_SHOWN = 8  # case ids per flip on the terminal; the HTML report lists them all


def money(amount: int, currency: str) -> str:
    """1234567 CNY: `12,345.67 CNY`; a count (no currency) as it is."""
    if not currency:
        return f"{amount:,}"
    value: Decimal = major_units(amount, currency)
    return f"{value:,} {currency}"


def signed(amount: int, currency: str) -> str:
    text = money(abs(amount), currency)
    return f"+{text}" if amount > 0 else f"-{text}" if amount < 0 else "0"


def _amounts(figure: RefundChange | Total) -> list[str]:
    """Baseline, candidate and difference, as text ("not issued" for a refund that is not)."""

    def shown(amount: int | None) -> str:
        return "not issued" if amount is None else money(amount, figure.currency)

    return [shown(figure.baseline), shown(figure.candidate), signed(figure.delta, figure.currency)]


def _period(c: Comparison) -> str:
    if c.start is None or c.end is None:
        return "no events"
    return f"{c.start.isoformat()} to {c.end.isoformat()}"


def _invalid(c: Comparison) -> str:
    total = sum(n for _, n in c.invalid)
    if not total:
        return "none"
    return f"{total:,} (" + ", ".join(f"{reason} {n:,}" for reason, n in c.invalid) + ")"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            str(cell).rjust(widths[i]) if i in right else str(cell).ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  " + "  ".join(cells).rstrip()

    return [line(header), "  " + "  ".join("-" * w for w in widths), *map(line, rows)]


def text(c: Comparison) -> str:
    out = [
        f"Policy simulation of {c.events:,} events, {_period(c)}",
        f"  history sha256 {c.digest}",
        f"  invalid events skipped (the services would dead-letter them): {_invalid(c)}",
        f"  baseline: {c.baseline_name}",
        f"  candidate: {c.candidate_name}",
        "",
    ]
    if c.empty:
        out.append("No difference: every decision, refund and total is the same.")
        out.append("")
    out.append(f"Decisions that flip: {_case_count(sum(len(f.cases) for f in c.flips))}")
    if c.flips:
        rows = [
            [f.before, f.after, f"{len(f.cases):,}", _cases(f.cases, MAX_CASES_SHOWN)]
            for f in c.flips
        ]
        out += _table(["baseline", "candidate", "cases", "case ids"], rows, {2})
    out.append("")
    out.append(f"Refunds that change: {len(c.refund_changes):,}")
    if c.refund_changes:
        rows = [[change.case, *_amounts(change)] for change in c.refund_changes]
        out += _table(["case", "baseline", "candidate", "difference"], rows, {1, 2, 3})
    for section in SECTIONS:
        totals = c.section(section)
        if not totals:
            continue
        out.append("")
        out.append(SECTIONS[section])
        rows = [[t.name, *_amounts(t)] for t in totals]
        out += _table(["", "baseline", "candidate", "difference"], rows, {1, 2, 3})
    out.append("")
    out.append(
        "Timers still pending at the end of the history (due later): "
        f"baseline {c.pending_timers[0]:,}, candidate {c.pending_timers[1]:,}"
    )
    return "\n".join(out) + "\n"


def _case_count(n: int) -> str:
    return f"{n:,} case" if n == 1 else f"{n:,} cases"


def _cases(cases: Sequence[str], limit: int) -> str:
    shown = ", ".join(case.split(" ", 1)[1] for case in cases[:limit])
    return shown + (f" and {len(cases) - limit:,} more" if len(cases) > limit else "")


# --- HTML and SVG -------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:72rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{padding:.25rem .75rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.changed td{background:#fff6e0}
.ids{font-family:monospace;font-size:.85em;max-width:40rem}
.meta{color:#555}
svg text{font-family:system-ui,sans-serif;font-size:12px}
"""
_BASELINE_COLOUR = "#8da0cb"
_CANDIDATE_COLOUR = "#fc8d62"


def _bars(title: str, rows: Sequence[tuple[str, int, int | None]], currency: str = "") -> str:
    """Horizontal bars, one per row; two per row (baseline, candidate) when both are given."""
    if not rows:
        return ""
    paired = any(candidate is not None for _, _, candidate in rows)
    label_w, bar_w, bar_h, gap = 400, 380, 14, 10
    per_row = (2 * bar_h if paired else bar_h) + gap
    height = 30 + per_row * len(rows) + (20 if paired else 0)
    top = max(max(b, c or 0) for _, b, c in rows) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 160}" '
        f'height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    y = 30
    for label, baseline, candidate in rows:
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h - 3}" text-anchor="end">'
            f"{escape(label[:64])}</text>"
        )
        values = [(baseline, _BASELINE_COLOUR)]
        if paired:
            values.append((candidate or 0, _CANDIDATE_COLOUR))
        for value, colour in values:
            width = round(bar_w * max(value, 0) / top)
            parts.append(
                f'<rect x="{label_w}" y="{y}" width="{width}" height="{bar_h}" fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{label_w + width + 6}" y="{y + bar_h - 3}">'
                f"{escape(money(value, currency))}</text>"
            )
            y += bar_h
        y += gap
    if paired:
        parts.append(f'<rect x="0" y="{y}" width="12" height="12" fill="{_BASELINE_COLOUR}"/>')
        parts.append(f'<text x="18" y="{y + 11}">baseline</text>')
        parts.append(f'<rect x="100" y="{y}" width="12" height="12" fill="{_CANDIDATE_COLOUR}"/>')
        parts.append(f'<text x="118" y="{y + 11}">candidate</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _html_table(
    header: Sequence[str], rows: Sequence[tuple[Sequence[str], bool]], right: set[int]
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for cells, changed in rows:
        tds = "".join(
            f'<td class="{"n" if i in right else "ids" if header[i] == "case ids" else ""}">'
            f"{escape(cell)}</td>"
            for i, cell in enumerate(cells)
        )
        body.append(f"<tr{' class=changed' if changed else ''}>{tds}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section_charts(c: Comparison) -> list[str]:
    charts = []
    for section in ("refunds by kind", "compensation"):
        currencies = sorted({t.currency for t in c.section(section)})
        for currency in currencies:
            rows = [
                (t.name, t.baseline, t.candidate)
                for t in c.section(section)
                if t.currency == currency
            ]
            charts.append(_bars(f"{SECTIONS[section]} ({currency})", rows, currency))
    for section in ("sla breaches", "callbacks"):
        rows = [(t.name, t.baseline, t.candidate) for t in c.section(section)]
        charts.append(_bars(SECTIONS[section], rows))
    return [chart for chart in charts if chart]


def html(c: Comparison) -> str:
    flipped = sum(len(f.cases) for f in c.flips)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Policy simulation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Policy simulation</h1>",
        '<p class="meta">'
        f"{c.events:,} events, {escape(_period(c))}<br>"
        f"history sha256 {escape(c.digest)}<br>"
        f"invalid events skipped (the services would dead-letter them): {escape(_invalid(c))}<br>"
        f"baseline: {escape(c.baseline_name)}<br>candidate: {escape(c.candidate_name)}</p>",
    ]
    if c.empty:
        parts.append(
            "<p><strong>No difference</strong>: every decision, refund and total is the same.</p>"
        )
    parts.append(f"<h2>Decisions that flip ({_case_count(flipped)})</h2>")
    if c.flips:
        parts.append(
            _bars(
                "Cases per flip",
                [(f"{f.before} → {f.after}", len(f.cases), None) for f in c.flips],
            )
        )
        rows = [
            ([f.before, f.after, f"{len(f.cases):,}", _cases(f.cases, len(f.cases))], True)
            for f in c.flips
        ]
        parts.append(_html_table(["baseline", "candidate", "cases", "case ids"], rows, {2}))
    parts.append("<h2>Totals</h2>")
    parts += _section_charts(c)
    for section in SECTIONS:
        totals: list[Total] = c.section(section)
        if not totals:
            continue
        parts.append(f"<h3>{escape(SECTIONS[section])}</h3>")
        rows = [([t.name, *_amounts(t)], t.delta != 0) for t in totals]
        parts.append(_html_table(["", "baseline", "candidate", "difference"], rows, {1, 2, 3}))
    parts.append(f"<h2>Refunds that change ({len(c.refund_changes):,})</h2>")
    if c.refund_changes:
        rows = [
            ([change.case, change.refund_id, *_amounts(change)], True)
            for change in c.refund_changes
        ]
        header = ["case", "refund id", "baseline", "candidate", "difference"]
        parts.append("<details><summary>every refund that changes</summary>")
        parts.append(_html_table(header, rows, {2, 3, 4}))
        parts.append("</details>")
    parts.append(
        '<p class="meta">Timers still pending at the end of the history (due later): '
        f"baseline {c.pending_timers[0]:,}, candidate {c.pending_timers[1]:,}</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
