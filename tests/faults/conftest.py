"""The fault-injection run in the test-suite: marked `faults`, so `-m "not faults"` skips it."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: the shortened fault-injection run (deselect with -m 'not faults')"
    )
