"""Reconciliation after a fault run: the databases and every output topic read from the
beginning, against what the published flows must have produced."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contracts.ids import refund_id
from shared.messaging.deadletters import read_topic

from .flows import ExpectedRefund, Flow, Message
from .gateway import DeliveryGateway


@dataclass(frozen=True)
class ServiceInfo:
    """What a service reads and handles (from its ServiceDefinition) and where it writes."""

    name: str
    schema: str
    group: str
    topics: tuple[str, ...]
    handled: frozenset[str]
    outputs: tuple[str, ...]
    dead_letters: str


@dataclass
class Published:
    """What the publisher sent: each record with where it landed."""

    messages: list[Message] = field(default_factory=list)
    # (topic, partition, offset) of each message, same order
    where: list[tuple[str, int, int]] = field(default_factory=list)
    failures: int = 0  # sends that failed for good and were sent again

    def ends(self) -> dict[TopicPartition, int]:
        """The end offset of every partition written (last acknowledged offset + 1)."""
        ends: dict[TopicPartition, int] = {}
        for topic, partition, offset in self.where:
            tp = TopicPartition(topic, partition)
            ends[tp] = max(ends.get(tp, 0), offset + 1)
        return ends


@dataclass
class Findings:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # discrepancies: the run fails
    notes: list[str] = field(default_factory=list)  # worth knowing, not failures

    def problem(self, text: str, examples: Iterable[object] = ()) -> None:
        shown = list(examples)[:5]
        self.problems.append(text + (f" (e.g. {', '.join(map(str, shown))})" if shown else ""))


def service_infos(names: Sequence[str]) -> list[ServiceInfo]:
    from aftersales.registry import definition
    from shared.clock import SystemClock
    from shared.contracts import dead_letter_topic
    from shared.policy import Policy

    infos = []
    for name in names:
        d = definition(name, Policy(), SystemClock())
        infos.append(
            ServiceInfo(
                name=name,
                schema=d.schema,
                group=f"aftersales-{name}",
                topics=tuple(d.topics),
                handled=frozenset(d.handlers),
                outputs=tuple(sorted(d.publishes)),
                dead_letters=dead_letter_topic(name),
            )
        )
    return infos


# --- progress while waiting for quiet ---------------------------------------------------------


async def lag(bootstrap: str, service: ServiceInfo, ends: Mapping[TopicPartition, int]) -> int:
    """Records the service's consumer group has not committed yet, over the partitions written,
    and over the whole of the topics the publisher does not write (what other services emit,
    e.g. the refund requests the ledger reads)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=service.group,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        wanted = {tp: end for tp, end in ends.items() if tp.topic in service.topics}
        written = {tp.topic for tp in ends}
        internal = [
            TopicPartition(topic, partition)
            for topic in service.topics
            if topic not in written
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if internal:
            wanted.update(await consumer.end_offsets(internal))
        total = 0
        for tp, end in wanted.items():
            committed = await consumer.committed(tp) or 0
            total += max(0, end - committed)
        return total
    finally:
        await consumer.stop()


async def db_progress(conn: asyncpg.Connection, service: ServiceInfo) -> dict[str, int]:
    s = service.schema
    row = await conn.fetchrow(
        f"""
        SELECT
          (SELECT count(*) FROM "{s}".outbox WHERE published_at IS NULL) AS outbox,
          (SELECT count(*) FROM "{s}".timers
             WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= now()) AS due_timers,
          (SELECT count(*) FROM "{s}".inbox) AS inbox
        """  # noqa: S608 - schema names from the service definitions
    )
    return dict(row)


async def unfinished_notifications(conn: asyncpg.Connection, run_id: str) -> int:
    """Notifications of the run neither sent nor given up yet (due, retrying or in flight)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM notifier.deliveries WHERE order_id LIKE $1 AND status = $2",
            run_id + "%",
            "scheduled",
        )
    )


async def inbox_ids(conn: asyncpg.Connection, service: ServiceInfo, prefix: str) -> set[str]:
    rows = await conn.fetch(
        f'SELECT event_id FROM "{service.schema}".inbox WHERE event_id LIKE $1',  # noqa: S608
        prefix + "%",
    )
    return {r["event_id"] for r in rows}


async def live_timers(
    conn: asyncpg.Connection, schema: str, refs: Iterable[tuple[str, str]]
) -> list[tuple[str, str, Any]]:
    """(kind, ref, due_at) of the given timers that have neither fired nor been cancelled."""
    wanted = list(refs)
    if not wanted:
        return []
    rows = await conn.fetch(
        f"""SELECT kind, ref, due_at FROM "{schema}".timers
            WHERE fired_at IS NULL AND cancelled_at IS NULL
              AND (kind, ref) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",  # noqa: S608
        [k for k, _ in wanted],
        [r for _, r in wanted],
    )
    return [(r["kind"], r["ref"], r["due_at"]) for r in rows]


def expected_timers(flows: Iterable[Flow]) -> dict[str, list[tuple[str, str]]]:
    """Timers whose firing the outcome waits for, by schema: (kind, ref)."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for flow in flows:
        if flow.timer is not None:
            schema, kind, ref = flow.timer
            out[schema].append((kind, ref))
    return out


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
    gateway: DeliveryGateway | None = None,
) -> Findings:
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
            if lost:
                f.problem(f"{s.name}: {len(lost)} input event(s) lost", sorted(lost))
            if valid_dead:
                f.problem(
                    f"{s.name}: {len(valid_dead)} valid event(s) dead-lettered", sorted(valid_dead)
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
            if missing:
                f.problem(f"{s.name}: {len(missing)} poison record(s) not dead-lettered", missing)
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
        if conflicting:
            f.problem(f"{len(conflicting)} output event id(s) with different contents", conflicting)

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
        await _check_timers(f, conn, services, flows)
        # 7. the refund ledger's invariants, order by order
        if any(s.name == "refunds" for s in services):
            await _check_ledgers(f, conn, by_id, run_id, flows)
        # 8. one callback per closed case
        if any(s.name == "followup" for s in services):
            await _check_callbacks(f, conn, by_id, run_id, valid)
        # 9. every notification sent once or given up, none twice
        if any(s.name == "notifier" for s in services):
            await _check_notifications(f, conn, by_id, run_id, gateway)
    finally:
        await conn.close()
    return f


def _ours(event: Mapping[str, Any], run_id: str) -> bool:
    return str(event.get("data", {}).get("order_id", "")).startswith(run_id)


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
    found: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in by_id.values():
        if event["type"] == "refund.issued" and _ours(event, run_id):
            found[event["data"]["refund_id"]].append(event)
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
    c["refunds expected"] = len(expected)
    c["refunds found"] = len([rid for rid in found if rid in expected])
    c["refunds missing"] = len(missing)
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
    if missing:
        f.problem(f"{len(missing)} refund(s) missing", missing)
    if duplicated:
        f.problem(f"{len(duplicated)} refund(s) issued more than once", duplicated)
    if wrong:
        f.problem(f"{len(wrong)} refund(s) with a wrong amount", wrong)
    if unexpected:
        bad = [rid for rid in unexpected if rid in forbidden] or unexpected
        f.problem(f"{len(unexpected)} unexpected refund(s)", bad)
    if unbalanced:
        f.problem(f"{len(unbalanced)} refund(s) whose parts do not sum", unbalanced)


def _check_coupons(
    f: Findings, flows: Sequence[Flow], by_id: Mapping[str, Mapping[str, Any]], run_id: str
) -> None:
    c = f.counts
    expected = {cid: value for flow in flows for cid, value in flow.coupons.items()}
    found: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in by_id.values():
        if event["type"] == "coupon.granted" and _ours(event, run_id):
            found[event["data"]["coupon_id"]].append(event)
    missing = [cid for cid in expected if cid not in found]
    twice = [cid for cid, events in found.items() if len(events) > 1]
    wrong = [
        f"{cid}: {events[0]['data']['value']} != {expected[cid]}"
        for cid, events in found.items()
        if cid in expected and events[0]["data"]["value"] != expected[cid]
    ]
    unexpected = [cid for cid in found if cid not in expected]
    c["coupons expected"] = len(expected)
    c["coupons found"] = len([cid for cid in found if cid in expected])
    c["coupons missing"] = len(missing)
    c["coupons granted twice"] = len(twice)
    c["coupons with a wrong value"] = len(wrong)
    c["coupons unexpected"] = len(unexpected)
    for label, items in (
        ("coupon(s) missing", missing),
        ("coupon(s) granted twice", twice),
        ("coupon(s) with a wrong value", wrong),
        ("unexpected coupon(s)", unexpected),
    ):
        if items:
            f.problem(f"{len(items)} {label}", items)


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
    if wrong:
        f.problem(f"{len(wrong)} return(s) not in the expected final state", wrong)


async def _check_timers(
    f: Findings, conn: asyncpg.Connection, services: Sequence[ServiceInfo], flows: Sequence[Flow]
) -> None:
    c = f.counts
    for s in services:
        rows = await conn.fetch(
            f"""SELECT kind,
                  count(*) FILTER (WHERE fired_at IS NOT NULL) AS fired,
                  count(*) FILTER (WHERE fired_at IS NULL AND cancelled_at IS NULL
                                   AND due_at <= now()) AS due_unfired,
                  count(*) FILTER (WHERE attempts > 0) AS failed
                FROM "{s.schema}".timers GROUP BY kind ORDER BY kind"""  # noqa: S608
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


async def _check_ledgers(
    f: Findings,
    conn: asyncpg.Connection,
    by_id: Mapping[str, Mapping[str, Any]],
    run_id: str,
    flows: Sequence[Flow],
) -> None:
    """SPEC 4.11 on what the ledger stored and issued: goods and outbound shipping never above
    what was paid, no method above its charge, every request issued (none left waiting), and
    every refund.requested answered by one refund.issued under its refund_id."""
    from services.refunds.domain import OrderLedger

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
    requested = {
        e["data"]["refund_id"]
        for e in by_id.values()
        if e["type"] == "refund.requested" and _ours(e, run_id)
    }
    issued = {
        e["data"]["refund_id"]
        for e in by_id.values()
        if e["type"] == "refund.issued" and _ours(e, run_id)
    }
    unanswered = sorted(requested - issued)
    cut = [
        e["data"]["refund_id"]
        for e in by_id.values()
        if e["type"] == "refund.issued"
        and _ours(e, run_id)
        and any(b["kind"] == "already_refunded" for b in e["data"]["breakdown"])
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
    cut_orders = {
        e["data"]["order_id"]
        for e in by_id.values()
        if e["type"] == "refund.issued"
        and _ours(e, run_id)
        and any(b["kind"] == "already_refunded" for b in e["data"]["breakdown"])
    }
    uncut = [order_id for order_id in sharing if order_id not in cut_orders]
    c["refund ledger: orders whose cases share the cap"] = len(sharing)
    for label, items in (
        ("order(s) whose second case was not cut by the ledger's cap", uncut),
        ("refund request(s) never issued", unanswered),
        ("order(s) refunded above what was paid", over_cap),
        ("order(s) with a method refunded above its charge", over_charge),
        ("order(s) with refund requests still waiting for order.paid", waiting),
    ):
        if items:
            f.problem(f"{len(items)} {label}", items)


# The follow-up rules, restated for the check (services/followup/domain/rules.py): a cancelled
# return and a withdrawn complaint close without a callback.
_NO_CALLBACK_RETURN_RULES = frozenset({"cancelled"})
_CALLBACK_COMPLAINT_OUTCOMES = frozenset({"upheld", "not_upheld"})


async def _check_callbacks(
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
        if not _ours(event, run_id):
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
    if missing:
        f.problem(f"followup: {len(missing)} closed case(s) without a callback", missing)
    if extra:
        f.problem(f"followup: {len(extra)} case(s) closed that should not be", extra)
    if orphans:
        f.problem(f"followup: {len(orphans)} case(s) whose callback does not exist", orphans)
    if twice:
        f.problem(f"followup: {len(twice)} callback(s) scheduled twice", twice)


async def _check_notifications(
    f: Findings,
    conn: asyncpg.Connection,
    by_id: Mapping[str, Mapping[str, Any]],
    run_id: str,
    gateway: DeliveryGateway | None,
) -> None:
    """Every notification of the run ends sent (its `notification.sent` once, the gateway
    holding it) or given up (`notification.failed` once, a dead-letter record), never both,
    never twice; none is left unfinished (the run waits for the notifier too, whose retries it
    makes seconds apart)."""
    rows = await conn.fetch(
        """SELECT d.delivery_id, d.status, d.next_attempt_at,
                  x.delivery_id IS NOT NULL AS dead_lettered
           FROM notifier.deliveries d LEFT JOIN notifier.dead_letters x USING (delivery_id)
           WHERE d.order_id LIKE $1""",
        run_id + "%",
    )
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for event in by_id.values():
        if event["type"] in ("notification.sent", "notification.failed") and _ours(event, run_id):
            outcomes[event["data"]["request_id"]][event["type"]] += 1
    status = Counter(r["status"] for r in rows)
    wrong: list[str] = []
    waiting: list[Any] = []
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
        else:
            waiting.append(r["next_attempt_at"])  # a later attempt, or not sent yet
    unknown = sorted(set(outcomes) - {r["delivery_id"] for r in rows})
    c = f.counts
    c["notifications"] = len(rows)
    c["notifications sent"] = status["sent"]
    c["notifications given up (dead-lettered)"] = status["failed"]
    c["notifications unfinished (neither sent nor given up)"] = len(waiting)
    c["notifications with a wrong or repeated outcome"] = len(wrong)
    if gateway is not None:
        c["gateway: 503 answers"] = gateway.refused
        c["gateway: requests held past the timeout"] = gateway.hung
        c["gateway: messages received again (same Idempotency-Key)"] = sum(
            n - 1 for n in gateway.accepted.values()
        )
    if wrong:
        f.problem(f"notifier: {len(wrong)} notification(s) with a wrong outcome", wrong)
    if unknown:
        f.problem(f"notifier: {len(unknown)} outcome(s) for unknown requests", unknown)
    if waiting:
        due = [d for d in waiting if d is not None]
        f.problem(
            f"notifier: {len(waiting)} notification(s) neither sent nor given up"
            + (f" (next attempt from {min(due):%H:%M:%S} UTC)" if due else "")
        )
