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
  reshipment) exists as soon as the timers have run at S + refund_deadline_hours, due by
  S + refund_deadline_hours, with `sla.breached` for a reshipment requested after that (a
  refund issued late is the refund ledger's to report);
* a redelivered record changes nothing at all; a crashed batch or timer run leaves nothing
  behind; an invalid event leaves exactly one dead letter and nothing else; a valid event
  is never dead-lettered.

About 20 s; `RETURNS_STATEFUL_EXAMPLES=1000` runs a longer hunt. The situations the examples
reached are printed (`-s`) and the test fails if refunds stop being reached at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import hypothesis
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aftersales_dev.events import encode
from services.returns import tables
from shared.clock import ManualClock
from shared.contracts import CloudEvent, dead_letter_topic, parse_event, topics
from shared.contracts.ids import refund_id
from shared.db import create_engine
from shared.messaging.consumer import EventProcessor
from shared.messaging.context import EventHandler, HandlerContext
from shared.messaging.scheduler import TimerScheduler
from shared.money import split_largest_remainder
from shared.policy import Policy

from .helpers import (
    T0,
    D,
    H,
    Record,
    ReturnsService,
    cloud_event,
    iso,
    order_paid,
    outbound_signed,
    paid_line,
    return_requested,
    return_signed,
)

Result = TypeVar("Result")
COVERAGE: Counter[str] = Counter()  # examples that reached each situation

POLICY = Policy()
RULES = POLICY.returns
DEADLINE = timedelta(hours=RULES.refund_deadline_hours)
GRACE = timedelta(hours=RULES.inspection_grace_hours)
DLQ = dead_letter_topic("returns")

REASONS = [
    "no_reason",
    "dislike",
    "size_fit",
    "changed_mind",
    "quality_issue",
    "damaged_in_transit",
    "wrong_item",
    "missing_parts",
    "not_as_described",
]
FLAGS = [
    "opened_for_inspection",
    "trial_use",
    "seal_broken",
    "tags_removed",
    "soiled_or_damaged",
    "activated",
    "accessories_missing",
]
CATEGORIES = ["apparel"] * 4 + ["home", "electronics", "electronics", "fresh_perishable"]
METHODS = ["alipay", "wechat", "card"]
# Free text the platform passes through: stored and shown verbatim, never interpreted.
TITLES = ["毛衣", "Sweater", "'; DROP TABLE returns.inbox; --", "{{ 7*7 }}", "${jndi:ldap://x/a}"]
# Offsets of event timestamps from the service's clock: far in the past (a backlog), a bit
# late, on time, in the future (the platform's clock runs ahead).
OFFSETS_H = [-24 * 30, -24 * 9, -60, -30, -25, -5, -1, 0, 0, 0, 2]
# Requests mostly on time, sometimes late (window), sometimes from the future.
REQUEST_OFFSETS_H = [0, 0, 0, -1, -5, -30, -24 * 9, -24 * 30, 2]

hours = st.sampled_from(OFFSETS_H)
# A whole return: when its parcel is signed (from the clock), its inspection, held back or not.
SIGNED_H = st.sampled_from([-60, -30, -1, 0, 0, 0, 2])
INSPECTION = st.sampled_from([None, None, True, False])
HOLD = st.sampled_from([False, False, False, True])
RETURNS_PER_ORDER = 4
# Facts mostly about the first returns of the order; later ones compete for the same units.
which_return = st.sampled_from([0, 0, 0, 1, 1, 2, 3])
maybe_hold = st.sampled_from([False, False, True])  # True: delayed in transit (pending)


@st.composite
def order_specs(draw: st.DrawFn) -> dict[str, Any]:
    lines = [
        {
            "line_id": f"L{i}",
            "sku": f"SKU-{i}",
            "title": draw(st.sampled_from(TITLES)),
            "category": draw(st.sampled_from(CATEGORIES)),
            "quantity": draw(st.integers(1, 3)),
            "paid_amount": draw(st.sampled_from([0, 1, 999, 10000, 25900, 33333])),
            "is_gift": False,
            "stated_price": 0,
            "no_reason_return_waived": draw(st.sampled_from([False] * 7 + [True])),
        }
        for i in range(1, draw(st.integers(1, 3)) + 1)
    ]
    if draw(st.booleans()):
        lines.append(
            {
                "line_id": "G1",
                "sku": "SKU-G1",
                "title": "赠品",
                "category": "gift",
                "quantity": draw(st.integers(1, 2)),
                "paid_amount": 0,
                "is_gift": True,
                "stated_price": draw(st.sampled_from([0, 500, 1999])),
            }
        )
    shipping = draw(st.sampled_from([0, 0, 600, 1200]))
    total = sum(line["paid_amount"] for line in lines) + shipping
    weights = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    weights[0] += 1
    parts = split_largest_remainder(total, weights)
    return {
        "lines": lines,
        "shipping_fee_paid": shipping,
        "standard_shipping_fee": 1000,
        "free_shipping_threshold": draw(st.sampled_from([None, 5000, 30000, 99900])),
        "shipping_insurance": draw(st.booleans()),
        "payments": [
            {"method": method, "amount": part} for method, part in zip(METHODS, parts, strict=False)
        ],
    }


@st.composite
def requests(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """A return request, mostly eligible: the lines bought, in the quantities bought, intact,
    with evidence on seller fault; sometimes not (too many, a line not bought, not intact)."""
    quantities = {line["line_id"]: line["quantity"] for line in spec["lines"]}
    chosen = draw(
        st.lists(st.sampled_from(sorted(quantities)), min_size=1, max_size=3, unique=True)
    )
    if draw(st.integers(0, 14)) == 0:
        chosen.append("LX")  # not in the order
    lines = []
    for lid in chosen:
        most = quantities.get(lid, 1)
        exceed = draw(st.integers(0, 14)) == 0
        wanted = most + 1 if exceed else draw(st.sampled_from([1, 1, most]))
        lines.append({"line_id": lid, "quantity": wanted})
    reason = draw(st.sampled_from(REASONS))
    seller_fault = reason in REASONS[4:]
    intact = draw(st.integers(0, 4)) > 0
    evidence = ["https://img.example/1.jpg"] if draw(st.integers(0, 3)) > 0 else []
    return {
        "kind": draw(st.sampled_from(["refund", "refund", "refund", "exchange"])),
        "reason": reason,
        "lines": lines,
        "condition": (
            draw(st.sampled_from([[], ["opened_for_inspection"], ["trial_use"]]))
            if intact
            else draw(st.lists(st.sampled_from(FLAGS), min_size=1, max_size=2, unique=True))
        ),
        "evidence_urls": evidence if seller_fault or draw(st.booleans()) else [],
        "offset": draw(st.sampled_from(REQUEST_OFFSETS_H)),
    }


def instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class CrashingSession(AsyncSession):
    """A session whose commit never happens: the process dies right before it."""

    async def commit(self) -> None:
        raise ConnectionResetError("crash before commit")


class ReturnLifecycle(RuleBasedStateMachine):
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
        self.crashing_processor = EventProcessor(
            service=definition.name,
            sessions=crashing,
            tables=definition.tables,
            handlers=definition.handlers,
            clock=self.clock,
            lock_keys=definition.lock_keys,
        )
        # A database connection lost while one chosen event is being handled (mid-batch).
        self.fail_on: str | None = None

        def flaky(handler: EventHandler) -> EventHandler:
            async def handle(event: CloudEvent, ctx: HandlerContext) -> None:
                await handler(event, ctx)
                if event.id == self.fail_on:
                    raise ConnectionResetError("connection to the database lost")

            return handle

        self.flaky_processor = EventProcessor(
            service=definition.name,
            sessions=self.svc.sessions,
            tables=definition.tables,
            handlers={kind: flaky(h) for kind, h in definition.handlers.items()},
            clock=self.clock,
            lock_keys=definition.lock_keys,
        )
        self.crashing_scheduler = TimerScheduler(
            service=definition.name,
            sessions=crashing,
            tables=definition.tables,
            handlers=definition.timer_handlers,
            clock=self.clock,
        )
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

    # --- building and delivering events ---------------------------------------------------

    def at(self, offset_h: int) -> str:
        return iso(self.clock.now() + offset_h * H)

    def event(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return cloud_event(type_, {"order_id": self.order_id, **data}, self.clock.now())

    def send(self, event: dict[str, Any], hold: bool) -> None:
        record = self.svc.record(event)
        if hold:
            self.pending.append(record)
        else:
            self.deliver([record])

    def deliver(self, records: list[Record]) -> None:
        self.run(self.svc.processor.process(records))
        self.delivered.extend(records)

    # --- the platform's events ------------------------------------------------------------

    def order_paid_event(self) -> dict[str, Any]:
        spec = self.spec
        return self.event(
            "order.paid",
            {
                "shop_id": "S-sm",
                "customer_id": self.customer_id,
                "paid_at": iso(T0 - 12 * 24 * H),
                "currency": "CNY",
                "lines": spec["lines"],
                "shipping_fee_paid": spec["shipping_fee_paid"],
                "standard_shipping_fee": spec["standard_shipping_fee"],
                "free_shipping_threshold": spec["free_shipping_threshold"],
                "shipping_insurance": spec["shipping_insurance"],
                "presale_ship_by": None,
                "payments": spec["payments"],
                "customer": {
                    "name": "李雷",
                    "phone": "13900001111",
                    "email": "li.lei@example.com",
                    "preferred_channel": "sms",
                },
            },
        )

    def outbound_signed_event(self, days_ago: int) -> dict[str, Any]:
        signed_at = iso(T0 - days_ago * 24 * H)
        return self.event(
            "parcel.signed", {"leg": "outbound", "tracking_no": "SF-1", "signed_at": signed_at}
        )

    def requested_event(self, which: int, request: dict[str, Any]) -> dict[str, Any]:
        self.requested.add(which)
        return self.event(
            "return.requested",
            {
                "return_id": self.return_ids[which],
                "customer_id": self.customer_id,
                "kind": request["kind"],
                "reason": request["reason"],
                "lines": request["lines"],
                "condition": request["condition"],
                "evidence_urls": request["evidence_urls"],
                "requested_at": self.at(request["offset"]),
            },
        )

    def shipped_event(self, which: int, fee: int, offset: int) -> dict[str, Any]:
        rid = self.return_ids[which]
        self.max_fee[rid] = max(self.max_fee[rid], fee)
        return self.event(
            "return.shipped",
            {
                "return_id": rid,
                "carrier": "YTO",
                "tracking_no": f"YT-{which}",
                "shipped_at": self.at(offset),
                "shipping_fee_paid": fee,
            },
        )

    def return_signed_event(self, which: int, offset: int) -> dict[str, Any]:
        return self.event(
            "parcel.signed",
            {
                "leg": "return",
                "return_id": self.return_ids[which],
                "tracking_no": f"YT-{which}",
                "signed_at": self.at(offset),
            },
        )

    def inspected_event(self, which: int, passed: bool) -> dict[str, Any]:
        return self.event(
            "return.inspected",
            {
                "return_id": self.return_ids[which],
                "passed": passed,
                "findings": [] if passed else ["soiled_or_damaged"],
                "inspected_at": self.at(0),
            },
        )

    def evidence_event(self, which: int, n: int) -> dict[str, Any]:
        return self.event(
            "return.evidence_submitted",
            {
                "return_id": self.return_ids[which],
                "evidence_urls": [f"https://img.example/{n}.jpg"],
                "submitted_at": self.at(0),
            },
        )

    def reviewed_event(self, which: int, decision: str, note: str) -> dict[str, Any]:
        return self.event(
            "return.reviewed",
            {
                "return_id": self.return_ids[which],
                "decision": decision,
                "agent_id": "agent-sm",
                "note": note,
                "reviewed_at": self.at(0),
            },
        )

    def cancelled_event(self, which: int) -> dict[str, Any]:
        return self.event(
            "return.cancelled", {"return_id": self.return_ids[which], "cancelled_at": self.at(0)}
        )

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

    # --- delivery order, redelivery, replays, crashes ------------------------------------

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def deliver_out_of_order(self, data: st.DataObject) -> None:
        """One held-back event overtakes or follows the others: whichever arrives."""
        index = data.draw(st.integers(0, len(self.pending) - 1))
        self.deliver([self.pending.pop(index)])

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def deliver_pending_as_one_batch(self, data: st.DataObject) -> None:
        batch = data.draw(st.permutations(self.pending))
        self.pending = []
        self.deliver(list(batch))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """The same record fetched again (offset not committed): no effect whatsoever."""
        records = data.draw(st.lists(st.sampled_from(self.delivered), min_size=1, max_size=3))
        before = self.snapshot()
        self.run(self.svc.processor.process(records))
        assert self.snapshot() == before

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def replay_with_new_id(self, data: st.DataObject) -> None:
        """The platform sends a fact again under a new id (content unchanged)."""
        record = data.draw(st.sampled_from(self.delivered))
        if (record.topic, record.offset) in self.invalid:
            return
        event = json.loads(record.value or b"")
        event["id"] = f"replay-{uuid.uuid4().hex}"
        self.send(event, hold=False)

    @precondition(lambda self: self.pending or self.delivered)
    @rule(data=st.data(), mid_batch=st.booleans())
    def crash_before_commit_then_redeliver(self, data: st.DataObject, mid_batch: bool) -> None:
        """The batch is applied, then the process dies before the commit (or the database
        goes away while one of its events is handled): nothing of it may remain; the consumer
        fetches the same records again and they apply once."""
        batch = list(self.pending)
        if self.delivered and data.draw(st.booleans()):
            batch.append(data.draw(st.sampled_from(self.delivered)))
        batch = list(data.draw(st.permutations(batch)))
        before = self.snapshot()
        with pytest.raises(ConnectionResetError):
            if mid_batch and self.pending:  # (held events are valid and not yet processed)
                self.fail_on = json.loads(data.draw(st.sampled_from(self.pending)).value)["id"]
                self.run(self.flaky_processor.process(batch))
            else:
                self.run(self.crashing_processor.process(batch))
        self.fail_on = None
        assert self.snapshot() == before
        self.pending = []
        self.deliver(batch)

    @rule(hours_=st.sampled_from([1, 2, 5, 12, 19, 20, 23, 24, 25, 48, 80]))
    def advance_clock(self, hours_: int) -> None:
        self.clock.advance(hours_ * H)

    @rule()
    def run_due_timers(self) -> None:
        self.run(self.svc.fire_due())
        self.timers_ran_at = self.clock.now()
        now = self.clock.now()
        for kind, row in self.snapshot_timers().items():
            live = row["fired_at"] is None and row["cancelled_at"] is None
            assert not (live and row["due_at"] <= now), f"timer {kind} due but not fired"

    @rule()
    def settle_everything(self) -> None:
        """Whatever was held back arrives, the refund deadline of every signature passes and
        the timers run: each approved, signed return must be paid by now."""
        if self.pending:
            self.deliver(self.pending)
            self.pending = []
        self.clock.advance(DEADLINE + H)
        self.run_due_timers()

    @rule()
    def crash_timer_run(self) -> None:
        """Due timers fire, then the commit is lost: they stay due, nothing was emitted."""
        before = self.snapshot()
        try:
            self.run(self.crashing_scheduler.run_due())
        except ConnectionResetError:
            pass
        assert self.snapshot() == before

    # --- reading back ---------------------------------------------------------------------

    def snapshot_timers(self) -> dict[tuple[str, str], dict[str, Any]]:
        t = self.svc.definition.tables.timers

        async def read() -> dict[tuple[str, str], dict[str, Any]]:
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(t).where(t.c.ref.in_(self.return_ids)))
                return {
                    (row["kind"], row["ref"]): {
                        k: v for k, v in row.items() if k not in ("id", "created_at")
                    }
                    for row in rows.mappings()
                }

        return self.run(read())

    def snapshot(self) -> dict[str, Any]:
        mt = self.svc.definition.tables

        async def read() -> dict[str, Any]:
            async with self.engine.connect() as conn:
                outbox = (
                    await conn.execute(
                        select(
                            mt.outbox.c.event_id,
                            mt.outbox.c.event_type,
                            mt.outbox.c.topic,
                            mt.outbox.c.key,
                            mt.outbox.c.payload,
                        )
                        .where(mt.outbox.c.key == self.order_id)
                        .order_by(mt.outbox.c.id)
                    )
                ).all()
                returns = (
                    await conn.execute(
                        select(tables.return_requests.c.return_id, tables.return_requests.c.state)
                        .where(tables.return_requests.c.order_id == self.order_id)
                        .order_by(tables.return_requests.c.return_id)
                    )
                ).all()
                ledger = await conn.scalar(
                    select(tables.order_ledgers.c.state).where(
                        tables.order_ledgers.c.order_id == self.order_id
                    )
                )
                order = await conn.scalar(
                    select(tables.orders.c.state).where(tables.orders.c.order_id == self.order_id)
                )
                signature = await conn.scalar(
                    select(tables.outbound_signatures.c.signed_at).where(
                        tables.outbound_signatures.c.order_id == self.order_id
                    )
                )
                ids = [
                    json.loads(r.value)["id"]
                    for r in self.delivered + self.pending
                    if (r.topic, r.offset) not in self.invalid
                ]
                inbox = set(
                    (
                        await conn.execute(
                            select(mt.inbox.c.event_id).where(mt.inbox.c.event_id.in_(ids))
                        )
                    ).scalars()
                )
            return {
                "outbox": [tuple(row) for row in outbox],
                "returns": {row.return_id: row.state for row in returns},
                "ledger": ledger,
                "order": order,
                "signature": signature,
                "inbox": inbox,
            }

        snap = self.run(read())
        snap["timers"] = self.snapshot_timers()
        return snap

    # --- the invariants -------------------------------------------------------------------

    @invariant()
    def refunds_are_right(self) -> None:
        snap = self.snapshot()
        outputs: list[tuple[str, str, dict[str, Any]]] = []
        for event_id, event_type, topic, key, payload in snap["outbox"]:
            event = parse_event(payload)  # every output is a valid event of the contract
            assert event.id == event_id and event.type == event_type and key == self.order_id
            outputs.append((event_type, topic, json.loads(payload)["data"]))

        for _type, topic, data in outputs:
            if topic == DLQ:
                # Only the invalid events we sent: a valid one is never parked.
                assert data["reason"] != "handler_error", data["detail"]
                origin = data["origin"]
                assert self.invalid.get((origin["topic"], origin["offset"])) == data["reason"]

        refunds = [d for t, _, d in outputs if t == "refund.requested"]
        reshipments = [d for t, _, d in outputs if t == "reshipment.requested"]
        breaches = [d for t, _, d in outputs if t == "sla.breached"]
        decisions = [(t, d) for t, topic, d in outputs if topic == topics.RETURN_DECISIONS]

        # One outbox row per refund_id; per return at most one refund per purpose: the main
        # refund, and the return freight learnt after it (a refund of its own).
        assert len({d["refund_id"] for d in refunds}) == len(refunds)
        main: dict[str, dict[str, Any]] = {}
        freight: dict[str, dict[str, Any]] = {}
        for refund in refunds:
            rid = refund["case"]["id"]
            assert refund["case"]["type"] == "return" and rid in self.return_ids
            if refund["refund_id"] == refund_id("return", rid):
                assert rid not in main, rid
                main[rid] = refund
            else:
                assert refund["refund_id"] == refund_id("return", rid, "return_shipping")
                assert rid not in freight, rid
                freight[rid] = refund
                assert [i["kind"] for i in refund["breakdown"]] == ["return_shipping"]
                assert refund["amount"] > 0 and refund["return_shipping_payer"] == "merchant"
        reship_cases = Counter(d["case"]["id"] for d in reshipments)
        assert all(n == 1 for n in reship_cases.values()), reship_cases

        spec = self.spec
        goods_paid = sum(line["paid_amount"] for line in spec["lines"])
        gift_value = sum(line["stated_price"] for line in spec["lines"] if line["is_gift"])
        refunded: Counter[str] = Counter()
        if refunds:
            assert snap["order"] is not None, "a refund for an order never stored"
        freight_paid: Counter[str] = Counter()
        for refund in refunds:
            rid = refund["case"]["id"]
            assert refund["order_id"] == self.order_id and refund["currency"] == "CNY"
            amount = refund["amount"]
            assert amount >= 0
            items = Counter()
            for item in refund["breakdown"]:
                items[item["kind"]] += item["amount"]
            assert sum(item["amount"] for item in refund["breakdown"]) == amount
            assert "payments" not in refund  # the refund ledger splits
            assert refund["requested_by"] == "returns"
            assert items["goods"] >= 0 and items["outbound_shipping"] >= 0
            assert items["return_shipping"] >= 0
            freight_paid[rid] += items["return_shipping"]
            assert -spec["standard_shipping_fee"] <= items["free_shipping_deduction"] <= 0
            assert -gift_value <= items["gift_charge"] <= 0
            assert items["compensation"] == 0
            refunded.update(items)
        for rid, paid in freight_paid.items():
            # Reimbursed once per return, capped, never more than the buyer paid for it.
            assert paid <= min(RULES.return_shipping_cap, self.max_fee[rid]), (rid, paid)
            if rid in freight and rid in main:
                assert not any(i["kind"] == "return_shipping" for i in main[rid]["breakdown"])
        assert refunded["goods"] <= goods_paid, (refunded, goods_paid)
        assert refunded["outbound_shipping"] <= spec["shipping_fee_paid"]

        ledger = snap["ledger"]
        if ledger is not None:
            assert ledger["goods_refunded"] == refunded["goods"]
            assert ledger["outbound_shipping_refunded"] == refunded["outbound_shipping"]
            assert ledger["return_shipping_refunded"] == refunded["return_shipping"]
            assert set(main) <= set(ledger["settled_returns"])
            assert set(freight) <= set(ledger.get("return_shipping_settled", []))
            for line in spec["lines"]:
                lid = line["line_id"]
                taken = (
                    ledger["units_refunded"].get(lid, 0)
                    + ledger["gift_units_returned"].get(lid, 0)
                    + sum(units.get(lid, 0) for units in ledger["reserved"].values())
                )
                assert taken <= line["quantity"], (lid, ledger)

        reshipped = {d["case"]["id"] for d in reshipments}
        breached = {(d["case"]["id"], d["sla"]): d for d in breaches}
        completed = {d["return_id"] for t, d in decisions if t == "return.completed"}
        for rid, state in snap["returns"].items():
            status, kind = state["status"], state["kind"]
            delivered = rid in (reshipped if kind == "exchange" else main)
            sla = "reshipment" if kind == "exchange" else "refund"
            if status == "completed":
                assert delivered and rid in completed, (rid, state)
            else:
                assert rid not in main and rid not in freight and rid not in reshipped, rid
            if ledger is not None:
                reserved = rid in ledger["reserved"]
                assert reserved == (status == "approved"), (rid, status, ledger["reserved"])
            signed = instant(state["return_signed_at"])
            inspection = state["inspection"]
            failed = inspection is not None and not inspection["passed"]
            if signed is None or failed or status not in ("approved", "completed"):
                continue
            due = signed + DEADLINE
            if self.timers_ran_at is not None and self.timers_ran_at >= due:
                assert delivered, f"{rid}: no refund although timers ran past its deadline"
            if status == "approved":
                # Signed and approved yet open: only while it waits for an inspection.
                categories = {line["line_id"]: line["category"] for line in spec["lines"]}
                assert any(
                    categories.get(lid) in RULES.inspection_required_categories
                    for lid in state["lines"]
                ), (rid, state)
                assert inspection is None
                grace = self.snapshot_timers().get(("inspection_grace", rid))
                assert grace is not None and grace["fired_at"] is None
                assert grace["due_at"] == signed + GRACE
                assert self.timers_ran_at is None or self.timers_ran_at < signed + GRACE
            for issued in [main.get(rid), *[d for d in reshipments if d["case"]["id"] == rid]]:
                if issued is None:
                    continue
                assert instant(issued["due_by"]) == due
                at = instant(issued["requested_at"])
                assert at is not None
                # A refund requested late is the refund ledger's breach when it issues it
                # (SPEC 4.11); a late replacement is this service's.
                if at > due and sla == "reshipment":
                    assert (rid, sla) in breached, f"{rid}: late without sla.breached"
            if rid in freight:
                # Issued at once when learnt: due by the return's deadline, or a fresh one.
                at = instant(freight[rid]["requested_at"])
                assert at is not None
                assert instant(freight[rid]["due_by"]) == (due if due > at else at + DEADLINE)
        for label, seen in (
            ("refund requested", bool(refunds)),
            ("refund over two returns", len(main) > 1),
            ("late freight refunded on its own", bool(freight)),
            ("reshipment", bool(reshipments)),
            (
                "late refund with sla.breached",
                any(s in ("refund", "reshipment") for _, s in breached),
            ),
            ("outbound shipping refunded", refunded["outbound_shipping"] > 0),
            ("free-shipping deduction", refunded["free_shipping_deduction"] < 0),
            ("gift charge", refunded["gift_charge"] < 0),
            ("return freight reimbursed", refunded["return_shipping"] > 0),
            ("rejected", any(s["status"] == "rejected" for s in snap["returns"].values())),
            (
                "waiting for inspection",
                any(
                    s["status"] == "approved" and s["return_signed_at"]
                    for s in snap["returns"].values()
                ),
            ),
            (
                "inspection failed",
                any(s["rule"] == "inspection_failed" for s in snap["returns"].values()),
            ),
            ("dead letter", any(topic == DLQ for _, topic, _ in outputs)),
        ):
            if seen:
                hypothesis.event(label)
                self.seen.add(label)
        for (rid, sla), breach in breached.items():
            if sla in ("refund", "reshipment"):
                state = snap["returns"][rid]
                signed = instant(state["return_signed_at"])
                assert signed is not None and instant(breach["due_at"]) == signed + DEADLINE
                assert instant(breach["detected_at"]) >= instant(breach["due_at"])  # type: ignore[operator]


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
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()


def test_a_returns_life_never_pays_wrong_twice_or_late(returns_database: str) -> None:
    """The same 30 histories on every run by default, so the suite's time is steady (some
    random histories take minutes: many timers on a busy database);
    RETURNS_STATEFUL_EXAMPLES=1000 hunts with fresh random histories."""
    COVERAGE.clear()
    hunt = os.environ.get("RETURNS_STATEFUL_EXAMPLES")
    examples = int(hunt or "30")
    run_machine(returns_database, max_examples=examples, steps=25, derandomize=hunt is None)
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
