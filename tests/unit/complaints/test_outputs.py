"""The complaints service layer's outputs, fast: a complaint driven through the domain and its
events turned into outbox rows and timers by the service's translations, on the in-memory
outbox and timers (shared.messaging.memory) instead of PostgreSQL."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from services.complaints.handlers import TRANSLATIONS, _Scope
from shared.contracts import ids, topics
from shared.messaging.memory import MemoryUnitOfWork

from . import T0, Case, facts, paid_order


def run(uow: MemoryUnitOfWork, case: Case, events: list, *, cause: str = "e-1") -> None:
    """What a complaints handler does after the domain decided: translate, queue, count."""
    ctx = uow.context(now=T0, cause_id=cause)
    asyncio.run(TRANSLATIONS.apply(ctx, _Scope(case.order, case.complaint), events))
    uow.commit(ctx)


def coupons_counted() -> float:
    labels = {"service": "complaints", "type": "coupon.granted", "rule": "quality_issue"}
    return REGISTRY.get_sample_value("aftersales_decisions_total", labels) or 0.0


def test_an_opened_complaint_sets_its_response_timer_locked_by_the_order() -> None:
    uow, case = MemoryUnitOfWork("complaints"), Case()
    run(uow, case, case.open("service_attitude"))
    kinds = {(t.kind, t.ref, t.lock_key) for t in uow.timers.pending()}
    assert ("complaint_first_response", "k1", "o1") in kinds


def test_an_upheld_quality_complaint_grants_its_one_coupon_counted_once() -> None:
    uow = MemoryUnitOfWork("complaints")
    case = Case(order=paid_order(facts(8000, shipping_fee_paid=800)))
    run(uow, case, case.open("quality_issue"))
    before = coupons_counted()
    events = case.resolve("upheld", "none")
    run(uow, case, events, cause="e-2")
    run(uow, case, events, cause="e-3")  # another cause, same coupon: one event, one count
    [coupon] = uow.outbox.of_type("coupon.granted")
    assert (coupon.topic, coupon.key) == (topics.COUPONS, "o1")
    assert coupon.event.data.coupon_id == ids.coupon_id("k1")  # type: ignore[union-attr]
    assert coupon.event.data.value == 500  # the 5 CNY floor  # type: ignore[union-attr]
    assert coupons_counted() == before + 1
    assert [t for t in uow.timers.pending() if t.ref == "k1"] == []  # resolved: nothing waits
