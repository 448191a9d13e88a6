"""CSAT, response rate and on-time rate per shop and period, from the `followup` schema.

Behind `aftersales report [--since DATE] [--until DATE] [--shop SHOP]`.

- A callback belongs to the period of its planned send time (`due_at`), as a local date in the
  policy's time zone; `--since` and `--until` are both included.
- CSAT = answers scoring 4 or 5 / answers; response rate = answered / delivered callbacks;
  on-time rate = cases whose callback reached the buyer before their deadline / cases that
  fell due. A callback counts as made only once the notifier delivered its survey invitation
  (`notification.sent`; an answer proves it too), not when the service requested it: a case
  falls due when its callback was delivered, undelivered (`notification.failed`) or missed;
  still scheduled cases, and cases whose invitation awaits the notifier's status, are not due
  yet.
- A case's shop is that of its order (order.paid); an order never seen is shop `unknown`.
  A callback naming cases of several shops counts once for each of them; the `(all)` row
  counts every callback once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.followup import tables
from services.followup.domain.rules import DUE_OUTCOMES, ON_TIME_OUTCOMES, Delivery
from services.followup.repository import UNKNOWN_SHOP
from shared.db import command_engine
from shared.policy import Policy
from shared.reporting import check_period, period_bounds, text_table

ALL_SHOPS = "(all)"


@dataclass
class ShopFigures:
    shop: str
    cases_due: int = 0
    cases_on_time: int = 0
    callbacks_delivered: int = 0  # the survey invitation reached the buyer
    callbacks_undelivered: int = 0  # the notifier gave it up: no callback
    answered: int = 0
    satisfied: int = 0  # scores 4 and 5
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def csat(self) -> float | None:
        return _ratio(self.satisfied, self.answered)

    @property
    def response_rate(self) -> float | None:
        return _ratio(self.answered, self.callbacks_delivered)

    @property
    def on_time_rate(self) -> float | None:
        return _ratio(self.cases_on_time, self.cases_due)

    def add_case(self, outcome: str) -> None:
        if outcome in DUE_OUTCOMES:
            self.cases_due += 1
        if outcome in ON_TIME_OUTCOMES:
            self.cases_on_time += 1

    def add_callback(self, row: Any) -> None:
        if row.callback_id in self._seen:
            return
        self._seen.add(row.callback_id)
        if row.delivery == Delivery.DELIVERED or row.answered_at is not None:
            self.callbacks_delivered += 1  # an answer proves the buyer got it
        elif row.delivery == Delivery.FAILED:
            self.callbacks_undelivered += 1
        if row.answered_at is not None:
            self.answered += 1
            if row.score is not None and row.score >= 4:
                self.satisfied += 1


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


async def figures(
    engine: AsyncEngine,
    policy: Policy,
    *,
    since: date | None = None,
    until: date | None = None,
    shop: str | None = None,
) -> list[ShopFigures]:
    """One row per shop (sorted), then the `(all)` row (left out when `shop` is given)."""
    start, end = period_bounds(since, until, policy.zone)
    async with engine.connect() as conn:
        rows = await case_rows(conn, start, end)
    return aggregate(rows, shop=shop)


async def case_rows(
    conn: AsyncConnection | AsyncSession, start: datetime | None, end: datetime | None
) -> Sequence[Any]:
    """Each closed case with its callback and shop, of the callbacks due in [start, end)."""
    cb, case, order = tables.callbacks, tables.cases, tables.orders
    shop_of = func.coalesce(order.c.shop_id, UNKNOWN_SHOP).label("shop")
    query = (
        select(
            cb.c.callback_id,
            cb.c.due_at,
            cb.c.sent_at,
            cb.c.delivery,
            cb.c.answered_at,
            cb.c.score,
            case.c.outcome,
            shop_of,
        )
        .select_from(case.join(cb, cb.c.callback_id == case.c.callback_id))
        .outerjoin(order, order.c.order_id == case.c.order_id)
        .order_by(cb.c.callback_id, case.c.case_type, case.c.case_id)
    )
    if start is not None:
        query = query.where(cb.c.due_at >= start)
    if end is not None:
        query = query.where(cb.c.due_at < end)
    return (await conn.execute(query)).all()


def aggregate(rows: Iterable[Any], *, shop: str | None = None) -> list[ShopFigures]:
    per_shop: dict[str, ShopFigures] = {}
    total = ShopFigures(ALL_SHOPS)
    for row in rows:
        for target in (per_shop.setdefault(row.shop, ShopFigures(row.shop)), total):
            target.add_case(row.outcome)
            target.add_callback(row)
    if shop is not None:
        return [per_shop.get(shop, ShopFigures(shop))]
    return [per_shop[name] for name in sorted(per_shop)] + [total]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def format_table(
    rows: Sequence[ShopFigures], *, since: date | None, until: date | None, policy: Policy
) -> str:
    period = f"{since or 'start'} .. {until or 'today'} ({policy.timezone})"
    header = (
        "shop",
        "due",
        "on time",
        "on-time rate",
        "delivered",
        "undelivered",
        "answered",
        "response rate",
        "4-5",
        "CSAT",
    )
    body = [
        (
            row.shop,
            str(row.cases_due),
            str(row.cases_on_time),
            _percent(row.on_time_rate),
            str(row.callbacks_delivered),
            str(row.callbacks_undelivered),
            str(row.answered),
            _percent(row.response_rate),
            str(row.satisfied),
            _percent(row.csat),
        )
        for row in rows
    ]
    return "\n".join([f"follow-up report, period {period}", *text_table(header, body)])


async def _report(
    database_url: str, policy: Policy, since: date | None, until: date | None, shop: str | None
) -> str:
    async with command_engine(database_url) as engine:
        rows = await figures(engine, policy, since=since, until=until, shop=shop)
    return format_table(rows, since=since, until=until, policy=policy)


def main(
    database_url: str,
    policy: Policy,
    *,
    since: date | None = None,
    until: date | None = None,
    shop: str | None = None,
) -> int:
    """Print the report table; the entry point of `aftersales report`."""
    check_period(since, until)
    print(asyncio.run(_report(database_url, policy, since, until, shop)))
    return 0
