"""Reconciliation of the services downstream of returns and complaints: the refund ledger's
invariants order by order, the follow-up's callbacks (one per closed case) and the notifier's
deliveries (each sent once or given up)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from .findings import Findings, of_run, ours
from .flows import Flow, Message
from .gateway import DeliveryGateway


async def check_ledgers(
    f: Findings,
    conn: asyncpg.Connection,
    by_id: Mapping[str, Mapping[str, Any]],
    run_id: str,
    flows: Sequence[Flow],
) -> None:
    """SPEC 4.11 on what the ledger stored and issued: goods and outbound shipping never above
    what was paid, no method above its charge, every request issued (none left waiting), and
    every refund.requested answered by one refund.issued under its refund_id."""
    from services.refunds.domain.model import OrderLedger

    c = f.counts
    rows = await conn.fetch(
        "SELECT state FROM refunds.ledgers WHERE order_id LIKE $1", run_id + "%"
    )
    over_cap, over_charge, waiting = [], [], []
    for row in rows:
        ledger = OrderLedger.from_dict(json.loads(row["state"]))
        if ledger.waiting:
            waiting.append(ledger.order_id)
        facts = ledger.facts
        if facts is None:
            continue
        if ledger.goods_given > facts.goods_total or (
            ledger.outbound_given > facts.shipping_fee_paid
        ):
            over_cap.append(ledger.order_id)
        given = ledger.method_given()
        if any(given.get(method, 0) > charged for method, charged in facts.payments):
            over_charge.append(ledger.order_id)
    requested = {e["data"]["refund_id"] for e in of_run(by_id, run_id, "refund.requested")}
    issued = of_run(by_id, run_id, "refund.issued")
    unanswered = sorted(requested - {e["data"]["refund_id"] for e in issued})
    # The refunds the order's cap cut: what an earlier case of the order gave back is deducted.
    cut = [
        e for e in issued if any(b["kind"] == "already_refunded" for b in e["data"]["breakdown"])
    ]
    c["refund ledger: orders"] = len(rows)
    c["refund ledger: requests"] = len(requested)
    c["refund ledger: requests not issued"] = len(unanswered)
    c["refund ledger: refunds cut by the order cap"] = len(cut)
    c["refund ledger: orders over the goods/shipping cap"] = len(over_cap)
    c["refund ledger: orders with a method over its charge"] = len(over_charge)
    c["refund ledger: orders with requests still waiting"] = len(waiting)
    # Each flow whose cases share the order's cap has exactly one of them cut.
    sharing = [flow.order_id for flow in flows if flow.totals]
    cut_orders = {e["data"]["order_id"] for e in cut}
    uncut = [order_id for order_id in sharing if order_id not in cut_orders]
    c["refund ledger: orders whose cases share the cap"] = len(sharing)
    f.each(
        ("order(s) whose second case was not cut by the ledger's cap", uncut),
        ("refund request(s) never issued", unanswered),
        ("order(s) refunded above what was paid", over_cap),
        ("order(s) with a method refunded above its charge", over_charge),
        ("order(s) with refund requests still waiting for order.paid", waiting),
    )


# The follow-up rules, restated for the check (services/followup/domain/rules.py): a cancelled
# return and a withdrawn complaint close without a callback.
_NO_CALLBACK_RETURN_RULES = frozenset({"cancelled"})
_CALLBACK_COMPLAINT_OUTCOMES = frozenset({"upheld", "not_upheld"})


async def check_callbacks(
    f: Findings,
    conn: asyncpg.Connection,
    by_id: Mapping[str, Mapping[str, Any]],
    run_id: str,
    inputs: Sequence[Message],
) -> None:
    """Every closed case (a return refunded, reshipped or completed; a complaint resolved
    whose opening is known) has one case row and one callback; every callback.scheduled
    of the run names a known callback, once."""
    expected: set[tuple[str, str]] = set()
    for event in by_id.values():
        if not ours(event, run_id):
            continue
        data = event["data"]
        if event["type"] in ("refund.issued", "reshipment.requested"):
            if data["case"]["type"] == "return":
                expected.add(("return", data["case"]["id"]))
        elif event["type"] == "return.completed" and data.get("rule") not in (
            _NO_CALLBACK_RETURN_RULES
        ):
            expected.add(("return", data["return_id"]))
    opened = {m.event_id for m in inputs if m.event_type == "complaint.opened"}
    opened_ids = {
        json.loads(m.value)["data"]["complaint_id"]
        for m in inputs
        if m.event_type == "complaint.opened" and m.event_id in opened
    }
    for m in inputs:
        if m.event_type != "complaint.resolved":
            continue
        data = json.loads(m.value)["data"]
        if data["complaint_id"] in opened_ids and data["outcome"] in _CALLBACK_COMPLAINT_OUTCOMES:
            expected.add(("complaint", data["complaint_id"]))
    rows = await conn.fetch(
        """SELECT c.case_type, c.case_id, c.callback_id, b.callback_id IS NOT NULL AS known
           FROM followup.cases c LEFT JOIN followup.callbacks b USING (callback_id)
           WHERE c.order_id LIKE $1""",
        run_id + "%",
    )
    got = {(r["case_type"], r["case_id"]) for r in rows}
    missing = sorted(expected - got)
    extra = sorted(got - expected)
    orphans = sorted(r["case_id"] for r in rows if not r["known"])
    callbacks = {r["callback_id"] for r in rows}
    # A callback takes the buyer's next closed case in too and is scheduled again with both:
    # twice means two event ids for one callback with the same cases.
    scheduled: Counter[tuple[str, frozenset[str]]] = Counter(
        (e["data"]["callback_id"], frozenset(f"{x['type']}:{x['id']}" for x in e["data"]["cases"]))
        for e in by_id.values()
        if e["type"] == "callback.scheduled" and e["data"]["callback_id"] in callbacks
    )
    twice = sorted(cid for (cid, _), n in scheduled.items() if n > 1)
    c = f.counts
    c["closed cases expected (callbacks)"] = len(expected)
    c["closed cases with a callback"] = len(expected & got)
    c["callbacks"] = len(callbacks)
    c["callbacks scheduled twice (several event ids)"] = len(twice)
    f.each(
        ("closed case(s) without a callback", missing),
        ("case(s) closed that should not be", extra),
        ("case(s) whose callback does not exist", orphans),
        ("callback(s) scheduled twice", twice),
        prefix="followup: ",
    )


async def check_notifications(
    f: Findings,
    conn: asyncpg.Connection,
    by_id: Mapping[str, Mapping[str, Any]],
    run_id: str,
    gateway: DeliveryGateway | None,
    horizon: datetime,
) -> None:
    """Every notification of the run ends sent (its `notification.sent` once, the gateway
    holding it) or given up (`notification.failed` once, a dead-letter record), never both,
    never twice; none is left unfinished (the run waits for the notifier too, whose retries it
    makes seconds apart), but one whose next attempt (its live deliver timer) is due at or
    after `horizon`, the end of the wait, is deferred, as a timer the flows wait for is."""
    rows = await conn.fetch(
        """SELECT d.delivery_id, d.status, d.next_attempt_at,
                  GREATEST(t.due_at, t.retry_at) AS timer_due,
                  x.delivery_id IS NOT NULL AS dead_lettered
           FROM notifier.deliveries d
           LEFT JOIN notifier.dead_letters x USING (delivery_id)
           LEFT JOIN notifier.timers t
             ON t.kind = 'deliver' AND t.ref = d.delivery_id || '#' || d.timer_seq
            AND t.fired_at IS NULL AND t.cancelled_at IS NULL
           WHERE d.order_id LIKE $1""",
        run_id + "%",
    )
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for event in of_run(by_id, run_id, "notification.sent", "notification.failed"):
        outcomes[event["data"]["request_id"]][event["type"]] += 1
    status = Counter(r["status"] for r in rows)
    wrong: list[str] = []
    waiting: list[Any] = []
    deferred = 0
    for r in rows:
        told = outcomes.get(r["delivery_id"], Counter())
        if r["status"] == "sent":
            if told != Counter({"notification.sent": 1}):
                wrong.append(f"{r['delivery_id']} sent, told {dict(told)}")
            elif gateway is not None and not gateway.accepted[r["delivery_id"]]:
                wrong.append(f"{r['delivery_id']} sent, the gateway never accepted it")
        elif r["status"] == "failed":
            if told != Counter({"notification.failed": 1}) or not r["dead_lettered"]:
                wrong.append(f"{r['delivery_id']} failed, told {dict(told)}")
        elif told:
            wrong.append(f"{r['delivery_id']} {r['status']}, told {dict(told)}")
        elif r["timer_due"] is not None and r["timer_due"] >= horizon:
            deferred += 1  # its next attempt comes after the wait
        else:
            waiting.append(r["next_attempt_at"])  # due before the end of the wait, or in flight
    unknown = sorted(set(outcomes) - {r["delivery_id"] for r in rows})
    c = f.counts
    c["notifications"] = len(rows)
    c["notifications sent"] = status["sent"]
    c["notifications given up (dead-lettered)"] = status["failed"]
    c["notifications unfinished (neither sent nor given up)"] = len(waiting)
    c["notifications deferred by a retry due after the wait (not failures)"] = deferred
    c["notifications with a wrong or repeated outcome"] = len(wrong)
    if gateway is not None:
        c["gateway: 503 answers"] = gateway.refused
        c["gateway: requests held past the timeout"] = gateway.hung
        c["gateway: messages received again (same Idempotency-Key)"] = sum(
            n - 1 for n in gateway.accepted.values()
        )
    f.each(
        ("notification(s) with a wrong outcome", wrong),
        ("outcome(s) for unknown requests", unknown),
        prefix="notifier: ",
    )
    if waiting:
        due = [d for d in waiting if d is not None]
        f.problem(
            f"notifier: {len(waiting)} notification(s) neither sent nor given up"
            + (f" (next attempt from {min(due):%H:%M:%S} UTC)" if due else "")
        )
