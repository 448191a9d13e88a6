"""The returns service running on the real broker and a fresh database.

The service reads fixed topics (`orders`, `signatures`, `returns`) with a fixed consumer group,
so tests keep apart by unique order ids: `Outputs` reads every output topic with a fresh
consumer group from the beginning and filters by key (the order id).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, RecordMetadata

from aftersales_dev.events import encode, topic_of
from services.returns.bootstrap import build
from shared.clock import ManualClock
from shared.contracts import dead_letter_topic, topics
from shared.messaging.runtime import ensure_topics
from shared.settings import Settings
from tests.harness import Publisher, RunningService, broker_suite_settings
from tests.topic_reader import EventOutput, KeyedOutputs

# Monday 2026-03-02 10:00 in Shanghai.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
OUTPUT_TOPICS = (
    topics.RETURN_DECISIONS,
    topics.REFUND_REQUESTS,
    topics.FULFILMENT,
    topics.SLA,
    dead_letter_topic("returns"),
)
GROUP = "aftersales-returns"  # the service's consumer group (ServiceRuntime)


# --- databases ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def settings(database_url: str, kafka_bootstrap: str) -> AsyncIterator[Settings]:
    async with broker_suite_settings(database_url, kafka_bootstrap, "e2e_returns", "returns") as s:
        yield s


# --- the service --------------------------------------------------------------------------


class Service(RunningService):
    """The returns service as `aftersales run returns` starts it, with an injected clock."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        super().__init__(build, settings, clock)


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(scope="module")
async def service(settings: Settings, clock: ManualClock) -> AsyncIterator[Service]:
    async with Service(settings, clock).serving(GROUP) as service:
        yield service


@pytest.fixture(autouse=True)
async def running(service: Service) -> Service:
    """Every test starts with the service up, even after one that failed while it was down."""
    if service.runtime is None:
        await service.start()
    return service


# --- the platform's side: publishing inputs, reading outputs -------------------------------


class Platform(Publisher):
    """Publishes CloudEvents the way the shop platform does: keyed by order id."""

    async def publish(
        self, *events: dict[str, Any] | tuple[str, str, bytes]
    ) -> list[RecordMetadata]:
        """Each event in turn (acknowledged before the next); raw (topic, key, bytes) too."""
        sent = []
        for event in events:
            if isinstance(event, tuple):
                topic, key, value = event
            else:
                topic, key, value = topic_of(event), event["data"]["order_id"], encode(event)
            sent.append(await self.send(topic, key, value))
        return sent


@pytest.fixture(scope="module")
async def platform(kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with Platform(kafka_bootstrap) as platform:
        yield platform


@dataclass(frozen=True)
class Output(EventOutput):
    record: ConsumerRecord[bytes, bytes]
    event: dict[str, Any]


class Outputs(KeyedOutputs[Output]):
    """Every output topic read by a fresh consumer group from the beginning, in the background."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, *OUTPUT_TOPICS, group="e2e-reader")

    def output(self, record: ConsumerRecord[bytes, bytes]) -> Output:
        return Output(record, json.loads(record.value))


@pytest.fixture(scope="module")
async def outputs(settings: Settings) -> AsyncIterator[Outputs]:
    await ensure_topics(settings, OUTPUT_TOPICS)
    async with Outputs(settings.kafka_bootstrap_servers) as outputs:
        yield outputs
