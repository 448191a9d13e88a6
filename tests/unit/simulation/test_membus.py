"""The bus in memory behaves as the consumer, the relay and the timer scheduler do: an event
once per service, a failing handler leaves nothing behind, outputs reach their readers before
the next input, timers fire at their due instant between the inputs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from shared.contracts import CloudEvent, OrderCancelled, new_event, topics
from shared.messaging.context import HandlerContext
from shared.messaging.errors import Rejected
from shared.messaging.membus import MemoryBus, MemoryService
from shared.messaging.memory import MemoryUnitOfWork
from shared.messaging.store import Timer

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)


def cancelled(order_id: str, at: datetime, event_id: str | None = None) -> CloudEvent:
    data = OrderCancelled(order_id=order_id, cancelled_at=at)
    return new_event(
        "order.cancelled", data, id=event_id or f"e-{order_id}", source="/shop", time=at
    )


class Recorder:
    """A service that notes what it handles and sets a timer an hour on for each order; an
    order named `bad` fails after changing everything, one named `refused` is rejected."""

    def __init__(self, name: str, log: list[tuple[str, str, datetime]] | None = None) -> None:
        self.uow = MemoryUnitOfWork(name)
        self.rows = self.uow.rows()
        self.log = log if log is not None else []  # shared: the order across services

    async def handle(self, event: CloudEvent, ctx: HandlerContext) -> None:
        order_id = event.data.order_id  # type: ignore[union-attr]
        self.rows.put(order_id, "seen")
        await ctx.timers.set("hour", order_id, due_at=ctx.now + H, lock_key=order_id)
        self.log.append((self.uow.service, order_id, ctx.now))
        if order_id == "bad":
            raise RuntimeError("a bug")
        if order_id == "refused":
            raise Rejected("not_ours", "refused")

    async def fire(self, timer: Timer, ctx: HandlerContext) -> None:
        self.log.append((self.uow.service, f"timer {timer.ref}", ctx.now))

    def service(self) -> MemoryService:
        return MemoryService(
            name=self.uow.service,
            topics=(topics.ORDERS,),
            handlers={"order.cancelled": self.handle},
            timer_handlers={"hour": self.fire},
            uow=self.uow,
        )


def run(bus: MemoryBus, *events: CloudEvent) -> None:
    async def play() -> None:
        for event in events:
            await bus.publish(topics.ORDERS, event, event.time)

    asyncio.run(play())


def test_a_failing_handler_leaves_nothing_and_is_counted_as_a_dead_letter() -> None:
    one = Recorder("one")
    bus = MemoryBus([one.service()], start=T0)
    run(bus, cancelled("bad", T0), cancelled("refused", T0 + H / 6), cancelled("bad", T0 + H / 3))
    assert "bad" not in one.rows and "refused" not in one.rows
    assert one.uow.timers.pending() == []
    assert one.uow.inbox.seen == set()  # not applied: a redelivery is tried again
    assert bus.dead_letters == {("one", "handler_error"): 2, ("one", "not_ours"): 1}


def test_an_event_is_applied_once_per_service() -> None:
    log: list[tuple[str, str, datetime]] = []
    one, two = Recorder("one", log), Recorder("two", log)
    bus = MemoryBus([one.service(), two.service()], start=T0)
    run(bus, cancelled("o1", T0), cancelled("o1", T0 + H / 2))  # the same id again
    assert [entry[:2] for entry in log] == [("one", "o1"), ("two", "o1")]
    assert bus.outcomes[("one", "order.cancelled", "duplicate")] == 1


def test_timers_fire_at_their_instant_between_the_inputs_in_due_order() -> None:
    log: list[tuple[str, str, datetime]] = []
    one, two = Recorder("one", log), Recorder("two", log)
    bus = MemoryBus([one.service(), two.service()], start=T0)
    run(
        bus,
        cancelled("a", T0),
        cancelled("b", T0 + H / 2),
        cancelled("c", T0 + H),  # a's timers are due now: c comes first
        cancelled("d", T0 + 3 * H),
    )
    assert [(who, what, at - T0) for who, what, at in log] == [
        ("one", "a", timedelta()),
        ("two", "a", timedelta()),
        ("one", "b", H / 2),
        ("two", "b", H / 2),
        ("one", "c", H),
        ("two", "c", H),
        ("one", "timer a", H),
        ("two", "timer a", H),
        ("one", "timer b", 1.5 * H),
        ("two", "timer b", 1.5 * H),
        ("one", "timer c", 2 * H),
        ("two", "timer c", 2 * H),
        ("one", "d", 3 * H),
        ("two", "d", 3 * H),
    ]
