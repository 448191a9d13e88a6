"""Durable timers: due rows are claimed with FOR UPDATE SKIP LOCKED and fired exactly once.

A batch is fired in one transaction without a savepoint per timer, its writes held back to
one statement each at commit (`HOLD_WRITES`) and its timers marked fired in one statement.
Only when a handler fails (or a held write finds the database other than it was told) is the
batch rolled back and fired again timer by timer, each in a savepoint, so the failing timer
alone is retried or parked and the others' effects commit once.

A handler may hand I/O to run outside the transaction (`HandlerContext.run_outside`): the
scheduler runs it once the batch committed, all of the batch's work at once, and records the
results in one more short transaction before it claims the next batch (the same way: all of
them together, each in a savepoint only when one fails).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Table,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.clock import Clock
from shared.db import UnitOfWork, flush_pending

from .context import HandlerContext, Outside, TimerHandler
from .errors import describe_failure, failure_fields, is_transient
from .store import HOLD_WRITES, Timer, timer_from_row
from .tables import MessagingTables
from .worker import ServiceWorker

log = logging.getLogger("aftersales.timers")

MAX_TIMER_ATTEMPTS = 5
# A timer that failed `MAX_TIMER_ATTEMPTS` times is parked: it waits until this instant, so no
# scheduler claims it, while it stays live (neither fired nor cancelled: a deadline that never
# ran). It shows among the open deadlines and in `aftersales_timers_overdue_seconds`, which
# alerts (`AftersalesTimersStuck`); retention keeps it; setting the timer again (a new fact of
# its case) re-arms it, as does clearing `retry_at` once the handler is fixed.
PARKED_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
# When one timer's handler meets a passing fault (a statement timeout, a deadlock) while the
# others fire: it is tried again this much later, not counted as an attempt (an outage must not
# park healthy timers), so it cannot hold the timers behind it back round after round.
TRANSIENT_RETRY = timedelta(minutes=1)
# How often the scheduler reads how many timers are past due (`metrics.TIMERS_OVERDUE`).
OBSERVE_EVERY = 15.0
# Tries of the transaction that records the outside work's results (a passing fault): after
# that the results are dropped and the handlers' own timers take the work up again.
RECORD_TRIES = 3

R = TypeVar("R")


class TimerScheduler(ServiceWorker):
    def __init__(
        self,
        *,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        handlers: Mapping[str, TimerHandler],
        clock: Clock,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        on_committed: Callable[[], None] = lambda: None,
        concurrency: int = 1,
    ) -> None:
        super().__init__(service=service, sessions=sessions, tables=tables, clock=clock)
        self._handlers = handlers
        self._kinds = sorted(handlers)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._on_committed = on_committed
        self._concurrency = max(concurrency, 1)
        self._observed_kinds: set[str] = set()

    async def run_due(self) -> int:
        """Fire one batch of due timers; returns how many fired.

        With `concurrency` 1, in one transaction. Above, the batch is split by lock key into
        that many groups, each fired in a transaction of its own at the same time: the groups
        share no lock key, so they never wait for each other (a service whose timer handlers
        wait on the network, the notifier, gets through its backlog that much faster).
        """
        failure: BaseException | None = None
        if self._concurrency == 1:
            fired, count, outside = await self._claim(None)
        else:
            candidates = await self._candidates()
            if not candidates:
                return 0
            groups: list[list[Any]] = [[] for _ in range(self._concurrency)]
            for row in candidates:
                groups[zlib.crc32(row.lock_key.encode()) % self._concurrency].append(row)
            results = await asyncio.gather(
                *(self._claim(group) for group in groups if group), return_exceptions=True
            )
            fired, count, outside = 0, 0, []
            for result in results:
                if isinstance(result, BaseException):
                    failure = failure or result
                    continue
                fired, count = fired + result[0], count + result[1]
                outside.extend(result[2])
        if fired:
            self._on_committed()
        if outside:
            await self._run_outside(outside)
        if failure is not None:
            raise failure
        return count

    def _live(self) -> Any:
        """Due, and of a kind this scheduler has a handler for: during a rolling update, a
        kind the new release brought is left to its schedulers, not marked fired here."""
        t = self._tables.timers
        now = self._clock.now()
        return and_(
            t.c.fired_at.is_(None),
            t.c.cancelled_at.is_(None),
            t.c.due_at <= now,
            or_(t.c.retry_at.is_(None), t.c.retry_at <= now),
            t.c.kind.in_(self._kinds),
        )

    def _due(self, live: Any) -> Any:
        """The next batch's due timers: (id, lock_key), the earliest first."""
        t = self._tables.timers
        return select(t.c.id, t.c.lock_key).where(live).order_by(t.c.due_at).limit(self._batch_size)

    async def _candidates(self) -> list[Any]:
        async with self._sessions() as session:
            return list((await session.execute(self._due(self._live()))).all())

    async def _claim(self, candidates: list[Any] | None) -> tuple[int, int, list[Outside]]:
        """Fire `candidates` (None: the next batch) in one transaction: (fired, claimed, the
        work its handlers left for outside the transaction). All together first; should
        anything fail for a reason other than a passing fault, all of it is rolled back and
        the batch fired again timer by timer (`_fire_each`), as if the first try had not run."""
        return await self._together_or_each(
            lambda: self._fire_together(candidates),
            lambda: self._fire_each(candidates),
            "the batch of timers is fired again timer by timer",
        )

    async def _together_or_each(
        self, together: Callable[[], Awaitable[R]], each: Callable[[], Awaitable[R]], again: str
    ) -> R:
        """`together`; should it fail for a reason other than a passing fault (its transaction
        rolled back), `each` instead, which isolates the failing part in a savepoint."""
        try:
            return await together()
        except Exception as exc:
            # A passing fault in one timer's handler goes the isolating way too (where it waits
            # alone); one in the claim or the commit (an outage) is retried by the caller.
            if is_transient(exc) and not isinstance(exc, _TimerFailed):
                raise
            failed = exc.timer if isinstance(exc, _TimerFailed) else None
            cause = exc.__cause__ if isinstance(exc, _TimerFailed) and exc.__cause__ else exc
            log.info(
                again,
                extra={
                    "service": self.service,
                    "kind": failed.kind if failed else "",
                    "error": describe_failure(cause),
                },
            )
        return await each()

    async def _claimed(self, uow: UnitOfWork, candidates: list[Any] | None) -> list[Any]:
        """The batch's live timers, claimed FOR UPDATE SKIP LOCKED under their lock keys."""
        t = self._tables.timers
        live = self._live()
        if candidates is None:
            candidates = list((await uow.session.execute(self._due(live))).all())
        if not candidates:
            return []
        # Same lock order as the consumer: business keys first, then the rows.
        await uow.lock(row.lock_key for row in candidates)
        return list(
            (
                await uow.session.execute(
                    select(t)
                    .where(live, t.c.id.in_([row.id for row in candidates]))
                    .order_by(t.c.due_at, t.c.id)
                    .with_for_update(skip_locked=True)
                )
            )
            .mappings()
            .all()
        )

    def _context(
        self, uow: UnitOfWork, cause_id: str, *, together: bool, runs_outside: bool = False
    ) -> HandlerContext:
        # Fired together, what a handler emits is taken as new without asking the outbox: the
        # held-back insert checks it at commit, and should a row be there already
        # (`WriteConflict`), the batch goes the timer-by-timer way, which asks at each step.
        return HandlerContext(
            uow=uow,
            tables=self._tables,
            service=self.service,
            now=self._clock.now(),
            cause_id=cause_id,
            fresh_cause=together,
            runs_outside=runs_outside,
        )

    async def _fire_together(self, candidates: list[Any] | None) -> tuple[int, int, list[Outside]]:
        """The fast path: no savepoint per timer, outbox rows, journal rows and timer changes
        held back to one statement each (`HOLD_WRITES`), the batch marked fired in one."""
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            uow.session.info[HOLD_WRITES] = True
            rows = await self._claimed(uow, candidates)
            if not rows:
                return 0, 0, []
            outside: list[Outside] = []
            timers = [timer_from_row(row) for row in rows]
            for timer in timers:
                ctx = self._context(uow, _cause(timer), together=True, runs_outside=True)
                try:
                    await self._handle(timer, ctx)
                except Exception as exc:
                    raise _TimerFailed(timer) from exc
                self._fired(uow, timer, ctx, outside)
            # The handlers' held writes first, as firing timer by timer would have them: a
            # handler that set its own timer again (a later due_at) re-armed it, so the mark
            # misses it.
            await flush_pending(uow.session)
            await uow.session.execute(
                _mark_fired(self._tables.timers),
                {
                    "ids": [timer.id for timer in timers],
                    "dues": [timer.due_at for timer in timers],
                    "now": self._clock.now(),
                },
            )
            await uow.commit()
        return len(timers), len(timers), outside

    async def _fire_each(self, candidates: list[Any] | None) -> tuple[int, int, list[Outside]]:
        """The exact path: each timer in a savepoint of its own, writes made as they come; a
        failing timer is retried later or parked, the others fire."""
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            rows = await self._claimed(uow, candidates)
            if not rows:
                return 0, 0, []
            fired = 0
            outside: list[Outside] = []
            for row in rows:
                fired += await self._fire(uow, row, outside)
            await uow.commit()
        return fired, len(rows), outside

    async def _handle(self, timer: Timer, ctx: HandlerContext) -> None:
        await self._handlers[timer.kind](timer, ctx)  # claimed only with a handler (`_live`)

    def _fired(
        self, uow: UnitOfWork, timer: Timer, ctx: HandlerContext, outside: list[Outside]
    ) -> None:
        """What a timer that fired leaves for after the commit: its callbacks, its outside
        work and its metrics (counted once the commit is done)."""
        service, lag = self.service, max((ctx.now - timer.due_at).total_seconds(), 0.0)

        def count() -> None:
            metrics.TIMERS_FIRED.labels(service, timer.kind).inc()
            metrics.TIMER_LAG.labels(service).observe(lag)

        uow.after_commit(*ctx.on_commit, count)
        outside.extend(ctx.outside)

    async def _run_outside(self, work: list[Outside]) -> None:
        results = await asyncio.gather(*(w.call() for w in work), return_exceptions=True)
        done = []
        for w, result in zip(work, results, strict=True):
            if isinstance(result, BaseException):  # the call should not raise: its timer retries
                log.error(
                    "work outside the transaction failed",
                    extra={"service": self.service, "error": type(result).__name__},
                )
            else:
                done.append((w, result))
        groups: list[list[tuple[Outside, Any]]] = [[] for _ in range(self._concurrency)]
        for w, result in done:
            groups[zlib.crc32(w.lock_key.encode()) % self._concurrency].append((w, result))
        await asyncio.gather(*(self._record_group(group) for group in groups if group))

    async def _record_group(self, done: list[tuple[Outside, Any]]) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                await self._record(done)
                return
            except Exception as exc:
                if not is_transient(exc) or attempt == RECORD_TRIES:
                    log.warning(
                        "results of outside work not recorded; their timers take it up again",
                        extra={"service": self.service, "error": type(exc).__name__},
                    )
                    return
                await asyncio.sleep(0.5 * attempt)

    async def _record(self, done: list[tuple[Outside, Any]]) -> None:
        """Record the results in one transaction: all together first (no savepoint each,
        writes held back); should one fail, all over again with a savepoint each, so only the
        failing one is dropped."""
        if not done:
            return
        await self._together_or_each(
            lambda: self._record_together(done),
            lambda: self._record_each(done),
            "the results of outside work are recorded again one by one",
        )
        self._on_committed()

    async def _record_together(self, done: list[tuple[Outside, Any]]) -> None:
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            uow.session.info[HOLD_WRITES] = True
            await uow.lock(w.lock_key for w, _ in done)
            for w, result in done:
                ctx = self._context(uow, f"{w.cause_id}:recorded", together=True)
                await w.record(result, ctx)
                uow.after_commit(*ctx.on_commit)
            await uow.commit()

    async def _record_each(self, done: list[tuple[Outside, Any]]) -> None:
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            await uow.lock(w.lock_key for w, _ in done)
            for w, result in done:
                ctx = self._context(uow, f"{w.cause_id}:recorded", together=False)
                try:
                    async with uow.session.begin_nested():
                        await w.record(result, ctx)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.exception("recording outside work failed", extra={"service": self.service})
                    continue
                uow.after_commit(*ctx.on_commit)
            await uow.commit()

    async def _fire(self, uow: UnitOfWork, row: Any, outside: list[Outside]) -> int:
        t = self._tables.timers
        timer = timer_from_row(row)
        ctx = self._context(uow, _cause(timer), together=False, runs_outside=True)
        try:
            async with uow.session.begin_nested():
                await self._handle(timer, ctx)
                # A handler that set its own timer again (a later due_at) re-armed it: keep it.
                await uow.session.execute(
                    update(t)
                    .where(t.c.id == timer.id, t.c.due_at == timer.due_at)
                    .values(fired_at=ctx.now)
                )
        except Exception as exc:
            if is_transient(exc):
                await self._retry_later(uow, timer, ctx, exc)
                return 0
            attempts = int(row["attempts"]) + 1
            parked = attempts >= MAX_TIMER_ATTEMPTS
            log.exception(
                "timer handler failed; the timer is parked" if parked else "timer handler failed",
                extra={"service": self.service, "kind": timer.kind, "attempts": attempts},
            )
            uow.after_commit(metrics.TIMERS_FAILED.labels(self.service, timer.kind).inc)
            # Its due time stays: handlers and the cause id know the timer by it.
            values: dict[str, object] = {
                "attempts": attempts,
                "retry_at": PARKED_UNTIL if parked else ctx.now + timedelta(minutes=2**attempts),
            }
            await uow.session.execute(update(t).where(t.c.id == timer.id).values(**values))
            return 0
        self._fired(uow, timer, ctx, outside)
        return 1

    async def _retry_later(
        self, uow: UnitOfWork, timer: Timer, ctx: HandlerContext, exc: Exception
    ) -> None:
        """A passing fault in this timer's handler (its savepoint rolled back): it waits
        `TRANSIENT_RETRY`, the batch's other timers fire. Should the session itself be gone
        (an outage), the whole batch is retried as before."""
        t = self._tables.timers
        try:
            await uow.session.execute(
                update(t).where(t.c.id == timer.id).values(retry_at=ctx.now + TRANSIENT_RETRY)
            )
        except Exception:
            raise exc from None
        log.warning(
            "timer handler met a passing fault; it is tried again later, the others fire",
            extra={"service": self.service, "kind": timer.kind, **failure_fields(exc)},
        )
        uow.after_commit(metrics.TIMERS_FAILED.labels(self.service, timer.kind).inc)

    async def observe(self) -> None:
        """Set `TIMERS_DUE` and `TIMERS_OVERDUE` by kind: every live timer past due, of any
        kind (one no handler of this release claims stays due, and shows here)."""
        t = self._tables.timers
        now = self._clock.now()
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(t.c.kind, func.count(), func.min(t.c.due_at))
                    .where(t.c.fired_at.is_(None), t.c.cancelled_at.is_(None), t.c.due_at <= now)
                    .group_by(t.c.kind)
                )
            ).all()
        found = {kind: (count, oldest) for kind, count, oldest in rows}
        self._observed_kinds |= set(self._handlers) | set(found)
        for kind in self._observed_kinds:
            count, oldest = found.get(kind, (0, None))
            overdue = (now - oldest).total_seconds() if oldest is not None else 0.0
            metrics.TIMERS_DUE.labels(self.service, kind).set(count)
            metrics.TIMERS_OVERDUE.labels(self.service, kind).set(max(overdue, 0.0))

    async def run_all_due(self) -> int:
        total = 0
        while fired := await self.run_due():
            total += fired
        return total

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._poll_interval
        observed_at = -OBSERVE_EVERY
        while not stop.is_set():
            try:
                if time.monotonic() - observed_at >= OBSERVE_EVERY:
                    observed_at = time.monotonic()
                    await self.observe()
                if await self.run_due():
                    backoff = self._poll_interval
                    continue
                backoff = self._poll_interval
            except Exception as exc:
                if is_transient(exc):
                    log.warning(
                        "timers retrying after a passing fault",
                        extra={"service": self.service, "error": type(exc).__name__},
                    )
                else:
                    log.exception("timer scheduler failed", extra={"service": self.service})
                backoff = min(backoff * 2, 10.0)
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except TimeoutError:
                pass


class _TimerFailed(Exception):
    """A timer's handler failed (a passing fault too) while its batch was fired together."""

    def __init__(self, timer: Timer) -> None:
        super().__init__(f"{timer.kind} {timer.ref}")
        self.timer = timer


def _cause(timer: Timer) -> str:
    return f"timer:{timer.kind}:{timer.ref}:{timer.due_at.isoformat()}"


@cache
def _mark_fired(table: Table) -> Update:
    """Timers fired, in one statement: each (id, due_at) claimed, so a timer its handler set
    again for a later instant stays armed."""
    t = table
    claimed = select(
        func.unnest(bindparam("ids", type_=ARRAY(BigInteger))),
        func.unnest(bindparam("dues", type_=ARRAY(DateTime(timezone=True)))),
    )
    return (
        update(t).where(tuple_(t.c.id, t.c.due_at).in_(claimed)).values(fired_at=bindparam("now"))
    )
