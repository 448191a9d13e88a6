"""Fixtures the end-to-end suites share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer for the events a test sends (no idempotence: nothing may rely on it)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks="all"
    )
    await producer.start()
    yield producer
    await producer.stop()
