"""The refund ledger between returns, complaints and finance on the real broker: the stories of
SPEC 4.11 from the platform's events to `refund.issued`, payout results, a request before its
order, and duplicates."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg

from aftersales_dev.devenv import plain_dsn
from aftersales_dev.events import unique
from shared.contracts import ids, topics
from tests.polling import eventually
from tests.refund_events import (
    complaint_opened,
    complaint_resolved,
    order_paid,
    order_shipped,
    parcel_signed,
    refund_failed,
    refund_requested,
    refund_settled,
    return_requested,
)

from .conftest import T0, System

H = timedelta(hours=1)
DAY = timedelta(days=1)
MIN = timedelta(minutes=1)


async def _paid_and_delivered(system: System, **order: object) -> str:
    """A new order, paid, shipped and signed for before T0: its id."""
    order_id = unique("O")
    await system.platform.publish(
        order_paid(order_id, T0 - 5 * DAY, **order),  # type: ignore[arg-type]
        order_shipped(order_id, T0 - 4 * DAY),
        parcel_signed(order_id, T0 - 3 * DAY),
    )
    return order_id


async def _return(system: System, order_id: str, units: int, reason: str) -> str:
    return_id = unique("R")
    await system.platform.publish(
        return_requested(order_id, return_id, T0 - 2 * H, units=units, reason=reason),
        parcel_signed(order_id, T0 - H, return_id=return_id),
    )
    return return_id


async def _complaint_refund(
    system: System, order_id: str, category: str, remedy: str
) -> tuple[str, dict]:
    """A complaint about the order, opened and upheld with `remedy`: its id and the first
    refund.issued of the order."""
    complaint = unique("K")
    await system.platform.publish(
        complaint_opened(order_id, complaint, category, T0 - 30 * MIN),
        complaint_resolved(order_id, complaint, T0 - 20 * MIN, remedy),
    )
    return complaint, (await system.outputs.wait(order_id, "refund.issued"))[0]


def _kinds(refund: dict) -> dict[str, int]:
    return {item["kind"]: item["amount"] for item in refund["data"]["breakdown"]}


async def test_a_return_after_a_complaint_refund_of_the_same_goods_is_issued_for_nothing(
    system: System,
) -> None:
    order = await _paid_and_delivered(system, lines=[(1, 25000)], shipping_fee_paid=1200)
    complaint, first = await _complaint_refund(system, order, "not_received", "refund")
    assert first["data"]["case"] == {"type": "complaint", "id": complaint}
    assert first["data"]["amount"] == 26200
    assert _kinds(first)["goods"] == 25000 and _kinds(first)["outbound_shipping"] == 1200

    return_id = await _return(system, order, 1, "quality_issue")
    refunds = await system.outputs.wait(order, "refund.issued", 2)
    second = refunds[1]["data"]
    assert second["refund_id"] == ids.refund_id("return", return_id)
    assert second["amount"] == 0 and second["payments"] == []
    assert {"kind": "already_refunded", "amount": -26200} in second["breakdown"]


async def test_the_outbound_fee_is_refunded_once_across_a_complaint_and_a_return(
    system: System,
) -> None:
    order = await _paid_and_delivered(system, lines=[(1, 25000)], shipping_fee_paid=900)
    _, refund = await _complaint_refund(system, order, "logistics_delay", "none")
    delay = refund["data"]
    assert (delay["amount"], delay["breakdown"]) == (
        900,
        [{"kind": "outbound_shipping", "amount": 900}],
    )
    await _return(system, order, 1, "quality_issue")
    full = (await system.outputs.wait(order, "refund.issued", 2))[1]["data"]
    assert full["amount"] == 25000
    assert {"kind": "outbound_shipping", "amount": 900} in full["breakdown"]
    assert {"kind": "already_refunded", "amount": -900} in full["breakdown"]
    assert sum(p["amount"] for r in (delay, full) for p in r["payments"]) == 25900


async def test_three_units_returned_one_at_a_time_give_back_each_method_its_charge(
    system: System,
) -> None:
    order = await _paid_and_delivered(
        system, lines=[(3, 5000)], payments=[("balance", 500), ("card", 4500)]
    )
    for _ in range(3):
        await _return(system, order, 1, "dislike")
    refunds = await system.outputs.wait(order, "refund.issued", 3)
    assert sorted(r["data"]["amount"] for r in refunds) == [1666, 1667, 1667]
    paid_back: dict[str, int] = {}
    for refund in refunds:
        for part in refund["data"]["payments"]:
            paid_back[part["method"]] = paid_back.get(part["method"], 0) + part["amount"]
    assert paid_back == {"balance": 500, "card": 4500}  # never balance 5.01


async def test_a_refused_payout_is_reissued_once_then_left_for_a_person(system: System) -> None:
    order = await _paid_and_delivered(
        system, lines=[(1, 10000)], payments=[("card", 7000), ("alipay", 3000)]
    )
    return_id = await _return(system, order, 1, "dislike")
    refund = (await system.outputs.wait(order, "refund.issued"))[0]["data"]
    assert refund["payments"] == [
        {"method": "card", "amount": 7000},
        {"method": "alipay", "amount": 3000},
    ]
    rid = refund["refund_id"]
    await system.platform.publish(refund_failed(order, rid, "card", 7000, T0 + H))
    reissue = (await system.outputs.wait(order, "refund.issued", 2))[1]["data"]
    assert reissue["refund_id"] == ids.reissue_refund_id(rid, "card")
    assert reissue["case"] == {"type": "return", "id": return_id}
    assert reissue["payments"] == [{"method": "balance", "amount": 7000}]
    await system.platform.publish(
        refund_settled(order, rid, T0 + 2 * H),
        refund_failed(order, reissue["refund_id"], "balance", 7000, T0 + 3 * H),
    )
    breach = (await system.outputs.wait(order, "sla.breached"))[0]["data"]
    assert (breach["sla"], breach["case"]) == ("refund", {"type": "return", "id": return_id})
    assert len(system.outputs.of(order, "refund.issued")) == 2  # nothing issued a third time


async def test_a_request_before_its_order_waits_and_duplicates_pay_once(system: System) -> None:
    order = unique("O")
    case = unique("K")
    asked = refund_requested(
        order, "complaint", case, [("goods", 4000)], T0, T0 + DAY, customer_id="c-refunds"
    )
    again = {**asked, "id": unique("evt")}  # the same request under another event id
    other = refund_requested(order, "complaint", case, [("goods", 9000)], T0, T0 + DAY)
    await system.platform.publish(asked, asked, again, topic=topics.REFUND_REQUESTS)

    async def waiting() -> bool:
        conn = await asyncpg.connect(plain_dsn(system.settings.database_url))
        try:
            state = await conn.fetchval(
                "SELECT state FROM refunds.ledgers WHERE order_id = $1 AND NOT paid", order
            )
        finally:
            await conn.close()
        return state is not None and len(json.loads(state)["waiting"]) == 1

    await eventually(waiting, what="the request waiting for its order")
    assert system.outputs.of(order, "refund.issued") == []
    await system.platform.publish(order_paid(order, T0 - DAY, lines=[(1, 10000)]))
    await system.platform.publish(other, topic=topics.REFUND_REQUESTS)
    refund = (await system.outputs.wait(order, "refund.issued"))[0]["data"]
    assert (refund["refund_id"], refund["amount"]) == (ids.refund_id("complaint", case), 4000)
    # A later marker on the same partition: once it is issued, the conflict was handled too.
    marker = refund_requested(order, "complaint", unique("K"), [("goods", 1)], T0, T0 + DAY)
    await system.platform.publish(marker, topic=topics.REFUND_REQUESTS)
    issued = await system.outputs.wait(order, "refund.issued", 2)
    assert [r["data"]["amount"] for r in issued] == [4000, 1]


async def test_an_unknown_refund_on_payouts_is_dead_lettered(system: System) -> None:
    order = unique("O")
    await system.platform.publish(refund_settled(order, "rf-nobody-issued-this", T0))
    letter = await _dead_letter(system, order)
    assert letter["reason"] == "unknown_refund"
    assert letter["origin"]["topic"] == topics.PAYOUTS


async def _dead_letter(system: System, order: str) -> dict:
    def found() -> list[dict]:
        return [d for d in system.outputs.dead_letters() if d.get("key") == order]

    return (await eventually(found, what="a dead letter"))[0]
