"""TimerScheduler against the real database, with a ManualClock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.clock import ManualClock
from shared.contracts import SLA_BREACHED, parse_event
from shared.db import UnitOfWork
from shared.messaging.errors import is_transient
from shared.messaging.scheduler import MAX_TIMER_ATTEMPTS, PARKED_UNTIL, TRANSIENT_RETRY
from shared.messaging.store import Timers

from .helpers import (
    SHIP_DEADLINE,
    T0,
    Harness,
    outbox_rows,
    ship_breach,
    statements_sent,
)
from .kit import MessagingKit


async def set_timer(
    harness: Harness, sessions: async_sessionmaker[AsyncSession], ref: str, due_at: datetime
) -> None:
    async with UnitOfWork(sessions) as uow:
        await Timers(uow.session, harness.tables).set(
            SHIP_DEADLINE, ref, due_at=due_at, lock_key=ref, payload={"ref": ref}
        )
        await uow.commit()


async def set_timers_due(
    harness: Harness,
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    refs: list[str],
) -> None:
    """A timer per ref, a second apart from T0, all due an hour later (where the clock goes)."""
    for i, ref in enumerate(refs):
        await set_timer(harness, sessions, ref, T0 + timedelta(seconds=i))
    clock.set(T0 + timedelta(hours=1))


async def cancel_timer(
    harness: Harness, sessions: async_sessionmaker[AsyncSession], ref: str, at: datetime
) -> None:
    async with UnitOfWork(sessions) as uow:
        await Timers(uow.session, harness.tables).cancel(SHIP_DEADLINE, ref, at=at)
        await uow.commit()


async def fired_refs(engine: AsyncEngine, harness: Harness) -> list[str]:
    """Order ids of the sla.breached events the timer handler queued, in outbox order."""
    return [
        parse_event(row["payload"]).data.order_id  # type: ignore[union-attr]
        for row in await outbox_rows(engine, harness)
        if row["event_type"] == SLA_BREACHED
    ]


async def test_timers_fire_once_when_due_and_never_when_cancelled(kit: MessagingKit) -> None:
    hour = timedelta(hours=1)
    await set_timer(kit.harness, kit.sessions, "o-1", T0 + hour)
    await set_timer(kit.harness, kit.sessions, "o-2", T0 + 2 * hour)
    await set_timer(kit.harness, kit.sessions, "o-cancelled", T0 + hour)
    await cancel_timer(kit.harness, kit.sessions, "o-cancelled", T0)
    await set_timer(kit.harness, kit.sessions, "o-moved", T0 + hour)
    await set_timer(kit.harness, kit.sessions, "o-moved", T0 + 3 * hour)  # re-set: moves it
    one, two = (
        kit.scheduler(),
        kit.scheduler(),
    )

    assert await one.run_due() == 0
    kit.clock.set(T0 + hour - timedelta(seconds=1))
    assert await one.run_due() == 0
    assert await fired_refs(kit.engine, kit.harness) == []

    kit.clock.set(T0 + hour)
    assert sorted(await asyncio.gather(one.run_due(), two.run_due())) == [0, 1]
    assert await fired_refs(kit.engine, kit.harness) == ["o-1"]

    kit.clock.set(T0 + 2 * hour)
    await asyncio.gather(one.run_all_due(), two.run_all_due())
    assert await fired_refs(kit.engine, kit.harness) == ["o-1", "o-2"]

    kit.clock.set(T0 + 10 * hour)
    await asyncio.gather(one.run_all_due(), two.run_all_due())
    await asyncio.gather(one.run_all_due(), two.run_all_due())
    assert await fired_refs(kit.engine, kit.harness) == ["o-1", "o-2", "o-moved"]
    assert kit.harness.timer_calls == {"o-1": 1, "o-2": 1, "o-moved": 1}

    timers = await kit.timer_rows()
    assert timers["o-1"]["fired_at"] == T0 + hour
    assert timers["o-moved"]["due_at"] == T0 + 3 * hour
    assert timers["o-cancelled"]["fired_at"] is None
    assert timers["o-cancelled"]["cancelled_at"] == T0

    # The emitted event's id derives from the timer, so it is stable across replays.
    events = [parse_event(r["payload"]) for r in await kit.outbox_rows()]
    assert len({e.id for e in events}) == 3
    assert all(e.causationid and e.causationid.startswith("timer:") for e in events)

    # Cancelling a fired timer changes nothing; re-setting it arms it again.
    await cancel_timer(kit.harness, kit.sessions, "o-1", T0 + 10 * hour)
    assert (await kit.timer_rows())["o-1"]["cancelled_at"] is None
    await set_timer(kit.harness, kit.sessions, "o-1", T0 + 11 * hour)
    kit.clock.set(T0 + 11 * hour)
    assert await one.run_all_due() == 1
    assert kit.harness.timer_calls["o-1"] == 2


async def test_racing_schedulers_fire_each_timer_exactly_once(kit: MessagingKit) -> None:
    refs = [f"o-{i}" for i in range(60)]
    await set_timers_due(kit.harness, kit.sessions, kit.clock, refs)
    racers = [kit.scheduler(batch_size=7) for _ in range(3)]
    fired = await asyncio.gather(*(r.run_all_due() for r in racers))
    # A scheduler can stop early when the rows it saw were taken by another; sweep up.
    fired.append(await racers[0].run_all_due())

    assert sum(fired) == 60
    assert sorted(await fired_refs(kit.engine, kit.harness)) == sorted(refs)
    assert set(kit.harness.timer_calls.values()) == {1}
    assert len(await kit.effect_rows()) == 60


async def test_failing_timer_is_retried_with_backoff_then_parked(kit: MessagingKit) -> None:
    await set_timer(kit.harness, kit.sessions, "o-flaky", T0)
    await set_timer(kit.harness, kit.sessions, "o-broken", T0)
    kit.harness.timer_faults["o-flaky"] = [ValueError("first"), ValueError("second")]
    kit.harness.timer_faults["o-broken"] = [KeyError(f"try {i}") for i in range(100)]
    s = kit.scheduler()

    for attempt in range(1, MAX_TIMER_ATTEMPTS + 1):
        await s.run_all_due()
        timers = await kit.timer_rows()
        broken = timers["o-broken"]
        assert broken["attempts"] == attempt
        assert broken["fired_at"] is None
        assert broken["cancelled_at"] is None
        if attempt < MAX_TIMER_ATTEMPTS:
            # Not retried before its backoff has passed; still due when it was set for.
            assert broken["retry_at"] == kit.clock.now() + timedelta(minutes=2**attempt)
            assert broken["due_at"] == T0
            kit.clock.set(broken["retry_at"] - timedelta(seconds=1))
            await s.run_all_due()
            assert (await kit.timer_rows())["o-broken"]["attempts"] == attempt
            kit.clock.set(broken["retry_at"])
        else:
            assert broken["retry_at"] == PARKED_UNTIL  # parked

    # Parked: never called again. (A batch with a failing timer is fired again timer by
    # timer, so its handlers run twice in that round; only the second round commits.)
    calls = kit.harness.timer_calls["o-broken"]
    kit.clock.advance(timedelta(days=30))
    await s.run_all_due()
    assert kit.harness.timer_calls["o-broken"] == calls
    timers = await kit.timer_rows()
    assert timers["o-broken"]["attempts"] == MAX_TIMER_ATTEMPTS
    # A deadline that never ran: live, not cancelled (retention keeps it), reported past due.
    assert (timers["o-broken"]["fired_at"], timers["o-broken"]["cancelled_at"]) == (None, None)
    await s.observe()
    assert timer_gauges(kit) == (1, (kit.clock.now() - T0).total_seconds())
    # The flaky one failed twice (both in the first round), then fired once; failed calls
    # left no trace.
    assert kit.harness.timer_faults["o-flaky"] == []
    assert timers["o-flaky"]["attempts"] == 1
    assert timers["o-flaky"]["fired_at"] is not None
    assert await fired_refs(kit.engine, kit.harness) == ["o-flaky"]
    assert [r["order_id"] for r in await kit.effect_rows()] == ["o-flaky"]
    # Set again by a new fact of its case, it fires.
    kit.harness.timer_faults["o-broken"] = []
    await set_timer(kit.harness, kit.sessions, "o-broken", kit.clock.now())
    assert await s.run_all_due() == 1
    assert await fired_refs(kit.engine, kit.harness) == ["o-flaky", "o-broken"]


async def test_a_retried_timer_is_the_timer_as_it_was_set(kit: MessagingKit) -> None:
    """Handlers take a timer whose due time is not the one they set for stale (set again
    meanwhile): the retry after a failure comes after a backoff, but as the same timer, due
    when it was set for, with the same cause."""
    await set_timer(kit.harness, kit.sessions, "o-retried", T0)
    # Fired together, then alone: both fail, one attempt counted.
    kit.harness.timer_faults["o-retried"] = [ValueError("first"), ValueError("again")]
    kit.clock.set(T0 + timedelta(minutes=1))
    s = kit.scheduler()
    assert await s.run_all_due() == 1
    timer = (await kit.timer_rows())["o-retried"]
    assert (timer["due_at"], timer["attempts"], timer["fired_at"]) == (T0, 1, None)
    assert timer["retry_at"] == kit.clock.now() + timedelta(minutes=2)
    kit.clock.advance(timedelta(minutes=1))
    assert await s.run_all_due() == 0  # not before its backoff
    kit.clock.advance(timedelta(minutes=1))
    assert await s.run_all_due() == 1
    events = [parse_event(row["payload"]) for row in await kit.outbox_rows()]
    assert [event.data.due_at for event in events] == [T0]  # type: ignore[union-attr]
    assert events[0].causationid == f"timer:{SHIP_DEADLINE}:o-retried:{T0.isoformat()}"
    timer = (await kit.timer_rows())["o-retried"]
    assert (timer["due_at"], timer["fired_at"]) == (T0, kit.clock.now())
    # Set again, it fires when set for, its backoff forgotten.
    await set_timer(kit.harness, kit.sessions, "o-retried", kit.clock.now())
    assert (await kit.timer_rows())["o-retried"]["retry_at"] is None
    assert await s.run_all_due() == 1


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_timer_of_a_kind_a_scheduler_has_no_handler_for_waits_for_one_that_has(
    kit: MessagingKit, concurrency: int
) -> None:
    """During a rolling update the previous release's schedulers run beside the new one's: a
    timer of a kind the new release brought is left to a scheduler that fires it, not taken as
    fired by one that cannot."""
    await set_timers_due(kit.harness, kit.sessions, kit.clock, ["n-1", "n-2"])
    previous = kit.scheduler({}, concurrency=concurrency)
    assert await previous.run_all_due() == 0
    assert all(row["fired_at"] is None for row in (await kit.timer_rows()).values())
    assert await kit.scheduler(concurrency=concurrency).run_all_due() == 2
    assert sorted(await fired_refs(kit.engine, kit.harness)) == ["n-1", "n-2"]


def timer_gauges(kit: MessagingKit) -> tuple[float | None, float | None]:
    labels = {"service": kit.harness.name, "kind": SHIP_DEADLINE}
    return (
        REGISTRY.get_sample_value("aftersales_timers_due", labels),
        REGISTRY.get_sample_value("aftersales_timers_overdue_seconds", labels),
    )


async def test_timers_past_due_are_reported_by_kind_even_with_no_handler_for_them(
    kit: MessagingKit,
) -> None:
    """A kind no scheduler fires (a release that dropped its handler) leaves no lag to
    observe: the gauge of how long the oldest is past due is what an alert can see."""
    await set_timers_due(kit.harness, kit.sessions, kit.clock, ["g-1", "g-2"])
    await set_timer(kit.harness, kit.sessions, "g-later", kit.clock.now() + timedelta(hours=1))
    previous = kit.scheduler({})
    await previous.observe()
    assert timer_gauges(kit) == (2, 3600.0)
    kit.clock.advance(timedelta(minutes=10))
    await kit.scheduler().run_all_due()
    await previous.observe()
    assert timer_gauges(kit) == (0, 0.0)


def statement_kind(statement: str) -> list[str]:
    """The handler's own write ('effects'), savepoints, and every other statement ('other')."""
    words = statement.split()
    if words[0].upper() in ("SAVEPOINT", "RELEASE"):
        return ["savepoint"]
    if words[0].upper() == "INSERT" and ".effects" in words[2]:
        return ["effects"]
    return ["other"]


def fired_count(kit: MessagingKit) -> float:
    labels = {"service": kit.harness.name, "kind": SHIP_DEADLINE}
    return REGISTRY.get_sample_value("aftersales_timers_fired_total", labels) or 0.0


async def test_a_batch_fires_with_the_same_statements_whatever_its_size(
    kit: MessagingKit,
) -> None:
    """Each timer costs its handler's own statements (one effects row); the claim, the
    outbox rows, the journal and the timers marked fired are one statement each per batch,
    with no savepoint."""
    seen = {}
    for n in (3, 30):
        refs = [f"s{n}-{i}" for i in range(n)]
        await set_timers_due(kit.harness, kit.sessions, kit.clock, refs)
        with statements_sent(kit.engine, statement_kind) as seen[n]:
            assert await kit.scheduler().run_due() == n
        timers = await kit.timer_rows()
        assert all(timers[ref]["fired_at"] == kit.clock.now() for ref in refs)
        assert seen[n]["effects"] == n and seen[n]["savepoint"] == 0, seen[n]
    # The candidates, the lock, the claim, the outbox, the journal, the mark.
    assert seen[3]["other"] == seen[30]["other"] == 6, seen
    assert sorted(await fired_refs(kit.engine, kit.harness)) == sorted(
        [f"s3-{i}" for i in range(3)] + [f"s30-{i}" for i in range(30)]
    )


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_failing_timer_leaves_the_others_of_its_batch_fired_once(
    kit: MessagingKit, concurrency: int
) -> None:
    refs = [f"f-{i}" for i in range(6)]
    await set_timers_due(kit.harness, kit.sessions, kit.clock, refs)
    kit.harness.timer_faults["f-3"] = [ValueError(f"try {i}") for i in range(100)]
    before = fired_count(kit)
    assert await kit.scheduler(concurrency=concurrency).run_due() == 6
    timers = await kit.timer_rows()
    good = [ref for ref in refs if ref != "f-3"]
    assert all(timers[ref]["fired_at"] is not None for ref in good)
    assert (timers["f-3"]["fired_at"], timers["f-3"]["attempts"]) == (None, 1)
    assert timers["f-3"]["retry_at"] == kit.clock.now() + timedelta(minutes=2)
    # The first try's writes (the effects rows, the outbox, the journal) were rolled back:
    # each good timer's effects are there once, the failing one's not at all.
    assert sorted(await fired_refs(kit.engine, kit.harness)) == good
    assert sorted(r["order_id"] for r in await kit.effect_rows()) == good
    assert fired_count(kit) - before == 5
    # Retried after its backoff, alone.
    kit.harness.timer_faults["f-3"] = []
    kit.clock.advance(timedelta(minutes=2))
    assert await kit.scheduler(concurrency=concurrency).run_all_due() == 1
    assert sorted(await fired_refs(kit.engine, kit.harness)) == refs
    assert fired_count(kit) - before == 6


async def test_a_handler_that_sets_its_own_timer_again_rearms_it_in_a_batch(
    kit: MessagingKit,
) -> None:
    from shared.messaging.context import HandlerContext
    from shared.messaging.store import Timer

    async def handler(timer: Timer, ctx: HandlerContext) -> None:
        if timer.ref == "r-later":
            due_at = timer.due_at + timedelta(days=1)
        elif timer.ref == "r-same":
            due_at = timer.due_at
        else:
            return
        await ctx.timers.set(timer.kind, timer.ref, due_at=due_at, lock_key=timer.lock_key)

    await set_timers_due(kit.harness, kit.sessions, kit.clock, ["r-later", "r-same", "r-plain"])
    assert await kit.scheduler({SHIP_DEADLINE: handler}).run_due() == 3
    timers = await kit.timer_rows()
    # Set again for later: armed for then. Set again for the same instant, or not at all:
    # fired, as firing them one by one left them.
    assert timers["r-later"]["fired_at"] is None
    assert timers["r-later"]["due_at"] == T0 + timedelta(days=1)
    assert timers["r-same"]["fired_at"] == timers["r-plain"]["fired_at"] == kit.clock.now()


def failed_count(kit: MessagingKit) -> float:
    labels = {"service": kit.harness.name, "kind": SHIP_DEADLINE}
    return REGISTRY.get_sample_value("aftersales_timers_failed_total", labels) or 0.0


@pytest.mark.parametrize("fault", [ConnectionError("db gone"), TimeoutError("slow")])
async def test_a_passing_fault_in_a_handler_once_costs_no_attempt(
    kit: MessagingKit, fault: BaseException
) -> None:
    """Fired together, a handler meets a passing fault: the batch is rolled back and fired
    timer by timer, where it fires; no attempt counted, nothing written twice."""
    await set_timer(kit.harness, kit.sessions, "o-1", T0)
    await set_timer(kit.harness, kit.sessions, "o-2", T0 + timedelta(seconds=1))
    kit.harness.timer_faults["o-2"] = [fault]
    kit.clock.set(T0 + timedelta(minutes=1))
    assert await kit.scheduler().run_due() == 2
    timers = await kit.timer_rows()
    assert [timers[r]["fired_at"] for r in ("o-1", "o-2")] == [kit.clock.now()] * 2
    assert [timers[r]["attempts"] for r in ("o-1", "o-2")] == [0, 0]
    assert sorted(await fired_refs(kit.engine, kit.harness)) == ["o-1", "o-2"]
    assert sorted(r["order_id"] for r in await kit.effect_rows()) == ["o-1", "o-2"]


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_timer_that_keeps_meeting_a_passing_fault_waits_alone_and_is_never_parked(
    kit: MessagingKit, concurrency: int
) -> None:
    """A handler that times out every time (a statement timeout on one timer, say) must not
    hold back the timers behind it round after round, nor be parked as an outage would
    wrongly park healthy timers: it waits a minute each time, the others fire."""
    refs = [f"t-{i}" for i in range(4)]
    await set_timers_due(kit.harness, kit.sessions, kit.clock, refs)
    kit.harness.timer_faults["t-1"] = [TimeoutError(f"slow {i}") for i in range(100)]
    s = kit.scheduler(concurrency=concurrency)
    failed = failed_count(kit)
    assert await s.run_due() == 4
    good = ["t-0", "t-2", "t-3"]
    assert sorted(await fired_refs(kit.engine, kit.harness)) == good
    assert sorted(r["order_id"] for r in await kit.effect_rows()) == good
    stuck = (await kit.timer_rows())["t-1"]
    assert (stuck["fired_at"], stuck["attempts"], stuck["cancelled_at"]) == (None, 0, None)
    assert stuck["retry_at"] == kit.clock.now() + TRANSIENT_RETRY
    assert failed_count(kit) - failed == 1
    assert await s.run_due() == 0  # not again before its wait
    for _ in range(MAX_TIMER_ATTEMPTS + 2):
        kit.clock.advance(TRANSIENT_RETRY)
        assert await s.run_due() == 1
    stuck = (await kit.timer_rows())["t-1"]
    assert (stuck["fired_at"], stuck["attempts"], stuck["cancelled_at"]) == (None, 0, None)
    kit.harness.timer_faults["t-1"] = []
    kit.clock.advance(TRANSIENT_RETRY)
    assert await s.run_due() == 1
    assert sorted(await fired_refs(kit.engine, kit.harness)) == refs
    assert (await kit.timer_rows())["t-1"]["due_at"] == T0 + timedelta(seconds=1)


async def test_a_handler_whose_connection_is_gone_leaves_the_batch_for_later(
    kit: MessagingKit,
) -> None:
    """An outage, not one timer's trouble: the session is gone, nothing is recorded, the
    scheduler raises and the whole batch is fired again later, no attempt counted."""
    from sqlalchemy import text

    from shared.messaging.context import HandlerContext
    from shared.messaging.store import Timer

    cuts = {"o-2": 2}  # fired together, then timer by timer: the connection dies both times

    async def handler(timer: Timer, ctx: HandlerContext) -> None:
        if cuts.get(timer.ref):
            cuts[timer.ref] -= 1
            await ctx.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        await kit.harness.on_ship_deadline(timer, ctx)

    await set_timer(kit.harness, kit.sessions, "o-1", T0)
    await set_timer(kit.harness, kit.sessions, "o-2", T0 + timedelta(seconds=1))
    kit.clock.set(T0 + timedelta(minutes=1))
    s = kit.scheduler({SHIP_DEADLINE: handler})
    with pytest.raises(Exception) as raised:
        await s.run_due()
    assert is_transient(raised.value)
    timers = await kit.timer_rows()
    assert [timers[r]["fired_at"] for r in ("o-1", "o-2")] == [None, None]
    assert [timers[r]["retry_at"] for r in ("o-1", "o-2")] == [None, None]
    assert [timers[r]["attempts"] for r in ("o-1", "o-2")] == [0, 0]
    assert await kit.outbox_rows() == []
    assert await s.run_all_due() == 2
    assert sorted(await fired_refs(kit.engine, kit.harness)) == ["o-1", "o-2"]


async def test_a_batch_fired_in_concurrent_transactions_fires_each_timer_once(
    kit: MessagingKit,
) -> None:
    refs = [f"c-{i}" for i in range(40)]
    await set_timers_due(kit.harness, kit.sessions, kit.clock, refs)
    split = kit.scheduler(batch_size=25, concurrency=4)
    racers = [split, kit.scheduler(batch_size=7)]
    fired = await asyncio.gather(*(r.run_all_due() for r in racers))
    fired.append(await split.run_all_due())
    assert sum(fired) == 40
    assert sorted(await fired_refs(kit.engine, kit.harness)) == sorted(refs)
    assert set(kit.harness.timer_calls.values()) == {1}


async def test_work_outside_the_transaction_runs_after_commit_and_is_recorded(
    kit: MessagingKit,
) -> None:
    from sqlalchemy import select

    from shared.messaging.context import HandlerContext
    from shared.messaging.store import Timer

    t = kit.harness.tables.timers
    seen_during_call: list[object] = []
    recorded: list[tuple[str, object]] = []

    async def handler(timer: Timer, ctx: HandlerContext) -> None:
        async def call() -> str:
            # The timer's transaction has committed: another connection sees it fired.
            async with kit.engine.connect() as conn:
                fired_at = await conn.scalar(select(t.c.fired_at).where(t.c.id == timer.id))
            seen_during_call.append(fired_at)
            if timer.ref == "w-bad":
                raise RuntimeError("the call failed")
            return f"result of {timer.ref}"

        async def record(result: object, rctx: HandlerContext) -> None:
            recorded.append((timer.ref, result))

        ctx.run_outside(call, record=record, lock_key=timer.lock_key)

    for ref in ("w-1", "w-2", "w-bad"):
        await set_timer(kit.harness, kit.sessions, ref, T0)
    runner = kit.scheduler({SHIP_DEADLINE: handler}, concurrency=2)
    assert await runner.run_due() == 3
    assert seen_during_call == [T0, T0, T0]
    # A call that raised records nothing: the handler's own timers are there to retry it.
    assert sorted(recorded) == [("w-1", "result of w-1"), ("w-2", "result of w-2")]
    assert await runner.run_due() == 0


async def test_outside_results_are_recorded_together_and_a_failing_one_alone_is_dropped(
    kit: MessagingKit,
) -> None:
    from shared.messaging.context import HandlerContext
    from shared.messaging.store import Timer

    effects = kit.harness.effects
    counted: list[str] = []

    async def handler(timer: Timer, ctx: HandlerContext) -> None:
        async def call() -> str:
            return timer.ref

        async def record(result: object, rctx: HandlerContext) -> None:
            await rctx.session.execute(
                effects.insert().values(
                    event_id=rctx.cause_id, order_id=str(result), kind="recorded"
                )
            )
            rctx.on_commit.append(lambda: counted.append(str(result)))
            if result == "x-bad":
                raise ValueError("this result cannot be recorded")

        ctx.run_outside(call, record=record, lock_key=timer.lock_key)

    refs = ["x-1", "x-bad", "x-2"]
    await set_timers_due(kit.harness, kit.sessions, kit.clock, refs)
    with statements_sent(kit.engine, statement_kind) as seen:
        assert await kit.scheduler({SHIP_DEADLINE: handler}).run_due() == 3
    # Recorded together first (no savepoint), then each in a savepoint of its own: the good
    # results' writes and callbacks once, the failing one's not at all.
    assert seen["savepoint"] == 3 + 2, seen  # three savepoints, the good two released
    assert sorted(r["order_id"] for r in await kit.effect_rows()) == ["x-1", "x-2"]
    assert sorted(counted) == ["x-1", "x-2"]
    assert all(row["fired_at"] is not None for row in (await kit.timer_rows()).values())

    # All good: no savepoint at all.
    await set_timers_due(kit.harness, kit.sessions, kit.clock, ["y-1", "y-2"])
    with statements_sent(kit.engine, statement_kind) as seen:
        assert await kit.scheduler({SHIP_DEADLINE: handler}).run_due() == 2
    assert seen["savepoint"] == 0, seen
    assert sorted(counted) == ["x-1", "x-2", "y-1", "y-2"]


async def test_an_event_the_outbox_holds_already_sends_the_batch_the_exact_way(
    kit: MessagingKit,
) -> None:
    """Fired together, emitted events are taken as new; one found in the outbox at commit
    (`WriteConflict`) has the batch fired again timer by timer: one row each, counted once."""
    from shared.messaging.context import HandlerContext
    from shared.messaging.store import Timer

    counted: list[str] = []

    async def handler(timer: Timer, ctx: HandlerContext) -> None:
        breach = await ctx.emit(
            SLA_BREACHED,
            ship_breach(timer, ctx.now),
            event_id=f"breach-{timer.ref}",  # once per order, whatever fires it
            topic=kit.harness.output_topic,
            key=timer.ref,
        )
        if ctx.is_new(breach):
            ctx.count(Tally(counted, timer.ref))

    scheduler = kit.scheduler({SHIP_DEADLINE: handler})
    await set_timers_due(kit.harness, kit.sessions, kit.clock, ["d-1"])
    assert await scheduler.run_due() == 1
    # Armed again for the same order, beside a new one: its breach is queued already.
    await set_timer(kit.harness, kit.sessions, "d-1", kit.clock.now())
    await set_timer(kit.harness, kit.sessions, "d-2", kit.clock.now())
    with statements_sent(kit.engine, statement_kind) as seen:
        assert await scheduler.run_due() == 2
    assert seen["savepoint"] > 0, seen  # the exact way ran
    assert sorted(r["event_id"] for r in await kit.outbox_rows()) == ["breach-d-1", "breach-d-2"]
    assert sorted(counted) == ["d-1", "d-2"]
    assert all(row["fired_at"] is not None for row in (await kit.timer_rows()).values())


async def test_an_event_another_transaction_is_queueing_is_waited_for_and_counted_once(
    kit: MessagingKit,
) -> None:
    """Fired together, a timer's event is taken as new; another transaction queueing the same
    id (not yet committed) makes the held insert wait for it, then the batch goes the exact
    way: the event is in the outbox once, counted by neither the batch nor its retry."""
    from shared.messaging.context import HandlerContext
    from shared.messaging.store import Timer

    counted: list[str] = []

    async def handler(timer: Timer, ctx: HandlerContext) -> None:
        breach = await ctx.emit(
            SLA_BREACHED,
            ship_breach(timer, ctx.now),
            event_id=f"breach-{timer.ref}",
            topic=kit.harness.output_topic,
            key=timer.ref,
        )
        if ctx.is_new(breach):
            ctx.count(Tally(counted, timer.ref))

    await set_timers_due(kit.harness, kit.sessions, kit.clock, ["q-1", "q-2"])
    outbox = kit.harness.tables.outbox
    async with kit.engine.connect() as other:
        await other.execute(
            outbox.insert().values(
                event_id="breach-q-1",
                event_type=SLA_BREACHED,
                topic=kit.harness.output_topic,
                key="q-1",
                payload=b"{}",
            )
        )
        firing = asyncio.create_task(kit.scheduler({SHIP_DEADLINE: handler}).run_due())
        await asyncio.sleep(0.5)
        assert not firing.done()  # its held insert waits for the other transaction
        await other.commit()
        assert await asyncio.wait_for(firing, 10) == 2
    rows = await kit.outbox_rows()
    assert sorted(r["event_id"] for r in rows) == ["breach-q-1", "breach-q-2"]
    assert [r["payload"] for r in rows if r["event_id"] == "breach-q-1"] == [b"{}"]
    assert counted == ["q-2"]
    assert all(row["fired_at"] is not None for row in (await kit.timer_rows()).values())


async def test_a_failing_timer_leaves_the_others_outside_work_run_once(kit: MessagingKit) -> None:
    """A handler fails after the others of its batch handed work over: the batch fired
    together is rolled back with the work its handlers handed over, and fired again timer by
    timer; the work of the timers that fired runs once, the failing one's never."""
    from collections import Counter

    from shared.messaging.context import HandlerContext
    from shared.messaging.store import Timer

    calls: Counter[str] = Counter()
    recorded: list[str] = []

    async def handler(timer: Timer, ctx: HandlerContext) -> None:
        async def call() -> str:
            calls[timer.ref] += 1
            return timer.ref

        async def record(result: object, rctx: HandlerContext) -> None:
            recorded.append(str(result))

        ctx.run_outside(call, record=record, lock_key=timer.lock_key)
        if timer.ref == "h-bad":
            raise ValueError("fails after handing its work over")

    await set_timers_due(kit.harness, kit.sessions, kit.clock, ["h-1", "h-bad", "h-2"])
    assert await kit.scheduler({SHIP_DEADLINE: handler}).run_due() == 3
    assert calls == {"h-1": 1, "h-2": 1}
    assert sorted(recorded) == ["h-1", "h-2"]
    timers = await kit.timer_rows()
    assert (timers["h-bad"]["fired_at"], timers["h-bad"]["attempts"]) == (None, 1)


class Tally:
    def __init__(self, into: list[str], name: str) -> None:
        self._into, self._name = into, name

    def inc(self, amount: float = 1) -> None:
        self._into.append(self._name)
