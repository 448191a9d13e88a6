"""Returns, complaints and the refund ledger together on the real broker and a database of
their own (module scope), as `aftersales run returns complaints refunds` wires them, with one
injected clock. They read fixed topics on a broker other tests share, so their consumer groups
(named apart from the other tests') start at the end of the topics; tests keep to their own
order ids."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from aftersales.registry import definition
from aftersales_dev.devenv import skip_history
from aftersales_dev.events import TOPIC_OF
from shared.clock import ManualClock
from shared.contracts import topics
from shared.messaging.runtime import ServiceRuntime, ensure_topics
from shared.policy import Policy
from shared.settings import Settings
from tests.harness import Publisher, broker_settings, migrated_database, quick_runtime
from tests.polling import eventually
from tests.topic_reader import TopicReader

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
SERVICES = ("returns", "complaints", "refunds")
WATCHED = (topics.REFUNDS, topics.SLA, topics.REFUND_REQUESTS, "aftersales.deadletter.refunds")


class Outputs(TopicReader):
    """Everything the services publish, read in the background from the end of each topic."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, *WATCHED, latest=True)
        self.events: list[dict[str, Any]] = []

    def receive(self, record: ConsumerRecord[Any, Any]) -> None:
        self.events.append({**json.loads(record.value), "_topic": record.topic})

    def of(self, order_id: str, event_type: str) -> list[dict[str, Any]]:
        """Each event id once (the relay publishes at least once)."""
        seen: dict[str, dict[str, Any]] = {}
        for event in self.events:
            data = event.get("data", {})
            if event["type"] == event_type and data.get("order_id") == order_id:
                seen.setdefault(event["id"], event)
        return list(seen.values())

    async def wait(
        self, order_id: str, event_type: str, count: int = 1, *, timeout: float = 45.0
    ) -> list[dict[str, Any]]:
        await eventually(
            lambda: len(self.of(order_id, event_type)) >= count,
            timeout=timeout,
            what=f"{count} {event_type} of {order_id}",
        )
        return self.of(order_id, event_type)

    def dead_letters(self) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == "event.deadlettered"]


class Platform(Publisher):
    """Publishes CloudEvents as the shop platform and finance do, keyed by order id."""

    async def publish(self, *events: dict[str, Any], topic: str | None = None) -> None:
        for event in events:
            value = json.dumps(event).encode()
            await self.send(topic or TOPIC_OF[event["type"]], event["data"]["order_id"], value)


@dataclasses.dataclass
class System:
    clock: ManualClock
    platform: Platform
    outputs: Outputs
    runtimes: dict[str, ServiceRuntime]
    settings: Settings
    new_runtime: Callable[[str], ServiceRuntime]


@pytest.fixture(scope="module")
async def system(database_url: str, kafka_bootstrap: str) -> AsyncIterator[System]:
    async with migrated_database(database_url, "e2e_refunds", *SERVICES) as url:
        settings = broker_settings(url, kafka_bootstrap)
        clock = ManualClock(T0)

        def new_runtime(service: str) -> ServiceRuntime:
            # The services keep their names: a service's events carry its own source, and each
            # topic takes its types only from the services that publish them (SPEC section 1).
            # skip_history below starts their groups after what other tests left on the topics.
            return quick_runtime(definition(service, Policy(), clock, settings), settings, clock)

        runtimes = {service: new_runtime(service) for service in SERVICES}
        for runtime in runtimes.values():
            await ensure_topics(settings, runtime.definition.all_topics)
            await skip_history(
                kafka_bootstrap, f"aftersales-{runtime.name}", runtime.definition.topics
            )
        async with Outputs(kafka_bootstrap) as outputs, Platform(kafka_bootstrap) as platform:
            for runtime in runtimes.values():
                await runtime.start()
            try:
                yield System(clock, platform, outputs, runtimes, settings, new_runtime)
            finally:
                for runtime in runtimes.values():
                    await runtime.stop()
