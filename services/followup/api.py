"""The follow-up service's KPIs: CSAT, the callback response rate and the callback on-time rate
per period, with the rules of `aftersales report` (services/followup/report.py): a callback
belongs to the period it was due in; CSAT = scores 4 and 5 out of the answered callbacks; a
callback counts as made (response rate, on-time rate) once its survey invitation was delivered."""

from __future__ import annotations

from itertools import groupby

from services.followup import report
from shared.messaging.readapi import Figure, KpiQuery, ReadContext

# KPI -> (its rate, numerator, denominator) of the report's figures.
RATES = {
    "csat": ("csat", "satisfied", "answered"),
    "response_rate": ("response_rate", "answered", "callbacks_delivered"),
    "callback_on_time_rate": ("on_time_rate", "cases_on_time", "cases_due"),
}


async def kpis(ctx: ReadContext, query: KpiQuery) -> list[Figure]:
    zone = ctx.policy.zone
    async with ctx.sessions() as session:
        rows = await report.case_rows(session, query.start, query.end)
    figures: list[Figure] = []
    dated = sorted(rows, key=lambda r: query.label(r.due_at, zone))
    for period, in_period in groupby(dated, key=lambda r: query.label(r.due_at, zone)):
        total = report.aggregate(list(in_period), shop=query.shop)[-1]
        figures += [
            Figure(
                kpi=kpi,
                period=period,
                value=getattr(total, value),
                numerator=getattr(total, part),
                denominator=getattr(total, whole),
            )
            for kpi, (value, part, whole) in RATES.items()
        ]
    return sorted(figures, key=lambda f: list(RATES).index(f.kpi))
