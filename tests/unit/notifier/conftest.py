"""The notifier's unit tests build Settings(): keep the developer's environment out of them."""

from __future__ import annotations

import pytest

from tests.harness import no_notifier_environment


@pytest.fixture(autouse=True)
def _no_notifier_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    no_notifier_environment(monkeypatch)
