"""A fetched batch reads what its events name once and writes each table once at commit
(services/complaints/repository.py): its outcome must be exactly that of one event per batch
with every read a query (no batch cache at all), and its statements must not grow with it."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from services.complaints import repository, tables
from services.complaints.domain.model import Complaint
from tests.harness import statements_by_kind

from ...e2e.complaints.helpers import (
    MIN,
    T0,
    H,
    opened,
    order_paid,
    order_shipped,
    resolved,
    responded,
    reviewed,
    satisfaction_low,
    unique,
)
from .harness import ComplaintsService

BIG = (100000,)  # a quality issue's coupon is then the largest (5000): two fill the budget


def waiting(o: str, c: str, k: str) -> list[dict[str, Any]]:
    """Resolved before it is opened, both before the order is paid: order.paid compensates
    the complaint that waited for it (the order's complaints read from the copy)."""
    return [
        resolved(k, o, at=T0 - 30 * MIN),
        opened(k, o, c, "logistics_delay", at=T0 - H),
        order_paid(o, c, at=T0 - 48 * H, shipping_fee_paid=800),
        order_shipped(o, at=T0 - 20 * H),
    ]


def over_budget(c: str, flows: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Three upheld quality complaints of one buyer: the third coupon is over the budget and
    waits for a supervisor, who approves it."""
    events: list[dict[str, Any]] = []
    for o, k in flows:
        events += [
            order_paid(o, c, goods=BIG),
            opened(k, o, c, "quality_issue", at=T0 - H),
            resolved(k, o, at=T0 - 10 * MIN),
        ]
    o, k = flows[-1]
    return [*events, reviewed(k, o, "approve", at=T0 - 5 * MIN)]


def low_score(c: str, ks: list[str], callback_id: str, *, at: datetime) -> dict[str, Any]:
    low = satisfaction_low(c, ks, at=at)
    low["data"]["callback_id"] = callback_id
    return low


def parked(o: str, c: str, k: str, cb: str) -> list[dict[str, Any]]:
    """A low score before its complaint, kept (parked) and applied once it is resolved; the
    same score again once it is reopened changes nothing."""
    return [
        low_score(c, [k], cb, at=T0 - 2 * H),
        order_paid(o, c),
        opened(k, o, c, "wrong_item", at=T0 - H),
        responded(k, o, at=T0 - 50 * MIN),
        resolved(k, o, at=T0 - 10 * MIN, outcome="not_upheld"),
        low_score(c, [k], cb, at=T0 - MIN),
    ]


def normalised(events: list[dict[str, Any]], roles: dict[str, str]) -> list[str]:
    """Each output as JSON with the scenario's ids replaced by their roles and every id derived
    from them (uuids) by the order in which it first appears; the events' own ids dropped."""
    seen: dict[str, str] = {}
    out = []
    for e in events:
        text = json.dumps({k: v for k, v in e.items() if k not in ("id", "causationid")})
        for actual, role in roles.items():
            text = text.replace(actual, role)
        out.append(
            re.sub(
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                lambda m: seen.setdefault(m.group(0), f"<uuid {len(seen)}>"),
                text,
            )
        )
    return out


async def outcome(svc: ComplaintsService, roles: dict[str, str]) -> dict[str, Any]:
    """What each of the scenario's keys emitted, and each of its complaints, orders and buyers'
    budgets holds, by role."""
    emitted = {role: normalised(await svc.outbox(actual), roles) for actual, role in roles.items()}
    c, o, b = tables.complaints, tables.orders, tables.budgets
    p = tables.parked_low_scores
    stored, parked = {}, {}
    for actual, role in roles.items():
        async with svc.engine.connect() as conn:
            state = await conn.scalar(select(c.c.state).where(c.c.complaint_id == actual))
            state = state or await conn.scalar(select(o.c.state).where(o.c.order_id == actual))
            state = state or await conn.scalar(select(b.c.state).where(b.c.customer_id == actual))
            scores = await conn.execute(select(p.c.callback_id).where(p.c.complaint_id == actual))
            parked[role] = sorted(roles[callback_id] for (callback_id,) in scores)
        if state is not None:
            stored[role] = normalised([state], roles)
    return {"emitted": emitted, "stored": stored, "parked": parked}


# A scenario's events for earlier batches, those of the batch, and its ids by role.
Scenario = tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]


async def same_outcome(
    svc: ComplaintsService, no_cache: Any, scenario: Callable[[], Scenario]
) -> tuple[dict[str, Any], Counter[str]]:
    """The scenario's earlier events, then its batch as one; then the scenario again (new ids)
    one event per batch without the cache: both must have the same outcome, which is returned
    with the statements of the batch."""
    before, together, roles = scenario()
    for e in before:
        await svc.feed(e)
    with statements_by_kind(svc.engine) as seen:
        await svc.feed(*together)
    before, apart, apart_roles = scenario()
    no_cache()
    for e in before + apart:
        await svc.feed(e)
    got = await outcome(svc, roles)
    assert got == await outcome(svc, apart_roles)
    return got, seen


@pytest.fixture
def no_cache(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Turns the batch cache off: every read a query and every write at once, as before it."""

    async def none(*_: object) -> None:
        return None

    def off() -> None:
        monkeypatch.setattr(repository, "batch_cache", none)

    return off


async def test_one_batch_has_the_outcome_of_one_event_per_batch_without_the_cache(
    svc: ComplaintsService, no_cache: Any
) -> None:
    def scenario() -> Scenario:
        o1, c1, k1 = unique("O"), unique("C"), unique("K")
        c2 = unique("C")
        budget = [(unique("O"), unique("K")) for _ in range(3)]
        o3, c3, k3, cb = unique("O"), unique("C"), unique("K"), unique("CB")
        roles = {o1: "o1", c1: "c1", k1: "k1", c2: "c2", o3: "o3", c3: "c3", k3: "k3", cb: "cb"}
        for n, (o, k) in enumerate(budget):
            roles |= {o: f"budget-o{n}", k: f"budget-k{n}"}
        events = waiting(o1, c1, k1) + over_budget(c2, budget) + parked(o3, c3, k3, cb)
        return [], events, roles

    got, _ = await same_outcome(svc, no_cache, scenario)
    emitted = got["emitted"]
    assert any('"coupon.granted"' in e and '"value": 500' in e for e in emitted["o1"])
    assert any('"refund.requested"' in e and '"amount": 800' in e for e in emitted["o1"])
    pending = [e for o in ("budget-o2",) for e in emitted[o] if "compensation.pending" in e]
    assert len(pending) == 1  # the third coupon waited for the supervisor
    granted = [e for n in range(3) for e in emitted[f"budget-o{n}"] if '"coupon.granted"' in e]
    assert len(granted) == 3  # two at once, the third approved
    assert '"status": "reopened"' in got["stored"]["k3"][0]
    assert not any(got["parked"].values())  # the parked score was taken


async def test_a_low_score_reaches_a_complaint_of_an_order_outside_the_batch(
    svc: ComplaintsService, no_cache: Any
) -> None:
    """Its order is locked by the handler, not the batch: read and written as outside one."""

    def scenario() -> Scenario:
        o, c, k, o2, k2 = unique("O"), unique("C"), unique("K"), unique("O"), unique("K")
        k3, cb, cb3 = unique("K"), unique("CB"), unique("CB")
        before = [
            order_paid(o, c),
            opened(k, o, c, "wrong_item", at=T0 - H),
            resolved(k, o, at=T0 - 30 * MIN, outcome="not_upheld"),
            low_score(c, [k3], cb3, at=T0 - 30 * MIN),  # parked in an earlier batch
        ]
        batch = [
            order_paid(o2, c),
            opened(k2, o2, c, "service_attitude", at=T0 - 20 * MIN),
            opened(k3, o2, c, "other", at=T0 - 20 * MIN),
            low_score(c, [k, k2], cb, at=T0 - 10 * MIN),
            resolved(k2, o2, at=T0 - 5 * MIN),
            resolved(k3, o2, at=T0 - 5 * MIN),
        ]
        roles = {o: "o", c: "c", k: "k", o2: "o2", k2: "k2", k3: "k3", cb: "cb", cb3: "cb3"}
        return before, batch, roles

    got, _ = await same_outcome(svc, no_cache, scenario)
    assert '"status": "reopened"' in got["stored"]["k"][0]
    # k2 was not resolved when the score came: it waited, and reopened k2 once resolved; so
    # did k3's, parked before k3 was known.
    assert '"status": "reopened"' in got["stored"]["k2"][0]
    assert '"status": "reopened"' in got["stored"]["k3"][0]
    assert got["parked"]["k3"] == []


async def test_a_complaint_named_with_another_order_is_still_dead_lettered(
    svc: ComplaintsService,
) -> None:
    o1, o2, c, k, k2 = unique("O"), unique("O"), unique("C"), unique("K"), unique("K")
    await svc.feed(order_paid(o1, c), opened(k, o1, c, "wrong_item", at=T0 - H))
    await svc.feed(
        order_paid(o2, c),
        responded(k, o2, at=T0 - 30 * MIN),  # k is o1's
        opened(k2, o2, c, "service_attitude", at=T0 - 20 * MIN),
        resolved(k2, o2, at=T0 - 10 * MIN),
    )
    letters = [e for e in await svc.outbox(o2) if e["type"] == "event.deadlettered"]
    assert [e["data"]["reason"] for e in letters] == ["handler_error"]
    assert (await svc.complaint(k))["order_id"] == o1
    assert (await svc.complaint(k))["responded_at"] is None
    assert [e["data"]["value"] for e in await svc.outbox(o2) if e["type"] == "coupon.granted"] == [
        500
    ]


def flow(o: str, c: str, k: str) -> list[dict[str, Any]]:
    """The benchmark's complaint flow: paid, shipped, opened, responded, upheld (a coupon)."""
    return [
        order_paid(o, c),
        order_shipped(o, at=T0 - 20 * H),
        opened(k, o, c, "service_attitude", at=T0 - H),
        responded(k, o, at=T0 - 30 * MIN),
        resolved(k, o, at=T0 - 10 * MIN),
    ]


async def test_a_batch_reads_in_a_few_statements_and_writes_once_per_table(
    svc: ComplaintsService,
) -> None:
    seen = {}
    for size in (4, 20):
        flows = [(unique("O"), unique("C"), unique("K")) for _ in range(size)]
        with statements_by_kind(svc.engine) as seen[size]:
            await svc.feed(*[e for o, c, k in flows for e in flow(o, c, k)])
        for o, _, _ in flows:
            coupons = [e for e in await svc.outbox(o) if e["type"] == "coupon.granted"]
            assert [e["data"]["value"] for e in coupons] == [500]
    # the batch's locks and its buyers' (taken with their budgets); inbox, orders, complaints,
    # parked scores, budgets; inbox, journal, orders, complaints, budgets, outbox, timers
    assert seen[20] == seen[4]
    assert seen[20]["lock"] == 2 and seen[20]["read"] <= 5 and seen[20]["write"] <= 8


async def test_a_budget_the_batch_did_not_foresee_is_locked_and_read_on_its_own(
    svc: ComplaintsService, no_cache: Any
) -> None:
    """A complaint upheld in an earlier batch is compensated when its order is paid: no event
    of the batch upholds it, so its buyer's budget is not among those read with the first."""

    def scenario() -> Scenario:
        o1, c1, k1 = unique("O"), unique("C"), unique("K")
        o2, c2, k2 = unique("O"), unique("C"), unique("K")
        before = [
            opened(k2, o2, c2, "quality_issue", at=T0 - H),
            resolved(k2, o2, at=T0 - 30 * MIN),
        ]
        batch = [
            *flow(o1, c1, k1),  # c1's budget: foreseen (k1 is upheld in the batch)
            order_paid(o2, c2, goods=BIG),  # c2's: not foreseen
        ]
        roles = {o1: "o1", c1: "c1", k1: "k1", o2: "o2", c2: "c2", k2: "k2"}
        return before, batch, roles

    got, seen = await same_outcome(svc, no_cache, scenario)
    values = [
        json.loads(e)["data"]["value"]
        for o in ("o1", "o2")
        for e in got["emitted"][o]
        if '"coupon.granted"' in e
    ]
    assert values == [500, 5000]
    assert seen["lock"] == 3  # the batch's keys; c1's (foreseen); c2's on its own


def worked_over(o: str, c: str, k: str, k2: str, k3: str, cb: str) -> list[dict[str, Any]]:
    """Complaints, their order and their buyer's budget changed by event after event: one
    complaint opened, answered and upheld (the shipping fee refunded, a coupon from the budget)
    and reopened by a low score; a late shipment upheld (the penalty, on the order); a quality
    issue upheld (another coupon from the same budget)."""
    return [
        order_paid(o, c, at=T0 - 72 * H, shipping_fee_paid=800),
        order_shipped(o, at=T0 - 20 * H),
        opened(k, o, c, "logistics_delay", at=T0 - H),
        responded(k, o, at=T0 - 50 * MIN),
        resolved(k, o, at=T0 - 40 * MIN),
        low_score(c, [k], cb, at=T0 - 30 * MIN),
        opened(k2, o, c, "late_shipment", at=T0 - 25 * MIN),
        resolved(k2, o, at=T0 - 20 * MIN),
        opened(k3, o, c, "quality_issue", at=T0 - 15 * MIN),
        resolved(k3, o, at=T0 - 10 * MIN),
    ]


def five_ids() -> tuple[tuple[str, ...], dict[str, str]]:
    ids = unique("O"), unique("C"), unique("K"), unique("K"), unique("K"), unique("CB")
    return ids, dict(zip(ids, ("o", "c", "k", "k2", "k3", "cb"), strict=True))


async def test_a_complaint_changed_by_several_events_of_a_batch_is_stored_as_the_last_left_it(
    svc: ComplaintsService, no_cache: Any
) -> None:
    """Within a batch each handler works on the same complaints, order and budget; they are
    written once, at commit: what is stored and emitted is what one event per batch without
    the cache gives, whether they are new to the batch or read from their rows."""
    (together, together_roles), (split, split_roles) = five_ids(), five_ids()
    await svc.feed(*worked_over(*together))
    await svc.feed(*worked_over(*split)[:4])
    await svc.feed(*worked_over(*split)[4:])
    apart, apart_roles = five_ids()
    no_cache()
    for e in worked_over(*apart):
        await svc.feed(e)

    expected = await outcome(svc, apart_roles)
    assert await outcome(svc, together_roles) == expected
    assert await outcome(svc, split_roles) == expected
    emitted, stored = expected["emitted"], expected["stored"]
    coupons = [json.loads(e)["data"]["value"] for e in emitted["o"] if '"coupon.granted"' in e]
    assert coupons == [500, 1500]
    assert sum('"refund.requested"' in e for e in emitted["o"]) == 2  # the fee, the penalty
    k, budget = json.loads(stored["k"][0]), json.loads(stored["c"][0])
    assert (k["status"], k["round"], k["low_scores"]) == ("reopened", 1, ["cb"])
    assert json.loads(stored["o"][0])["late_penalty"]["owed_at"] is not None
    assert [grant["value"] for grant in budget["grants"]] == [500, 1500]


async def test_a_handler_failing_after_changing_a_complaint_leaves_none_of_its_changes(
    svc: ComplaintsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compensating an upheld complaint fails after the domain changed the complaint and the
    buyer's budget (a coupon), or the order (the late-shipment penalty), that the batch holds:
    the batch is applied again from what is stored, so the failing events change nothing, and
    the rest of the batch commits."""
    (o, c, k, k2, _, cb), _ = five_ids()
    other = unique("O"), unique("C"), unique("K")
    events = worked_over(o, c, k, k2, unique("K"), cb)
    await svc.feed(*events[:4])
    compensate = Complaint.compensate

    def refused(self: Complaint, *args: Any, **kwargs: Any) -> Any:
        done = compensate(self, *args, **kwargs)
        if self.complaint_id in (k, k2):
            raise RuntimeError("the compensation is refused")
        return done

    monkeypatch.setattr(Complaint, "compensate", refused)
    await svc.feed(events[4], *events[6:8], *flow(*other))

    emitted = await svc.outbox(o)
    letters = [e for e in emitted if e["type"] == "event.deadlettered"]
    assert [e["data"]["reason"] for e in letters] == ["handler_error", "handler_error"]
    assert [e for e in emitted if e["type"] in ("coupon.granted", "refund.requested")] == []
    first, second = await svc.complaint(k), await svc.complaint(k2)
    assert first["responded_at"] is not None
    assert (first["resolution"], first["compensation"]) == (None, None)
    assert (second["opened_at"] is not None, second["resolution"]) == (True, None)
    [order] = await svc.documents(tables.orders, tables.orders.c.order_id, [o])
    assert order["late_penalty"] is None
    assert await svc.documents(tables.budgets, tables.budgets.c.customer_id, [c]) == []
    coupons = [e for e in await svc.outbox(other[0]) if e["type"] == "coupon.granted"]
    assert [e["data"]["value"] for e in coupons] == [500]
