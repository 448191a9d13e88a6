"""The notifier's broker suites send SMS to a real HTTP gateway of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.json_gateway import Gateway


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    yield gw
    gw.close()
