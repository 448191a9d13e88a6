"""The returns service layer's outputs, fast: a return driven through the domain and its events
turned into outbox rows and timers by the service's translations, on the in-memory outbox and
timers (shared.messaging.memory) instead of PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prometheus_client import REGISTRY

from services.returns.handlers import TRANSLATIONS, _Case, _Scope
from shared.contracts import ids, topics
from shared.messaging.memory import MemoryUnitOfWork

from . import SOON, Case, order

T = SOON + timedelta(days=1)
H = timedelta(hours=1)


def run(uow: MemoryUnitOfWork, case: Case, events: list, *, cause: str = "e-1") -> None:
    """What a returns handler does after the domain decided: translate, queue, count."""
    request = case.get()
    ctx = uow.context(now=T, cause_id=cause)
    scope = _Scope(_Case(None, request, case.returns), T)  # type: ignore[arg-type]
    asyncio.run(TRANSLATIONS.apply(ctx, scope, events))
    uow.commit(ctx)


def requests_counted() -> float:
    labels = {"service": "returns", "case_type": "return"}
    return REGISTRY.get_sample_value("aftersales_refund_requests_total", labels) or 0.0


def test_an_approved_return_is_decided_on_its_topic_keyed_by_the_order() -> None:
    uow, case = MemoryUnitOfWork("returns"), Case(order())
    run(uow, case, case.submit())
    [decision] = uow.outbox.of_type("return.approved")
    assert (decision.topic, decision.key) == (topics.RETURN_DECISIONS, "o1")
    assert decision.event.data.customer_id == "c1"  # type: ignore[union-attr]
    assert decision.event.correlationid == "r1"


def test_a_signed_return_asks_the_ledger_once_with_its_refund_id_and_cancels_its_timer() -> None:
    uow, case = MemoryUnitOfWork("returns"), Case(order())
    run(uow, case, case.submit())
    before = requests_counted()
    events = case.sign(T, now=T)
    run(uow, case, events, cause="e-2")
    run(uow, case, events, cause="e-2")  # the same cause again: a replay finds the rows
    [requested] = uow.outbox.of_type("refund.requested")
    assert (requested.topic, requested.key) == (topics.REFUND_REQUESTS, "o1")
    assert requested.event.id == ids.event_id("refund.requested", ids.refund_id("return", "r1"))
    assert requested.event.data.amount == 1000  # type: ignore[union-attr]
    assert requests_counted() == before + 1
    assert [t.kind for t in uow.timers.pending()] == []  # the return is done: nothing waits


def test_a_return_waiting_for_its_order_sets_a_timer_locked_by_the_order() -> None:
    uow, case = MemoryUnitOfWork("returns"), Case(None)
    run(uow, case, case.submit(requested_at=SOON))
    [timer] = uow.timers.pending()
    assert (timer.kind, timer.ref, timer.lock_key) == ("signature_wait", "r1", "o1")
    assert timer.due_at == SOON + 48 * H
    [pending] = uow.outbox.of_type("return.pending")
    assert pending.event.data.waiting_for == "order"  # type: ignore[union-attr]
