"""The refund ledger for people: one order's ledger, and refund figures per day and case type.

Behind `aftersales refunds ORDER_ID` and
`aftersales report refunds [--since DATE] [--until DATE] [--format table|csv|json]`.

- A refund belongs to the local date (policy time zone) it was issued on; `--since` and
  `--until` are both included.
- Refunds are those the cases asked for; a re-issue of a refused part to the payout method
  is counted under `reissued` only (it pays the same money again), not in the amounts.
- on time by issue = issued by `due_by`; by settlement = settled by `due_by`, out of those
  settled (a refund of 0 is settled when issued).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.refunds import tables
from services.refunds.domain.model import OrderLedger
from services.refunds.repository import RefundsRepository
from shared.db import command_engine, session_factory
from shared.policy import Policy
from shared.reporting import check_period, period_bounds, text_table

FORMATS = ("table", "csv", "json")


@dataclass
class DayFigures:
    day: str
    case_type: str
    currency: str
    refunds: int = 0
    issued: int = 0  # minor units
    cut: int = 0
    to_payout_method: int = 0
    on_time_by_issue: int = 0
    settled: int = 0
    on_time_by_settlement: int = 0
    failed: int = 0
    reissued: int = 0


def aggregate(rows: Iterable[Any], policy: Policy) -> list[DayFigures]:
    figures: dict[tuple[str, str, str], DayFigures] = {}
    for row in rows:
        day = row.issued_at.astimezone(policy.zone).date().isoformat()
        key = (day, row.case_type, row.currency)
        target = figures.setdefault(key, DayFigures(*key))
        if row.reissue_of is not None:
            target.reissued += 1
            continue
        target.refunds += 1
        target.issued += row.amount
        target.cut += row.cut
        target.to_payout_method += row.overflow
        target.on_time_by_issue += row.issued_at <= row.due_by
        if row.settled_at is not None:
            target.settled += 1
            target.on_time_by_settlement += row.settled_at <= row.due_by
        target.failed += bool(row.failed)
    return [figures[key] for key in sorted(figures)]


async def figures(
    engine: AsyncEngine, policy: Policy, *, since: date | None, until: date | None
) -> list[DayFigures]:
    t = tables.refunds
    query = select(t).order_by(t.c.issued_at, t.c.refund_id)
    start, end = period_bounds(since, until, policy.zone)
    if start is not None:
        query = query.where(t.c.issued_at >= start)
    if end is not None:
        query = query.where(t.c.issued_at < end)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return aggregate(rows, policy)


def _percent(part: int, whole: int) -> str:
    return "-" if whole == 0 else f"{part * 100 / whole:.1f}%"


def format_report(rows: Sequence[DayFigures], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([asdict(row) for row in rows], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        names = list(DayFigures.__dataclass_fields__)
        writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
        return out.getvalue().rstrip("\n")
    header = (
        "day",
        "case type",
        "cur",
        "refunds",
        "issued",
        "cut",
        "to payout",
        "on time (issue)",
        "settled",
        "on time (settlement)",
        "failed",
        "reissued",
    )
    body = [
        (
            r.day,
            r.case_type,
            r.currency,
            str(r.refunds),
            str(r.issued),
            str(r.cut),
            str(r.to_payout_method),
            _percent(r.on_time_by_issue, r.refunds),
            str(r.settled),
            _percent(r.on_time_by_settlement, r.settled),
            str(r.failed),
            str(r.reissued),
        )
        for r in rows
    ]
    return "\n".join(text_table(header, body)) if body else "no refunds issued in the period"


def format_ledger(ledger: OrderLedger) -> str:
    """An order's ledger in minor units: what was paid, then every refund."""
    out: list[str] = [f"order {ledger.order_id}"]
    facts = ledger.facts
    if facts is None:
        out.append("  order.paid not seen yet")
    else:
        out.append(
            f"  paid ({facts.currency}, every amount in minor units): goods {facts.goods_total}, "
            f"outbound shipping {facts.shipping_fee_paid}"
        )
        for line_id, quantity, paid in facts.lines:
            out.append(f"    line {line_id}: {quantity} unit(s), paid {paid}")
        given = ledger.method_given()
        for method, charged in facts.payments:
            out.append(f"    {method}: charged {charged}, refunded {given.get(method, 0)}")
        out.append(
            f"  refunded so far: goods {ledger.goods_given}, "
            f"outbound shipping {ledger.outbound_given}, "
            f"to the payout method {ledger.overflow_given}"
        )
    for refund in ledger.refunds.values():
        status = (
            "needs a person"
            if refund.needs_person
            else f"settled {refund.settled_at.isoformat()}"
            if refund.settled_at is not None
            else "awaiting settlement"
        )
        late = "" if refund.on_time else " (late)"
        out.append(
            f"  refund {refund.refund_id}  {refund.case_type} {refund.case_id}  "
            f"issued {refund.issued_at.isoformat()}{late}  due {refund.due_by.isoformat()}"
        )
        if refund.reissue_of is not None:
            out.append(f"    re-issue of {refund.reissue_of} to the payout method")
        out.append(f"    asked {refund.requested}, issued {refund.amount}; {status}")
        if refund.cut:
            out.append(
                f"    cut {refund.cut}: goods and outbound shipping of this order were "
                "already refunded up to what was paid for them"
            )
        parts = ", ".join(f"{kind} {amount}" for kind, amount in refund.breakdown)
        out.append(f"    breakdown: {parts}")
        paid_to = ", ".join(f"{m} {amount}" for m, amount in refund.payments) or "nothing"
        out.append(f"    paid to: {paid_to}")
        for failure in refund.failures:
            out.append(
                f"    failed: {failure.method} {failure.amount} ({failure.reason}) "
                f"at {failure.failed_at.isoformat()}"
            )
    for request in ledger.waiting.values():
        out.append(
            f"  waiting for order.paid: {request.refund_id}  {request.case_type} "
            f"{request.case_id}  asked {request.amount}"
        )
    return "\n".join(out)


async def _ledger(database_url: str, order_id: str) -> OrderLedger | None:
    async with command_engine(database_url) as engine, session_factory(engine)() as session:
        return await RefundsRepository(session).ledger(order_id)


def show_ledger(database_url: str, order_id: str) -> int:
    """Print an order's ledger; the entry point of `aftersales refunds ORDER_ID`."""
    ledger = asyncio.run(_ledger(database_url, order_id))
    if ledger is None:
        raise ValueError(f"the refund ledger knows no order {order_id!r}")
    print(format_ledger(ledger))
    return 0


async def _report(
    database_url: str, policy: Policy, since: date | None, until: date | None
) -> list[DayFigures]:
    async with command_engine(database_url) as engine:
        return await figures(engine, policy, since=since, until=until)


def main(
    database_url: str,
    policy: Policy,
    *,
    since: date | None = None,
    until: date | None = None,
    fmt: str = "table",
) -> int:
    """Print the refund report; the entry point of `aftersales report refunds`."""
    check_period(since, until)
    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; known: {', '.join(FORMATS)}")
    print(format_report(asyncio.run(_report(database_url, policy, since, until)), fmt))
    return 0
