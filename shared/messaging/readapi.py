"""A service's read API: its cases, their timelines, open deadlines, dead letters and KPIs.

Served under `/<service>/api` by the process that runs the service, so the console reads no
service's tables: each service answers for its own data. Every service gets the same routes over
its journal, timers and dead-letter topic (`readroutes.py`); a service adds its own (the refund
ledger's ledgers, each service's KPIs) through `ServiceDefinition.read_routes` and `kpis`.
No personal data in any answer: buyers are customer_ids.

A route is declared here without a web framework (`ReadRoute`): a path, an async function and
the type of its answer. The application serves them over HTTP and writes their OpenAPI
documents (aftersales/readapp.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import Clock
from shared.policy import Policy
from shared.settings import Settings

from .tables import MessagingTables

Period = Literal["week", "month"]


@dataclass(frozen=True)
class ReadContext:
    """What a service's read routes work with."""

    service: str
    sessions: async_sessionmaker[AsyncSession]
    tables: MessagingTables
    settings: Settings
    policy: Policy
    clock: Clock


class NotFound(LookupError):
    """What a route was asked for does not exist (HTTP 404); the message says what."""


class BadParameter(ValueError):
    """The parameters are each valid but not together (HTTP 422); the message says why."""


@dataclass(frozen=True)
class Param:
    """Bounds and meaning of a query parameter: `Annotated[int, Param(ge=1)]` in a route's
    signature."""

    description: str | None = None
    min_length: int | None = None
    ge: int | None = None
    le: int | None = None


@dataclass(frozen=True)
class ReadRoute:
    """One query of a service's read API, under /<service>/api.

    `run` takes the path's `{names}` and the query parameters as keyword arguments (its
    signature gives their types, defaults and `Param`s; a pydantic model parameter is the
    request's JSON body) and returns an `answer`, or raises `NotFound` or `BadParameter`. Its
    docstring describes the route.
    """

    path: str
    run: Callable[..., Awaitable[Any]]
    answer: Any
    summary: str
    method: Literal["GET", "POST"] = "GET"


# --- answers ---------------------------------------------------------------------------------


class CaseSummary(BaseModel):
    service: str
    case_type: str = Field(description="return, complaint, late_shipment, or order")
    case_id: str
    order_id: str | None
    customer_id: str | None
    first_at: datetime
    last_at: datetime
    events: int


class TimelineEntry(BaseModel):
    at: datetime
    service: str
    kind: Literal["input", "output", "timer_set", "timer_fired", "timer_cancelled"]
    name: str = Field(description="the event type, or the timer's kind")
    event_id: str | None = None
    case_type: str | None = None
    case_id: str | None = None
    order_id: str | None = None
    rule: str | None = Field(None, description="the decision's rule code")
    message: str | None = Field(None, description="the buyer's message, zh-CN")
    message_en: str | None = Field(None, description="the buyer's message, en")
    due_at: datetime | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Deadline(BaseModel):
    service: str
    kind: str
    ref: str
    order_id: str | None
    due_at: datetime
    breached: bool
    overdue_seconds: int = Field(description="how long past due (0 when not yet due)")


class DeadLetter(BaseModel):
    service: str
    partition: int = Field(description="where it is in the dead-letter topic")
    offset: int
    received_at: datetime
    reason: str
    detail: str
    origin: str = Field(description="topic/partition@offset it came from")
    replayable: bool
    not_replayable_because: str | None = None


class DeadLetters(BaseModel):
    service: str
    by_reason: dict[str, int]
    letters: list[DeadLetter]


class ReplayRequest(BaseModel):
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class ReplayResult(BaseModel):
    replayed: bool
    message: str


class Figure(BaseModel):
    """One value of a KPI: a rate (0..1) or a count, for a period or a label (a reason)."""

    kpi: str
    period: str = Field(description="2026-W49 or 2026-12; `all` for the whole range")
    label: str = Field("", description="what a count is of (a reason, a category, a SKU)")
    value: float | None = Field(description="the rate or the count; null: nothing to rate")
    numerator: int = 0
    denominator: int = 0


class Kpis(BaseModel):
    service: str
    period: Period
    shop: str | None
    since: date
    until: date
    figures: list[Figure]


@dataclass(frozen=True)
class KpiQuery:
    period: Period
    shop: str | None
    start: datetime  # [start, end) in the policy's time zone
    end: datetime

    def label(self, at: datetime, zone: Any) -> str:
        return period_label(at, self.period, zone)


KpiSource = Callable[[ReadContext, KpiQuery], Awaitable[list[Figure]]]


def period_label(at: datetime, period: Period, zone: Any) -> str:
    local = at.astimezone(zone)
    if period == "month":
        return f"{local.year:04d}-{local.month:02d}"
    year, week, _ = local.isocalendar()
    return f"{year:04d}-W{week:02d}"


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def rates_by_period(kpi: str, outcomes: Iterable[tuple[str, bool]]) -> list[Figure]:
    """(period, met) pairs -> one rate per period, in period order."""
    met: dict[str, list[int]] = {}
    for period, ok in outcomes:
        counts = met.setdefault(period, [0, 0])
        counts[0] += int(ok)
        counts[1] += 1
    return [
        Figure(kpi=kpi, period=p, value=rate(n, d), numerator=n, denominator=d)
        for p, (n, d) in sorted(met.items())
    ]


def sla_rates(
    kpi: str,
    query: KpiQuery,
    zone: Any,
    cases: Iterable[Any],
    breached: set[tuple[str | None, str | None]],
) -> list[Figure]:
    """Per period of each case's journal row, the rate of cases with no breach of the SLA."""
    return rates_by_period(
        kpi,
        (
            (query.label(r.occurred_at, zone), (r.case_type, r.case_id) not in breached)
            for r in cases
        ),
    )


def top_counts(kpi: str, labels: Iterable[str], limit: int = 10) -> list[Figure]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [Figure(kpi=kpi, period="all", label=k, value=v, numerator=v) for k, v in ranked]


# --- the journal, read ---------------------------------------------------------------------


async def order_shops(ctx: ReadContext, session: AsyncSession) -> dict[str, str]:
    """order -> shop, from the order.paid events the service took in."""
    j = ctx.tables.journal
    rows = await session.execute(
        select(j.c.order_id, j.c.detail["shop_id"].astext).where(
            j.c.event_type == "order.paid", j.c.order_id.is_not(None)
        )
    )
    return {order: shop for order, shop in rows if shop}


async def journal_rows(
    ctx: ReadContext, session: AsyncSession, query: KpiQuery, event_types: Iterable[str]
) -> list[Any]:
    """Journal rows of these types in the query's range (and shop, when one is asked for)."""
    j = ctx.tables.journal
    rows = (
        await session.execute(
            select(j)
            .where(
                j.c.event_type.in_(list(event_types)),
                j.c.occurred_at >= query.start,
                j.c.occurred_at < query.end,
            )
            .order_by(j.c.id)
        )
    ).all()
    if query.shop is None:
        return list(rows)
    shops = await order_shops(ctx, session)
    return [row for row in rows if shops.get(row.order_id) == query.shop]


async def breached_cases(
    ctx: ReadContext, session: AsyncSession, sla: str
) -> set[tuple[str | None, str | None]]:
    """(case type, case id) of every case this service reported `sla` breached for."""
    j = ctx.tables.journal
    rows = await session.execute(
        select(j.c.case_type, j.c.case_id).where(
            j.c.event_type == "sla.breached", j.c.detail["sla"].astext == sla
        )
    )
    return {(t, i) for t, i in rows}


def detail_of(row: Any) -> Mapping[str, Any]:
    return row.detail or {}
