"""A service's read API: its cases, their timelines, open deadlines, dead letters and KPIs.

Served under `/<service>/api` by the process that runs the service (aftersales/http.py), so the
console reads no service's tables: each service answers for its own data. Every service gets
the same routes over its journal, timers and dead-letter topic; a service adds its own (the
refund ledger's ledgers, each service's KPIs) through `ServiceDefinition.read_api`.
No personal data in any answer: buyers are customer_ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import Clock
from shared.policy import Policy
from shared.settings import Settings

from .deadletters import dead_letters_at, refusal, replay_one
from .tables import MessagingTables

# Dead letters read per request at most (the topic is read from its start).
DEAD_LETTER_LIMIT = 1000
# Cases a search answers at most.
SEARCH_LIMIT = 200
# Fields of a journal entry's detail that name what a timer may be set on.
TIMER_REFS = ("refund_id", "callback_id")
# An order's own timeline: every event of the order, whatever case it belongs to.
ORDER = "order"

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


def _entry(service: str, row: Any) -> TimelineEntry:
    detail = dict(row.detail or {})
    return TimelineEntry(
        at=row.occurred_at,
        service=service,
        kind=row.direction,
        name=row.event_type,
        event_id=row.event_id,
        case_type=row.case_type,
        case_id=row.case_id,
        order_id=row.order_id,
        rule=detail.pop("rule", None),
        message=detail.pop("message", None),
        message_en=detail.pop("message_en", None),
        detail=detail,
    )


def _timer_entries(service: str, row: Any) -> list[TimelineEntry]:
    common = {
        "service": service,
        "name": row.kind,
        "order_id": (row.payload or {}).get("order_id"),
        "due_at": row.due_at,
        "detail": {"ref": row.ref},
    }
    entries = [TimelineEntry(at=row.created_at, kind="timer_set", **common)]
    # The row's creation is the database's clock, firing and cancelling the service's: a timer
    # set and cancelled in one batch could read as cancelled before it was set.
    if row.fired_at is not None:
        at = max(row.fired_at, row.created_at)
        entries.append(TimelineEntry(at=at, kind="timer_fired", **common))
    if row.cancelled_at is not None:
        at = max(row.cancelled_at, row.created_at)
        entries.append(TimelineEntry(at=at, kind="timer_cancelled", **common))
    return entries


# --- the routes ----------------------------------------------------------------------------


def read_router(ctx: ReadContext, kpis: KpiSource | None = None) -> APIRouter:
    """The routes every service answers, under /<service>/api."""
    router = APIRouter(prefix=f"/{ctx.service}/api", tags=[ctx.service])
    j, timers = ctx.tables.journal, ctx.tables.timers

    @router.get("/cases", response_model=list[CaseSummary], summary="Find cases")
    async def find_cases(
        q: Annotated[
            str, Query(min_length=1, description="an order, return, complaint or buyer id")
        ],
    ) -> list[CaseSummary]:
        """The cases this service keeps whose order, case or buyer id is `q`; an order that
        has no case yet is listed as a case of type `order`."""
        async with ctx.sessions() as session:
            orders = select(j.c.order_id).where(
                or_(j.c.order_id == q, j.c.case_id == q, j.c.customer_id == q)
            )
            case_type = func.coalesce(j.c.case_type, ORDER).label("case_type")
            case_id = func.coalesce(j.c.case_id, j.c.order_id).label("case_id")
            rows = await session.execute(
                select(
                    case_type,
                    case_id,
                    func.max(j.c.order_id),
                    func.max(j.c.customer_id),
                    func.min(j.c.occurred_at),
                    func.max(j.c.occurred_at),
                    func.count(),
                )
                .where(
                    or_(j.c.order_id.in_(orders.scalar_subquery()), j.c.case_id == q),
                    case_id.is_not(None),
                )
                .group_by(case_type, case_id)
                .order_by(func.min(j.c.occurred_at))
                .limit(SEARCH_LIMIT)
            )
            found = [
                CaseSummary(
                    service=ctx.service,
                    case_type=r[0],
                    case_id=r[1],
                    order_id=r[2],
                    customer_id=r[3],
                    first_at=r[4],
                    last_at=r[5],
                    events=r[6],
                )
                for r in rows
            ]
        # An order listed as an `order` case when it has cases of its own is noise.
        with_cases = {c.order_id for c in found if c.case_type != ORDER}
        return [c for c in found if c.case_type != ORDER or c.case_id not in with_cases]

    @router.get(
        "/cases/{case_type}/{case_id}/timeline",
        response_model=list[TimelineEntry],
        summary="A case's timeline",
    )
    async def timeline(case_type: str, case_id: str) -> list[TimelineEntry]:
        """Every event the service took in or queued out for the case, the order's own events
        (order.paid, order.shipped...) and the case's timers set, fired or cancelled, in time
        order. `order` as the type: everything of that order."""
        async with ctx.sessions() as session:
            if case_type == ORDER:
                order_id: str | None = case_id
                which = j.c.order_id == case_id
            else:
                order_id = await session.scalar(
                    select(func.max(j.c.order_id)).where(
                        j.c.case_type == case_type, j.c.case_id == case_id
                    )
                )
                which = or_(
                    and_(j.c.case_type == case_type, j.c.case_id == case_id),
                    and_(j.c.case_id.is_(None), j.c.order_id == order_id),
                )
            rows = (await session.execute(select(j).where(which).order_by(j.c.id))).all()
            # Timers are set on the case, its order, or what the case made (a refund, a
            # callback): the ids its events name.
            refs = {case_id} | ({order_id} if order_id else set())
            for r in rows:
                refs |= {r.case_id} if case_type == ORDER and r.case_id else set()
                refs |= {v for k in TIMER_REFS if (v := (r.detail or {}).get(k))}
            timer_rows = (
                await session.execute(select(timers).where(timers.c.ref.in_(sorted(refs))))
            ).all()
        entries = [_entry(ctx.service, r) for r in rows]
        for row in timer_rows:
            entries.extend(_timer_entries(ctx.service, row))
        # Stable: the journal's own order is kept between entries of the same instant.
        return sorted(entries, key=lambda e: e.at)

    @router.get("/deadlines", response_model=list[Deadline], summary="Open deadlines")
    async def deadlines(
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> list[Deadline]:
        """Timers not yet fired nor cancelled, soonest due first; a breached one says by how
        much (a timer is due until the service fires it, moments after its time)."""
        now = ctx.clock.now()
        async with ctx.sessions() as session:
            rows = (
                await session.execute(
                    select(timers)
                    .where(timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None))
                    .order_by(timers.c.due_at, timers.c.id)
                    .limit(limit)
                )
            ).all()
        return [
            Deadline(
                service=ctx.service,
                kind=r.kind,
                ref=r.ref,
                order_id=(r.payload or {}).get("order_id"),
                due_at=r.due_at,
                breached=r.due_at < now,
                overdue_seconds=max(0, int((now - r.due_at).total_seconds())),
            )
            for r in rows
        ]

    @router.get("/dead-letters", response_model=DeadLetters, summary="Dead letters")
    async def dead_letters(reason: str | None = None) -> DeadLetters:
        """The service's dead-letter topic, counted by reason, with each letter's detail and
        whether it may be replayed (a masked or too old copy may not)."""
        now = ctx.clock.now()
        letters: list[DeadLetter] = []
        by_reason: dict[str, int] = {}
        letters_read = dead_letters_at(ctx.settings, ctx.service, DEAD_LETTER_LIMIT)
        async with aclosing(letters_read):
            async for partition, offset, item in letters_read:
                by_reason[item.reason] = by_reason.get(item.reason, 0) + 1
                if reason is not None and item.reason != reason:
                    continue
                why = refusal(item, ctx.settings, now)
                origin = item.origin
                letters.append(
                    DeadLetter(
                        service=ctx.service,
                        partition=partition,
                        offset=offset,
                        received_at=item.received_at,
                        reason=item.reason,
                        detail=item.detail,
                        origin=f"{origin.topic}/{origin.partition}@{origin.offset}",
                        replayable=why is None,
                        not_replayable_because=why,
                    )
                )
        return DeadLetters(service=ctx.service, by_reason=by_reason, letters=letters)

    @router.post(
        "/dead-letters/replay", response_model=ReplayResult, summary="Replay one dead letter"
    )
    async def replay(request: ReplayRequest) -> ReplayResult:
        """Publish one dead letter again to its original topic and key. Safe to repeat: an
        event processed meanwhile is a duplicate to the inbox; one still invalid comes back."""
        why = await replay_one(
            ctx.settings, ctx.service, request.partition, request.offset, ctx.clock.now()
        )
        if why is not None and why.startswith("no dead letter"):
            raise HTTPException(404, why)
        if why is not None:
            return ReplayResult(replayed=False, message=why)
        return ReplayResult(replayed=True, message="published again to its original topic")

    if kpis is not None:

        @router.get("/kpis", response_model=Kpis, summary="KPIs per shop and period")
        async def kpi_figures(
            period: Period = "week",
            shop: str | None = None,
            since: Annotated[
                date | None,
                Query(description="first local date (default: 12 weeks or a year back)"),
            ] = None,
            until: Annotated[
                date | None, Query(description="last local date (default: today)")
            ] = None,
        ) -> Kpis:
            zone = ctx.policy.zone
            today = ctx.clock.now().astimezone(zone).date()
            last = until or today
            first = since or (
                last - timedelta(weeks=12) if period == "week" else last - timedelta(days=366)
            )
            if first > last:
                raise HTTPException(422, "since is after until")
            query = KpiQuery(
                period=period,
                shop=shop,
                start=datetime.combine(first, time(0), tzinfo=zone),
                end=datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone),
            )
            figures = await kpis(ctx, query)
            return Kpis(
                service=ctx.service,
                period=period,
                shop=shop,
                since=first,
                until=last,
                figures=figures,
            )

    return router


def detail_of(row: Any) -> Mapping[str, Any]:
    return row.detail or {}
