"""The complaints service's KPIs, from its journal (shared/messaging/readapi.py).

- first-response and resolution SLA rates: of the complaints opened in a period, those with no
  `complaint_first_response` (or `complaint_resolution`) breach;
- complaint categories: complaint.opened counted by category.
"""

from __future__ import annotations

from shared.messaging.readapi import (
    Figure,
    KpiQuery,
    ReadContext,
    breached_cases,
    journal_rows,
    sla_rates,
    top_counts,
)

SLAS = {
    "complaint_first_response": "first_response_sla_rate",
    "complaint_resolution": "resolution_sla_rate",
}


async def kpis(ctx: ReadContext, query: KpiQuery) -> list[Figure]:
    zone = ctx.policy.zone
    async with ctx.sessions() as session:
        opened = await journal_rows(ctx, session, query, ["complaint.opened"])
        breached = {sla: await breached_cases(ctx, session, sla) for sla in SLAS}
    figures: list[Figure] = []
    for sla, kpi in SLAS.items():
        figures += sla_rates(kpi, query, zone, opened, breached[sla])
    categories = (str((r.detail or {}).get("category", "unknown")) for r in opened)
    return figures + top_counts("complaint_categories", categories)
