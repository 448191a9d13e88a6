"""Durable timers: due rows are claimed with FOR UPDATE SKIP LOCKED and fired exactly once.

A handler may hand I/O to run outside the transaction (`HandlerContext.run_outside`): the
scheduler runs it once the batch committed, all of the batch's work at once, and records the
results in one more short transaction before it claims the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.clock import Clock
from shared.db import UnitOfWork

from .context import HandlerContext, Outside, TimerHandler
from .errors import is_transient
from .store import timer_from_row
from .tables import MessagingTables

log = logging.getLogger("aftersales.timers")

MAX_TIMER_ATTEMPTS = 5
# Tries of the transaction that records the outside work's results (a passing fault): after
# that the results are dropped and the handlers' own timers take the work up again.
RECORD_TRIES = 3


class TimerScheduler:
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
        self.service = service
        self._sessions = sessions
        self._tables = tables
        self._handlers = handlers
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._on_committed = on_committed
        self._concurrency = max(concurrency, 1)

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
        t = self._tables.timers
        now = self._clock.now()
        return and_(t.c.fired_at.is_(None), t.c.cancelled_at.is_(None), t.c.due_at <= now)

    async def _candidates(self) -> list[Any]:
        t = self._tables.timers
        async with self._sessions() as session:
            return list(
                (
                    await session.execute(
                        select(t.c.id, t.c.lock_key)
                        .where(self._live())
                        .order_by(t.c.due_at)
                        .limit(self._batch_size)
                    )
                ).all()
            )

    async def _claim(self, candidates: list[Any] | None) -> tuple[int, int, list[Outside]]:
        """Fire `candidates` (None: the next batch) in one transaction: (fired, claimed, the
        work its handlers left for outside the transaction)."""
        t = self._tables.timers
        live = self._live()
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            if candidates is None:
                candidates = list(
                    (
                        await uow.session.execute(
                            select(t.c.id, t.c.lock_key)
                            .where(live)
                            .order_by(t.c.due_at)
                            .limit(self._batch_size)
                        )
                    ).all()
                )
            if not candidates:
                return 0, 0, []
            # Same lock order as the consumer: business keys first, then the rows.
            await uow.lock(row.lock_key for row in candidates)
            rows = (
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
            fired = 0
            outside: list[Outside] = []
            for row in rows:
                fired += await self._fire(uow, row, outside)
            await uow.commit()
        return fired, len(rows), outside

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
        if not done:
            return
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            await uow.lock(w.lock_key for w, _ in done)
            for w, result in done:
                ctx = HandlerContext(
                    uow=uow,
                    tables=self._tables,
                    service=self.service,
                    now=self._clock.now(),
                    cause_id=f"{w.cause_id}:recorded",
                )
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
        self._on_committed()

    async def _fire(self, uow: UnitOfWork, row: Any, outside: list[Outside]) -> int:
        t = self._tables.timers
        timer = timer_from_row(row)
        handler = self._handlers.get(timer.kind)
        ctx = HandlerContext(
            uow=uow,
            tables=self._tables,
            service=self.service,
            now=self._clock.now(),
            cause_id=f"timer:{timer.kind}:{timer.ref}:{timer.due_at.isoformat()}",
            runs_outside=True,
        )
        try:
            async with uow.session.begin_nested():
                if handler is None:
                    log.error("no handler for timer kind", extra={"kind": timer.kind})
                else:
                    await handler(timer, ctx)
                # A handler that set its own timer again (a later due_at) re-armed it: keep it.
                await uow.session.execute(
                    update(t)
                    .where(t.c.id == timer.id, t.c.due_at == timer.due_at)
                    .values(fired_at=ctx.now)
                )
        except Exception as exc:
            if is_transient(exc):
                raise
            attempts = int(row["attempts"]) + 1
            log.exception(
                "timer handler failed",
                extra={"service": self.service, "kind": timer.kind, "attempts": attempts},
            )
            metrics.TIMERS_FAILED.labels(self.service, timer.kind).inc()
            values: dict[str, object] = {"attempts": attempts}
            if attempts >= MAX_TIMER_ATTEMPTS:
                values["cancelled_at"] = ctx.now  # parked: visible in the table, not retried
            else:
                values["due_at"] = ctx.now + timedelta(minutes=2**attempts)
            await uow.session.execute(update(t).where(t.c.id == timer.id).values(**values))
            return 0
        uow.after_commit(*ctx.on_commit)
        outside.extend(ctx.outside)
        metrics.TIMERS_FIRED.labels(self.service, timer.kind).inc()
        metrics.TIMER_LAG.labels(self.service).observe(
            max((ctx.now - timer.due_at).total_seconds(), 0.0)
        )
        return 1

    async def run_all_due(self) -> int:
        total = 0
        while fired := await self.run_due():
            total += fired
        return total

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._poll_interval
        while not stop.is_set():
            try:
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
