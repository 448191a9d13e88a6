"""The returns service's read API on the real database: cases found by order, return and buyer
id, a case's timeline from its journal and timers, open deadlines, KPIs per shop and period;
and no personal data in what the journal keeps."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from aftersales_dev.events import unique
from shared.clock import ManualClock
from tests.read_api import read_api_client

from .helpers import (
    T0,
    D,
    H,
    ReturnsService,
    order_paid,
    outbound_signed,
    paid_line,
    return_requested,
    return_reviewed,
)


@pytest.fixture
def client(svc: ReturnsService, clock: ManualClock) -> httpx.AsyncClient:
    return read_api_client(svc.definition, svc.sessions, clock, svc.policy)


def _paid(order_id: str, shop: str, customer: str) -> dict[str, Any]:
    paid = order_paid(
        order_id,
        at=T0 - 25 * D,
        lines=[paid_line("L1", paid=5000, category="shoes")],
        payments=[("wechat", 5000)],
        customer_id=customer,
    )
    paid["data"]["shop_id"] = shop
    return paid


async def test_a_reviewed_return_read_back(
    svc: ReturnsService, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    o, r, shop, buyer = unique("O"), unique("R"), unique("S"), unique("C")
    await svc.feed(_paid(o, shop, buyer), outbound_signed(o, at=T0 - 20 * D))
    await svc.feed(
        return_requested(
            o, r, at=T0, reason="quality_issue", evidence=["https://img/a.jpg"], customer_id=buyer
        )
    )

    # Found by order, by return and by buyer: the one return case.
    for q in (o, r, buyer):
        found = (await client.get("/returns/api/cases", params={"q": q})).json()
        assert [(c["case_type"], c["case_id"], c["order_id"]) for c in found] == [("return", r, o)]
    assert (await client.get("/returns/api/cases", params={"q": unique("X")})).json() == []

    # The review deadline is open, not yet breached.
    deadlines = (await client.get("/returns/api/deadlines")).json()
    [review] = [d for d in deadlines if d["ref"] == r]
    assert (review["kind"], review["breached"], review["overdue_seconds"]) == (
        "review_sla",
        False,
        0,
    )

    # Past due: the breach is reported, the deadline says by how much until it fires.
    clock.set(T0 + 27 * H + 2 * H)
    [review] = [d for d in (await client.get("/returns/api/deadlines")).json() if d["ref"] == r]
    assert (review["breached"], review["overdue_seconds"]) == (True, 2 * 3600)
    await svc.fire_due()
    reviewed_at = T0 + 3 * D
    await svc.at(reviewed_at, return_reviewed(o, r, at=reviewed_at, decision="approve"))
    assert r not in {d["ref"] for d in (await client.get("/returns/api/deadlines")).json()}

    timeline = (await client.get(f"/returns/api/cases/return/{r}/timeline")).json()
    journal = [(e["kind"], e["name"]) for e in timeline if not e["kind"].startswith("timer")]
    assert journal == [
        ("input", "order.paid"),
        ("input", "parcel.signed"),
        ("input", "return.requested"),
        ("output", "return.pending"),
        ("output", "sla.breached"),
        ("input", "return.reviewed"),
        ("output", "return.approved"),
    ]
    pending = next(e for e in timeline if e["name"] == "return.pending")
    assert pending["rule"] == "quality_window_expired"
    assert pending["message"] and pending["message_en"]
    approved = next(e for e in timeline if e["name"] == "return.approved")
    assert approved["rule"] == "reviewed_approve"
    assert {"timer_set", "timer_fired"} <= {
        e["kind"] for e in timeline if e["name"] == "review_sla"
    }
    journal_times = [e["at"] for e in timeline if not e["kind"].startswith("timer")]
    assert journal_times == sorted(journal_times)

    kpis = (
        await client.get(
            "/returns/api/kpis",
            params={"shop": shop, "period": "week", "since": "2026-02-01", "until": "2026-03-31"},
        )
    ).json()
    figures = {(f["kpi"], f["period"], f["label"]): f for f in kpis["figures"]}
    review_rate = figures[("return_review_sla_rate", "2026-W10", "")]
    assert (review_rate["value"], review_rate["numerator"], review_rate["denominator"]) == (
        0.0,
        0,
        1,
    )
    assert figures[("return_reasons_by_category", "all", "quality_issue / shoes")]["value"] == 1
    assert figures[("return_reasons_by_sku", "all", "quality_issue / SKU-L1")]["value"] == 1
    other_shop = (await client.get("/returns/api/kpis", params={"shop": unique("S")})).json()
    assert other_shop["figures"] == []


async def test_the_journal_keeps_no_personal_data(svc: ReturnsService) -> None:
    o = unique("O")
    await svc.feed(_paid(o, "S-1", unique("C")))
    journal = svc.definition.tables.journal
    async with svc.sessions() as session:
        [detail] = (
            await session.execute(select(journal.c.detail).where(journal.c.order_id == o))
        ).scalars()
    text = str(detail)
    for personal in ("Li Lei", "13900001111", "li.lei@example.com", "customer"):
        assert personal not in text
    assert detail["shop_id"] == "S-1"
    assert detail["lines"] == [
        {"line_id": "L1", "sku": "SKU-L1", "category": "shoes", "quantity": 1}
    ]
