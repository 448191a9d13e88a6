"""The returns service running on the real broker and a fresh database.

The service reads fixed topics (`orders`, `signatures`, `returns`) with a fixed consumer group,
so tests keep apart by unique order ids: `Outputs` reads every output topic with a fresh
consumer group from the beginning and filters by key (the order id).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata

from aftersales_dev.devenv import skip_history
from services.returns.bootstrap import build
from shared.clock import ManualClock
from shared.contracts import dead_letter_topic, topics
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ensure_topics
from shared.settings import Settings
from tests.events import encode, topic_of
from tests.harness import RunningService, broker_settings, migrated_database
from tests.polling import eventually
from tests.topic_reader import EventOutput, TopicReader

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
async def e2e_database(database_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_url, "e2e_returns", "returns") as url:
        yield url


@pytest.fixture(scope="module")
def settings(e2e_database: str, kafka_bootstrap: str) -> Settings:
    return broker_settings(e2e_database, kafka_bootstrap)


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
    service = Service(settings, clock)
    definition = service.new_runtime().definition
    await ensure_topics(settings, definition.all_topics)
    await skip_history(settings.kafka_bootstrap_servers, GROUP, definition.topics)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture(autouse=True)
async def running(service: Service) -> Service:
    """Every test starts with the service up, even after one that failed while it was down."""
    if service.runtime is None:
        await service.start()
    return service


# --- the platform's side: publishing inputs, reading outputs -------------------------------


class Platform:
    """Publishes CloudEvents the way the shop platform does: keyed by order id."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=0
        )

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
            sent.append(
                await self.producer.send_and_wait(
                    topic,
                    value,
                    key=key.encode(),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
            )
        return sent


@pytest.fixture(scope="module")
async def platform(kafka_bootstrap: str) -> AsyncIterator[Platform]:
    platform = Platform(kafka_bootstrap)
    await platform.producer.start()
    yield platform
    await platform.producer.stop()


@dataclass(frozen=True)
class Output(EventOutput):
    record: ConsumerRecord[bytes, bytes]
    event: dict[str, Any]


class Outputs(TopicReader):
    """Every output topic read by a fresh consumer group from the beginning, in the background."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, *OUTPUT_TOPICS, group="e2e-reader")

    def of(self, key: str, event_type: str | None = None) -> list[Output]:
        out = []
        for record in self.records:
            if record.key != key.encode():
                continue
            output = Output(record, json.loads(record.value))
            if event_type is None or output.type == event_type:
                out.append(output)
        return out

    async def wait(
        self, key: str, event_type: str, *, count: int = 1, where: Callable[[Output], bool] = bool
    ) -> list[Output]:
        """At least `count` outputs of `event_type` for `key` (matching `where`), or fail."""

        def found() -> list[Output]:
            matching = [o for o in self.of(key, event_type) if where(o)]
            return matching if len(matching) >= count else []

        return await eventually(  # type: ignore[no-any-return]
            found, what=f"{count} x {event_type} for {key}"
        )


@pytest.fixture(scope="module")
async def outputs(settings: Settings) -> AsyncIterator[Outputs]:
    await ensure_topics(settings, OUTPUT_TOPICS)
    outputs = Outputs(settings.kafka_bootstrap_servers)
    await outputs.start()
    yield outputs
    await outputs.stop()


def ids(outputs: Iterable[Output]) -> list[str]:
    return [o.event["id"] for o in outputs]
