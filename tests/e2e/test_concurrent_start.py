"""`aftersales run` with several services starts them at once, on the real broker and database:
every service's start (topics, broker connection, consumer group join) begins before any of
them has finished, so the process is ready in about the time of one, not the sum."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aftersales.commands.serving import serve
from aftersales_dev.devenv import free_port, temporary_database
from shared.messaging.runtime import ServiceRuntime
from shared.migrations import upgrade

NAMES = ["returns", "complaints", "refunds"]


@pytest.fixture
async def migrated(database_url: str) -> AsyncIterator[str]:
    async with temporary_database(database_url, "start") as url:
        for name in NAMES:  # alembic runs its own event loop: keep it off this one
            await asyncio.to_thread(upgrade, name, url)
        yield url


async def test_services_in_one_process_start_together(
    migrated: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATABASE_URL", migrated)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("KAFKA_IDEMPOTENCE", "false")
    steps: list[tuple[str, str]] = []
    all_started = asyncio.Event()
    start = ServiceRuntime.start

    async def recorded_start(self: ServiceRuntime) -> None:
        steps.append(("begin", self.name))
        await start(self)
        steps.append(("end", self.name))
        if sum(step == "end" for step, _ in steps) == len(NAMES):
            all_started.set()

    monkeypatch.setattr(ServiceRuntime, "start", recorded_start)
    stop = asyncio.Event()
    running = asyncio.create_task(serve(NAMES, port=free_port(), until=stop))
    try:
        await asyncio.wait_for(all_started.wait(), timeout=120)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=120)

    began = [name for step, name in steps[: len(NAMES)] if step == "begin"]
    assert sorted(began) == sorted(NAMES), steps  # every start began before the first ended
    assert {name for step, name in steps if step == "end"} == set(NAMES)
