"""A fetched batch reads the aggregates its events name once (services/returns/repository.py):
the outcome must be exactly that of one event per batch, where every read is a query, and the
reads must not grow with the batch."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from aftersales_dev.events import unique
from services.returns import handlers, repository, tables
from tests.harness import statements_by_kind

from .helpers import (
    T0,
    D,
    H,
    ReturnsService,
    delivered,
    order_paid,
    outbound_signed,
    paid_line,
    return_cancelled,
    return_requested,
    return_shipped,
    return_signed,
)


def tricky(o: str, r1: str, r2: str) -> list[dict[str, Any]]:
    """Requests before their order, two requests competing for the same units, a signature
    before the order: each step reads what an earlier event of the same batch wrote."""
    return [
        return_requested(o, r1, at=T0 - 2 * D, lines={"L1": 1}),
        return_signed(o, r1, at=T0 - D),
        return_requested(o, r2, at=T0 - 2 * D + H, lines={"L1": 2}),
        outbound_signed(o, at=T0 - 3 * D),
        order_paid(o, at=T0 - 5 * D, lines=[paid_line("L1", quantity=2, paid=25901)]),
        outbound_signed(o, at=T0 - 3 * D + H),  # a second signature: the first counts
    ]


def competing(o: str, r1: str, r2: str) -> list[dict[str, Any]]:
    """Two requests in separate events: the second must see the units the first reserved."""
    return [
        *delivered(
            o,
            paid_at=T0 - 5 * D,
            signed_at=T0 - 3 * D,
            lines=[paid_line("L1", quantity=2, paid=25901)],
        ),
        return_requested(o, r2, at=T0 - 2 * D, lines={"L1": 1}),
        return_requested(o, r1, at=T0 - 2 * D + H, lines={"L1": 2}),
        return_signed(o, r2, at=T0 - D),
    ]


def plain(o: str, r: str) -> list[dict[str, Any]]:
    return [
        *delivered(
            o,
            paid_at=T0 - 5 * D,
            signed_at=T0 - 3 * D,
            lines=[paid_line("L1", quantity=3, paid=9000)],
        ),
        return_requested(o, r, at=T0 - 2 * D, lines={"L1": 2}),
        return_signed(o, r, at=T0 - D),
    ]


def late_freight(o: str, r: str) -> list[dict[str, Any]]:
    """A seller-fault return refunded, then its freight learnt (a refund of its own), the
    freight sent again and the return cancelled after completion: one request and its ledger
    changed or read by event after event."""
    return [
        *delivered(
            o,
            paid_at=T0 - 5 * D,
            signed_at=T0 - 3 * D,
            lines=[paid_line("L1", quantity=2, paid=25901)],
        ),
        return_requested(
            o, r, at=T0 - 2 * D, reason="quality_issue", evidence=["https://img/1.jpg"]
        ),
        return_signed(o, r, at=T0 - D),
        return_shipped(o, r, at=T0 - D + H, fee=1500),
        return_shipped(o, r, at=T0 - D + 2 * H, fee=1800),  # the first one after completion counts
        return_cancelled(o, r, at=T0 - D + 3 * H),
    ]


async def stored(svc: ReturnsService, o: str, r: str) -> tuple[str, str]:
    """The request's and the ledger's documents as stored, with their ids replaced by roles."""
    documents = json.dumps(await svc.return_state(r)), json.dumps(await svc.ledger(o))
    return tuple(text.replace(r, "r").replace(o, "o") for text in documents)  # type: ignore[return-value]


async def outcome(svc: ReturnsService, o: str, names: dict[str, str]) -> list[tuple[Any, ...]]:
    """Everything the order emitted, with its ids replaced by their roles."""
    out = []
    for e in await svc.outbox(o):
        data = e.data
        out.append(
            (
                e.type,
                names.get(data.get("return_id") or data.get("case", {}).get("id"), "-"),
                data.get("rule"),
                data.get("waiting_for"),
                data.get("amount"),
            )
        )
    return out


async def test_one_batch_has_the_outcome_of_one_event_per_batch(svc: ReturnsService) -> None:
    # r1 sorts before r2: requests stored at the same instant are reassessed in id order.
    together = [(unique("O"), r := unique("R"), f"{r}-2") for _ in range(3)]
    apart = [(unique("O"), r := unique("R"), f"{r}-2") for _ in range(3)]
    extra_together, extra_apart = (unique("O"), unique("R")), (unique("O"), unique("R"))

    batch = [e for o, r1, r2 in together for e in tricky(o, r1, r2)] + plain(*extra_together)
    await svc.feed(*batch)
    await svc.feed_each(
        *[e for o, r1, r2 in apart for e in tricky(o, r1, r2)], *plain(*extra_apart)
    )

    for (o1, a1, b1), (o2, a2, b2) in zip(together, apart, strict=True):
        got = await outcome(svc, o1, {a1: "r1", b1: "r2"})
        assert got == await outcome(svc, o2, {a2: "r1", b2: "r2"})
        # r1 took one of the two units and was refunded half (rounded down); r2 asked for two.
        assert ("refund.requested", "r1", None, None, 12950) in got
        assert ("return.rejected", "r2", "quantity_exceeds_purchased", None, None) in got
        assert (await svc.return_state(a1))["status"] == "completed"
    assert await outcome(svc, extra_together[0], {extra_together[1]: "r"}) == await outcome(
        svc, extra_apart[0], {extra_apart[1]: "r"}
    )


async def test_a_later_event_of_the_batch_sees_the_units_an_earlier_one_reserved(
    svc: ReturnsService,
) -> None:
    (o1, a1, b1), (o2, a2, b2) = [(unique("O"), unique("R"), unique("R")) for _ in range(2)]
    await svc.feed(*competing(o1, a1, b1))
    await svc.feed_each(*competing(o2, a2, b2))
    got = await outcome(svc, o1, {a1: "r1", b1: "r2"})
    assert got == await outcome(svc, o2, {a2: "r1", b2: "r2"})
    assert ("return.rejected", "r1", "quantity_exceeds_purchased", None, None) in got
    assert ("refund.requested", "r2", None, None, 12950) in got


async def test_a_batch_reads_its_aggregates_in_four_statements_and_writes_once_per_table(
    svc: ReturnsService,
) -> None:
    seen = {}
    for size in (5, 25):
        flows = [(unique("O"), unique("R")) for _ in range(size)]
        with statements_by_kind(svc.engine) as seen[size]:
            await svc.feed(*[e for o, r in flows for e in plain(o, r)])
        for o, _ in flows:
            refunds = await svc.outbox(o, "refund.requested")
            assert [e.data["amount"] for e in refunds] == [6000]
    assert seen[25]["lock"] == 1 and seen[25]["read"] == 4
    # inbox, orders, ledgers, signatures, return requests, outbox, timers: whatever the size
    assert seen[25] == seen[5]
    assert seen[25]["write"] <= 8


async def test_a_return_named_with_another_order_is_still_dead_lettered(
    svc: ReturnsService,
) -> None:
    o1, o2, r = unique("O"), unique("O"), unique("R")
    await svc.feed(*plain(o1, r)[:3])
    await svc.feed(return_signed(o2, r, at=T0 - D), *plain(o2, unique("R")))
    letters = await svc.outbox(o2, "event.deadlettered")
    assert [e.data["reason"] for e in letters] == ["handler_error"]
    assert (await svc.return_state(r))["order_id"] == o1
    assert [e.data["amount"] for e in await svc.outbox(o2, "refund.requested")] == [6000]


async def test_a_request_changed_by_several_events_of_a_batch_is_stored_as_the_last_left_it(
    svc: ReturnsService,
) -> None:
    """Within a batch each handler works on the same request and ledger; they are written once,
    at commit: what is stored and emitted is what one event per batch gives, whether the
    request is new to the batch or read from a row."""
    together, split, apart = [(unique("O"), unique("R")) for _ in range(3)]
    await svc.feed(*late_freight(*together))
    await svc.feed(*late_freight(*split)[:3])
    await svc.feed(*late_freight(*split)[3:])
    await svc.feed_each(*late_freight(*apart))

    expected = await outcome(svc, apart[0], {apart[1]: "r"})
    assert [e for e in expected if e[0] == "refund.requested"] == [
        ("refund.requested", "r", None, None, 12950),
        ("refund.requested", "r", None, None, 1500),
    ]
    for o, r in (together, split):
        assert await outcome(svc, o, {r: "r"}) == expected
        assert await stored(svc, o, r) == await stored(svc, *apart)
    state = await svc.return_state(together[1])
    assert (state["status"], state["return_shipping_fee_paid"]) == ("completed", 1500)


async def test_a_handler_failing_after_changing_a_request_leaves_none_of_its_changes(
    svc: ReturnsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The freight's refund fails after the domain recorded the freight on the request and the
    ledger the batch holds: the batch is applied again from what is stored, so the failing
    event changes nothing and the rest of the batch commits."""
    o, r = unique("O"), unique("R")
    other_o, other_r = unique("O"), unique("R")
    await svc.feed(*late_freight(o, r)[:4])
    refund_request = handlers.refund_request

    def refused_freight(*args: Any, **kwargs: Any) -> Any:
        if [kind for kind, _ in kwargs["breakdown"]] == ["return_shipping"]:
            raise RuntimeError("the freight's refund is refused")
        return refund_request(*args, **kwargs)

    monkeypatch.setattr(handlers, "refund_request", refused_freight)
    await svc.feed(late_freight(o, r)[4], *plain(other_o, other_r))

    letters = await svc.outbox(o, "event.deadlettered")
    assert [e.data["reason"] for e in letters] == ["handler_error"]
    state, ledger = await svc.return_state(r), await svc.ledger(o)
    assert (state["status"], state["return_shipping_fee_paid"], state["carrier"]) == (
        "completed",
        None,
        None,
    )
    assert ledger["return_shipping_settled"] == [] and ledger["return_shipping_refunded"] == 0
    assert [e.data["amount"] for e in await svc.outbox(o, "refund.requested")] == [12950]
    assert [e.data["amount"] for e in await svc.outbox(other_o, "refund.requested")] == [6000]


async def rows(svc: ReturnsService, o: str, names: dict[str, str]) -> dict[str, list[str]]:
    """Every column of the order's rows in each returns table, ids replaced by their roles."""
    out = {}
    async with svc.engine.connect() as conn:
        for table in (
            tables.orders,
            tables.order_ledgers,
            tables.outbound_signatures,
            tables.return_requests,
        ):
            found = (await conn.execute(select(table).where(table.c.order_id == o))).all()
            text = [repr(sorted(row._asdict().items())) for row in found]
            for real, role in [*names.items(), (o, "o")]:
                text = [t.replace(real, role) for t in text]
            out[table.name] = sorted(text)
    return out


async def test_rows_written_at_commit_are_those_written_one_statement_each(
    svc: ReturnsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's rows go as one JSON parameter per table: every column is what a save outside
    a batch (one statement each) writes, created_at kept and updated_at moved by a later
    batch, the first outbound signature kept, instants exact (an offset, microseconds)."""
    signed = (T0 - 3 * D + timedelta(microseconds=123456)).astimezone(timezone(timedelta(hours=8)))

    def flow(o: str, r: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        first = [
            order_paid(o, at=T0 - 5 * D, lines=[paid_line("L1", quantity=3, paid=9000)]),
            outbound_signed(o, at=signed),
            return_requested(o, r, at=T0 - 2 * D, lines={"L1": 2}),
        ]
        return first, [outbound_signed(o, at=signed + H), return_signed(o, r, at=T0 - D)]

    async def run(o: str, r: str) -> None:
        first, later = flow(o, r)
        svc.clock.set(T0)
        await svc.feed(*first)
        svc.clock.set(T0 + H + timedelta(microseconds=7))
        await svc.feed(*later)

    batched, alone = (unique("O"), unique("R")), (unique("O"), unique("R"))
    await run(*batched)
    with monkeypatch.context() as patch:

        async def no_cache(*_: Any) -> None:
            return None

        patch.setattr(repository, "batch_cache", no_cache)
        await run(*alone)

    got = await rows(svc, batched[0], {batched[1]: "r"})
    assert got == await rows(svc, alone[0], {alone[1]: "r"})
    assert all(len(found) == 1 for found in got.values())
    [request] = await svc.outbox(batched[0], "refund.requested")
    assert request.data["amount"] == 6000
