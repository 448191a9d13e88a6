"""The returns service's KPIs, from its journal (shared/messaging/readapi.py).

- review SLA rate: of the returns that waited for a seller's review (a return.pending waiting
  for `review`, by the period it started waiting), those with no `return_review` breach;
- top return reasons by category and by SKU: each returned line of a return.requested, with the
  category and SKU its order.paid gave the line.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shared.messaging.readapi import (
    Figure,
    KpiQuery,
    ReadContext,
    breached_cases,
    journal_rows,
    sla_rates,
    top_counts,
)


async def kpis(ctx: ReadContext, query: KpiQuery) -> list[Figure]:
    zone = ctx.policy.zone
    j = ctx.tables.journal
    async with ctx.sessions() as session:
        pending = [
            r
            for r in await journal_rows(ctx, session, query, ["return.pending"])
            if (r.detail or {}).get("waiting_for") == "review"
        ]
        breached = await breached_cases(ctx, session, "return_review")
        requested = await journal_rows(ctx, session, query, ["return.requested"])
        orders = {r.order_id for r in requested}
        paid = (
            await session.execute(
                select(j.c.order_id, j.c.detail).where(
                    j.c.event_type == "order.paid", j.c.order_id.in_(sorted(orders))
                )
            )
        ).all()
    first_wait: dict[str, Any] = {}
    for r in pending:  # a return waits for review once; the first time counts
        first_wait.setdefault(r.case_id, r)
    review = sla_rates("return_review_sla_rate", query, zone, first_wait.values(), breached)
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for order_id, detail in paid:
        for line in (detail or {}).get("lines", []):
            lines[(order_id, line.get("line_id"))] = line
    by_category: list[str] = []
    by_sku: list[str] = []
    for r in requested:
        detail = r.detail or {}
        reason = str(detail.get("reason", "unknown"))
        for returned in detail.get("lines", []):
            line = lines.get((r.order_id, returned.get("line_id")), {})
            by_category.append(f"{reason} / {line.get('category', 'unknown')}")
            by_sku.append(f"{reason} / {line.get('sku', 'unknown')}")
    return (
        review
        + top_counts("return_reasons_by_category", by_category)
        + top_counts("return_reasons_by_sku", by_sku)
    )
