"""The complaints service's read API on the real database: first-response and resolution SLA
rates and complaint categories per shop, a complaint's timeline, and no free text kept."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from aftersales_dev.events import unique
from shared.catchup import CATCH_UP_GRACE
from shared.clock import ManualClock
from shared.db import session_factory
from tests.read_api import read_api_client

from ...e2e.complaints.helpers import opened, order_paid, resolved, responded
from .harness import T0, ComplaintsService

H = timedelta(hours=1)


@pytest.fixture
def client(svc: ComplaintsService, clock: ManualClock) -> httpx.AsyncClient:
    return read_api_client(svc.definition, session_factory(svc.engine), clock)


async def test_sla_rates_and_categories_of_a_shop(
    svc: ComplaintsService, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    shop, buyer = unique("S"), unique("C")
    answered, ignored = (unique("O"), unique("K")), (unique("O"), unique("K"))
    for order, _ in (answered, ignored):
        paid = order_paid(order, buyer)
        paid["data"]["shop_id"] = shop
        await svc.feed(paid)
    await svc.feed(
        opened(answered[1], answered[0], buyer, "quality_issue", at=T0),
        opened(ignored[1], ignored[0], buyer, "wrong_item", at=T0),
    )
    clock.set(T0 + H / 2)
    await svc.feed(responded(answered[1], answered[0], at=T0 + H / 2))
    await svc.feed(resolved(answered[1], answered[0], at=T0 + H / 2, outcome="not_upheld"))
    clock.set(T0 + 3 * 24 * H)  # the ignored one's deadlines pass and are reported
    await svc.fire_due()  # long after they were due: judged a grace later
    clock.advance(CATCH_UP_GRACE)
    await svc.fire_due()

    kpis = (
        await client.get(
            "/complaints/api/kpis",
            params={"shop": shop, "period": "week", "since": "2026-02-23", "until": "2026-03-08"},
        )
    ).json()
    figures = {(f["kpi"], f["label"]): f for f in kpis["figures"]}
    for kpi in ("first_response_sla_rate", "resolution_sla_rate"):
        rate = figures[(kpi, "")]
        assert (rate["period"], rate["numerator"], rate["denominator"], rate["value"]) == (
            "2026-W10",
            1,
            2,
            0.5,
        ), kpi
    assert figures[("complaint_categories", "quality_issue")]["value"] == 1
    assert figures[("complaint_categories", "wrong_item")]["value"] == 1

    timeline = (await client.get(f"/complaints/api/cases/complaint/{ignored[1]}/timeline")).json()
    kinds = [(e["kind"], e["name"]) for e in timeline]
    assert kinds[:2] == [("input", "order.paid"), ("input", "complaint.opened")]
    assert ("output", "sla.breached") in kinds
    assert {"timer_set", "timer_fired"} <= {e["kind"] for e in timeline}

    journal = svc.definition.tables.journal
    async with session_factory(svc.engine)() as session:
        details = (await session.execute(select(journal.c.detail))).scalars().all()
    assert not any("13900001111" in str(detail) for detail in details)
