"""The returns service wired on the real database, driven record by record with a ManualClock.

`ReturnsService` is what the runtime builds (`services.returns.bootstrap.build`: handlers,
EventProcessor, TimerScheduler) minus the broker: `feed` hands it fetched records the way the
Kafka consumer would, `fire_due` runs the due timers, and the read-back helpers decode what it
stored (outbox rows, return and ledger documents, timer rows).

Event builders produce CloudEvents exactly as the shop platform sends them (SPEC section 2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aftersales_dev import events
from services.returns import tables
from services.returns.bootstrap import build
from shared.clock import ManualClock
from shared.contracts import topics
from shared.policy import Policy
from tests.harness import Record, ServiceHarness

# Monday 2026-03-02 10:00 in Shanghai: inside working hours, far from any DST question.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def iso(instant: datetime) -> str:
    return instant.isoformat()


def instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, f"{text} has no offset"
    return value


# --- events the shop platform sends -----------------------------------------------------------

SOURCE = "/shop-platform/test"
BUYER = events.buyer("Li Lei", "13900001111", "li.lei@example.com")


def cloud_event(
    type_: str, data: dict[str, Any], at: datetime, *, event_id: str | None = None
) -> dict[str, Any]:
    return events.cloud_event(type_, data, iso(at), id=event_id, source=SOURCE)


def paid_line(
    line_id: str,
    *,
    quantity: int = 1,
    paid: int = 10000,
    category: str = "apparel",
    gift: bool = False,
    stated_price: int = 0,
) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "sku": f"SKU-{line_id}",
        "title": f"Item {line_id}",
        "category": category,
        "quantity": quantity,
        "paid_amount": 0 if gift else paid,
        "is_gift": gift,
        "stated_price": stated_price,
    }


def order_paid(
    order_id: str,
    *,
    at: datetime,
    lines: Sequence[dict[str, Any]] | None = None,
    payments: Sequence[tuple[str, int]] | None = None,
    customer_id: str = "C-1",
    shipping_fee_paid: int = 0,
    standard_shipping_fee: int = 1000,
    free_shipping_threshold: int | None = None,
    shipping_insurance: bool = False,
    event_id: str | None = None,
) -> dict[str, Any]:
    return events.order_paid(
        order_id,
        customer_id,
        at=at,
        lines=lines or [paid_line("L1")],
        customer=BUYER,
        shop_id="S-1",
        payments=payments or None,
        shipping_fee_paid=shipping_fee_paid,
        standard_shipping_fee=standard_shipping_fee,
        free_shipping_threshold=free_shipping_threshold,
        shipping_insurance=shipping_insurance,
        id=event_id,
        source=SOURCE,
    )


def outbound_signed(order_id: str, *, at: datetime, event_id: str | None = None) -> dict[str, Any]:
    return events.parcel_signed(order_id, at=at, id=event_id, source=SOURCE)


def delivered(
    order_id: str, *, paid_at: datetime = T0 - 4 * D, signed_at: datetime = T0 - 2 * D, **order: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order the buyer has: its order.paid (with `order`'s fields), then its outbound
    parcel signed for."""
    return order_paid(order_id, at=paid_at, **order), outbound_signed(order_id, at=signed_at)


def return_signed(
    order_id: str, return_id: str, *, at: datetime, event_id: str | None = None
) -> dict[str, Any]:
    return events.parcel_signed(order_id, at=at, return_id=return_id, id=event_id, source=SOURCE)


def return_requested(
    order_id: str,
    return_id: str,
    *,
    at: datetime,
    lines: Mapping[str, int] | None = None,
    reason: str = "size_fit",
    kind: str = "refund",
    condition: Sequence[str] = (),
    evidence: Sequence[str] = (),
    customer_id: str = "C-1",
    event_id: str | None = None,
) -> dict[str, Any]:
    return events.return_requested(
        order_id,
        return_id,
        customer_id,
        at=at,
        lines=lines or {"L1": 1},
        reason=reason,
        kind=kind,
        condition=condition,
        evidence_urls=evidence,
        id=event_id,
        source=SOURCE,
    )


def return_shipped(
    order_id: str, return_id: str, *, at: datetime, fee: int = 1200, event_id: str | None = None
) -> dict[str, Any]:
    return events.return_shipped(order_id, return_id, at=at, fee=fee, id=event_id, source=SOURCE)


def evidence_submitted(
    order_id: str, return_id: str, *, at: datetime, urls: Sequence[str] = ("https://img/1.jpg",)
) -> dict[str, Any]:
    return cloud_event(
        "return.evidence_submitted",
        {
            "return_id": return_id,
            "order_id": order_id,
            "evidence_urls": list(urls),
            "submitted_at": iso(at),
        },
        at,
    )


def return_inspected(
    order_id: str,
    return_id: str,
    *,
    at: datetime,
    passed: bool,
    findings: Sequence[str] = (),
) -> dict[str, Any]:
    return events.return_inspected(
        order_id, return_id, at=at, passed=passed, findings=findings, source=SOURCE
    )


def return_reviewed(
    order_id: str, return_id: str, *, at: datetime, decision: str = "approve"
) -> dict[str, Any]:
    note = "photos show a broken zip"
    return events.return_reviewed(
        order_id, return_id, at=at, decision=decision, agent_id="agent-7", note=note, source=SOURCE
    )


def return_cancelled(order_id: str, return_id: str, *, at: datetime) -> dict[str, Any]:
    return cloud_event(
        "return.cancelled",
        {"return_id": return_id, "order_id": order_id, "cancelled_at": iso(at)},
        at,
    )


# --- the wired service ------------------------------------------------------------------------


@dataclass(frozen=True)
class Emitted:
    """One outbox row, decoded."""

    row_id: int
    event_id: str
    type: str
    topic: str
    key: str | None
    event: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        return self.event["data"]  # type: ignore[no-any-return]


# Offsets handed out per (topic, partition), across every test of the run (one database).
_OFFSETS: dict[tuple[str, int], int] = defaultdict(int)


class ReturnsService(ServiceHarness):
    def __init__(self, engine: AsyncEngine, clock: ManualClock, policy: Policy | None = None):
        super().__init__(
            build,
            engine,
            clock,
            policy,
            key_of=lambda event: event["data"].get("order_id"),
            offsets=_OFFSETS,
        )
        self.fed: list[Record] = []

    # --- input ----------------------------------------------------------------------------

    async def feed(
        self, *events: Mapping[str, Any] | bytes | Record, topic: str | None = None
    ) -> list[Record]:
        """Process the events as ONE fetched batch (one transaction), in the order given."""
        batch = await super().feed(*events, topic=topic)
        self.fed.extend(batch)
        return batch

    async def feed_each(self, *events: Mapping[str, Any] | bytes) -> None:
        """One batch per event, as a consumer fetching them one by one."""
        for event in events:
            await self.feed(event)

    async def at(self, instant: datetime, *events: Mapping[str, Any] | bytes) -> None:
        """Move the clock to `instant`, run what became due, then process `events` (if any)."""
        assert instant >= self.clock.now(), "the clock only goes forward"
        self.clock.set(instant)
        await self.fire_due()
        if events:
            await self.feed(*events)

    # --- read-back ------------------------------------------------------------------------

    async def outbox(self, key: str, event_type: str | None = None) -> list[Emitted]:
        out = [
            Emitted(
                row_id=row["id"],
                event_id=row["event_id"],
                type=row["event_type"],
                topic=row["topic"],
                key=row["key"],
                event=row["event"],
            )
            for row in await self.outbox_rows(self.outbox_table.c.key == key)
        ]
        return [e for e in out if event_type is None or e.type == event_type]

    async def decisions(self, order_id: str) -> list[tuple[str, str, str | None]]:
        """(type, return_id, rule) of every return.* decision of the order, in commit order."""
        return [
            (e.type, e.data["return_id"], e.data["rule"])
            for e in await self.outbox(order_id)
            if e.topic == topics.RETURN_DECISIONS
        ]

    async def return_state(self, return_id: str) -> dict[str, Any]:
        return await self._state(tables.return_requests, "return_id", return_id)

    async def ledger(self, order_id: str) -> dict[str, Any]:
        return await self._state(tables.order_ledgers, "order_id", order_id)

    async def _state(self, t: Any, key: str, value: str) -> dict[str, Any]:
        """The stored state document of the row whose `key` is `value` (there must be one)."""
        async with self.engine.connect() as conn:
            state = await conn.scalar(select(t.c.state).where(t.c[key] == value))
        assert state is not None, f"no {t.name} row for {value}"
        return dict(state)

    async def timers(self, return_id: str) -> dict[str, dict[str, Any]]:
        """Timer rows of a return by kind."""
        t = self.definition.tables.timers
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).where(t.c.ref == return_id))).mappings()
            return {row["kind"]: dict(row) for row in rows}

    async def live_timers(self, return_id: str) -> dict[str, datetime]:
        return {
            kind: row["due_at"]
            for kind, row in (await self.timers(return_id)).items()
            if row["fired_at"] is None and row["cancelled_at"] is None
        }

    async def inbox_has(self, event_ids: Iterable[str]) -> set[str]:
        t = self.definition.tables.inbox
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.c.event_id).where(t.c.event_id.in_(list(event_ids))))
            return set(rows.scalars())


def types(emitted: Iterable[Emitted]) -> list[str]:
    return [e.type for e in emitted]


def refunded(emitted: Sequence[Emitted]) -> dict[str, Any]:
    """The data of the refund of a return approved, refunded and completed in one go."""
    assert types(emitted) == ["return.approved", "refund.requested", "return.completed"]
    return emitted[1].data
