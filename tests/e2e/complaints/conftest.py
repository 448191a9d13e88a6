"""The complaints service on the real broker and a database of its own (module scope).

The service reads fixed topics with a fixed consumer group on a broker other tests share, so
its group starts at the end of its input topics and the tests keep to their own ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.clock import ManualClock
from shared.messaging.runtime import ensure_topics
from shared.settings import Settings
from tests.harness import broker_suite_settings

from .helpers import GROUP, INPUT_TOPICS, OUTPUT_TOPICS, T0, Outputs, Service, Shop


@pytest.fixture(scope="module")
async def complaints_settings(database_url: str, kafka_bootstrap: str) -> AsyncIterator[Settings]:
    """On a fresh database with the complaints schema migrated, dropped afterwards."""
    async with broker_suite_settings(
        database_url, kafka_bootstrap, "e2e_complaints", "complaints"
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
async def complaints_engine(complaints_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(complaints_settings.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def service_clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(scope="module")
async def complaints_service(
    complaints_settings: Settings, service_clock: ManualClock
) -> AsyncIterator[Service]:
    async with Service(complaints_settings, service_clock).serving(GROUP, INPUT_TOPICS) as service:
        yield service


@pytest.fixture(scope="module")
async def shop(kafka_bootstrap: str) -> AsyncIterator[Shop]:
    async with Shop(kafka_bootstrap) as shop:
        yield shop


@pytest.fixture(scope="module")
async def outputs(complaints_settings: Settings) -> AsyncIterator[Outputs]:
    await ensure_topics(complaints_settings, OUTPUT_TOPICS)
    async with Outputs(complaints_settings.kafka_bootstrap_servers) as outputs:
        yield outputs
