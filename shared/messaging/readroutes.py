"""The routes every service's read API answers: its cases, a case's timeline, open
deadlines, dead letters (and their replay), and its KPIs when it has any (`readapi.py`)."""

from __future__ import annotations

from contextlib import aclosing
from datetime import date, timedelta
from typing import Annotated, Any

from sqlalchemy import and_, func, or_, select

from shared.reporting import local_midnight

from .deadletters import dead_letters_at, refusal, replay_one
from .readapi import (
    BadParameter,
    CaseSummary,
    DeadLetter,
    DeadLetters,
    Deadline,
    KpiQuery,
    Kpis,
    KpiSource,
    NotFound,
    Param,
    Period,
    ReadContext,
    ReadRoute,
    ReplayRequest,
    ReplayResult,
    TimelineEntry,
)

# Dead letters read per request at most (the topic is read from its start).
DEAD_LETTER_LIMIT = 1000
# Cases a search answers at most.
SEARCH_LIMIT = 200
# Fields of a journal entry's detail that name what a timer may be set on.
TIMER_REFS = ("refund_id", "callback_id")
# An order's own timeline: every event of the order, whatever case it belongs to.
ORDER = "order"


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


def common_routes(ctx: ReadContext, kpis: KpiSource | None = None) -> list[ReadRoute]:
    """The routes every service answers, under /<service>/api, in the documents' order."""
    j, timers = ctx.tables.journal, ctx.tables.timers

    async def find_cases(
        q: Annotated[
            str, Param(min_length=1, description="an order, return, complaint or buyer id")
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

    async def deadlines(
        limit: Annotated[int, Param(ge=1, le=5000)] = 500,
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

    async def replay(request: ReplayRequest) -> ReplayResult:
        """Publish one dead letter again to its original topic and key. Safe to repeat: an
        event processed meanwhile is a duplicate to the inbox; one still invalid comes back."""
        why = await replay_one(
            ctx.settings, ctx.service, request.partition, request.offset, ctx.clock.now()
        )
        if why is not None and why.startswith("no dead letter"):
            raise NotFound(why)
        if why is not None:
            return ReplayResult(replayed=False, message=why)
        return ReplayResult(replayed=True, message="published again to its original topic")

    routes = [
        ReadRoute("/cases", find_cases, list[CaseSummary], "Find cases"),
        ReadRoute(
            "/cases/{case_type}/{case_id}/timeline",
            timeline,
            list[TimelineEntry],
            "A case's timeline",
        ),
        ReadRoute("/deadlines", deadlines, list[Deadline], "Open deadlines"),
        ReadRoute("/dead-letters", dead_letters, DeadLetters, "Dead letters"),
        ReadRoute("/dead-letters/replay", replay, ReplayResult, "Replay one dead letter", "POST"),
    ]
    if kpis is not None:

        async def kpi_figures(
            period: Period = "week",
            shop: str | None = None,
            since: Annotated[
                date | None,
                Param(description="first local date (default: 12 weeks or a year back)"),
            ] = None,
            until: Annotated[
                date | None, Param(description="last local date (default: today)")
            ] = None,
        ) -> Kpis:
            zone = ctx.policy.zone
            today = ctx.clock.now().astimezone(zone).date()
            last = until or today
            first = since or (
                last - timedelta(weeks=12) if period == "week" else last - timedelta(days=366)
            )
            if first > last:
                raise BadParameter("since is after until")
            query = KpiQuery(
                period=period,
                shop=shop,
                start=local_midnight(first, zone),
                end=local_midnight(last + timedelta(days=1), zone),
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

        routes.append(ReadRoute("/kpis", kpi_figures, Kpis, "KPIs per shop and period"))
    return routes
