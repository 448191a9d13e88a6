"""The refund ledger on the real database: refund.issued and sla.breached in the outbox, the
refunds table, dead letters for payout results it cannot place, the wait for order.paid."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from aftersales_dev.events import unique
from shared.contracts import ids, topics
from shared.messaging.store import Timers
from tests.refund_events import (
    order_paid,
    refund_failed,
    refund_requested,
    refund_settled,
)

from .conftest import T0, RefundsService

H = timedelta(hours=1)
DUE = T0 + 24 * H


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_cut_request_is_issued_for_what_remains(svc: RefundsService) -> None:
    order = unique("o")
    await svc.feed(order_paid(order, T0 - 72 * H, shipping_fee_paid=1200))
    full = [("goods", 25000), ("outbound_shipping", 1200)]
    await svc.feed(refund_requested(order, "complaint", unique("cp"), full, T0, DUE))
    await svc.feed(refund_requested(order, "return", "rt-" + order, full, T0, DUE))
    issued = await svc.emitted(order, "refund.issued")
    assert [e["data"]["amount"] for e in issued] == [26200, 0]
    second = issued[1]
    assert second["_topic"] == topics.REFUNDS
    assert second["data"]["refund_id"] == ids.refund_id("return", "rt-" + order)
    assert second["data"]["breakdown"][-1] == {"kind": "already_refunded", "amount": -26200}
    assert second["data"]["payments"] == []
    rows = sorted(await svc.refund_rows(order), key=lambda r: -r["amount"])
    assert [(r["amount"], r["cut"]) for r in rows] == [(26200, 0), (0, 26200)]
    assert rows[1]["settled_at"] is not None  # nothing to pay: closed


async def test_one_batch_with_the_order_and_two_cases_cuts_the_second(
    svc: RefundsService,
) -> None:
    order, other = unique("o"), unique("o")
    full = [("goods", 25000), ("outbound_shipping", 900)]
    await svc.feed(
        refund_requested(order, "complaint", unique("cp"), [("outbound_shipping", 900)], T0, DUE),
        order_paid(order, T0 - 72 * H, shipping_fee_paid=900),
        order_paid(other, T0 - 72 * H),
        refund_requested(order, "return", unique("rt"), full, T0, DUE),
        refund_requested(other, "return", unique("rt"), [("goods", 25000)], T0, DUE),
    )
    issued = await svc.emitted(order, "refund.issued")
    assert [e["data"]["amount"] for e in issued] == [900, 25000]
    assert issued[1]["data"]["breakdown"][-1] == {"kind": "already_refunded", "amount": -900}
    assert [e["data"]["amount"] for e in await svc.emitted(other, "refund.issued")] == [25000]
    rows = await svc.refund_rows(order)
    assert sorted(r["cut"] for r in rows) == [0, 900]


async def test_a_repeat_pays_once_and_a_conflicting_request_is_refused(
    svc: RefundsService,
) -> None:
    order = unique("o")
    await svc.feed(order_paid(order, T0 - 72 * H))
    case = unique("rt")
    asked = refund_requested(order, "return", case, [("goods", 1000)], T0, DUE)
    resent = refund_requested(order, "return", case, [("goods", 1000)], T0 + H, DUE)
    other = refund_requested(order, "return", case, [("goods", 9000)], T0, DUE)
    refused = _metric(
        "aftersales_refund_requests_refused_total",
        service="refunds",
        reason="conflicting_request",
    )
    await svc.feed(asked, asked, resent)
    await svc.feed(other)
    elsewhere = unique("o")  # the same refund_id asked for another order
    other_before = _metric(
        "aftersales_refund_requests_refused_total", service="refunds", reason="other_order"
    )
    await svc.feed(order_paid(elsewhere, T0 - 72 * H))
    await svc.feed(refund_requested(elsewhere, "return", case, [("goods", 1000)], T0, DUE))
    issued = await svc.emitted(order, "refund.issued")
    assert [e["data"]["amount"] for e in issued] == [1000]
    assert await svc.emitted(elsewhere, "refund.issued") == []
    other_order = _metric(
        "aftersales_refund_requests_refused_total", service="refunds", reason="other_order"
    )
    assert other_order == other_before + 1
    after = _metric(
        "aftersales_refund_requests_refused_total",
        service="refunds",
        reason="conflicting_request",
    )
    assert after == refused + 1


async def test_a_request_before_order_paid_waits_then_is_issued_late(
    svc: RefundsService,
) -> None:
    order = unique("o")
    waited = _metric("aftersales_refund_requests_waiting_too_long_total", service="refunds")
    await svc.feed(refund_requested(order, "return", unique("rt"), [("goods", 5000)], T0, DUE))
    assert await svc.emitted(order) == []
    svc.clock.set(T0 + H)
    await svc.fire_due()
    assert (
        _metric("aftersales_refund_requests_waiting_too_long_total", service="refunds")
        == waited + 1
    )
    svc.clock.set(DUE + H)  # order.paid arrives after the refund was due
    await svc.feed(order_paid(order, T0 - 72 * H))
    issued = await svc.emitted(order, "refund.issued")
    assert [e["data"]["amount"] for e in issued] == [5000]
    breaches = await svc.emitted(order, "sla.breached")
    assert [(b["data"]["sla"], b["data"]["due_at"]) for b in breaches] == [
        ("refund", issued[0]["data"]["due_by"])
    ]


async def test_a_failed_part_is_reissued_once_and_a_second_failure_is_reported(
    svc: RefundsService,
) -> None:
    order = unique("o")
    await svc.feed(order_paid(order, T0 - 72 * H, payments=[("card", 20000), ("alipay", 5000)]))
    case = unique("rt")
    await svc.feed(refund_requested(order, "return", case, [("goods", 25000)], T0, DUE))
    rid = ids.refund_id("return", case)
    await svc.feed(refund_failed(order, rid, "card", 20000, T0 + H))
    await svc.feed(refund_failed(order, rid, "card", 20000, T0 + H))  # reported again
    issued = await svc.emitted(order, "refund.issued")
    reissue = ids.reissue_refund_id(rid, "card")
    assert [(e["data"]["refund_id"], e["data"]["amount"]) for e in issued] == [
        (rid, 25000),
        (reissue, 20000),
    ]
    assert issued[1]["data"]["payments"] == [{"method": "balance", "amount": 20000}]
    assert issued[1]["data"]["case"] == {"type": "return", "id": case}
    await svc.feed(refund_failed(order, reissue, "balance", 20000, T0 + 2 * H))
    breaches = await svc.emitted(order, "sla.breached")
    assert [b["data"]["case"]["id"] for b in breaches] == [case]
    assert len(await svc.emitted(order, "refund.issued")) == 2
    await svc.feed(refund_settled(order, rid, T0 + 3 * H))
    rows = {r["refund_id"]: r for r in await svc.refund_rows(order)}
    assert rows[rid]["settled_at"] is not None and rows[rid]["failed"]
    assert rows[reissue]["needs_person"]


async def test_payout_results_it_cannot_place_are_dead_lettered(svc: RefundsService) -> None:
    order = unique("o")
    await svc.feed(order_paid(order, T0 - 72 * H))
    case = unique("rt")
    await svc.feed(refund_requested(order, "return", case, [("goods", 100)], T0, DUE))
    before = len(await svc.dead_letters())
    unknown = refund_settled(order, "rf-never-issued", T0)
    elsewhere = refund_failed(unique("o"), ids.refund_id("return", case), "card", 1, T0)
    wrong_method = refund_failed(order, ids.refund_id("return", case), "alipay", 1, T0)
    await svc.feed(unknown, elsewhere, wrong_method)
    letters = (await svc.dead_letters())[before:]
    assert [letter["reason"] for letter in letters] == [
        "unknown_refund",
        "unknown_refund",
        "payout_mismatch",
    ]


async def test_the_wait_timer_is_cancelled_when_the_order_comes(svc: RefundsService) -> None:
    order = unique("o")
    case = unique("rt")
    await svc.feed(refund_requested(order, "return", case, [("goods", 100)], T0, DUE))
    await svc.feed(order_paid(order, T0 - 72 * H))
    async with AsyncSession(svc.engine) as session:
        timers = Timers(session, svc.definition.tables)
        assert await timers.pending(ids.refund_id("return", case)) == []
    svc.clock.set(T0 + 2 * H)
    waited = _metric("aftersales_refund_requests_waiting_too_long_total", service="refunds")
    await svc.fire_due()
    after = _metric("aftersales_refund_requests_waiting_too_long_total", service="refunds")
    assert after == waited
