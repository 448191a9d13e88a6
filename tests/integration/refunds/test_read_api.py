"""The refund ledger's read API on the real database: an order's ledger, and refund on-time
rates by issue and by settlement per shop and week."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from aftersales_dev.events import unique
from shared.clock import ManualClock
from shared.contracts import ids
from shared.db import session_factory
from tests.read_api import read_api_client
from tests.refund_events import order_paid, refund_requested, refund_settled

from .conftest import T0, RefundsService

H = timedelta(hours=1)
DUE = T0 + 24 * H


@pytest.fixture
def client(svc: RefundsService, clock: ManualClock) -> httpx.AsyncClient:
    return read_api_client(svc.definition, session_factory(svc.engine), clock)


def _paid(order: str, shop: str) -> dict[str, Any]:
    paid = order_paid(order, T0 - 72 * H)
    paid["data"]["shop_id"] = shop
    return paid


async def test_an_order_s_ledger_and_the_on_time_rates_of_its_shop(
    svc: RefundsService, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    shop, early, late = unique("S"), unique("O"), unique("O")
    early_case, late_case = unique("rt"), unique("rt")
    # Issued on time (at T0, due T0+24h), settled late (T0+30h).
    await svc.feed(_paid(early, shop), _paid(late, shop))
    await svc.feed(refund_requested(early, "return", early_case, [("goods", 9000)], T0, DUE))
    clock.set(T0 + 30 * H)
    early_refund = ids.refund_id("return", early_case)
    await svc.feed(refund_settled(early, early_refund, T0 + 30 * H))
    # Asked for after its due time: issued late; not settled yet.
    await svc.feed(refund_requested(late, "return", late_case, [("goods", 5000)], T0 + 30 * H, DUE))

    ledger = (await client.get(f"/refunds/api/orders/{early}/ledger")).json()
    assert (ledger["paid"], ledger["currency"], ledger["goods_total"]) == (True, "CNY", 25000)
    [refund] = ledger["refunds"]
    assert (refund["refund_id"], refund["amount"], refund["case_id"]) == (
        early_refund,
        9000,
        early_case,
    )
    assert (refund["on_time"], refund["settled_on_time"]) == (True, False)
    assert ledger["goods_given"] == 9000
    missing = await client.get(f"/refunds/api/orders/{unique('O')}/ledger")
    assert missing.status_code == 404 and "knows no order" in missing.json()["detail"]

    kpis = (
        await client.get(
            "/refunds/api/kpis",
            params={"shop": shop, "period": "month", "since": "2026-01-01", "until": "2026-12-31"},
        )
    ).json()
    figures = {f["kpi"]: f for f in kpis["figures"]}
    by_issue, by_settlement = (
        figures["refund_on_time_by_issue"],
        figures["refund_on_time_by_settlement"],
    )
    assert (by_issue["period"], by_issue["numerator"], by_issue["denominator"]) == (
        T0.strftime("%Y-%m"),
        1,
        2,
    )
    assert by_issue["value"] == 0.5
    # Of the settled refunds only: the one settled after its due time.
    assert (by_settlement["numerator"], by_settlement["denominator"]) == (0, 1)
    bad = await client.get("/refunds/api/kpis", params={"period": "day"})
    assert bad.status_code == 422
    reversed_range = {"since": "2026-02-01", "until": "2026-01-31"}
    backwards = await client.get("/refunds/api/kpis", params=reversed_range)
    assert backwards.status_code == 422
    assert backwards.json() == {"detail": "since is after until"}
