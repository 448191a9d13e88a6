"""The notifier's broker suites: the test database with the notifier's tables, and a real HTTP
gateway of their own to send SMS to."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from shared.migrations import upgrade
from tests.json_gateway import Gateway


@pytest.fixture(scope="module")
async def notifier_database(database_url: str) -> str:
    """The test database, migrated to the notifier's head once for the module."""
    await asyncio.to_thread(upgrade, "notifier", database_url)
    return database_url


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    yield gw
    gw.close()
