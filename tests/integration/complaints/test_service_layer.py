"""The complaints service layer on the real database, records fed in a chosen order: lock keys,
parked low scores, redeliveries, the timer scheduler, and no personal data at rest."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from prometheus_client import REGISTRY
from sqlalchemy import select, text

from services.complaints import tables
from services.complaints.domain.events import (
    CouponAwaitingApproval,
    CouponGranted,
    Escalated,
    RefundDue,
    SlaBreached,
)
from services.complaints.domain.rules import (
    CaseKey,
    CaseType,
    EscalationReason,
    Priority,
    Sla,
    TimerKind,
)
from services.complaints.handlers import TRANSLATIONS, _Scope, complaint_lock, lock_keys
from services.complaints.repository import ComplaintsRepository
from shared.catchup import CATCH_UP_GRACE
from shared.clock import ManualClock
from shared.contracts import ids, parse_event
from shared.contracts.ids import coupon_id
from shared.db import UnitOfWork, session_factory
from shared.messaging.context import HandlerContext
from shared.messaging.scheduler import TimerScheduler
from shared.messaging.store import Timer

from ...e2e.complaints.helpers import (
    MIN,
    T0,
    H,
    opened,
    order_paid,
    order_shipped,
    resolved,
    satisfaction_low,
    unique,
)
from .harness import ComplaintsService


def types(outbox: list[dict]) -> list[str]:
    return [
        e["data"]["template"] if e["type"] == "notification.requested" else e["type"]
        for e in outbox
    ]


def test_lock_keys_name_what_each_handler_touches() -> None:
    def keys(event: dict) -> list[str]:
        return list(lock_keys(parse_event(json.dumps(event).encode())))

    assert keys(opened("K1", "O1", "C1", "other", at=T0)) == ["O1", complaint_lock("K1")]
    assert keys(resolved("K1", "O1", at=T0)) == ["O1", complaint_lock("K1")]
    assert keys(order_paid("O1", "C1")) == ["O1"]
    low = satisfaction_low("C1", ["K1", "K2"], at=T0)
    low["data"]["cases"].append({"type": "return", "id": "R1"})
    assert keys(low) == ["C1", complaint_lock("K1"), complaint_lock("K2")]


async def test_a_low_score_for_an_unknown_complaint_is_parked_until_it_resolves(
    svc: ComplaintsService,
) -> None:
    o, c, k = unique("O"), unique("C"), unique("K")
    await svc.feed(satisfaction_low(c, [k], at=T0))
    assert await svc.outbox(o) == []
    async with svc.engine.connect() as conn:
        parked = await conn.scalar(
            select(tables.parked_low_scores.c.score).where(
                tables.parked_low_scores.c.complaint_id == k
            )
        )
    assert parked == 1
    await svc.feed(order_paid(o, c), order_shipped(o, at=T0 - 24 * H))
    await svc.feed(opened(k, o, c, "other", at=T0 - 10 * MIN))
    assert (await svc.complaint(k))["status"] == "open"  # the score waits for the resolution
    await svc.feed(resolved(k, o, at=T0 - 5 * MIN, outcome="not_upheld"))
    state = await svc.complaint(k)
    assert (state["status"], state["round"], state["priority"]) == ("reopened", 1, "urgent")
    assert types(await svc.outbox(o)) == [
        "complaint.acknowledged",
        "complaint.escalated",
        "complaint.reopened",
    ]
    async with svc.engine.connect() as conn:
        left = await conn.scalar(
            text("SELECT count(*) FROM complaints.parked_low_scores WHERE complaint_id = :k"),
            {"k": k},
        )
    assert left == 0


async def test_a_low_score_for_a_return_or_late_shipment_asks_for_a_call_back(
    svc: ComplaintsService,
) -> None:
    o, c, r = unique("O"), unique("C"), unique("R")
    low = satisfaction_low(c, [], at=T0)
    low["data"]["cases"] = [{"type": "return", "id": r}, {"type": "late_shipment", "id": o}]
    await svc.feed(low)
    buyer, order = await svc.outbox(c), await svc.outbox(o)
    assert types(buyer) == ["case.escalated", "case.priority_callback", "case.escalated"]
    assert types(order) == ["case.priority_callback"]
    escalations = [e["data"] for e in buyer if e["type"] == "case.escalated"]
    callback_id = low["data"]["callback_id"]
    for data, case in zip(escalations, low["data"]["cases"], strict=True):
        assert data["case"] == case
        assert (data["reason"], data["priority"]) == ("low_satisfaction", "urgent")
        assert (data["score"], data["callback_id"], data["customer_id"]) == (1, callback_id, c)
        assert datetime.fromisoformat(data["due_at"]) == svc.clock.now() + 2 * H
    assert "order_id" not in escalations[0] or escalations[0]["order_id"] is None
    assert escalations[1]["order_id"] == o
    notices = [e["data"] for e in buyer + order if e["type"] == "notification.requested"]
    assert {(n["customer_id"], n["order_id"]) for n in notices} == {(c, None), (c, o)}
    # The same callback again, under another event id: nothing new.
    again = satisfaction_low(c, [], at=T0 + MIN)
    again["data"].update(callback_id=callback_id, cases=low["data"]["cases"])
    await svc.feed(again)
    assert len(await svc.outbox(c)) == 3 and len(await svc.outbox(o)) == 1


async def test_redeliveries_and_repeats_have_no_second_effect(svc: ComplaintsService) -> None:
    o, c, k = unique("O"), unique("C"), unique("K")
    opening, resolution = opened(k, o, c, "wrong_item", at=T0 - H), resolved(k, o, at=T0)
    await svc.feed(order_paid(o, c), resolution, opening)
    await svc.feed(resolution, opening)  # the same ids again
    await svc.feed(resolved(k, o, at=T0 + MIN))  # another id, same complaint
    outbox = await svc.outbox(o)
    assert types(outbox) == ["coupon.granted", "complaint.compensated"]
    assert outbox[0]["data"]["coupon_id"] == coupon_id(k)
    assert outbox[0]["correlationid"] == k
    assert outbox[0]["causationid"] == opening["id"]  # the opening completed the picture


async def test_a_complaint_about_an_order_another_buyer_paid_is_heard_but_not_paid(
    svc: ComplaintsService,
) -> None:
    """The complainant is not the buyer of order.paid: acknowledged, then on an upheld
    resolution no coupon and no refund request (the ledger would refuse it), a supervisor and
    a notice saying so; whether order.paid came before the complaint or after its resolution."""
    buyer, other = unique("C"), unique("C")
    before, after = unique("O"), unique("O")
    k1, k2 = unique("K"), unique("K")
    await svc.feed(
        order_paid(before, buyer, shipping_fee_paid=800),
        opened(k1, before, other, "logistics_delay", at=T0 - H),
        resolved(k1, before, at=T0),
    )
    await svc.feed(
        opened(k2, after, other, "not_received", at=T0 - H),
        resolved(k2, after, at=T0, remedy="refund"),
    )
    assert types(await svc.outbox(after)) == ["complaint.acknowledged"]  # waits for the order
    await svc.feed(order_paid(after, buyer, shipping_fee_paid=800))
    for order_id, complaint_id in ((before, k1), (after, k2)):
        outbox = await svc.outbox(order_id)
        assert types(outbox) == [
            "complaint.acknowledged",
            "complaint.escalated",
            "complaint.compensated",
        ], order_id
        escalation, notice = outbox[1]["data"], outbox[2]["data"]
        assert (escalation["reason"], escalation["priority"]) == ("customer_mismatch", "high")
        assert escalation["customer_id"] == other and escalation["complaint_id"] == complaint_id
        assert notice["customer_id"] == other and notice["params"]["not_buyer"] == 1
        assert (await svc.complaint(complaint_id))["compensation"]["not_buyer"] is True
    assert await svc.outbox(other) == []  # nothing keyed by the complainant either


async def test_metrics_count_each_emitted_event_once_not_its_replays(
    svc: ComplaintsService,
) -> None:
    o, c, k = unique("O"), unique("C"), unique("K")
    await svc.feed(order_paid(o, c), opened(k, o, c, "quality_issue", at=T0 - H))
    case = CaseKey(CaseType.COMPLAINT, k)
    events = [
        RefundDue(case, 500, "CNY", (("goods", 500),), T0, T0),
        SlaBreached(case, Sla.FIRST_RESPONSE, T0 - MIN, T0),
        Escalated(EscalationReason.FIRST_RESPONSE_OVERDUE, Priority.HIGH, T0 - MIN, T0, 0),
        CouponGranted(500, "CNY", T0, T0 + timedelta(days=30), "quality_issue"),
        CouponAwaitingApproval(500, "CNY", 9800, 10000, 30, T0),
    ]

    def counted() -> list[float]:
        samples = [
            ("aftersales_refund_requests_total", {"case_type": "complaint"}),
            ("aftersales_refund_requested_amount_minor_total", {"currency": "CNY"}),
            ("aftersales_sla_breaches_total", {"sla": "complaint_first_response"}),
            (
                "aftersales_decisions_total",
                {"type": "complaint.escalated", "rule": "first_response_overdue"},
            ),
            ("aftersales_decisions_total", {"type": "coupon.granted", "rule": "quality_issue"}),
            (
                "aftersales_decisions_total",
                {"type": "compensation.pending", "rule": "quality_issue"},
            ),
        ]
        return [
            REGISTRY.get_sample_value(name, {"service": "complaints", **labels}) or 0.0
            for name, labels in samples
        ]

    async def emit_all() -> None:
        async with UnitOfWork(session_factory(svc.engine)) as uow:
            ctx = HandlerContext(
                uow=uow, tables=svc.definition.tables, service="complaints", now=T0, cause_id="x"
            )
            repo = ComplaintsRepository(uow.session)
            order, complaint = await repo.order(o), await repo.complaint(k)
            assert order is not None and complaint is not None
            await TRANSLATIONS.apply(ctx, _Scope(order, complaint), events)
            uow.after_commit(*ctx.on_commit)  # what the consumer does for a handler that ran
            await uow.commit()

    before = counted()
    await emit_all()
    first = counted()
    assert [b - a for a, b in zip(before, first, strict=True)] == [1, 500, 1, 1, 1, 1]
    await emit_all()  # a replay: the outbox holds every one of them
    assert counted() == first


async def test_the_late_shipment_timer_fires_through_the_scheduler(
    svc: ComplaintsService, clock: ManualClock
) -> None:
    o, c = unique("O"), unique("C")
    await svc.feed(order_paid(o, c, at=T0 - 71 * H, goods=(10000, 5000)))
    await svc.fire_due()
    assert await svc.outbox(o) == []  # due in an hour
    clock.advance(H)
    await svc.fire_due()
    assert await svc.outbox(o) == []  # judged a grace later, for an order.shipped on its way
    clock.advance(CATCH_UP_GRACE)
    await svc.fire_due()  # the database is shared: other tests' due timers fire too
    outbox = await svc.outbox(o)
    assert types(outbox) == ["refund.requested", "complaint.apology_late_shipment"]
    refund = outbox[0]["data"]
    assert refund["case"] == {"type": "late_shipment", "id": o}
    assert refund["amount"] == 750
    assert refund["breakdown"] == [{"kind": "compensation", "amount": 750}]
    # the id the late-shipment refund always had: finance deduplicates on it
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales:ids:v1")
    pinned = uuid.uuid5(namespace, json.dumps(["refund", "late_shipment", o]))
    assert refund["refund_id"] == f"rf-{pinned}" == ids.refund_id("late_shipment", o)
    assert refund["requested_by"] == "complaints" and "payments" not in refund
    assert outbox[0]["causationid"].startswith("timer:late_shipment:")
    await svc.feed(order_shipped(o, at=T0 - 70 * H))  # reported late: cannot claw back
    clock.advance(timedelta(days=1))
    await svc.fire_due()
    assert len(await svc.outbox(o)) == 2


async def test_a_late_shipment_timer_that_failed_once_still_asks_for_the_refund(
    svc: ComplaintsService, clock: ManualClock
) -> None:
    # The order keeps its timer's due time and takes a timer due at another for stale: the
    # retry after a failure must come as the timer it set.
    o, c = unique("O"), unique("C")
    await svc.feed(order_paid(o, c, at=T0 - 71 * H, goods=(10000, 5000)))
    handlers = dict(svc.definition.timer_handlers)
    handler = handlers[TimerKind.LATE_SHIPMENT.value]
    failures = [ValueError("a bug, fixed since"), ValueError("a bug, fixed since")]

    async def failing_once(timer: Timer, ctx: HandlerContext) -> None:
        if timer.ref == o and failures:
            raise failures.pop()  # fired with its batch, then alone: one attempt
        await handler(timer, ctx)

    handlers[TimerKind.LATE_SHIPMENT.value] = failing_once
    scheduler = TimerScheduler(
        service=svc.definition.name,
        sessions=svc.sessions,
        tables=svc.definition.tables,
        handlers=handlers,
        clock=clock,
    )
    clock.advance(H + CATCH_UP_GRACE)
    await scheduler.run_all_due()
    assert await svc.outbox(o) == []
    clock.advance(5 * MIN)  # past its backoff
    await scheduler.run_all_due()
    outbox = await svc.outbox(o)
    assert types(outbox) == ["refund.requested", "complaint.apology_late_shipment"]
    assert outbox[0]["data"]["amount"] == 750


async def test_no_personal_data_is_stored(svc: ComplaintsService) -> None:
    o, c, k = unique("O"), unique("C"), unique("K")
    await svc.feed(
        order_paid(o, c),
        opened(k, o, c, "quality_issue", at=T0 - H),
        resolved(k, o, at=T0),
    )
    async with svc.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT state::text FROM complaints.orders WHERE order_id = :o "
                "UNION ALL SELECT state::text FROM complaints.complaints WHERE complaint_id = :k "
                "UNION ALL SELECT state::text FROM complaints.budgets WHERE customer_id = :c "
                "UNION ALL SELECT convert_from(payload, 'UTF8') FROM complaints.outbox "
                "WHERE key = :o"
            ),
            {"o": o, "k": k, "c": c},
        )
        stored = " ".join(row[0] for row in rows)
    assert c in stored and k in stored
    for personal in ("13900001111", "Li Lei", "li.lei@example.com", "call me"):
        assert personal not in stored
