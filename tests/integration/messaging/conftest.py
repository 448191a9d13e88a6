"""Fixtures of the messaging tests: one engine for the run, one fresh service schema per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.clock import ManualClock
from shared.db import session_factory
from shared.messaging.runtime import ServiceRuntime, ensure_topics
from shared.settings import Settings
from tests.harness import broker_settings, engine_at

from .helpers import T0, Harness, create_schema, drop_schema, make_harness
from .kit import MessagingKit


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with engine_at(database_url) as engine:
        yield engine


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
async def harness(engine: AsyncEngine) -> AsyncIterator[Harness]:
    harness = make_harness()
    await create_schema(engine, harness)
    yield harness
    await drop_schema(engine, harness)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def kit(
    harness: Harness,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
) -> MessagingKit:
    return MessagingKit(harness, engine, sessions, clock)


@pytest.fixture
def settings(database_url: str, kafka_bootstrap: str) -> Settings:
    return broker_settings(database_url, kafka_bootstrap)


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False, acks="all"
    )
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def runtime(
    harness: Harness, settings: Settings, engine: AsyncEngine, clock: ManualClock
) -> AsyncIterator[ServiceRuntime]:
    """A runtime connected for publishing only (no consumer group): its broker and, as `start`
    does, the relay's own producer, which its relay sends record batches through."""
    runtime = ServiceRuntime(harness.definition(), settings, clock, engine=engine)
    await ensure_topics(settings, runtime.definition.all_topics)
    await runtime.broker.connect()
    await runtime.start_relay_producer()
    yield runtime
    await runtime.stop_relay_producer()
    await runtime.broker.stop()
