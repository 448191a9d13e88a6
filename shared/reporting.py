"""What the reports share: a period of local dates as instants, and a plain-text table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The instant `day` begins in `zone`."""
    return datetime.combine(day, time(0), tzinfo=zone)


def period_bounds(
    since: date | None, until: date | None, zone: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """[start, end) instants of the local dates since..until, both included (None: open)."""
    start = None if since is None else local_midnight(since, zone)
    end = None if until is None else local_midnight(until + timedelta(days=1), zone)
    return start, end


def check_period(since: date | None, until: date | None) -> None:
    """Refuse a period that ends before it begins (the commands' `--since` and `--until`)."""
    if since is not None and until is not None and since > until:
        raise ValueError("--since must not be after --until")


def text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a table: the header, a rule, then the body; the first column left-aligned,
    the others right-aligned, each as wide as its widest cell."""
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    return [line(header), "  ".join("-" * width for width in widths), *map(line, body)]
