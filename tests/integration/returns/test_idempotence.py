"""No double, lost or wrong refund: redeliveries, replays with new ids, passing faults,
concurrent instances, poison events and handler errors, on the real database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY

from aftersales_dev.events import unique
from services.returns.domain.events import Decided, RefundDue, SlaBreached
from services.returns.domain.order_returns import OrderReturns
from services.returns.domain.vocabulary import Rule, Sla
from services.returns.handlers import TRANSLATIONS, _Case, _Scope
from services.returns.repository import ReturnsRepository
from shared.clock import ManualClock
from shared.contracts import CloudEvent, topics
from shared.contracts.ids import refund_id
from shared.db import UnitOfWork
from shared.messaging.context import HandlerContext

from .helpers import (
    T0,
    D,
    H,
    ReturnsService,
    cloud_event,
    delivered,
    order_paid,
    outbound_signed,
    paid_line,
    return_cancelled,
    return_requested,
    return_reviewed,
    return_shipped,
    return_signed,
    types,
)

FLOW = ["return.approved", "refund.requested", "return.completed"]


def flow(o: str, r: str, *, paid: int = 25900) -> list[dict[str, Any]]:
    """A whole no-reason return, every event of it already past (a backlog)."""
    return [
        *delivered(
            o,
            paid_at=T0 - 5 * D,
            signed_at=T0 - 3 * D,
            lines=[paid_line("L1", quantity=2, paid=paid)],
        ),
        return_requested(o, r, at=T0 - 2 * D, lines={"L1": 2}),
        return_shipped(o, r, at=T0 - 2 * D + H),
        return_signed(o, r, at=T0 - 2 * H),
    ]


def renamed(event: Mapping[str, Any]) -> dict[str, Any]:
    """The same fact sent again under a new event id (a producer replay)."""
    return {**event, "id": unique("replayed")}


async def test_duplicate_deliveries_in_one_batch_and_later_batches_refund_once(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    paid, signed, requested, shipped, back = flow(o, r)
    await svc.feed(paid, paid, signed, requested, paid, signed, requested, shipped, back, back)
    emitted = await svc.outbox(o)
    assert types(emitted) == FLOW
    assert emitted[1].data["amount"] == 25900
    assert await svc.inbox_has(e["id"] for e in (paid, signed, requested, shipped, back)) == {
        e["id"] for e in (paid, signed, requested, shipped, back)
    }

    # Redelivered later, one by one and all together (a consumer that lost its offsets).
    clock.set(T0 + H)
    await svc.feed_each(back, requested, paid)
    await svc.feed(paid, signed, requested, shipped, back)
    assert await svc.outbox(o) == emitted
    ledger = await svc.ledger(o)
    assert ledger["goods_refunded"] == 25900 and ledger["settled_returns"] == [r]


async def test_replay_of_every_event_under_new_ids_issues_no_second_refund(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    events = flow(o, r)
    await svc.feed_each(*events)
    before = await svc.outbox(o)
    assert types(before) == FLOW

    # The platform replays the whole history with fresh ids, in another order, later on.
    clock.set(T0 + 3 * D)
    await svc.feed(*(renamed(e) for e in reversed(events)))
    await svc.feed_each(*(renamed(e) for e in events))
    # A re-sent return-leg signature with another instant does not re-open the refund either.
    await svc.feed(return_signed(o, r, at=T0 + 2 * D))
    await svc.fire_due()

    after = await svc.outbox(o)
    assert after == before
    [refund] = await svc.outbox(o, "refund.requested")
    assert refund.data["refund_id"] == refund_id("return", r)
    ledger = await svc.ledger(o)
    assert ledger["units_refunded"] == {"L1": 2} and ledger["goods_refunded"] == 25900


async def test_a_passing_fault_rolls_the_whole_batch_back_and_the_retry_refunds_once(
    svc: ReturnsService,
):
    """The database fails after the refund was computed in the batch: nothing may stay, and
    the redelivered batch must issue the refund exactly once (not zero, not twice)."""
    o, r, other = unique("O"), unique("R"), unique("O")
    events = flow(o, r)
    poisoned = order_paid(other, at=T0 - D)
    failures = {poisoned["id"]: 1}
    handlers = dict(svc.definition.handlers)
    real_order_paid = handlers["order.paid"]

    async def flaky_order_paid(event: CloudEvent, ctx: HandlerContext) -> None:
        await real_order_paid(event, ctx)
        if failures.get(event.id):
            failures[event.id] -= 1
            raise ConnectionResetError("connection to the database lost")

    handlers["order.paid"] = flaky_order_paid
    processor = svc.processor_over(svc.sessions, handlers)
    batch = [svc.record(e) for e in [*events, poisoned]]
    with pytest.raises(ConnectionResetError):
        await processor.process(batch)
    assert await svc.outbox(o) == []
    assert await svc.inbox_has(e["id"] for e in events) == set()

    await processor.process(batch)  # the consumer fetches the same records again
    emitted = await svc.outbox(o)
    assert types(emitted) == FLOW
    assert emitted[1].data["amount"] == 25900


async def test_concurrent_instances_do_not_lose_a_ledger_update(
    svc: ReturnsService, service_engine: Any, clock: ManualClock, monkeypatch: Any
):
    """Two instances complete two returns of one order at once: the order lock serialises
    them, so the second sees the first one's units (333 + 667, not 333 + 666)."""
    o, r1, r2 = unique("O"), unique("R1"), unique("R2")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", quantity=3, paid=1000)]),
        return_requested(o, r1, at=T0 - D, lines={"L1": 1}),
        return_requested(o, r2, at=T0 - D, lines={"L1": 2}),
    )
    # Hold every ledger read open a moment, so both transactions are surely in flight at once
    # (without the lock, both would read the ledger before either wrote it).
    read_ledger = ReturnsRepository.ledger

    async def slow_ledger(self: ReturnsRepository, order_id: str) -> Any:
        ledger = await read_ledger(self, order_id)
        await asyncio.sleep(0.2)
        return ledger

    monkeypatch.setattr(ReturnsRepository, "ledger", slow_ledger)
    other = ReturnsService(service_engine, clock)
    await asyncio.gather(
        svc.feed(return_signed(o, r1, at=T0)),
        other.feed(return_signed(o, r2, at=T0)),
    )
    refunds = [e.data["amount"] for e in await svc.outbox(o, "refund.requested")]
    assert sorted(refunds) in ([333, 667], [334, 666])
    assert sum(refunds) == 1000
    ledger = await svc.ledger(o)
    assert ledger["units_refunded"] == {"L1": 3} and ledger["goods_refunded"] == 1000


async def test_handler_error_is_dead_lettered_and_the_rest_of_the_batch_commits(
    svc: ReturnsService, clock: ManualClock
):
    o, r, stranger = unique("O"), unique("R"), unique("O")
    paid, signed, requested, shipped, back = flow(o, r)
    # A review naming the return under another order: deterministic failure, not retried.
    wrong = return_reviewed(stranger, r, at=T0)
    batch = await svc.feed(paid, signed, requested, wrong, shipped, back)
    bad = batch[3]

    assert types(await svc.outbox(o)) == FLOW  # the events around it went through
    [letter] = await svc.outbox(stranger)
    assert letter.topic == "aftersales.deadletter.returns"
    assert letter.type == "event.deadlettered"
    assert letter.data["reason"] == "handler_error"
    assert letter.data["origin"] == {"topic": topics.RETURNS, "partition": 0, "offset": bad.offset}
    assert letter.data["key"] == stranger
    # (ids in the detail may be partly masked: digit runs are redacted like phone numbers)
    assert letter.data["detail"].startswith("ValueError: return R-")
    assert "belongs to order" in letter.data["detail"]
    assert json.loads(letter.data["value"])["id"] == wrong["id"]
    assert await svc.inbox_has([wrong["id"]]) == set()
    assert (await svc.return_state(r))["order_id"] == o

    # The same record fetched again is parked again, under the same dead-letter id.
    await svc.feed(bad)
    assert len(await svc.outbox(stranger)) == 1


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda e: json.dumps(e).encode()[:-7], "malformed_json"),
        (lambda e: _data(e, requested_at="2026-03-02T10:00:00"), "naive_timestamp"),
        (lambda e: _data(e, kind="swap"), "invalid_data"),
        (lambda e: {**e, "type": "return.teleported"}, "unknown_type"),
        (lambda e: {k: v for k, v in e.items() if k != "id"}, "missing_attribute"),
    ],
)
async def test_poison_event_is_dead_lettered_and_the_next_event_of_the_order_is_processed(
    svc: ReturnsService, clock: ManualClock, mangle: Any, reason: str
):
    o, r = unique("O"), unique("R")
    await svc.feed(order_paid(o, at=T0 - 4 * D), outbound_signed(o, at=T0 - 2 * D))
    good = return_requested(o, r, at=T0)
    broken = mangle(return_requested(o, unique("R"), at=T0))
    value = broken if isinstance(broken, bytes) else json.dumps(broken).encode()
    poison = svc.record(value, key=o, topic=topics.RETURNS)
    await svc.feed(poison, good)

    letter, approved = await svc.outbox(o)
    assert letter.data["reason"] == reason
    assert letter.data["origin"] == {
        "topic": topics.RETURNS,
        "partition": 0,
        "offset": poison.offset,
    }
    assert letter.data["service"] == "returns"
    assert (approved.type, approved.data["return_id"]) == ("return.approved", r)


async def test_negative_amount_in_order_paid_is_dead_lettered_with_its_reason(
    svc: ReturnsService, clock: ManualClock
):
    o = unique("O")
    event = order_paid(o, at=T0 - D)
    event["data"]["lines"][0]["paid_amount"] = -100
    event["data"]["payments"][0]["amount"] = -100
    await svc.feed(event)
    [letter] = await svc.outbox(o)
    assert letter.data["reason"] == "negative_amount"
    # The buyer's contact details never reach the dead-letter copy in clear.
    assert "13900001111" not in letter.data["value"]
    assert "li.lei@example.com" not in letter.data["value"]


async def test_cancellation_before_the_request_closes_the_case(
    svc: ReturnsService, clock: ManualClock
):
    """A buyer who cancels before return.requested is processed must not get a refund."""
    o, r = unique("O"), unique("R")
    await svc.feed(order_paid(o, at=T0 - 4 * D), outbound_signed(o, at=T0 - 2 * D))
    await svc.feed(return_cancelled(o, r, at=T0))
    [closed] = await svc.outbox(o)  # not a handler_error dead letter
    assert (closed.type, closed.data["rule"]) == ("return.completed", "cancelled")
    assert closed.data["customer_id"] == "C-1"  # the order's buyer: the request is not in yet
    await svc.feed(return_requested(o, r, at=T0 - H), return_signed(o, r, at=T0 + H))
    assert await svc.outbox(o, "refund.requested") == []
    assert (await svc.return_state(r))["status"] == "cancelled"


async def test_cancellation_after_approval_releases_the_units(
    svc: ReturnsService, clock: ManualClock
):
    o, r1, r2 = unique("O"), unique("R1"), unique("R2")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", quantity=1, paid=7000)]),
        return_requested(o, r1, at=T0),
    )
    await svc.at(T0 + H, return_cancelled(o, r1, at=T0 + H))
    await svc.at(T0 + 2 * H, return_requested(o, r2, at=T0 + 2 * H))
    await svc.at(T0 + D, return_signed(o, r1, at=T0 + D), return_signed(o, r2, at=T0 + D))
    assert await svc.decisions(o) == [
        ("return.approved", r1, "eligible"),
        ("return.completed", r1, "cancelled"),
        ("return.approved", r2, "eligible"),
        ("return.completed", r2, "eligible"),
    ]
    [refund] = await svc.outbox(o, "refund.requested")
    assert (refund.data["case"]["id"], refund.data["amount"]) == (r2, 7000)


async def test_metrics_count_a_replayed_refund_decision_or_breach_once(
    svc: ReturnsService, clock: ManualClock
):
    """The outbox already holding an event (a replay) means it was counted already."""

    def counted() -> tuple[float, ...]:
        samples = [
            ("aftersales_refund_requests_total", {"case_type": "return"}),
            ("aftersales_refund_requested_amount_minor_total", {"currency": "CNY"}),
            ("aftersales_decisions_total", {"type": "return.completed", "rule": "eligible"}),
            ("aftersales_sla_breaches_total", {"sla": "refund"}),
        ]
        return tuple(
            REGISTRY.get_sample_value(name, {"service": "returns", **labels}) or 0.0
            for name, labels in samples
        )

    o, r = unique("O"), unique("R")
    await svc.feed(*flow(o, r))
    [refund] = await svc.outbox(o, "refund.requested")

    async def publish_again() -> None:
        async with UnitOfWork(svc.sessions) as uow:
            ctx = HandlerContext(
                uow=uow, tables=svc.definition.tables, service="returns", now=T0, cause_id="c-1"
            )
            repo = ReturnsRepository(uow.session)
            request = await repo.return_request(r)
            assert request is not None and request.refund is not None
            returns = OrderReturns(await repo.order(o), await repo.ledger(o))
            case = _Case(repo, request, returns)
            due_by = request.refund_due_by
            assert due_by is not None
            events = [
                RefundDue(request.refund, due_by, T0),
                Decided(request.status, Rule.ELIGIBLE, "m", "m"),
                SlaBreached(Sla.REFUND, due_by, T0),
            ]
            await TRANSLATIONS.apply(ctx, _Scope(case, T0), events)
            uow.after_commit(*ctx.on_commit)  # as the consumer does
            await uow.commit()

    before = counted()
    await publish_again()  # the decision and the breach are new, the refund is a replay
    first = counted()
    assert [b - a for a, b in zip(before, first, strict=True)] == [0, 0, 1, 1]
    await publish_again()  # everything is a replay now
    assert counted() == first
    assert await svc.outbox(o, "refund.requested") == [refund]


def _data(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**event, "data": {**event["data"], **changes}}


def test_cloud_event_builder_is_valid() -> None:
    """The builders themselves follow the contract (a typo would hide behind dead letters)."""
    from shared.contracts import parse_event

    event = cloud_event("order.cancelled", {"order_id": "O", "cancelled_at": T0.isoformat()}, T0)
    assert parse_event(json.dumps(event).encode()).type == "order.cancelled"
