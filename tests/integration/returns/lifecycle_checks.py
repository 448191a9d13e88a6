"""What the returns state machine checks after every step: the outbox, the stored returns,
the ledger and the timers read back (`snapshot`), and the invariants finance relies on."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import hypothesis
from hypothesis.stateful import (
    invariant,
)
from sqlalchemy import select

from services.returns import tables
from shared.catchup import CATCH_UP_GRACE
from shared.contracts import parse_event, topics
from shared.contracts.ids import refund_id

from .lifecycle_strategies import (
    DEADLINE,
    DLQ,
    GRACE,
    RULES,
    instant,
)


class LifecycleChecks:
    """Reading back the machine's order and checking it."""

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
            # When the timers must have paid it: its deadline, or later for a signature learnt
            # after the inspection grace was over (judged by the catch-up rule).
            paid_by = due
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
                grace_end = signed + GRACE
                if grace["due_at"] != grace_end:
                    learnt = grace["due_at"] - CATCH_UP_GRACE
                    assert grace_end <= learnt <= self.clock.now(), (rid, grace)
                paid_by = max(due, grace["due_at"])
                assert self.timers_ran_at is None or self.timers_ran_at < grace["due_at"]
            if self.timers_ran_at is not None and self.timers_ran_at >= paid_by:
                assert delivered, f"{rid}: no refund although timers ran past its deadline"
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
