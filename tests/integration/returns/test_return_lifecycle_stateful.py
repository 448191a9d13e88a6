"""A return's whole life as a hypothesis state machine, on the WIRED returns service.

Each example is one order (unique ids, one database migrated once) with up to four returns
competing for its units. Rules deliver the shop platform's events of a return's life (some held
back and delivered later, out of order; some with late or future timestamps; some invalid),
redeliver records (same id, same offset), replay events under new ids, crash a batch (before
its commit, or with the database lost while one event is handled) or a timer run and redeliver,
move the ManualClock and run the due timers: exactly what `services.returns.bootstrap.build`
wires (EventProcessor + TimerScheduler) over the real database.

After every step the outbox, the stored returns, the ledger and the timer rows are read back
and checked against what finance relies on:

* at most one `refund.requested` per return and purpose (its refund, and the return freight
  learnt after it), one outbox row per `refund_id`, and only for a completed return; every
  row is a valid event of the contract;
* for the order, goods and outbound shipping refunded never exceed what was paid, and the
  ledger agrees with what was emitted (no lost or double update);
* every refund is >= 0, its breakdown sums to it exactly, and it carries no payment split
  (the refund ledger's);
* once an approved return's parcel is signed for at S (no failed inspection), a refund (or
  reshipment) exists as soon as the timers have run at S + refund_deadline_hours (or, for a
  signature learnt after the inspection grace was over, once they ran at the catch-up grace
  behind it), due by S + refund_deadline_hours, with `sla.breached` for a reshipment
  requested after that (a refund issued late is the refund ledger's to report);
* a redelivered record changes nothing at all; a crashed batch or timer run leaves nothing
  behind; an invalid event leaves exactly one dead letter and nothing else; a valid event
  is never dead-lettered.

The machine's parts: what it draws (`lifecycle_strategies.py`), its events
(`lifecycle_events.py`), its delivery rules (`lifecycle_deliveries.py`) and its checks
(`lifecycle_checks.py`); its setup and the facts of a return's life are here.

About 20 s; `RETURNS_STATEFUL_EXAMPLES=1000` runs a longer hunt. The situations the examples
reached are printed (`-s`) and the test fails if refunds stop being reached at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from aftersales_dev.events import encode
from shared.clock import ManualClock
from shared.contracts import CloudEvent, parse_event, topics
from shared.db import create_engine
from shared.messaging.context import EventHandler, HandlerContext

from .helpers import (
    T0,
    D,
    H,
    Record,
    ReturnsService,
    iso,
    order_paid,
    outbound_signed,
    paid_line,
    return_requested,
    return_signed,
)
from .lifecycle_checks import LifecycleChecks
from .lifecycle_deliveries import LifecycleDeliveries
from .lifecycle_events import LifecycleEvents
from .lifecycle_strategies import (
    COVERAGE,
    DLQ,
    HOLD,
    INSPECTION,
    RETURNS_PER_ORDER,
    SIGNED_H,
    CrashingSession,
    Result,
    hours,
    maybe_hold,
    order_specs,
    requests,
    which_return,
)


class ReturnLifecycle(LifecycleEvents, LifecycleDeliveries, LifecycleChecks, RuleBasedStateMachine):
    # Set by the test: an event loop of its own and an engine bound to it.
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine

    def run(self, coro: Awaitable[Result]) -> Result:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    # --- setup ----------------------------------------------------------------------------

    @initialize(
        data=st.data(),
        spec=order_specs(),
        preamble=st.sampled_from(["paid and delivered"] * 4 + ["paid", "nothing"]),
        days_ago=st.sampled_from([1, 1, 3, 6, 10]),
    )
    def setup(
        self, data: st.DataObject, spec: dict[str, Any], preamble: str, days_ago: int
    ) -> None:
        """An order (paid and delivered, or not yet) with a first return in flight."""
        run = uuid.uuid4().hex[:12]
        self.order_id = f"O-sm-{run}"
        self.customer_id = f"C-sm-{run}"
        self.return_ids = [f"R{i}-sm-{run}" for i in range(1, RETURNS_PER_ORDER + 1)]
        self.requested: set[int] = set()
        self.spec = spec
        self.clock = ManualClock(T0)
        self.svc = ReturnsService(self.engine, self.clock)
        crashing = async_sessionmaker(
            self.engine, class_=CrashingSession, expire_on_commit=False, autoflush=False
        )
        definition = self.svc.definition
        self.crashing_processor = self.svc.processor_over(crashing)
        # A database connection lost while one chosen event is being handled (mid-batch).
        self.fail_on: str | None = None

        def flaky(handler: EventHandler) -> EventHandler:
            async def handle(event: CloudEvent, ctx: HandlerContext) -> None:
                await handler(event, ctx)
                if event.id == self.fail_on:
                    raise ConnectionResetError("connection to the database lost")

            return handle

        flaky_handlers = {kind: flaky(h) for kind, h in definition.handlers.items()}
        self.flaky_processor = self.svc.processor_over(self.svc.sessions, flaky_handlers)
        self.crashing_scheduler = self.svc.scheduler_over(crashing)
        self.pending: list[Record] = []
        self.delivered: list[Record] = []
        self.invalid: dict[tuple[str, int], str] = {}  # (topic, offset) -> dead-letter reason
        self.max_fee = {rid: 0 for rid in self.return_ids}
        self.timers_ran_at: datetime | None = None
        self.seen: set[str] = set()
        if preamble != "nothing":
            self.send(self.order_paid_event(), hold=False)
        if preamble == "paid and delivered":
            self.send(self.outbound_signed_event(days_ago), hold=False)
        self.whole_return(data, 1200, data.draw(SIGNED_H), data.draw(INSPECTION), data.draw(HOLD))

    def teardown(self) -> None:
        COVERAGE.update(getattr(self, "seen", ()))

    # One rule for the facts of a return's life (hypothesis picks rules uniformly: one rule
    # per fact would crowd out the request and the delivery rules).
    @rule(
        data=st.data(),
        what=st.sampled_from(
            ["evidence", "cancelled"]
            + ["order.paid", "outbound signed", "shipped", "return leg signed"] * 2
            + ["inspected", "reviewed"] * 2
        ),
        which=which_return,
        hold=maybe_hold,
    )
    def platform_event(self, data: st.DataObject, what: str, which: int, hold: bool) -> None:
        if what == "order.paid":
            event = self.order_paid_event()
        elif what == "outbound signed":
            event = self.outbound_signed_event(data.draw(st.sampled_from([0, 1, 3, 7, 10, 20])))
        elif what == "evidence":
            event = self.evidence_event(which, data.draw(st.integers(1, 3)))
        elif what == "shipped":
            fee = data.draw(st.sampled_from([0, 800, 1200, 4500]))
            event = self.shipped_event(which, fee, data.draw(hours))
        elif what == "return leg signed":
            event = self.return_signed_event(which, data.draw(hours))
        elif what == "inspected":
            event = self.inspected_event(which, data.draw(st.booleans()))
        elif what == "reviewed":
            decision = data.draw(st.sampled_from(["approve", "approve", "reject"]))
            note = data.draw(st.sampled_from(["ok", "{{ 7*7 }}", "'; DROP TABLE x; --"]))
            event = self.reviewed_event(which, decision, note)
        else:
            event = self.cancelled_event(which)
        self.send(event, hold)

    @rule(
        data=st.data(),
        fee=st.sampled_from([0, 800, 1200, 4500]),
        signed=SIGNED_H,
        inspection=INSPECTION,
        hold_all=HOLD,
    )
    def whole_return(
        self,
        data: st.DataObject,
        fee: int,
        signed: int,
        inspection: bool | None,
        hold_all: bool,
    ) -> None:
        """A request, its shipment, the warehouse's signature (and maybe an inspection),
        arriving together in any order, or held back to arrive later. A new return of the
        order while there is one left, else another try of one of them."""
        fresh = sorted(set(range(RETURNS_PER_ORDER)) - self.requested)
        which = fresh[0] if fresh else data.draw(which_return)
        events = [
            self.requested_event(which, data.draw(requests(self.spec))),
            self.shipped_event(which, fee, min(signed, 0) - 1),
            self.return_signed_event(which, signed),
        ]
        if inspection is not None:
            events.append(self.inspected_event(which, inspection))
        records = [self.svc.record(e) for e in data.draw(st.permutations(events))]
        if hold_all:
            self.pending.extend(records)
        else:
            self.deliver(records)

    @rule(data=st.data(), which=which_return, hold=maybe_hold)
    def return_requested(self, data: st.DataObject, which: int, hold: bool) -> None:
        self.send(self.requested_event(which, data.draw(requests(self.spec))), hold)

    @rule(
        which=which_return,
        kind=st.sampled_from(
            [
                "naive_timestamp",
                "negative_amount",
                "absurd_amount",
                "string_amount",
                "float_amount",
                "bool_quantity",
                "missing_field",
                "unknown_type",
                "payments_mismatch",
                "truncated",
            ]
        ),
    )
    def invalid_event(self, which: int, kind: str) -> None:
        """A broken event about this order: one dead letter, no other effect at all."""
        rid = self.return_ids[which]
        reason = kind
        if kind == "naive_timestamp":
            event = self.event(
                "parcel.signed",
                {
                    "leg": "return",
                    "return_id": rid,
                    "tracking_no": "YT",
                    "signed_at": self.at(0)[:19],  # no offset
                },
            )
        elif kind in ("negative_amount", "absurd_amount", "string_amount", "float_amount"):
            fee: Any = {
                "negative_amount": -1,
                "absurd_amount": 10**12 + 1,
                "string_amount": "1200",
                "float_amount": 12.5,
            }[kind]
            event = self.event(
                "return.shipped",
                {
                    "return_id": rid,
                    "carrier": "YTO",
                    "tracking_no": "YT",
                    "shipped_at": self.at(0),
                    "shipping_fee_paid": fee,
                },
            )
            if kind in ("string_amount", "float_amount"):
                reason = "invalid_data"
        elif kind == "bool_quantity":
            event = self.event(
                "return.requested",
                {
                    "return_id": rid,
                    "customer_id": self.customer_id,
                    "kind": "refund",
                    "reason": "no_reason",
                    "lines": [{"line_id": "L1", "quantity": True}],
                    "requested_at": self.at(0),
                },
            )
            reason = "invalid_data"
        elif kind == "missing_field":
            event = self.event("return.cancelled", {"cancelled_at": self.at(0)})
            reason = "invalid_data"
        elif kind == "unknown_type":
            event = self.event("return.teleported", {"return_id": rid})
        elif kind == "payments_mismatch":
            event = self.event(
                "order.paid",
                {
                    "shop_id": "S-sm",
                    "customer_id": self.customer_id,
                    "paid_at": iso(T0),
                    "currency": "CNY",
                    "lines": self.spec["lines"],
                    "shipping_fee_paid": self.spec["shipping_fee_paid"],
                    "standard_shipping_fee": 1000,
                    "shipping_insurance": False,
                    "payments": [{"method": "alipay", "amount": 10**9}],
                    "customer": {"phone": "13900001111", "preferred_channel": "sms"},
                },
            )
        else:  # truncated
            event = self.event("return.cancelled", {"return_id": rid, "cancelled_at": self.at(0)})
            reason = "malformed_json"
        value = encode(event)
        if kind == "truncated":
            value = value[: len(value) // 2]
        topic = {"order": topics.ORDERS, "parcel": topics.SIGNATURES}.get(
            event["type"].split(".")[0], topics.RETURNS
        )
        record = self.svc.record(value, key=self.order_id, topic=topic)
        self.invalid[(record.topic, record.offset)] = reason
        before = self.snapshot()
        self.deliver([record])
        after = self.snapshot()
        new = [row for row in after["outbox"] if row not in before["outbox"]]
        assert len(new) == 1, new
        letter = json.loads(new[0][4])["data"]
        assert new[0][2] == DLQ
        assert letter["reason"] == reason, letter
        assert letter["origin"] == {"topic": topic, "partition": 0, "offset": record.offset}
        assert {**after, "outbox": before["outbox"]} == before


# A hunt (`RETURNS_STATEFUL_EXAMPLES=N`) may find a failure and shrink it for up to five
# minutes: it runs without the test timeout, and without hypothesis's explain phase, whose
# line tracing makes every example after a failure 2-3 times slower.
HUNT = os.environ.get("RETURNS_STATEFUL_EXAMPLES")


def run_machine(url: str, *, max_examples: int, steps: int, derandomize: bool = False) -> None:
    loop = asyncio.new_event_loop()
    engine = create_engine(url, pool_size=2)
    ReturnLifecycle.loop, ReturnLifecycle.engine = loop, engine
    try:
        run_state_machine_as_test(
            ReturnLifecycle,
            settings=settings(
                max_examples=max_examples,
                stateful_step_count=steps,
                deadline=None,
                database=None,
                derandomize=derandomize,
                phases=[p for p in Phase if p is not Phase.explain] if HUNT else tuple(Phase),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()


@pytest.mark.timeout(0 if HUNT else 300)
def test_a_returns_life_never_pays_wrong_twice_or_late(service_database: str) -> None:
    """The same 30 histories on every run by default, so the suite's time is steady;
    RETURNS_STATEFUL_EXAMPLES=1000 hunts with fresh random histories (a run that takes
    minutes is shrinking a failure: it is reported when the shrinking ends)."""
    COVERAGE.clear()
    examples = int(HUNT or "30")
    run_machine(service_database, max_examples=examples, steps=25, derandomize=HUNT is None)
    print("situations reached (examples):", dict(COVERAGE))
    # The machine must keep reaching the paths that matter, or it checks nothing.
    assert COVERAGE["refund requested"] > 0 and COVERAGE["rejected"] > 0


# --- regressions found by the machine -------------------------------------------------------


async def test_a_zero_refund_is_requested_with_a_breakdown(svc: ReturnsService) -> None:
    """A gift returned alone (or a line bought for 0) completes with a refund of 0.

    Found by the state machine: the refund's breakdown was empty, which the contract refuses
    (`breakdown` has at least one item), so building the refund failed, the return-leg
    signature was dead-lettered (`handler_error`) and the return stayed open without refund
    or `return.completed`.
    """
    o, r, r2 = f"O-zero-{uuid.uuid4().hex[:8]}", "R-zero-gift", "R-zero-free"
    r, r2 = f"{r}-{o}", f"{r2}-{o}"
    await svc.feed(
        order_paid(
            o,
            at=T0 - 5 * D,
            lines=[
                paid_line("L1", paid=5000),
                paid_line("L0", paid=0),
                paid_line("G1", gift=True, stated_price=500),
            ],
        ),
        outbound_signed(o, at=T0 - 3 * D),
        return_requested(o, r, at=T0 - D, lines={"G1": 1}),
        return_requested(o, r2, at=T0 - D, lines={"L0": 1}),
        return_signed(o, r, at=T0 - H),
        return_signed(o, r2, at=T0 - H),
    )
    emitted = await svc.outbox(o)
    assert [e for e in emitted if e.topic == DLQ] == []
    for return_id in (r, r2):
        [refund] = [
            e for e in emitted if e.type == "refund.requested" and e.data["case"]["id"] == return_id
        ]
        assert refund.data["amount"] == 0
        assert refund.data["breakdown"] == [{"kind": "goods", "amount": 0}]
        assert "payments" not in refund.data
        parse_event(json.dumps(refund.event).encode())
        assert (await svc.return_state(return_id))["status"] == "completed"
        assert any(
            e.type == "return.completed" and e.data["return_id"] == return_id for e in emitted
        )
