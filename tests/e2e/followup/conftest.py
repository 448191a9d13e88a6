"""End-to-end fixtures of the follow-up service: the real broker and database (tests/conftest.py),
the `followup` schema migrated, a producer of input events and a reader of the outputs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from services.followup.bootstrap import build
from shared.clock import ManualClock
from shared.messaging.runtime import ServiceRuntime
from shared.migrations import upgrade
from shared.policy import Policy
from shared.settings import Settings
from tests.topic_reader import TopicReader


class Collector(TopicReader):
    """A fresh consumer group reading topics from the earliest offset, in the background."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        super().__init__(bootstrap, *topics, group="followup-e2e-reader")
        self.events: list[dict[str, Any]] = []

    def receive(self, record: ConsumerRecord[Any, Any]) -> None:
        event = json.loads(record.value)
        event["_topic"] = record.topic
        event["_key"] = record.key.decode() if record.key else None
        self.events.append(event)

    def of(self, event_type: str, **data: Any) -> list[dict[str, Any]]:
        """Events of a type whose data has the given values (e.g. this test's customer_id)."""
        return [
            e
            for e in self.events
            if e["type"] == event_type and all(e["data"].get(k) == v for k, v in data.items())
        ]


@pytest.fixture(scope="session")
def followup_database(database_url: str) -> str:
    upgrade("followup", database_url)
    return database_url


class Runtimes:
    """Follow-up runtimes on one ManualClock, shared by the module's tests (every start of a
    runtime joins the consumer group, which takes seconds on the local broker)."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.settings, self.clock, self.policy = settings, clock, Policy()
        self.running: ServiceRuntime | None = None

    async def start(self) -> ServiceRuntime:
        assert self.running is None, "one runtime at a time"
        self.running = ServiceRuntime(
            build(self.policy, self.clock),
            self.settings,
            self.clock,
            timer_poll_interval=0.1,
            relay_poll_interval=0.1,
        )
        await self.running.start()
        return self.running

    async def ensure(self) -> ServiceRuntime:
        return self.running or await self.start()

    async def stop(self) -> None:
        if self.running is not None:
            runtime, self.running = self.running, None
            await runtime.stop()


@pytest.fixture(scope="module")
async def runtimes(followup_database: str, kafka_bootstrap: str) -> AsyncIterator[Runtimes]:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=followup_database,
        kafka_idempotence=False,
    )
    holder = Runtimes(settings, ManualClock(datetime.fromisoformat("2024-05-01T10:00:00+08:00")))
    yield holder
    await holder.stop()


@pytest.fixture(scope="module")
async def outputs(kafka_bootstrap: str) -> AsyncIterator[Collector]:
    """What the follow-up service writes: follow-ups, notifications, SLA breaches and its dead
    letters."""
    collector = Collector(
        kafka_bootstrap,
        "aftersales.followups",
        "aftersales.notifications",
        "aftersales.sla",
        "aftersales.deadletter.followup",
    )
    await collector.start()
    yield collector
    await collector.stop()
