"""The notifier's unit tests build Settings(): keep the developer's environment out of them."""

from __future__ import annotations

import pytest

NOTIFIER_ENV = (
    "AFTERSALES_ENCRYPTION_KEY",
    "AFTERSALES_DEV_MODE",
    "AFTERSALES_SMS_GATEWAY_URL",
    "AFTERSALES_IM_GATEWAY_URL",
    "AFTERSALES_SMTP_URL",
    "AFTERSALES_WEBHOOK_URL",
    "AFTERSALES_WEBHOOK_SECRET",
)


@pytest.fixture(autouse=True)
def _no_notifier_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NOTIFIER_ENV:
        monkeypatch.delenv(name, raising=False)
