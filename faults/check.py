"""Reconciliation after a fault run: the databases and every output topic read from the
beginning, against what the published flows must have produced."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from shared.contracts.ids import refund_id
from shared.messaging.deadletters import read_topic

from .check_cases import check_callbacks, check_ledgers, check_notifications
from .findings import Findings, by_key, count_found
from .flows import ExpectedRefund, Flow
from .gateway import DeliveryGateway
from .progress import (
    TIMER_MARGIN,
    Published,
    ServiceInfo,
    expected_timers,
    inbox_ids,
    live_timers,
)

# --- the reconciliation -----------------------------------------------------------------------


async def read_outputs(bootstrap: str, topic_names: Iterable[str]) -> dict[str, list[bytes]]:
    values: dict[str, list[bytes]] = {}
    for topic in sorted(set(topic_names)):
        values[topic] = [v async for _, _, v in read_topic(bootstrap, topic) if v is not None]
    return values


async def reconcile(
    *,
    dsn: str,
    bootstrap: str,
    run_id: str,
    services: Sequence[ServiceInfo],
    flows: Sequence[Flow],
    published: Published,
    horizon: datetime,
    stopped: datetime,
    gateway: DeliveryGateway | None = None,
) -> Findings:
    """`horizon`: the end of the wait for quiet (what comes due after it is deferred, not a
    failure); `stopped`: when the services were told to stop (a timer due shortly before it
    may not have fired yet)."""
    f = Findings()
    c = f.counts
    messages = published.messages
    valid = [m for m in messages if m.poison_reason is None]
    unique_ids = {m.event_id for m in valid}
    c["published records"] = len(messages)
    c["published events (unique ids)"] = len(unique_ids)
    c["duplicate deliveries published"] = sum(1 for m in valid if m.duplicate)
    c["poison records"] = len(messages) - len(valid)
    c["publish retries after a failed send"] = published.failures

    conn = await asyncpg.connect(dsn)
    try:
        outputs = await read_outputs(
            bootstrap,
            [t for s in services for t in s.outputs] + [s.dead_letters for s in services],
        )
        dead_origins: dict[str, set[tuple[str, int, int]]] = {}
        dead_ids: dict[str, Counter[str]] = {}
        for s in services:
            origins: set[tuple[str, int, int]] = set()
            ids: Counter[str] = Counter()
            seen_dl: set[str] = set()
            for value in outputs[s.dead_letters]:
                event = json.loads(value)
                if event["id"] in seen_dl:
                    continue
                seen_dl.add(event["id"])
                data = event["data"]
                origin = data["origin"]
                origins.add((origin["topic"], origin["partition"], origin["offset"]))
                try:
                    original_id = json.loads(data["value"]).get("id")
                except (ValueError, AttributeError):
                    original_id = None
                if isinstance(original_id, str):
                    ids[original_id] += 1
            dead_origins[s.name] = origins
            dead_ids[s.name] = ids

        # 1. every input processed (inbox) or dead-lettered, by every service that handles it
        processed_total = dead_total = 0
        for s in services:
            handled = {
                m.event_id
                for m in valid
                if m.topic in s.topics and m.event_type in s.handled and m.event_id is not None
            }
            inbox = await inbox_ids(conn, s, run_id)
            in_inbox = handled & inbox
            valid_dead = {i for i in handled if dead_ids[s.name][i]}
            lost = handled - inbox - valid_dead
            processed_total += len(in_inbox)
            c[f"{s.name}: inputs handled (unique)"] = len(handled)
            c[f"{s.name}: processed (inbox)"] = len(in_inbox)
            c[f"{s.name}: valid events dead-lettered"] = len(valid_dead)
            c[f"{s.name}: neither processed nor dead-lettered"] = len(lost)
            f.each(
                ("input event(s) lost", sorted(lost)),
                ("valid event(s) dead-lettered", sorted(valid_dead)),
                prefix=f"{s.name}: ",
            )
            extra = inbox - unique_ids
            if extra:
                f.problem(f"{s.name}: inbox holds ids never published", sorted(extra))
            # poison records: dead-lettered by every service that reads their topic
            poison_here = [
                (m, w)
                for m, w in zip(messages, published.where, strict=True)
                if m.poison_reason is not None and m.topic in s.topics
            ]
            missing = [w for _, w in poison_here if w not in dead_origins[s.name]]
            dead_total += len(poison_here) - len(missing)
            c[f"{s.name}: poison records dead-lettered"] = len(poison_here) - len(missing)
            f.each(("poison record(s) not dead-lettered", missing), prefix=f"{s.name}: ")
        c["processed (inbox rows, all services)"] = processed_total
        c["dead-lettered (poison, all services)"] = dead_total

        # 2. output topics: one content per event id
        contents: dict[str, set[bytes]] = defaultdict(set)
        records = 0
        by_id: dict[str, dict[str, Any]] = {}
        for topic, values in outputs.items():
            for value in values:
                event = json.loads(value)
                records += 1
                contents[event["id"]].add(value)
                by_id[event["id"]] = {"topic": topic, **event}
        conflicting = [i for i, v in contents.items() if len(v) > 1]
        c["output events (unique ids)"] = len(contents)
        c["output re-publications (same id, same bytes)"] = records - sum(
            len(v) for v in contents.values()
        )
        c["output ids with different contents"] = len(conflicting)
        f.each(("output event id(s) with different contents", conflicting))

        # 3. refunds (a deadline already past when its event was processed, e.g. a late
        # shipment or an inspection grace, waits the 5-minute catch-up grace: shared.catchup)
        pending = expected_timers(flows)
        deferred = {
            ref
            for schema, refs in pending.items()
            for _, ref, due in await live_timers(conn, schema, refs)
        }
        _check_refunds(f, flows, by_id, run_id, deferred)
        # 4. coupons
        _check_coupons(f, flows, by_id, run_id)
        # 5. returns' final states (those awaiting a catch-up timer are not final yet)
        await _check_returns(f, conn, flows, deferred)
        # 6. timers
        await _check_timers(f, conn, services, flows, stopped - TIMER_MARGIN)
        # 7. the refund ledger's invariants, order by order
        if any(s.name == "refunds" for s in services):
            await check_ledgers(f, conn, by_id, run_id, flows)
        # 8. one callback per closed case
        if any(s.name == "followup" for s in services):
            await check_callbacks(f, conn, by_id, run_id, valid)
        # 9. every notification sent once or given up, none twice
        if any(s.name == "notifier" for s in services):
            await check_notifications(f, conn, by_id, run_id, gateway, horizon)
    finally:
        await conn.close()
    return f


def _check_refunds(
    f: Findings,
    flows: Sequence[Flow],
    by_id: Mapping[str, Mapping[str, Any]],
    run_id: str,
    deferred: set[str],
) -> None:
    c = f.counts
    expected: dict[str, ExpectedRefund] = {}
    for flow in flows:
        for e in flow.refunds:
            expected[refund_id(e.case_type, e.case_id)] = e
    forbidden = {rid for flow in flows for rid in flow.no_refund}
    found = by_key(by_id, run_id, "refund.issued", "refund_id")
    later = [rid for rid in expected if rid not in found and expected[rid].case_id in deferred]
    missing = [rid for rid in expected if rid not in found and rid not in later]
    duplicated = [rid for rid, events in found.items() if len(events) > 1]
    wrong = [
        f"{rid}: {events[0]['data']['amount']} != {expected[rid].amount}"
        for rid, events in found.items()
        if rid in expected and not expected[rid].accepts(events[0]["data"]["amount"])
    ]
    # Refunds of one order that the ledger's cap shares out: together they give the total.
    for flow in flows:
        for rids, total in flow.totals:
            got = sum(found[rid][0]["data"]["amount"] for rid in rids if found.get(rid))
            if all(found.get(rid) for rid in rids) and got != total:
                wrong.append(f"{flow.order_id}: {got} != {total} over {len(rids)} refunds")
    unbalanced = [
        rid
        for rid, events in found.items()
        for e in events
        if sum(p["amount"] for p in e["data"]["payments"]) != e["data"]["amount"]
        or sum(b["amount"] for b in e["data"]["breakdown"]) != e["data"]["amount"]
    ]
    unexpected = [rid for rid in found if rid not in expected]
    count_found(f, "refunds", expected, found, missing)
    c["refunds deferred by a pending timer (not failures)"] = len(later)
    c["refunds duplicated (several event ids)"] = len(duplicated)
    c["refunds with a wrong amount"] = len(wrong)
    c["refunds unexpected"] = len(unexpected)
    c["refunds whose payments/breakdown do not sum"] = len(unbalanced)
    c["refunded total (fen)"] = sum(
        events[0]["data"]["amount"] for rid, events in found.items() if rid in expected
    )
    by_kind = Counter(e.flow for e in expected.values())
    for kind, n in sorted(by_kind.items()):
        c[f"refunds expected: {kind}"] = n
    f.each(
        ("refund(s) missing", missing),
        ("refund(s) issued more than once", duplicated),
        ("refund(s) with a wrong amount", wrong),
    )
    if unexpected:
        bad = [rid for rid in unexpected if rid in forbidden] or unexpected
        f.problem(f"{len(unexpected)} unexpected refund(s)", bad)
    f.each(("refund(s) whose parts do not sum", unbalanced))


def _check_coupons(
    f: Findings, flows: Sequence[Flow], by_id: Mapping[str, Mapping[str, Any]], run_id: str
) -> None:
    c = f.counts
    expected = {cid: value for flow in flows for cid, value in flow.coupons.items()}
    found = by_key(by_id, run_id, "coupon.granted", "coupon_id")
    missing = [cid for cid in expected if cid not in found]
    twice = [cid for cid, events in found.items() if len(events) > 1]
    wrong = [
        f"{cid}: {events[0]['data']['value']} != {expected[cid]}"
        for cid, events in found.items()
        if cid in expected and events[0]["data"]["value"] != expected[cid]
    ]
    unexpected = [cid for cid in found if cid not in expected]
    count_found(f, "coupons", expected, found, missing)
    c["coupons granted twice"] = len(twice)
    c["coupons with a wrong value"] = len(wrong)
    c["coupons unexpected"] = len(unexpected)
    f.each(
        ("coupon(s) missing", missing),
        ("coupon(s) granted twice", twice),
        ("coupon(s) with a wrong value", wrong),
        ("unexpected coupon(s)", unexpected),
    )


async def _check_returns(
    f: Findings, conn: asyncpg.Connection, flows: Sequence[Flow], deferred: set[str]
) -> None:
    expected = {rid: want for flow in flows for rid, want in flow.returns.items()}
    later = [rid for rid in expected if rid in deferred]
    f.counts["returns deferred by a pending timer (not failures)"] = len(later)
    expected = {rid: want for rid, want in expected.items() if rid not in deferred}
    rows = await conn.fetch(
        "SELECT return_id, status, state->>'rule' AS rule FROM returns.return_requests "
        "WHERE return_id = ANY($1::text[])",
        list(expected),
    )
    got = {r["return_id"]: (r["status"], r["rule"]) for r in rows}
    wrong = [
        f"{rid}: {got.get(rid)} != {want}" for rid, want in expected.items() if got.get(rid) != want
    ]
    f.counts["returns with the expected final state"] = len(expected) - len(wrong)
    f.counts["returns in another state"] = len(wrong)
    f.each(("return(s) not in the expected final state", wrong))


async def _check_timers(
    f: Findings,
    conn: asyncpg.Connection,
    services: Sequence[ServiceInfo],
    flows: Sequence[Flow],
    overdue: datetime,
) -> None:
    """Every timer due by `overdue` (some margin before the services stopped: the scheduler
    polls, then claims) has fired, none failed in its handler."""
    c = f.counts
    for s in services:
        rows = await conn.fetch(
            f"""SELECT kind,
                  count(*) FILTER (WHERE fired_at IS NOT NULL) AS fired,
                  count(*) FILTER (WHERE fired_at IS NULL AND cancelled_at IS NULL
                                   AND due_at <= $1) AS due_unfired,
                  count(*) FILTER (WHERE attempts > 0) AS failed
                FROM "{s.schema}".timers GROUP BY kind ORDER BY kind""",  # noqa: S608
            overdue,
        )
        for r in rows:
            c[f"{s.name} timers fired: {r['kind']}"] = r["fired"]
            if r["due_unfired"]:
                f.problem(f"{s.name}: {r['due_unfired']} due {r['kind']} timer(s) not fired")
            if r["failed"]:
                f.problem(f"{s.name}: {r['failed']} {r['kind']} timer(s) failed in their handler")
    # Timers the outcome waited for: fired (or, for a late shipment the service learnt of
    # after its deadline, re-armed by the 5-minute catch-up grace: documented, not a failure).
    waiting = expected_timers(flows)
    for schema, refs in waiting.items():
        c[f"{schema}: timer-driven outcomes"] = len(refs)
        live = await live_timers(conn, schema, refs)
        if live:
            f.notes.append(
                f"{schema}: {len(live)} timer(s) the outcome waits for are still pending "
                f"(due {min(d for _, _, d in live):%H:%M:%S} UTC or later)"
            )
            c[f"{schema}: timer-driven outcomes still pending"] = len(live)
